//! Request extractors that answer bad input with the API's JSON errors, naming the
//! field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body. Malformed JSON, wrong types, missing and unknown fields become `400`
/// with the field's path; a body that is not JSON `415`; one too large `413`.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            ApiError::new(
                r.status(),
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_body"
                },
                r.body_text(),
            )
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Deserialises JSON, reporting the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let message = strip_position(&inner.to_string());
        let field = field_name(&path, &message);
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            field.clone(),
            format!("{field}: {message}"),
        )
    })
}

/// serde_json appends " at line 1 column 12"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// For a missing field serde reports the parent's path; the field itself is quoted in
/// the message.
fn field_name(path: &str, message: &str) -> String {
    let quoted = message
        .starts_with("missing field")
        .then(|| message.split('`').nth(1))
        .flatten();
    match (path, quoted) {
        (".", Some(f)) => f.to_owned(),
        (p, Some(f)) => format!("{p}.{f}"),
        (".", None) => "body".to_owned(),
        (p, None) => p.to_owned(),
    }
}

/// Query parameters, with errors naming the parameter.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                let message = err.into_inner().to_string();
                let field = field_name(&path, &message);
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    field.clone(),
                    format!("{field}: {message}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        when: u8,
    }

    fn err(json: &str) -> ApiError {
        parse_json::<Body>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(r#"{"name": 5}"#);
        assert_eq!(e.field.as_deref(), Some("name"));
        assert_eq!(e.code, "invalid_field");
        let e = err(r#"{"name": "x", "extra": 1}"#);
        assert_eq!(e.field.as_deref(), Some("extra"));
        let e = err(r#"{}"#);
        assert_eq!(e.field.as_deref(), Some("name"));
        assert!(e.message.contains("missing field"));
        let e = err(r#"{"name": "x", "inner": {"when": "soon"}}"#);
        assert_eq!(e.field.as_deref(), Some("inner.when"));
        let e = err(r#"{"name": "x", "inner": {"nope": 1}}"#);
        assert_eq!(e.field.as_deref(), Some("inner.nope"));
        let e = err(r#"{"name": "#);
        assert_eq!(e.code, "malformed_json");
    }
}
