//! The auto attendant on extension 0 (spec 01 "Auto attendant", seed 001): its
//! settings and their rules. [`AutoAttendantService`] is the one place they are read
//! and changed: `GET/PUT /api/auto-attendant` and the attendant answering calls
//! (`apps/auto_attendant.rs`) both go through it.
//!
//! The settings start as config.yml's `auto_attendant` section. Once an admin sets
//! them through the API they are stored in the database (with an
//! `auto_attendant.updated` event in the same transaction) and those win from then on,
//! across restarts; the API says which applies (`source`). Each call reads them anew,
//! so a change applies to the next call on every node.
//!
//! A recorded greeting (uploaded as WAV) replaces the menu spoken from the settings: it
//! is expected to say the options itself. Its audio is
//! `data_dir/auto-attendant/greeting.wav`, written before its row and removed after it,
//! so a row always has its file.

mod settings;

pub use settings::{MenuAction, MenuOption, Settings};

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use switchboard_media::wav;
use utoipa::ToSchema;

use super::events::{EventType, emit};
use super::voicemail::{Greeting, blocking, check_greeting, files, samples_to_ms};
use super::{Actor, ServiceError};
use crate::config::Config;
use crate::store::Db;
use crate::store::auto_attendant::{self as store, GreetingRow, SettingsRow};
use crate::store::extensions;
use crate::time::Timestamp;

/// Where the settings in force come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// config.yml's `auto_attendant` section (nothing was set through the API).
    Config,
    /// Set through the API; config.yml's section no longer applies.
    Api,
}

/// The settings in force and where they come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Current {
    #[serde(flatten)]
    pub settings: Settings,
    pub source: Source,
    /// When they were set through the API (absent for config.yml's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Who set them through the API (`extension:1001`, `api_key:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// The recorded greeting played instead of the spoken menu; `null` when none.
    pub greeting: Option<Greeting>,
}

/// The data of `auto_attendant.updated`.
#[derive(Serialize)]
struct Updated<'a> {
    actor: String,
    settings: &'a Settings,
}

/// The greeting's file name in its directory.
const GREETING_FILE: &str = "greeting.wav";

#[derive(Clone)]
pub struct AutoAttendantService {
    db: Db,
    /// config.yml's section, in force until the API sets others.
    configured: Settings,
    /// `data_dir/auto-attendant`.
    root: Arc<PathBuf>,
}

impl AutoAttendantService {
    pub fn new(db: Db, config: &Config) -> Self {
        Self {
            db,
            configured: config.auto_attendant.clone(),
            root: Arc::new(config.data_dir.join("auto-attendant")),
        }
    }

    /// The settings in force.
    pub async fn current(&self) -> Result<Current, ServiceError> {
        let greeting = self.greeting_info().await?;
        let Some(row) = store::get(&self.db).await? else {
            return Ok(Current {
                settings: self.configured.clone(),
                source: Source::Config,
                updated_at: None,
                updated_by: None,
                greeting,
            });
        };
        // Written only by `set`, from valid settings: unreadable means edited by hand.
        let settings = serde_json::from_str(&row.settings).map_err(|e| {
            tracing::error!(error = %e, "stored auto attendant settings are unreadable");
            ServiceError::invalid(
                "settings",
                format!("the stored auto attendant settings are unreadable ({e}); PUT new ones"),
            )
        })?;
        Ok(Current {
            settings,
            source: Source::Api,
            updated_at: Some(row.updated_at),
            updated_by: Some(row.updated_by),
            greeting,
        })
    }

    /// Replaces the settings. Besides [`Settings::problems`], the operator and every
    /// extension and mailbox the menu names must exist (a mailbox with its voicemail
    /// on), so a typo is refused now rather than found by a caller.
    pub async fn set(&self, by: &Actor, settings: Settings) -> Result<Current, ServiceError> {
        if let Some(p) = settings.problems().into_iter().next() {
            return Err(ServiceError::invalid(p.field, p.message));
        }
        self.check_targets(&settings).await?;
        let row = SettingsRow {
            settings: serde_json::to_string(&settings)
                .map_err(|e| sqlx::Error::Encode(e.into()))?,
            updated_at: Timestamp::now(),
            updated_by: by.label(),
        };
        let mut tx = self.db.begin().await?;
        store::put(&mut tx, &row).await?;
        let data = Updated {
            actor: by.label(),
            settings: &settings,
        };
        emit(&mut tx, EventType::AutoAttendantUpdated, &data).await?;
        tx.commit().await?;
        tracing::info!(by = %by.label(), options = settings.menu.len(), "auto attendant updated");
        Ok(Current {
            settings,
            source: Source::Api,
            updated_at: Some(row.updated_at),
            updated_by: Some(row.updated_by),
            greeting: self.greeting_info().await?,
        })
    }

    /// Replaces the recorded greeting with `wav_bytes`: a WAV file of 8 kHz, 16-bit,
    /// mono PCM of at most a minute, else [`ServiceError::Invalid`] on `greeting`. Only
    /// the samples are kept.
    pub async fn set_greeting(
        &self,
        by: &Actor,
        wav_bytes: &[u8],
    ) -> Result<Greeting, ServiceError> {
        let samples = check_greeting(wav_bytes)?;
        let row = GreetingRow {
            duration_ms: samples_to_ms(samples.len()),
            updated_at: Timestamp::now(),
        };
        let path = self.root.join(GREETING_FILE);
        let bytes = wav::write(&samples);
        blocking(move || files::write_atomically(&path, &bytes))
            .await
            .map_err(|e| storage_failed("write", &e))?;
        let mut tx = self.db.begin().await?;
        store::put_greeting(&mut tx, &row).await?;
        tx.commit().await?;
        tracing::info!(by = %by.label(), duration_ms = row.duration_ms, "auto attendant greeting recorded");
        Ok(greeting_of(row))
    }

    /// The recorded greeting's metadata, if there is one.
    pub async fn greeting_info(&self) -> Result<Option<Greeting>, ServiceError> {
        Ok(store::get_greeting(&self.db).await?.map(greeting_of))
    }

    /// The recorded greeting's WAV file, if there is one.
    pub async fn greeting_wav(&self) -> Result<Option<Vec<u8>>, ServiceError> {
        if store::get_greeting(&self.db).await?.is_none() {
            return Ok(None);
        }
        let path = self.root.join(GREETING_FILE);
        match blocking(move || std::fs::read(path)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    "the auto attendant's greeting file is missing; the spoken menu plays"
                );
                Ok(None)
            }
            Err(e) => Err(storage_failed("read", &e)),
        }
    }

    /// The recorded greeting's samples, if there is one: what callers of 0 hear.
    pub async fn greeting(&self) -> Result<Option<Vec<i16>>, ServiceError> {
        let Some(bytes) = self.greeting_wav().await? else {
            return Ok(None);
        };
        wav::read(&bytes)
            .map(Some)
            .map_err(|e| storage_failed("decode", &std::io::Error::other(e.to_string())))
    }

    /// Removes the recorded greeting: callers hear the spoken menu again.
    pub async fn delete_greeting(&self, by: &Actor) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await?;
        let existed = store::delete_greeting(&mut tx).await?;
        tx.commit().await?;
        if !existed {
            return Err(ServiceError::not_found(
                "a recorded auto attendant greeting",
            ));
        }
        tracing::info!(by = %by.label(), "auto attendant greeting removed");
        let path = self.root.join(GREETING_FILE);
        if let Err(e) = blocking(move || files::remove(&path)).await {
            // Without its row the file is never played; the next upload replaces it.
            tracing::warn!(error = %e, "auto attendant greeting file not removed");
        }
        Ok(())
    }

    async fn check_targets(&self, settings: &Settings) -> Result<(), ServiceError> {
        let operator = extensions::get(self.db.pool(), &settings.operator).await?;
        if operator.is_none_or(|o| !o.active) {
            return Err(ServiceError::invalid(
                "operator",
                format!(
                    "extension {} does not exist or is deactivated",
                    settings.operator
                ),
            ));
        }
        for (i, option) in settings.menu.iter().enumerate() {
            let Some(target) = &option.target else {
                continue;
            };
            let field = || format!("menu[{i}].target");
            match option.action {
                MenuAction::Extension => {
                    if extensions::get(self.db.pool(), target).await?.is_none() {
                        return Err(ServiceError::invalid(
                            field(),
                            format!("extension {target} does not exist"),
                        ));
                    }
                }
                MenuAction::Voicemail => {
                    let owner = extensions::get(self.db.pool(), target).await?;
                    if !owner.is_some_and(|o| o.voicemail_enabled) {
                        return Err(ServiceError::invalid(
                            field(),
                            format!("extension {target} does not exist or has no voicemail"),
                        ));
                    }
                }
                // Queues come with their own feature; the dial plan decides at call time.
                MenuAction::Queue | MenuAction::Operator => {}
            }
        }
        Ok(())
    }
}

fn greeting_of(row: GreetingRow) -> Greeting {
    Greeting {
        duration_ms: row.duration_ms,
        updated_at: row.updated_at,
    }
}

/// A file operation on the greeting failed: logged in full, reported without paths.
fn storage_failed(what: &str, e: &std::io::Error) -> ServiceError {
    tracing::error!(error = %e, "auto attendant greeting: cannot {what} the file");
    ServiceError::Files(format!(
        "the auto attendant greeting could not be stored or read ({what}); see the server log"
    ))
}
