//! Extensions: the people (and virtual endpoints) of the PBX, their profile, role and
//! credentials. The API, the CLI, first start and directory sync all go through
//! [`ExtensionService`].

pub mod import;
pub mod model;
pub mod rules;

use std::sync::Arc;

use serde_json::json;

use self::model::{
    CreatedExtension, Extension, ExtensionPatch, GeneratedCredentials, NewExtension,
};
use self::rules::{AUTO_ATTENDANT, SipHa1};
use super::events::{Changes, EventType, emit};
use super::{Actor, ServiceError};
use crate::config::Config;
use crate::crypto;
use crate::role::Role;
use crate::store::extensions::{self as store, ExtensionRow, ListFilter};
use crate::store::{self as db_store, Conn, Db};
use crate::time::Timestamp;

/// Hashing credentials costs tens of milliseconds (Argon2id): it runs on the blocking
/// pool, never on the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("hashing task panicked")
}

#[derive(Clone)]
pub struct ExtensionService {
    db: Db,
    realm: Arc<str>,
    min_pin_length: usize,
    changes: Changes,
}

impl ExtensionService {
    pub fn new(db: Db, config: &Config, changes: Changes) -> Self {
        Self {
            changes,
            db,
            realm: config.sip.realm.as_str().into(),
            min_pin_length: config.security.min_pin_length,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn min_pin_length(&self) -> usize {
        self.min_pin_length
    }

    pub async fn get(&self, number: &str) -> Result<Extension, ServiceError> {
        store::get(self.db.pool(), number)
            .await?
            .map(|r| Extension::from(&r))
            .ok_or_else(|| ServiceError::not_found(format!("extension {number}")))
    }

    /// Whether `pin` is `number`'s voicemail PIN (the phone menus' login). An unknown
    /// extension or one without a PIN takes as long and says no.
    pub async fn verify_pin(&self, number: &str, pin: &str) -> Result<bool, ServiceError> {
        let hash = store::get(self.db.pool(), number)
            .await?
            .and_then(|r| r.voicemail_pin_hash);
        let pin = pin.to_owned();
        Ok(blocking(move || crypto::verify_hash(hash.as_deref(), &pin)).await)
    }

    pub async fn exists(&self, number: &str) -> Result<bool, ServiceError> {
        Ok(store::get(self.db.pool(), number).await?.is_some())
    }

    /// A page of extensions and the total matching `filter`.
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Extension>, i64), ServiceError> {
        let rows = store::list(self.db.pool(), filter, limit, offset).await?;
        let total = store::count(self.db.pool(), filter).await?;
        Ok((rows.iter().map(Extension::from).collect(), total))
    }

    pub async fn create(
        &self,
        by: &Actor,
        input: NewExtension,
    ) -> Result<CreatedExtension, ServiceError> {
        let (row, credentials) = self.prepare_new(input).await?;
        let mut tx = self.db.begin().await?;
        match store::insert(&mut tx, &row).await {
            Err(e) if db_store::is_unique_violation(&e) => {
                return Err(ServiceError::conflict_on(
                    "duplicate_number",
                    "number",
                    format!("extension {} already exists", row.number),
                ));
            }
            other => other?,
        }
        let extension = Extension::from(&row);
        emit(
            &mut tx,
            EventType::ExtensionCreated,
            &json!({"extension": extension, "actor": by.label()}),
        )
        .await?;
        tx.commit().await?;
        self.changes.extension(&row.number);
        tracing::info!(extension = %row.number, role = row.role.as_str(), actor = %by.label(), "extension created");
        Ok(CreatedExtension {
            extension,
            credentials,
        })
    }

    /// Validates a create body and builds the row, generating what was not given.
    pub(crate) async fn prepare_new(
        &self,
        input: NewExtension,
    ) -> Result<(ExtensionRow, GeneratedCredentials), ServiceError> {
        rules::check_number(&input.number)?;
        let name = rules::check_name(&input.name)?;
        let email = rules::check_email(input.email.as_deref())?;
        if let Some(fwd) = &input.call_forwarding {
            rules::check_forwarding(fwd, &input.number)?;
        }
        let number = input.number.clone();
        if let Some(p) = &input.password {
            rules::check_password(p, &number)?;
        }
        if let Some(s) = &input.sip_secret {
            rules::check_sip_secret(s, &number)?;
        }
        if let Some(p) = &input.voicemail_pin {
            rules::check_pin("voicemail_pin", p, &number, self.min_pin_length)?;
        }

        let mut generated = GeneratedCredentials::default();
        let password_generated = input.password.is_none();
        let password = input.password.unwrap_or_else(|| {
            let p = rules::generate_password();
            generated.password = Some(p.clone());
            p
        });
        let sip_secret = input.sip_secret.unwrap_or_else(|| {
            let s = rules::generate_sip_secret();
            generated.sip_secret = Some(s.clone());
            s
        });
        let pin = input.voicemail_pin.unwrap_or_else(|| {
            let p = rules::generate_pin(self.min_pin_length.max(6));
            generated.voicemail_pin = Some(p.clone());
            p
        });

        let realm = self.realm.to_string();
        let num = number.clone();
        let (password_hash, ha1, pin_hash) = blocking(move || {
            (
                crypto::hash_password(&password),
                rules::sip_ha1(&num, &realm, &sip_secret),
                crypto::hash_pin(&pin),
            )
        })
        .await;

        let now = Timestamp::now();
        let fwd = input.call_forwarding;
        let row = ExtensionRow {
            number,
            name,
            email,
            role: input.role.unwrap_or(Role::User),
            allow_external: input.allow_external.unwrap_or(false),
            voicemail_enabled: input.voicemail_enabled.unwrap_or(true),
            forward_target: fwd.as_ref().map(|f| f.target.clone()),
            forward_when: fwd.as_ref().map(|f| f.when.as_str().to_owned()),
            active: input.active.unwrap_or(true),
            ad_synced: false,
            ad_username: None,
            password_hash: Some(password_hash),
            must_change_password: input.must_change_password.unwrap_or(password_generated),
            sip_realm: Some(ha1.realm),
            sip_ha1_md5: Some(ha1.md5),
            sip_ha1_sha256: Some(ha1.sha256),
            voicemail_pin_hash: Some(pin_hash),
            created_at: now,
            updated_at: now,
        };
        if row.role == Role::Device {
            return Err(ServiceError::invalid(
                "role",
                "an extension's role is admin or user",
            ));
        }
        Ok((row, generated))
    }

    /// Applies `patch`; refuses to leave the system without an active admin.
    pub async fn update(
        &self,
        by: &Actor,
        number: &str,
        patch: ExtensionPatch,
    ) -> Result<Extension, ServiceError> {
        let name = patch.name.as_deref().map(rules::check_name).transpose()?;
        let email = match &patch.email {
            Some(e) => Some(rules::check_email(e.as_deref())?),
            None => None,
        };
        if let Some(Some(fwd)) = &patch.call_forwarding {
            rules::check_forwarding(fwd, number)?;
        }
        if patch.role == Some(Role::Device) {
            return Err(ServiceError::invalid(
                "role",
                "an extension's role is admin or user",
            ));
        }

        let mut tx = self.db.begin().await?;
        let mut row = self.locked(&mut tx, number).await?;
        let before = row.clone();
        if let Some(name) = name {
            row.name = name;
        }
        if let Some(email) = email {
            row.email = email;
        }
        if let Some(role) = patch.role {
            row.role = role;
        }
        if let Some(v) = patch.allow_external {
            row.allow_external = v;
        }
        if let Some(v) = patch.voicemail_enabled {
            row.voicemail_enabled = v;
        }
        if let Some(fwd) = patch.call_forwarding {
            row.forward_target = fwd.as_ref().map(|f| f.target.clone());
            row.forward_when = fwd.as_ref().map(|f| f.when.as_str().to_owned());
        }
        if let Some(v) = patch.active {
            row.active = v;
        }
        if row.number == AUTO_ATTENDANT && row.role == Role::Admin {
            return Err(ServiceError::invalid(
                "role",
                "the auto attendant (extension 0) cannot be an admin",
            ));
        }
        let was_admin = before.role == Role::Admin && before.active;
        let is_admin = row.role == Role::Admin && row.active;
        if was_admin && !is_admin {
            self.ensure_other_admin(&mut tx, number).await?;
        }
        let changes = changed_fields(&before, &row);
        if changes.is_empty() {
            return Ok(Extension::from(&row));
        }
        row.updated_at = Timestamp::now();
        store::update(&mut tx, &row).await?;
        let extension = Extension::from(&row);
        emit(
            &mut tx,
            EventType::ExtensionUpdated,
            &json!({"extension": extension, "changes": changes, "actor": by.label()}),
        )
        .await?;
        tx.commit().await?;
        self.changes.extension(number);
        tracing::info!(extension = %number, ?changes, actor = %by.label(), "extension updated");
        Ok(extension)
    }

    pub async fn delete(&self, by: &Actor, number: &str) -> Result<(), ServiceError> {
        if number == AUTO_ATTENDANT {
            return Err(ServiceError::conflict(
                "protected_extension",
                "extension 0 is the auto attendant and cannot be deleted",
            ));
        }
        let mut tx = self.db.begin().await?;
        let row = self.locked(&mut tx, number).await?;
        if row.role == Role::Admin && row.active {
            self.ensure_other_admin(&mut tx, number).await?;
        }
        store::delete(&mut tx, number).await?;
        emit(
            &mut tx,
            EventType::ExtensionDeleted,
            &json!({"number": row.number, "name": row.name, "actor": by.label()}),
        )
        .await?;
        tx.commit().await?;
        self.changes.extension(number);
        tracing::info!(extension = %number, actor = %by.label(), "extension deleted");
        Ok(())
    }

    /// Replaces the SIP secret with a generated one, returned once.
    pub async fn rotate_sip_secret(
        &self,
        by: &Actor,
        number: &str,
    ) -> Result<String, ServiceError> {
        let secret = rules::generate_sip_secret();
        let ha1 = rules::sip_ha1(number, &self.realm, &secret);
        self.write_credential(by, number, "sip_secret", move |row| set_ha1(row, ha1))
            .await?;
        Ok(secret)
    }

    /// Sets the voicemail PIN (`field` names it in errors); `None` generates one and
    /// returns it.
    pub async fn set_pin(
        &self,
        by: &Actor,
        number: &str,
        field: &str,
        pin: Option<String>,
    ) -> Result<Option<String>, ServiceError> {
        if let Some(p) = &pin {
            rules::check_pin(field, p, number, self.min_pin_length)?;
        }
        let generated = pin.is_none();
        let pin = pin.unwrap_or_else(|| rules::generate_pin(self.min_pin_length.max(6)));
        let clear = pin.clone();
        let hash = blocking(move || crypto::hash_pin(&clear)).await;
        self.write_credential(by, number, "voicemail_pin", move |row| {
            row.voicemail_pin_hash = Some(hash);
        })
        .await?;
        Ok(generated.then_some(pin))
    }

    /// Sets the web password (admin reset or the CLI rescue path) and revokes every
    /// session of the extension. `None` generates one and returns it.
    pub async fn set_password(
        &self,
        by: &Actor,
        number: &str,
        password: Option<String>,
        must_change: bool,
    ) -> Result<Option<String>, ServiceError> {
        if number == AUTO_ATTENDANT {
            return Err(ServiceError::invalid(
                "number",
                "the auto attendant (extension 0) cannot log in",
            ));
        }
        if let Some(p) = &password {
            rules::check_password(p, number)?;
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(rules::generate_password);
        let clear = password.clone();
        let hash = blocking(move || crypto::hash_password(&clear)).await;
        self.write_credential(by, number, "password", move |row| {
            row.password_hash = Some(hash);
            row.must_change_password = must_change;
        })
        .await?;
        Ok(generated.then_some(password))
    }

    /// Changes one credential of an existing extension in a transaction with its event;
    /// a password change also revokes the extension's sessions.
    async fn write_credential(
        &self,
        by: &Actor,
        number: &str,
        what: &'static str,
        apply: impl FnOnce(&mut ExtensionRow),
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await?;
        let mut row = self.locked(&mut tx, number).await?;
        apply(&mut row);
        row.updated_at = Timestamp::now();
        store::update(&mut tx, &row).await?;
        if what == "password" {
            db_store::sessions::delete_for_extension(&mut tx, number, None).await?;
        }
        let extension = Extension::from(&row);
        emit(
            &mut tx,
            EventType::ExtensionUpdated,
            &json!({"extension": extension, "changes": [what], "actor": by.label()}),
        )
        .await?;
        tx.commit().await?;
        self.changes.extension(number);
        tracing::info!(extension = %number, credential = what, actor = %by.label(), "credential changed");
        Ok(())
    }

    async fn locked(&self, tx: &mut Conn, number: &str) -> Result<ExtensionRow, ServiceError> {
        store::get_for_update(tx, self.db.backend(), number)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("extension {number}")))
    }

    async fn ensure_other_admin(&self, tx: &mut Conn, number: &str) -> Result<(), ServiceError> {
        if store::count_active_admins(tx, Some(number)).await? == 0 {
            return Err(ServiceError::conflict(
                "last_admin",
                format!(
                    "extension {number} is the last active admin; make another extension admin first"
                ),
            ));
        }
        Ok(())
    }

    /// Creates `row` unless the number exists (first start, racing nodes); says whether
    /// it did, emitting `extension.created` when so.
    pub(crate) async fn create_if_absent(
        &self,
        by: &Actor,
        row: &ExtensionRow,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.db.begin().await?;
        let inserted = self.insert_if_absent_in(&mut tx, by, row).await?;
        tx.commit().await?;
        if inserted {
            self.changes.extension(&row.number);
        }
        Ok(inserted)
    }

    /// Inserts `row` unless its number exists, with its `extension.created` event, in the
    /// caller's transaction (another feature's change that brings the extension along).
    /// Once committed, the caller tells [`Self::changes`] about it.
    pub(crate) async fn insert_if_absent_in(
        &self,
        tx: &mut Conn,
        by: &Actor,
        row: &ExtensionRow,
    ) -> Result<bool, ServiceError> {
        let inserted = store::insert_if_absent(tx, row).await?;
        if inserted {
            let extension = Extension::from(row);
            emit(
                tx,
                EventType::ExtensionCreated,
                &json!({"extension": extension, "actor": by.label()}),
            )
            .await?;
        }
        Ok(inserted)
    }

    /// Reads an extension inside the caller's transaction.
    pub(crate) async fn get_in(
        &self,
        tx: &mut Conn,
        number: &str,
    ) -> Result<Option<ExtensionRow>, ServiceError> {
        Ok(store::get(&mut *tx, number).await?)
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn changes(&self) -> &Changes {
        &self.changes
    }
}

/// A virtual extension (a browser phone's `webrtc-admin`): role user, no web password,
/// no SIP secret and no PIN, voicemail off. Nothing can log in or register as it; it is
/// reached only through an authenticated browser session, and dialled by name.
pub(crate) fn virtual_row(number: &str, name: &str) -> Result<ExtensionRow, ServiceError> {
    rules::check_number(number)?;
    let name = rules::check_name(name)?;
    let now = Timestamp::now();
    Ok(ExtensionRow {
        name,
        voicemail_enabled: false,
        ..blank_row(number, now)
    })
}

/// An extension with nothing set but its number: no name, credentials or forwarding;
/// role user, active, voicemail on.
pub(super) fn blank_row(number: &str, now: Timestamp) -> ExtensionRow {
    ExtensionRow {
        number: number.to_owned(),
        name: String::new(),
        email: None,
        role: Role::User,
        allow_external: false,
        voicemail_enabled: true,
        forward_target: None,
        forward_when: None,
        active: true,
        ad_synced: false,
        ad_username: None,
        password_hash: None,
        must_change_password: false,
        sip_realm: None,
        sip_ha1_md5: None,
        sip_ha1_sha256: None,
        voicemail_pin_hash: None,
        created_at: now,
        updated_at: now,
    }
}

fn set_ha1(row: &mut ExtensionRow, ha1: SipHa1) {
    row.sip_realm = Some(ha1.realm);
    row.sip_ha1_md5 = Some(ha1.md5);
    row.sip_ha1_sha256 = Some(ha1.sha256);
}

/// Names of the profile fields that differ (credentials are reported by their writers).
fn changed_fields(a: &ExtensionRow, b: &ExtensionRow) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.name != b.name {
        out.push("name");
    }
    if a.email != b.email {
        out.push("email");
    }
    if a.role != b.role {
        out.push("role");
    }
    if a.allow_external != b.allow_external {
        out.push("allow_external");
    }
    if a.voicemail_enabled != b.voicemail_enabled {
        out.push("voicemail_enabled");
    }
    if a.forward_target != b.forward_target || a.forward_when != b.forward_when {
        out.push("call_forwarding");
    }
    if a.active != b.active {
        out.push("active");
    }
    out
}
