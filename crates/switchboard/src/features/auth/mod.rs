//! Authentication: password login (with its second factor when the extension has
//! MFA), opaque session tokens (stored as SHA-256, with idle and absolute expiry,
//! surviving restarts), logout, password change and API keys.

use serde::Serialize;
use utoipa::ToSchema;

use super::extensions::{ExtensionService, blocking, rules};
use super::mfa::{Answer, MfaChallenge, MfaService};
use super::{Actor, ServiceError};
use crate::config::Config;
use crate::crypto;
use crate::role::Role;
use crate::store::api_keys::{self, ApiKeyRow};
use crate::store::extensions::ExtensionRow;
use crate::store::sessions::{self, NewSession, SessionWithOwner};
use crate::store::{Db, extensions as ext_store};
use crate::time::Timestamp;

const SESSION_PREFIX: &str = "sbs_";
const API_KEY_PREFIX: &str = "sbk_";
/// `last_seen_at` is written at most this often per session (ms): idle expiry is
/// accurate to a minute without a database write on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A freshly issued session: the token is shown to the client once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedSession {
    pub token: String,
    /// Absolute expiry; the session also ends after the idle timeout without use.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub extension: String,
    /// The extension's display name.
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    /// The configuration makes this extension enrol a second factor before anything
    /// but `/api/mfa/*` works.
    pub mfa_enrollment_required: bool,
    /// Send back as `X-CSRF-Token` on writes authenticated by the session cookie.
    pub csrf_token: String,
}

/// What a correct password gets: a session, or the request for a second factor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginOutcome {
    Session(IssuedSession),
    MfaRequired(MfaChallenge),
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session {
        token_hash: String,
        csrf_token: String,
    },
    ApiKey {
        id: String,
        name: String,
    },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    /// The extension acting (absent for admin API keys not tied to one).
    pub extension: Option<String>,
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    /// A session of a user who must enrol a second factor first.
    pub mfa_enrollment_required: bool,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match (&self.credential, &self.extension) {
            (Credential::ApiKey { id, name }, _) => Actor::ApiKey {
                id: id.clone(),
                name: name.clone(),
            },
            (Credential::Session { .. }, Some(ext)) => Actor::Extension(ext.clone()),
            (Credential::Session { .. }, None) => Actor::System,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller is `number` itself (a user acting on their own extension).
    pub fn is_extension(&self, number: &str) -> bool {
        self.extension.as_deref() == Some(number)
    }
}

/// Where a login came from, for the session record and the logs.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub extension: Option<String>,
    pub created_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

impl From<&ApiKeyRow> for ApiKeyInfo {
    fn from(k: &ApiKeyRow) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role,
            extension: k.extension.clone(),
            created_by: k.created_by.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

#[derive(Clone)]
pub struct AuthService {
    db: Db,
    extensions: ExtensionService,
    mfa: MfaService,
    idle_secs: u64,
    absolute_secs: u64,
}

/// Whether a session is still usable at `now`.
pub fn session_alive(s: &SessionWithOwner, now: Timestamp, idle_secs: u64) -> bool {
    now < s.expires_at && now < s.last_seen_at.plus_secs(idle_secs)
}

fn invalid_credentials() -> ServiceError {
    ServiceError::Unauthorized {
        code: "invalid_credentials",
        message: "wrong extension or password".into(),
        field: None,
    }
}

fn unauthenticated() -> ServiceError {
    ServiceError::Unauthorized {
        code: "unauthenticated",
        message: "the session or API key is missing, expired or revoked; log in again".into(),
        field: None,
    }
}

impl AuthService {
    pub fn new(db: Db, extensions: ExtensionService, mfa: MfaService, config: &Config) -> Self {
        Self {
            db,
            extensions,
            mfa,
            idle_secs: config.http.session_idle_timeout,
            absolute_secs: config.http.session_absolute_timeout,
        }
    }

    /// Checks extension + password and issues a session, or asks for the second
    /// factor when the extension has MFA. Unknown extensions, missing passwords and
    /// wrong passwords all answer the same, in the same time.
    pub async fn login(
        &self,
        extension: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<LoginOutcome, ServiceError> {
        let row = ext_store::get(self.db.pool(), extension).await?;
        let hash = row.as_ref().and_then(|r| r.password_hash.clone());
        let typed = password.to_owned();
        let ok = blocking(move || crypto::verify_hash(hash.as_deref(), &typed)).await;
        let Some(row) = row.filter(|_| ok) else {
            metrics::counter!("switchboard_auth_logins_total", "result" => "failed").increment(1);
            tracing::warn!(
                extension,
                ip = client.ip.as_deref().unwrap_or("-"),
                "login failed"
            );
            return Err(invalid_credentials());
        };
        if !row.active {
            metrics::counter!("switchboard_auth_logins_total", "result" => "inactive").increment(1);
            return Err(ServiceError::forbidden(
                "extension_inactive",
                format!("extension {extension} is deactivated"),
            ));
        }
        if let Some(challenge) = self.mfa.start_login(extension).await? {
            metrics::counter!("switchboard_auth_logins_total", "result" => "mfa_required")
                .increment(1);
            tracing::info!(
                extension,
                ip = client.ip.as_deref().unwrap_or("-"),
                "login: second factor asked"
            );
            return Ok(LoginOutcome::MfaRequired(challenge));
        }
        let session = self.issue(&row, row.must_change_password, client).await?;
        metrics::counter!("switchboard_auth_logins_total", "result" => "ok").increment(1);
        tracing::info!(extension, ip = client.ip.as_deref().unwrap_or("-"), "login");
        Ok(LoginOutcome::Session(session))
    }

    /// The login's second step: a session once the second factor is right.
    pub async fn login_second_factor(
        &self,
        mfa_token: &str,
        answer: Answer,
        client: &ClientInfo,
    ) -> Result<IssuedSession, ServiceError> {
        let ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
        let extension = match self.mfa.finish_login(mfa_token, answer, ip).await {
            Ok(extension) => extension,
            Err(e) => {
                metrics::counter!("switchboard_auth_logins_total", "result" => "mfa_failed")
                    .increment(1);
                return Err(e);
            }
        };
        let row = ext_store::get(self.db.pool(), &extension)
            .await?
            .filter(|r| r.active)
            .ok_or_else(|| {
                ServiceError::forbidden(
                    "extension_inactive",
                    format!("extension {extension} is deactivated"),
                )
            })?;
        let session = self.issue(&row, row.must_change_password, client).await?;
        metrics::counter!("switchboard_auth_logins_total", "result" => "ok").increment(1);
        tracing::info!(
            extension,
            ip = client.ip.as_deref().unwrap_or("-"),
            "login with a second factor"
        );
        Ok(session)
    }

    /// A new session for `row`'s extension (`must_change` as it stands after the call).
    async fn issue(
        &self,
        row: &ExtensionRow,
        must_change: bool,
        client: &ClientInfo,
    ) -> Result<IssuedSession, ServiceError> {
        let token = crypto::random_token(SESSION_PREFIX);
        let csrf_token = crypto::random_token("");
        let now = Timestamp::now();
        let expires_at = now.plus_secs(self.absolute_secs);
        let mut conn = self.db.pool().acquire().await?;
        sessions::insert(
            &mut conn,
            &NewSession {
                token_hash: &crypto::sha256_hex(token.as_bytes()),
                extension: &row.number,
                csrf_token: &csrf_token,
                now,
                expires_at,
                ip_address: client.ip.as_deref(),
                user_agent: client.user_agent.as_deref(),
            },
        )
        .await?;
        Ok(IssuedSession {
            token,
            expires_at,
            extension: row.number.clone(),
            name: row.name.clone(),
            role: row.role,
            must_change_password: must_change,
            mfa_enrollment_required: self.mfa.enrollment_required(&row.number, row.role).await?,
            csrf_token,
        })
    }

    /// Resolves a bearer token or cookie value to its principal.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ServiceError> {
        let hash = crypto::sha256_hex(token.as_bytes());
        let now = Timestamp::now();
        if token.starts_with(API_KEY_PREFIX) {
            let key = api_keys::find_by_hash(self.db.pool(), &hash)
                .await?
                .ok_or_else(unauthenticated)?;
            if key
                .last_used_at
                .is_none_or(|t| now.millis() - t.millis() > TOUCH_EVERY_MS)
            {
                api_keys::touch(self.db.pool(), &key.id, now).await?;
            }
            let name = key.name.clone();
            return Ok(Principal {
                credential: Credential::ApiKey {
                    id: key.id,
                    name: key.name,
                },
                extension: key.extension,
                name,
                role: key.role,
                must_change_password: false,
                mfa_enrollment_required: false,
            });
        }
        let session = sessions::find(self.db.pool(), &hash)
            .await?
            .ok_or_else(unauthenticated)?;
        if !session_alive(&session, now, self.idle_secs) || !session.active {
            sessions::delete(self.db.pool(), &hash).await?;
            return Err(unauthenticated());
        }
        if now.millis() - session.last_seen_at.millis() > TOUCH_EVERY_MS {
            sessions::touch(self.db.pool(), &hash, now).await?;
        }
        // Only asked when the configuration requires MFA for the role: no query else.
        let mfa_enrollment_required = self.mfa.required_for(session.role)
            && self
                .mfa
                .enrollment_required(&session.extension, session.role)
                .await?;
        Ok(Principal {
            credential: Credential::Session {
                token_hash: session.token_hash,
                csrf_token: session.csrf_token,
            },
            extension: Some(session.extension),
            name: session.name,
            role: session.role,
            must_change_password: session.must_change_password,
            mfa_enrollment_required,
        })
    }

    /// Revokes the session the principal used (API keys are revoked by deleting them).
    pub async fn logout(&self, principal: &Principal) -> Result<(), ServiceError> {
        if let Credential::Session { token_hash, .. } = &principal.credential {
            sessions::delete(self.db.pool(), token_hash).await?;
            tracing::info!(
                extension = principal.extension.as_deref().unwrap_or("-"),
                "logout"
            );
        }
        Ok(())
    }

    /// Changes the caller's own password after checking the current one, revokes all
    /// of their sessions and issues a new one for this client.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, ServiceError> {
        let (Credential::Session { .. }, Some(number)) =
            (&principal.credential, &principal.extension)
        else {
            return Err(ServiceError::forbidden(
                "no_password",
                "an API key has no password to change",
            ));
        };
        let row = ext_store::get(self.db.pool(), number)
            .await?
            .ok_or_else(unauthenticated)?;
        let hash = row.password_hash.clone();
        let (cur, next) = (current.to_owned(), new.to_owned());
        let (current_ok, same) = blocking(move || {
            let ok = crypto::verify_hash(hash.as_deref(), &cur);
            (ok, ok && crypto::verify_hash(hash.as_deref(), &next))
        })
        .await;
        if !current_ok {
            return Err(ServiceError::invalid(
                "current_password",
                "the current password is wrong",
            ));
        }
        rules::check_password(new, number).map_err(|_| {
            ServiceError::invalid(
                "new_password",
                format!(
                    "a password needs {} to {} characters and must not be the extension number",
                    rules::MIN_PASSWORD_LEN,
                    rules::MAX_SECRET_LEN
                ),
            )
        })?;
        if same {
            return Err(ServiceError::invalid(
                "new_password",
                "choose a password different from the current one",
            ));
        }
        self.extensions
            .set_password(&principal.actor(), number, Some(new.to_owned()), false)
            .await?;
        self.issue(&row, false, client).await
    }

    pub async fn create_api_key(
        &self,
        by: &Actor,
        name: &str,
        role: Role,
        extension: Option<String>,
    ) -> Result<(ApiKeyInfo, String), ServiceError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ServiceError::invalid(
                "name",
                "a name of 1 to 100 characters is required",
            ));
        }
        if role == Role::Device {
            return Err(ServiceError::invalid(
                "role",
                "an API key's role is admin or user",
            ));
        }
        if role == Role::User && extension.is_none() {
            return Err(ServiceError::invalid(
                "extension",
                "a user API key acts for an extension; give its number",
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
        let key = crypto::random_token(API_KEY_PREFIX);
        let row = ApiKeyRow {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            key_hash: crypto::sha256_hex(key.as_bytes()),
            role,
            extension,
            created_by: Some(by.label()),
            created_at: Timestamp::now(),
            last_used_at: None,
        };
        api_keys::insert(self.db.pool(), &row).await?;
        tracing::info!(api_key = %row.id, name, role = role.as_str(), actor = %by.label(), "API key created");
        Ok((ApiKeyInfo::from(&row), key))
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, ServiceError> {
        Ok(api_keys::list(self.db.pool())
            .await?
            .iter()
            .map(ApiKeyInfo::from)
            .collect())
    }

    pub async fn delete_api_key(&self, by: &Actor, id: &str) -> Result<(), ServiceError> {
        if !api_keys::delete(self.db.pool(), id).await? {
            return Err(ServiceError::not_found(format!("API key {id}")));
        }
        tracing::info!(api_key = id, actor = %by.label(), "API key deleted");
        Ok(())
    }

    /// Deletes expired sessions (a periodic worker; lookups also refuse them).
    pub async fn sweep_expired(&self) -> Result<u64, ServiceError> {
        Ok(sessions::delete_expired(self.db.pool(), Timestamp::now(), self.idle_secs).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created: i64, last_seen: i64, expires: i64) -> SessionWithOwner {
        SessionWithOwner {
            token_hash: "h".into(),
            extension: "1001".into(),
            csrf_token: "c".into(),
            created_at: Timestamp(created),
            last_seen_at: Timestamp(last_seen),
            expires_at: Timestamp(expires),
            role: Role::Admin,
            name: "Operator".into(),
            active: true,
            must_change_password: false,
        }
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let s = session(0, 0, 7_000_000);
        assert!(session_alive(&s, Timestamp(3_599_000), 3600));
        assert!(!session_alive(&s, Timestamp(3_600_000), 3600), "idle");
        let s = session(0, 6_999_000, 7_000_000);
        assert!(session_alive(&s, Timestamp(6_999_500), 3600));
        assert!(!session_alive(&s, Timestamp(7_000_000), 3600), "absolute");
    }
}
