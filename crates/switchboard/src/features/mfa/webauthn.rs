//! FIDO2 security keys through webauthn-rs: the relying party from the configuration
//! and the two ceremonies, with their state as JSON for the database (the options
//! go to the browser, the state waits for its answer, possibly on another node).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rs::prelude::{
    PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey, SecurityKeyAuthentication,
    SecurityKeyRegistration, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::config::Config;

/// The relying party, or why the configuration gives none.
pub fn relying_party(config: &Config) -> Result<Webauthn, String> {
    let fido2 = &config.security.mfa.fido2;
    // With nothing configured, the panel on this machine (http://localhost:<any port>)
    // works: browsers treat localhost as secure, and IP addresses cannot be an RP id.
    let origin_text = fido2
        .rp_origin
        .clone()
        .or_else(|| config.http.public_url.clone())
        .unwrap_or_else(|| "http://localhost".into());
    let origin = Url::parse(&origin_text)
        .map_err(|e| format!("security.mfa.fido2.rp_origin {origin_text:?}: {e}"))?;
    let rp_id = match &fido2.rp_id {
        Some(id) => id.clone(),
        None => origin
            .domain()
            .ok_or_else(|| {
                format!(
                    "security.mfa.fido2: the origin {origin_text} has no domain name; \
                     security keys need one (set rp_id and rp_origin)"
                )
            })?
            .to_owned(),
    };
    WebauthnBuilder::new(&rp_id, &origin)
        .map_err(|_| {
            format!("security.mfa.fido2.rp_id {rp_id:?} is not the domain of {origin_text} or a parent of it")
        })?
        .rp_name(&fido2.rp_name)
        .allow_any_port(rp_id == "localhost")
        .build()
        .map_err(|e| format!("security.mfa.fido2: {e}"))
}

/// A credential id as the browser and the database name it.
pub fn credential_id(key: &SecurityKey) -> String {
    URL_SAFE_NO_PAD.encode(key.cred_id())
}

pub struct Ceremony {
    /// For the browser (`navigator.credentials.create` / `get`).
    pub options: serde_json::Value,
    /// For the database until the browser answers.
    pub state: String,
}

fn ceremony(
    options: impl serde::Serialize,
    state: impl serde::Serialize,
) -> Result<Ceremony, String> {
    Ok(Ceremony {
        options: serde_json::to_value(options).map_err(|e| e.to_string())?,
        state: serde_json::to_string(&state).map_err(|e| e.to_string())?,
    })
}

pub fn start_registration(
    rp: &Webauthn,
    user_id: Uuid,
    user_name: &str,
    display_name: &str,
    existing: &[SecurityKey],
) -> Result<Ceremony, String> {
    let exclude = existing.iter().map(|k| k.cred_id().clone()).collect();
    let (options, state) = rp
        .start_securitykey_registration(user_id, user_name, display_name, Some(exclude), None, None)
        .map_err(|e| e.to_string())?;
    let mut ceremony = ceremony(options, state)?;
    // webauthn-rs asks for credProtect "userVerificationRequired" (not enforced) with
    // user verification only preferred; Chromium refuses that pair outright
    // (NotSupportedError) before a key is even asked. Without it keys work everywhere.
    if let Some(extensions) = ceremony.options["publicKey"]["extensions"].as_object_mut() {
        extensions.remove("credentialProtectionPolicy");
        extensions.remove("enforceCredentialProtectionPolicy");
    }
    Ok(ceremony)
}

pub fn finish_registration(
    rp: &Webauthn,
    credential: serde_json::Value,
    state: &str,
) -> Result<SecurityKey, String> {
    let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
        .map_err(|e| format!("not a WebAuthn attestation: {e}"))?;
    let state: SecurityKeyRegistration = serde_json::from_str(state).map_err(|e| e.to_string())?;
    rp.finish_securitykey_registration(&credential, &state)
        .map_err(|e| e.to_string())
}

pub fn start_authentication(rp: &Webauthn, keys: &[SecurityKey]) -> Result<Ceremony, String> {
    let (options, state) = rp
        .start_securitykey_authentication(keys)
        .map_err(|e| e.to_string())?;
    ceremony(options, state)
}

/// Checks an assertion; gives the id of the key that signed and the key with its new
/// signature counter (a counter that went backwards is refused: a cloned key).
pub fn finish_authentication(
    rp: &Webauthn,
    assertion: serde_json::Value,
    state: &str,
    keys: &[SecurityKey],
) -> Result<(String, SecurityKey), String> {
    let assertion: PublicKeyCredential =
        serde_json::from_value(assertion).map_err(|e| format!("not a WebAuthn assertion: {e}"))?;
    let state: SecurityKeyAuthentication =
        serde_json::from_str(state).map_err(|e| e.to_string())?;
    let result = rp
        .finish_securitykey_authentication(&assertion, &state)
        .map_err(|e| e.to_string())?;
    let mut key = keys
        .iter()
        .find(|k| k.cred_id() == result.cred_id())
        .cloned()
        .ok_or("the key that signed is not registered")?;
    key.update_credential(&result);
    Ok((URL_SAFE_NO_PAD.encode(result.cred_id()), key))
}
