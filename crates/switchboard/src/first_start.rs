//! First start (seed 001): extension 0 (auto attendant) and 1001 (operator, admin)
//! exist on every system. The operator's generated credentials are printed once, in
//! the banner, and never again.

use crate::features::extensions::ExtensionService;
use crate::features::extensions::model::NewExtension;
use crate::features::extensions::rules::{self, AUTO_ATTENDANT, OPERATOR};
use crate::features::{Actor, ServiceError};
use crate::role::Role;

/// The operator's credentials, only when this start created extension 1001.
#[derive(Debug, Clone)]
pub struct OperatorCredentials {
    pub extension: String,
    pub password: String,
    pub sip_secret: String,
    pub voicemail_pin: String,
}

/// Creates extensions 0 and 1001 when missing; returns 1001's credentials if it was
/// created now.
pub async fn seed(
    extensions: &ExtensionService,
) -> Result<Option<OperatorCredentials>, ServiceError> {
    // Checked first so that ordinary starts do not pay for hashing credentials;
    // `create_if_absent` still settles a race between nodes starting together.
    if !extensions.exists(AUTO_ATTENDANT).await? {
        seed_attendant(extensions).await?;
    }
    if extensions.exists(OPERATOR).await? {
        return Ok(None);
    }
    seed_operator(extensions).await
}

async fn seed_attendant(extensions: &ExtensionService) -> Result<(), ServiceError> {
    let (mut attendant, _) = extensions
        .prepare_new(NewExtension {
            number: AUTO_ATTENDANT.into(),
            name: "Auto Attendant".into(),
            voicemail_enabled: Some(false),
            ..Default::default()
        })
        .await?;
    // The auto attendant answers calls itself: it neither logs in nor registers.
    attendant.password_hash = None;
    attendant.must_change_password = false;
    attendant.sip_realm = None;
    attendant.sip_ha1_md5 = None;
    attendant.sip_ha1_sha256 = None;
    attendant.voicemail_pin_hash = None;
    if extensions
        .create_if_absent(&Actor::System, &attendant)
        .await?
    {
        tracing::info!(
            extension = AUTO_ATTENDANT,
            "first start: created the auto attendant"
        );
    }
    Ok(())
}

async fn seed_operator(
    extensions: &ExtensionService,
) -> Result<Option<OperatorCredentials>, ServiceError> {
    let password = rules::generate_operator_password();
    let (operator, generated) = extensions
        .prepare_new(NewExtension {
            number: OPERATOR.into(),
            name: "Operator".into(),
            role: Some(Role::Admin),
            password: Some(password.clone()),
            allow_external: Some(true),
            must_change_password: Some(true),
            ..Default::default()
        })
        .await?;
    if !extensions
        .create_if_absent(&Actor::System, &operator)
        .await?
    {
        return Ok(None);
    }
    tracing::info!(
        extension = OPERATOR,
        "first start: created the operator extension (credentials in the banner)"
    );
    Ok(Some(OperatorCredentials {
        extension: OPERATOR.into(),
        password,
        sip_secret: generated.sip_secret.expect("generated when not given"),
        voicemail_pin: generated.voicemail_pin.expect("generated when not given"),
    }))
}

/// The banner of seed 001, with the SIP secret added.
pub fn banner(creds: &OperatorCredentials, admin_url: &str) -> String {
    let rule = "=".repeat(70);
    format!(
        "\n{rule}\nFIRST-TIME SETUP - EXTENSION {ext} CREDENTIALS\n{rule}\n\
         Extension: {ext}\n\
         Password:  {pw}\n\
         SIP secret: {sip}\n\
         Voicemail PIN: {pin}\n\n\
         CHANGE THIS PASSWORD IMMEDIATELY: the first login asks for a new one.\n   \
         Access admin panel: {admin_url}\n\
         These credentials are shown only this once. Lost them? Run:\n   \
         switchboard extension set-password {ext}\n{rule}\n",
        ext = creds.extension,
        pw = creds.password,
        sip = creds.sip_secret,
        pin = creds.voicemail_pin,
    )
}
