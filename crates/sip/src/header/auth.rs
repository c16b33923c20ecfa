//! WWW-Authenticate / Proxy-Authenticate challenges and Authorization /
//! Proxy-Authorization credentials (RFC 3261 §20.7, §25.1; RFC 7616 parameters).

use std::fmt;

use compact_str::CompactString;

use crate::params::ParamValue;
use crate::text::{Scanner, escape_quoted, is_token_byte, split_commas};

/// `scheme param=value, …` as written; the digest views below read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub scheme: CompactString,
    pub params: Vec<(CompactString, ParamValue)>,
}

impl AuthHeader {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sc = Scanner::new(s);
        sc.skip_ws();
        let scheme = sc.token().ok_or("missing authentication scheme")?.into();
        // Digest credentials have about ten parameters.
        let mut params = Vec::with_capacity(10);
        let rest = sc.rest().trim_start();
        if !rest.is_empty() {
            for part in split_commas(rest) {
                let mut ps = Scanner::new(part);
                let name = ps
                    .token()
                    .ok_or_else(|| format!("`{part}` is not name=value"))?;
                if !ps.eat(b'=') {
                    return Err(format!("`{part}` is not name=value"));
                }
                let value = match ps.quoted() {
                    Some(q) => ParamValue::Quoted(q.into()),
                    None => {
                        let v = ps.take_while(|b| {
                            is_token_byte(b) || matches!(b, b'/' | b':' | b'=' | b'@')
                        });
                        if v.is_empty() {
                            return Err(format!("`{name}` has no value"));
                        }
                        ParamValue::Token(v.into())
                    }
                };
                ps.skip_ws();
                if !ps.is_empty() {
                    return Err(format!("unexpected `{}` after {name}", ps.rest()));
                }
                params.push((name.into(), value));
            }
        }
        Ok(Self { scheme, params })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// A parameter's value, unquoted.
    pub fn get(&self, name: &str) -> Option<CompactString> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.unquoted())
    }
}

impl fmt::Display for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        for (i, (n, v)) in self.params.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            match v {
                ParamValue::Token(t) => write!(f, "{sep}{n}={t}")?,
                ParamValue::Quoted(q) => write!(f, "{sep}{n}=\"{q}\"")?,
            }
        }
        Ok(())
    }
}

/// A digest challenge a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: CompactString,
    pub nonce: CompactString,
    pub opaque: Option<CompactString>,
    pub stale: bool,
    /// `MD5` or `SHA-256` (absent means MD5).
    pub algorithm: Option<CompactString>,
    pub qop: Vec<CompactString>,
}

impl DigestChallenge {
    pub fn from_header(h: &AuthHeader) -> Result<Self, String> {
        if !h.is_digest() {
            return Err(format!("`{}` is not a digest challenge", h.scheme));
        }
        Ok(Self {
            realm: h.get("realm").ok_or("challenge without realm")?,
            nonce: h.get("nonce").ok_or("challenge without nonce")?,
            opaque: h.get("opaque"),
            stale: h
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            algorithm: h.get("algorithm"),
            qop: h
                .get("qop")
                .map(|q| {
                    q.split(',')
                        .map(|s| CompactString::from(s.trim()))
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    pub fn to_header(&self) -> AuthHeader {
        let q = |s: &str| ParamValue::Quoted(escape_quoted(s).into());
        let mut params = vec![
            ("realm".into(), q(&self.realm)),
            ("nonce".into(), q(&self.nonce)),
        ];
        if let Some(o) = &self.opaque {
            params.push(("opaque".into(), q(o)));
        }
        if self.stale {
            params.push(("stale".into(), ParamValue::Token("true".into())));
        }
        if let Some(a) = &self.algorithm {
            params.push(("algorithm".into(), ParamValue::Token(a.clone())));
        }
        if !self.qop.is_empty() {
            params.push(("qop".into(), q(&self.qop.join(","))));
        }
        AuthHeader {
            scheme: "Digest".into(),
            params,
        }
    }
}

/// Digest credentials a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: CompactString,
    pub realm: CompactString,
    pub nonce: CompactString,
    pub uri: CompactString,
    pub response: CompactString,
    pub algorithm: Option<CompactString>,
    pub cnonce: Option<CompactString>,
    pub opaque: Option<CompactString>,
    pub qop: Option<CompactString>,
    /// Nonce count, 8 hex digits as sent.
    pub nc: Option<CompactString>,
}

impl DigestCredentials {
    pub fn from_header(h: &AuthHeader) -> Result<Self, String> {
        if !h.is_digest() {
            return Err(format!("`{}` credentials are not digest", h.scheme));
        }
        // One pass over the parameters (the first of each name counts, as in `get`):
        // this runs for every authenticated request.
        const NAMES: [&str; 10] = [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "cnonce",
            "opaque",
            "qop",
            "nc",
        ];
        let mut found: [Option<CompactString>; 10] = Default::default();
        for (name, value) in &h.params {
            if let Some(i) = NAMES.iter().position(|n| name.eq_ignore_ascii_case(n))
                && found[i].is_none()
            {
                found[i] = Some(value.unquoted());
            }
        }
        let [
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
        ] = found;
        let need = |v: Option<CompactString>, n: &str| {
            v.ok_or_else(|| format!("digest credentials without {n}"))
        };
        let creds = Self {
            username: need(username, "username")?,
            realm: need(realm, "realm")?,
            nonce: need(nonce, "nonce")?,
            uri: need(uri, "uri")?,
            response: need(response, "response")?,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
        };
        if let Some(nc) = &creds.nc
            && (nc.len() != 8 || u32::from_str_radix(nc, 16).is_err())
        {
            return Err(format!("nc `{nc}` is not 8 hex digits"));
        }
        Ok(creds)
    }

    /// The nonce count as a number.
    pub fn nc_value(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|nc| u32::from_str_radix(nc, 16).ok())
    }

    pub fn to_header(&self) -> AuthHeader {
        let q = |s: &str| ParamValue::Quoted(escape_quoted(s).into());
        let mut params = vec![
            ("username".into(), q(&self.username)),
            ("realm".into(), q(&self.realm)),
            ("nonce".into(), q(&self.nonce)),
            ("uri".into(), q(&self.uri)),
            ("response".into(), q(&self.response)),
        ];
        if let Some(a) = &self.algorithm {
            params.push(("algorithm".into(), ParamValue::Token(a.clone())));
        }
        if let Some(c) = &self.cnonce {
            params.push(("cnonce".into(), q(c)));
        }
        if let Some(o) = &self.opaque {
            params.push(("opaque".into(), q(o)));
        }
        if let Some(qop) = &self.qop {
            params.push(("qop".into(), ParamValue::Token(qop.clone())));
        }
        if let Some(nc) = &self.nc {
            params.push(("nc".into(), ParamValue::Token(nc.clone())));
        }
        AuthHeader {
            scheme: "Digest".into(),
            params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_credentials_round_trip() {
        let h = AuthHeader::parse(
            r#"Digest realm="switchboard", nonce="abc", algorithm=SHA-256, qop="auth", stale=true"#,
        )
        .unwrap();
        let c = DigestChallenge::from_header(&h).unwrap();
        assert!(c.stale);
        assert_eq!(c.qop, vec!["auth"]);
        assert_eq!(
            DigestChallenge::from_header(&AuthHeader::parse(&c.to_header().to_string()).unwrap())
                .unwrap(),
            c
        );

        let a = AuthHeader::parse(
            r#"Digest username="1001",realm="switchboard",nonce="abc",uri="sip:switchboard",response="0123",algorithm=MD5,cnonce="x y",qop=auth,nc=00000001"#,
        )
        .unwrap();
        let d = DigestCredentials::from_header(&a).unwrap();
        assert_eq!((d.username.as_str(), d.nc_value()), ("1001", Some(1)));
        assert_eq!(
            DigestCredentials::from_header(&AuthHeader::parse(&d.to_header().to_string()).unwrap())
                .unwrap(),
            d
        );
    }

    #[test]
    fn other_schemes_parse_and_bad_ones_do_not() {
        let h = AuthHeader::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert!(!h.is_digest());
        assert!(AuthHeader::parse("Digest realm").is_err());
        assert!(AuthHeader::parse(r#"Digest realm="open"#).is_err());
        assert!(AuthHeader::parse("").is_err());
        let bad_nc = AuthHeader::parse(
            r#"Digest username="a",realm="r",nonce="n",uri="u",response="r",nc=1"#,
        )
        .unwrap();
        assert!(DigestCredentials::from_header(&bad_nc).is_err());
    }
}
