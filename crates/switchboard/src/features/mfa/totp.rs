//! TOTP (RFC 6238) as spec 07 fixes it: SHA-1, 6 digits, 30 s steps, one step of skew
//! either way, 160-bit secrets. totp-rs computes and compares codes (in constant
//! time); which step a code was for is returned so the caller can refuse a replay.

use totp_rs::{Algorithm, Builder, Secret, Totp};

const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;

/// A fresh 160-bit secret.
pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, totp_rs::TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP_SECS)
        .with_secret(Secret::new(secret.into()))
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
}

/// The secret in base32 (for typing in) and the `otpauth://` URI (for the QR code),
/// labelled `issuer:account`.
pub fn provisioning(
    secret: &[u8],
    issuer: &str,
    account: &str,
) -> Result<(String, String), String> {
    let totp = totp(secret, issuer, account).map_err(|e| e.to_string())?;
    let uri = totp.to_url().map_err(|e| e.to_string())?;
    Ok((totp.secret().to_base32(), uri))
}

/// Whether `code` has the shape of a TOTP code (six digits, spaces allowed).
pub fn is_code_shape(code: &str) -> bool {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == usize::from(DIGITS) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The time step `code` is valid for at `unix_secs` (the current step or one either
/// side), if any.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: u64) -> Option<i64> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let totp = totp(secret, "x", "x").ok()?;
    totp.check(&digits, unix_secs)
        .and_then(|s| i64::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the 8-digit codes' last 6 digits).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        assert_eq!(matching_step(secret, "287082", 59), Some(1));
        assert_eq!(
            matching_step(secret, "081804", 1_111_111_109),
            Some(37_037_036)
        );
        assert_eq!(
            matching_step(secret, "050471", 1_111_111_111),
            Some(37_037_037)
        );
        // One step either side is accepted, two are not.
        assert_eq!(matching_step(secret, "287082", 59 + 30), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 60), None);
        assert_eq!(matching_step(secret, "287083", 59), None);
    }

    #[test]
    fn uri_is_percent_encoded_and_names_the_issuer() {
        let (b32, uri) = provisioning(&[0u8; 20], "Acme PBX", "1001").unwrap();
        assert_eq!(b32, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20PBX:1001?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=Acme%20PBX"
        );
        assert!(is_code_shape("123 456"));
        assert!(!is_code_shape("12345"));
        assert!(!is_code_shape("ABCD-EFGH"));
    }
}
