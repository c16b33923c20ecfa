//! The node master key (spec README "Secrets", 07-mfa.md): AES-256-GCM encryption of
//! the secrets that must be recovered (webhook signing secrets, TOTP seeds), and a
//! keyed hash for codes that need only be checked (MFA backup codes).
//!
//! Where the key comes from, first match wins: `SWITCHBOARD_MASTER_KEY` (32 bytes in
//! base64 or hex); `security.master_key_passphrase` (PBKDF2-HMAC-SHA256, 600,000
//! iterations, with a random salt kept in the database so every node derives the same
//! key); else `data_dir/master.key`, 32 random bytes created at first start with mode
//! 0600. Nodes sharing a PostgreSQL database must share the key (the variable or the
//! passphrase). A check value encrypted at first start makes a wrong key stop the start
//! with a clear error rather than fail later on each secret.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

use crate::config::Config;
use crate::store::{Db, settings};

/// The environment variable that supplies the key.
pub const ENV: &str = "SWITCHBOARD_MASTER_KEY";
/// PBKDF2 iterations for a passphrase (OWASP's figure for PBKDF2-HMAC-SHA256).
const PBKDF2_ROUNDS: u32 = 600_000;
/// Prefix of every ciphertext this module writes (the format's version).
const PREFIX: &str = "v1:";
const CHECK_PLAINTEXT: &[u8] = b"switchboard master key check";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{ENV} must be 32 bytes in base64 or hex")]
    BadEnv,
    #[error("cannot read or create the master key file {path}: {why}")]
    File { path: String, why: String },
    #[error(
        "the master key ({source_name}) is not the one this database's secrets were encrypted with; \
         give every node the same {ENV} or security.master_key_passphrase"
    )]
    WrongKey { source_name: &'static str },
    #[error("the database failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("a stored secret cannot be decrypted (corrupt, or another master key)")]
    Undecryptable,
}

/// The node's key. Encrypts with a random 96-bit nonce per value.
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// Keys [`MasterKey::keyed_hash`]; derived, so the encryption key is never used twice.
    hash_key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            hash_key: hmac_sha256(key, &[b"switchboard keyed hash v1"]),
        }
    }

    /// HMAC-SHA256 of `data` under a key derived from the master key, in hex: for
    /// short codes that need only be checked (backup codes). A plain hash of 40 bits
    /// of code would fall to a brute force of a stolen database; this one needs the
    /// key too, and stays fast enough to try every code of a set.
    pub fn keyed_hash(&self, label: &str, data: &[u8]) -> String {
        hex::encode(hmac_sha256(
            &self.hash_key,
            &[label.as_bytes(), b"\0", data],
        ))
    }

    /// The key as the module notes say, checked against the database's check value
    /// (written on first use).
    pub async fn load(config: &Config, db: &Db) -> Result<Self, MasterKeyError> {
        let (key, source_name) = if let Ok(text) = std::env::var(ENV) {
            (parse_env(&text)?, "the SWITCHBOARD_MASTER_KEY variable")
        } else if let Some(passphrase) = &config.security.master_key_passphrase {
            let fresh_salt = STANDARD.encode(random::<16>());
            let salt = settings::get_or_insert(db, "master_key_salt", &fresh_salt).await?;
            let passphrase = passphrase.expose().to_owned();
            let key = tokio::task::spawn_blocking(move || {
                pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(
                    passphrase.as_bytes(),
                    salt.as_bytes(),
                    PBKDF2_ROUNDS,
                )
            })
            .await
            .map_err(|_| MasterKeyError::BadEnv)?;
            (key, "security.master_key_passphrase")
        } else {
            (
                key_file(&config.data_dir.join("master.key"))?,
                "data_dir/master.key",
            )
        };
        let master = Self::from_bytes(&key);
        let check = master.encrypt(CHECK_PLAINTEXT);
        let stored = settings::get_or_insert(db, "master_key_check", &check).await?;
        match master.decrypt(&stored) {
            Ok(plain) if plain == CHECK_PLAINTEXT => Ok(master),
            _ => Err(MasterKeyError::WrongKey { source_name }),
        }
    }

    /// `plaintext` encrypted: `v1:` and base64 of nonce ‖ ciphertext ‖ tag.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let nonce = random::<12>();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption of a bounded value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    pub fn decrypt(&self, text: &str) -> Result<Vec<u8>, MasterKeyError> {
        let bytes = text
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or(MasterKeyError::Undecryptable)?;
        let (nonce, sealed) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| MasterKeyError::Undecryptable)
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

fn parse_env(text: &str) -> Result<[u8; 32], MasterKeyError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(MasterKeyError::BadEnv)
}

/// The key in `path` (base64), created with mode 0600 when missing.
fn key_file(path: &Path) -> Result<[u8; 32], MasterKeyError> {
    let failed = |why: String| MasterKeyError::File {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| failed("not 32 bytes of base64".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key = random::<32>();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| failed(e.to_string()))?;
            file.write_all(STANDARD.encode(key).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| failed(e.to_string()))?;
            tracing::info!(path = %path.display(), "master key created");
            Ok(key)
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_differ_per_encryption() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let a = key.encrypt(b"whsec_secret");
        let b = key.encrypt(b"whsec_secret");
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(key.decrypt(&a).unwrap(), b"whsec_secret");
        let other = MasterKey::from_bytes(&[8; 32]);
        assert!(other.decrypt(&a).is_err());
        let mut tampered = a.clone();
        tampered.pop();
        tampered.push('A');
        assert!(key.decrypt(&tampered).is_err());
        assert!(key.decrypt("plain").is_err());
    }

    #[test]
    fn keyed_hashes_depend_on_key_label_and_data() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let h = key.keyed_hash("backup", b"ABCD-EFGH");
        assert_eq!(h, key.keyed_hash("backup", b"ABCD-EFGH"));
        assert_ne!(h, key.keyed_hash("backup", b"ABCD-EFGJ"));
        assert_ne!(h, key.keyed_hash("other", b"ABCD-EFGH"));
        assert_ne!(
            h,
            MasterKey::from_bytes(&[8; 32]).keyed_hash("backup", b"ABCD-EFGH")
        );
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = key_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(key_file(&path).unwrap(), first);
        assert!(parse_env(&hex::encode([1u8; 32])).is_ok());
        assert!(parse_env(&STANDARD.encode([1u8; 32])).is_ok());
        assert!(parse_env("short").is_err());
    }
}
