//! `/api/auto-attendant`: extension 0's greeting menu (admin). Thin handlers over
//! [`AutoAttendantService`](crate::features::auto_attendant::AutoAttendantService),
//! which the attendant answering calls reads too.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::audio::{WavFile, wav_body, wav_response};
use super::auth::AdminOnly;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::features::auto_attendant::{Current, Settings};
use crate::features::voicemail::{Greeting, MAX_GREETING_BYTES};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(get_greeting, delete_greeting))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(put_greeting))
                .layer(DefaultBodyLimit::max(MAX_GREETING_BYTES)),
        )
}

/// The auto attendant's settings in force, and whether they come from config.yml or
/// the API.
#[utoipa::path(get, path = "/api/auto-attendant", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "Settings in force", body = Current),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn get_settings(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<axum::Json<Current>, ApiError> {
    Ok(axum::Json(state.app.auto_attendant.current().await?))
}

/// Replace the auto attendant's settings (absent fields take their defaults). They are
/// stored and win over config.yml's from now on; the next call to 0 uses them.
#[utoipa::path(put, path = "/api/auto-attendant", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = Settings,
    responses(
        (status = 200, description = "Settings stored and in force", body = Current),
        (status = 400, description = "A setting breaks a rule (`field` names it)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn put_settings(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    Json(settings): Json<Settings>,
) -> Result<axum::Json<Current>, ApiError> {
    let current = state
        .app
        .auto_attendant
        .set(&admin.actor(), settings)
        .await?;
    Ok(axum::Json(current))
}

/// Upload the recorded greeting, played to callers of 0 instead of the menu spoken from
/// the settings (so it should name the options itself): a WAV file
/// (`Content-Type: audio/wav`) of 8 kHz, 16-bit, mono PCM, at most 60 seconds.
#[utoipa::path(put, path = "/api/auto-attendant/greeting", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body(content = WavFile, content_type = "audio/wav"),
    responses(
        (status = 200, description = "The greeting now played", body = Greeting),
        (status = 400, description = "Not an 8 kHz 16-bit mono WAV file, empty, or longer than 60 s (the message says which)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 413, description = "Larger than a minute of audio", body = ErrorBody),
        (status = 415, description = "Not sent as audio/wav", body = ErrorBody),
    ))]
async fn put_greeting(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Greeting>, ApiError> {
    let body = wav_body(&headers, body)?;
    let greeting = state
        .app
        .auto_attendant
        .set_greeting(&admin.actor(), &body)
        .await?;
    Ok(axum::Json(greeting))
}

/// The recorded greeting as a WAV file; 404 when callers hear the spoken menu.
#[utoipa::path(get, path = "/api/auto-attendant/greeting", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 200, description = "The greeting", body = WavFile, content_type = "audio/wav"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No recorded greeting", body = ErrorBody),
    ))]
async fn get_greeting(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
) -> Result<Response, ApiError> {
    match state.app.auto_attendant.greeting_wav().await? {
        Some(bytes) => Ok(wav_response(bytes, "auto-attendant-greeting.wav")),
        None => Err(ApiError::not_found(
            "the auto attendant has no recorded greeting",
        )),
    }
}

/// Remove the recorded greeting: callers hear the menu spoken from the settings again.
#[utoipa::path(delete, path = "/api/auto-attendant/greeting", tag = "auto-attendant",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No recorded greeting", body = ErrorBody),
    ))]
async fn delete_greeting(
    State(state): State<AppState>,
    AdminOnly(admin): AdminOnly,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .auto_attendant
        .delete_greeting(&admin.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
