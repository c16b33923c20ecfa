//! Value types with their own syntax, so a wrong value is reported with what is allowed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::schema::TlsFiles;

/// A configuration value that must never be printed (passwords, API keys, URLs with
/// credentials). `Debug` and `Serialize` mask it; `expose` gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value with credentials masked: URLs keep everything but the password.
    pub fn masked(&self) -> String {
        if let Some((scheme, rest)) = self.0.split_once("://") {
            if let Some((userinfo, host)) = rest.rsplit_once('@') {
                let user = userinfo.split(':').next().unwrap_or("");
                return if userinfo.contains(':') {
                    format!("{scheme}://{user}:********@{host}")
                } else {
                    self.0.clone()
                };
            }
            return self.0.clone();
        }
        "********".into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `host:port` for a TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(ListenAddr).map_err(|_| {
            de::Error::custom(format!(
                "`{text}` is not a listen address; expected IP:PORT such as 0.0.0.0:8080 or [::]:8080"
            ))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118) on the HTTP port: never a `sip.listen` entry.
    Ws,
    /// The same over HTTPS.
    Wss,
}

impl SipTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

/// One SIP listener: `udp:0.0.0.0:5060`, `tcp:[::]:5060`, `tls:0.0.0.0:5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipListen {
    pub transport: SipTransport,
    pub addr: SocketAddr,
}

impl SipListen {
    pub fn parse(text: &str) -> Result<Self, String> {
        let allowed =
            "expected TRANSPORT:IP:PORT with TRANSPORT udp, tcp or tls, e.g. udp:0.0.0.0:5060";
        let (transport, addr) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` is not a SIP listener; {allowed}"))?;
        let transport = match transport.to_ascii_lowercase().as_str() {
            "udp" => SipTransport::Udp,
            "tcp" => SipTransport::Tcp,
            "tls" => SipTransport::Tls,
            other => {
                return Err(format!(
                    "unknown SIP transport `{other}` in `{text}`; {allowed}"
                ));
            }
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("`{text}` has no valid IP:PORT; {allowed}"))?;
        Ok(Self { transport, addr })
    }
}

impl fmt::Display for SipListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.addr)
    }
}

impl Serialize for SipListen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SipListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SipListen::parse(&text).map_err(de::Error::custom)
    }
}

/// HTTPS for the API and panel: `off`, `self_signed` (generated at first start and
/// kept in `data_dir`), or `{cert_file, key_file}`.
#[derive(Debug, Clone, Default)]
pub enum HttpTls {
    #[default]
    Off,
    SelfSigned,
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

impl HttpTls {
    pub fn is_enabled(&self) -> bool {
        !matches!(self, Self::Off)
    }
}

impl Serialize for HttpTls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_str("off"),
            Self::SelfSigned => s.serialize_str("self_signed"),
            Self::Files {
                cert_file,
                key_file,
            } => TlsFiles {
                cert_file: Some(cert_file.clone()),
                key_file: Some(key_file.clone()),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for HttpTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TlsVisitor;
        const ALLOWED: &str = "`off`, `self_signed` or a map with cert_file and key_file";

        impl<'de> Visitor<'de> for TlsVisitor {
            type Value = HttpTls;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ALLOWED)
            }

            fn visit_unit<E: de::Error>(self) -> Result<HttpTls, E> {
                Ok(HttpTls::Off)
            }

            fn visit_none<E: de::Error>(self) -> Result<HttpTls, E> {
                Ok(HttpTls::Off)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HttpTls, E> {
                if v {
                    Err(E::custom(format!(
                        "`true` is ambiguous; expected {ALLOWED}"
                    )))
                } else {
                    Ok(HttpTls::Off)
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HttpTls, E> {
                match v {
                    "off" | "" => Ok(HttpTls::Off),
                    "self_signed" => Ok(HttpTls::SelfSigned),
                    other => Err(E::custom(format!(
                        "`{other}` is not allowed; expected {ALLOWED}"
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HttpTls, A::Error> {
                let files = TlsFiles::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (files.cert_file, files.key_file) {
                    (Some(cert_file), Some(key_file)) => Ok(HttpTls::Files {
                        cert_file,
                        key_file,
                    }),
                    _ => Err(de::Error::custom(format!(
                        "both cert_file and key_file are needed; expected {ALLOWED}"
                    ))),
                }
            }
        }
        d.deserialize_any(TlsVisitor)
    }
}
