//! `/healthz`, `/readyz` and `/metrics` (public: load balancers and Prometheus
//! scrape them without credentials; they reveal no personal data).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each dependency: `ok` or what is wrong.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

/// Ready to serve: the database answers and the SIP listeners are bound.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    ))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut checks = std::collections::BTreeMap::new();
    let db_ok = match state.app.db.ping().await {
        Ok(()) => {
            checks.insert("database", "ok".to_owned());
            true
        }
        Err(e) => {
            checks.insert("database", e.to_string());
            false
        }
    };
    let sip_ok = match &state.sip {
        Some(sip) if !sip.listeners.is_empty() => {
            let list: Vec<String> = sip.listeners.iter().map(ToString::to_string).collect();
            checks.insert("sip", format!("ok ({})", list.join(", ")));
            true
        }
        _ => {
            checks.insert("sip", "not listening".to_owned());
            false
        }
    };
    let (code, status) = if db_ok && sip_ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (code, axum::Json(Readiness { status, checks }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::telemetry::refresh_gauges(&state.app, state.sip.as_deref()).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
