//! Multi-factor authentication (spec 07): TOTP, backup codes, YubiKey OTP and FIDO2
//! security keys, enrolled per extension and asked for at login (see docs/mfa.md).
//!
//! An extension "has MFA" while it has a primary method (active TOTP, a YubiKey, a
//! FIDO2 key); backup codes only stand in for one. The login's second step and
//! `POST /api/mfa/verify` run the same check, and every wrong second factor is
//! reported to threat detection.

pub mod backup_codes;
pub mod qr;
pub mod totp;
pub mod webauthn;
pub mod yubikey;

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use webauthn_rs::prelude::{SecurityKey, Uuid, Webauthn};

use super::events::{EventType, emit};
use super::security::{Protocol, Signal, ThreatService};
use super::{Actor, ServiceError};
use crate::config::Config;
use crate::config::MfaConfig;
use crate::crypto::{self, master_key::MasterKey};
use crate::role::Role;
use crate::store::mfa::{self as store, ChallengeRow, Fido2Row, YubikeyRow};
use crate::store::{Conn, Db, extensions as ext_store};
use crate::time::Timestamp;
use yubikey::{YubikeyClient, YubikeyError};

const MFA_TOKEN_PREFIX: &str = "sbm_";
/// How long a login waits for its second factor, and a key registration for its key.
const CHALLENGE_SECS: u64 = 300;
/// Wrong second factors one login may try before it must start again.
const MAX_FAILURES: i64 = 5;
const LOGIN: &str = "login";
const FIDO2_REGISTRATION: &str = "fido2_registration";
const BACKUP_LABEL: &str = "mfa backup code";

/// A second factor, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Totp,
    BackupCode,
    Yubikey,
    Fido2,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::BackupCode => "backup_code",
            Self::Yubikey => "yubikey",
            Self::Fido2 => "fido2",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrollment {
    /// Base32, for typing into an app that cannot scan.
    pub secret: String,
    pub provisioning_uri: String,
    pub qr_svg: String,
    /// PNG, base64.
    pub qr_png: String,
}

/// `none`, `pending` (enrolled, not yet verified) or `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TotpState {
    None,
    Pending,
    Active,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    pub extension: String,
    /// Whether a second factor is asked for at login.
    pub enabled: bool,
    /// Whether the configuration makes this extension enrol.
    pub required: bool,
    pub methods: Vec<Method>,
    pub totp: TotpState,
    pub backup_codes_remaining: i64,
    pub yubikeys: usize,
    pub fido2_keys: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpInfo {
    pub status: TotpState,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodesInfo {
    pub remaining: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct YubikeyInfo {
    pub public_id: String,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Fido2Info {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MfaMethods {
    pub extension: String,
    /// What the extension can log in with.
    pub methods: Vec<Method>,
    /// What this server lets one enrol (YubiKey OTP and security keys depend on the
    /// configuration).
    pub available: Vec<Method>,
    pub totp: TotpInfo,
    pub backup_codes: BackupCodesInfo,
    pub yubikeys: Vec<YubikeyInfo>,
    pub fido2: Vec<Fido2Info>,
}

/// What a login with a correct password and MFA answers instead of a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaChallenge {
    pub mfa_required: bool,
    pub mfa_token: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub methods: Vec<Method>,
    /// WebAuthn request options (`navigator.credentials.get`), when the extension has
    /// security keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

/// A second factor sent to the login's second step.
pub enum Answer {
    /// TOTP, backup code or YubiKey OTP, told apart by shape.
    Code(String),
    /// A WebAuthn assertion.
    Credential(serde_json::Value),
}

#[derive(Clone)]
pub struct MfaService {
    db: Db,
    key: Arc<MasterKey>,
    config: MfaConfig,
    yubikey: YubikeyClient,
    /// `None` when FIDO2 is off or the configuration names no usable relying party
    /// (`fido2_unavailable` says why).
    webauthn: Option<Arc<Webauthn>>,
    fido2_unavailable: String,
    threats: Arc<ThreatService>,
}

fn wrong_code(field: &'static str) -> ServiceError {
    ServiceError::Unauthorized {
        code: "invalid_second_factor",
        message: format!("{field}: the second factor is wrong, expired or already used"),
        field: Some(field),
    }
}

fn token_invalid() -> ServiceError {
    ServiceError::Unauthorized {
        code: "mfa_token_invalid",
        message: "the login expired, was used or had too many wrong codes; log in again".into(),
        field: None,
    }
}

fn bad_state(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Files(format!("MFA ceremony state: {e}"))
}

impl MfaService {
    /// A FIDO2 relying party the configuration cannot give (the default with a panel
    /// reached by IP address; explicit settings are checked with the configuration)
    /// leaves security keys off, with a warning.
    pub fn new(db: Db, key: Arc<MasterKey>, config: &Config, threats: Arc<ThreatService>) -> Self {
        let mfa = &config.security.mfa;
        let (webauthn, fido2_unavailable) = if !mfa.fido2.enabled {
            (
                None,
                "security keys are turned off (security.mfa.fido2.enabled)".to_owned(),
            )
        } else {
            match webauthn::relying_party(config) {
                Ok(rp) => (Some(Arc::new(rp)), String::new()),
                Err(e) => {
                    tracing::warn!("security keys are unavailable: {e}");
                    (None, e)
                }
            }
        };
        Self {
            db,
            key,
            config: mfa.clone(),
            yubikey: YubikeyClient::new(&mfa.yubikey),
            webauthn,
            fido2_unavailable,
            threats,
        }
    }

    fn check_enabled(&self) -> Result<(), ServiceError> {
        if self.config.enabled {
            Ok(())
        } else {
            Err(ServiceError::forbidden(
                "mfa_disabled",
                "multi-factor authentication is turned off (security.mfa.enabled)",
            ))
        }
    }

    fn rp(&self) -> Result<&Webauthn, ServiceError> {
        self.webauthn.as_deref().ok_or_else(|| {
            ServiceError::conflict("fido2_unavailable", self.fido2_unavailable.clone())
        })
    }

    async fn existing(&self, extension: &str) -> Result<(), ServiceError> {
        match ext_store::get(self.db.pool(), extension).await? {
            Some(_) => Ok(()),
            None => Err(ServiceError::not_found(format!("extension {extension}"))),
        }
    }

    /// Whether a login of this extension must give a second factor.
    pub async fn has_mfa(&self, extension: &str) -> Result<bool, ServiceError> {
        Ok(self.config.enabled && store::has_primary(self.db.pool(), extension).await?)
    }

    /// Whether the configuration makes `role` enrol.
    pub fn required_for(&self, role: Role) -> bool {
        self.config.enabled && (self.config.required || self.config.required_for.contains(&role))
    }

    /// Whether this caller must enrol before anything else works.
    pub async fn enrollment_required(
        &self,
        extension: &str,
        role: Role,
    ) -> Result<bool, ServiceError> {
        Ok(self.required_for(role) && !store::has_primary(self.db.pool(), extension).await?)
    }

    async fn yubikey_rows(&self, extension: &str) -> Result<Vec<YubikeyRow>, ServiceError> {
        Ok(store::yubikeys(self.db.pool(), extension).await?)
    }

    async fn security_keys(
        &self,
        extension: &str,
    ) -> Result<Vec<(Fido2Row, SecurityKey)>, ServiceError> {
        store::fido2_keys(self.db.pool(), extension)
            .await?
            .into_iter()
            .map(|row| {
                let key = serde_json::from_str(&row.credential).map_err(bad_state)?;
                Ok((row, key))
            })
            .collect()
    }

    /// The methods this server enrols.
    fn available(&self) -> Vec<Method> {
        let mut methods = Vec::new();
        if self.config.enabled {
            methods.extend([Method::Totp, Method::BackupCode]);
            if self.config.yubikey.enabled {
                methods.push(Method::Yubikey);
            }
            if self.webauthn.is_some() {
                methods.push(Method::Fido2);
            }
        }
        methods
    }

    /// The methods a login of this extension can answer with.
    async fn usable_methods(&self, extension: &str) -> Result<Vec<Method>, ServiceError> {
        let totp = store::totp(self.db.pool(), extension).await?;
        let (backup_left, _) = store::backup_codes_left(self.db.pool(), extension).await?;
        let yubikeys = self.yubikey_rows(extension).await?;
        let fido2 = store::fido2_keys(self.db.pool(), extension).await?;
        let mut methods = Vec::new();
        if totp.is_some_and(|t| t.active) {
            methods.push(Method::Totp);
        }
        if backup_left > 0 {
            methods.push(Method::BackupCode);
        }
        if !yubikeys.is_empty() && self.config.yubikey.enabled {
            methods.push(Method::Yubikey);
        }
        if !fido2.is_empty() && self.webauthn.is_some() {
            methods.push(Method::Fido2);
        }
        Ok(methods)
    }

    pub async fn status(&self, extension: &str, role: Role) -> Result<MfaStatus, ServiceError> {
        self.existing(extension).await?;
        let totp = store::totp(self.db.pool(), extension).await?;
        let (backup_left, _) = store::backup_codes_left(self.db.pool(), extension).await?;
        Ok(MfaStatus {
            extension: extension.to_owned(),
            enabled: self.has_mfa(extension).await?,
            required: self.required_for(role),
            methods: self.usable_methods(extension).await?,
            totp: totp_state(totp.as_ref()),
            backup_codes_remaining: backup_left,
            yubikeys: self.yubikey_rows(extension).await?.len(),
            fido2_keys: store::fido2_keys(self.db.pool(), extension).await?.len(),
        })
    }

    pub async fn methods(&self, extension: &str) -> Result<MfaMethods, ServiceError> {
        self.existing(extension).await?;
        let totp = store::totp(self.db.pool(), extension).await?;
        let (remaining, created_at) = store::backup_codes_left(self.db.pool(), extension).await?;
        Ok(MfaMethods {
            extension: extension.to_owned(),
            methods: self.usable_methods(extension).await?,
            available: self.available(),
            totp: TotpInfo {
                status: totp_state(totp.as_ref()),
                created_at: totp.as_ref().map(|t| t.created_at),
                last_used_at: totp.as_ref().and_then(|t| t.last_used_at),
            },
            backup_codes: BackupCodesInfo {
                remaining,
                created_at,
            },
            yubikeys: self
                .yubikey_rows(extension)
                .await?
                .into_iter()
                .map(|y| YubikeyInfo {
                    public_id: y.public_id,
                    name: y.name,
                    created_at: y.created_at,
                    last_used_at: y.last_used_at,
                })
                .collect(),
            fido2: store::fido2_keys(self.db.pool(), extension)
                .await?
                .into_iter()
                .map(|k| Fido2Info {
                    id: k.id,
                    name: k.name,
                    created_at: k.created_at,
                    last_used_at: k.last_used_at,
                })
                .collect(),
        })
    }

    /// Starts (or restarts) a TOTP enrolment: a new secret, pending until verified.
    pub async fn enroll_totp(&self, extension: &str) -> Result<TotpEnrollment, ServiceError> {
        self.check_enabled()?;
        self.existing(extension).await?;
        let secret = totp::new_secret();
        let (base32, uri) = totp::provisioning(&secret, &self.config.issuer, extension)
            .map_err(|e| ServiceError::invalid("extension", e))?;
        let mut conn = self.db.pool().acquire().await?;
        let stored = self.key.encrypt(&secret);
        if !store::put_pending_totp(&mut conn, extension, &stored, Timestamp::now()).await? {
            return Err(ServiceError::conflict(
                "already_enrolled",
                "an authenticator app is active already; disable it first to enrol another",
            ));
        }
        Ok(TotpEnrollment {
            secret: base32,
            qr_svg: qr::svg(&uri).map_err(ServiceError::Files)?,
            qr_png: qr::png_base64(&uri).map_err(ServiceError::Files)?,
            provisioning_uri: uri,
        })
    }

    /// Activates a pending TOTP enrolment with a code from the app; gives a fresh set
    /// of backup codes.
    pub async fn verify_enrollment(
        &self,
        by: &Actor,
        extension: &str,
        code: &str,
        ip: Option<IpAddr>,
    ) -> Result<Vec<String>, ServiceError> {
        self.check_enabled()?;
        let Some(row) = store::totp(self.db.pool(), extension)
            .await?
            .filter(|t| !t.active)
        else {
            return Err(ServiceError::conflict(
                "no_pending_enrollment",
                "there is no pending authenticator enrolment: POST /api/mfa/enroll first",
            ));
        };
        let step = self
            .secret_step(&row.secret, code)?
            .ok_or_else(|| self.failed(ip, "code"))?;
        let mut tx = self.db.begin().await?;
        if !store::take_totp_step(&mut tx, extension, step, true, Timestamp::now()).await? {
            return Err(self.failed(ip, "code"));
        }
        let codes = self.issue_backup_codes(&mut tx, extension).await?;
        added(&mut tx, by, extension, Method::Totp, "authenticator app").await?;
        tx.commit().await?;
        tracing::info!(extension, actor = %by.label(), "MFA: authenticator app enrolled");
        Ok(codes)
    }

    fn secret_step(&self, stored: &str, code: &str) -> Result<Option<i64>, ServiceError> {
        let secret = self.key.decrypt(stored).map_err(bad_state)?;
        let now = u64::try_from(Timestamp::now().millis() / 1000).unwrap_or(0);
        Ok(totp::matching_step(&secret, code, now))
    }

    async fn issue_backup_codes(
        &self,
        conn: &mut Conn,
        extension: &str,
    ) -> Result<Vec<String>, ServiceError> {
        let codes = backup_codes::generate(self.config.backup_codes);
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| self.backup_hash(extension, c))
            .collect();
        store::replace_backup_codes(conn, extension, &hashes, Timestamp::now()).await?;
        Ok(codes)
    }

    /// After a YubiKey or security key is stored in `conn`: backup codes when it is
    /// the extension's `first` primary method (shown once), and the event.
    async fn primary_added(
        &self,
        conn: &mut Conn,
        by: &Actor,
        extension: &str,
        method: Method,
        name: &str,
        first: bool,
    ) -> Result<Option<Vec<String>>, ServiceError> {
        let codes = match first {
            true => Some(self.issue_backup_codes(conn, extension).await?),
            false => None,
        };
        added(conn, by, extension, method, name).await?;
        Ok(codes)
    }

    fn backup_hash(&self, extension: &str, code: &str) -> String {
        self.key
            .keyed_hash(BACKUP_LABEL, format!("{extension}:{code}").as_bytes())
    }

    /// Replaces the backup codes (the extension must have MFA).
    pub async fn regenerate_backup_codes(
        &self,
        by: &Actor,
        extension: &str,
    ) -> Result<Vec<String>, ServiceError> {
        self.check_enabled()?;
        self.existing(extension).await?;
        let mut tx = self.db.begin().await?;
        if !store::has_primary(&mut *tx, extension).await? {
            return Err(ServiceError::conflict(
                "mfa_not_enabled",
                "backup codes stand in for a second factor: enrol one first",
            ));
        }
        let codes = self.issue_backup_codes(&mut tx, extension).await?;
        added(&mut tx, by, extension, Method::BackupCode, "backup codes").await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Checks (and uses up) a TOTP code, backup code or YubiKey OTP of the extension.
    /// `None` when it is wrong; reported to threat detection then.
    pub async fn verify_code(
        &self,
        extension: &str,
        code: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<Method>, ServiceError> {
        let method = self.check_code(extension, code.trim()).await?;
        if method.is_none() {
            self.signal(ip);
        }
        Ok(method)
    }

    async fn check_code(
        &self,
        extension: &str,
        code: &str,
    ) -> Result<Option<Method>, ServiceError> {
        if !self.config.enabled {
            return Ok(None);
        }
        let now = Timestamp::now();
        if totp::is_code_shape(code) {
            let Some(row) = store::totp(self.db.pool(), extension)
                .await?
                .filter(|t| t.active)
            else {
                return Ok(None);
            };
            let Some(step) = self.secret_step(&row.secret, code)? else {
                return Ok(None);
            };
            let mut conn = self.db.pool().acquire().await?;
            let fresh = store::take_totp_step(&mut conn, extension, step, false, now).await?;
            return Ok(fresh.then_some(Method::Totp));
        }
        if let Some(code) = backup_codes::normalise(code) {
            if !store::has_primary(self.db.pool(), extension).await? {
                return Ok(None);
            }
            let mut conn = self.db.pool().acquire().await?;
            let hash = self.backup_hash(extension, &code);
            let taken = store::take_backup_code(&mut conn, extension, &hash, now).await?;
            return Ok(taken.then_some(Method::BackupCode));
        }
        if self.config.yubikey.enabled
            && let Some(public_id) = yubikey::public_id(code)
        {
            let owner = store::yubikey(self.db.pool(), &public_id).await?;
            if owner.is_none_or(|y| y.extension != extension) {
                return Ok(None);
            }
            return match self.yubikey.verify(code).await {
                Ok(()) => {
                    store::touch_yubikey(self.db.pool(), &public_id, now).await?;
                    Ok(Some(Method::Yubikey))
                }
                Err(e) => {
                    tracing::warn!(extension, public_id, "YubiKey OTP refused: {e}");
                    Ok(None)
                }
            };
        }
        Ok(None)
    }

    fn signal(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.threats
                .signal(ip, Protocol::Http, Signal::FailedAuth("second factor"));
        }
    }

    /// A wrong second factor: reported, and the error naming `field`.
    fn failed(&self, ip: Option<IpAddr>, field: &'static str) -> ServiceError {
        self.signal(ip);
        wrong_code(field)
    }

    /// Removes every method (and a pending enrolment). A user with MFA needs a current
    /// second factor (`code`); an admin turning off another user's MFA (a lost phone)
    /// does not.
    pub async fn disable(
        &self,
        by: &Actor,
        extension: &str,
        code: Option<&str>,
        needs_code: bool,
        ip: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        self.existing(extension).await?;
        if needs_code && store::has_primary(self.db.pool(), extension).await? {
            let code = code.ok_or_else(|| {
                ServiceError::invalid("code", "give a current second factor to turn MFA off")
            })?;
            if self.verify_code(extension, code, ip).await?.is_none() {
                return Err(wrong_code("code"));
            }
        }
        let mut tx = self.db.begin().await?;
        store::delete_all(&mut tx, extension).await?;
        emit(
            &mut tx,
            EventType::MfaDisabled,
            &json!({"extension": extension, "actor": by.label()}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(extension, actor = %by.label(), "MFA: disabled");
        Ok(())
    }

    /// Binds a YubiKey (by the public id of a valid OTP) to the extension. Gives the
    /// backup codes when this is the extension's first primary method.
    pub async fn enroll_yubikey(
        &self,
        by: &Actor,
        extension: &str,
        otp: &str,
        name: Option<&str>,
    ) -> Result<(YubikeyInfo, Option<Vec<String>>), ServiceError> {
        self.check_enabled()?;
        if !self.config.yubikey.enabled {
            return Err(ServiceError::conflict(
                "yubikey_disabled",
                "YubiKey OTP is turned off (security.mfa.yubikey.enabled)",
            ));
        }
        self.existing(extension).await?;
        let otp = otp.trim();
        let public_id = yubikey::public_id(otp).ok_or_else(|| {
            ServiceError::invalid(
                "otp",
                "a YubiKey OTP is 32 to 48 ModHex characters (touch the key)",
            )
        })?;
        if store::yubikey(self.db.pool(), &public_id).await?.is_some() {
            return Err(ServiceError::conflict_on(
                "already_enrolled",
                "otp",
                format!("the YubiKey {public_id} is enrolled already"),
            ));
        }
        self.yubikey.verify(otp).await.map_err(|e| match e {
            YubikeyError::Unavailable(why) => ServiceError::conflict(
                "yubikey_unavailable",
                format!("no YubiKey validation server answered: {why}"),
            ),
            other => ServiceError::invalid(
                "otp",
                format!("the validation server refused the OTP: {other}"),
            ),
        })?;
        let name = clean_name(name, "YubiKey")?;
        let row = YubikeyRow {
            public_id,
            extension: extension.to_owned(),
            name,
            created_at: Timestamp::now(),
            last_used_at: None,
        };
        let mut tx = self.db.begin().await?;
        let first = !store::has_primary(&mut *tx, extension).await?;
        store::insert_yubikey(&mut tx, &row)
            .await
            .map_err(enrolled_already("otp", "this YubiKey is enrolled already"))?;
        let codes = self
            .primary_added(&mut tx, by, extension, Method::Yubikey, &row.name, first)
            .await?;
        tx.commit().await?;
        tracing::info!(
            extension,
            public_id = row.public_id,
            "MFA: YubiKey enrolled"
        );
        Ok((
            YubikeyInfo {
                public_id: row.public_id,
                name: row.name,
                created_at: row.created_at,
                last_used_at: None,
            },
            codes,
        ))
    }

    pub async fn remove_yubikey(
        &self,
        by: &Actor,
        extension: &str,
        public_id: &str,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await?;
        if !store::delete_yubikey(&mut tx, extension, public_id).await? {
            return Err(ServiceError::not_found(format!(
                "YubiKey {public_id} of extension {extension}"
            )));
        }
        removed(&mut tx, by, extension, Method::Yubikey, public_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The first half of a security key registration: options for the browser.
    pub async fn start_fido2_registration(
        &self,
        extension: &str,
        name: &str,
    ) -> Result<serde_json::Value, ServiceError> {
        self.check_enabled()?;
        let rp = self.rp()?;
        let row = ext_store::get(self.db.pool(), extension)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("extension {extension}")))?;
        let name = clean_name(Some(name), "Security key")?;
        let existing: Vec<SecurityKey> = self
            .security_keys(extension)
            .await?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let ceremony = webauthn::start_registration(
            rp,
            self.user_id(extension),
            extension,
            &row.name,
            &existing,
        )
        .map_err(|e| ServiceError::conflict("fido2_unavailable", e))?;
        let state = json!({"name": name, "state": ceremony.state}).to_string();
        let mut conn = self.db.pool().acquire().await?;
        store::put_challenge(
            &mut conn,
            &ChallengeRow {
                id: format!("fido2:{extension}"),
                kind: FIDO2_REGISTRATION.into(),
                extension: extension.to_owned(),
                state: Some(state),
                failures: 0,
                expires_at: Timestamp::now().plus_secs(CHALLENGE_SECS),
            },
        )
        .await?;
        Ok(ceremony.options)
    }

    /// The second half: the browser's attestation. Gives the backup codes when this
    /// is the extension's first primary method.
    pub async fn finish_fido2_registration(
        &self,
        by: &Actor,
        extension: &str,
        credential: serde_json::Value,
    ) -> Result<(Fido2Info, Option<Vec<String>>), ServiceError> {
        self.check_enabled()?;
        let rp = self.rp()?;
        let id = format!("fido2:{extension}");
        let challenge = store::challenge(self.db.pool(), &id, FIDO2_REGISTRATION, Timestamp::now())
            .await?
            .ok_or_else(|| {
                ServiceError::conflict(
                    "no_pending_enrollment",
                    "no security key registration is waiting (or it expired): POST /api/mfa/enroll-fido2 first",
                )
            })?;
        let saved: serde_json::Value =
            serde_json::from_str(challenge.state.as_deref().unwrap_or("")).map_err(bad_state)?;
        let (Some(name), Some(state)) = (saved["name"].as_str(), saved["state"].as_str()) else {
            return Err(bad_state("registration state without name or state"));
        };
        let key = webauthn::finish_registration(rp, credential, state)
            .map_err(|e| ServiceError::invalid("credential", e))?;
        let row = Fido2Row {
            id: Uuid::now_v7().to_string(),
            extension: extension.to_owned(),
            credential_id: webauthn::credential_id(&key),
            name: name.to_owned(),
            credential: serde_json::to_string(&key).map_err(bad_state)?,
            created_at: Timestamp::now(),
            last_used_at: None,
        };
        let mut tx = self.db.begin().await?;
        if !store::take_challenge(&mut *tx, &id).await? {
            return Err(ServiceError::conflict(
                "no_pending_enrollment",
                "this registration was completed already",
            ));
        }
        let first = !store::has_primary(&mut *tx, extension).await?;
        store::insert_fido2(&mut tx, &row)
            .await
            .map_err(enrolled_already(
                "credential",
                "this security key is registered already",
            ))?;
        let codes = self
            .primary_added(&mut tx, by, extension, Method::Fido2, &row.name, first)
            .await?;
        tx.commit().await?;
        tracing::info!(extension, key = row.id, "MFA: security key registered");
        Ok((
            Fido2Info {
                id: row.id,
                name: row.name,
                created_at: row.created_at,
                last_used_at: None,
            },
            codes,
        ))
    }

    pub async fn remove_fido2(
        &self,
        by: &Actor,
        extension: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await?;
        let Some(name) = store::delete_fido2(&mut tx, extension, id).await? else {
            return Err(ServiceError::not_found(format!(
                "security key {id} of extension {extension}"
            )));
        };
        removed(&mut tx, by, extension, Method::Fido2, &name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A stable, opaque WebAuthn user handle for the extension (not its number).
    fn user_id(&self, extension: &str) -> Uuid {
        let hash = self
            .key
            .keyed_hash("webauthn user handle", extension.as_bytes());
        let bytes = hex::decode(&hash[..32]).unwrap_or_default();
        Uuid::from_slice(&bytes).unwrap_or_default()
    }

    /// After a correct password: the challenge to answer, or `None` when the
    /// extension has no MFA.
    pub async fn start_login(&self, extension: &str) -> Result<Option<MfaChallenge>, ServiceError> {
        if !self.has_mfa(extension).await? {
            return Ok(None);
        }
        let methods = self.usable_methods(extension).await?;
        let (webauthn, state) = match (&self.webauthn, methods.contains(&Method::Fido2)) {
            (Some(rp), true) => {
                let keys: Vec<SecurityKey> = self
                    .security_keys(extension)
                    .await?
                    .into_iter()
                    .map(|(_, k)| k)
                    .collect();
                let ceremony = webauthn::start_authentication(rp, &keys).map_err(bad_state)?;
                (Some(ceremony.options), Some(ceremony.state))
            }
            _ => (None, None),
        };
        let token = crypto::random_token(MFA_TOKEN_PREFIX);
        let expires_at = Timestamp::now().plus_secs(CHALLENGE_SECS);
        let mut conn = self.db.pool().acquire().await?;
        store::put_challenge(
            &mut conn,
            &ChallengeRow {
                id: crypto::sha256_hex(token.as_bytes()),
                kind: LOGIN.into(),
                extension: extension.to_owned(),
                state,
                failures: 0,
                expires_at,
            },
        )
        .await?;
        Ok(Some(MfaChallenge {
            mfa_required: true,
            mfa_token: token,
            expires_at,
            methods,
            webauthn,
        }))
    }

    /// The login's second step: gives the extension to issue a session for. The
    /// token is good once; wrong answers are counted and reported.
    pub async fn finish_login(
        &self,
        mfa_token: &str,
        answer: Answer,
        ip: Option<IpAddr>,
    ) -> Result<String, ServiceError> {
        let id = crypto::sha256_hex(mfa_token.trim().as_bytes());
        let challenge = store::challenge(self.db.pool(), &id, LOGIN, Timestamp::now())
            .await?
            .ok_or_else(token_invalid)?;
        let extension = challenge.extension.clone();
        let (ok, field) = match answer {
            Answer::Code(code) => (
                self.check_code(&extension, code.trim()).await?.is_some(),
                "code",
            ),
            Answer::Credential(assertion) => (
                self.check_assertion(&challenge, assertion).await?,
                "credential",
            ),
        };
        if !ok {
            let failures = store::fail_challenge(self.db.pool(), &id).await?;
            if failures >= MAX_FAILURES {
                store::take_challenge(self.db.pool(), &id).await?;
            }
            return Err(self.failed(ip, field));
        }
        if !store::take_challenge(self.db.pool(), &id).await? {
            return Err(token_invalid());
        }
        Ok(extension)
    }

    async fn check_assertion(
        &self,
        challenge: &ChallengeRow,
        assertion: serde_json::Value,
    ) -> Result<bool, ServiceError> {
        let (Some(rp), Some(state)) = (&self.webauthn, &challenge.state) else {
            return Ok(false);
        };
        let rows = self.security_keys(&challenge.extension).await?;
        let keys: Vec<SecurityKey> = rows.iter().map(|(_, k)| k.clone()).collect();
        match webauthn::finish_authentication(rp, assertion, state, &keys) {
            Ok((credential_id, key)) => {
                let stored = serde_json::to_string(&key).map_err(bad_state)?;
                store::update_fido2_use(self.db.pool(), &credential_id, &stored, Timestamp::now())
                    .await?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(
                    extension = challenge.extension,
                    "security key assertion refused: {e}"
                );
                Ok(false)
            }
        }
    }

    /// Deletes challenges past their time (a periodic worker; lookups refuse them too).
    pub async fn sweep_expired(&self) -> Result<u64, ServiceError> {
        Ok(store::delete_expired_challenges(self.db.pool(), Timestamp::now()).await?)
    }
}

fn totp_state(row: Option<&store::TotpRow>) -> TotpState {
    match row {
        None => TotpState::None,
        Some(t) if t.active => TotpState::Active,
        Some(_) => TotpState::Pending,
    }
}

/// A key stored twice (its unique id) as the API's conflict on `field`.
fn enrolled_already(
    field: &'static str,
    message: &'static str,
) -> impl FnOnce(sqlx::Error) -> ServiceError {
    move |e| {
        if crate::store::is_unique_violation(&e) {
            ServiceError::conflict_on("already_enrolled", field, message)
        } else {
            e.into()
        }
    }
}

fn clean_name(name: Option<&str>, default: &str) -> Result<String, ServiceError> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(default);
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "a name of up to 64 printable characters",
        ));
    }
    Ok(name.to_owned())
}

async fn added(
    conn: &mut Conn,
    by: &Actor,
    extension: &str,
    method: Method,
    name: &str,
) -> Result<(), ServiceError> {
    emit(
        conn,
        EventType::MfaMethodAdded,
        &json!({"extension": extension, "method": method.as_str(), "name": name, "actor": by.label()}),
    )
    .await?;
    Ok(())
}

/// Records a removal; removing the last primary method turns MFA off (its backup
/// codes go with it).
async fn removed(
    conn: &mut Conn,
    by: &Actor,
    extension: &str,
    method: Method,
    name: &str,
) -> Result<(), ServiceError> {
    emit(
        conn,
        EventType::MfaMethodRemoved,
        &json!({"extension": extension, "method": method.as_str(), "name": name, "actor": by.label()}),
    )
    .await?;
    if !store::has_primary(&mut *conn, extension).await? {
        store::delete_all(conn, extension).await?;
        emit(
            conn,
            EventType::MfaDisabled,
            &json!({"extension": extension, "actor": by.label()}),
        )
        .await?;
    }
    Ok(())
}
