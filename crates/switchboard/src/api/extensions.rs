//! `/api/extensions`: thin handlers over [`ExtensionService`](crate::features::extensions::ExtensionService).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{AdminOnly, Authenticated};
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query, parse_json};
use super::paging::{Paged, resolve_page};
use crate::features::auth::Principal;
use crate::features::extensions::import::{ImportReport, ImportRow, parse_csv};
use crate::features::extensions::model::{
    CreatedExtension, Extension, ExtensionPatch, ExtensionUpdate, NewExtension,
};
use crate::role::Role;
use crate::store::extensions::ListFilter;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_extensions, create_extension))
        .routes(routes!(
            get_extension,
            replace_extension,
            patch_extension,
            delete_extension
        ))
        .routes(routes!(rotate_sip_secret))
        .routes(routes!(reset_password))
        .merge(
            // A 10,000-row CSV is a few megabytes: the import alone may exceed `http.body_limit`.
            OpenApiRouter::new()
                .routes(routes!(import_extensions))
                .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
}

/// Largest import upload (bytes).
pub const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A user may act on their own extension; an admin on any.
fn own_or_admin(p: &Principal, number: &str) -> Result<(), ApiError> {
    if p.is_admin() || p.is_extension(number) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            format!("you may only act on your own extension, not {number}"),
        ))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Case-insensitive match on number, name or e-mail.
    search: Option<String>,
    role: Option<Role>,
    active: Option<bool>,
    /// Items per page, 1–1000 (default 100).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

/// List extensions.
#[utoipa::path(get, path = "/api/extensions", tag = "extensions",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of extensions", body = Paged<Extension>),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list_extensions(
    State(state): State<AppState>,
    AdminOnly(_admin): AdminOnly,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Paged<Extension>>, ApiError> {
    let (limit, offset) = resolve_page(q.limit, q.offset)?;
    let filter = ListFilter {
        search: q.search.filter(|s| !s.is_empty()),
        role: q.role,
        active: q.active,
    };
    let (items, total) = state.app.extensions.list(&filter, limit, offset).await?;
    Ok(axum::Json(Paged {
        items,
        total,
        limit,
        offset,
    }))
}

/// Create an extension. Credentials not given are generated and returned once.
#[utoipa::path(post, path = "/api/extensions", tag = "extensions",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body = NewExtension,
    responses(
        (status = 201, description = "Created", body = CreatedExtension),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The number exists", body = ErrorBody),
    ))]
async fn create_extension(
    State(state): State<AppState>,
    AdminOnly(p): AdminOnly,
    Json(body): Json<NewExtension>,
) -> Result<impl IntoResponse, ApiError> {
    let created = state.app.extensions.create(&p.actor(), body).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// One extension (a user may read their own).
#[utoipa::path(get, path = "/api/extensions/{number}", tag = "extensions",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    responses(
        (status = 200, description = "The extension", body = Extension),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's extension", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn get_extension(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
) -> Result<axum::Json<Extension>, ApiError> {
    own_or_admin(&p, &number)?;
    Ok(axum::Json(state.app.extensions.get(&number).await?))
}

async fn apply_patch(
    state: &AppState,
    p: &Principal,
    number: &str,
    patch: ExtensionPatch,
) -> Result<Extension, ApiError> {
    own_or_admin(p, number)?;
    if !p.is_admin() {
        let current = state.app.extensions.get(number).await?;
        if let Some(field) = patch.admin_only_change(&current) {
            return Err(ApiError::field(
                StatusCode::FORBIDDEN,
                "admin_required",
                field,
                format!("only an administrator may change {field}"),
            ));
        }
    }
    Ok(state
        .app
        .extensions
        .update(&p.actor(), number, patch)
        .await?)
}

/// Replace an extension's profile (a user may edit their own name, e-mail, voicemail
/// and forwarding; role, active and allow_external are for admins).
#[utoipa::path(put, path = "/api/extensions/{number}", tag = "extensions",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    request_body = ExtensionUpdate,
    responses(
        (status = 200, description = "Updated", body = Extension),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
        (status = 409, description = "Would leave no active admin", body = ErrorBody),
    ))]
async fn replace_extension(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
    Json(body): Json<ExtensionUpdate>,
) -> Result<axum::Json<Extension>, ApiError> {
    apply_patch(&state, &p, &number, body.into())
        .await
        .map(axum::Json)
}

/// Change some fields of an extension; `null` clears email and call_forwarding.
#[utoipa::path(patch, path = "/api/extensions/{number}", tag = "extensions",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    request_body = ExtensionPatch,
    responses(
        (status = 200, description = "Updated", body = Extension),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
        (status = 409, description = "Would leave no active admin", body = ErrorBody),
    ))]
async fn patch_extension(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
    Json(body): Json<ExtensionPatch>,
) -> Result<axum::Json<Extension>, ApiError> {
    apply_patch(&state, &p, &number, body).await.map(axum::Json)
}

/// Delete an extension (not extension 0, not the last admin).
#[utoipa::path(delete, path = "/api/extensions/{number}", tag = "extensions",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("number" = String, Path, description = "Extension number")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
        (status = 409, description = "Extension 0 or the last admin", body = ErrorBody),
    ))]
async fn delete_extension(
    State(state): State<AppState>,
    AdminOnly(p): AdminOnly,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.app.extensions.delete(&p.actor(), &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SipSecret {
    /// The new SIP secret; shown this once.
    pub sip_secret: String,
}

/// Rotate the SIP secret (the extension itself or an admin). Phones must be given the
/// new secret.
#[utoipa::path(post, path = "/api/extensions/{number}/sip-secret", tag = "extensions",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("number" = String, Path, description = "Extension number")),
    responses(
        (status = 200, description = "The new secret, shown once", body = SipSecret),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Someone else's extension", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn rotate_sip_secret(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(number): Path<String>,
) -> Result<axum::Json<SipSecret>, ApiError> {
    own_or_admin(&p, &number)?;
    let sip_secret = state
        .app
        .extensions
        .rotate_sip_secret(&p.actor(), &number)
        .await?;
    Ok(axum::Json(SipSecret { sip_secret }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The new password; generated (and returned once) when absent.
    pub password: Option<String>,
    /// Force a change at next login. Default `true`.
    pub must_change_password: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetResult {
    /// The generated password, when none was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub must_change_password: bool,
}

/// Reset someone's web password (admin). All their sessions are revoked.
#[utoipa::path(post, path = "/api/extensions/{number}/password", tag = "extensions",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    params(("number" = String, Path, description = "Extension number")),
    request_body = PasswordReset,
    responses(
        (status = 200, description = "Reset", body = PasswordResetResult),
        (status = 400, description = "Weak password", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn reset_password(
    State(state): State<AppState>,
    AdminOnly(p): AdminOnly,
    Path(number): Path<String>,
    Json(body): Json<PasswordReset>,
) -> Result<axum::Json<PasswordResetResult>, ApiError> {
    let must_change = body.must_change_password.unwrap_or(true);
    let password = state
        .app
        .extensions
        .set_password(&p.actor(), &number, body.password, must_change)
        .await?;
    Ok(axum::Json(PasswordResetResult {
        password,
        must_change_password: must_change,
    }))
}

/// Create or update many extensions: CSV with a header row (`text/csv`; columns
/// number, name, email, role, password, sip_secret, voicemail_pin, allow_external,
/// voicemail_enabled, active) or a JSON array of the same fields. Only given
/// credentials are set; the report gives the reason for every skipped row.
#[utoipa::path(post, path = "/api/extensions/import", tag = "extensions",
    security(("bearer" = ["admin"]), ("cookie" = ["admin"])),
    request_body(content(
        (String = "text/csv", example = "number,name,email,sip_secret,voicemail_pin\n2001,Ann Lee,ann@example.com,Xq7-secret-2001,482913\n"),
        (Vec<ImportRow> = "application/json"),
    )),
    responses(
        (status = 200, description = "What was created, updated and skipped", body = ImportReport),
        (status = 400, description = "Unreadable file or unknown column", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 415, description = "Neither CSV nor JSON", body = ErrorBody),
    ))]
async fn import_extensions(
    State(state): State<AppState>,
    AdminOnly(p): AdminOnly,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<ImportReport>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rows = if content_type.starts_with("text/csv") {
        parse_csv(&body)?
    } else if content_type.starts_with("application/json") {
        parse_json::<Vec<ImportRow>>(&body)?
            .into_iter()
            .map(Ok)
            .collect()
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send text/csv with a header row or an application/json array",
        ));
    };
    let report = state
        .app
        .extensions
        .import(&p.actor(), rows, &|_, _| {})
        .await?;
    Ok(axum::Json(report))
}
