//! `/api/auto-attendant`: extension 0's greeting menu (admin). Thin handlers over
//! [`AutoAttendantService`](crate::features::auto_attendant::AutoAttendantService),
//! which the attendant answering calls reads too.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::AdminOnly;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::features::auto_attendant::{Current, Settings};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

/// The auto attendant's settings in force, and whether they come from config.yml or
/// the API.
#[utoipa::path(get, path = "/api/auto-attendant", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "Settings in force", body = Current),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn get_settings(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<Current>, ApiError> {
    Ok(axum::Json(state.app.auto_attendant.current().await?))
}

/// Replace the auto attendant's settings (absent fields take their defaults). They are
/// stored and win over config.yml's from now on; the next call to 0 uses them.
#[utoipa::path(put, path = "/api/auto-attendant", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = Settings,
    responses(
        (status = 200, description = "Settings stored and in force", body = Current),
        (status = 400, description = "A setting breaks a rule (`field` names it)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn put_settings(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    Json(settings): Json<Settings>,
) -> Result<axum::Json<Current>, ApiError> {
    let current = state
        .app
        .auto_attendant
        .set(&admin.actor(), settings)
        .await?;
    Ok(axum::Json(current))
}
