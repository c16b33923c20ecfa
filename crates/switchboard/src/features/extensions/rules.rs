//! Validation of extension fields and credentials, and generation of credentials.
//! Each check names the field it rejects.

use switchboard_sip::digest::{Algorithm, ha1};

use super::model::CallForwarding;
use crate::crypto::{self, UNAMBIGUOUS};
use crate::features::ServiceError;

pub const MAX_NUMBER_LEN: usize = 32;
pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_SECRET_LEN: usize = 128;
pub const MIN_SIP_SECRET_LEN: usize = 8;
pub const MAX_PIN_LEN: usize = 12;

/// The auto attendant; it exists on every system and cannot log in or be deleted.
pub const AUTO_ATTENDANT: &str = "0";
/// The operator seeded at first start.
pub const OPERATOR: &str = "1001";

/// Numbers are digits (`1001`) or virtual names of lowercase letters, digits and `-`
/// (`webrtc-admin`), at most 32 characters; both are valid SIP URI user parts.
pub fn check_number(number: &str) -> Result<(), ServiceError> {
    let ok_chars = number
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-');
    if number.is_empty()
        || number.len() > MAX_NUMBER_LEN
        || !ok_chars
        || number.starts_with('-')
        || number.ends_with('-')
    {
        return Err(ServiceError::invalid(
            "number",
            format!(
                "`{number}` is not an extension number: use digits (1001) or lowercase letters, digits \
                 and '-' (webrtc-admin), at most {MAX_NUMBER_LEN} characters, not starting or ending with '-'"
            ),
        ));
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "a name of 1 to 100 printable characters is required",
        ));
    }
    Ok(name.to_owned())
}

/// An e-mail address (empty means none).
pub fn check_email(email: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if !valid {
        return Err(ServiceError::invalid(
            "email",
            format!("`{email}` is not an e-mail address such as jane@example.com"),
        ));
    }
    Ok(Some(email.to_owned()))
}

/// Web passwords: at least 10 characters and not the extension number.
pub fn check_password(password: &str, number: &str) -> Result<(), ServiceError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_SECRET_LEN).contains(&len) {
        return Err(ServiceError::invalid(
            "password",
            format!("a password needs {MIN_PASSWORD_LEN} to {MAX_SECRET_LEN} characters"),
        ));
    }
    if password == number || password.contains(number) && password.len() <= number.len() + 2 {
        return Err(ServiceError::invalid(
            "password",
            "the password must not be the extension number",
        ));
    }
    Ok(())
}

pub fn check_sip_secret(secret: &str, number: &str) -> Result<(), ServiceError> {
    let ok_chars = secret.chars().all(|c| c.is_ascii_graphic());
    if secret.len() < MIN_SIP_SECRET_LEN || secret.len() > MAX_SECRET_LEN || !ok_chars {
        return Err(ServiceError::invalid(
            "sip_secret",
            format!(
                "a SIP secret needs {MIN_SIP_SECRET_LEN} to {MAX_SECRET_LEN} printable ASCII characters without spaces"
            ),
        ));
    }
    if secret.contains(number) && secret.len() <= number.len() + 4 {
        return Err(ServiceError::invalid(
            "sip_secret",
            "the SIP secret must not be derived from the extension number",
        ));
    }
    Ok(())
}

/// Voicemail (and hot-desk) PINs: `min_len`–12 digits, not one repeated digit, not a
/// run such as 1234 or 9876, not the extension number (seed 000: "enforce strong PINs").
pub fn check_pin(field: &str, pin: &str, number: &str, min_len: usize) -> Result<(), ServiceError> {
    if pin.len() < min_len || pin.len() > MAX_PIN_LEN || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::invalid(
            field,
            format!("a PIN is {min_len} to {MAX_PIN_LEN} digits"),
        ));
    }
    if is_weak_pin(pin) || pin == number {
        return Err(ServiceError::invalid(
            field,
            "the PIN is too easy to guess (repeated digits, a run like 1234, or the extension number)",
        ));
    }
    Ok(())
}

fn is_weak_pin(pin: &str) -> bool {
    let d: Vec<i16> = pin.bytes().map(|b| i16::from(b - b'0')).collect();
    let steps: Vec<i16> = d.windows(2).map(|w| (w[1] - w[0]).rem_euclid(10)).collect();
    steps.iter().all(|s| *s == 0) || steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == 9)
}

pub fn check_forwarding(fwd: &CallForwarding, number: &str) -> Result<(), ServiceError> {
    let t = fwd.target.trim();
    if t.is_empty() {
        return Err(ServiceError::invalid(
            "call_forwarding.target",
            "a forwarding target (extension or phone number) is required",
        ));
    }
    let external = t.strip_prefix('+').unwrap_or(t);
    let as_number = check_number(t).is_ok();
    let as_external = !external.is_empty()
        && external.len() <= MAX_NUMBER_LEN
        && external.bytes().all(|b| b.is_ascii_digit());
    if !(as_number || as_external) {
        return Err(ServiceError::invalid(
            "call_forwarding.target",
            format!("`{t}` is not an extension or a phone number"),
        ));
    }
    if t == number {
        return Err(ServiceError::invalid(
            "call_forwarding.target",
            "an extension cannot forward to itself",
        ));
    }
    Ok(())
}

/// A random web password for a new extension (forced to change at first login).
pub fn generate_password() -> String {
    crypto::random_string(16, UNAMBIGUOUS)
}

/// The operator's first password, in the form seed 001 shows.
pub fn generate_operator_password() -> String {
    format!(
        "ChangeMe-Operator-{}",
        crypto::random_string(8, UNAMBIGUOUS)
    )
}

pub fn generate_sip_secret() -> String {
    crypto::random_string(20, UNAMBIGUOUS)
}

pub fn generate_pin(len: usize) -> String {
    loop {
        let pin = crypto::random_digits(len);
        if !is_weak_pin(&pin) {
            return pin;
        }
    }
}

/// The stored form of a SIP secret: HA1 for MD5 and for SHA-256, bound to the realm.
pub struct SipHa1 {
    pub realm: String,
    pub md5: String,
    pub sha256: String,
}

pub fn sip_ha1(number: &str, realm: &str, secret: &str) -> SipHa1 {
    SipHa1 {
        realm: realm.to_owned(),
        md5: ha1(Algorithm::Md5, number, realm, secret),
        sha256: ha1(Algorithm::Sha256, number, realm, secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::extensions::model::ForwardWhen;

    #[test]
    fn numbers() {
        for ok in ["0", "1001", "webrtc-admin", "a", "reception-2"] {
            check_number(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            "x-",
            "Webrtc",
            "10 01",
            "*97",
            "a_b",
            &"1".repeat(33),
        ] {
            assert!(check_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pins() {
        check_pin("pin", "4829", "1001", 4).unwrap();
        check_pin("pin", "482913", "1001", 6).unwrap();
        for weak in ["1111", "1234", "9876", "7890", "1001"] {
            assert!(check_pin("pin", weak, "1001", 4).is_err(), "{weak}");
        }
        assert!(check_pin("pin", "123", "1001", 4).is_err());
        assert!(check_pin("pin", "48291", "1001", 6).is_err());
        assert!(check_pin("pin", "48a9", "1001", 4).is_err());
        assert!(check_pin("pin", &"4829".repeat(4), "1001", 4).is_err());
        for _ in 0..100 {
            check_pin("pin", &generate_pin(6), "1001", 6).unwrap();
        }
    }

    #[test]
    fn passwords_and_secrets() {
        check_password("long enough pass", "1001").unwrap();
        assert!(check_password("short", "1001").is_err());
        assert!(check_password("1234567890", "1234567890").is_err());
        check_sip_secret("s3cret-value", "1001").unwrap();
        assert!(check_sip_secret("1001", "1001").is_err());
        assert!(check_sip_secret("has space1", "1001").is_err());
        assert!(check_sip_secret("1001xx", "1001").is_err());
        assert!(generate_operator_password().starts_with("ChangeMe-Operator-"));
        assert_eq!(
            generate_operator_password().len(),
            "ChangeMe-Operator-".len() + 8
        );
    }

    #[test]
    fn emails_and_forwarding() {
        assert_eq!(
            check_email(Some(" jane@example.com ")).unwrap().as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(check_email(Some("")).unwrap(), None);
        assert!(check_email(Some("nope")).is_err());
        let fwd = |t: &str| CallForwarding {
            target: t.into(),
            when: ForwardWhen::Busy,
        };
        check_forwarding(&fwd("1002"), "1001").unwrap();
        check_forwarding(&fwd("+33123456789"), "1001").unwrap();
        assert!(check_forwarding(&fwd("1001"), "1001").is_err());
        assert!(check_forwarding(&fwd("x y"), "1001").is_err());
    }

    #[test]
    fn ha1_is_bound_to_number_and_realm() {
        let a = sip_ha1("1001", "switchboard", "secret-one");
        let b = sip_ha1("1001", "other", "secret-one");
        assert_ne!(a.md5, b.md5);
        assert_eq!(a.md5.len(), 32);
        assert_eq!(a.sha256.len(), 64);
    }
}
