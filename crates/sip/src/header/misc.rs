//! The smaller headers: CSeq, Call-ID, Max-Forwards, Date, Retry-After, Warning,
//! Content-Type, token lists (Allow, Supported, Require), Event, Subscription-State,
//! Replaces.

use std::fmt;

use compact_str::CompactString;

use crate::method::Method;
use crate::params::Params;
use crate::text::{Scanner, is_token, is_word_byte, split_commas};

use super::name_addr::parse_delta_seconds;

/// CSeq: a sequence number below 2³¹ and the method (RFC 3261 §8.1.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// `<seq> <METHOD>`, the value a request's CSeq header carries, written without
    /// the formatter (a request of its own for every message a B2BUA sends).
    pub(crate) fn text(seq: u32, method: &Method) -> String {
        let mut out = String::with_capacity(16);
        out.push_str(itoa::Buffer::new().format(seq));
        out.push(' ');
        out.push_str(method.as_str());
        out
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let digits = sc.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(format!(
                "`{}` does not start with a sequence number",
                s.trim()
            ));
        }
        let seq = digits
            .parse::<u32>()
            .ok()
            .filter(|n| *n < 1 << 31)
            .ok_or_else(|| format!("sequence number {digits} is not below 2^31"))?;
        sc.skip_ws();
        let method = sc.token().ok_or("CSeq has no method")?;
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` after the method", sc.rest()));
        }
        Ok(Self {
            seq,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(itoa::Buffer::new().format(self.seq))?;
        f.write_str(" ")?;
        f.write_str(self.method.as_str())
    }
}

/// Call-ID: `word [ "@" word ]`.
pub fn check_call_id(s: &str) -> Result<(), String> {
    let (a, b) = match crate::text::split_once_byte(s, b'@') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let word = |w: &str| !w.is_empty() && w.bytes().all(is_word_byte);
    if word(a) && b.is_none_or(word) {
        Ok(())
    } else {
        Err(format!("`{s}` is not a valid Call-ID"))
    }
}

/// Max-Forwards: 0–255.
pub fn parse_max_forwards(s: &str) -> Result<u8, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{t}` is not a number"));
    }
    t.parse::<u8>().map_err(|_| format!("{t} is above 255"))
}

/// Date: `rfc1123-date` in GMT only (RFC 3261 §20.17).
pub fn check_date(s: &str) -> Result<(), String> {
    let bad = || format!("Date `{s}` is not an RFC 1123 date in GMT");
    let (wkday, rest) = s.trim().split_once(", ").ok_or_else(bad)?;
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, zone] = parts[..] else {
        return Err(bad());
    };
    let two_digits = |x: &str, max: u32| x.len() == 2 && x.parse::<u32>().is_ok_and(|v| v <= max);
    let hms: Vec<&str> = time.split(':').collect();
    let ok = DAYS.contains(&wkday)
        && two_digits(day, 31)
        && MONTHS.contains(&month)
        && year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && hms.len() == 3
        && two_digits(hms[0], 23)
        && two_digits(hms[1], 59)
        && two_digits(hms[2], 60)
        && zone == "GMT";
    if ok { Ok(()) } else { Err(bad()) }
}

/// Retry-After: `delta-seconds [comment] *(;param)`.
pub fn check_retry_after(s: &str) -> Result<u32, String> {
    let mut sc = Scanner::new(s);
    sc.skip_ws();
    let seconds = parse_delta_seconds(sc.take_while(|b| b.is_ascii_digit()))
        .map_err(|e| format!("Retry-After: {e}"))?;
    sc.skip_ws();
    if sc.peek() == Some(b'(') {
        sc.until_unquoted(b')');
        if !sc.eat_exact(b')') {
            return Err("Retry-After comment is not closed".into());
        }
    }
    Params::parse(&mut sc)?;
    sc.skip_ws();
    if !sc.is_empty() {
        return Err(format!("unexpected `{}` in Retry-After", sc.rest()));
    }
    Ok(seconds)
}

/// Warning: `3DIGIT SP agent SP quoted-string`, comma-separated.
pub fn check_warning(s: &str) -> Result<(), String> {
    for part in split_commas(s) {
        let mut sc = Scanner::new(part);
        let code = sc.take_while(|b| b.is_ascii_digit());
        if code.len() != 3 || !sc.eat_exact(b' ') {
            return Err(format!("Warning code `{code}` is not three digits"));
        }
        let agent = sc.take_while(|b| b != b' ');
        if agent.is_empty() || !sc.eat_exact(b' ') || sc.quoted().is_none() {
            return Err(format!("`{part}` is not code agent \"text\""));
        }
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` in Warning", sc.rest()));
        }
    }
    Ok(())
}

/// A media type with parameters (`application/sdp`, `multipart/mixed;boundary=x`).
/// Type and subtype are inline up to 24 bytes: every request with a body has one
/// checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub kind: CompactString,
    pub subtype: CompactString,
    pub params: Params,
}

impl MediaType {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let kind = sc
            .token()
            .ok_or_else(|| format!("`{s}` is not a media type"))?;
        if !sc.eat(b'/') {
            return Err(format!("`{s}` is not type/subtype"));
        }
        let subtype = sc.token().ok_or_else(|| format!("`{s}` has no subtype"))?;
        let params = Params::parse(&mut sc)?;
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` in media type", sc.rest()));
        }
        Ok(Self {
            kind: kind.into(),
            subtype: subtype.into(),
            params,
        })
    }

    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.kind, self.subtype, self.params)
    }
}

/// A comma-separated token list (Allow, Supported, Require, Proxy-Require).
pub fn parse_tokens(s: &str) -> Result<Vec<String>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_commas(s)
        .map(|t| {
            if is_token(t) {
                Ok(t.to_owned())
            } else {
                Err(format!("`{t}` is not a token"))
            }
        })
        .collect()
}

/// Event (RFC 6665): a package name and parameters (`message-summary`, `dialog;id=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub package: String,
    pub params: Params,
}

impl Event {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let package = sc
            .token()
            .ok_or_else(|| format!("`{s}` is not an event package"))?;
        let params = Params::parse(&mut sc)?;
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` in Event", sc.rest()));
        }
        Ok(Self {
            package: package.to_owned(),
            params,
        })
    }

    pub fn id(&self) -> Option<&str> {
        self.params.get("id")
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

/// Subscription-State: `active|pending|terminated` with `expires`, `reason`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: String,
    pub params: Params,
}

impl SubscriptionState {
    pub fn parse(s: &str) -> Result<Self, String> {
        let e = Event::parse(s).map_err(|e| e.replace("Event", "Subscription-State"))?;
        Ok(Self {
            state: e.package.to_ascii_lowercase(),
            params: e.params,
        })
    }

    pub fn expires(&self) -> Option<u32> {
        self.params
            .get("expires")
            .and_then(|e| parse_delta_seconds(e).ok())
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.state, self.params)
    }
}

/// Replaces (RFC 3891): the dialog an INVITE replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    pub early_only: bool,
}

impl Replaces {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let call_id = sc.take_while(|b| is_word_byte(b) || b == b'@');
        check_call_id(call_id)?;
        let params = Params::parse(&mut sc)?;
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` in Replaces", sc.rest()));
        }
        Ok(Self {
            call_id: call_id.to_owned(),
            to_tag: params
                .get("to-tag")
                .ok_or("Replaces without to-tag")?
                .to_owned(),
            from_tag: params
                .get("from-tag")
                .ok_or("Replaces without from-tag")?
                .to_owned(),
            early_only: params.has("early-only"),
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_and_scalars() {
        let c = CSeq::parse("0009\r\n  INVITE".replace("\r\n ", " ").as_str()).unwrap();
        assert_eq!((c.seq, c.method.as_str()), (9, "INVITE"));
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert_eq!(parse_max_forwards("0068").unwrap(), 68);
        assert!(parse_max_forwards("300").is_err());
        check_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").unwrap();
        assert!(check_call_id("a b").is_err());
        check_date("Sat, 13 Nov 2010 23:29:00 GMT").unwrap();
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert_eq!(
            check_retry_after("120 (I'm in a meeting);duration=60").unwrap(),
            120
        );
        assert!(check_retry_after("949302838503028349304023988").is_err());
        check_warning(r#"370 devnull "Choose a bigger pipe""#).unwrap();
        assert!(check_warning(r#"1812 overture "In Progress""#).is_err());
    }

    #[test]
    fn others() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("multipart", "MIXED"));
        assert_eq!(m.params.get("boundary"), Some("7a9cbec02ceef655"));
        assert_eq!(
            parse_tokens("nothingSupportsThis, nothingSupportsThisEither")
                .unwrap()
                .len(),
            2
        );
        let e = Event::parse("dialog;id=1").unwrap();
        assert_eq!((e.package.as_str(), e.id()), ("dialog", Some("1")));
        let s = SubscriptionState::parse("active;expires=3600").unwrap();
        assert_eq!(s.expires(), Some(3600));
        let r =
            Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only")
                .unwrap();
        assert!(r.early_only);
        assert_eq!(Replaces::parse(&r.to_string()).unwrap(), r);
    }
}
