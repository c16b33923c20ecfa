//! The extension as the API and CLI see it, and the bodies that create and change one.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::role::Role;
use crate::store::extensions::ExtensionRow;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForwardWhen {
    Always,
    Busy,
    NoAnswer,
}

impl ForwardWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "always" => Some(Self::Always),
            "busy" => Some(Self::Busy),
            "no_answer" => Some(Self::NoAnswer),
            _ => None,
        }
    }
}

/// Where calls go instead of ringing the extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallForwarding {
    /// An extension number or an external number.
    pub target: String,
    pub when: ForwardWhen,
}

/// An extension; never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Extension {
    /// Digits (`1001`) or a virtual name (`webrtc-admin`).
    pub number: String,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub allow_external: bool,
    pub voicemail_enabled: bool,
    pub call_forwarding: Option<CallForwarding>,
    /// Derived from DND rules and overrides; read-only.
    pub do_not_disturb: bool,
    /// Deactivated extensions cannot register, log in or receive calls.
    pub active: bool,
    pub ad_synced: bool,
    pub ad_username: Option<String>,
    pub must_change_password: bool,
    pub has_password: bool,
    pub has_sip_secret: bool,
    pub has_voicemail_pin: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<&ExtensionRow> for Extension {
    fn from(r: &ExtensionRow) -> Self {
        let call_forwarding = match (
            &r.forward_target,
            r.forward_when.as_deref().and_then(ForwardWhen::parse),
        ) {
            (Some(target), Some(when)) => Some(CallForwarding {
                target: target.clone(),
                when,
            }),
            _ => None,
        };
        Self {
            number: r.number.clone(),
            name: r.name.clone(),
            email: r.email.clone(),
            role: r.role,
            allow_external: r.allow_external,
            voicemail_enabled: r.voicemail_enabled,
            call_forwarding,
            do_not_disturb: false,
            active: r.active,
            ad_synced: r.ad_synced,
            ad_username: r.ad_username.clone(),
            must_change_password: r.must_change_password,
            has_password: r.password_hash.is_some(),
            has_sip_secret: r.sip_ha1_md5.is_some(),
            has_voicemail_pin: r.voicemail_pin_hash.is_some(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `POST /api/extensions`. Credentials left out are generated and returned once.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExtension {
    pub number: String,
    pub name: String,
    pub email: Option<String>,
    /// Default `user`.
    pub role: Option<Role>,
    /// Web password (at least 10 characters); generated when absent.
    pub password: Option<String>,
    /// SIP digest secret (at least 8 characters); generated when absent.
    pub sip_secret: Option<String>,
    /// 4–12 digits; generated when absent.
    pub voicemail_pin: Option<String>,
    /// Default `false`.
    pub allow_external: Option<bool>,
    /// Default `true`.
    pub voicemail_enabled: Option<bool>,
    pub call_forwarding: Option<CallForwarding>,
    /// Force a password change at first login. Default: `true` when the password is
    /// generated, else `false`.
    pub must_change_password: Option<bool>,
    /// Default `true`.
    pub active: Option<bool>,
}

/// Credentials generated for a new extension or a rotation: shown this once only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct GeneratedCredentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voicemail_pin: Option<String>,
}

/// `201` answer to a create: the extension plus the generated credentials.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedExtension {
    #[serde(flatten)]
    pub extension: Extension,
    pub credentials: GeneratedCredentials,
}

/// `PUT /api/extensions/{number}`: the whole editable profile.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionUpdate {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    pub role: Role,
    pub allow_external: bool,
    pub voicemail_enabled: bool,
    #[serde(default)]
    pub call_forwarding: Option<CallForwarding>,
    pub active: bool,
}

/// `PATCH /api/extensions/{number}`: only the fields given change; `null` clears
/// `email` and `call_forwarding`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub allow_external: Option<bool>,
    pub voicemail_enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<CallForwarding>)]
    pub call_forwarding: Option<Option<CallForwarding>>,
    pub active: Option<bool>,
}

impl From<ExtensionUpdate> for ExtensionPatch {
    fn from(u: ExtensionUpdate) -> Self {
        Self {
            name: Some(u.name),
            email: Some(u.email),
            role: Some(u.role),
            allow_external: Some(u.allow_external),
            voicemail_enabled: Some(u.voicemail_enabled),
            call_forwarding: Some(u.call_forwarding),
            active: Some(u.active),
        }
    }
}

impl ExtensionPatch {
    /// The first field only an admin may change, when the patch changes one.
    pub fn admin_only_change(&self, current: &Extension) -> Option<&'static str> {
        if self.role.is_some_and(|r| r != current.role) {
            return Some("role");
        }
        if self.active.is_some_and(|a| a != current.active) {
            return Some("active");
        }
        if self
            .allow_external
            .is_some_and(|a| a != current.allow_external)
        {
            return Some("allow_external");
        }
        None
    }
}

/// Distinguishes a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
