//! Character classes of the RFC 3261 grammar (§25.1) and a small scanner over header
//! values. Written by hand: SIP's grammar (LWS anywhere, quoted strings with
//! quoted-pairs, three kinds of parameters) is where general-purpose parser crates
//! cost more than they give, and the scanner is the hot path of every message.

use compact_str::CompactString;

const TOKEN: u8 = 1;
const WORD: u8 = 2;

/// The class of every byte, so that a class test is one load: the scanner tests every
/// byte of every header against one.
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let token = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let word_only = matches!(
            c,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        );
        t[b] = if token {
            TOKEN | WORD
        } else if word_only {
            WORD
        } else {
            0
        };
        b += 1;
    }
    t
}

/// `token` characters: alphanum and `-.!%*_+`'~`.
#[inline]
pub fn is_token_byte(b: u8) -> bool {
    CLASSES[b as usize] & TOKEN != 0
}

/// `word` characters (Call-ID): token plus `()<>:\"/[]?{}`.
#[inline]
pub fn is_word_byte(b: u8) -> bool {
    CLASSES[b as usize] & WORD != 0
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Whitespace inside a header value (folding has already become a single space).
#[inline]
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A cursor over a header value with the helpers the grammar needs. All methods are
/// total: at the end of input they report "nothing here" instead of panicking.
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    pub fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Consumes `b` (after optional whitespace) and any whitespace that follows.
    pub fn eat(&mut self, b: u8) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            self.skip_ws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    /// Consumes `b` exactly here (no whitespace around it).
    pub fn eat_exact(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The longest run of bytes satisfying `pred` (possibly empty).
    #[inline]
    pub fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.s.as_bytes();
        while self.pos < bytes.len() && pred(bytes[self.pos]) {
            self.pos += 1;
        }
        // Predicates only accept ASCII, so the boundaries are character boundaries.
        &self.s[start..self.pos]
    }

    pub fn token(&mut self) -> Option<&'a str> {
        let t = self.take_while(is_token_byte);
        (!t.is_empty()).then_some(t)
    }

    /// A quoted-string starting here; returns its raw content (escapes kept) so that
    /// writing it back is exact.
    pub fn quoted(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    // quoted-pair: any octet but CR and LF.
                    if i + 1 >= bytes.len() || matches!(bytes[i + 1], b'\r' | b'\n') {
                        return None;
                    }
                    i += 2;
                }
                b'"' => {
                    self.pos = i + 1;
                    return Some(&self.s[start..i]);
                }
                b'\r' | b'\n' => return None,
                _ => i += 1,
            }
        }
        None
    }

    /// Everything up to (not including) the first `stop` byte outside quotes and
    /// angle brackets, or the end.
    pub fn until_unquoted(&mut self, stop: u8) -> &'a str {
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_quotes = false;
        let mut in_angle = false;
        // Jumps (memchr) between the bytes that change the state: in quotes only `\`
        // and `"` matter, inside `<…>` only `"` and `>`, elsewhere `"`, `<` and `stop`.
        while i < bytes.len() {
            let rest = &bytes[i..];
            let found = if in_quotes {
                find2(b'\\', b'"', rest)
            } else if in_angle {
                find2(b'"', b'>', rest)
            } else {
                find3(b'"', b'<', stop, rest)
            };
            let Some(offset) = found else {
                i = bytes.len();
                break;
            };
            i += offset;
            let b = bytes[i];
            if in_quotes {
                if b == b'\\' {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else if b == b'"' {
                in_quotes = true;
            } else if in_angle {
                in_angle = false;
            } else if b == b'<' {
                in_angle = true;
            } else {
                break;
            }
            i += 1;
        }
        let end = i.min(bytes.len());
        self.pos = end;
        &self.s[start..end]
    }
}

/// `value` written into `buf` (which must be large enough for it): a short text such
/// as a port without a heap allocation.
pub fn display_in(buf: &mut [u8], value: impl std::fmt::Display) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut *buf);
    let _ = write!(cursor, "{value}");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// `value` written into a `String` of `capacity` bytes: `to_string` starts empty
/// and grows the buffer several times over for a header or a description.
pub fn render(value: &impl std::fmt::Display, capacity: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(capacity);
    let _ = write!(out, "{value}");
    out
}

/// The longest text of an IP address (IPv6 with an embedded IPv4 address).
pub const IP_TEXT_MAX: usize = 45;

/// `ip` as text in `buf`, without a heap allocation. IPv4 is written by hand: through
/// `Display` it costs about a thousand instructions (four padded integers), and the
/// addresses in every Via, Contact, Request-URI and SDP a call writes add up to
/// dozens per call.
pub fn ip_in(buf: &mut [u8; IP_TEXT_MAX], ip: std::net::IpAddr) -> &str {
    let std::net::IpAddr::V4(v4) = ip else {
        return display_in(buf, ip);
    };
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

/// Below this many bytes a plain loop finds a byte sooner than memchr, whose dispatch
/// and set-up cost more than scanning a few bytes (callgrind over the call-storm
/// messages: 2.5 % fewer instructions at 16, fewer gained at 32, more lost at 64).
const SHORT: usize = 16;

/// The first `sep` in `bytes`.
#[inline]
pub fn find_byte_in(bytes: &[u8], sep: u8) -> Option<usize> {
    if bytes.len() < SHORT {
        bytes.iter().position(|&b| b == sep)
    } else {
        memchr::memchr(sep, bytes)
    }
}

/// The last `sep` in `bytes`.
#[inline]
fn rfind_byte_in(bytes: &[u8], sep: u8) -> Option<usize> {
    if bytes.len() < SHORT {
        bytes.iter().rposition(|&b| b == sep)
    } else {
        memchr::memrchr(sep, bytes)
    }
}

#[inline]
fn find2(a: u8, b: u8, bytes: &[u8]) -> Option<usize> {
    if bytes.len() < SHORT {
        bytes.iter().position(|&x| x == a || x == b)
    } else {
        memchr::memchr2(a, b, bytes)
    }
}

#[inline]
fn find3(a: u8, b: u8, c: u8, bytes: &[u8]) -> Option<usize> {
    if bytes.len() < SHORT {
        bytes.iter().position(|&x| x == a || x == b || x == c)
    } else {
        memchr::memchr3(a, b, c, bytes)
    }
}

/// The first `sep` (an ASCII byte) in `s`. `str::find` with a `char` costs several
/// times more on the short strings of SIP (a searcher per call, char decoding).
#[inline]
pub fn find_byte(s: &str, sep: u8) -> Option<usize> {
    find_byte_in(s.as_bytes(), sep)
}

/// `s` cut at its first `sep` (an ASCII byte), without it.
#[inline]
pub fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    find_byte(s, sep).map(|i| (&s[..i], &s[i + 1..]))
}

/// `s` cut at its last `sep` (an ASCII byte), without it.
#[inline]
pub fn rsplit_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    rfind_byte_in(s.as_bytes(), sep).map(|i| (&s[..i], &s[i + 1..]))
}

/// `s` split at each `sep` (an ASCII byte), as `str::split` does.
pub fn split_byte(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match split_once_byte(r, sep) {
            Some((piece, after)) => {
                rest = Some(after);
                Some(piece)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Splits a header value on commas that are outside quotes and angle brackets
/// (multi-value headers such as Via, Contact, Route). Empty elements are kept so the
/// caller can reject them.
pub fn split_commas(value: &str) -> impl Iterator<Item = &str> {
    // An iterator, not a Vec: every list header of every message goes through here.
    let mut sc = Some(Scanner::new(value));
    std::iter::from_fn(move || {
        let s = sc.as_mut()?;
        let part = s
            .until_unquoted(b',')
            .trim_matches(|c| c == ' ' || c == '\t');
        if !s.eat_exact(b',') {
            sc = None;
        }
        Some(part)
    })
}

/// Removes the backslash of each quoted-pair.
pub fn unquote(raw: &str) -> CompactString {
    if find_byte(raw, b'\\').is_none() {
        return raw.into();
    }
    let mut out = CompactString::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The content of a quoted-string for `s`: `"` and `\` escaped, no surrounding quotes.
pub fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = write_escaped(&mut out, s);
    out
}

/// Writes `s` as a quoted-string (a display name, say) without a copy of its own.
pub fn write_quoted(out: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    out.write_str("\"")?;
    write_escaped(out, s)?;
    out.write_str("\"")
}

/// [`escape_quoted`]'s content written to `out`, unescaped runs in one piece.
fn write_escaped(out: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(['"', '\\']) {
        out.write_str(&rest[..i])?;
        out.write_str("\\")?;
        out.write_str(&rest[i..=i])?;
        rest = &rest[i + 1..];
    }
    out.write_str(rest)
}

/// Appends `n` as 16 lower-case hex digits, without the formatter: tags, branches and
/// Call-IDs are made this way for every message the PBX sends.
pub fn push_hex(out: &mut String, n: u64) {
    let mut buf = [0u8; 16];
    hex::encode_to_slice(n.to_be_bytes(), &mut buf).expect("16 digits for 8 bytes");
    out.push_str(std::str::from_utf8(&buf).expect("hex is ASCII"));
}

/// `ip` as a URI host: dotted IPv4, or IPv6 in brackets.
pub fn push_host(out: &mut String, ip: std::net::IpAddr) {
    let v6 = ip.is_ipv6();
    if v6 {
        out.push('[');
    }
    out.push_str(ip_in(&mut [0; IP_TEXT_MAX], ip));
    if v6 {
        out.push(']');
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn hex_is_sixteen_digits_like_the_formatter_writes() {
        for n in [
            0,
            1,
            0xf,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            0x8000_0000_0000_0000,
        ] {
            let mut s = String::new();
            push_hex(&mut s, n);
            assert_eq!(s, format!("{n:016x}"));
        }
    }

    #[test]
    fn byte_splits_agree_with_the_str_methods() {
        let long = "x;".repeat(40) + "ü;end";
        for s in ["", ";", "a;b", ";a;;b;", "no-sep", "ü;ö;", "a;b;c", &long] {
            assert_eq!(
                split_byte(s, b';').collect::<Vec<_>>(),
                s.split(';').collect::<Vec<_>>(),
                "{s:?}"
            );
            assert_eq!(split_once_byte(s, b';'), s.split_once(';'), "{s:?}");
            assert_eq!(rsplit_once_byte(s, b';'), s.rsplit_once(';'), "{s:?}");
            assert_eq!(find_byte(s, b';'), s.find(';'), "{s:?}");
        }
    }

    use super::*;

    /// The byte-by-byte definition that `until_unquoted` jumps through.
    fn until_unquoted_by_bytes(s: &str, stop: u8) -> &str {
        let b = s.as_bytes();
        let (mut i, mut quoted, mut angle) = (0, false, false);
        while i < b.len() {
            match b[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                _ if quoted => {}
                b'<' => angle = true,
                b'>' => angle = false,
                c if c == stop && !angle => break,
                _ => {}
            }
            i += 1;
        }
        &s[..i.min(b.len())]
    }

    proptest::proptest! {
        #[test]
        fn ip_text_is_what_display_writes(octets: [u8; 4], segments: [u16; 8]) {
            for ip in [
                std::net::IpAddr::from(octets),
                std::net::IpAddr::from(segments),
                std::net::IpAddr::from(std::net::Ipv4Addr::from(octets).to_ipv6_mapped()),
            ] {
                let mut buf = [0; IP_TEXT_MAX];
                proptest::prop_assert_eq!(ip_in(&mut buf, ip), ip.to_string());
            }
        }

        #[test]
        fn until_unquoted_stops_where_the_grammar_says(s in "[a,<>\"\\\\;) é]{0,100}") {
            for stop in [b',', b')'] {
                proptest::prop_assert_eq!(
                    Scanner::new(&s).until_unquoted(stop),
                    until_unquoted_by_bytes(&s, stop)
                );
            }
        }
    }

    #[test]
    fn byte_classes_follow_the_grammar() {
        for b in 0..=255u8 {
            let token = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            assert_eq!(is_token_byte(b), token, "token {b}");
            let word = token || b"()<>:\\\"/[]?{}".contains(&b);
            assert_eq!(is_word_byte(b), word, "word {b}");
        }
    }

    #[test]
    fn quoted_strings_and_commas() {
        let mut sc = Scanner::new(r#""a \"b\" c" rest"#);
        assert_eq!(sc.quoted(), Some(r#"a \"b\" c"#));
        assert_eq!(sc.rest(), " rest");
        assert_eq!(unquote(r#"a \"b\" c"#), r#"a "b" c"#);
        assert_eq!(Scanner::new("\"open").quoted(), None);
        assert_eq!(
            split_commas(r#"<sip:a,b@x>, "c,d" <sip:e>, f"#).collect::<Vec<_>>(),
            vec!["<sip:a,b@x>", "\"c,d\" <sip:e>", "f"]
        );
        assert_eq!(split_commas("a,,b").collect::<Vec<_>>(), vec!["a", "", "b"]);
        assert_eq!(split_commas("").collect::<Vec<_>>(), vec![""]);
        let mut quoted = String::new();
        write_quoted(&mut quoted, r#"x"y\"#).unwrap();
        assert_eq!(quoted, r#""x\"y\\""#);
        assert_eq!(quoted.as_str(), format!("\"{}\"", escape_quoted(r#"x"y\"#)));
    }
}
