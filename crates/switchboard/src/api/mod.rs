//! The HTTP side: axum routers per feature (thin handlers over the feature services),
//! the auth extractors, the JSON error shape, the OpenAPI document and the panel.

pub mod api_keys;
pub mod audio;
pub mod auth;
pub mod auto_attendant;
pub mod calls;
pub mod devices;
pub mod error;
pub mod extensions;
pub mod extract;
pub mod guard;
pub mod health;
pub mod hot_desk;
pub mod mfa;
pub mod paging;
pub mod panel;
pub mod registered_phones;
pub mod security;
pub mod sip_websocket;
pub mod system;
pub mod voicemail;
pub mod webhooks;
pub mod webrtc;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use self::error::ApiError;
use crate::app::App;
use crate::time::Timestamp;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    /// The SIP side, when it runs (readiness, metrics).
    pub sip: Option<Arc<crate::sip_server::SipServer>>,
    pub metrics: PrometheusHandle,
    pub started_at: Timestamp,
    /// Where the HTTP server is bound (our side of a SIP WebSocket's flow).
    pub http_addr: std::net::SocketAddr,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "REST API of the Switchboard IP PBX. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`. \
            Each operation's security requirement names the role it needs as its scope: `admin`, or `user` (any \
            logged-in extension, possibly limited to its own data); operations with an empty requirement are public.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Login (with its second factor), logout, password"),
        (name = "mfa", description = "Multi-factor authentication: TOTP, backup codes, YubiKey, FIDO2 (seed 002)"),
        (name = "extensions", description = "Extensions and their credentials"),
        (name = "calls", description = "Calls in progress and call detail records"),
        (name = "voicemail", description = "Voicemail"),
        (name = "auto-attendant", description = "The auto attendant on extension 0"),
        (name = "hot-desk", description = "Hot-desking (seed 000)"),
        (name = "webhooks", description = "Webhook subscriptions and deliveries"),
        (name = "security", description = "Threat detection: blocks and threats (seed 002)"),
        (name = "devices", description = "Device enrolment, heartbeats and SSH keys (seed 003)"),
        (name = "api-keys", description = "API keys for integrations"),
        (name = "registered-phones", description = "Devices that registered (seed 004)"),
        (name = "sip", description = "SIP over WebSocket (RFC 7118) for browser phones"),
        (name = "webrtc", description = "Browser phone (WebPhone) sessions (seed 001)"),
        (name = "system", description = "System overview"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A session token from /api/auth/login or an API key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An enrolled device's secret (sbd_…) from its registration",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "The panel's session cookie; writes also need the X-CSRF-Token header",
            ))),
        );
    }
}

/// Every documented route, with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(extensions::routes())
        .merge(calls::routes())
        .merge(voicemail::routes())
        .merge(auto_attendant::routes())
        .merge(hot_desk::routes())
        .merge(webhooks::routes())
        .merge(security::routes())
        .merge(mfa::routes())
        .merge(devices::routes())
        .merge(api_keys::routes())
        .merge(registered_phones::routes())
        .merge(sip_websocket::routes())
        .merge(webrtc::routes())
        .merge(system::routes())
        .merge(health::routes())
}

/// The OpenAPI 3.1 document served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().split_for_parts().1;
    doc.paths.paths.insert(
        "/api/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("operations")
                .summary(Some("This OpenAPI document"))
                .security(utoipa::openapi::security::SecurityRequirement::default())
                .response(
                    "200",
                    utoipa::openapi::Response::new("The OpenAPI 3.1 document"),
                ),
        ),
    );
    doc
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    let doc = Arc::new(
        openapi()
            .to_json()
            .expect("the OpenAPI document serialises"),
    );
    let body_limit = state.app.config.http.body_limit;
    Router::new()
        .merge(routes)
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .merge(panel::router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(track_requests))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server hit a bug; see its log",
            )
            .into_response()
        }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::threats,
        ))
        .with_state(state)
}

/// Request counts and latencies per route for `/metrics`.
async fn track_requests(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("switchboard_http_requests_total", &labels).increment(1);
    metrics::histogram!("switchboard_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}
