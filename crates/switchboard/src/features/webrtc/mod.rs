//! Browser phone sessions (spec 03, seed 001): a session ties a browser to an
//! extension. Creating one may create a virtual extension (`webrtc-admin`) on first
//! use, puts the session in `registered_phones` with the seed's markers, and hands the
//! browser its ICE servers; sessions end when asked to or after
//! `features.webrtc.session_idle_timeout` without activity. The REST API calls this
//! service, and so will the WebPhone's signalling (`touch`, `finish`).

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::auth::Principal;
use super::events::{EventType, emit};
use super::extensions::{ExtensionService, rules, virtual_row};
use super::{Actor, ServiceError};
use crate::config::{Config, WebrtcConfig};
use crate::crypto;
use crate::store::registered_phones::{self as phones, Sighting};
use crate::store::webrtc::{self as store, SessionRow};
use crate::store::{Conn, Db};
use crate::time::Timestamp;

/// The `registered_phones.ip_address` of every browser session (seed 001).
pub const PHONE_IP: &str = "webrtc";
/// Session ids: 32 hex digits, 128 bits from the OS's CSPRNG.
const SESSION_ID_LEN: usize = 32;
/// The longest the expiry sweep waits between runs.
const MAX_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Who asks: the actor for events, the extension they are, and whether they are an
/// admin (who may act on any extension's sessions).
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub extension: Option<String>,
    pub admin: bool,
}

impl Caller {
    pub fn of(p: &Principal) -> Self {
        Self {
            actor: p.actor(),
            extension: p.extension.clone(),
            admin: p.is_admin(),
        }
    }

    fn is(&self, extension: &str) -> bool {
        self.extension.as_deref() == Some(extension)
    }

    /// The owner (the session's extension) or an admin.
    fn may_see(&self, s: &SessionRow) -> bool {
        self.admin || self.is(&s.extension)
    }
}

/// Why a session ended (`webrtc.session_ended`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its extension (or whoever opened it) ended it.
    User,
    /// An admin ended someone else's session.
    Admin,
    /// Idle longer than `features.webrtc.session_idle_timeout`.
    Expired,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Expired => "expired",
        }
    }
}

/// An ICE server as a browser's `RTCPeerConnection` takes it (`RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, …
    pub urls: String,
}

/// A session as the API shows it (seed 001: `session_id`, `extension`, `ice_servers`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebrtcSession {
    /// 32 hex digits.
    pub session_id: String,
    pub extension: String,
    /// From `features.webrtc.ice_servers`, for `new RTCPeerConnection({iceServers})`.
    pub ice_servers: Vec<IceServer>,
    /// The session's marker in `registered_phones` (`webrtc-` + 12 hex digits).
    pub mac_address: String,
    /// Who opened it: `extension:<number>` or `api_key:<id>`.
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// The last activity (creation, or the WebPhone's signalling).
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: Timestamp,
    /// When it expires without further activity; null when sessions never expire
    /// (`session_idle_timeout: 0`).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The User-Agent of the HTTP client that opened it.
    pub user_agent: Option<String>,
    /// The address of the HTTP client that opened it.
    pub ip_address: Option<String>,
}

/// `webrtc-` and the first 12 hex digits of SHA-256 of the session id (seed 001).
pub fn phone_marker(session_id: &str) -> String {
    let hash = crypto::sha256_hex(session_id.as_bytes());
    format!("webrtc-{}", &hash[..12])
}

/// The session's row in `registered_phones`, seen `at`.
fn sighting(s: &SessionRow, at: Timestamp) -> Sighting {
    Sighting {
        extension: s.extension.clone(),
        mac_address: Some(s.phone_mac.clone()),
        ip_address: PHONE_IP.into(),
        user_agent: Some(format!("WebRTC Browser Client (Session: {})", s.session_id)),
        contact_uri: Some(format!("<webrtc:{}@{}>", s.extension, s.session_id)),
        at,
    }
}

/// A virtual extension's name is not all digits (`webrtc-admin`).
fn is_virtual(number: &str) -> bool {
    !number.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Clone)]
pub struct WebrtcService {
    db: Db,
    config: WebrtcConfig,
    extensions: ExtensionService,
}

impl WebrtcService {
    pub fn new(db: Db, config: &Config, extensions: ExtensionService) -> Self {
        Self {
            db,
            config: config.features.webrtc.clone(),
            extensions,
        }
    }

    fn idle_timeout(&self) -> Option<Duration> {
        (self.config.session_idle_timeout > 0)
            .then(|| Duration::from_secs(self.config.session_idle_timeout))
    }

    /// How often [`Self::sweep_expired`] runs: a fifth of the idle timeout, between 1 s
    /// and a minute.
    pub fn sweep_interval(&self) -> Duration {
        self.idle_timeout().map_or(MAX_SWEEP_EVERY, |t| {
            (t / 5).clamp(Duration::from_secs(1), MAX_SWEEP_EVERY)
        })
    }

    pub fn ice_servers(&self) -> Vec<IceServer> {
        self.config
            .ice_servers
            .iter()
            .map(|u| IceServer { urls: u.clone() })
            .collect()
    }

    fn view(&self, s: SessionRow) -> WebrtcSession {
        WebrtcSession {
            expires_at: self.idle_timeout().map(|t| s.last_seen_at.plus(t)),
            ice_servers: self.ice_servers(),
            session_id: s.session_id,
            extension: s.extension,
            mac_address: s.phone_mac,
            created_by: s.created_by,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            user_agent: s.user_agent,
            ip_address: s.ip_address,
        }
    }

    /// Opens a session for `extension` (the caller's own when `None`): an admin for any
    /// extension, a user for their own. A missing virtual extension is created when
    /// `auto_create_virtual` is on, in the same transaction as the session, its
    /// `registered_phones` row and the events.
    pub async fn create_session(
        &self,
        caller: &Caller,
        extension: Option<&str>,
        user_agent: Option<String>,
        ip_address: Option<String>,
    ) -> Result<WebrtcSession, ServiceError> {
        if !self.config.enabled {
            return Err(ServiceError::forbidden(
                "webrtc_disabled",
                "the WebPhone is turned off on this PBX (features.webrtc.enabled: false)",
            ));
        }
        let extension = match extension.or(caller.extension.as_deref()) {
            Some(e) => e.to_owned(),
            None => {
                return Err(ServiceError::invalid(
                    "extension",
                    "name the extension the session is for, e.g. {\"extension\": \"webrtc-admin\"}",
                ));
            }
        };
        rules::check_number(&extension).map_err(|e| match e {
            ServiceError::Invalid { message, .. } => ServiceError::invalid("extension", message),
            other => other,
        })?;
        if extension == rules::AUTO_ATTENDANT {
            return Err(ServiceError::invalid(
                "extension",
                "extension 0 is the auto attendant: a browser cannot act as it",
            ));
        }
        if !(caller.admin || caller.is(&extension)) {
            return Err(ServiceError::forbidden(
                "forbidden",
                format!(
                    "you may open a WebPhone session only for your own extension, not for {extension}"
                ),
            ));
        }

        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        let created = match self.extensions.get_in(&mut tx, &extension).await? {
            Some(row) if !row.active => {
                return Err(ServiceError::forbidden(
                    "extension_inactive",
                    format!("extension {extension} is deactivated"),
                ));
            }
            Some(_) => false,
            None if is_virtual(&extension) && self.config.auto_create_virtual => {
                let row = virtual_row(&extension, &format!("WebPhone ({extension})"))?;
                self.extensions
                    .insert_if_absent_in(&mut tx, &caller.actor, &row)
                    .await?
            }
            None if is_virtual(&extension) => {
                return Err(ServiceError::not_found(format!(
                    "extension {extension} (virtual extensions are created on first use only with \
                     features.webrtc.auto_create_virtual: true)"
                )));
            }
            None => return Err(ServiceError::not_found(format!("extension {extension}"))),
        };

        let session_id = crypto::random_string(SESSION_ID_LEN, b"0123456789abcdef");
        let row = SessionRow {
            phone_mac: phone_marker(&session_id),
            session_id,
            extension,
            created_by: caller.actor.label(),
            created_at: now,
            last_seen_at: now,
            user_agent,
            ip_address,
        };
        store::insert(&mut tx, &row).await?;
        phones::record_many(&mut tx, &[&sighting(&row, now)]).await?;
        emit(
            &mut tx,
            EventType::WebrtcSessionCreated,
            &json!({"session_id": row.session_id, "extension": row.extension,
                    "mac_address": row.phone_mac, "extension_created": created,
                    "user_agent": row.user_agent, "ip_address": row.ip_address,
                    "created_at": now.to_rfc3339(), "actor": row.created_by}),
        )
        .await?;
        tx.commit().await?;
        if created {
            self.extensions.changes().extension(&row.extension);
            tracing::info!(extension = %row.extension, actor = %row.created_by, "virtual extension created for a WebPhone session");
        }
        tracing::info!(session = %row.session_id, extension = %row.extension, actor = %row.created_by, "WebPhone session opened");
        Ok(self.view(row))
    }

    /// Every session for an admin; a user's own extension's for a user. Oldest first.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<WebrtcSession>, ServiceError> {
        let rows = if caller.admin {
            store::list(self.db.pool(), None).await?
        } else if let Some(ext) = &caller.extension {
            store::list(self.db.pool(), Some(ext)).await?
        } else {
            Vec::new()
        };
        Ok(rows.into_iter().map(|r| self.view(r)).collect())
    }

    fn not_found(session_id: &str) -> ServiceError {
        ServiceError::not_found(format!("WebRTC session {session_id}"))
    }

    /// One session, for its extension or an admin (anyone else: not found, so ids of
    /// others' sessions are not confirmed).
    pub async fn get(
        &self,
        caller: &Caller,
        session_id: &str,
    ) -> Result<WebrtcSession, ServiceError> {
        match store::get(self.db.pool(), session_id).await? {
            Some(s) if caller.may_see(&s) => Ok(self.view(s)),
            _ => Err(Self::not_found(session_id)),
        }
    }

    /// The session's row (no access check: for the signalling, which checks its own).
    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRow>, ServiceError> {
        Ok(store::get(self.db.pool(), session_id).await?)
    }

    /// Ends a session at the request of its extension or an admin: reason `user` when
    /// the caller is its extension or opened it, `admin` otherwise.
    pub async fn end(&self, caller: &Caller, session_id: &str) -> Result<(), ServiceError> {
        let s = match store::get(self.db.pool(), session_id).await? {
            Some(s) if caller.may_see(&s) => s,
            _ => return Err(Self::not_found(session_id)),
        };
        let reason = if caller.is(&s.extension) || s.created_by == caller.actor.label() {
            EndReason::User
        } else {
            EndReason::Admin
        };
        match self.finish(session_id, reason, &caller.actor).await? {
            Some(_) => Ok(()),
            None => Err(Self::not_found(session_id)),
        }
    }

    /// Ends a session (no access check): its row and its `registered_phones` row go,
    /// with `webrtc.session_ended`, in one transaction. `None` when it was gone already.
    pub async fn finish(
        &self,
        session_id: &str,
        reason: EndReason,
        by: &Actor,
    ) -> Result<Option<SessionRow>, ServiceError> {
        let mut tx = self.db.begin().await?;
        let Some(s) = store::delete(&mut tx, session_id).await? else {
            return Ok(None);
        };
        ended(&mut tx, &s, reason, by).await?;
        tx.commit().await?;
        tracing::info!(session = %s.session_id, extension = %s.extension, reason = reason.as_str(), actor = %by.label(), "WebPhone session ended");
        Ok(Some(s))
    }

    /// Records activity on a session (the WebPhone's signalling): `last_seen_at` and its
    /// `registered_phones` row's last registration. False when the session is gone.
    pub async fn touch(&self, session_id: &str) -> Result<bool, ServiceError> {
        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        if !store::touch(&mut tx, session_id, now).await? {
            return Ok(false);
        }
        if let Some(s) = store::get(&mut *tx, session_id).await? {
            phones::record_many(&mut tx, &[&sighting(&s, now)]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends the sessions idle longer than `session_idle_timeout` (reason `expired`), and
    /// removes `registered_phones` rows left by sessions whose extension was deleted.
    /// Run by a worker; gives how many sessions ended.
    pub async fn sweep_expired(&self) -> Result<usize, ServiceError> {
        let mut tx = self.db.begin().await?;
        let gone = match self.idle_timeout() {
            Some(t) => store::delete_idle(&mut tx, Timestamp::now().minus(t)).await?,
            None => Vec::new(),
        };
        for s in &gone {
            ended(&mut tx, s, EndReason::Expired, &Actor::System).await?;
        }
        store::delete_orphan_phones(&mut tx).await?;
        tx.commit().await?;
        for s in &gone {
            tracing::info!(session = %s.session_id, extension = %s.extension, "WebPhone session expired");
        }
        Ok(gone.len())
    }
}

/// What goes with a deleted session in its transaction.
async fn ended(
    tx: &mut Conn,
    s: &SessionRow,
    reason: EndReason,
    by: &Actor,
) -> Result<(), ServiceError> {
    phones::delete_by_mac(tx, &s.extension, &s.phone_mac).await?;
    emit(
        tx,
        EventType::WebrtcSessionEnded,
        &json!({"session_id": s.session_id, "extension": s.extension,
                "mac_address": s.phone_mac, "reason": reason.as_str(),
                "created_at": s.created_at.to_rfc3339(),
                "last_seen_at": s.last_seen_at.to_rfc3339(), "actor": by.label()}),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_follow_the_seed() {
        let id = "0123456789abcdef0123456789abcdef";
        let marker = phone_marker(id);
        assert_eq!(
            marker,
            format!("webrtc-{}", &crypto::sha256_hex(id.as_bytes())[..12])
        );
        assert_eq!(marker.len(), "webrtc-".len() + 12);
        let row = SessionRow {
            session_id: id.into(),
            extension: "webrtc-admin".into(),
            phone_mac: marker.clone(),
            created_by: "extension:1001".into(),
            created_at: Timestamp(0),
            last_seen_at: Timestamp(0),
            user_agent: None,
            ip_address: None,
        };
        let s = sighting(&row, Timestamp(5));
        assert_eq!(s.ip_address, "webrtc");
        assert_eq!(s.mac_address.as_deref(), Some(marker.as_str()));
        assert_eq!(
            s.user_agent.as_deref(),
            Some("WebRTC Browser Client (Session: 0123456789abcdef0123456789abcdef)")
        );
        assert_eq!(
            s.contact_uri.as_deref(),
            Some("<webrtc:webrtc-admin@0123456789abcdef0123456789abcdef>")
        );
        assert!(is_virtual("webrtc-admin"));
        assert!(!is_virtual("1001"));
    }
}
