//! Where an authenticated call goes: the dial plan, then the callee's forwarding and
//! bindings. Pure over the caches (credentials, location); when a number is not
//! cached the caller looks it up and asks again.

use std::sync::Arc;

use crate::apps::{App, DepositReason, HotDeskCode};
use crate::features::calls::dialplan::{self, Destination, Directory, FeatureCode};
use crate::features::extensions::model::ForwardWhen;
use crate::sip_server::SipCore;
use crate::sip_server::credentials::SipCredential;
use crate::sip_server::hot_desk;
use crate::sip_server::location::Binding;
use crate::time::Timestamp;

/// How many times a call may be forwarded before it is refused (forwarding loops).
pub const MAX_FORWARDS: u8 = 5;

/// What to do with a call to a number.
#[derive(Debug)]
pub enum Plan {
    /// Ring these bindings of `extension` in parallel.
    Ring {
        extension: String,
        callee: Arc<SipCredential>,
        bindings: Vec<Binding>,
    },
    /// Send the call on to `target` now (`call_forwarding.when = always`).
    Forward { target: String },
    /// Answer it with an application (voicemail, the auto attendant).
    App(App),
    /// Answer with this final response.
    Refuse { code: u16, reason: &'static str },
    /// `number` is not cached: look it up, then plan again.
    Lookup(String),
}

/// The dial plan's view of the caches.
struct Cached<'a> {
    core: &'a SipCore,
    /// A number the caches do not know yet.
    missing: std::cell::Cell<bool>,
}

impl Directory for Cached<'_> {
    fn is_emergency(&self, number: &str) -> bool {
        self.core
            .app
            .config
            .calls
            .emergency_numbers
            .iter()
            .any(|n| n == number)
    }

    fn is_queue(&self, _number: &str) -> bool {
        // Queues (10-queues-skills.md) fill this in.
        false
    }

    fn is_extension(&self, number: &str) -> bool {
        match self.core.credentials.cached(number) {
            Some(found) => found.is_some(),
            None => {
                self.missing.set(true);
                false
            }
        }
    }
}

/// The plan for a call to `dialled`, rung at `now`.
pub fn plan(core: &SipCore, dialled: &str, now: Timestamp) -> Plan {
    let directory = Cached {
        core,
        missing: false.into(),
    };
    let destination = dialplan::route(dialled, &directory);
    if directory.missing.get() {
        return Plan::Lookup(dialled.to_owned());
    }
    match destination {
        Destination::Extension(number) => ring(core, number, now),
        Destination::NotFound => Plan::Refuse {
            code: 404,
            reason: "No such extension",
        },
        // No trunk exists to carry it: refuse loudly rather than ring nothing.
        Destination::Emergency(number) => {
            tracing::error!(%number, "emergency call with no route out; configure a trunk");
            Plan::Refuse {
                code: 503,
                reason: "No route for emergency calls",
            }
        }
        // DND and queues answer theirs once they exist.
        Destination::Feature(code) => match code {
            FeatureCode::OwnVoicemail => Plan::App(App::Listen { mailbox: None }),
            FeatureCode::HotDeskLogin => Plan::App(App::HotDesk(HotDeskCode::Login)),
            FeatureCode::HotDeskLogout => Plan::App(App::HotDesk(HotDeskCode::Logout)),
            FeatureCode::HotDeskStatus => Plan::App(App::HotDesk(HotDeskCode::Status)),
            FeatureCode::DndOn | FeatureCode::DndOff => Plan::Refuse {
                code: 480,
                reason: "Do not disturb is not available",
            },
        },
        Destination::Voicemail(mailbox) => match core.credentials.cached(&mailbox) {
            Some(Some(owner)) if owner.active && owner.voicemail_enabled => {
                Plan::App(App::Deposit {
                    mailbox,
                    why: DepositReason::Unavailable,
                })
            }
            Some(Some(_)) => Plan::Refuse {
                code: 480,
                reason: "This extension has no voicemail",
            },
            Some(None) => Plan::Refuse {
                code: 404,
                reason: "No such extension",
            },
            None => Plan::Lookup(mailbox),
        },
        Destination::AutoAttendant => Plan::App(App::AutoAttendant),
        Destination::Queue(_) => Plan::Refuse {
            code: 480,
            reason: "Queues are not available",
        },
    }
}

fn ring(core: &SipCore, number: String, now: Timestamp) -> Plan {
    let Some(Some(callee)) = core.credentials.cached(&number) else {
        return Plan::Lookup(number);
    };
    if !callee.active {
        return Plan::Refuse {
            code: 480,
            reason: "Extension is deactivated",
        };
    }
    if let Some(f) = &callee.forwarding
        && f.when == ForwardWhen::Always
    {
        return Plan::Forward {
            target: f.target.clone(),
        };
    }
    let mut bindings = core.location.lookup(&number, now);
    let hot_desking = &core.app.config.features.hot_desking;
    let desks = if hot_desking.enabled {
        core.hot_desks.devices_of(&number)
    } else {
        Vec::new()
    };
    if !desks.is_empty() {
        // Logged in at desks: those ring, and the extension's own phones only in
        // concurrent mode (spec 05).
        if !hot_desking.allow_concurrent_logins {
            bindings.clear();
        }
        for desk in &desks {
            for b in hot_desk::bindings_of_device(core, desk, now) {
                if !bindings.iter().any(|o| o.contact_uri == b.contact_uri) {
                    bindings.push(b);
                }
            }
        }
    }
    if bindings.is_empty() {
        return match voicemail_of(&number, &callee, DepositReason::Unavailable) {
            Some(app) => Plan::App(app),
            None => Plan::Refuse {
                code: 480,
                reason: "Not registered",
            },
        };
    }
    Plan::Ring {
        extension: number,
        callee,
        bindings,
    }
}

/// The voicemail a call to `extension` goes to when it cannot ring there, if it has one.
pub fn voicemail_of(extension: &str, callee: &SipCredential, why: DepositReason) -> Option<App> {
    callee.voicemail_enabled.then(|| App::Deposit {
        mailbox: extension.to_owned(),
        why,
    })
}

/// Where a call that found `extension` busy or unanswered goes instead, if anywhere.
pub fn forward_on(callee: &SipCredential, when: ForwardWhen) -> Option<String> {
    callee
        .forwarding
        .as_ref()
        .filter(|f| f.when == when)
        .map(|f| f.target.clone())
}
