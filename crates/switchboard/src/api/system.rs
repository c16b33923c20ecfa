//! `/api/system/status`: what the dashboard shows.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use crate::role::Role;
use crate::store::extensions::{self as ext_store, ListFilter};
use crate::time::Timestamp;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExtensionCounts {
    pub total: i64,
    pub active: i64,
    pub admins: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemStatus {
    pub version: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    pub uptime_seconds: i64,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    pub sip_realm: String,
    pub extensions: ExtensionCounts,
}

/// System overview for the dashboard.
#[utoipa::path(get, path = "/api/system/status", tag = "system",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    responses(
        (status = 200, description = "Overview", body = SystemStatus),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ))]
async fn status(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
) -> Result<axum::Json<SystemStatus>, ApiError> {
    let pool = state.app.db.pool();
    let count = |filter: ListFilter| async move { ext_store::count(pool, &filter).await };
    let extensions = ExtensionCounts {
        total: count(ListFilter::default()).await?,
        active: count(ListFilter {
            active: Some(true),
            ..Default::default()
        })
        .await?,
        admins: count(ListFilter {
            role: Some(Role::Admin),
            active: Some(true),
            ..Default::default()
        })
        .await?,
    };
    Ok(axum::Json(SystemStatus {
        version: env!("CARGO_PKG_VERSION"),
        started_at: state.started_at,
        uptime_seconds: (Timestamp::now().millis() - state.started_at.millis()) / 1000,
        database: state.app.db.backend().as_str(),
        sip_realm: state.app.config.sip.realm.clone(),
        extensions,
    }))
}
