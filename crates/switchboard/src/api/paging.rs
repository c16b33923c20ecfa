//! `?limit=&offset=` and the list envelope `{items, total, limit, offset}`.

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// Checks `?limit=&offset=`: limit 1–1000 (default 100), offset ≥ 0 (default 0).
pub fn resolve_page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            format!("limit: {limit} is out of range; use 1 to {MAX_LIMIT}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "offset",
            "offset: must be 0 or more",
        ));
    }
    Ok((limit, offset))
}

/// One page of a list and the total number of items matching.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}
