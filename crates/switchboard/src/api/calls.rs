//! `/api/calls` (calls in progress) and `/api/cdr` (call detail records, JSON or CSV).
//! Admins see every call; a user sees the calls of their own extension.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{AdminOnly, Authenticated};
use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use super::paging::{Paged, resolve_page};
use crate::features::calls::{ActiveCall, CallRecord, Disposition, to_csv};
use crate::store::cdr::CdrFilter;
use crate::time::Timestamp;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls))
        .routes(routes!(hang_up))
        .routes(routes!(list_cdr))
}

/// Calls in progress, oldest first.
#[utoipa::path(get, path = "/api/calls", tag = "calls",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    responses(
        (status = 200, description = "Calls in progress (a user's own only)", body = Vec<ActiveCall>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The SIP side is not running", body = ErrorBody),
    ))]
async fn list_calls(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<axum::Json<Vec<ActiveCall>>, ApiError> {
    let sip = sip(&state)?;
    let mut calls = sip.core.calls.active.list();
    if !p.is_admin() {
        calls.retain(|c| {
            p.is_extension(&c.caller)
                || p.is_extension(&c.callee)
                || c.ringing.as_deref().is_some_and(|r| p.is_extension(r))
        });
    }
    Ok(axum::Json(calls))
}

/// Hang up a call: BYE to both sides when answered, else the caller gets 480 and the
/// ringing phones a CANCEL.
#[utoipa::path(delete, path = "/api/calls/{id}", tag = "calls",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("id" = String, Path, description = "Call id")),
    responses(
        (status = 204, description = "Hung up"),
        (status = 400, description = "Not a call id", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such call in progress", body = ErrorBody),
        (status = 503, description = "The SIP side is not running", body = ErrorBody),
    ))]
async fn hang_up(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: uuid::Uuid = id.parse().map_err(|_| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "id",
            format!("id: `{id}` is not a call id"),
        )
    })?;
    let sip = sip(&state)?;
    if sip.core.calls.hang_up(&sip.core, id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no call {id} is in progress")))
    }
}

fn sip(state: &AppState) -> Result<&crate::sip_server::SipServer, ApiError> {
    state.sip.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sip_not_running",
            "the SIP side is not running",
        )
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CdrQuery {
    /// Calls started at or after this time (RFC 3339, or a date `YYYY-MM-DD` in UTC).
    from: Option<String>,
    /// Calls started before this time (RFC 3339, or a date: the day after it).
    to: Option<String>,
    /// Calls this extension made, was called on or answered.
    extension: Option<String>,
    /// `answered`, `busy`, `no_answer`, `voicemail`, `cancelled` or `failed`.
    disposition: Option<String>,
    /// `json` (default) or `csv` (also chosen by `Accept: text/csv`).
    format: Option<String>,
    /// Items per page, 1–1000 (default 100).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

fn bad_query(field: &str, message: String) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, message)
}

/// `value` as an instant; a bare date is its midnight UTC (`end`: the next midnight).
fn parse_time(field: &str, value: &str, end: bool) -> Result<Timestamp, ApiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(Timestamp(t.timestamp_millis()));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let day = if end { d.succ_opt().unwrap_or(d) } else { d };
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        return Ok(Timestamp(midnight.timestamp_millis()));
    }
    Err(bad_query(
        field,
        format!("{field}: `{value}` is not an RFC 3339 time or a YYYY-MM-DD date"),
    ))
}

/// Call detail records, newest first; as CSV with `format=csv` or `Accept: text/csv`.
#[utoipa::path(get, path = "/api/cdr", tag = "calls",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(CdrQuery),
    responses(
        (status = 200, description = "A page of records (a user's own only); with format=csv a text/csv file of the page", body = Paged<CallRecord>),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension's records", body = ErrorBody),
    ))]
async fn list_cdr(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    Query(q): Query<CdrQuery>,
) -> Result<Response, ApiError> {
    let (limit, offset) = resolve_page(q.limit, q.offset)?;
    let csv = match q.format.as_deref() {
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
        Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(bad_query(
                "format",
                format!("format: `{other}` is not json or csv"),
            ));
        }
    };
    let extension = q.extension.filter(|e| !e.is_empty());
    let extension = if p.is_admin() {
        extension
    } else {
        match extension {
            Some(e) if !p.is_extension(&e) => {
                return Err(ApiError::forbidden(
                    "forbidden",
                    format!("you may only see your own calls, not {e}'s"),
                ));
            }
            // A user's records are their own extension's.
            _ => p.extension.clone(),
        }
    };
    if let Some(d) = &q.disposition
        && Disposition::parse(d).is_none()
    {
        return Err(bad_query(
            "disposition",
            format!(
                "disposition: `{d}` is not one of answered, busy, no_answer, voicemail, cancelled, failed"
            ),
        ));
    }
    let filter = CdrFilter {
        from: q
            .from
            .as_deref()
            .map(|v| parse_time("from", v, false))
            .transpose()?,
        to: q
            .to
            .as_deref()
            .map(|v| parse_time("to", v, true))
            .transpose()?,
        extension,
        disposition: q.disposition,
    };
    let (items, total) = state.app.cdr.list(&filter, limit, offset).await?;
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"cdr.csv\"",
                ),
            ],
            to_csv(&items),
        )
            .into_response());
    }
    Ok(axum::Json(Paged {
        items,
        total,
        limit,
        offset,
    })
    .into_response())
}
