//! Feature services: each owns its rules and is called by both the HTTP API and the
//! SIP side (and the CLI), so every path runs the same code.

pub mod auth;
pub mod auto_attendant;
pub mod calls;
pub mod devices;
pub mod error;
pub mod events;
pub mod extensions;
pub mod hot_desk;
pub mod mail;
pub mod mfa;
pub mod registered_phones;
pub mod security;
pub mod voicemail;
pub mod webhooks;
pub mod webrtc;

pub use error::ServiceError;

/// Who made a change, as recorded in events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Extension(String),
    ApiKey {
        id: String,
        name: String,
    },
    /// The `switchboard` command line on the server.
    Cli,
    /// The PBX itself (first start, workers, directory sync).
    System,
    /// An enrolled device, by its key (spec 11).
    Device(String),
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Self::Extension(n) => format!("extension:{n}"),
            Self::ApiKey { id, .. } => format!("api_key:{id}"),
            Self::Cli => "cli".into(),
            Self::System => "system".into(),
            Self::Device(key) => format!("device:{key}"),
        }
    }
}
