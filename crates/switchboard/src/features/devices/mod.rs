//! Devices (spec 11, seed 003): one-time enrolment tokens, devices that enrol with one
//! and then send heartbeats with their own secret, online/offline from those
//! heartbeats, and the devices' SSH keys.

pub mod ssh;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::events::{EventType, emit};
use super::{Actor, ServiceError};
use crate::config::{Config, DevicesConfig};
use crate::crypto;
use crate::store::devices::{self as store, DeviceRow, TokenRow};
use crate::store::{Db, extensions as ext_store};
use crate::time::Timestamp;

/// Upper case without 0/O and 1/I: read aloud or typed from a sticker.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const TOKEN_LEN: usize = 6;
const SECRET_PREFIX: &str = "sbd_";
/// Heartbeats a device may miss before it is offline.
const MISSED_HEARTBEATS: u64 = 3;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub token_code: String,
    pub note: Option<String>,
    pub extension: Option<String>,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> Self {
        Self {
            token_code: t.code,
            note: t.note,
            extension: t.extension,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
        }
    }
}

/// What a device says about itself at enrolment and in heartbeats (all optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    pub ip_address: Option<String>,
    pub ip_lan: Option<String>,
    pub ip_public: Option<String>,
    /// `xx:xx:xx:xx:xx:xx`.
    pub mac: Option<String>,
    pub hostname: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    pub device_key: String,
    /// `online` or `offline`.
    pub status: &'static str,
    pub extension: Option<String>,
    pub note: Option<String>,
    pub hostname: Option<String>,
    pub ip_address: Option<String>,
    pub ip_lan: Option<String>,
    pub ip_public: Option<String>,
    pub mac: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Timestamp>,
    pub has_ssh_key: bool,
}

impl From<DeviceRow> for DeviceView {
    fn from(d: DeviceRow) -> Self {
        Self {
            status: if d.online { "online" } else { "offline" },
            device_key: d.device_key,
            extension: d.extension,
            note: d.note,
            hostname: d.hostname,
            ip_address: d.ip_address,
            ip_lan: d.ip_lan,
            ip_public: d.ip_public,
            mac: d.mac,
            registered_at: d.registered_at,
            last_seen: d.last_seen,
            has_ssh_key: d.ssh_pubkey.is_some(),
        }
    }
}

#[derive(Clone)]
pub struct DeviceService {
    db: Db,
    config: DevicesConfig,
}

fn bad_ip(field: &str, value: &Option<String>) -> Result<(), ServiceError> {
    match value.as_deref().map(str::trim) {
        Some(v) if v.parse::<IpAddr>().is_err() => Err(ServiceError::invalid(
            field,
            format!("{v:?} is not an IPv4 or IPv6 address"),
        )),
        _ => Ok(()),
    }
}

/// The info with its fields checked and normalised; `prefix` names the body object
/// (`device_info.` at enrolment).
fn checked(info: DeviceInfo, prefix: &str) -> Result<DeviceInfo, ServiceError> {
    for (field, value) in [
        ("ip_address", &info.ip_address),
        ("ip_lan", &info.ip_lan),
        ("ip_public", &info.ip_public),
    ] {
        bad_ip(&format!("{prefix}{field}"), value)?;
    }
    let mac = match info.mac.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) => Some(mac(m).ok_or_else(|| {
            ServiceError::invalid(format!("{prefix}mac"), "a MAC address is xx:xx:xx:xx:xx:xx")
        })?),
    };
    for (field, value) in [("hostname", &info.hostname), ("note", &info.note)] {
        if value
            .as_deref()
            .is_some_and(|v| v.chars().count() > 255 || v.chars().any(char::is_control))
        {
            return Err(ServiceError::invalid(
                format!("{prefix}{field}"),
                "up to 255 printable characters",
            ));
        }
    }
    let trim = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(DeviceInfo {
        ip_address: trim(info.ip_address),
        ip_lan: trim(info.ip_lan),
        ip_public: trim(info.ip_public),
        mac,
        hostname: trim(info.hostname),
        note: trim(info.note),
    })
}

/// `xx:xx:xx:xx:xx:xx` (either case) in lower case.
fn mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| text.to_ascii_lowercase())
}

/// A device key as the seed makes them (`device-1a2b3c4d`) or any other short id.
fn check_key(key: &str) -> Result<(), ServiceError> {
    // "tokens" and "authorized-keys" are paths of their own under /api/devices.
    let ok = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !["tokens", "authorized-keys"].contains(&key);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "device_key",
            "1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A token as typed: trimmed and upper-cased; 6 characters of the alphabet.
fn token_code(typed: &str) -> Result<String, ServiceError> {
    let code = typed.trim().to_ascii_uppercase();
    if code.len() == TOKEN_LEN && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(code)
    } else {
        Err(ServiceError::invalid(
            "token_code",
            format!("an enrolment token is {TOKEN_LEN} letters and digits"),
        ))
    }
}

impl DeviceService {
    pub fn new(db: Db, config: &Config) -> Self {
        Self {
            db,
            config: config.devices.clone(),
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.config.heartbeat_interval)
    }

    pub async fn create_token(
        &self,
        by: &Actor,
        note: Option<String>,
        expires_in: Option<u64>,
        extension: Option<String>,
    ) -> Result<TokenView, ServiceError> {
        let expires_in = expires_in.unwrap_or(self.config.token_expiry);
        if !(60..=365 * 24 * 3600).contains(&expires_in) {
            return Err(ServiceError::invalid(
                "expires_in",
                "seconds, from 60 to a year",
            ));
        }
        if let Some(ext) = &extension
            && ext_store::get(self.db.pool(), ext).await?.is_none()
        {
            return Err(ServiceError::invalid(
                "extension",
                format!("extension {ext} does not exist"),
            ));
        }
        let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if note.as_deref().is_some_and(|n| n.chars().count() > 255) {
            return Err(ServiceError::invalid("note", "up to 255 characters"));
        }
        let now = Timestamp::now();
        let mut conn = self.db.pool().acquire().await?;
        // 32^6 codes: a clash with a live one is rare; try again when it happens.
        for _ in 0..5 {
            let row = TokenRow {
                code: crypto::random_string(TOKEN_LEN, TOKEN_ALPHABET),
                note: note.clone(),
                extension: extension.clone(),
                created_by: by.label(),
                created_at: now,
                expires_at: now.plus_secs(expires_in),
                used_at: None,
                used_by: None,
            };
            match store::insert_token(&mut conn, &row).await {
                Ok(()) => return Ok(row.into()),
                Err(e) if crate::store::is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::conflict(
            "token_space_full",
            "no free token code found; revoke unused tokens",
        ))
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, ServiceError> {
        Ok(store::open_tokens(self.db.pool(), Timestamp::now())
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect())
    }

    pub async fn revoke_token(&self, code: &str) -> Result<(), ServiceError> {
        let mut conn = self.db.pool().acquire().await?;
        if store::delete_token(&mut conn, &code.trim().to_ascii_uppercase()).await? {
            Ok(())
        } else {
            Err(ServiceError::not_found(format!("unused token {code}")))
        }
    }

    /// Enrols `device_key` with a token, burned in the same transaction; gives the
    /// device's secret (shown once, stored hashed). Refusals are for the caller to
    /// report to threat detection.
    pub async fn register(
        &self,
        device_key: &str,
        token: &str,
        info: DeviceInfo,
        from: Option<IpAddr>,
    ) -> Result<String, ServiceError> {
        check_key(device_key)?;
        let code = token_code(token)?;
        let info = checked(info, "device_info.")?;
        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        if store::device(&mut *tx, device_key).await?.is_some() {
            return Err(ServiceError::conflict_on(
                "device_registered",
                "device_key",
                format!("device {device_key} is registered already"),
            ));
        }
        if !store::burn_token(&mut tx, &code, device_key, now).await? {
            return Err(match store::token(&mut *tx, &code).await? {
                Some(t) if t.used_at.is_some() => ServiceError::conflict_on(
                    "token_used",
                    "token_code",
                    "this token was used already",
                ),
                _ => ServiceError::Unauthorized {
                    code: "invalid_token",
                    message: "the token is unknown or expired".into(),
                    field: Some("token_code"),
                },
            });
        }
        let token = store::token(&mut *tx, &code).await?;
        let secret = crypto::random_token(SECRET_PREFIX);
        let row = DeviceRow {
            device_key: device_key.to_owned(),
            secret_hash: crypto::sha256_hex(secret.as_bytes()),
            extension: token.as_ref().and_then(|t| t.extension.clone()),
            note: info.note.or_else(|| token.and_then(|t| t.note)),
            hostname: info.hostname,
            ip_address: info.ip_address.or_else(|| from.map(|ip| ip.to_string())),
            ip_lan: info.ip_lan,
            ip_public: info.ip_public,
            mac: info.mac,
            registered_at: now,
            ..Default::default()
        };
        store::insert_device(&mut tx, &row).await.map_err(|e| {
            if crate::store::is_unique_violation(&e) {
                ServiceError::conflict_on(
                    "device_registered",
                    "device_key",
                    "this device key is registered already",
                )
            } else {
                e.into()
            }
        })?;
        emit(
            &mut tx,
            EventType::DeviceRegistered,
            &json!({"device_key": device_key, "extension": row.extension, "token_code": code,
                    "ip_address": row.ip_address, "mac": row.mac, "hostname": row.hostname}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(device_key, token = code, "device registered");
        Ok(secret)
    }

    /// The device whose secret this is (constant-time compare of the hashes).
    pub async fn authenticate(
        &self,
        device_key: &str,
        secret: &str,
    ) -> Result<DeviceRow, ServiceError> {
        let unauthenticated = || ServiceError::Unauthorized {
            code: "invalid_device_secret",
            message: "send the device's secret: Authorization: Bearer <device_secret>".into(),
            field: None,
        };
        let device = store::device(self.db.pool(), device_key)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("device {device_key}")))?;
        let hash = crypto::sha256_hex(secret.as_bytes());
        if self.config.legacy_key_only_auth && secret.is_empty() {
            return Ok(device);
        }
        if crypto::constant_time_eq(hash.as_bytes(), device.secret_hash.as_bytes()) {
            Ok(device)
        } else {
            Err(unauthenticated())
        }
    }

    /// A heartbeat of an authenticated device: the fields recorded, `last_seen` now,
    /// `device.online` when it was offline.
    pub async fn heartbeat(
        &self,
        device: &DeviceRow,
        info: DeviceInfo,
        from: Option<IpAddr>,
    ) -> Result<DeviceView, ServiceError> {
        let info = checked(info, "")?;
        let now = Timestamp::now();
        let row = DeviceRow {
            device_key: device.device_key.clone(),
            ip_address: info.ip_address.or_else(|| from.map(|ip| ip.to_string())),
            ip_lan: info.ip_lan,
            ip_public: info.ip_public,
            mac: info.mac,
            note: info.note,
            ..Default::default()
        };
        let mut tx = self.db.begin().await?;
        if store::heartbeat(&mut tx, &row, now).await? {
            emit(
                &mut tx,
                EventType::DeviceOnline,
                &json!({"device_key": row.device_key, "ip_address": row.ip_address, "last_seen": now.to_rfc3339()}),
            )
            .await?;
        }
        let fresh = store::device(&mut *tx, &row.device_key)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("device {}", row.device_key)))?;
        tx.commit().await?;
        Ok(fresh.into())
    }

    /// Marks offline the devices that missed three heartbeats (a periodic worker).
    pub async fn sweep_offline(&self) -> Result<usize, ServiceError> {
        let silence = self.config.heartbeat_interval * MISSED_HEARTBEATS;
        let now = Timestamp::now();
        let mut tx = self.db.begin().await?;
        let gone = store::mark_offline(&mut tx, now.minus(Duration::from_secs(silence))).await?;
        for key in &gone {
            emit(
                &mut tx,
                EventType::DeviceOffline,
                &json!({"device_key": key, "missed_heartbeats": MISSED_HEARTBEATS}),
            )
            .await?;
        }
        tx.commit().await?;
        for key in &gone {
            tracing::info!(device_key = key, "device offline");
        }
        Ok(gone.len())
    }

    pub async fn get(&self, device_key: &str) -> Result<DeviceView, ServiceError> {
        store::device(self.db.pool(), device_key)
            .await?
            .map(DeviceView::from)
            .ok_or_else(|| ServiceError::not_found(format!("device {device_key}")))
    }

    /// Every device, filtered by status (`online`/`offline`) and extension.
    pub async fn list(
        &self,
        status: Option<&str>,
        extension: Option<&str>,
    ) -> Result<Vec<DeviceView>, ServiceError> {
        Ok(store::devices(self.db.pool())
            .await?
            .into_iter()
            .map(DeviceView::from)
            .filter(|d| status.is_none_or(|s| d.status == s))
            .filter(|d| extension.is_none_or(|e| d.extension.as_deref() == Some(e)))
            .collect())
    }

    /// Unregisters a device: its secret stops working.
    pub async fn delete(&self, by: &Actor, device_key: &str) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await?;
        if !store::delete_device(&mut tx, device_key).await? {
            return Err(ServiceError::not_found(format!("device {device_key}")));
        }
        emit(
            &mut tx,
            EventType::DeviceDeleted,
            &json!({"device_key": device_key, "actor": by.label()}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_ssh_key(
        &self,
        device_key: &str,
        pubkey: &str,
        ssh_user: Option<&str>,
    ) -> Result<(), ServiceError> {
        let pubkey =
            ssh::check_public_key(pubkey).map_err(|e| ServiceError::invalid("pubkey", e))?;
        if ssh_user.is_some_and(|u| {
            u.is_empty()
                || u.len() > 32
                || !u
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }) {
            return Err(ServiceError::invalid("ssh_user", "a Unix user name"));
        }
        let mut conn = self.db.pool().acquire().await?;
        store::set_ssh_key(&mut conn, device_key, &pubkey, ssh_user, Timestamp::now()).await?;
        Ok(())
    }

    pub async fn ssh_key(
        &self,
        device_key: &str,
    ) -> Result<(String, Option<String>), ServiceError> {
        let device = store::device(self.db.pool(), device_key)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("device {device_key}")))?;
        match device.ssh_pubkey {
            Some(key) => Ok((key, device.ssh_user)),
            None => Err(ServiceError::not_found(format!(
                "an SSH key of device {device_key}"
            ))),
        }
    }

    /// `authorized_keys` lines for every device with a key, named by device key.
    pub async fn authorized_keys(&self) -> Result<String, ServiceError> {
        Ok(store::devices(self.db.pool())
            .await?
            .into_iter()
            .filter_map(|d| {
                d.ssh_pubkey
                    .map(|k| format!("{} {}\n", ssh::without_comment(&k), d.device_key))
            })
            .collect())
    }

    /// The server's SSH host keys in `ssh-keyscan` form (`host type base64`).
    pub fn ssh_host_keys(&self, host: &str) -> Result<String, ServiceError> {
        let keys = ssh::host_keys(&self.config.ssh_host_key_files);
        if keys.is_empty() {
            return Err(ServiceError::not_found(
                "an SSH host key (devices.ssh_host_key_files)",
            ));
        }
        Ok(keys
            .iter()
            .map(|k| format!("{host} {}\n", ssh::without_comment(k)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_is_checked_field_by_field() {
        let err = checked(
            DeviceInfo {
                ip_address: Some("10.0.0.300".into()),
                ..Default::default()
            },
            "device_info.",
        )
        .unwrap_err();
        assert!(
            matches!(err, ServiceError::Invalid { ref field, .. } if field == "device_info.ip_address")
        );
        let err = checked(
            DeviceInfo {
                mac: Some("00-11-22-33-44-55".into()),
                ..Default::default()
            },
            "",
        )
        .unwrap_err();
        assert!(matches!(err, ServiceError::Invalid { ref field, .. } if field == "mac"));
        let ok = checked(
            DeviceInfo {
                ip_lan: Some(" 192.168.1.20 ".into()),
                mac: Some("00:1A:2b:3C:4d:5E".into()),
                ..Default::default()
            },
            "",
        )
        .unwrap();
        assert_eq!(ok.mac.as_deref(), Some("00:1a:2b:3c:4d:5e"));
        assert_eq!(ok.ip_lan.as_deref(), Some("192.168.1.20"));
        assert!(token_code(" abc123 ").is_ok());
        assert!(token_code("ABC12").is_err());
        assert!(check_key("device-1a2b3c4d").is_ok());
        assert!(check_key("../etc").is_err());
        assert!(check_key("tokens").is_err());
    }
}
