//! `/api/registered-phones` (seed 004 shapes: plain JSON arrays).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{AdminOnly, Authenticated};
use super::error::{ApiError, ErrorBody};
use crate::features::registered_phones::RegisteredPhone;
use crate::store::registered_phones::PhoneFilter;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_phones))
        .routes(routes!(phones_of_extension))
        .routes(routes!(phones_by_mac))
        .routes(routes!(phones_by_ip))
        .routes(routes!(delete_phone))
}

/// Every device that registered, with whether it is registered now.
#[utoipa::path(get, path = "/api/registered-phones", tag = "registered-phones",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "All devices", body = Vec<RegisteredPhone>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list_phones(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<Vec<RegisteredPhone>>, ApiError> {
    Ok(axum::Json(
        state
            .app
            .registered_phones
            .list(&PhoneFilter::default())
            .await?,
    ))
}

/// An extension's devices (a user may see their own).
#[utoipa::path(get, path = "/api/registered-phones/extension/{number}", tag = "registered-phones",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    responses(
        (status = 200, description = "The extension's devices", body = Vec<RegisteredPhone>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's extension", body = ErrorBody),
    ))]
async fn phones_of_extension(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
) -> Result<axum::Json<Vec<RegisteredPhone>>, ApiError> {
    if !(p.is_admin() || p.is_extension(&number)) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("you may only see your own devices, not {number}'s"),
        ));
    }
    let filter = PhoneFilter {
        extension: Some(number),
        ..Default::default()
    };
    Ok(axum::Json(state.app.registered_phones.list(&filter).await?))
}

/// Devices with a MAC address (any format: `00:15:65:12:34:56`, `00-15-…`, `001565…`).
#[utoipa::path(get, path = "/api/registered-phones/mac/{mac}", tag = "registered-phones",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("mac" = String, Path, description = "MAC address")),
    responses(
        (status = 200, description = "Matching devices", body = Vec<RegisteredPhone>),
        (status = 400, description = "Not a MAC address", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn phones_by_mac(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(mac): Path<String>,
) -> Result<axum::Json<Vec<RegisteredPhone>>, ApiError> {
    Ok(axum::Json(state.app.registered_phones.by_mac(&mac).await?))
}

/// Devices last seen at an IP address.
#[utoipa::path(get, path = "/api/registered-phones/ip/{ip}", tag = "registered-phones",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("ip" = String, Path, description = "IP address")),
    responses(
        (status = 200, description = "Matching devices", body = Vec<RegisteredPhone>),
        (status = 400, description = "Not an IP address", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn phones_by_ip(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(ip): Path<String>,
) -> Result<axum::Json<Vec<RegisteredPhone>>, ApiError> {
    Ok(axum::Json(state.app.registered_phones.by_ip(&ip).await?))
}

/// Remove a device from the inventory (it reappears if it registers again).
#[utoipa::path(delete, path = "/api/registered-phones/{id}", tag = "registered-phones",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = i64, Path, description = "Inventory id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not an id", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such device", body = ErrorBody),
    ))]
async fn delete_phone(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "id",
            format!("`{id}` is not an inventory id"),
        )
    })?;
    state.app.registered_phones.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
