//! HTTPS for the API and panel: certificate files from the configuration, or a
//! self-signed certificate generated at first start and kept in `data_dir/tls/`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

use crate::config::{Config, HttpTls};

/// Installs the process-wide rustls crypto provider (ring). Several dependencies
/// compile rustls; naming one provider avoids a panic when two are present.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS configuration of `http.tls`, or `None` for plain HTTP.
pub async fn http_config(config: &Config) -> anyhow::Result<Option<RustlsConfig>> {
    let (cert, key) = match &config.http.tls {
        HttpTls::Off => return Ok(None),
        HttpTls::Files {
            cert_file,
            key_file,
        } => (cert_file.clone(), key_file.clone()),
        HttpTls::SelfSigned => self_signed(&config.data_dir.join("tls"))?,
    };
    install_crypto_provider();
    let tls = RustlsConfig::from_pem_file(&cert, &key)
        .await
        .with_context(|| {
            format!(
                "cannot use the certificate {} with the key {} (http.tls)",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Some(tls))
}

/// Returns `dir/http-cert.pem` and `dir/http-key.pem`, generating them first when
/// missing. The certificate names localhost, this host's name and its addresses.
fn self_signed(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("http-cert.pem");
    let key = dir.join("http-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    if let Some(ip) = crate::server::primary_ip() {
        names.push(ip.to_string());
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .context("cannot generate a self-signed certificate")?;
    std::fs::write(&cert, generated.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed HTTPS certificate (browsers will ask to trust it)");
    Ok((cert, key))
}

/// Writes a file only its owner can read (mode 0600 on Unix).
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
