//! The agent's state file: the server, the device key and its secret. The secret is a
//! credential, so the file is created with mode 0600 (never readable by others, not
//! even for a moment) and replaced atomically, so a crash mid-write cannot lose it.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub server: String,
    pub device_key: String,
    pub device_secret: String,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// `--state FILE`, else `~/.config/switchboard/device.json`.
pub fn path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => {
            Ok(PathBuf::from(home).join(".config/switchboard/device.json"))
        }
        _ => bail!("HOME is not set: give the state file with --state FILE"),
    }
}

/// The saved state, or `None` when the device is not registered (no file).
pub fn load(path: &Path) -> anyhow::Result<Option<State>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{} is not a valid device state file", path.display()))
}

/// Like [`load`], but not being registered is an error naming the way out.
pub fn require(path: &Path) -> anyhow::Result<State> {
    load(path)?.with_context(|| {
        format!(
            "this device is not registered (no state file at {}): run `switchboard device register` first",
            path.display()
        )
    })
}

/// Writes a temporary file created 0600 next to the target, then renames it over the
/// target (which also fixes a target whose mode had been widened by hand).
pub fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(state).context("cannot encode the device state")?;
    let tmp = path.with_extension("json.tmp");
    // A leftover from an interrupted write may have another mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the state file; `false` when there was none.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sample() -> State {
        State {
            server: "https://pbx.example".into(),
            device_key: "device-0123abcd".into(),
            device_secret: "s3cret".into(),
            registered_at: Utc::now(),
            last_heartbeat: None,
        }
    }

    #[test]
    fn saved_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/device.json");
        save(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.device_secret, "s3cret");
        assert!(back.last_heartbeat.is_none());
    }

    #[test]
    fn a_widened_file_is_private_again_after_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_file_means_not_registered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.json");
        assert!(load(&path).unwrap().is_none());
        assert!(require(&path).is_err());
        assert!(!remove(&path).unwrap());
    }
}
