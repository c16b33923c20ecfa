//! `/api/hot-desk`: seed 000's five endpoints (login, logout, sessions, a device's
//! session, an extension's sessions) with the seed's bodies, and activity, reports and
//! history. Thin handlers over [`HotDeskService`](crate::features::hot_desk::HotDeskService),
//! which `*55`/`*56`/`*57` call too.
//!
//! Who may call (spec 05): login with a correct PIN needs no other credential (it is
//! what a phone does; with `require_pin: false` it needs the extension's user or an
//! admin); logout and activity need the session's extension, an admin, or the device
//! itself (a request from its address); listings are an admin's, or a user's own.
//! Errors keep the seed's `success: false` and `message` beside the usual `error`.

use std::net::SocketAddr;

use axum::Json as JsonBody;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{AdminOnly, Authenticated, MaybeAuthenticated};
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::extract::{Json, Query};
use crate::features::ServiceError;
use crate::features::auth::Principal;
use crate::features::hot_desk::{
    HotDeskError, Login, LogoutOf, LogoutReason, Profile, Report, Session,
};
use crate::features::security::{Protocol, Signal};
use crate::store::hot_desk::HistoryRow;
use crate::time::Timestamp;

/// The longest history page.
const MAX_HISTORY: i64 = 1000;
/// The default report and history period: the last week.
const DEFAULT_PERIOD_SECS: u64 = 7 * 24 * 3600;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(sessions))
        .routes(routes!(session))
        .routes(routes!(extension))
        .routes(routes!(activity))
        .routes(routes!(reports))
        .routes(routes!(history))
}

/// An error as the seed's clients read it (`success`, `message`) and as every other
/// endpoint gives it (`error`).
pub struct HotDeskApiError {
    error: ApiError,
    retry_after: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct HotDeskErrorBody {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    pub error: ErrorDetail,
}

impl From<ApiError> for HotDeskApiError {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl From<ServiceError> for HotDeskApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<HotDeskError> for HotDeskApiError {
    fn from(e: HotDeskError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            HotDeskError::Service(_) => {
                let HotDeskError::Service(inner) = e else {
                    unreachable!()
                };
                return inner.into();
            }
            HotDeskError::Disabled => (StatusCode::FORBIDDEN, "hot_desking_disabled"),
            HotDeskError::BadCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            HotDeskError::Inactive(_) => (StatusCode::FORBIDDEN, "extension_inactive"),
            HotDeskError::AlreadyLoggedIn { .. } => (StatusCode::CONFLICT, "already_logged_in"),
            HotDeskError::Locked { .. } => (StatusCode::TOO_MANY_REQUESTS, "pin_locked"),
            HotDeskError::NotLoggedIn(_) => (StatusCode::NOT_FOUND, "not_logged_in"),
        };
        let retry_after = match &e {
            HotDeskError::Locked { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        Self {
            error: ApiError::new(status, code, message),
            retry_after,
        }
    }
}

impl IntoResponse for HotDeskApiError {
    fn into_response(self) -> Response {
        let body = HotDeskErrorBody {
            success: false,
            message: self.error.message.clone(),
            error: ErrorDetail {
                code: self.error.code.into_owned(),
                message: self.error.message,
                field: self.error.field,
            },
        };
        let mut response = (self.error.status, JsonBody(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

type Result<T> = std::result::Result<T, HotDeskApiError>;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub extension: String,
    /// The phone's MAC address in any usual format, or another stable id.
    pub device_id: String,
    pub ip_address: Option<String>,
    /// The extension's voicemail PIN (when `require_pin` is on).
    pub pin: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub success: bool,
    pub message: String,
    pub profile: Profile,
}

/// Log an extension in at a device (seed 000).
#[utoipa::path(post, path = "/api/hot-desk/login", tag = "hot-desk",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed input (`field` names it)", body = HotDeskErrorBody),
        (status = 401, description = "Wrong PIN or unknown extension (one message for both)", body = HotDeskErrorBody),
        (status = 403, description = "Hot-desking disabled, or the extension deactivated", body = HotDeskErrorBody),
        (status = 409, description = "Extension already logged in (exclusive_policy: reject)", body = HotDeskErrorBody),
        (status = 429, description = "Locked after too many wrong PINs (Retry-After)", body = HotDeskErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginRequest>,
) -> Result<JsonBody<LoginResponse>> {
    let service = &state.app.hot_desk;
    if !service.config().require_pin {
        // Without a PIN, nothing proves the extension's owner is at the phone.
        match &caller {
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "with require_pin off, log in as the extension or an admin first",
                )
                .into());
            }
            Some(p) if !(p.is_admin() || p.is_extension(&body.extension)) => {
                return Err(ApiError::forbidden(
                    "forbidden",
                    format!(
                        "you may only log in your own extension, not {}",
                        body.extension
                    ),
                )
                .into());
            }
            Some(_) => {}
        }
    }
    let done = service
        .login(&Login {
            extension: body.extension,
            device_id: body.device_id,
            ip_address: body.ip_address,
            pin: body.pin,
        })
        .await;
    if let Err(HotDeskError::BadCredentials) = &done {
        state.app.threats.signal(
            peer.ip(),
            Protocol::Http,
            Signal::FailedAuth("hot-desk PIN"),
        );
    }
    let done = done?;
    Ok(JsonBody(LoginResponse {
        success: true,
        message: format!("Extension {} logged in", done.profile.extension),
        profile: done.profile,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Log out this device…
    pub device_id: Option<String>,
    /// …or this extension from every device.
    pub extension: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
    pub message: String,
}

/// Log out a device, or an extension from all its devices (seed 000).
#[utoipa::path(post, path = "/api/hot-desk/logout", tag = "hot-desk",
    security(()),
    request_body = LogoutRequest,
    responses(
        (status = 200, description = "Logged out", body = Done),
        (status = 400, description = "Neither or both of device_id and extension", body = HotDeskErrorBody),
        (status = 401, description = "No credentials, and not from the device itself", body = HotDeskErrorBody),
        (status = 403, description = "Someone else's session", body = HotDeskErrorBody),
        (status = 404, description = "Nothing was logged in", body = HotDeskErrorBody),
    ))]
async fn logout(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LogoutRequest>,
) -> Result<JsonBody<Done>> {
    let of = match (body.device_id, body.extension) {
        (Some(d), None) => LogoutOf::Device(d),
        (None, Some(e)) => LogoutOf::Extension(e),
        _ => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "device_id",
                "give either device_id or extension",
            )
            .into());
        }
    };
    let reason = allowed(&state, caller.as_ref(), &of, peer).await?;
    let (extension, count) = state.app.hot_desk.logout(&of, reason).await?;
    Ok(JsonBody(Done {
        success: true,
        message: format!("Extension {extension} logged out from {count} device(s)"),
    }))
}

/// Whether the caller may act on what `of` names, and as what: an admin, the
/// session's extension, or the device itself (no credentials, from its address).
async fn allowed(
    state: &AppState,
    caller: Option<&Principal>,
    of: &LogoutOf,
    peer: SocketAddr,
) -> Result<LogoutReason> {
    let service = &state.app.hot_desk;
    if let Some(p) = caller {
        if p.is_admin() {
            return Ok(LogoutReason::Admin);
        }
        let owner = match of {
            LogoutOf::Extension(e) => Some(e.clone()),
            LogoutOf::Device(d) => service.session(d).await?.map(|s| s.extension),
        };
        return match owner {
            Some(e) if p.is_extension(&e) => Ok(LogoutReason::User),
            // Nothing there: say so rather than hide it from its would-be owner.
            None => Ok(LogoutReason::User),
            Some(_) => {
                Err(ApiError::forbidden("forbidden", "that session is another extension's").into())
            }
        };
    }
    if let LogoutOf::Device(d) = of
        && service.is_device_at(d, &peer.ip().to_string()).await?
    {
        return Ok(LogoutReason::User);
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "log in first, or send this from the device itself",
    )
    .into())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub count: usize,
    pub sessions: Vec<Session>,
}

/// The active sessions: all of them for an admin, a user's own otherwise (seed 000).
#[utoipa::path(get, path = "/api/hot-desk/sessions", tag = "hot-desk",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    responses(
        (status = 200, description = "Sessions", body = SessionList),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn sessions(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<JsonBody<SessionList>> {
    let service = &state.app.hot_desk;
    let sessions = match (&p.extension, p.is_admin()) {
        (_, true) => service.sessions().await?,
        (Some(own), false) => service.sessions_of(own).await?,
        (None, false) => Vec::new(),
    };
    Ok(JsonBody(SessionList {
        count: sessions.len(),
        sessions,
    }))
}

/// The session at a device (seed 000); `device_id` in any MAC format.
#[utoipa::path(get, path = "/api/hot-desk/session/{device_id}", tag = "hot-desk",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("device_id" = String, Path, description = "MAC address in any format, or another device id")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension's session", body = HotDeskErrorBody),
        (status = 404, description = "No one is logged in there", body = HotDeskErrorBody),
    ))]
async fn session(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(device_id): Path<String>,
) -> Result<JsonBody<Session>> {
    let Some(session) = state.app.hot_desk.session(&device_id).await? else {
        return Err(HotDeskError::NotLoggedIn(format!(
            "no extension is logged in at device {device_id}"
        ))
        .into());
    };
    if !(p.is_admin() || p.is_extension(&session.extension)) {
        return Err(ApiError::forbidden("forbidden", "that session is another extension's").into());
    }
    Ok(JsonBody(session))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExtensionSessions {
    pub extension: String,
    pub logged_in: bool,
    pub device_count: usize,
    pub sessions: Vec<Session>,
}

/// Where an extension is logged in (seed 000).
#[utoipa::path(get, path = "/api/hot-desk/extension/{extension}", tag = "hot-desk",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("extension" = String, Path, description = "Extension number")),
    responses(
        (status = 200, description = "Its sessions", body = ExtensionSessions),
        (status = 400, description = "Not an extension number", body = HotDeskErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = HotDeskErrorBody),
    ))]
async fn extension(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(extension): Path<String>,
) -> Result<JsonBody<ExtensionSessions>> {
    if !(p.is_admin() || p.is_extension(&extension)) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("you may only see your own extension, not {extension}"),
        )
        .into());
    }
    let sessions = state.app.hot_desk.sessions_of(&extension).await?;
    Ok(JsonBody(ExtensionSessions {
        extension,
        logged_in: !sessions.is_empty(),
        device_count: sessions.len(),
        sessions,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest {
    pub device_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityResponse {
    pub success: bool,
    pub session: Session,
}

/// Activity at a device: its idle time for the auto-logout starts again.
#[utoipa::path(post, path = "/api/hot-desk/activity", tag = "hot-desk",
    security(()),
    request_body = ActivityRequest,
    responses(
        (status = 200, description = "Recorded", body = ActivityResponse),
        (status = 401, description = "No credentials, and not from the device itself", body = HotDeskErrorBody),
        (status = 403, description = "Another extension's session", body = HotDeskErrorBody),
        (status = 404, description = "No one is logged in there", body = HotDeskErrorBody),
    ))]
async fn activity(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ActivityRequest>,
) -> Result<JsonBody<ActivityResponse>> {
    let of = LogoutOf::Device(body.device_id.clone());
    allowed(&state, caller.as_ref(), &of, peer).await?;
    let session = state.app.hot_desk.activity(&body.device_id).await?;
    Ok(JsonBody(ActivityResponse {
        success: true,
        session,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// RFC 3339; default a week before `to`.
    pub from: Option<String>,
    /// RFC 3339; default now.
    pub to: Option<String>,
}

fn period(
    from: Option<&str>,
    to: Option<&str>,
) -> std::result::Result<(Timestamp, Timestamp), ApiError> {
    let parse = |name: &'static str, text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    name,
                    format!("{name}: `{text}` is not an RFC 3339 time (2026-12-01T00:00:00Z)"),
                )
            })
    };
    let to = to
        .map(|t| parse("to", t))
        .transpose()?
        .unwrap_or_else(Timestamp::now);
    let from = from
        .map(|f| parse("from", f))
        .transpose()?
        .unwrap_or_else(|| to.minus(std::time::Duration::from_secs(DEFAULT_PERIOD_SECS)));
    if from >= to {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "from",
            "from must be before to",
        ));
    }
    Ok((from, to))
}

/// Usage of the period (seed "Monitoring & Reporting"): active sessions, logins and
/// logouts per day, average session length, most-used devices, peak hours, PIN
/// failures, auto-logouts.
#[utoipa::path(get, path = "/api/hot-desk/reports", tag = "hot-desk",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(Period),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 400, description = "Bad period", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn reports(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Query(q): Query<Period>,
) -> Result<JsonBody<Report>> {
    let (from, to) = period(q.from.as_deref(), q.to.as_deref())?;
    Ok(JsonBody(state.app.hot_desk.report(from, to).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub extension: Option<String>,
    pub device_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// At most 1000; default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub extension: String,
    pub device_id: String,
    pub ip_address: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub logged_in_at: Timestamp,
    /// Absent while the session lasts.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub logged_out_at: Option<Timestamp>,
    /// `user`, `admin`, `auto_logout`, `replaced` or `moved`.
    pub logout_reason: Option<String>,
    pub duration_seconds: Option<i64>,
}

impl From<HistoryRow> for HistoryEntry {
    fn from(r: HistoryRow) -> Self {
        Self {
            duration_seconds: r.logged_out_at.map(|o| (o.0 - r.logged_in_at.0) / 1000),
            extension: r.extension,
            device_id: r.device_label,
            ip_address: r.ip_address,
            logged_in_at: r.logged_in_at,
            logged_out_at: r.logged_out_at,
            logout_reason: r.logout_reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub items: Vec<HistoryEntry>,
}

/// Login history, newest first: an admin's of anyone, a user's of their own extension.
#[utoipa::path(get, path = "/api/hot-desk/history", tag = "hot-desk",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "Sessions that began in the period", body = History),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension's history", body = ErrorBody),
    ))]
async fn history(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Query(q): Query<HistoryQuery>,
) -> Result<JsonBody<History>> {
    let extension = match (&q.extension, p.is_admin()) {
        (e, true) => e.clone(),
        (Some(e), false) if p.is_extension(e) => Some(e.clone()),
        (None, false) if p.extension.is_some() => p.extension.clone(),
        _ => {
            return Err(ApiError::forbidden(
                "forbidden",
                "you may only see your own extension's history",
            )
            .into());
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            format!("limit: 1 to {MAX_HISTORY}"),
        )
        .into());
    }
    let (from, to) = period(q.from.as_deref(), q.to.as_deref())?;
    let rows = state
        .app
        .hot_desk
        .history(
            from,
            to,
            extension.as_deref(),
            q.device_id.as_deref(),
            limit,
        )
        .await?;
    Ok(JsonBody(History {
        items: rows.into_iter().map(HistoryEntry::from).collect(),
    }))
}
