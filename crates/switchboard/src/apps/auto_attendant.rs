//! The auto attendant on extension 0 (spec 01 "Auto attendant"): the greeting and
//! menu, then the caller is handed on. The settings come from
//! [`AutoAttendantService`](crate::features::auto_attendant::AutoAttendantService),
//! read anew for each call.
//!
//! Input is collected as a number: one key that is a menu entry, waited on for
//! [`BETWEEN_KEYS`] in case more follow, is that entry; otherwise the keys are an
//! extension number to dial (when `dial_by_extension` is on), ended by `#` or the
//! pause. No key before `timeout_seconds`, or keys that are neither, repeat the menu
//! once; the second time the caller goes to the operator.
//!
//! Handing on is a blind transfer by the engine with the attendant as the referrer
//! ([`CallsHandle::transfer_app`](crate::sip_server::calls::CallsHandle::transfer_app)):
//! the caller hears hold music while the target rings. A target that is busy or does
//! not answer is followed as a direct call would be: its forwarding on busy / no
//! answer, else its voicemail (left here, through the voicemail script); with neither,
//! the caller hears that it is not available and is back at the menu.

use std::sync::Arc;
use std::time::Duration;

use super::session::{Collect, HungUp, MediaSession};
use super::{App, AppCall, DepositReason, voicemail};
use crate::features::auto_attendant::{MenuAction, Settings};
use crate::features::extensions::model::ForwardWhen;
use crate::features::extensions::rules::MAX_NUMBER_LEN;
use crate::sip_server::SipCore;
use crate::sip_server::calls::routing::{self, MAX_FORWARDS, Plan};
use crate::time::Timestamp;

/// How long the attendant waits for another key before taking what it has.
pub const BETWEEN_KEYS: Duration = Duration::from_secs(2);

/// What the caller chose.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    /// Connect to this number (an extension, or a queue through the dial plan).
    Connect(String),
    /// Leave a message in this mailbox.
    Voicemail(String),
    Operator,
}

/// Whether the call was handed on (or otherwise dealt with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handed {
    On,
    /// The target was not available: the caller is still with the attendant.
    NotAvailable,
}

pub async fn run(core: &SipCore, session: &mut MediaSession, call: &AppCall) {
    // Hanging up ends the script; nothing is left to do then.
    let _ = attend(core, session, call).await;
}

async fn attend(core: &SipCore, session: &mut MediaSession, call: &AppCall) -> Result<(), HungUp> {
    let settings = match core.app.auto_attendant.current().await {
        Ok(current) => current.settings,
        Err(e) => {
            tracing::warn!(error = %e, call = %call.uuid, "auto attendant settings unreadable; config.yml's defaults apply");
            Settings::default()
        }
    };
    if !settings.enabled {
        return to_operator(core, session, call, &settings).await;
    }
    let prompts = &core.prompts;
    // A recorded greeting says the options itself; otherwise they are spoken from the
    // settings after "thank you for calling".
    let recorded = match core.app.auto_attendant.greeting().await {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::warn!(error = %e, call = %call.uuid, "auto attendant greeting unreadable; the spoken menu plays");
            None
        }
    };
    let menu = match recorded {
        Some(samples) => vec![Arc::from(samples)],
        None => {
            session
                .play(prompts.get("aa-thank-you-for-calling"), true)
                .await?;
            announcement(core, &settings)
        }
    };
    let how = Collect {
        max_digits: if settings.dial_by_extension {
            MAX_NUMBER_LEN
        } else {
            1
        },
        terminator: Some('#'),
        first: Duration::from_secs(settings.timeout_seconds),
        between: BETWEEN_KEYS,
    };
    // The menu, and once more after a timeout, an invalid key or a target that was
    // not available.
    for _ in 0..2 {
        session.play_all(&menu, true).await?;
        let keys = session.collect(&how).await?;
        if keys.is_empty() {
            continue;
        }
        let Some(choice) = choose(core, &settings, &keys).await else {
            tracing::info!(call = %call.uuid, keys, "auto attendant: invalid entry");
            session.play(prompts.get("invalid-option"), false).await?;
            continue;
        };
        tracing::info!(call = %call.uuid, ?choice, "auto attendant: caller chose");
        let handed = match choice {
            Choice::Connect(number) => {
                connect(core, session, call, &number, "transferring").await?
            }
            Choice::Voicemail(mailbox) => {
                voicemail::deposit(core, session, call, &mailbox, DepositReason::Unavailable).await;
                return Ok(());
            }
            Choice::Operator => return to_operator(core, session, call, &settings).await,
        };
        if handed == Handed::On {
            return Ok(());
        }
        session.play(prompts.get("unavailable"), false).await?;
    }
    to_operator(core, session, call, &settings).await
}

/// The greeting's menu, spoken from the settings: "if you know the extension you
/// want, dial it now; for extension 1 0 0 2, press 1; …".
fn announcement(core: &SipCore, settings: &Settings) -> Vec<Arc<[i16]>> {
    let prompts = &core.prompts;
    let mut menu = Vec::new();
    if settings.dial_by_extension {
        menu.push(prompts.get("aa-dial-extension"));
    }
    for option in &settings.menu {
        let target = option.target.as_deref().unwrap_or_default();
        match option.action {
            MenuAction::Extension => menu.push(prompts.get("aa-for-extension")),
            MenuAction::Queue => menu.push(prompts.get("aa-for-queue")),
            MenuAction::Voicemail => menu.push(prompts.get("aa-for-voicemail")),
            MenuAction::Operator => menu.push(prompts.get("aa-for-operator")),
        }
        menu.extend(prompts.digits(target));
        menu.push(prompts.get("aa-press"));
        menu.push(match option.digit.as_str() {
            "*" => prompts.get("star"),
            d => prompts.get(&format!("digit-{d}")),
        });
    }
    menu
}

/// What `keys` mean: a menu entry, or an extension to dial; `None` when neither.
async fn choose(core: &SipCore, settings: &Settings, keys: &str) -> Option<Choice> {
    if let Some(option) = settings.option(keys) {
        let target = option.target.clone().unwrap_or_default();
        return Some(match option.action {
            MenuAction::Extension | MenuAction::Queue => Choice::Connect(target),
            MenuAction::Voicemail => Choice::Voicemail(target),
            MenuAction::Operator => Choice::Operator,
        });
    }
    // Extension 0 is the attendant itself.
    if !settings.dial_by_extension || keys == "0" || !keys.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let callee = core.credentials.get(keys).await?;
    callee.active.then(|| Choice::Connect(keys.to_owned()))
}

async fn to_operator(
    core: &SipCore,
    session: &mut MediaSession,
    call: &AppCall,
    settings: &Settings,
) -> Result<(), HungUp> {
    let handed = connect(
        core,
        session,
        call,
        &settings.operator,
        "transferring-operator",
    )
    .await?;
    if handed == Handed::NotAvailable {
        tracing::warn!(call = %call.uuid, operator = %settings.operator, "auto attendant: the operator is not available");
        let prompts = &core.prompts;
        session
            .play_all(
                &[prompts.get("try-again-later"), prompts.get("goodbye")],
                false,
            )
            .await?;
    }
    Ok(())
}

/// Hands the caller on to `number` as the dial plan routes it, following forwarding
/// and voicemail when it is busy or does not answer; `saying` is the prompt played
/// first.
async fn connect(
    core: &SipCore,
    session: &mut MediaSession,
    call: &AppCall,
    number: &str,
    saying: &str,
) -> Result<Handed, HungUp> {
    let mut number = number.to_owned();
    let mut said = false;
    for _ in 0..MAX_FORWARDS {
        let callee = match plan_of(core, &number).await {
            Plan::Ring { callee, .. } => callee,
            Plan::Forward { target } => {
                number = target;
                continue;
            }
            // An extension with nowhere to ring but its voicemail.
            Plan::App(App::Deposit { mailbox, why }) => {
                voicemail::deposit(core, session, call, &mailbox, why).await;
                return Ok(Handed::On);
            }
            other => {
                tracing::info!(call = %call.uuid, to = %number, plan = ?other, "auto attendant: target not available");
                return Ok(Handed::NotAvailable);
            }
        };
        if !said {
            session.play(core.prompts.get(saying), false).await?;
            said = true;
        }
        let outcome = core
            .calls
            .transfer_app(core, call.engine_id, number.clone());
        let code = session
            .play_until(core.prompts.hold_music(), outcome)
            .await?
            // The engine dropped the request: the call is going away.
            .unwrap_or(481);
        if (200..300).contains(&code) {
            tracing::info!(call = %call.uuid, to = %number, "auto attendant handed the call on");
            return Ok(Handed::On);
        }
        tracing::info!(call = %call.uuid, to = %number, code, "auto attendant: the target did not answer");
        let busy = matches!(code, 486 | 600);
        let when = if busy {
            ForwardWhen::Busy
        } else {
            ForwardWhen::NoAnswer
        };
        if let Some(target) = routing::forward_on(&callee, when) {
            number = target;
            continue;
        }
        let why = if busy {
            DepositReason::Busy
        } else {
            DepositReason::Unavailable
        };
        if let Some(App::Deposit { mailbox, why }) = routing::voicemail_of(&number, &callee, why) {
            voicemail::deposit(core, session, call, &mailbox, why).await;
            return Ok(Handed::On);
        }
        return Ok(Handed::NotAvailable);
    }
    Ok(Handed::NotAvailable)
}

/// The dial plan's answer for `number`, after reading it into the cache if needed.
async fn plan_of(core: &SipCore, number: &str) -> Plan {
    let plan = routing::plan(core, number, Timestamp::now());
    let Plan::Lookup(missing) = plan else {
        return plan;
    };
    core.credentials.get(&missing).await;
    routing::plan(core, number, Timestamp::now())
}
