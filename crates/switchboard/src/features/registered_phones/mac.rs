//! Finding a phone's MAC address in its REGISTER (spec 02), in this order: a `mac=`
//! Contact parameter, a version-1 `+sip.instance` UUID whose node field is a real MAC,
//! a MAC in the User-Agent. Never from a random UUID: the earlier system invented MACs
//! for softphones that way.

/// 12 lowercase hex digits from `00:15:65:12:34:56`, `00-15-65-12-34-56`,
/// `001565123456` or `0015.6512.3456`; all-zero and broadcast are refused.
pub fn normalise(text: &str) -> Option<String> {
    let t = text.trim();
    let hex: String = match t.len() {
        12 => t.to_owned(),
        14 if t.as_bytes()[4] == b'.' && t.as_bytes()[9] == b'.' => t.replace('.', ""),
        17 => {
            let sep = t.as_bytes()[2];
            if !(sep == b':' || sep == b'-') || (0..5).any(|i| t.as_bytes()[2 + i * 3] != sep) {
                return None;
            }
            t.split(sep as char).collect()
        }
        _ => return None,
    };
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    if hex == "000000000000" || hex == "ffffffffffff" {
        return None;
    }
    Some(hex)
}

/// The node of a version-1 (time-based) UUID in `<urn:uuid:…>` form when it is a real
/// MAC: RFC 4122 marks a random node by setting the multicast bit.
pub fn from_instance(instance: &str) -> Option<String> {
    let inner = instance
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let uuid = inner
        .strip_prefix("urn:uuid:")
        .or_else(|| inner.strip_prefix("URN:UUID:"))?;
    let groups: Vec<&str> = uuid.split('-').collect();
    if groups.len() != 5
        || groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .any(|(g, n)| g.len() != n || !g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    // The version is the high nibble of the third group.
    if !groups[2].starts_with('1') {
        return None;
    }
    let node = groups[4].to_ascii_lowercase();
    let first_octet = u8::from_str_radix(&node[..2], 16).ok()?;
    if first_octet & 0x01 != 0 {
        return None;
    }
    normalise(&node)
}

/// A MAC written in a User-Agent: separated forms anywhere, the bare 12-digit form
/// only as a word of its own (so version strings and hashes are not taken for one).
pub fn from_user_agent(ua: &str) -> Option<String> {
    let b = ua.as_bytes();
    for start in 0..b.len().saturating_sub(16) + usize::from(b.len() >= 17) {
        if let Some(candidate) = ua.get(start..start + 17) {
            let boundary_ok = (start == 0 || !b[start - 1].is_ascii_hexdigit())
                && b.get(start + 17).is_none_or(|c| !c.is_ascii_hexdigit());
            if boundary_ok && let Some(mac) = normalise(candidate) {
                return Some(mac);
            }
        }
    }
    ua.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ';' | ',' | '/'))
        .find(|w| w.len() == 12 && w.bytes().any(|b| b.is_ascii_digit()))
        .and_then(normalise)
}

/// The first MAC found, in the spec's order.
pub fn find(
    contact_mac: Option<&str>,
    instance: Option<&str>,
    user_agent: Option<&str>,
) -> Option<String> {
    contact_mac
        .and_then(normalise)
        .or_else(|| instance.and_then(from_instance))
        .or_else(|| user_agent.and_then(from_user_agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        for s in [
            "00:15:65:12:34:56",
            "00-15-65-12-34-56",
            "001565123456",
            "0015.6512.3456",
            "00:15:65:12:34:56 ",
        ] {
            assert_eq!(normalise(s).as_deref(), Some("001565123456"), "{s}");
        }
        for s in [
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
            "00:15:65:12:34",
            "0015651234567",
            "00:15-65:12:34:56",
            "zz1565123456",
        ] {
            assert_eq!(normalise(s), None, "{s}");
        }
    }

    #[test]
    fn instances() {
        // Version 1 with a real (unicast) node: the MAC.
        assert_eq!(
            from_instance("<urn:uuid:2fa1b1e0-1dd2-11b2-8000-001565123456>").as_deref(),
            Some("001565123456")
        );
        // Version 4 (random): nothing, whatever its last digits look like.
        assert_eq!(
            from_instance("<urn:uuid:f81d4fae-7dec-41d0-a765-00a0c91e6bf6>"),
            None
        );
        // Version 1 with the multicast bit set (a random node): nothing.
        assert_eq!(
            from_instance("<urn:uuid:2fa1b1e0-1dd2-11b2-8000-011565123456>"),
            None
        );
        assert_eq!(from_instance("<urn:uuid:not-a-uuid>"), None);
    }

    #[test]
    fn user_agents() {
        assert_eq!(
            from_user_agent("Yealink SIP-T46S 66.86.0.15 00:15:65:12:34:56").as_deref(),
            Some("001565123456")
        );
        assert_eq!(
            from_user_agent("Grandstream GXP2170 1.0.9.135 000B82AABBCC").as_deref(),
            Some("000b82aabbcc")
        );
        assert_eq!(from_user_agent("baresip v1.0.0 (x86_64/linux)"), None);
        assert_eq!(from_user_agent("PolycomVVX-VVX_411-UA/6.3.0.14929"), None);
        assert_eq!(
            from_user_agent("Softphone build deadbeefcafe"),
            None,
            "hex words need a digit... and this has none"
        );
    }

    #[test]
    fn order() {
        assert_eq!(
            find(
                Some("00-15-65-aa-bb-cc"),
                Some("<urn:uuid:2fa1b1e0-1dd2-11b2-8000-001565123456>"),
                None
            )
            .as_deref(),
            Some("001565aabbcc")
        );
        assert_eq!(
            find(
                None,
                Some("<urn:uuid:f81d4fae-7dec-41d0-a765-00a0c91e6bf6>"),
                Some("X 00:15:65:12:34:56")
            )
            .as_deref(),
            Some("001565123456")
        );
        assert_eq!(find(None, None, None), None);
    }
}
