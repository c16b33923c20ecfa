//! Token codes and device keys: checked here, before anything is sent, so a typo costs
//! no request (failed attempts count towards the server's threat detection).

use anyhow::bail;

/// Trimmed and upper-cased; exactly 6 of A–Z and 0–9.
pub fn normalize_token(raw: &str) -> anyhow::Result<String> {
    let token = raw.trim().to_ascii_uppercase();
    let count = token.chars().count();
    if count != 6 {
        bail!(
            "the token must be exactly 6 letters or digits (e.g. ABC123), got {count} characters"
        );
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        bail!("the token must contain only letters A-Z and digits 0-9 (e.g. ABC123)");
    }
    Ok(token)
}

/// `device-` and 8 random lower-case hex digits, as the seed's devices do.
pub fn generate_key() -> String {
    format!("device-{:08x}", rand::random::<u32>())
}

/// A key given with `--key`: it becomes a URL path segment, so only characters that
/// need no escaping, and a length a person can still read.
pub fn check_key(key: &str) -> anyhow::Result<()> {
    let fits = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !fits {
        bail!("the device key must be 1 to 64 letters, digits, '-', '_' or '.', got {key:?}");
    }
    Ok(())
}

/// The key with all but its first 9 characters (`device-` and two) hidden, so a
/// screenshot of `status` does not name the device.
pub fn mask_key(key: &str) -> String {
    const SHOWN: usize = 9;
    key.chars()
        .enumerate()
        .map(|(i, c)| if i < SHOWN { c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_trimmed_upper_cased_and_checked() {
        assert_eq!(normalize_token(" abc123\n").unwrap(), "ABC123");
        assert!(normalize_token("ABC12").is_err());
        assert!(normalize_token("ABC1234").is_err());
        assert!(normalize_token("ABC-12").is_err());
        assert!(normalize_token("ÀBC123").is_err());
    }

    #[test]
    fn generated_keys_have_the_seed_shape() {
        let key = generate_key();
        let hex = key.strip_prefix("device-").unwrap();
        assert_eq!(hex.len(), 8);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        check_key(&key).unwrap();
        assert_ne!(generate_key(), generate_key());
    }

    #[test]
    fn keys_that_would_need_escaping_are_refused() {
        assert!(check_key("../admin").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key("").is_err());
        assert!(check_key(&"a".repeat(65)).is_err());
    }

    #[test]
    fn key_is_masked() {
        assert_eq!(mask_key("device-ab12cd34"), "device-ab******");
        assert_eq!(mask_key("short"), "short");
    }
}
