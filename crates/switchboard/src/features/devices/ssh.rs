//! SSH keys of devices and of the server: OpenSSH public keys checked for what they
//! claim to be, and the host keys read from the configured files.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Key types OpenSSH accepts in `authorized_keys` today (no DSA).
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];
const MIN_RSA_BITS: usize = 2048;

/// Reads one SSH wire-format string (u32 length, bytes) off the front of `blob`.
fn take_string<'a>(blob: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let value = blob.get(4..4 + len)?;
    *blob = &blob[4 + len..];
    Some(value)
}

/// `type base64 [comment]` checked (known type, base64, the blob names the same type,
/// key size) and given back with single spaces.
pub fn check_public_key(text: &str) -> Result<String, String> {
    let mut parts = text.split_whitespace();
    let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
        return Err("an OpenSSH public key is 'type base64 [comment]'".into());
    };
    if !TYPES.contains(&kind) {
        return Err(format!(
            "unsupported key type {kind:?} (use ssh-ed25519, ecdsa or rsa)"
        ));
    }
    let blob = STANDARD
        .decode(data)
        .map_err(|_| "the key data is not base64".to_owned())?;
    let mut rest = blob.as_slice();
    if take_string(&mut rest) != Some(kind.as_bytes()) {
        return Err(format!("the key data is not a {kind} key"));
    }
    let sized = match kind {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            take_string(&mut rest).is_some_and(|k| k.len() == 32)
        }
        "ssh-rsa" => {
            let _exponent = take_string(&mut rest);
            take_string(&mut rest).is_some_and(|n| {
                let n = n.strip_prefix(&[0]).unwrap_or(n);
                n.len() * 8 >= MIN_RSA_BITS
            })
        }
        _ => {
            take_string(&mut rest).is_some()
                && take_string(&mut rest).is_some_and(|q| q.len() >= 65)
        }
    };
    if !sized {
        return Err(format!(
            "the {kind} key is cut short or too small (RSA needs {MIN_RSA_BITS} bits)"
        ));
    }
    let comment: Vec<&str> = parts.collect();
    Ok(if comment.is_empty() {
        format!("{kind} {data}")
    } else {
        format!("{kind} {data} {}", comment.join(" "))
    })
}

/// `type base64` of a public key line.
pub fn without_comment(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The valid public keys in the files the patterns match (unreadable or invalid files
/// are skipped: a host without one key type is normal).
pub fn host_keys(patterns: &[String]) -> Vec<String> {
    let mut keys = Vec::new();
    for pattern in patterns {
        let Ok(paths) = glob::glob(pattern) else {
            continue;
        };
        for path in paths.flatten() {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(key) = check_public_key(text.trim())
            {
                keys.push(key);
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(parts: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        STANDARD.encode(out)
    }

    #[test]
    fn keys_are_checked_for_what_they_claim() {
        let ed = blob(&[b"ssh-ed25519", &[7u8; 32]]);
        assert_eq!(
            check_public_key(&format!("ssh-ed25519  {ed}  me@box")).unwrap(),
            format!("ssh-ed25519 {ed} me@box")
        );
        assert!(
            check_public_key(&format!("ssh-rsa {ed}")).is_err(),
            "type mismatch"
        );
        assert!(
            check_public_key(&format!(
                "ssh-ed25519 {}",
                blob(&[b"ssh-ed25519", &[7u8; 31]])
            ))
            .is_err()
        );
        assert!(check_public_key("ssh-ed25519 !!!").is_err());
        assert!(check_public_key("ssh-dss AAAA").is_err());
        assert!(check_public_key("").is_err());
        let small_rsa = blob(&[b"ssh-rsa", &[1, 0, 1], &[0xff; 128]]);
        assert!(
            check_public_key(&format!("ssh-rsa {small_rsa}")).is_err(),
            "1024 bits"
        );
        let rsa = blob(&[b"ssh-rsa", &[1, 0, 1], &[0xff; 256]]);
        assert!(check_public_key(&format!("ssh-rsa {rsa}")).is_ok());
    }
}
