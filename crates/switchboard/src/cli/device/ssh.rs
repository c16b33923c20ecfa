//! SSH keys: publishing this device's public key, and fetching the server's host keys
//! with their fingerprints (as `ssh-keygen -l` prints them) for known_hosts.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// One line of `ssh-keyscan` output: `host keytype base64`.
#[derive(Debug, PartialEq, Eq)]
pub struct HostKey {
    pub line: String,
    pub host: String,
    pub key_type: String,
    pub fingerprint: String,
}

/// `SHA256:` and the unpadded base64 of the SHA-256 of the key blob.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The host key lines of the answer; comments and blank lines skipped. A line whose
/// blob does not decode, or does not start with its own key type, is an error: it
/// would go into known_hosts.
pub fn parse_host_keys(text: &str) -> anyhow::Result<Vec<HostKey>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> anyhow::Result<HostKey> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [host, key_type, b64, ..] = fields[..] else {
        bail!("the server sent a host key line that is not `host keytype base64`: {line:.80}");
    };
    let blob = STANDARD
        .decode(b64)
        .with_context(|| format!("the {key_type} host key of {host} is not base64"))?;
    if blob_type(&blob) != Some(key_type.as_bytes()) {
        bail!("the {key_type} host key of {host} does not hold a {key_type} key");
    }
    Ok(HostKey {
        line: format!("{host} {key_type} {b64}"),
        host: host.to_owned(),
        key_type: key_type.to_owned(),
        fingerprint: fingerprint(&blob),
    })
}

/// The key type a public key blob starts with (an SSH string: u32 length, bytes).
fn blob_type(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

/// Appends the keys not already in the file; the number added.
pub fn append_known_hosts(file: &Path, keys: &[HostKey]) -> anyhow::Result<usize> {
    let existing = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let known: Vec<&str> = existing.lines().map(str::trim).collect();
    let new: Vec<&HostKey> = keys
        .iter()
        .filter(|k| !known.contains(&k.line.as_str()))
        .collect();
    if new.is_empty() {
        return Ok(0);
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    let mut text = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        text.push('\n');
    }
    for key in &new {
        text.push_str(&key.line);
        text.push('\n');
    }
    out.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(new.len())
}

/// The first key line of a `.pub` file, checked for `type base64 [comment]` so a
/// private key given by mistake is never sent.
pub fn read_public_key(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the public key {}", file.display()))?;
    if text.contains("PRIVATE KEY") {
        bail!("{} is a private key: give the .pub file", file.display());
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(|| format!("{} holds no public key", file.display()))?;
    // The server's own check: what passes here, the server accepts.
    crate::features::devices::ssh::check_public_key(line).map_err(|why| {
        anyhow::anyhow!(
            "{} is not a usable OpenSSH public key: {why}",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key made with `ssh-keygen -t ed25519`; `ssh-keygen -lf` printed FINGERPRINT.
    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEaZzCyoFH04XCJWQyWH6q+NJ4W3cd0kCW+QSOvesmSt";
    const FINGERPRINT: &str = "SHA256:yjFO2dbaD+1Itk0uqEWo1RwdmIWX6a1tZyOAbPhIGcE";

    fn blob() -> Vec<u8> {
        STANDARD.decode(ED25519).unwrap()
    }

    #[test]
    fn fingerprint_is_ssh_keygen_format() {
        assert_eq!(fingerprint(&blob()), FINGERPRINT);
    }

    #[test]
    fn keyscan_lines_parse_and_bad_ones_are_refused() {
        let text = format!("# pbx.example:22 SSH-2.0\n\npbx.example ssh-ed25519 {ED25519}\n");
        let keys = parse_host_keys(&text).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].host, "pbx.example");
        assert_eq!(keys[0].key_type, "ssh-ed25519");
        assert_eq!(keys[0].fingerprint, FINGERPRINT);
        assert!(
            parse_host_keys(&format!("pbx ssh-rsa {ED25519}")).is_err(),
            "type mismatch"
        );
        assert!(parse_host_keys("pbx ssh-ed25519 !!!").is_err());
        assert!(parse_host_keys("only-one-field").is_err());
    }

    #[test]
    fn known_hosts_gets_each_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, "other ssh-ed25519 AAAA").unwrap();
        let keys = parse_host_keys(&format!("pbx ssh-ed25519 {ED25519}")).unwrap();
        assert_eq!(append_known_hosts(&file, &keys).unwrap(), 1);
        assert_eq!(append_known_hosts(&file, &keys).unwrap(), 0);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            format!("other ssh-ed25519 AAAA\npbx ssh-ed25519 {ED25519}\n")
        );
    }

    #[test]
    fn public_key_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id.pub");
        std::fs::write(&file, format!("ssh-ed25519 {ED25519} me@box\n")).unwrap();
        assert!(read_public_key(&file).unwrap().ends_with("me@box"));
        std::fs::write(&file, "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").unwrap();
        assert!(read_public_key(&file).is_err());
        std::fs::write(&file, "ssh-ed25519 notbase64\n").unwrap();
        assert!(read_public_key(&file).is_err());
    }
}
