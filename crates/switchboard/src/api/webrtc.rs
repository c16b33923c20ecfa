//! `/api/webrtc/session(s)` (spec 03, seed 001 paths): open, list, look at and end
//! browser phone sessions. Thin handlers over
//! [`WebrtcService`](crate::features::webrtc::WebrtcService).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{Authenticated, Client};
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::features::webrtc::{Caller, WebrtcSession};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session))
        .routes(routes!(list_sessions))
        .routes(routes!(get_session, end_session))
}

/// `POST /api/webrtc/session` (seed 001: `{"extension": "webrtc-admin"}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// The extension the browser acts as: a number (`1001`) or a virtual name
    /// (`webrtc-admin`, created on first use). Default: the caller's own extension.
    pub extension: Option<String>,
}

/// Open a browser phone session for an extension (an admin: any; a user: their own).
#[utoipa::path(post, path = "/api/webrtc/session", tag = "webrtc",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = NewSession,
    responses(
        (status = 200, description = "The session, with the ICE servers for the browser (200, as the seed's system answered, rather than 201)", body = WebrtcSession),
        (status = 400, description = "Not an extension number or name (`field`: `extension`)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's extension (`forbidden`), a deactivated one (`extension_inactive`), or the WebPhone is turned off (`webrtc_disabled`)", body = ErrorBody),
        (status = 404, description = "No such extension (and it is not created on first use)", body = ErrorBody),
    ))]
async fn create_session(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Client(client): Client,
    Json(body): Json<NewSession>,
) -> Result<(StatusCode, axum::Json<WebrtcSession>), ApiError> {
    let session = state
        .app
        .webrtc
        .create_session(
            &Caller::of(&p),
            body.extension.as_deref(),
            client.user_agent,
            client.ip,
        )
        .await?;
    Ok((StatusCode::OK, axum::Json(session)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebrtcSessions {
    pub items: Vec<WebrtcSession>,
}

/// The sessions open now: all of them for an admin, their own extension's for a user.
#[utoipa::path(get, path = "/api/webrtc/sessions", tag = "webrtc",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    responses(
        (status = 200, description = "Sessions, oldest first", body = WebrtcSessions),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn list_sessions(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<axum::Json<WebrtcSessions>, ApiError> {
    Ok(axum::Json(WebrtcSessions {
        items: state.app.webrtc.list(&Caller::of(&p)).await?,
    }))
}

/// One session (its extension or an admin).
#[utoipa::path(get, path = "/api/webrtc/session/{session_id}", tag = "webrtc",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("session_id" = String, Path, description = "The session id (32 hex digits)")),
    responses(
        (status = 200, description = "The session", body = WebrtcSession),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such session, or someone else's", body = ErrorBody),
    ))]
async fn get_session(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(session_id): Path<String>,
) -> Result<axum::Json<WebrtcSession>, ApiError> {
    Ok(axum::Json(
        state.app.webrtc.get(&Caller::of(&p), &session_id).await?,
    ))
}

/// End a session (its extension or an admin): its `registered_phones` row goes with it.
#[utoipa::path(delete, path = "/api/webrtc/session/{session_id}", tag = "webrtc",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("session_id" = String, Path, description = "The session id (32 hex digits)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such session, or someone else's", body = ErrorBody),
    ))]
async fn end_session(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.webrtc.end(&Caller::of(&p), &session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
