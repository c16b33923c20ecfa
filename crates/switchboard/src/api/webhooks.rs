//! `/api/webhooks` (admin): subscriptions, a test event, secret rotation, the delivery
//! log and re-delivery. Thin handlers over
//! [`WebhookService`](crate::features::webhooks::WebhookService).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::AdminOnly;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use crate::features::webhooks::{Delivery, Subscription, SubscriptionInput, WithSecret};

/// The longest page of the delivery log.
const MAX_DELIVERIES: i64 = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(test))
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
        .routes(routes!(retry))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<Subscription>,
}

/// Every subscription (config.yml's and the API's) with its delivery health.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "Subscriptions", body = SubscriptionList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<SubscriptionList>, ApiError> {
    Ok(axum::Json(SubscriptionList {
        items: state.app.webhooks.list().await?,
    }))
}

/// Subscribe a receiver; it gets the events from now on. The secret (given or
/// generated) is in the answer this once.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = SubscriptionInput,
    responses(
        (status = 201, description = "Created", body = WithSecret),
        (status = 400, description = "Bad URL, events or secret (`field` names it)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Json(input): Json<SubscriptionInput>,
) -> Result<(StatusCode, axum::Json<WithSecret>), ApiError> {
    let created = state.app.webhooks.create(input).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// One subscription.
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ))]
async fn get_one(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<axum::Json<Subscription>, ApiError> {
    Ok(axum::Json(state.app.webhooks.get(&id).await?))
}

/// Replace a subscription's settings (the secret only when given). Subscriptions of
/// config.yml are changed there (409).
#[utoipa::path(put, path = "/api/webhooks/{id}", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Subscription id")),
    request_body = SubscriptionInput,
    responses(
        (status = 200, description = "Updated", body = Subscription),
        (status = 400, description = "Bad URL, events or secret", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "Defined in config.yml", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
    Json(input): Json<SubscriptionInput>,
) -> Result<axum::Json<Subscription>, ApiError> {
    Ok(axum::Json(state.app.webhooks.update(&id, input).await?))
}

/// Delete a subscription and its delivery log. Those of config.yml are removed there.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "Defined in config.yml", body = ErrorBody),
    ))]
async fn delete(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.webhooks.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// The `webhook.test` event's id (its `webhook-id`).
    pub event_id: String,
}

/// Send the subscription a `webhook.test` event (to it alone).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ))]
async fn test(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Queued>), ApiError> {
    let event_id = state.app.webhooks.test(&admin.actor(), &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Queued {
            event_id: event_id.to_string(),
        }),
    ))
}

/// A new signing secret, shown this once (409 when config.yml sets it).
#[utoipa::path(post, path = "/api/webhooks/{id}/secret", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The new secret", body = WithSecret),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "The secret is set in config.yml", body = ErrorBody),
    ))]
async fn rotate_secret(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<axum::Json<WithSecret>, ApiError> {
    Ok(axum::Json(state.app.webhooks.rotate_secret(&id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// 1–500, default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
}

/// The subscription's deliveries, newest event first (kept 7 days once finished).
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Subscription id"), DeliveryQuery),
    responses(
        (status = 200, description = "Deliveries", body = DeliveryList),
        (status = 400, description = "Bad status or limit", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
    ))]
async fn deliveries(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_DELIVERIES).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            format!("limit: 1 to {MAX_DELIVERIES}"),
        ));
    }
    let items = state
        .app
        .webhooks
        .deliveries(&id, q.status.as_deref(), limit)
        .await?;
    Ok(axum::Json(DeliveryList { items }))
}

/// Deliver again: a failed (or delivered) delivery is queued, due now, with a fresh
/// `max_age`.
#[utoipa::path(post, path = "/api/webhooks/deliveries/{id}/retry", tag = "webhooks",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
    ))]
async fn retry(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Delivery>), ApiError> {
    let delivery = state.app.webhooks.retry(&id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)))
}
