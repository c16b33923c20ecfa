//! The recorded words applications play (`prompts/`, made by `prompts/make.sh`). The
//! English set is compiled into the binary so that a PBX with no configuration
//! speaks; `prompts.directory` names a set that replaces it (another language,
//! recordings) and `prompts.hold_music` other music. Every prompt is decoded once at
//! start, so playing one costs nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../prompts/en/"]
#[include = "*.wav"]
struct English;

/// Hold music, language independent: played while the auto attendant's transfer rings
/// (and, later, to callers waiting in a queue).
#[derive(RustEmbed)]
#[folder = "../../prompts/music/"]
#[include = "hold.wav"]
struct Music;

/// A prompt that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("prompt {name}: {why}")]
pub struct PromptError {
    name: String,
    why: String,
}

pub struct Prompts {
    by_name: HashMap<String, Arc<[i16]>>,
    hold_music: Arc<[i16]>,
    /// What a missing prompt plays instead (a tenth of a second).
    silence: Arc<[i16]>,
}

impl Prompts {
    /// The compiled-in English set.
    pub fn english() -> Result<Self, PromptError> {
        let mut by_name = HashMap::new();
        for file in English::iter() {
            let Some(name) = file.strip_suffix(".wav") else {
                continue;
            };
            let data = English::get(&file).map(|f| f.data).unwrap_or_default();
            let samples = switchboard_media::wav::read(&data).map_err(|e| PromptError {
                name: name.to_owned(),
                why: e.to_string(),
            })?;
            by_name.insert(name.to_owned(), Arc::from(samples));
        }
        let music = Music::get("hold.wav").map(|f| f.data).unwrap_or_default();
        let hold_music = switchboard_media::wav::read(&music).map_err(|e| PromptError {
            name: "music/hold".into(),
            why: e.to_string(),
        })?;
        Ok(Self {
            by_name,
            hold_music: Arc::from(hold_music),
            silence: Arc::from(vec![0i16; 800]),
        })
    }

    /// The set the configuration asks for: the English one, with every `<name>.wav` of
    /// `directory` in place of the English prompt of that name (a prompt the directory
    /// lacks stays English, with a warning), and `hold_music` in place of the music.
    /// A file that is not 8 kHz, 16-bit, mono PCM is an error naming it, so a bad set
    /// stops the start rather than a call.
    pub fn configured(
        directory: Option<&Path>,
        hold_music: Option<&Path>,
    ) -> Result<Self, PromptError> {
        let mut prompts = Self::english()?;
        if let Some(dir) = directory {
            let english: Vec<String> = prompts.by_name.keys().cloned().collect();
            let entries = std::fs::read_dir(dir).map_err(|e| PromptError {
                name: dir.display().to_string(),
                why: format!("cannot read the prompts.directory: {e}"),
            })?;
            let mut replaced = 0;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".wav"))
                else {
                    continue;
                };
                if !prompts.by_name.contains_key(name) {
                    tracing::warn!(file = %path.display(), "not a prompt name the server plays; ignored");
                    continue;
                }
                prompts.by_name.insert(name.to_owned(), read_file(&path)?);
                replaced += 1;
            }
            let missing: Vec<&String> = english
                .iter()
                .filter(|n| !dir.join(format!("{n}.wav")).exists())
                .collect();
            if !missing.is_empty() {
                tracing::warn!(directory = %dir.display(), ?missing, "prompts missing from the set; the English ones play instead");
            }
            tracing::info!(directory = %dir.display(), replaced, "prompt set loaded");
        }
        if let Some(path) = hold_music {
            prompts.hold_music = read_file(path)?;
        }
        Ok(prompts)
    }

    /// The prompt `name`; a short silence (and a warning) when the set lacks it, so
    /// a missing translation never ends a call.
    pub fn get(&self, name: &str) -> Arc<[i16]> {
        match self.by_name.get(name) {
            Some(p) => p.clone(),
            None => {
                tracing::warn!(prompt = name, "prompt missing from the prompt set");
                self.silence.clone()
            }
        }
    }

    /// The hold music (30 s that loop seamlessly).
    pub fn hold_music(&self) -> Arc<[i16]> {
        self.hold_music.clone()
    }

    /// `number` read digit by digit (an extension number).
    pub fn digits(&self, number: &str) -> Vec<Arc<[i16]>> {
        number
            .chars()
            .filter(char::is_ascii_digit)
            .map(|d| self.get(&format!("digit-{d}")))
            .collect()
    }

    /// A count from 0 to 99 in words (above 99 is said as 99: no mailbox holds that
    /// many messages worth reading out).
    pub fn count(&self, n: usize) -> Vec<Arc<[i16]>> {
        let n = n.min(99);
        match n {
            0..=9 => vec![self.get(&format!("digit-{n}"))],
            10..=19 => vec![self.get(&format!("number-{n}"))],
            _ if n.is_multiple_of(10) => vec![self.get(&format!("number-{n}"))],
            _ => vec![
                self.get(&format!("number-{}", n / 10 * 10)),
                self.get(&format!("digit-{}", n % 10)),
            ],
        }
    }
}

/// A WAV file of the configured set.
fn read_file(path: &Path) -> Result<Arc<[i16]>, PromptError> {
    let failed = |why: String| PromptError {
        name: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let samples = switchboard_media::wav::read(&bytes).map_err(|e| failed(e.to_string()))?;
    if samples.is_empty() {
        return Err(failed("no audio".into()));
    }
    Ok(Arc::from(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_english_set_loads_and_reads_numbers() {
        let prompts = Prompts::english().unwrap();
        for name in [
            "digit-0",
            "digit-9",
            "goodbye",
            "beep",
            "vm-person-at-extension",
        ] {
            assert!(prompts.get(name).len() > 800, "{name} is real audio");
        }
        assert_eq!(prompts.hold_music().len(), 30 * 8000, "30 s of music");
        assert_eq!(prompts.digits("1001").len(), 4);
        assert!(Arc::ptr_eq(
            &prompts.digits("1001")[1],
            &prompts.get("digit-0")
        ));
        assert_eq!(prompts.count(7).len(), 1);
        assert_eq!(prompts.count(42).len(), 2);
        assert!(Arc::ptr_eq(
            &prompts.count(42)[0],
            &prompts.get("number-40")
        ));
        assert!(Arc::ptr_eq(
            &prompts.count(30)[0],
            &prompts.get("number-30")
        ));
        assert!(Arc::ptr_eq(
            &prompts.get("no-such-prompt"),
            &prompts.silence
        ));
    }

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn a_configured_directory_replaces_the_prompts_it_has() {
        let dir = tempfile::tempdir().unwrap();
        write_wav(&dir.path().join("goodbye.wav"), 8000, 1, &[7; 4000]);
        write_wav(&dir.path().join("not-a-prompt.wav"), 8000, 1, &[7; 80]);
        let music = dir.path().join("music.wav");
        write_wav(&music, 8000, 1, &[3; 16000]);
        let english = Prompts::english().unwrap();
        let set = Prompts::configured(Some(dir.path()), Some(&music)).unwrap();
        assert_eq!(&*set.get("goodbye"), &[7; 4000][..]);
        assert_eq!(
            set.get("digit-1"),
            english.get("digit-1"),
            "the rest stays English"
        );
        assert!(!set.by_name.contains_key("not-a-prompt"));
        assert_eq!(set.hold_music().len(), 16000);

        write_wav(&dir.path().join("beep.wav"), 44100, 2, &[1; 100]);
        let err = Prompts::configured(Some(dir.path()), None).err().unwrap();
        assert!(err.to_string().contains("beep.wav"), "{err}");
        let err = Prompts::configured(Some(&dir.path().join("nowhere")), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("prompts.directory"), "{err}");
    }
}
