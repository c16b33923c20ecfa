//! WAV files over HTTP, for every endpoint that takes or gives recorded audio
//! (voicemail messages and greetings, the auto attendant's greeting).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::features::voicemail::MAX_GREETING_BYTES;

/// A WAV file: 8 kHz, 16-bit, mono PCM.
pub struct WavFile;

impl utoipa::PartialSchema for WavFile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .content_media_type("audio/wav")
            .description(Some("A WAV file: 8 kHz, 16-bit, mono PCM"))
            .into()
    }
}

impl ToSchema for WavFile {}

/// `bytes` as a WAV download.
pub fn wav_response(bytes: Vec<u8>, filename: &str) -> Response {
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("audio/wav")),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The body of a greeting upload: sent as `audio/wav` (415 otherwise) and no larger
/// than a minute of audio (413). Its content is checked by the service.
pub fn wav_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        essence.as_str(),
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the greeting as a WAV file with Content-Type: audio/wav, not `{content_type}`"
            ),
        ));
    }
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a greeting may be at most {MAX_GREETING_BYTES} bytes (60 s of 8 kHz, 16-bit, mono audio)"
                ),
            )
        } else {
            ApiError::new(r.status(), "bad_body", r.body_text())
        }
    })
}
