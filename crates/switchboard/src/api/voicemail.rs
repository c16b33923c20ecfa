//! `/api/voicemail`: the voicemail PIN, the messages of a mailbox (list, metadata,
//! audio, read, delete) and its custom greeting. Thin handlers over
//! [`VoicemailService`](crate::features::voicemail::VoicemailService), which the
//! phone-side voicemail IVR calls too. A user reaches their own extension's mailbox, an
//! admin every mailbox.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::audio::{WavFile, wav_body, wav_response};
use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::paging::resolve_page;
use crate::features::auth::Principal;
use crate::features::extensions::rules::check_number;
use crate::features::voicemail::{
    Counts, Greeting, MAX_GREETING_BYTES, VoicemailError, VoicemailMessage, parse_message_id,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(set_pin))
        .routes(routes!(list_messages))
        .routes(routes!(get_message, delete_message))
        .routes(routes!(message_audio))
        .routes(routes!(mark_read))
        .routes(routes!(get_greeting, delete_greeting))
        .merge(
            // A minute of audio: larger than most JSON bodies, far smaller than imports.
            OpenApiRouter::new()
                .routes(routes!(put_greeting))
                .layer(DefaultBodyLimit::max(MAX_GREETING_BYTES)),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinChange {
    /// 4–12 digits (`security.min_pin_length`), not a run or repeated digit.
    pub pin: String,
}

/// Set the voicemail PIN (also the hot-desk PIN) of your own extension, or any as admin.
#[utoipa::path(put, path = "/api/voicemail/{number}/pin", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    request_body = PinChange,
    responses(
        (status = 204, description = "PIN changed"),
        (status = 400, description = "Weak or malformed PIN", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's extension", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn set_pin(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
    Json(body): Json<PinChange>,
) -> Result<StatusCode, ApiError> {
    if !(p.is_admin() || p.is_extension(&number)) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("you may only change your own PIN, not {number}'s"),
        ));
    }
    state
        .app
        .extensions
        .set_pin(&p.actor(), &number, "pin", Some(body.pin))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<VoicemailError> for ApiError {
    fn from(err: VoicemailError) -> Self {
        match err {
            VoicemailError::Service(e) => e.into(),
            e @ VoicemailError::TooShort { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "recording_too_short",
                e.to_string(),
            ),
            e @ VoicemailError::Disabled(_) => {
                ApiError::new(StatusCode::CONFLICT, "voicemail_disabled", e.to_string())
            }
            VoicemailError::Io(e) => {
                tracing::error!(error = %e, "voicemail storage failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the voicemail storage failed; see the server log",
                )
            }
        }
    }
}

/// The caller may reach `number`'s mailbox (their own, or any as admin), and `number`
/// is an extension number (it names a directory on disk).
fn own_mailbox(p: &Principal, number: &str) -> Result<(), ApiError> {
    if !(p.is_admin() || p.is_extension(number)) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("you may only reach your own voicemail, not {number}'s"),
        ));
    }
    check_number(number).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "number",
            e.to_string(),
        )
    })
}

/// A message id from the path: a UUID, nothing else.
fn message_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    parse_message_id(id)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "invalid_path", "id", e.to_string()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MailboxQuery {
    /// Items per page, 1–1000 (default 100).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

/// A mailbox: a page of its messages and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct Mailbox {
    /// Messages, newest first.
    pub items: Vec<VoicemailMessage>,
    /// Messages in the mailbox (new and saved).
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    /// Messages per folder.
    pub counts: Counts,
    /// The custom greeting, or null when callers hear the default one.
    pub greeting: Option<Greeting>,
}

/// The messages of a mailbox, newest first, with how many are new and saved.
#[utoipa::path(get, path = "/api/voicemail/{number}", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number"), MailboxQuery),
    responses(
        (status = 200, description = "A page of messages and the mailbox's counts", body = Mailbox),
        (status = 400, description = "Bad extension number or query parameter", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn list_messages(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
    Query(q): Query<MailboxQuery>,
) -> Result<axum::Json<Mailbox>, ApiError> {
    own_mailbox(&p, &number)?;
    let (limit, offset) = resolve_page(q.limit, q.offset)?;
    let voicemail = &state.app.voicemail;
    let (items, counts) = voicemail.page(&number, Some(limit), offset).await?;
    let greeting = voicemail.greeting_info(&number).await?;
    Ok(axum::Json(Mailbox {
        items,
        total: counts.new + counts.saved,
        limit,
        offset,
        counts,
        greeting,
    }))
}

/// One message's metadata.
#[utoipa::path(get, path = "/api/voicemail/{number}/{id}", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(
        ("number" = String, Path, description = "Extension number"),
        ("id" = String, Path, description = "Message id (UUID)"),
    ),
    responses(
        (status = 200, description = "The message", body = VoicemailMessage),
        (status = 400, description = "Bad extension number or message id", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension or message", body = ErrorBody),
    ))]
async fn get_message(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path((number, id)): Path<(String, String)>,
) -> Result<axum::Json<VoicemailMessage>, ApiError> {
    own_mailbox(&p, &number)?;
    let id = message_id(&id)?;
    Ok(axum::Json(state.app.voicemail.get(&number, id).await?))
}

/// Delete a message (its record and its audio).
#[utoipa::path(delete, path = "/api/voicemail/{number}/{id}", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(
        ("number" = String, Path, description = "Extension number"),
        ("id" = String, Path, description = "Message id (UUID)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad extension number or message id", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension or message", body = ErrorBody),
    ))]
async fn delete_message(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path((number, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    own_mailbox(&p, &number)?;
    let id = message_id(&id)?;
    state.app.voicemail.delete(&p.actor(), &number, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A message's audio: a WAV file (8 kHz, 16-bit, mono).
#[utoipa::path(get, path = "/api/voicemail/{number}/{id}/audio", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(
        ("number" = String, Path, description = "Extension number"),
        ("id" = String, Path, description = "Message id (UUID)"),
    ),
    responses(
        (status = 200, description = "The recording", body = WavFile, content_type = "audio/wav"),
        (status = 400, description = "Bad extension number or message id", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension or message", body = ErrorBody),
    ))]
async fn message_audio(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path((number, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    own_mailbox(&p, &number)?;
    let id = message_id(&id)?;
    let bytes = state.app.voicemail.audio(&number, id).await?;
    Ok(wav_response(bytes, &format!("voicemail-{number}-{id}.wav")))
}

/// Mark a message read: it moves from `new` to `saved` (a saved one stays saved).
#[utoipa::path(post, path = "/api/voicemail/{number}/{id}/read", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(
        ("number" = String, Path, description = "Extension number"),
        ("id" = String, Path, description = "Message id (UUID)"),
    ),
    responses(
        (status = 200, description = "The message, now saved", body = VoicemailMessage),
        (status = 400, description = "Bad extension number or message id", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension or message", body = ErrorBody),
    ))]
async fn mark_read(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path((number, id)): Path<(String, String)>,
) -> Result<axum::Json<VoicemailMessage>, ApiError> {
    own_mailbox(&p, &number)?;
    let id = message_id(&id)?;
    let message = state
        .app
        .voicemail
        .mark_read(&p.actor(), &number, id)
        .await?;
    Ok(axum::Json(message))
}

/// Upload the mailbox's greeting: the body is a WAV file (`Content-Type: audio/wav`)
/// of 8 kHz, 16-bit, mono PCM, at most 60 seconds. It replaces the previous one.
#[utoipa::path(put, path = "/api/voicemail/{number}/greeting", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    request_body(content = WavFile, content_type = "audio/wav"),
    responses(
        (status = 200, description = "The greeting now played", body = Greeting),
        (status = 400, description = "Not an 8 kHz 16-bit mono WAV file, empty, or longer than 60 s (the message says which)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
        (status = 413, description = "Larger than a minute of audio", body = ErrorBody),
        (status = 415, description = "Not sent as audio/wav", body = ErrorBody),
    ))]
async fn put_greeting(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Greeting>, ApiError> {
    own_mailbox(&p, &number)?;
    let body = wav_body(&headers, body)?;
    let greeting = state.app.voicemail.set_greeting(&number, &body).await?;
    Ok(axum::Json(greeting))
}

/// The mailbox's custom greeting as a WAV file; 404 when callers hear the default.
#[utoipa::path(get, path = "/api/voicemail/{number}/greeting", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    responses(
        (status = 200, description = "The greeting", body = WavFile, content_type = "audio/wav"),
        (status = 400, description = "Bad extension number", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension, or no custom greeting", body = ErrorBody),
    ))]
async fn get_greeting(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
) -> Result<Response, ApiError> {
    own_mailbox(&p, &number)?;
    match state.app.voicemail.greeting_wav(&number).await? {
        Some(bytes) => Ok(wav_response(bytes, &format!("greeting-{number}.wav"))),
        None => Err(ApiError::not_found(format!(
            "extension {number} has no custom greeting"
        ))),
    }
}

/// Remove the custom greeting: callers hear the default one again.
#[utoipa::path(delete, path = "/api/voicemail/{number}/greeting", tag = "voicemail",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad extension number", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's mailbox", body = ErrorBody),
        (status = 404, description = "No such extension, or no custom greeting", body = ErrorBody),
    ))]
async fn delete_greeting(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    own_mailbox(&p, &number)?;
    state.app.voicemail.delete_greeting(&number).await?;
    Ok(StatusCode::NO_CONTENT)
}
