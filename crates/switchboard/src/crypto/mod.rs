//! Secrets: random generation, Argon2id hashing, SHA-256 lookup hashes and
//! constant-time comparison; `master_key` encrypts what must be recovered. Nothing
//! here logs or stores a plain secret.

pub mod master_key;

use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Letters and digits that cannot be mistaken for one another when read aloud or
/// typed from a printout (no 0/O, 1/l/I).
pub const UNAMBIGUOUS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// `len` characters drawn uniformly from `alphabet` (a CSPRNG seeded by the OS).
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A bearer credential: `prefix` + 256 random bits, base64url.
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// `len` random decimal digits.
pub fn random_digits(len: usize) -> String {
    random_string(len, b"0123456789")
}

/// Hex SHA-256: how high-entropy tokens (sessions, API keys) are stored and looked up.
/// Argon2 would add nothing for 256-bit random values and would cost every request.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes): web passwords.
fn password_hasher() -> Argon2<'static> {
    Argon2::default()
}

/// Argon2id with lighter parameters for PINs. A 4–12 digit PIN has so little entropy
/// that no hash cost protects a leaked hash; the protection is the lockout after
/// failed attempts. The lighter cost keeps a 10,000-row import with PINs in seconds.
fn pin_hasher() -> Argon2<'static> {
    let params = Params::new(4096, 1, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_with(hasher: &Argon2<'_>, secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashing cannot fail with valid parameters")
        .to_string()
}

pub fn hash_password(password: &str) -> String {
    hash_with(&password_hasher(), password)
}

pub fn hash_pin(pin: &str) -> String {
    hash_with(&pin_hasher(), pin)
}

/// Verifies `secret` against a PHC-format Argon2 hash (its own parameters are in it).
/// `None` still spends the time of a verification so that absent accounts cannot be
/// told apart from wrong passwords by timing.
pub fn verify_hash(hash: Option<&str>, secret: &str) -> bool {
    static DUMMY: LazyLock<String> = LazyLock::new(|| hash_password("timing-equaliser"));
    let (phc, real) = match hash {
        Some(h) => (h, true),
        None => (DUMMY.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(secret.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash_password("correct horse battery");
        let b = hash_password("correct horse battery");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_hash(Some(&a), "correct horse battery"));
        assert!(!verify_hash(Some(&a), "wrong"));
        assert!(!verify_hash(None, "timing-equaliser"));
        let pin = hash_pin("482913");
        assert!(pin.starts_with("$argon2id$"));
        assert!(verify_hash(Some(&pin), "482913"));
        assert!(!verify_hash(Some(&pin), "482914"));
    }

    #[test]
    fn random_values_use_their_alphabet() {
        let s = random_string(64, UNAMBIGUOUS);
        assert!(s.bytes().all(|c| UNAMBIGUOUS.contains(&c)));
        assert_eq!(random_digits(6).len(), 6);
        let t = random_token("sbs_");
        assert!(t.starts_with("sbs_") && t.len() == 4 + 43);
        assert_ne!(random_token(""), random_token(""));
    }
}
