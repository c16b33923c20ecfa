//! What gives an attacker away in a request: a scanner's User-Agent, SQL injection or
//! path traversal in the path, the query or the body.

/// Whether `user_agent` contains one of `scanners` (case-insensitive).
pub fn scanner<'a>(user_agent: &str, scanners: &'a [String]) -> Option<&'a str> {
    let ua = user_agent.to_ascii_lowercase();
    scanners
        .iter()
        .find(|s| !s.is_empty() && ua.contains(&s.to_ascii_lowercase()))
        .map(String::as_str)
}

/// What kind of attack `text` (a path, a query, a body; percent-decoded first) looks
/// like, if any.
pub fn attack(text: &str) -> Option<&'static str> {
    let decoded = percent_decode(text);
    let t = decoded.to_ascii_lowercase();
    let traversal = [
        "../",
        "..\\",
        "/etc/passwd",
        "c:\\windows",
        "%2e%2e",
        "/proc/self/",
    ];
    if traversal.iter().any(|p| t.contains(p)) {
        return Some("path_traversal");
    }
    // Phrases of injected SQL, not single words (`select` or `union` alone are words).
    let sql = [
        "' or '1'='1",
        "' or 1=1",
        "\" or 1=1",
        " or 1=1--",
        "union select",
        "union all select",
        "; drop table",
        ";drop table",
        "' --",
        "'--",
        "sleep(",
        "benchmark(",
        "information_schema",
        "xp_cmdshell",
        "' and 1=1",
        "waitfor delay",
    ];
    if sql.iter().any(|p| t.contains(p)) {
        return Some("sql_injection");
    }
    None
}

/// `%xx` and `+` decoded (twice, for double encoding); invalid escapes kept.
fn percent_decode(text: &str) -> String {
    let once = decode_once(&text.replace('+', " "));
    decode_once(&once)
}

fn decode_once(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_are_found_in_user_agents() {
        let list = vec!["friendly-scanner".to_owned(), "sqlmap".to_owned()];
        assert_eq!(scanner("friendly-scanner", &list), Some("friendly-scanner"));
        assert_eq!(
            scanner("sqlmap/1.7#stable (https://sqlmap.org)", &list),
            Some("sqlmap")
        );
        assert_eq!(scanner("Yealink SIP-T46S", &list), None);
    }

    #[test]
    fn attacks_are_found_and_ordinary_text_is_not() {
        for (text, kind) in [
            ("/api/extensions?search=' OR '1'='1", "sql_injection"),
            (
                "/api/x?q=1%27%20UNION%20SELECT%20password%20FROM%20users",
                "sql_injection",
            ),
            ("/admin/../../etc/passwd", "path_traversal"),
            ("/admin/%2e%2e/%2e%2e/etc/passwd", "path_traversal"),
            ("/admin/%252e%252e/secret", "path_traversal"),
        ] {
            assert_eq!(attack(text), Some(kind), "{text}");
        }
        for text in [
            "/api/extensions?search=select",
            "/api/cdr?from=2026-01-01T00:00:00Z",
            "{\"name\": \"O'Brien\"}",
            "/admin/pages/hot-desk.js",
        ] {
            assert_eq!(attack(text), None, "{text}");
        }
    }
}
