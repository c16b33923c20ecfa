//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966) and any other absolute URI
//! kept opaque (so the stack can answer 416). Escapes are kept as written, so writing a
//! parsed URI gives the same text; `user_decoded` and friends give the decoded values.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use compact_str::CompactString;

use crate::text::{IP_TEXT_MAX, ip_in, rsplit_once_byte, split_byte, split_once_byte};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name as written (compare with `eq_ignore_ascii_case`).
    Domain(CompactString),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .parse()
                .map(Host::V6)
                .map_err(|_| format!("`{s}` is not an IPv6 reference"));
        }
        if s.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && let Ok(v4) = s.parse::<Ipv4Addr>()
        {
            return Ok(Host::V4(v4));
        }
        let valid = !s.is_empty()
            && s.len() <= 255
            && split_byte(s, b'.').enumerate().all(|(i, label)| {
                // A trailing dot (fully qualified) leaves one empty last label.
                (label.is_empty() && i > 0 && s.ends_with('.'))
                    || (!label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        && !label.starts_with('-'))
            });
        if valid {
            Ok(Host::Domain(s.into()))
        } else {
            Err(format!("`{s}` is not a host name or IP address"))
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::V4(a) => Some(IpAddr::V4(*a)),
            Self::V6(a) => Some(IpAddr::V6(*a)),
            Self::Domain(_) => None,
        }
    }

    /// Hosts compare case-insensitively (RFC 3261 §19.1.4).
    pub fn matches(&self, other: &Host) -> bool {
        match (self, other) {
            (Self::Domain(a), Self::Domain(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => f.write_str(d),
            Self::V4(a) => f.write_str(ip_in(&mut [0; IP_TEXT_MAX], (*a).into())),
            Self::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A SIP URI's parameters. One lives inline: a phone's Contact, and so the target of
/// every request the PBX sends it, usually has one (`transport`), and cloning a URI
/// (each request keeps its own) allocated for the list.
pub type UriParams = smallvec::SmallVec<[UriParam; 1]>;

/// A `;name[=value]` URI parameter, escapes kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UriParam {
    pub name: CompactString,
    pub value: Option<CompactString>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escaped as written (`%75ser`); see [`SipUri::user_decoded`].
    pub user: Option<CompactString>,
    pub password: Option<CompactString>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: UriParams,
    /// `?name=value&…` header fields, escaped as written.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    pub fn new(user: Option<&str>, host: Host) -> Self {
        Self {
            secure: false,
            user: user.map(|u| escape_user(u).into()),
            password: None,
            host,
            port: None,
            params: UriParams::new(),
            headers: Vec::new(),
        }
    }

    /// The user part with `%HH` escapes decoded (`None` when absent or when the
    /// escapes do not decode to UTF-8).
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().and_then(|u| percent_decode(u).ok())
    }

    pub fn param(&self, name: &str) -> Option<&UriParam> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    pub fn param_value(&self, name: &str) -> Option<&str> {
        self.param(name).and_then(|p| p.value.as_deref())
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(CompactString::from);
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.params.push(UriParam {
                name: name.into(),
                value,
            }),
        }
    }

    pub fn remove_param(&mut self, name: &str) {
        self.params.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    /// `transport` parameter, lowercased.
    pub fn transport(&self) -> Option<String> {
        self.param_value("transport").map(str::to_ascii_lowercase)
    }

    fn parse_rest(secure: bool, rest: &str) -> Result<Self, String> {
        let (userinfo, hostpart) = match split_once_byte(rest, b'@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match split_once_byte(ui, b':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() || !u.bytes().all(is_user_byte) || !valid_escapes(u) {
                    return Err(format!("`{u}` is not a valid user part"));
                }
                if let Some(p) = p
                    && (!p.bytes().all(is_password_byte) || !valid_escapes(p))
                {
                    return Err("the password part has characters that must be escaped".into());
                }
                (Some(u.into()), p.map(CompactString::from))
            }
        };
        let (before_headers, headers_part) = match split_once_byte(hostpart, b'?') {
            Some((b, h)) => (b, Some(h)),
            None => (hostpart, None),
        };
        let mut pieces = split_byte(before_headers, b';');
        let hostport = pieces.next().unwrap_or("");
        let (host, port) = split_hostport(hostport)?;
        let mut params = UriParams::new();
        for piece in pieces {
            let (name, value) = match split_once_byte(piece, b'=') {
                Some((n, v)) => (n, Some(v)),
                None => (piece, None),
            };
            let ok = |s: &str| !s.is_empty() && s.bytes().all(is_param_byte) && valid_escapes(s);
            if !ok(name) || value.is_some_and(|v| !ok(v)) {
                return Err(format!("`;{piece}` is not a valid URI parameter"));
            }
            params.push(UriParam {
                name: name.into(),
                value: value.map(CompactString::from),
            });
        }
        let mut headers = Vec::new();
        if let Some(hp) = headers_part {
            for h in hp.split('&') {
                let (name, value) = h
                    .split_once('=')
                    .ok_or_else(|| format!("URI header `{h}` has no `=`"))?;
                let ok = |s: &str| s.bytes().all(is_header_byte) && valid_escapes(s);
                if name.is_empty() || !ok(name) || !ok(value) {
                    return Err(format!("`{h}` is not a valid URI header"));
                }
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }
}

fn split_hostport(hostport: &str) -> Result<(Host, Option<u16>), String> {
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) => {
                let rest = &hostport[end + 1..];
                let port = match rest.strip_prefix(':') {
                    Some(p) => Some(p),
                    None if rest.is_empty() => None,
                    None => return Err(format!("`{hostport}` is not host:port")),
                };
                (&hostport[..=end], port)
            }
            None => return Err(format!("`{hostport}` has an unclosed IPv6 reference")),
        }
    } else {
        match rsplit_once_byte(hostport, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("`{p}` is not a port"))?,
        ),
        None => None,
    };
    Ok((Host::parse(host)?, port))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Piece by piece with `write_str`: this runs for every binding a REGISTER
        // touches, and `write!` with arguments costs several times more.
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                f.write_str(":")?;
                f.write_str(p)?;
            }
            f.write_str("@")?;
        }
        fmt::Display::fmt(&self.host, f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            f.write_str(itoa::Buffer::new().format(p))?;
        }
        for p in &self.params {
            f.write_str(";")?;
            f.write_str(&p.name)?;
            if let Some(v) = &p.value {
                f.write_str("=")?;
                f.write_str(v)?;
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// A `tel:` URI (RFC 3966): the subscriber number and its parameters, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TelUri {
    pub number: String,
    pub params: Vec<UriParam>,
}

impl TelUri {
    /// The digits (and a leading `+`) without visual separators.
    pub fn digits(&self) -> String {
        self.number
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+' || *c == '*' || *c == '#')
            .collect()
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}", self.number)?;
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Any other absolute URI (`http:`, `isbn:`, …), kept as written.
    Other {
        scheme: String,
        rest: String,
    },
}

impl Uri {
    /// Parses a URI. Whitespace, angle brackets and control characters are refused;
    /// `sip:`, `sips:` and `tel:` are checked against their grammar, other schemes only
    /// for their scheme name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty URI".into());
        }
        if s.bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(format!(
                "`{s}` contains whitespace, quotes or angle brackets"
            ));
        }
        let (scheme, rest) =
            split_once_byte(s, b':').ok_or_else(|| format!("`{s}` has no scheme"))?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(format!("`{scheme}` is not a URI scheme"));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let mut pieces = rest.split(';');
            let number = pieces.next().unwrap_or("");
            let ok = !number.is_empty()
                && number.bytes().all(|b| {
                    b.is_ascii_hexdigit()
                        || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
                });
            if !ok {
                return Err(format!("`{number}` is not a telephone number"));
            }
            let params = pieces
                .map(|p| match p.split_once('=') {
                    Some((n, v)) => UriParam {
                        name: n.into(),
                        value: Some(v.into()),
                    },
                    None => UriParam {
                        name: p.into(),
                        value: None,
                    },
                })
                .collect();
            Ok(Uri::Tel(TelUri {
                number: number.to_owned(),
                params,
            }))
        } else {
            if rest.is_empty() {
                return Err(format!("`{s}` has nothing after the scheme"));
            }
            Ok(Uri::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            })
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

#[inline]
fn is_user_byte(b: u8) -> bool {
    is_unreserved(b)
        || b == b'%'
        || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

#[inline]
fn is_password_byte(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

#[inline]
fn is_param_byte(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

#[inline]
fn is_header_byte(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// Every `%` starts a `%HH` escape.
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `%HH` escapes; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_value);
            let lo = b.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(format!("bad escape in `{s}`"));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escapes do not decode to UTF-8".into())
}

/// Escapes what a user part may not contain literally.
pub fn escape_user(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped_user(&mut out, s);
    out
}

/// [`escape_user`] appended to `out`.
pub fn push_escaped_user(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if is_user_byte(b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sip_uris_round_trip() {
        for s in [
            "sip:alice@example.com",
            "sips:bob:secret@[2001:db8::1]:5061;transport=tls;lr",
            "sip:192.0.2.1:5060",
            "sip:user;par=u%40example.net@example.com",
            "sip:%75se%72@example.com",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        ] {
            assert_eq!(Uri::parse(s).unwrap().to_string(), s);
        }
        let u = sip("sip:%75se%72@Example.COM:5070;Transport=TCP");
        assert_eq!(u.user_decoded().as_deref(), Some("user"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert!(u.host.matches(&Host::Domain("example.com".into())));
        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            sip("sip:null-%00-null@example.com")
                .user_decoded()
                .as_deref(),
            Some("null-\0-null")
        );
    }

    #[test]
    fn other_schemes_and_tel() {
        assert_eq!(
            Uri::parse("tel:+1-650-555-2222;phone-context=x")
                .unwrap()
                .scheme(),
            "tel"
        );
        if let Uri::Tel(t) = Uri::parse("tel:+1-650-555-2222").unwrap() {
            assert_eq!(t.digits(), "+16505552222");
        }
        assert_eq!(Uri::parse("isbn:2983792873").unwrap().scheme(), "isbn");
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002")
                .unwrap()
                .to_string(),
            "soap.beep://192.0.2.103:3002"
        );
    }

    #[test]
    fn bad_uris() {
        for s in [
            "",
            "sip:",
            "sip:user@",
            "sip:user@example.com; lr",
            "<sip:user@example.com>",
            "sip:us er@example.com",
            "sip:user@exa mple.com",
            "sip:user@example.com:99999",
            "sip:user@[::1",
            "sip:user@example.com;%zz",
            "sip:%G1@example.com",
            "nocolon",
            "1sip:x",
        ] {
            assert!(Uri::parse(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn escaping_users() {
        assert_eq!(escape_user("a b@c"), "a%20b%40c");
        assert_eq!(percent_decode("a%20b").unwrap(), "a b");
        assert!(percent_decode("%ff").is_err());
    }
}
