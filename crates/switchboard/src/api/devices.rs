//! `/api/devices` (spec 11, seed 003 paths): enrolment tokens (admin), enrolment with a
//! token (public), heartbeats and SSH keys (the device, by its secret), the device list
//! (admin), and the server's SSH host keys. Thin handlers over
//! [`DeviceService`](crate::features::devices::DeviceService).

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{AdminOnly, Client};
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query, parse_json};
use crate::features::ServiceError;
use crate::features::auth::ClientInfo;
use crate::features::devices::{DeviceInfo, DeviceView, TokenView};
use crate::features::security::{Protocol, Signal};
use crate::features::{Actor, auth::Principal};
use crate::store::devices::DeviceRow;

const DEVICE_SECRET_PREFIX: &str = "sbd_";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(register))
        .routes(routes!(online))
        .routes(routes!(list))
        .routes(routes!(get_device, delete_device))
        .routes(routes!(put_ssh_key, get_ssh_key))
        .routes(routes!(authorized_keys))
        .routes(routes!(ssh_hostkey))
}

/// A JSON body that may be left out (the seed's clients send the token in the query
/// and may send no heartbeat fields).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

fn ip(client: &ClientInfo) -> Option<IpAddr> {
    client.ip.as_deref().and_then(|ip| ip.parse().ok())
}

fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned())
}

/// The caller of a device endpoint: the device itself (its secret) or an admin.
enum DeviceCaller {
    Device(DeviceRow),
    Admin(Principal),
}

impl DeviceCaller {
    fn actor(&self) -> Actor {
        match self {
            Self::Device(d) => Actor::Device(d.device_key.clone()),
            Self::Admin(p) => p.actor(),
        }
    }
}

/// A device's secret for the device named in the path; anything else must be an
/// admin's credentials.
async fn device_or_admin(parts: &mut Parts, state: &AppState) -> Result<DeviceCaller, ApiError> {
    let key = parts
        .uri
        .path()
        .strip_prefix("/api/devices/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_owned();
    match bearer(parts) {
        Some(secret) if secret.starts_with(DEVICE_SECRET_PREFIX) => {
            let device = state.app.devices.authenticate(&key, &secret).await;
            if let (Err(ServiceError::Unauthorized { .. }), Some(ip)) = (
                &device,
                parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>(),
            ) {
                state.app.threats.signal(
                    ip.0.ip(),
                    Protocol::Http,
                    Signal::FailedAuth("device secret"),
                );
            }
            Ok(DeviceCaller::Device(device?))
        }
        _ => {
            let AdminOnly(p) = AdminOnly::from_request_parts(parts, state).await?;
            Ok(DeviceCaller::Admin(p))
        }
    }
}

/// Only the device itself (its secret).
struct DeviceOnly(DeviceRow);

impl FromRequestParts<AppState> for DeviceOnly {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let legacy = state.app.config.devices.legacy_key_only_auth;
        if bearer(parts).is_none() && !legacy {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send the device's secret: Authorization: Bearer <device_secret>",
            ));
        }
        if bearer(parts).is_none() {
            // devices.legacy_key_only_auth: the key in the path is all an old client sends.
            let key = parts.uri.path().split('/').nth(3).unwrap_or("").to_owned();
            return Ok(Self(state.app.devices.authenticate(&key, "").await?));
        }
        match device_or_admin(parts, state).await? {
            DeviceCaller::Device(d) => Ok(Self(d)),
            DeviceCaller::Admin(_) => Err(ApiError::forbidden(
                "device_only",
                "only the device itself (with its secret) calls this",
            )),
        }
    }
}

struct DeviceOrAdmin(DeviceCaller);

impl FromRequestParts<AppState> for DeviceOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(device_or_admin(parts, state).await?))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub note: Option<String>,
    /// Seconds; default `devices.token_expiry` (7 days).
    pub expires_in: Option<u64>,
    /// The extension the device will be linked to.
    pub extension: Option<String>,
}

/// Create a one-time enrolment token.
#[utoipa::path(post, path = "/api/devices/tokens", tag = "devices",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token", body = TokenView),
        (status = 400, description = "Bad expiry, note or extension", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn create_token(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    Json(body): Json<NewToken>,
) -> Result<(StatusCode, axum::Json<TokenView>), ApiError> {
    let token = state
        .app
        .devices
        .create_token(&admin.actor(), body.note, body.expires_in, body.extension)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(token)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub items: Vec<TokenView>,
}

/// The unused tokens that have not expired.
#[utoipa::path(get, path = "/api/devices/tokens", tag = "devices",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "Tokens", body = Tokens),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list_tokens(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<Tokens>, ApiError> {
    Ok(axum::Json(Tokens {
        items: state.app.devices.tokens().await?,
    }))
}

/// Revoke an unused token.
#[utoipa::path(delete, path = "/api/devices/tokens/{code}", tag = "devices",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("code" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such unused token", body = ErrorBody),
    ))]
async fn revoke_token(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(code): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.devices.revoke_token(&code).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub token_code: Option<String>,
    #[serde(default)]
    pub device_info: DeviceInfo,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TokenQuery {
    /// The token, as the seed's flow sends it.
    pub token_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub ok: bool,
    pub message: &'static str,
    /// Shown once: the device sends it as `Authorization: Bearer` from now on.
    pub device_secret: String,
}

/// Enrol a device with a one-time token (burned on use).
#[utoipa::path(post, path = "/api/devices/{device_key}/register", tag = "devices",
    security(()),
    params(("device_key" = String, Path), TokenQuery),
    request_body = Registration,
    responses(
        (status = 200, description = "Registered; the device's secret", body = Registered),
        (status = 400, description = "Malformed token or device info", body = ErrorBody),
        (status = 401, description = "Unknown or expired token", body = ErrorBody),
        (status = 409, description = "Token used already, or the device key is registered", body = ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    Client(client): Client,
    Path(device_key): Path<String>,
    Query(query): Query<TokenQuery>,
    body: Bytes,
) -> Result<axum::Json<Registered>, ApiError> {
    let body: Registration = optional_json(&body)?;
    let token = body.token_code.or(query.token_code).unwrap_or_default();
    let result = state
        .app
        .devices
        .register(&device_key, &token, body.device_info, ip(&client))
        .await;
    if let (Err(ServiceError::Unauthorized { .. } | ServiceError::Conflict { .. }), Some(ip)) =
        (&result, ip(&client))
    {
        state.app.threats.signal(
            ip,
            Protocol::Http,
            Signal::FailedAuth("device enrolment token"),
        );
    }
    Ok(axum::Json(Registered {
        ok: true,
        message: "Device registered",
        device_secret: result?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatAnswer {
    pub ok: bool,
    pub message: &'static str,
    pub ip_address: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<crate::time::Timestamp>,
}

/// A device's heartbeat (every field optional; the connection's address stands in
/// for a missing `ip_address`).
#[utoipa::path(post, path = "/api/devices/{device_key}/online", tag = "devices",
    security(("device_secret" = ["device"])),
    params(("device_key" = String, Path)),
    request_body = DeviceInfo,
    responses(
        (status = 200, description = "Recorded", body = HeartbeatAnswer),
        (status = 400, description = "A bad address or MAC (the field is named)", body = ErrorBody),
        (status = 401, description = "No or a wrong device secret", body = ErrorBody),
        (status = 404, description = "Unknown device", body = ErrorBody),
    ))]
async fn online(
    State(state): State<AppState>,
    Client(client): Client,
    DeviceOnly(device): DeviceOnly,
    body: Bytes,
) -> Result<axum::Json<HeartbeatAnswer>, ApiError> {
    let info: DeviceInfo = optional_json(&body)?;
    let view = state
        .app
        .devices
        .heartbeat(&device, info, ip(&client))
        .await?;
    Ok(axum::Json(HeartbeatAnswer {
        ok: true,
        message: "Heartbeat received",
        ip_address: view.ip_address,
        last_seen: view.last_seen,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    /// `online` or `offline`.
    pub status: Option<String>,
    pub extension: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Devices {
    pub items: Vec<DeviceView>,
}

/// The enrolled devices with their status.
#[utoipa::path(get, path = "/api/devices", tag = "devices",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(DeviceFilter),
    responses(
        (status = 200, description = "Devices", body = Devices),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Query(filter): Query<DeviceFilter>,
) -> Result<axum::Json<Devices>, ApiError> {
    if let Some(s) = filter.status.as_deref()
        && !["online", "offline"].contains(&s)
    {
        return Err(ServiceError::invalid("status", "online or offline").into());
    }
    Ok(axum::Json(Devices {
        items: state
            .app
            .devices
            .list(filter.status.as_deref(), filter.extension.as_deref())
            .await?,
    }))
}

/// One device (the device itself or an admin).
#[utoipa::path(get, path = "/api/devices/{device_key}", tag = "devices",
    security(("device_secret" = ["device"]), ("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("device_key" = String, Path)),
    responses(
        (status = 200, description = "The device", body = DeviceView),
        (status = 401, description = "No credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown device", body = ErrorBody),
    ))]
async fn get_device(
    State(state): State<AppState>,
    DeviceOrAdmin(_caller): DeviceOrAdmin,
    Path(device_key): Path<String>,
) -> Result<axum::Json<DeviceView>, ApiError> {
    Ok(axum::Json(state.app.devices.get(&device_key).await?))
}

/// Unregister a device (an admin, or the device itself): its secret stops working.
#[utoipa::path(delete, path = "/api/devices/{device_key}", tag = "devices",
    security(("device_secret" = ["device"]), ("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("device_key" = String, Path)),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 401, description = "No credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown device", body = ErrorBody),
    ))]
async fn delete_device(
    State(state): State<AppState>,
    DeviceOrAdmin(caller): DeviceOrAdmin,
    Path(device_key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .devices
        .delete(&caller.actor(), &device_key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKey {
    /// An OpenSSH public key (`ssh-ed25519 AAAA… comment`).
    pub pubkey: String,
    pub ssh_user: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SshKeyView {
    pub pubkey: String,
    pub ssh_user: Option<String>,
}

/// Publish the device's SSH public key.
#[utoipa::path(put, path = "/api/devices/{device_key}/ssh-key", tag = "devices",
    security(("device_secret" = ["device"])),
    params(("device_key" = String, Path)),
    request_body = SshKey,
    responses(
        (status = 200, description = "Stored", body = SshKeyView),
        (status = 400, description = "Not a valid OpenSSH public key", body = ErrorBody),
        (status = 401, description = "No or a wrong device secret", body = ErrorBody),
        (status = 404, description = "Unknown device", body = ErrorBody),
    ))]
async fn put_ssh_key(
    State(state): State<AppState>,
    DeviceOnly(device): DeviceOnly,
    Json(body): Json<SshKey>,
) -> Result<axum::Json<SshKeyView>, ApiError> {
    let devices = &state.app.devices;
    devices
        .set_ssh_key(&device.device_key, &body.pubkey, body.ssh_user.as_deref())
        .await?;
    let (pubkey, ssh_user) = devices.ssh_key(&device.device_key).await?;
    Ok(axum::Json(SshKeyView { pubkey, ssh_user }))
}

/// The device's SSH public key (the device itself or an admin).
#[utoipa::path(get, path = "/api/devices/{device_key}/ssh-key", tag = "devices",
    security(("device_secret" = ["device"]), ("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("device_key" = String, Path)),
    responses(
        (status = 200, description = "The key", body = SshKeyView),
        (status = 401, description = "No credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown device, or no key", body = ErrorBody),
    ))]
async fn get_ssh_key(
    State(state): State<AppState>,
    DeviceOrAdmin(_caller): DeviceOrAdmin,
    Path(device_key): Path<String>,
) -> Result<axum::Json<SshKeyView>, ApiError> {
    let (pubkey, ssh_user) = state.app.devices.ssh_key(&device_key).await?;
    Ok(axum::Json(SshKeyView { pubkey, ssh_user }))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Every device's SSH key as `authorized_keys` lines (named by device key).
#[utoipa::path(get, path = "/api/devices/authorized-keys", tag = "devices",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "authorized_keys", body = String, content_type = "text/plain"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn authorized_keys(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<Response, ApiError> {
    Ok(text(state.app.devices.authorized_keys().await?))
}

/// The server's SSH host public keys, `ssh-keyscan` style (public: devices check the
/// server they talk to).
#[utoipa::path(get, path = "/api/ssh-hostkey", tag = "devices",
    security(()),
    responses(
        (status = 200, description = "Host keys", body = String, content_type = "text/plain"),
        (status = 404, description = "No host key files", body = ErrorBody),
    ))]
async fn ssh_hostkey(State(state): State<AppState>) -> Result<Response, ApiError> {
    let host = state
        .app
        .config
        .http
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "switchboard".into());
    Ok(text(state.app.devices.ssh_host_keys(&host)?))
}
