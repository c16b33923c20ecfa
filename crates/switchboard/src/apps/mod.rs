//! Media applications (spec 01 "Media applications", "Voicemail", "Auto attendant"):
//! the PBX answering a call itself. The call engine answers the caller and hands the
//! application a [`MediaSession`] (`session`); the application's script runs as a
//! task and, when it returns, the engine hangs up (docs/architecture.md, "Media
//! application decisions").

mod auto_attendant;
mod hot_desk;
pub mod prompts;
pub mod session;
mod voicemail;

use std::sync::Arc;

use self::session::MediaSession;
use crate::features::calls::Disposition;
use crate::sip_server::SipCore;

/// What answers a call in place of a phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    /// Leave a message in `mailbox`'s voicemail (the extension was busy, did not
    /// answer, is not registered, or was dialled as `*` + extension).
    Deposit { mailbox: String, why: DepositReason },
    /// Listen to a mailbox after its PIN: `None` is the caller's own (`*97`).
    Listen { mailbox: Option<String> },
    /// The greeting menu of extension 0, which hands the call on.
    AutoAttendant,
    /// `*55`, `*56`, `*57`: hot-desk login, logout and status at the calling phone.
    HotDesk(HotDeskCode),
}

/// Which hot-desk feature code was dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotDeskCode {
    Login,
    Logout,
    Status,
}

/// Why a call reached a mailbox, which the default greeting says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositReason {
    Busy,
    /// No answer, not registered, or dialled directly.
    Unavailable,
}

impl App {
    /// How the call counts in its CDR.
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Deposit { .. } => Disposition::Voicemail,
            Self::Listen { .. } | Self::AutoAttendant | Self::HotDesk(_) => Disposition::Answered,
        }
    }
}

/// The call an application answers.
#[derive(Debug, Clone)]
pub struct AppCall {
    /// The engine's id of the call.
    pub engine_id: u64,
    pub uuid: uuid::Uuid,
    pub caller: String,
    pub caller_name: String,
    /// The phone calling, as hot-desking names it (when hot-desking is on).
    pub device: Option<crate::sip_server::hot_desk::Device>,
    /// Where the call came from.
    pub source: std::net::IpAddr,
}

/// Runs `app` for `call` until it is done or the caller hangs up.
pub async fn run(core: &Arc<SipCore>, app: App, mut session: MediaSession, call: &AppCall) {
    match app {
        App::Deposit { mailbox, why } => {
            voicemail::deposit(core, &mut session, call, &mailbox, why).await
        }
        App::Listen { mailbox } => {
            let mailbox = mailbox.as_deref().unwrap_or(&call.caller);
            voicemail::listen(core, &mut session, call, mailbox).await
        }
        App::AutoAttendant => auto_attendant::run(core, &mut session, call).await,
        App::HotDesk(code) => hot_desk::run(core, &mut session, call, code).await,
    }
}
