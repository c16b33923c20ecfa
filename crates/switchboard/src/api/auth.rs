//! Who may call: the extractors every handler declares (`Public` needs none), and the
//! login / logout / password routes.
//!
//! Credentials come as `Authorization: Bearer <token>` (API clients, API keys) or as
//! the panel's HttpOnly session cookie; a write authenticated by the cookie must echo
//! the session's CSRF token in `X-CSRF-Token`.

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::crypto;
use crate::features::ServiceError;
use crate::features::auth::{ClientInfo, Credential, IssuedSession, LoginOutcome, Principal};
use crate::features::mfa::Answer;
use crate::features::security::{Protocol, Signal};
use crate::role::Role;

pub const SESSION_COOKIE: &str = "switchboard_session";
pub const CSRF_COOKIE: &str = "switchboard_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Any authenticated caller whose password need not change first.
pub struct Authenticated(pub Principal);

/// An admin (session or API key).
pub struct AdminOnly(pub Principal);

/// Any authenticated caller, even one who must change their password first: only the
/// endpoints that let them do so (and log out) take this.
pub struct AllowPasswordChange(pub Principal);

/// Any authenticated caller whose password need not change first, even one who must
/// enrol a second factor: the `/api/mfa/*` endpoints take this.
pub struct AllowMfaEnrollment(pub Principal);

async fn principal(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let jar = CookieJar::from_headers(&parts.headers);
    let (token, via_cookie) = match bearer {
        Some(t) => (t, false),
        None => match jar.get(SESSION_COOKIE) {
            Some(c) => (c.value().to_owned(), true),
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "log in first: send Authorization: Bearer <token> or the session cookie",
                ));
            }
        },
    };
    let principal = state.app.auth.authenticate(&token).await?;
    if via_cookie && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = match &principal.credential {
            Credential::Session { csrf_token, .. } => csrf_token.as_str(),
            Credential::ApiKey { .. } => "",
        };
        if expected.is_empty() || !crypto::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::forbidden(
                "csrf_failed",
                "a write with the session cookie needs the X-CSRF-Token header from login",
            ));
        }
    }
    Ok(principal)
}

fn password_change_required() -> ApiError {
    ApiError::forbidden(
        "password_change_required",
        "change your password first: POST /api/auth/password {current_password, new_password}",
    )
}

impl FromRequestParts<AppState> for AllowPasswordChange {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = principal(parts, state).await?;
        if p.role == Role::Device {
            return Err(ApiError::forbidden(
                "forbidden",
                "devices cannot use this endpoint",
            ));
        }
        Ok(Self(p))
    }
}

impl FromRequestParts<AppState> for AllowMfaEnrollment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AllowPasswordChange(p) = AllowPasswordChange::from_request_parts(parts, state).await?;
        if p.must_change_password {
            return Err(password_change_required());
        }
        Ok(Self(p))
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AllowMfaEnrollment(p) = AllowMfaEnrollment::from_request_parts(parts, state).await?;
        if p.mfa_enrollment_required {
            return Err(ApiError::forbidden(
                "mfa_enrollment_required",
                "enrol a second factor first: POST /api/mfa/enroll, then /api/mfa/verify-enrollment",
            ));
        }
        Ok(Self(p))
    }
}

impl FromRequestParts<AppState> for AdminOnly {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(p) = Authenticated::from_request_parts(parts, state).await?;
        if !p.is_admin() {
            return Err(ApiError::forbidden(
                "admin_required",
                "this endpoint is for administrators",
            ));
        }
        Ok(Self(p))
    }
}

/// [`Authenticated`] when the request carries credentials (which must then be
/// valid), `None` when it carries none: for endpoints a phone may call by itself.
pub struct MaybeAuthenticated(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let has_credentials = parts.headers.contains_key(header::AUTHORIZATION)
            || CookieJar::from_headers(&parts.headers)
                .get(SESSION_COOKIE)
                .is_some();
        if !has_credentials {
            return Ok(Self(None));
        }
        let Authenticated(p) = Authenticated::from_request_parts(parts, state).await?;
        Ok(Self(Some(p)))
    }
}

/// The caller's address and User-Agent, for the session record.
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(255).collect());
        Ok(Self(ClientInfo { ip, user_agent }))
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(login_second_factor))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub extension: String,
    pub password: String,
}

fn session_cookies(state: &AppState, session: &IssuedSession) -> CookieJar {
    let max_age =
        cookie::time::Duration::seconds(state.app.config.http.session_absolute_timeout as i64);
    let secure = state.app.config.http.tls.is_enabled();
    let session_cookie = Cookie::build((SESSION_COOKIE, session.token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(max_age);
    // Readable by the panel's script, which echoes it in X-CSRF-Token.
    let csrf_cookie = Cookie::build((CSRF_COOKIE, session.csrf_token.clone()))
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(max_age);
    CookieJar::new().add(session_cookie).add(csrf_cookie)
}

fn cleared_cookies() -> CookieJar {
    let gone = |name: &'static str| {
        Cookie::build((name, ""))
            .path("/")
            .max_age(cookie::time::Duration::ZERO)
    };
    CookieJar::new()
        .add(gone(SESSION_COOKIE))
        .add(gone(CSRF_COOKIE))
}

/// Log in with extension and web password. An extension with MFA gets
/// `{mfa_required, mfa_token, methods, webauthn?}` instead of a session: answer it at
/// `POST /api/auth/mfa`.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in (the session; also sets the panel's session and CSRF cookies), or the request for a second factor", body = LoginOutcome),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong extension or password", body = ErrorBody),
        (status = 403, description = "Extension deactivated", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    Client(client): Client,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let session = state
        .app
        .auth
        .login(body.extension.trim(), &body.password, &client)
        .await;
    if let (Err(ServiceError::Unauthorized { .. }), Some(ip)) = (
        &session,
        client.ip.as_deref().and_then(|ip| ip.parse().ok()),
    ) {
        state
            .app
            .threats
            .signal(ip, Protocol::Http, Signal::FailedAuth("web login"));
    }
    Ok(match session? {
        LoginOutcome::Session(session) => {
            (session_cookies(&state, &session), axum::Json(session)).into_response()
        }
        challenge @ LoginOutcome::MfaRequired(_) => axum::Json(challenge).into_response(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactor {
    /// From the login's answer.
    pub mfa_token: String,
    /// A TOTP code, a backup code or a YubiKey OTP.
    pub code: Option<String>,
    /// A WebAuthn assertion (`navigator.credentials.get`, binary fields base64url).
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
}

/// The login's second step: the second factor for an `mfa_token`.
#[utoipa::path(post, path = "/api/auth/mfa", tag = "auth", security(()),
    request_body = SecondFactor,
    responses(
        (status = 200, description = "Logged in; also sets the panel's session and CSRF cookies", body = IssuedSession),
        (status = 400, description = "Neither or both of code and credential", body = ErrorBody),
        (status = 401, description = "Wrong second factor (invalid_second_factor), or the mfa_token expired, was used or had too many wrong tries (mfa_token_invalid)", body = ErrorBody),
    ))]
async fn login_second_factor(
    State(state): State<AppState>,
    Client(client): Client,
    Json(body): Json<SecondFactor>,
) -> Result<Response, ApiError> {
    let answer = match (body.code, body.credential) {
        (Some(code), None) => Answer::Code(code),
        (None, Some(credential)) => Answer::Credential(credential),
        _ => {
            return Err(ApiError::from(ServiceError::invalid(
                "code",
                "send either code (TOTP, backup code or YubiKey OTP) or credential (a WebAuthn assertion)",
            )));
        }
    };
    let session = state
        .app
        .auth
        .login_second_factor(&body.mfa_token, answer, &client)
        .await?;
    Ok((session_cookies(&state, &session), axum::Json(session)).into_response())
}

/// Revoke the session used for this request.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    responses(
        (status = 204, description = "Logged out; the token no longer works"),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn logout(
    State(state): State<AppState>,
    AllowPasswordChange(p): AllowPasswordChange,
) -> Result<Response, ApiError> {
    state.app.auth.logout(&p).await?;
    Ok((cleared_cookies(), StatusCode::NO_CONTENT).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 10 characters, not the extension number.
    pub new_password: String,
}

/// Change your own password. Every session of the extension is revoked and a new one
/// is issued for this client.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; a new session replaces the old ones", body = IssuedSession),
        (status = 400, description = "Wrong current password or a weak new one", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn change_password(
    State(state): State<AppState>,
    AllowPasswordChange(p): AllowPasswordChange,
    Client(client): Client,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    let session = state
        .app
        .auth
        .change_password(&p, &body.current_password, &body.new_password, &client)
        .await?;
    Ok((session_cookies(&state, &session), axum::Json(session)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub extension: Option<String>,
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    /// The user must enrol a second factor before anything but `/api/mfa/*` works.
    pub mfa_enrollment_required: bool,
    /// `session` or `api_key`.
    pub via: &'static str,
}

/// Who the caller is (works while a password change is pending).
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn me(AllowPasswordChange(p): AllowPasswordChange) -> axum::Json<Me> {
    let via = match p.credential {
        Credential::Session { .. } => "session",
        Credential::ApiKey { .. } => "api_key",
    };
    axum::Json(Me {
        extension: p.extension,
        name: p.name,
        role: p.role,
        must_change_password: p.must_change_password,
        mfa_enrollment_required: p.mfa_enrollment_required,
        via,
    })
}
