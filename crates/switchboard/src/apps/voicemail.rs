//! Voicemail by phone (spec 01 "Voicemail"): leaving a message, and listening to a
//! mailbox with its PIN.

use std::sync::Arc;
use std::time::Duration;

use switchboard_media::wav;

use super::session::{Collect, HungUp, MediaSession, RecordEnd};
use super::{AppCall, DepositReason};
use crate::features::Actor;
use crate::features::calls::Disposition;
use crate::features::voicemail::{Counts, Folder};
use crate::sip_server::SipCore;
use crate::sip_server::calls::Command;

/// Greets the caller (the mailbox's own greeting, else one naming the extension),
/// sounds the tone and records until `#`, silence, the maximum or the caller hanging
/// up; then stores the message, unless it is too short to be one.
pub async fn deposit(
    core: &SipCore,
    session: &mut MediaSession,
    call: &AppCall,
    mailbox: &str,
    why: DepositReason,
) {
    // However the caller got here (the auto attendant, too), the call ends in voicemail.
    core.calls.resume(
        core,
        Command::AppCountsAs {
            call: call.engine_id,
            disposition: Disposition::Voicemail,
        },
    );
    match greet(core, session, mailbox, why).await {
        Err(HungUp) => return,
        // The owner pressed * during the greeting: their mailbox instead.
        Ok(Greeted::Owner) => return listen(core, session, call, mailbox).await,
        Ok(Greeted::Caller) => {}
    }
    let config = &core.app.config.voicemail;
    let recording = session
        .record(
            Duration::from_secs(config.max_message_seconds),
            Duration::from_secs(config.silence_timeout),
        )
        .await;
    let stored = core
        .app
        .voicemail
        .deposit(mailbox, &call.caller, &call.caller_name, &recording.samples)
        .await;
    match stored {
        Ok(message) => {
            tracing::info!(mailbox, id = %message.id, call = %call.uuid, "voicemail left");
        }
        Err(e) => tracing::info!(mailbox, call = %call.uuid, error = %e, "no voicemail kept"),
    }
    if recording.ended != RecordEnd::HungUp {
        let prompts = &core.prompts;
        let _ = session
            .play_all(
                &[prompts.get("vm-message-recorded"), prompts.get("goodbye")],
                false,
            )
            .await;
    }
}

/// Who the greeting was for.
enum Greeted {
    /// A caller, who now leaves a message.
    Caller,
    /// The mailbox's owner, who pressed `*` to listen to it.
    Owner,
}

async fn greet(
    core: &SipCore,
    session: &mut MediaSession,
    mailbox: &str,
    why: DepositReason,
) -> Result<Greeted, HungUp> {
    let prompts = &core.prompts;
    let own = match core.app.voicemail.greeting(mailbox).await {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(mailbox, error = %e, "greeting unreadable; the default plays");
            None
        }
    };
    match own {
        Some(own) => session.play(own.into(), true).await?,
        None => {
            let mut pieces = vec![prompts.get("vm-person-at-extension")];
            pieces.extend(prompts.digits(mailbox));
            pieces.push(prompts.get(match why {
                DepositReason::Busy => "vm-is-busy",
                DepositReason::Unavailable => "vm-not-available",
            }));
            session.play_all(&pieces, true).await?;
        }
    }
    if session.take_key() == Some('*') {
        return Ok(Greeted::Owner);
    }
    session.play(prompts.get("beep"), false).await?;
    Ok(Greeted::Caller)
}

/// PIN attempts per call before the caller is hung up (guessing costs a call each
/// three tries, and every refusal is logged).
const PIN_TRIES: usize = 3;
/// Menu prompts that go unanswered this many times in a row end the call.
const IDLE_MENUS: usize = 3;
/// How long a menu waits for its key.
const MENU_WAIT: Duration = Duration::from_secs(5);
/// The longest greeting a caller may record by phone.
const GREETING_MAX: Duration = Duration::from_secs(60);

/// Listening to `mailbox` by phone (`*97` for the caller's own): the PIN, then the
/// main menu: new and saved messages, recording the greeting.
pub async fn listen(core: &SipCore, session: &mut MediaSession, call: &AppCall, mailbox: &str) {
    let outcome = async {
        if !login(core, session, call, mailbox).await? {
            return session.play(core.prompts.get("goodbye"), false).await;
        }
        main_menu(core, session, mailbox).await?;
        session.play(core.prompts.get("goodbye"), false).await
    };
    // A caller who hangs up simply ends it.
    let _ = outcome.await;
}

async fn login(
    core: &SipCore,
    session: &mut MediaSession,
    call: &AppCall,
    mailbox: &str,
) -> Result<bool, HungUp> {
    for _ in 0..PIN_TRIES {
        session.play(core.prompts.get("enter-pin"), true).await?;
        let pin = session.collect(&Collect::until_hash(12)).await?;
        let right = !pin.is_empty()
            && core
                .app
                .extensions
                .verify_pin(mailbox, &pin)
                .await
                .unwrap_or(false);
        if right {
            return Ok(true);
        }
        tracing::warn!(mailbox, caller = %call.caller, call = %call.uuid, "voicemail PIN refused");
        session
            .play(core.prompts.get("vm-login-incorrect"), false)
            .await?;
    }
    Ok(false)
}

async fn main_menu(
    core: &SipCore,
    session: &mut MediaSession,
    mailbox: &str,
) -> Result<(), HungUp> {
    let prompts = &core.prompts;
    let mut idle = 0;
    while idle < IDLE_MENUS {
        let counts = core.app.voicemail.counts(mailbox).await.unwrap_or_default();
        session.play_all(&summary(core, counts), true).await?;
        session.play(prompts.get("vm-main-menu"), true).await?;
        let key = session.collect(&Collect::one(MENU_WAIT)).await?;
        idle = if key.is_empty() { idle + 1 } else { 0 };
        match key.as_str() {
            "1" => messages(core, session, mailbox, Folder::New).await?,
            "2" => messages(core, session, mailbox, Folder::Saved).await?,
            "3" => record_greeting(core, session, mailbox).await?,
            "*" => return Ok(()),
            "" => {}
            _ => session.play(prompts.get("invalid-option"), false).await?,
        }
    }
    Ok(())
}

/// "You have 2 new messages and 1 saved message."
fn summary(core: &SipCore, counts: Counts) -> Vec<Arc<[i16]>> {
    let prompts = &core.prompts;
    if counts.new == 0 && counts.saved == 0 {
        return vec![prompts.get("vm-no-messages")];
    }
    let folder = |n: i64, one: &str, many: &str| {
        let mut said = prompts.count(n as usize);
        said.push(prompts.get(if n == 1 { one } else { many }));
        said
    };
    let mut pieces = vec![prompts.get("vm-you-have")];
    pieces.extend(folder(counts.new, "vm-new-message", "vm-new-messages"));
    if counts.saved > 0 {
        pieces.push(prompts.get("vm-and"));
        pieces.extend(folder(
            counts.saved,
            "vm-saved-message",
            "vm-saved-messages",
        ));
    }
    pieces
}

/// Plays the messages of `folder`, oldest first, each followed by its options:
/// 5 repeat, 7 delete, 9 save, # next, * back to the main menu. A new message is
/// saved once it has been heard.
async fn messages(
    core: &SipCore,
    session: &mut MediaSession,
    mailbox: &str,
    folder: Folder,
) -> Result<(), HungUp> {
    let prompts = &core.prompts;
    let service = &core.app.voicemail;
    let by = Actor::Extension(mailbox.to_owned());
    let mut list = service.list(mailbox).await.unwrap_or_default();
    list.retain(|m| m.folder == folder);
    list.reverse();
    if list.is_empty() {
        let none = match folder {
            Folder::New => "vm-no-new-messages",
            Folder::Saved => "vm-no-saved-messages",
        };
        return session.play(prompts.get(none), false).await;
    }
    for (n, message) in list.iter().enumerate() {
        let audio = match service
            .audio(mailbox, message.id)
            .await
            .map(|wav| wav::read(&wav))
        {
            Ok(Ok(samples)) => Arc::<[i16]>::from(samples),
            _ => {
                tracing::warn!(mailbox, id = %message.id, "voicemail audio unreadable; skipped");
                continue;
            }
        };
        loop {
            let mut heading = vec![prompts.get("vm-message")];
            heading.extend(prompts.count(n + 1));
            session.play_all(&heading, true).await?;
            session.play(audio.clone(), true).await?;
            if folder == Folder::New {
                let _ = service.mark_read(&by, mailbox, message.id).await;
            }
            session
                .play(prompts.get("vm-message-options"), true)
                .await?;
            match session.collect(&Collect::one(MENU_WAIT)).await?.as_str() {
                "5" => continue,
                "7" => {
                    let _ = service.delete(&by, mailbox, message.id).await;
                    session
                        .play(prompts.get("vm-message-deleted"), false)
                        .await?;
                }
                "9" => session.play(prompts.get("vm-message-saved"), false).await?,
                "*" => return Ok(()),
                _ => {}
            }
            break;
        }
    }
    session
        .play(prompts.get("vm-no-more-messages"), false)
        .await
}

async fn record_greeting(
    core: &SipCore,
    session: &mut MediaSession,
    mailbox: &str,
) -> Result<(), HungUp> {
    let prompts = &core.prompts;
    session
        .play(prompts.get("vm-record-greeting"), false)
        .await?;
    session.play(prompts.get("beep"), false).await?;
    let silence = Duration::from_secs(core.app.config.voicemail.silence_timeout);
    let recording = session.record(GREETING_MAX, silence).await;
    if recording.ended == RecordEnd::HungUp {
        return Err(HungUp);
    }
    match core
        .app
        .voicemail
        .record_greeting(mailbox, &recording.samples)
        .await
    {
        Ok(_) => session.play(prompts.get("vm-greeting-saved"), false).await,
        Err(e) => {
            tracing::info!(mailbox, error = %e, "greeting not kept");
            session.play(prompts.get("please-try-again"), false).await
        }
    }
}
