//! The voicemail directory on disk: `data_dir/voicemail/<extension>/<id>.wav` for
//! messages and `…/<extension>/greeting.wav` for the custom greeting.
//!
//! Every path is built here from an extension number that passed
//! [`check_number`](crate::features::extensions::rules::check_number) (lowercase letters,
//! digits and `-`, never `.` or `/`) and a parsed UUID, never from raw input, so no
//! request can name a file outside the directory. Files are written to a temporary name,
//! flushed to disk and renamed into place, so a reader (or a crash) sees the whole
//! file or none of it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The greeting's file name inside an extension's directory.
pub const GREETING_FILE: &str = "greeting.wav";

/// Temporary files end with this; the sweep removes stale ones.
const TEMP_SUFFIX: &str = ".tmp";

/// `<extension>/<id>.wav`, relative to the voicemail directory (the `file` column).
pub fn message_file(extension: &str, id: &uuid::Uuid) -> String {
    format!("{extension}/{}.wav", id.hyphenated())
}

/// `<extension>/greeting.wav`, relative to the voicemail directory.
pub fn greeting_file(extension: &str) -> String {
    format!("{extension}/{GREETING_FILE}")
}

/// `root` joined with `relative`, which must be plain names (no `..`, no root, no
/// prefix): a `file` column edited by hand cannot point outside the directory either.
pub fn resolve(root: &Path, relative: &str) -> io::Result<PathBuf> {
    let rel = Path::new(relative);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || relative.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("voicemail file name `{relative}` is not inside the voicemail directory"),
        ));
    }
    Ok(root.join(rel))
}

/// Writes `bytes` to `dest` atomically and durably: a temporary file beside it,
/// flushed, renamed over `dest`, then the directory flushed so the rename survives a
/// power cut. The directory is created when missing.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = dest
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    fs::create_dir_all(dir)?;
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Unique per write: two uploads of one greeting never share a temporary file.
    let tmp = dir.join(format!(
        ".{name}.{}{TEMP_SUFFIX}",
        uuid::Uuid::now_v7().simple()
    ));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, dest)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Removes `path`; a file already gone is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What the database says one extension's directory should hold.
pub struct Expected {
    pub message_ids: HashSet<String>,
    pub greeting: bool,
    /// The extension still exists (otherwise its emptied directory goes too).
    pub extension_exists: bool,
}

/// Removes the files in `dir` that the database does not know and that are older than
/// `grace` (a message being deposited is on disk a moment before its row commits):
/// leftovers of a crash between the two, of a file removal that failed, or of a
/// deleted extension. Returns how many files went.
pub fn sweep_dir(dir: &Path, expected: &Expected, grace: Duration) -> io::Result<usize> {
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < grace {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let known = if name == GREETING_FILE {
            expected.greeting
        } else if name.ends_with(TEMP_SUFFIX) {
            false
        } else if let Some(id) = name.strip_suffix(".wav")
            && let Ok(id) = uuid::Uuid::parse_str(id)
        {
            expected.message_ids.contains(&id.hyphenated().to_string())
        } else {
            // Not a file of ours: leave it.
            true
        };
        if !known {
            remove(&entry.path())?;
            removed += 1;
        }
    }
    if !expected.extension_exists && fs::read_dir(dir)?.next().is_none() {
        fs::remove_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_cannot_leave_the_directory() {
        let root = Path::new("/data/voicemail");
        assert_eq!(
            resolve(root, "1001/x.wav").unwrap(),
            Path::new("/data/voicemail/1001/x.wav")
        );
        for bad in ["../x.wav", "1001/../../x", "/etc/passwd", "", "./x"] {
            assert!(resolve(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("1001").join(GREETING_FILE);
        write_atomically(&dest, b"first").unwrap();
        write_atomically(&dest, b"second").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [GREETING_FILE]);
        remove(&dest).unwrap();
        remove(&dest).unwrap();
    }

    #[test]
    fn the_sweep_removes_only_unknown_files_past_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let known = uuid::Uuid::now_v7();
        let orphan = uuid::Uuid::now_v7();
        for name in [
            format!("{known}.wav"),
            format!("{orphan}.wav"),
            GREETING_FILE.to_owned(),
            ".x.wav.abc.tmp".to_owned(),
            "notes.txt".to_owned(),
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        let expected = Expected {
            message_ids: HashSet::from([known.to_string()]),
            greeting: false,
            extension_exists: true,
        };
        assert_eq!(
            sweep_dir(dir.path(), &expected, Duration::from_secs(3600)).unwrap(),
            0,
            "fresh files are spared"
        );
        assert_eq!(sweep_dir(dir.path(), &expected, Duration::ZERO).unwrap(), 3);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [format!("{known}.wav"), "notes.txt".to_owned()]);
    }
}
