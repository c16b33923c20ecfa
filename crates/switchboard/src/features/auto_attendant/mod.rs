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

mod settings;

pub use settings::{MenuAction, MenuOption, Settings};

use serde::Serialize;
use utoipa::ToSchema;

use super::events::{EventType, emit};
use super::{Actor, ServiceError};
use crate::store::Db;
use crate::store::auto_attendant::{self as store, SettingsRow};
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
}

/// The data of `auto_attendant.updated`.
#[derive(Serialize)]
struct Updated<'a> {
    actor: String,
    settings: &'a Settings,
}

#[derive(Clone)]
pub struct AutoAttendantService {
    db: Db,
    /// config.yml's section, in force until the API sets others.
    configured: Settings,
}

impl AutoAttendantService {
    pub fn new(db: Db, configured: Settings) -> Self {
        Self { db, configured }
    }

    /// The settings in force.
    pub async fn current(&self) -> Result<Current, ServiceError> {
        let Some(row) = store::get(&self.db).await? else {
            return Ok(Current {
                settings: self.configured.clone(),
                source: Source::Config,
                updated_at: None,
                updated_by: None,
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
        })
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
