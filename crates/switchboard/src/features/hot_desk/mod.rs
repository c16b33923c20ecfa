//! Hot-desking (spec 05, seed 000): an extension logs in at a device and that device
//! becomes its phone until it logs out or goes idle. [`HotDeskService`] is the one
//! place the rules live: the REST API (`api/hot_desk.rs`) and the phone's `*55`/`*56`/
//! `*57` (`apps/hot_desk.rs`) both call it.
//!
//! Sessions, their history and failed PINs are in the database (`store::hot_desk`), so a
//! restart keeps everyone logged in; each login and logout commits its event
//! (`hot_desk.login`, `hot_desk.logout` with its `reason`) in the same transaction.

mod device;
mod reports;

pub use device::device_key;
pub use reports::{DayCount, DeviceCount, HourCount, Report};

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use super::events::{Changes, EventType, emit};
use super::extensions::ExtensionService;
use super::extensions::model::{CallForwarding, Extension};
use super::extensions::rules::check_number;
use crate::config::{Config, ExclusivePolicy, HotDeskingConfig};
use crate::store::hot_desk::{self as store, HistoryRow, SessionRow};
use crate::store::{self as db_store, Conn, Db};
use crate::time::Timestamp;

/// How long failed PINs count towards the lockout, and how long it lasts.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed PINs are kept this long for the reports.
const PIN_FAILURE_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The longest PIN accepted as input (PINs are 4–12 digits; longer is never right).
const MAX_PIN_INPUT: usize = 32;

/// A session as the seed shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Session {
    pub extension: String,
    /// The device id as the login gave it.
    pub device_id: String,
    pub ip_address: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub logged_in_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_activity: Timestamp,
    pub auto_logout_enabled: bool,
}

impl From<&SessionRow> for Session {
    fn from(r: &SessionRow) -> Self {
        Self {
            extension: r.extension.clone(),
            device_id: r.device_label.clone(),
            ip_address: r.ip_address.clone(),
            logged_in_at: r.logged_in_at,
            last_activity: r.last_activity,
            auto_logout_enabled: r.auto_logout_enabled,
        }
    }
}

/// The extension's profile a login returns (seed 000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Profile {
    pub extension: String,
    pub name: String,
    pub email: Option<String>,
    pub allow_external: bool,
    pub voicemail_enabled: bool,
    pub call_forwarding: Option<CallForwarding>,
    pub do_not_disturb: bool,
}

impl From<Extension> for Profile {
    fn from(e: Extension) -> Self {
        Self {
            extension: e.number,
            name: e.name,
            email: e.email,
            allow_external: e.allow_external,
            voicemail_enabled: e.voicemail_enabled,
            call_forwarding: e.call_forwarding,
            do_not_disturb: e.do_not_disturb,
        }
    }
}

/// Why a session ended (the `reason` of `hot_desk.logout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogoutReason {
    /// The user: `*56`, or the API by the extension or the device.
    User,
    /// An admin through the API.
    Admin,
    /// Idle for longer than `auto_logout_timeout`.
    AutoLogout,
    /// Another extension logged in at the device.
    Replaced,
    /// The extension logged in at another device (exclusive mode).
    Moved,
}

impl LogoutReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::AutoLogout => "auto_logout",
            Self::Replaced => "replaced",
            Self::Moved => "moved",
        }
    }
}

/// A login: by the API (`POST /api/hot-desk/login`) or by `*55` at a phone.
#[derive(Debug, Clone)]
pub struct Login {
    pub extension: String,
    pub device_id: String,
    pub ip_address: Option<String>,
    /// Checked against the voicemail PIN when `require_pin` is on.
    pub pin: Option<String>,
}

/// What logging out covers.
#[derive(Debug, Clone)]
pub enum LogoutOf {
    Device(String),
    Extension(String),
}

/// Why a hot-desk request was refused.
#[derive(Debug, thiserror::Error)]
pub enum HotDeskError {
    #[error("hot-desking is disabled")]
    Disabled,
    /// A wrong PIN and an unknown extension get the same answer, so numbers cannot
    /// be probed.
    #[error("invalid extension or PIN")]
    BadCredentials,
    #[error("extension {0} is deactivated")]
    Inactive(String),
    /// Exclusive mode with `exclusive_policy: reject`.
    #[error("Extension already logged in")]
    AlreadyLoggedIn { extension: String },
    /// Too many wrong PINs for the extension lately.
    #[error("too many failed PINs: hot-desk login for extension {extension} is locked for {} more minute(s)", retry_after.as_secs().div_ceil(60))]
    Locked {
        extension: String,
        retry_after: Duration,
    },
    #[error("{0}")]
    NotLoggedIn(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<sqlx::Error> for HotDeskError {
    fn from(e: sqlx::Error) -> Self {
        Self::Service(ServiceError::Store(e))
    }
}

type Result<T, E = HotDeskError> = std::result::Result<T, E>;

/// What a login did.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub profile: Profile,
    pub session: Session,
    /// The extension was already logged in at this device: the session was refreshed.
    pub refreshed: bool,
}

/// The seed's `hot_desk.login` data.
#[derive(Serialize)]
struct LoginEvent<'a> {
    device_id: &'a str,
    extension: &'a str,
    ip_address: Option<&'a str>,
    timestamp: Timestamp,
}

/// The seed's `hot_desk.logout` data, with `reason`.
#[derive(Serialize)]
struct LogoutEvent<'a> {
    device_id: &'a str,
    extension: &'a str,
    reason: &'static str,
    timestamp: Timestamp,
}

#[derive(Clone)]
pub struct HotDeskService {
    db: Db,
    extensions: ExtensionService,
    /// Tells the call engine's copy of the sessions (`sip_server::hot_desk`).
    changes: Changes,
    config: HotDeskingConfig,
    timezone: chrono_tz::Tz,
}

impl HotDeskService {
    pub fn new(db: Db, extensions: ExtensionService, changes: Changes, config: &Config) -> Self {
        Self {
            db,
            extensions,
            changes,
            config: config.features.hot_desking.clone(),
            timezone: config.timezone.parse().unwrap_or(chrono_tz::UTC),
        }
    }

    pub fn config(&self) -> &HotDeskingConfig {
        &self.config
    }

    /// Logs `login.extension` in at `login.device_id` (spec 05 "Login"): a device carries
    /// one extension (another one there is logged out, `replaced`); in exclusive mode
    /// an extension is at one device (its other session ends, `moved`, or the login
    /// fails with `exclusive_policy: reject`); a repeated login refreshes the session.
    pub async fn login(&self, login: &Login) -> Result<LoggedIn> {
        if !self.config.enabled {
            return Err(HotDeskError::Disabled);
        }
        check_number(&login.extension).map_err(|e| match e {
            ServiceError::Invalid { message, .. } => ServiceError::invalid("extension", message),
            other => other,
        })?;
        let device = device_key(&login.device_id)?;
        let ip = login.ip_address.as_deref().map(check_ip).transpose()?;
        let now = Timestamp::now();
        self.check_lock(&login.extension, now).await?;
        let row = crate::store::extensions::get(self.db.pool(), &login.extension).await?;
        if self.config.require_pin {
            let pin = login.pin.as_deref().unwrap_or_default();
            if pin.is_empty() || pin.len() > MAX_PIN_INPUT {
                return Err(
                    ServiceError::invalid("pin", "the voicemail PIN of the extension").into(),
                );
            }
            // Checked even for an unknown extension (it takes as long and says no).
            let right = self.extensions.verify_pin(&login.extension, pin).await?;
            if !right || row.is_none() || login.extension == "0" {
                self.pin_failed(&login.extension, ip.as_deref(), now)
                    .await?;
                return Err(HotDeskError::BadCredentials);
            }
        }
        // Extension 0 is the auto attendant: nobody logs in as it.
        let Some(row) = row.filter(|_| login.extension != "0") else {
            return Err(HotDeskError::BadCredentials);
        };
        if !row.active {
            return Err(HotDeskError::Inactive(login.extension.clone()));
        }
        let mut tx = self.db.begin().await?;
        let here = store::by_device(&mut *tx, &device).await?;
        if let Some(here) = here.as_ref().filter(|s| s.extension == login.extension) {
            store::touch(&mut tx, &device, now, ip.as_deref()).await?;
            tx.commit().await?;
            let mut session = Session::from(here);
            session.last_activity = now;
            if ip.is_some() {
                session.ip_address = ip;
            }
            return Ok(LoggedIn {
                profile: Extension::from(&row).into(),
                session,
                refreshed: true,
            });
        }
        if !self.config.allow_concurrent_logins {
            let elsewhere = store::by_extension(&mut *tx, &login.extension).await?;
            if !elsewhere.is_empty() && self.config.exclusive_policy == ExclusivePolicy::Reject {
                return Err(HotDeskError::AlreadyLoggedIn {
                    extension: login.extension.clone(),
                });
            }
            for s in &elsewhere {
                end(&mut tx, s, LogoutReason::Moved, now).await?;
            }
        }
        if let Some(other) = &here {
            end(&mut tx, other, LogoutReason::Replaced, now).await?;
        }
        let session = SessionRow {
            device_id: device,
            device_label: login.device_id.trim().to_owned(),
            extension: login.extension.clone(),
            session_id: uuid::Uuid::now_v7().to_string(),
            ip_address: ip,
            logged_in_at: now,
            last_activity: now,
            auto_logout_enabled: self.config.auto_logout_enabled,
        };
        if let Err(e) = store::insert(&mut tx, &session).await {
            // Another login at this device committed first.
            if db_store::is_unique_violation(&e) {
                return Err(ServiceError::conflict(
                    "concurrent_login",
                    "another login at this device happened at the same time; try again",
                )
                .into());
            }
            return Err(e.into());
        }
        let data = LoginEvent {
            device_id: &session.device_label,
            extension: &session.extension,
            ip_address: session.ip_address.as_deref(),
            timestamp: now,
        };
        emit(&mut tx, EventType::HotDeskLogin, &data).await?;
        tx.commit().await?;
        self.changes.hot_desk();
        tracing::info!(extension = %session.extension, device = %session.device_label, "hot-desk login");
        Ok(LoggedIn {
            profile: Extension::from(&row).into(),
            session: Session::from(&session),
            refreshed: false,
        })
    }

    /// Ends the sessions `of` names; gives the extension and how many ended.
    pub async fn logout(&self, of: &LogoutOf, reason: LogoutReason) -> Result<(String, usize)> {
        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        let (sessions, extension) = match of {
            LogoutOf::Device(id) => {
                let key = device_key(id)?;
                let found = store::by_device(&mut *tx, &key).await?;
                let extension = found.as_ref().map(|s| s.extension.clone());
                (found.into_iter().collect::<Vec<_>>(), extension)
            }
            LogoutOf::Extension(number) => {
                check_number(number)?;
                let found = store::by_extension(&mut *tx, number).await?;
                (found, Some(number.clone()))
            }
        };
        if sessions.is_empty() {
            let what = match of {
                LogoutOf::Device(id) => {
                    format!("no extension is logged in at device {}", id.trim())
                }
                LogoutOf::Extension(n) => format!("extension {n} is not logged in at any device"),
            };
            return Err(HotDeskError::NotLoggedIn(what));
        }
        for s in &sessions {
            end(&mut tx, s, reason, now).await?;
        }
        tx.commit().await?;
        self.changes.hot_desk();
        let extension = extension.unwrap_or_default();
        tracing::info!(%extension, devices = sessions.len(), reason = reason.as_str(), "hot-desk logout");
        Ok((extension, sessions.len()))
    }

    /// Every session, oldest first.
    pub async fn sessions(&self) -> Result<Vec<Session>, ServiceError> {
        Ok(store::all(self.db.pool())
            .await?
            .iter()
            .map(Session::from)
            .collect())
    }

    /// The session at `device_id`, if any.
    pub async fn session(&self, device_id: &str) -> Result<Option<Session>, ServiceError> {
        let key = device_key(device_id)?;
        Ok(store::by_device(self.db.pool(), &key)
            .await?
            .as_ref()
            .map(Session::from))
    }

    /// The sessions of `extension`.
    pub async fn sessions_of(&self, extension: &str) -> Result<Vec<Session>, ServiceError> {
        check_number(extension)?;
        Ok(store::by_extension(self.db.pool(), extension)
            .await?
            .iter()
            .map(Session::from)
            .collect())
    }

    /// Activity at `device_id` (a call, a feature code, the API): its idle time starts
    /// again.
    pub async fn activity(&self, device_id: &str) -> Result<Session> {
        let key = device_key(device_id)?;
        let mut tx = self.db.begin().await?;
        if !store::touch(&mut tx, &key, Timestamp::now(), None).await? {
            return Err(HotDeskError::NotLoggedIn(format!(
                "no extension is logged in at device {}",
                device_id.trim()
            )));
        }
        let session = store::by_device(&mut *tx, &key).await?;
        tx.commit().await?;
        session
            .as_ref()
            .map(Session::from)
            .ok_or_else(|| HotDeskError::NotLoggedIn(format!("device {device_id}")))
    }

    /// Logs out the sessions idle longer than `auto_logout_timeout` (the worker's turn,
    /// every `cleanup_interval`), and forgets failed PINs past their retention.
    /// Returns how many sessions ended.
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        store::prune_pin_failures(&mut tx, now.minus(PIN_FAILURE_RETENTION)).await?;
        tx.commit().await?;
        // 0: sessions never time out.
        if self.config.auto_logout_timeout == 0 {
            return Ok(0);
        }
        let idle_before = now.minus(Duration::from_secs(self.config.auto_logout_timeout));
        let idle = store::idle(self.db.pool(), idle_before).await?;
        let mut ended = 0;
        for s in &idle {
            let mut tx = self.db.begin().await?;
            // Activity between the read and now keeps the session: re-read it.
            let current = store::by_device(&mut *tx, &s.device_id).await?;
            let still_idle = current
                .as_ref()
                .is_some_and(|c| c.session_id == s.session_id && c.last_activity < idle_before);
            if still_idle && end(&mut tx, s, LogoutReason::AutoLogout, now).await? {
                ended += 1;
            }
            tx.commit().await?;
        }
        if ended > 0 {
            self.changes.hot_desk();
            tracing::info!(sessions = ended, "hot-desk auto-logout");
        }
        Ok(ended)
    }

    /// The login history, newest first.
    pub async fn history(
        &self,
        from: Timestamp,
        to: Timestamp,
        extension: Option<&str>,
        device_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, ServiceError> {
        if let Some(e) = extension {
            check_number(e)?;
        }
        let device = device_id.map(device_key).transpose()?;
        Ok(store::history(
            self.db.pool(),
            from,
            to,
            extension,
            device.as_deref(),
            limit,
        )
        .await?)
    }

    /// The usage report of `[from, to)` (seed "Monitoring & Reporting").
    pub async fn report(&self, from: Timestamp, to: Timestamp) -> Result<Report, ServiceError> {
        let history = store::history(self.db.pool(), from, to, None, None, i64::MAX).await?;
        let active = store::all(self.db.pool()).await?.len();
        let failures = store::pin_failures_between(self.db.pool(), from, to).await?;
        Ok(reports::build(
            &history,
            active,
            failures,
            from,
            to,
            self.timezone,
        ))
    }

    /// Whether a request from `ip` comes from device `device_id` itself: the address
    /// its session recorded, or that of a live registration carrying its MAC.
    pub async fn is_device_at(&self, device_id: &str, ip: &str) -> Result<bool, ServiceError> {
        let key = device_key(device_id)?;
        let session = store::by_device(self.db.pool(), &key).await?;
        if session.is_some_and(|s| s.ip_address.as_deref() == Some(ip)) {
            return Ok(true);
        }
        Ok(crate::store::registrations::mac_registered_from(
            self.db.pool(),
            &key,
            ip,
            Timestamp::now(),
        )
        .await?)
    }

    /// Refuses while the extension is locked out by failed PINs.
    async fn check_lock(&self, extension: &str, now: Timestamp) -> Result<()> {
        let since = now.minus(LOCKOUT_WINDOW);
        let (failures, latest) =
            store::pin_failures_since(self.db.pool(), extension, since).await?;
        if failures < i64::from(self.config.max_pin_failures) {
            return Ok(());
        }
        let until = latest.unwrap_or(now).plus(LOCKOUT_WINDOW);
        Err(HotDeskError::Locked {
            extension: extension.to_owned(),
            retry_after: until.since(now),
        })
    }

    async fn pin_failed(&self, extension: &str, ip: Option<&str>, now: Timestamp) -> Result<()> {
        let mut tx = self.db.begin().await?;
        store::add_pin_failure(&mut tx, extension, ip, now).await?;
        tx.commit().await?;
        tracing::warn!(
            extension,
            ip,
            "hot-desk login: wrong PIN or unknown extension"
        );
        Ok(())
    }
}

/// Ends session `s` with `reason` and its event; whether it was still there.
async fn end(
    conn: &mut Conn,
    s: &SessionRow,
    reason: LogoutReason,
    at: Timestamp,
) -> Result<bool, sqlx::Error> {
    if !store::end(conn, &s.device_id, &s.session_id, at, reason.as_str()).await? {
        return Ok(false);
    }
    let data = LogoutEvent {
        device_id: &s.device_label,
        extension: &s.extension,
        reason: reason.as_str(),
        timestamp: at,
    };
    emit(conn, EventType::HotDeskLogout, &data).await?;
    Ok(true)
}

fn check_ip(text: &str) -> Result<String, ServiceError> {
    text.trim()
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| ServiceError::invalid("ip_address", format!("`{text}` is not an IP address")))
}
