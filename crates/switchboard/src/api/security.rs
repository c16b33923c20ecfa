//! `/api/security` (admin): seed 002's threat-detection paths (block, unblock, summary,
//! check an address) and the lists of blocks and threat events. Thin handlers over
//! [`ThreatService`](crate::features::security::ThreatService).

use std::time::Duration;

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
use crate::features::security::{BlockView, IpCheck, Summary, ThreatEvent};

/// The longest period the summary and the events cover.
const MAX_HOURS: u32 = 24 * 90;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(block_ip))
        .routes(routes!(unblock_ip))
        .routes(routes!(threat_summary))
        .routes(routes!(check_ip))
        .routes(routes!(blocked))
        .routes(routes!(events))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// An address (`192.0.2.7`, `2001:db8::7`) or a CIDR range (`198.51.100.0/24`).
    pub ip: String,
    /// Seconds; absent: `ip_block_duration`; `0`: until unblocked.
    pub duration_seconds: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockResponse {
    pub success: bool,
    #[serde(flatten)]
    pub block: BlockView,
}

/// Block an address or range (seed 002).
#[utoipa::path(post, path = "/api/security/block-ip", tag = "security",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "Blocked", body = BlockResponse),
        (status = 400, description = "Not an address or range, or no reason", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "A trusted network", body = ErrorBody),
    ))]
async fn block_ip(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    Json(body): Json<BlockRequest>,
) -> Result<axum::Json<BlockResponse>, ApiError> {
    let threats = &state.app.threats;
    let duration = match body.duration_seconds {
        None => Some(Duration::from_secs(threats.config().ip_block_duration)),
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
    };
    let block = threats
        .block(&admin.actor(), &body.ip, duration, &body.reason)
        .await?;
    Ok(axum::Json(BlockResponse {
        success: true,
        block,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockRequest {
    pub ip: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
}

/// Lift a block (seed 002).
#[utoipa::path(post, path = "/api/security/unblock-ip", tag = "security",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = UnblockRequest,
    responses(
        (status = 200, description = "Unblocked", body = Done),
        (status = 400, description = "Not an address or range", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Not blocked", body = ErrorBody),
    ))]
async fn unblock_ip(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    Json(body): Json<UnblockRequest>,
) -> Result<axum::Json<Done>, ApiError> {
    state.app.threats.unblock(&admin.actor(), &body.ip).await?;
    Ok(axum::Json(Done { success: true }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// 1 to 2160; default 24.
    pub hours: Option<u32>,
}

fn hours(h: Option<u32>) -> Result<u32, ApiError> {
    let h = h.unwrap_or(24);
    if !(1..=MAX_HOURS).contains(&h) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "hours",
            format!("hours: 1 to {MAX_HOURS}"),
        ));
    }
    Ok(h)
}

/// Threats of the last hours (seed 002): blocks in force, events by type, the worst
/// offenders with their scores.
#[utoipa::path(get, path = "/api/security/threat-summary", tag = "security",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(Hours),
    responses(
        (status = 200, description = "Summary", body = Summary),
        (status = 400, description = "Bad hours", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn threat_summary(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Query(q): Query<Hours>,
) -> Result<axum::Json<Summary>, ApiError> {
    Ok(axum::Json(
        state.app.threats.summary(hours(q.hours)?).await?,
    ))
}

/// Whether an address is blocked, until when and why, and its threat score (seed 002).
#[utoipa::path(get, path = "/api/security/check-ip/{ip}", tag = "security",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("ip" = String, Path, description = "An IPv4 or IPv6 address")),
    responses(
        (status = 200, description = "The address", body = IpCheck),
        (status = 400, description = "Not an address", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn check_ip(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(ip): Path<String>,
) -> Result<axum::Json<IpCheck>, ApiError> {
    Ok(axum::Json(state.app.threats.check(&ip)?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    pub items: Vec<BlockView>,
}

/// The blocks in force, newest first.
#[utoipa::path(get, path = "/api/security/blocked", tag = "security",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "Blocks", body = BlockList),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn blocked(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<BlockList>, ApiError> {
    Ok(axum::Json(BlockList {
        items: state.app.threats.blocked(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    pub ip: Option<String>,
    /// 1 to 2160; default 24.
    pub hours: Option<u32>,
    /// 1 to 1000; default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<ThreatEvent>,
}

/// Threat events, newest first.
#[utoipa::path(get, path = "/api/security/events", tag = "security",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(EventQuery),
    responses(
        (status = 200, description = "Events", body = EventList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn events(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Query(q): Query<EventQuery>,
) -> Result<axum::Json<EventList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            "limit: 1 to 1000",
        ));
    }
    let items = state
        .app
        .threats
        .events(q.ip.as_deref(), hours(q.hours)?, limit)
        .await?;
    Ok(axum::Json(EventList { items }))
}
