//! Header parameters: `;name`, `;name=token`, `;name="quoted"` (Via, From/To,
//! Contact, Event, Content-Type, …). URI parameters have their own rules (uri.rs).
//!
//! Names and values are `CompactString`s: nearly all are shorter than 24 bytes and
//! then live inline, so parsing a header does not allocate once per parameter.

use std::fmt;

use compact_str::CompactString;
use smallvec::SmallVec;

use crate::text::{Scanner, escape_quoted, is_token, is_token_byte, unquote};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// A token or host (`branch=z9hG4bK…`, `received=192.0.2.1`, `maddr=[::1]`).
    Token(CompactString),
    /// A quoted-string's content, escapes kept as written.
    Quoted(CompactString),
}

impl ParamValue {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Token(s) | Self::Quoted(s) => s,
        }
    }

    /// The value with a quoted-string's escapes resolved.
    pub fn unquoted(&self) -> CompactString {
        match self {
            Self::Token(t) => t.clone(),
            Self::Quoted(q) => unquote(q),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: CompactString,
    pub value: Option<ParamValue>,
}

/// An ordered parameter list; names compare case-insensitively. Two parameters
/// live inline: a From or To has one (`tag`), our Vias two (`branch`, `rport`), and
/// a list allocated for each was a tenth of the allocations of a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(SmallVec<[Param; 2]>);

impl Params {
    pub fn new() -> Self {
        Self(SmallVec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.0.iter()
    }

    fn find(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Whether the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The value of `name` (a quoted value without its quotes); `None` when absent or
    /// given without a value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name)
            .and_then(|p| p.value.as_ref())
            .map(ParamValue::as_str)
    }

    /// Sets `name` (replacing an existing one, keeping its position). The value is
    /// written as a token when it is one, else quoted.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(|v| {
            if is_host_or_token(v) {
                ParamValue::Token(v.into())
            } else {
                ParamValue::Quoted(escape_quoted(v).into())
            }
        });
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: name.into(),
                value,
            }),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    /// Parses `*( ";" generic-param )` from the scanner, allowing whitespace around
    /// `;` and `=`. Stops before anything that is not `;`.
    pub fn parse(sc: &mut Scanner<'_>) -> Result<Self, String> {
        let mut out = SmallVec::new();
        while sc.eat(b';') {
            let name = sc
                .token()
                .ok_or_else(|| format!("empty or malformed parameter before `{}`", sc.rest()))?;
            let value = if sc.eat(b'=') {
                if let Some(q) = sc.quoted() {
                    Some(ParamValue::Quoted(q.into()))
                } else {
                    let v = sc.take_while(is_host_or_token_byte);
                    if v.is_empty() {
                        return Err(format!("parameter `{name}` has `=` but no value"));
                    }
                    Some(ParamValue::Token(v.into()))
                }
            } else {
                None
            };
            out.push(Param {
                name: name.into(),
                value,
            });
            sc.skip_ws();
        }
        Ok(Self(out))
    }
}

#[inline]
fn is_host_or_token_byte(b: u8) -> bool {
    is_token_byte(b) || matches!(b, b'[' | b']' | b':')
}

fn is_host_or_token(s: &str) -> bool {
    is_token(s) || (!s.is_empty() && s.bytes().all(is_host_or_token_byte))
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `write_str` only: parameters are in nearly every header written.
        for p in &self.0 {
            f.write_str(";")?;
            f.write_str(&p.name)?;
            match &p.value {
                Some(ParamValue::Token(v)) => {
                    f.write_str("=")?;
                    f.write_str(v)?;
                }
                Some(ParamValue::Quoted(v)) => {
                    f.write_str("=\"")?;
                    f.write_str(v)?;
                    f.write_str("\"")?;
                }
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_write() {
        let mut sc = Scanner::new(" ;  tag    = 1918181833n ; lr;x=\"a b\";maddr=[::1]");
        let p = Params::parse(&mut sc).unwrap();
        assert_eq!(p.get("TAG"), Some("1918181833n"));
        assert!(p.has("lr") && p.get("lr").is_none());
        assert_eq!(p.get("x"), Some("a b"));
        assert_eq!(p.get("maddr"), Some("[::1]"));
        assert_eq!(p.to_string(), ";tag=1918181833n;lr;x=\"a b\";maddr=[::1]");
        assert!(Params::parse(&mut Scanner::new(";;")).is_err());
        assert!(Params::parse(&mut Scanner::new(";a=")).is_err());
        let mut q = Params::new();
        q.set("received", Some("192.0.2.1"));
        q.set("x", Some("has space"));
        assert_eq!(q.to_string(), ";received=192.0.2.1;x=\"has space\"");
    }
}
