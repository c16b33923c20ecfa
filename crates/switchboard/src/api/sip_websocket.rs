//! `GET /sip`: SIP over WebSocket (RFC 7118) for browser SIP clients. Public at the
//! HTTP level: every SIP request on it meets the same digest authentication as on UDP.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::config::{HttpTls, SipTransport};
use crate::sip_server::transport::Flow;
use crate::sip_server::websocket;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sip_websocket))
}

/// Upgrades to a SIP WebSocket (subprotocol `sip`, required). Each WebSocket message
/// is one SIP message; REGISTER, INVITE and the rest are digest-authenticated as on
/// any SIP transport. `404` when `features.webrtc.enabled` is false.
#[utoipa::path(get, path = "/sip", tag = "sip", security(()),
    responses(
        (status = 101, description = "Switching to the SIP WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade offering the `sip` subprotocol", body = ErrorBody),
        (status = 404, description = "WebRTC is turned off", body = ErrorBody),
    ))]
async fn sip_websocket(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let config = &state.app.config;
    let Some(sip) = state.sip.clone().filter(|_| config.features.webrtc.enabled) else {
        return ApiError::not_found("SIP over WebSocket is off (features.webrtc.enabled)")
            .into_response();
    };
    let upgrade = match upgrade {
        Ok(u) => u.protocols(["sip"]),
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_a_websocket",
                format!("/sip takes a WebSocket upgrade: {}", e.body_text()),
            )
            .into_response();
        }
    };
    if upgrade.selected_protocol().is_none() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "sip_subprotocol_required",
            "offer the WebSocket subprotocol `sip` (Sec-WebSocket-Protocol, RFC 7118)",
        )
        .into_response();
    }
    let transport = match config.http.tls {
        HttpTls::Off => SipTransport::Ws,
        _ => SipTransport::Wss,
    };
    let flow = Flow {
        transport,
        local: state.http_addr,
        remote,
        conn: None,
    };
    let stop = sip.stopping();
    upgrade.on_upgrade(move |socket| websocket::serve(sip.core.clone(), socket, flow, stop))
}
