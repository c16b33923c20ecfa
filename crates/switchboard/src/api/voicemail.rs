//! `/api/voicemail`: the voicemail PIN for now; messages and greetings come with the
//! voicemail feature.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(set_pin))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinChange {
    /// 4–12 digits (`security.min_pin_length`), not a run or repeated digit.
    pub pin: String,
}

/// Set the voicemail PIN (also the hot-desk PIN) of your own extension, or any as admin.
#[utoipa::path(put, path = "/api/voicemail/{number}/pin", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    request_body = PinChange,
    responses(
        (status = 204, description = "PIN changed"),
        (status = 400, description = "Weak or malformed PIN", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's extension", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn set_pin(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
    Json(body): Json<PinChange>,
) -> Result<StatusCode, ApiError> {
    if !(p.is_admin() || p.is_extension(&number)) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("you may only change your own PIN, not {number}'s"),
        ));
    }
    state
        .app
        .extensions
        .set_pin(&p.actor(), &number, "pin", Some(body.pin))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
