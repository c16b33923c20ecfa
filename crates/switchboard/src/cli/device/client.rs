//! HTTP to the PBX: TLS verified by default (`--ca FILE` for a private CA,
//! `--insecure` for the lab, announced on every run), and failures sorted into what
//! the operator can act on: unreachable, TLS, or the server's own answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reqwest::{Method, StatusCode, header};
use serde::Serialize;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Trust this CA certificate (PEM) for the server's certificate (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (lab use only: the device secret
    /// can then be stolen by anyone on the path).
    #[arg(long)]
    pub insecure: bool,
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub enum Failure {
    Unreachable(String),
    Tls(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(m) => f.write_str(m),
            Self::Tls(m) => write!(f, "TLS: {m} (use --ca FILE for a private CA)"),
        }
    }
}

impl std::error::Error for Failure {}

/// A server's answer, body kept as text (JSON or `text/plain`).
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    /// The message of the API's error envelope `{"error": {"code", "message"}}`, else
    /// the start of the body, else the status.
    pub fn error_message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .or_else(|| {
                let text = self.body.trim();
                (!text.is_empty()).then(|| text.chars().take(200).collect())
            })
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).context("the server's answer is not JSON")
    }
}

pub struct Api {
    http: reqwest::Client,
    server: String,
}

impl Api {
    pub fn new(server: &str, tls: &TlsArgs) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        // No redirects: the bearer secret goes to the server named, nowhere else.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("switchboard-device/", env!("CARGO_PKG_VERSION")));
        if let Some(file) = &tls.ca {
            let pem = std::fs::read(file)
                .with_context(|| format!("cannot read the CA file {}", file.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", file.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        if tls.insecure {
            eprintln!(
                "WARNING: --insecure: the server's TLS certificate is NOT verified. Anyone on the \
                 network path can impersonate the server and steal this device's secret. \
                 Use --ca FILE instead outside a lab."
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            server: normalize_server(server)?,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// One request to `{server}{path}`; `Err` only when no HTTP answer came back.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        secret: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<Answer, Failure> {
        let mut request = self.http.request(method, format!("{}{path}", self.server));
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        if let Some(body) = body {
            let json = serde_json::to_vec(body)
                .map_err(|e| Failure::Unreachable(format!("cannot encode the request: {e}")))?;
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let response = request.send().await.map_err(|e| self.failure(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.failure(&e))?;
        Ok(Answer { status, body })
    }

    fn failure(&self, e: &reqwest::Error) -> Failure {
        match tls_error(e) {
            Some(tls) => Failure::Tls(tls),
            None => Failure::Unreachable(format!(
                "cannot reach the server at {}: {}",
                self.server,
                causes(e)
            )),
        }
    }
}

/// The server URL without a trailing slash; only http and https make sense.
pub fn normalize_server(server: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(server.trim())
        .with_context(|| format!("--server {server:?} is not a URL (e.g. https://pbx.example)"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        anyhow::bail!("--server must be an http:// or https:// URL, got {server:?}");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The error and its causes ("error sending request: … Connection refused"), without
/// reqwest's URL prefix (the operator knows the server).
fn causes(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    // Wrappers often repeat their cause's text: keep each once.
    parts.dedup();
    parts.join(": ")
}

/// The rustls error in the chain, if any (its text says what is wrong with the
/// certificate). A TLS failure reaches reqwest wrapped in `io::Error`s (twice), and
/// `io::Error::source` skips the wrapped error, hence the descent through `get_ref`.
fn tls_error(e: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        next = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cause.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_is_normalised() {
        assert_eq!(
            normalize_server("https://pbx.example/").unwrap(),
            "https://pbx.example"
        );
        assert_eq!(
            normalize_server("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalize_server("pbx.example").is_err());
        assert!(normalize_server("ftp://pbx.example").is_err());
    }

    #[test]
    fn error_message_reads_the_envelope() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body:
                r#"{"error":{"code":"invalid","message":"mac is not a MAC address","field":"mac"}}"#
                    .into(),
        };
        assert_eq!(answer.error_message(), "mac is not a MAC address");
        let empty = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: String::new(),
        };
        assert_eq!(empty.error_message(), "HTTP 502 Bad Gateway");
    }
}
