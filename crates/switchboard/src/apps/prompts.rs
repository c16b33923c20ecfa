//! The recorded words applications play (`prompts/`, made by `prompts/make.sh`). The
//! English set is compiled into the binary so that a PBX with no configuration
//! speaks; every prompt is decoded once at start, so playing one costs nothing.

use std::collections::HashMap;
use std::sync::Arc;

use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../prompts/en/"]
#[include = "*.wav"]
struct English;

/// A prompt that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("prompt {name}: {why}")]
pub struct PromptError {
    name: String,
    why: String,
}

pub struct Prompts {
    by_name: HashMap<String, Arc<[i16]>>,
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
        Ok(Self {
            by_name,
            silence: Arc::from(vec![0i16; 800]),
        })
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
}
