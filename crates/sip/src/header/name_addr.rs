//! `name-addr` / `addr-spec` with header parameters: From, To, Contact, Route,
//! Record-Route, Refer-To, P-Asserted-Identity (RFC 3261 §20, §25.1).

use std::fmt;

use compact_str::CompactString;

use crate::params::Params;
use crate::text::{Scanner, is_token_byte, is_ws, split_commas, unquote, write_quoted};
use crate::uri::Uri;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted (`J Rosenberg "`), when given.
    pub display: Option<CompactString>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, `+sip.instance`, …).
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> Self {
        Self {
            display: None,
            uri,
            params: Params::new(),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag")
    }

    /// Parses one element: `"Name" <uri>;p=v`, `Name <uri>`, `<uri>` or `uri;p=v`.
    /// In the last form the URI cannot carry `;` parameters or `?` headers (they
    /// would be ambiguous), as RFC 3261 §20 requires.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let mut display = None;
        let uri_text;
        if sc.peek() == Some(b'"') {
            let q = sc.quoted().ok_or("unbalanced quotes in the display name")?;
            display = Some(unquote(q));
            sc.skip_ws();
            uri_text = angle(&mut sc)?;
        } else if sc.peek() == Some(b'<') {
            uri_text = angle(&mut sc)?;
        } else if let Some(lt) = s.find('<') {
            // `token LWS token … <uri>`: the display name is tokens and whitespace only.
            let name = s[..lt].trim_matches(|c| c == ' ' || c == '\t');
            if name.is_empty() || !name.bytes().all(|b| is_token_byte(b) || is_ws(b)) {
                return Err(format!("`{name}` is not a valid display name (quote it)"));
            }
            display = Some(name.into());
            sc = Scanner::new(&s[lt..]);
            uri_text = angle(&mut sc)?;
        } else {
            let u = sc.take_while(|b| b != b';' && !is_ws(b));
            if u.contains('?') || u.contains(',') {
                return Err(format!(
                    "`{u}` needs angle brackets to carry headers or commas"
                ));
            }
            uri_text = u;
        }
        let uri = Uri::parse(uri_text)?;
        let params = Params::parse(&mut sc)?;
        sc.skip_ws();
        if !sc.is_empty() {
            return Err(format!("unexpected `{}` after the address", sc.rest()));
        }
        Ok(Self {
            display,
            uri,
            params,
        })
    }

    /// Parses a comma-separated list (Route, Record-Route, Contact).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        split_commas(s)
            .map(|part| {
                if part.is_empty() {
                    Err("empty element in a list".to_owned())
                } else {
                    Self::parse(part)
                }
            })
            .collect()
    }
}

/// `<uri>` at the scanner: the text between the brackets.
fn angle<'a>(sc: &mut Scanner<'a>) -> Result<&'a str, String> {
    if !sc.eat_exact(b'<') {
        return Err(format!("expected `<` at `{}`", sc.rest()));
    }
    let inner = sc.take_while(|b| b != b'>');
    if !sc.eat_exact(b'>') {
        return Err("missing `>`".into());
    }
    Ok(inner)
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `write_str` and the parts' own `fmt`: every From, To and Contact written.
        if let Some(d) = &self.display {
            write_quoted(f, d)?;
            f.write_str(" ")?;
        }
        f.write_str("<")?;
        fmt::Display::fmt(&self.uri, f)?;
        f.write_str(">")?;
        fmt::Display::fmt(&self.params, f)
    }
}

/// The Contact header: `*` (remove all bindings) or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    Star,
    List(Vec<NameAddr>),
}

impl Contacts {
    pub fn parse(values: &[&str]) -> Result<Self, String> {
        if values.iter().any(|v| v.trim() == "*") {
            if values.len() != 1 {
                return Err("`Contact: *` cannot be combined with other contacts".into());
            }
            return Ok(Contacts::Star);
        }
        let mut list = Vec::new();
        for v in values {
            list.extend(NameAddr::parse_list(v)?);
        }
        for c in &list {
            if let Some(e) = c.params.get("expires") {
                parse_delta_seconds(e).map_err(|m| format!("Contact expires: {m}"))?;
            }
            if let Some(q) = c.params.get("q") {
                parse_qvalue(q)?;
            }
        }
        Ok(Contacts::List(list))
    }
}

/// `delta-seconds`: digits, at most 2³²−1.
pub fn parse_delta_seconds(s: &str) -> Result<u32, String> {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not a number of seconds"));
    }
    s.parse::<u32>()
        .map_err(|_| format!("`{s}` seconds is out of range"))
}

/// `qvalue`: 0 to 1 with up to three decimals, in thousandths.
pub fn parse_qvalue(s: &str) -> Result<u16, String> {
    let bad = || format!("`{s}` is not a q-value between 0 and 1");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !(int == "0" || int == "1") || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let thousandths = int.parse::<u16>().map_err(|_| bad())? * 1000
        + format!("{frac:0<3}").parse::<u16>().map_err(|_| bad())?;
    if thousandths > 1000 {
        return Err(bad());
    }
    Ok(thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(a.tag(), Some("98asjd8"));
        let b =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(b.tag(), Some("1918181833n"));
        assert!(b.display.is_none());
        let c = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(c.display.as_deref(), Some("caller"));
        let d = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(d.params.has("unknownparam"));
        assert!(d.uri.as_sip().unwrap().params.is_empty());
        let e = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(e.params.is_empty());
        assert!(e.uri.as_sip().unwrap().has_param("unknownparam"));
        let round = NameAddr::parse(&a.to_string()).unwrap();
        assert_eq!(round, a);
    }

    #[test]
    fn invalid_forms() {
        for s in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            r#""Watson, Thomas" < sip:t.watson@example.org >"#,
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            r#""Joe" <sip:joe@example.org>;;;;"#,
            "<sip:a@b> trailing",
        ] {
            assert!(NameAddr::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn contacts() {
        assert_eq!(Contacts::parse(&["*"]).unwrap(), Contacts::Star);
        assert!(Contacts::parse(&["*", "<sip:a@b>"]).is_err());
        let Contacts::List(l) =
            Contacts::parse(&["<sip:a@b>;expires=60, <sip:c@d>;q=0.5"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(l.len(), 2);
        assert!(
            Contacts::parse(&["<sip:user@host129.example.com>;expires=280297596632815"]).is_err()
        );
        assert_eq!(parse_qvalue("0.33").unwrap(), 330);
        assert!(parse_qvalue("1.5").is_err());
    }
}
