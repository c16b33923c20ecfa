//! `*55`, `*56`, `*57` (spec 05 "Phone feature codes"): hot-desk login, logout and
//! status at the phone that dials them, through the same
//! [`HotDeskService`](crate::features::hot_desk::HotDeskService) as the API. The
//! phone is the device as the call engine identified it (its MAC, else its account).

use super::session::{Collect, HungUp, MediaSession};
use super::{AppCall, HotDeskCode};
use crate::features::extensions::rules::MAX_NUMBER_LEN;
use crate::features::hot_desk::{HotDeskError, Login, LogoutOf, LogoutReason};
use crate::features::security::{Protocol, Signal};
use crate::sip_server::SipCore;
use crate::sip_server::hot_desk::Device;

/// The longest PIN (`security.min_pin_length` … 12 digits).
const MAX_PIN_DIGITS: usize = 12;

pub async fn run(core: &SipCore, session: &mut MediaSession, call: &AppCall, code: HotDeskCode) {
    // Hanging up ends the script; nothing is left to do then.
    let _ = serve(core, session, call, code).await;
}

async fn serve(
    core: &SipCore,
    session: &mut MediaSession,
    call: &AppCall,
    code: HotDeskCode,
) -> Result<(), HungUp> {
    let prompts = &core.prompts;
    // No device: hot-desking is off.
    let Some(device) = &call.device else {
        return session
            .play_all(
                &[prompts.get("hotdesk-unavailable"), prompts.get("goodbye")],
                false,
            )
            .await;
    };
    let mut said = match code {
        HotDeskCode::Login => login(core, session, call, device).await?,
        HotDeskCode::Logout => logout(core, device).await,
        HotDeskCode::Status => status(core, device).await,
    };
    said.push(prompts.get("goodbye"));
    session.play_all(&said, false).await
}

type Speech = Vec<std::sync::Arc<[i16]>>;

/// "Extension 1 0 0 1" followed by `then`.
fn extension_then(core: &SipCore, extension: &str, then: &str) -> Speech {
    let prompts = &core.prompts;
    let mut said = vec![prompts.get("extension")];
    said.extend(prompts.digits(extension));
    said.push(prompts.get(then));
    said
}

async fn login(
    core: &SipCore,
    session: &mut MediaSession,
    call: &AppCall,
    device: &Device,
) -> Result<Speech, HungUp> {
    let prompts = &core.prompts;
    let service = &core.app.hot_desk;
    if !service.config().enabled {
        return Ok(vec![prompts.get("hotdesk-unavailable")]);
    }
    session.play(prompts.get("enter-extension"), true).await?;
    let extension = session
        .collect(&Collect::until_hash(MAX_NUMBER_LEN))
        .await?;
    if extension.is_empty() {
        return Ok(vec![prompts.get("hotdesk-login-failed")]);
    }
    let pin = if service.config().require_pin {
        session.play(prompts.get("enter-pin"), true).await?;
        Some(
            session
                .collect(&Collect::until_hash(MAX_PIN_DIGITS))
                .await?,
        )
    } else {
        None
    };
    let attempt = Login {
        extension: extension.clone(),
        device_id: device.label.clone(),
        ip_address: Some(call.source.to_string()),
        pin,
    };
    Ok(match service.login(&attempt).await {
        Ok(done) => {
            tracing::info!(extension, device = %device.label, call = %call.uuid, "hot-desk login by phone");
            extension_then(core, &done.profile.extension, "hotdesk-logged-in")
        }
        Err(e) => {
            tracing::info!(extension, device = %device.label, error = %e, "hot-desk login by phone refused");
            if matches!(e, HotDeskError::BadCredentials) {
                core.app.threats.signal(
                    call.source,
                    Protocol::Sip,
                    Signal::FailedAuth("hot-desk PIN"),
                );
            }
            vec![prompts.get(match e {
                // Malformed keys are a failed login too (and say nothing more).
                HotDeskError::BadCredentials | HotDeskError::Service(_) => "hotdesk-login-failed",
                HotDeskError::Locked { .. } => "hotdesk-locked",
                HotDeskError::AlreadyLoggedIn { .. } => "hotdesk-already-logged-in",
                HotDeskError::Disabled | HotDeskError::Inactive(_) => "hotdesk-unavailable",
                HotDeskError::NotLoggedIn(_) => "try-again-later",
            })]
        }
    })
}

async fn logout(core: &SipCore, device: &Device) -> Speech {
    let of = LogoutOf::Device(device.label.clone());
    match core.app.hot_desk.logout(&of, LogoutReason::User).await {
        Ok((extension, _)) => extension_then(core, &extension, "hotdesk-logged-out"),
        Err(HotDeskError::NotLoggedIn(_)) => vec![core.prompts.get("hotdesk-no-one-logged-in")],
        Err(e) => {
            tracing::warn!(device = %device.label, error = %e, "hot-desk logout by phone failed");
            vec![core.prompts.get("try-again-later")]
        }
    }
}

async fn status(core: &SipCore, device: &Device) -> Speech {
    let service = &core.app.hot_desk;
    match service.session(&device.label).await {
        Ok(Some(session)) => {
            // Using a feature code at the desk is activity there.
            if let Err(e) = service.activity(&device.label).await {
                tracing::debug!(error = %e, "hot-desk activity not recorded");
            }
            extension_then(core, &session.extension, "hotdesk-is-logged-in-here")
        }
        Ok(None) => vec![core.prompts.get("hotdesk-no-one-logged-in")],
        Err(e) => {
            tracing::warn!(device = %device.label, error = %e, "hot-desk status by phone failed");
            vec![core.prompts.get("try-again-later")]
        }
    }
}
