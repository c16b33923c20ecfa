//! Threat detection in front of every HTTP request (spec 08): a blocked or flooding
//! address gets `403` before any handler runs; a scanner's User-Agent, SQL injection or
//! path traversal in the path, the query or a form / JSON body is reported to
//! [`ThreatService`](crate::features::security::ThreatService) and refused with `403`.
//! Failed logins, PINs and second factors are reported by their handlers.

use std::net::SocketAddr;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::features::security::{Protocol, Signal, patterns};

/// Bodies up to this size are read for attack patterns (JSON and forms; uploads of
/// audio are not text).
const MAX_INSPECTED_BODY: usize = 64 * 1024;

pub async fn threats(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
    else {
        return next.run(req).await;
    };
    let threats = &state.app.threats;
    let ip = peer.ip();
    if threats.is_blocked(ip) || threats.count_request(ip, Protocol::Http) {
        return blocked();
    }
    if !threats.enabled() || threats.is_trusted(ip) {
        return next.run(req).await;
    }
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(found) = patterns::scanner(ua, &threats.config().http_scanner_user_agents) {
        threats.signal(ip, Protocol::Http, Signal::Scanner(found.to_owned()));
        return blocked();
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("", |p| p.as_str())
        .to_owned();
    if let Some(kind) = patterns::attack(&target) {
        return suspicious(&state, ip, kind, &target);
    }
    let textual = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json") || t.contains("form"));
    let small = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= MAX_INSPECTED_BODY);
    if !(textual && small) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_INSPECTED_BODY).await else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the body could not be read",
        )
        .into_response();
    };
    if let Some(kind) = patterns::attack(&String::from_utf8_lossy(&bytes)) {
        return suspicious(&state, ip, kind, &target);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn blocked() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "address_blocked",
        "requests from your address are blocked",
    )
    .into_response()
}

fn suspicious(
    state: &AppState,
    ip: std::net::IpAddr,
    kind: &'static str,
    target: &str,
) -> Response {
    let sample: String = target.chars().take(200).collect();
    state
        .app
        .threats
        .signal(ip, Protocol::Http, Signal::Attack { kind, sample });
    ApiError::new(
        StatusCode::FORBIDDEN,
        "suspicious_request",
        "the request looks like an attack and was refused",
    )
    .into_response()
}
