//! `/api/api-keys`: bearer keys for integrations (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::AdminOnly;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::features::auth::ApiKeyInfo;
use crate::role::Role;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(delete_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    /// Default `admin`.
    pub role: Option<Role>,
    /// The extension a `user` key acts for.
    pub extension: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    /// Use as `Authorization: Bearer <key>`; shown this once.
    pub key: String,
}

/// List API keys (never the keys themselves).
#[utoipa::path(get, path = "/api/api-keys", tag = "api-keys",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "All API keys", body = Vec<ApiKeyInfo>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list_keys(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<Vec<ApiKeyInfo>>, ApiError> {
    Ok(axum::Json(state.app.auth.list_api_keys().await?))
}

/// Create an API key; the key is returned once and stored only as a hash.
#[utoipa::path(post, path = "/api/api-keys", tag = "api-keys",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created", body = CreatedApiKey),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn create_key(
    State(state): State<AppState>,
    AdminOnly(p): AdminOnly,
    Json(body): Json<NewApiKey>,
) -> Result<impl IntoResponse, ApiError> {
    let (info, key) = state
        .app
        .auth
        .create_api_key(
            &p.actor(),
            &body.name,
            body.role.unwrap_or(Role::Admin),
            body.extension,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedApiKey { info, key })))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/api/api-keys/{id}", tag = "api-keys",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
async fn delete_key(
    State(state): State<AppState>,
    AdminOnly(p): AdminOnly,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.auth.delete_api_key(&p.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
