//! Backup codes: `XXXX-XXXX` from an alphabet without look-alikes (no 0/O, 1/I/L, U),
//! shown once, stored as keyed hashes, each good once.

use rand::Rng;

/// Crockford's base32 digits less `0` and `1`, which readers confuse with letters.
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
const HALF: usize = 4;

pub fn generate(count: usize) -> Vec<String> {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let mut code = String::with_capacity(2 * HALF + 1);
            for i in 0..2 * HALF {
                if i == HALF {
                    code.push('-');
                }
                code.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
            }
            code
        })
        .collect()
}

/// The canonical `XXXX-XXXX` of what a user typed (any case, dash or spaces
/// optional), or `None` when it cannot be a backup code.
pub fn normalise(typed: &str) -> Option<String> {
    let chars: Vec<char> = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() != 2 * HALF
        || !chars
            .iter()
            .all(|c| c.is_ascii() && ALPHABET.contains(&(*c as u8)))
    {
        return None;
    }
    let (a, b) = chars.split_at(HALF);
    Some(format!(
        "{}-{}",
        a.iter().collect::<String>(),
        b.iter().collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_read_back() {
        let codes = generate(10);
        assert_eq!(codes.len(), 10);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 9);
            assert_eq!(normalise(code).as_deref(), Some(code.as_str()));
            assert_eq!(
                normalise(&code.to_lowercase().replace('-', " ")).as_deref(),
                Some(code.as_str())
            );
        }
        assert_eq!(normalise("ABCD-EFGH").as_deref(), Some("ABCD-EFGH"));
        assert_eq!(normalise("ABCD-EFG0"), None, "0 is not in the alphabet");
        assert_eq!(normalise("123456"), None);
    }
}
