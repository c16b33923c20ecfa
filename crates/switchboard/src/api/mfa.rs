//! `/api/mfa` (spec 07, seed 002 paths): enrolment, verification and removal of second
//! factors. Thin handlers over [`MfaService`](crate::features::mfa::MfaService).
//!
//! A user manages only their own extension (even while they must still enrol); an
//! admin may also read another extension's status and methods and disable its MFA
//! (a user who lost their phone), but never enrols for someone else.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{AllowMfaEnrollment, Client};
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::features::auth::{ClientInfo, Principal};
use crate::features::mfa::{Fido2Info, Method, MfaMethods, MfaStatus, TotpEnrollment, YubikeyInfo};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(verify_enrollment))
        .routes(routes!(verify))
        .routes(routes!(disable))
        .routes(routes!(enroll_yubikey))
        .routes(routes!(enroll_fido2))
        .routes(routes!(enroll_fido2_finish))
        .routes(routes!(backup_codes))
        .routes(routes!(remove_fido2))
        .routes(routes!(remove_yubikey))
        .routes(routes!(status))
        .routes(routes!(methods))
}

/// The caller's own extension, or 403.
fn own(p: &Principal, extension: &str) -> Result<(), ApiError> {
    if p.is_extension(extension) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            "you manage only your own extension's second factors",
        ))
    }
}

/// The caller's own extension, or any for an admin.
fn own_or_admin(p: &Principal, extension: &str) -> Result<(), ApiError> {
    if p.is_admin() || p.is_extension(extension) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            "that is another extension's MFA",
        ))
    }
}

fn ip(client: &ClientInfo) -> Option<IpAddr> {
    client.ip.as_deref().and_then(|ip| ip.parse().ok())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionRequest {
    pub extension: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub extension: String,
    /// A TOTP code, backup code or YubiKey OTP.
    pub code: String,
}

/// Start enrolling an authenticator app (TOTP): scan the QR code, then verify.
#[utoipa::path(post, path = "/api/mfa/enroll", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = ExtensionRequest,
    responses(
        (status = 200, description = "The secret, its otpauth:// URI and the QR code (SVG, PNG base64); pending until verified", body = TotpEnrollment),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension, or MFA turned off", body = ErrorBody),
        (status = 409, description = "An authenticator app is active already", body = ErrorBody),
    ))]
async fn enroll(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Json(body): Json<ExtensionRequest>,
) -> Result<axum::Json<TotpEnrollment>, ApiError> {
    own(&p, &body.extension)?;
    Ok(axum::Json(
        state.app.mfa.enroll_totp(&body.extension).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodes {
    pub success: bool,
    /// Shown once: store them somewhere safe.
    pub backup_codes: Vec<String>,
}

/// Activate the pending authenticator app with a code from it; answers with a new
/// set of backup codes.
#[utoipa::path(post, path = "/api/mfa/verify-enrollment", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Active; the backup codes", body = BackupCodes),
        (status = 401, description = "Not logged in, or a wrong code (invalid_second_factor)", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 409, description = "No pending enrolment", body = ErrorBody),
    ))]
async fn verify_enrollment(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Client(client): Client,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<BackupCodes>, ApiError> {
    own(&p, &body.extension)?;
    let codes = state
        .app
        .mfa
        .verify_enrollment(&p.actor(), &body.extension, &body.code, ip(&client))
        .await?;
    Ok(axum::Json(BackupCodes {
        success: true,
        backup_codes: codes,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    pub valid: bool,
    /// Which method the code was (null when not valid).
    pub method: Option<Method>,
}

/// Check a code of your own (TOTP, backup code or YubiKey OTP, by shape). A valid
/// code is used up.
#[utoipa::path(post, path = "/api/mfa/verify", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Whether the code is valid", body = Verification),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
    ))]
async fn verify(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Client(client): Client,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<Verification>, ApiError> {
    own(&p, &body.extension)?;
    let method = state
        .app
        .mfa
        .verify_code(&body.extension, &body.code, ip(&client))
        .await?;
    Ok(axum::Json(Verification {
        valid: method.is_some(),
        method,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    pub extension: String,
    /// A current second factor; not needed by an admin for another extension.
    pub code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
}

/// Turn MFA off: every method and the backup codes are removed.
#[utoipa::path(post, path = "/api/mfa/disable", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = DisableRequest,
    responses(
        (status = 200, description = "Off", body = Done),
        (status = 400, description = "No code given", body = ErrorBody),
        (status = 401, description = "Not logged in, or a wrong code", body = ErrorBody),
        (status = 403, description = "Another extension (users)", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn disable(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Client(client): Client,
    Json(body): Json<DisableRequest>,
) -> Result<axum::Json<Done>, ApiError> {
    own_or_admin(&p, &body.extension)?;
    let needs_code = p.is_extension(&body.extension);
    state
        .app
        .mfa
        .disable(
            &p.actor(),
            &body.extension,
            body.code.as_deref(),
            needs_code,
            ip(&client),
        )
        .await?;
    Ok(axum::Json(Done { success: true }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YubikeyRequest {
    pub extension: String,
    /// An OTP from the key (touch it): its first 12 characters identify it.
    pub otp: String,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct YubikeyEnrolled {
    pub success: bool,
    #[serde(flatten)]
    pub key: YubikeyInfo,
    /// Only when this is the extension's first second factor (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes: Option<Vec<String>>,
}

/// Enrol a YubiKey with an OTP from it (checked with the validation servers).
#[utoipa::path(post, path = "/api/mfa/enroll-yubikey", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = YubikeyRequest,
    responses(
        (status = 200, description = "Enrolled", body = YubikeyEnrolled),
        (status = 400, description = "Not an OTP, or refused by the validation server", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 409, description = "Enrolled already, YubiKey OTP turned off, or no validation server answered", body = ErrorBody),
    ))]
async fn enroll_yubikey(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Json(body): Json<YubikeyRequest>,
) -> Result<axum::Json<YubikeyEnrolled>, ApiError> {
    own(&p, &body.extension)?;
    let (key, backup_codes) = state
        .app
        .mfa
        .enroll_yubikey(&p.actor(), &body.extension, &body.otp, body.name.as_deref())
        .await?;
    Ok(axum::Json(YubikeyEnrolled {
        success: true,
        key,
        backup_codes,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fido2Begin {
    pub extension: String,
    /// What the user calls the key ("Blue YubiKey").
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Fido2Options {
    /// For `navigator.credentials.create` (binary fields base64url).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// Start registering a FIDO2 security key: the creation options for the browser.
#[utoipa::path(post, path = "/api/mfa/enroll-fido2", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = Fido2Begin,
    responses(
        (status = 200, description = "Creation options", body = Fido2Options),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 409, description = "Security keys unavailable (configuration)", body = ErrorBody),
    ))]
async fn enroll_fido2(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Json(body): Json<Fido2Begin>,
) -> Result<axum::Json<Fido2Options>, ApiError> {
    own(&p, &body.extension)?;
    let options = state
        .app
        .mfa
        .start_fido2_registration(&body.extension, &body.name)
        .await?;
    Ok(axum::Json(Fido2Options { options }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fido2Finish {
    pub extension: String,
    /// The attestation from `navigator.credentials.create` (binary fields base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Fido2Enrolled {
    pub success: bool,
    #[serde(flatten)]
    pub key: Fido2Info,
    /// Only when this is the extension's first second factor (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes: Option<Vec<String>>,
}

/// Finish registering a security key with the browser's attestation.
#[utoipa::path(post, path = "/api/mfa/enroll-fido2/finish", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = Fido2Finish,
    responses(
        (status = 200, description = "Registered", body = Fido2Enrolled),
        (status = 400, description = "The attestation does not verify", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 409, description = "No registration waiting, or the key is registered already", body = ErrorBody),
    ))]
async fn enroll_fido2_finish(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Json(body): Json<Fido2Finish>,
) -> Result<axum::Json<Fido2Enrolled>, ApiError> {
    own(&p, &body.extension)?;
    let (key, backup_codes) = state
        .app
        .mfa
        .finish_fido2_registration(&p.actor(), &body.extension, body.credential)
        .await?;
    Ok(axum::Json(Fido2Enrolled {
        success: true,
        key,
        backup_codes,
    }))
}

/// Replace your backup codes with a new set.
#[utoipa::path(post, path = "/api/mfa/backup-codes", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    request_body = ExtensionRequest,
    responses(
        (status = 200, description = "The new codes (the old ones no longer work)", body = BackupCodes),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 409, description = "No second factor enrolled", body = ErrorBody),
    ))]
async fn backup_codes(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Json(body): Json<ExtensionRequest>,
) -> Result<axum::Json<BackupCodes>, ApiError> {
    own(&p, &body.extension)?;
    let codes = state
        .app
        .mfa
        .regenerate_backup_codes(&p.actor(), &body.extension)
        .await?;
    Ok(axum::Json(BackupCodes {
        success: true,
        backup_codes: codes,
    }))
}

/// Remove a security key (the last second factor removed turns MFA off).
#[utoipa::path(delete, path = "/api/mfa/fido2/{extension}/{id}", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("extension" = String, Path), ("id" = String, Path, description = "The key's id from the methods list")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
async fn remove_fido2(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Path((extension, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    own(&p, &extension)?;
    state
        .app
        .mfa
        .remove_fido2(&p.actor(), &extension, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a YubiKey (the last second factor removed turns MFA off).
#[utoipa::path(delete, path = "/api/mfa/yubikey/{extension}/{public_id}", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("extension" = String, Path), ("public_id" = String, Path, description = "The key's public id (12 ModHex characters)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
async fn remove_yubikey(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Path((extension, public_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    own(&p, &extension)?;
    state
        .app
        .mfa
        .remove_yubikey(&p.actor(), &extension, &public_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// MFA status of an extension (yours, or any for an admin).
#[utoipa::path(get, path = "/api/mfa/status/{extension}", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("extension" = String, Path)),
    responses(
        (status = 200, description = "Status", body = MfaStatus),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension (users)", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn status(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Path(extension): Path<String>,
) -> Result<axum::Json<MfaStatus>, ApiError> {
    own_or_admin(&p, &extension)?;
    let role = state.app.extensions.get(&extension).await?.role;
    Ok(axum::Json(state.app.mfa.status(&extension, role).await?))
}

/// The second factors an extension has enrolled (yours, or any for an admin).
#[utoipa::path(get, path = "/api/mfa/methods/{extension}", tag = "mfa",
    security(("bearer" = ["user"]), ("cookie" = ["user"])),
    params(("extension" = String, Path)),
    responses(
        (status = 200, description = "Methods", body = MfaMethods),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Another extension (users)", body = ErrorBody),
        (status = 404, description = "No such extension", body = ErrorBody),
    ))]
async fn methods(
    State(state): State<AppState>,
    AllowMfaEnrollment(p): AllowMfaEnrollment,
    Path(extension): Path<String>,
) -> Result<axum::Json<MfaMethods>, ApiError> {
    own_or_admin(&p, &extension)?;
    Ok(axum::Json(state.app.mfa.methods(&extension).await?))
}
