//! Voicemail by phone: leaving a message (spec 01 "Voicemail").

use std::time::Duration;

use super::session::{HungUp, MediaSession, RecordEnd};
use super::{AppCall, DepositReason};
use crate::sip_server::SipCore;

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
    if greet(core, session, mailbox, why).await.is_err() {
        return;
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

async fn greet(
    core: &SipCore,
    session: &mut MediaSession,
    mailbox: &str,
    why: DepositReason,
) -> Result<(), HungUp> {
    let prompts = &core.prompts;
    let own = match core.app.voicemail.greeting(mailbox).await {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(mailbox, error = %e, "greeting unreadable; the default plays");
            None
        }
    };
    match own {
        Some(own) => session.play(own.into(), false).await?,
        None => {
            let mut pieces = vec![prompts.get("vm-person-at-extension")];
            pieces.extend(prompts.digits(mailbox));
            pieces.push(prompts.get(match why {
                DepositReason::Busy => "vm-is-busy",
                DepositReason::Unavailable => "vm-not-available",
            }));
            session.play_all(&pieces, false).await?;
        }
    }
    session.play(prompts.get("beep"), false).await
}
