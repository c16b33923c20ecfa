//! Via (RFC 3261 §20.42, §18.2.1) with `received` / `rport` (RFC 3581).

use std::fmt;

use compact_str::CompactString;

use crate::params::Params;
use crate::text::{Scanner, display_in, is_token_byte, split_commas};
use crate::uri::Host;

/// The magic cookie of RFC 3261 branch ids.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, `WSS` or any other token, uppercased.
    pub transport: CompactString,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Self {
            transport: uppercase(transport),
            host,
            port,
            params,
        }
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch")
    }

    /// Whether the branch is an RFC 3261 one (starts with the magic cookie and has
    /// something after it); older ones need RFC 2543 transaction matching.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }

    pub fn received(&self) -> Option<&str> {
        self.params.get("received")
    }

    /// `rport` present (with or without a value): the client wants symmetric response
    /// routing.
    pub fn wants_rport(&self) -> bool {
        self.params.has("rport")
    }

    /// `sent-by` as a string (`host[:port]`), lowercased for transaction matching
    /// (§7.3.1: hosts are case-insensitive), in one buffer: every transaction makes
    /// one, and `format!` plus a lowercased copy was two allocations.
    pub fn sent_by(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(48);
        match &self.host {
            Host::Domain(d) => {
                s.push_str(d);
                s.make_ascii_lowercase();
            }
            // Digits, and lowercase hex for IPv6.
            ip => {
                let _ = write!(s, "{ip}");
            }
        }
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(itoa::Buffer::new().format(p));
        }
        s
    }

    /// A 64-bit digest of [`Self::sent_by`], made without building the string:
    /// transactions compare sent-bys by it (each request and response has one). The
    /// seed is fixed, so equal sent-bys give equal digests in any process.
    pub fn sent_by_digest(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::with_seed(0x5b0a_7d1e).build_hasher();
        match &self.host {
            Host::Domain(d) => {
                for b in d.bytes() {
                    h.write_u8(b.to_ascii_lowercase());
                }
            }
            ip => h.write(display_in(&mut [0u8; 64], ip).as_bytes()),
        }
        h.write_u32(self.port.map_or(u32::MAX, u32::from));
        h.finish()
    }

    /// One `via-parm`: `SIP / 2.0 / UDP host[:port] *(;param)`, whitespace allowed
    /// around the slashes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let name = sc.token().ok_or("Via has no protocol name")?;
        if !sc.eat(b'/') {
            return Err("Via protocol is not NAME/VERSION/TRANSPORT".into());
        }
        let version = sc.token().ok_or("Via has no protocol version")?;
        if !sc.eat(b'/') {
            return Err("Via protocol is not NAME/VERSION/TRANSPORT".into());
        }
        let transport = sc.token().ok_or("Via has no transport")?;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(format!("Via protocol {name}/{version} is not SIP/2.0"));
        }
        sc.skip_ws();
        let sent_by = sc.take_while(|b| is_token_byte(b) || matches!(b, b':' | b'[' | b']'));
        let (host, port) = split_sent_by(sent_by)?;
        let params = Params::parse(&mut sc)?;
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` in Via", sc.rest()));
        }
        for numeric in ["ttl", "rport"] {
            if let Some(v) = params.get(numeric)
                && v.parse::<u16>().is_err()
            {
                return Err(format!("Via {numeric}={v} is not a number"));
            }
        }
        if let Some(r) = params.get("received") {
            Host::parse(r).map_err(|e| format!("Via received: {e}"))?;
        }
        Ok(Self {
            transport: uppercase(transport),
            host,
            port,
            params,
        })
    }

    /// All Via values of one header line.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        split_commas(s)
            .map(|p| {
                if p.is_empty() {
                    Err("empty Via element".to_owned())
                } else {
                    Self::parse(p)
                }
            })
            .collect()
    }
}

fn split_sent_by(s: &str) -> Result<(Host, Option<u16>), String> {
    if s.is_empty() {
        return Err("Via has no sent-by host".into());
    }
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => (&s[..=end], s[end + 1..].strip_prefix(':')),
            None => return Err(format!("`{s}` has an unclosed IPv6 reference")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("`{p}` is not a port"))
        })
        .transpose()?;
    Ok((Host::parse(host)?, port))
}

/// `s` in upper case, inline (no allocation) for a transport name.
fn uppercase(s: &str) -> CompactString {
    let mut out = CompactString::from(s);
    out.make_ascii_uppercase();
    out
}

// Piece by piece (`write_str`, the parts' own `fmt`), not `write!` with arguments:
// every request and response carries Vias, and each argument costs a trip through
// the formatter's padding.
impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SIP/2.0/")?;
        f.write_str(&self.transport)?;
        f.write_str(" ")?;
        fmt::Display::fmt(&self.host, f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            f.write_str(itoa::Buffer::new().format(p))?;
        }
        fmt::Display::fmt(&self.params, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_and_plain() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.transport.as_str(), v.branch()),
            ("UDP", Some("390skdjuw"))
        );
        assert!(!v.has_rfc3261_branch());
        let list = Via::parse_list("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].branch(), Some("z9hG4bK30239"));
        assert!(list[0].has_rfc3261_branch());
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;rport;received=192.0.2.1").unwrap();
        assert_eq!(v.port, Some(5070));
        assert!(v.wants_rport());
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
        assert!(
            !Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK")
                .unwrap()
                .has_rfc3261_branch()
        );
    }

    #[test]
    fn sent_by_is_lowercased_host_and_port() {
        for (via, sent_by) in [
            (
                "SIP/2.0/UDP PC33.Atlanta.COM:5066;branch=z9hG4bK1",
                "pc33.atlanta.com:5066",
            ),
            ("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1", "192.0.2.10"),
            ("SIP/2.0/UDP 10.0.255.1:5060", "10.0.255.1:5060"),
            ("SIP/2.0/TCP [2001:DB8::9]:5070", "[2001:db8::9]:5070"),
        ] {
            assert_eq!(Via::parse(via).unwrap().sent_by(), sent_by, "{via}");
        }
    }

    #[test]
    fn invalid() {
        for s in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/7.0/UDP c.example.com",
            "SIP/2.0 host",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:99999",
        ] {
            assert!(Via::parse_list(s).is_err(), "{s}");
        }
    }
}
