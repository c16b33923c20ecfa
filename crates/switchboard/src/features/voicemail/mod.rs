//! Voicemail: the message store and the custom greetings. [`VoicemailService`] is the
//! one place their rules live; the REST API (`api/voicemail.rs`) and the phone side
//! (the voicemail IVR in `apps/`) both call it, so a message left by phone and one
//! read over HTTP go through the same code.
//!
//! Metadata is in the database (`store::voicemail`), audio in WAV files (8 kHz, 16-bit,
//! mono) under `data_dir/voicemail/` (`files`). A deposit writes its file first and then
//! the row with its `voicemail.received` event in one transaction; a failed transaction
//! removes the file again, and a crash between the two leaves a file without a row,
//! which [`VoicemailService::sweep`] removes later. Deletions go the other way: the row
//! first, then the file.
//!
//! Once a deposit has committed, the mailbox owner is e-mailed the recording (`email`)
//! when SMTP is configured, `voicemail.email_notifications` is on and the extension has
//! an address: from a task of its own, so a slow or broken mail server never delays
//! or fails a deposit.

mod email;
pub(crate) mod files;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use switchboard_media::wav;
use utoipa::ToSchema;

use super::events::{EventType, emit};
use super::extensions::rules::check_number;
use super::mail::Mailer;
use super::{Actor, ServiceError};
use crate::config::Config;
use crate::store::Db;
use crate::store::extensions::ExtensionRow;
use crate::store::voicemail::{self as store, GreetingRow, MessageRow};
use crate::time::Timestamp;

/// Samples per second of every voicemail file (G.711's rate).
pub const SAMPLE_RATE: u64 = 8000;
/// The longest greeting accepted.
pub const MAX_GREETING_SECONDS: u64 = 60;
/// The largest greeting upload: a minute of 16-bit samples and room for the header and
/// the chunks editors add (LIST, fact, …).
pub const MAX_GREETING_BYTES: usize = (MAX_GREETING_SECONDS * SAMPLE_RATE * 2) as usize + 64 * 1024;

/// Which folder a message is in: `new` until it is listened to (or marked read), then
/// `saved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Folder {
    New,
    Saved,
}

impl Folder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Saved => "saved",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "new" {
            Self::New
        } else {
            Self::Saved
        }
    }
}

/// A voicemail message (its metadata; the audio is fetched apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VoicemailMessage {
    #[schema(value_type = String)]
    pub id: uuid::Uuid,
    /// The mailbox: the extension the message was left for.
    pub extension: String,
    /// The caller's number.
    pub caller: String,
    /// The caller's display name (may be empty).
    pub caller_name: String,
    pub received_at: Timestamp,
    /// Length of the recording in milliseconds.
    pub duration_ms: i64,
    pub folder: Folder,
}

impl VoicemailMessage {
    fn from_row(r: MessageRow) -> Self {
        Self {
            id: r.id.parse().unwrap_or_default(),
            extension: r.extension,
            caller: r.caller,
            caller_name: r.caller_name,
            received_at: r.received_at,
            duration_ms: r.duration_ms,
            folder: Folder::parse(&r.folder),
        }
    }
}

/// How many messages a mailbox holds in each folder (what the message-waiting lamp
/// shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    pub new: i64,
    pub saved: i64,
}

/// A custom greeting (its metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Greeting {
    /// Length in milliseconds.
    pub duration_ms: i64,
    pub updated_at: Timestamp,
}

/// What can go wrong with voicemail, beyond the usual [`ServiceError`]s (invalid input,
/// unknown extension or message, database).
#[derive(Debug, thiserror::Error)]
pub enum VoicemailError {
    /// A recording shorter than `voicemail.min_message_seconds`: discarded, nothing
    /// stored.
    #[error(
        "the recording lasts {duration_ms} ms, shorter than voicemail.min_message_seconds ({min_seconds} s): discarded"
    )]
    TooShort { duration_ms: i64, min_seconds: u64 },
    /// The extension exists but has `voicemail_enabled: false`.
    #[error("extension {0} has voicemail disabled")]
    Disabled(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Reading or writing the audio files failed.
    #[error("voicemail storage failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for VoicemailError {
    fn from(e: sqlx::Error) -> Self {
        Self::Service(ServiceError::Store(e))
    }
}

type Result<T, E = VoicemailError> = std::result::Result<T, E>;

/// The data of `voicemail.received` (fields in alphabetical order, as the other
/// events write them).
#[derive(Serialize)]
struct Received<'a> {
    caller: &'a str,
    caller_name: &'a str,
    duration_ms: i64,
    extension: &'a str,
    message_id: uuid::Uuid,
    received_at: Timestamp,
}

/// The data of `voicemail.read` and `voicemail.deleted`.
#[derive(Serialize)]
struct Changed<'a> {
    actor: String,
    extension: &'a str,
    /// The folder the message was in (a deleted `new` message turns a lamp off).
    folder: Folder,
    message_id: uuid::Uuid,
}

/// Parses a message id from a path or a key press menu: a UUID, nothing else (so it can
/// safely name a file).
pub fn parse_message_id(text: &str) -> Result<uuid::Uuid, ServiceError> {
    uuid::Uuid::try_parse(text)
        .map_err(|_| ServiceError::invalid("id", format!("`{text}` is not a message id (a UUID)")))
}

/// The voicemail boxes of every extension.
#[derive(Clone)]
pub struct VoicemailService {
    db: Db,
    /// `data_dir/voicemail`.
    root: Arc<PathBuf>,
    min_message_seconds: u64,
    max_message_seconds: u64,
    /// Sends the new-message e-mails; `None` when SMTP is not configured or
    /// `voicemail.email_notifications` is off.
    mailer: Option<Mailer>,
    /// `timezone`, in which the e-mails show times.
    timezone: chrono_tz::Tz,
}

impl VoicemailService {
    /// The service without e-mail; [`Self::with_mailer`] adds it.
    pub fn new(db: Db, config: &Config) -> Self {
        Self {
            db,
            root: Arc::new(config.data_dir.join("voicemail")),
            min_message_seconds: config.voicemail.min_message_seconds,
            max_message_seconds: config.voicemail.max_message_seconds,
            mailer: None,
            timezone: config.timezone.parse().unwrap_or(chrono_tz::UTC),
        }
    }

    /// E-mails each new message through `mailer` (the configured SMTP server, if any)
    /// when `email_notifications` (`voicemail.email_notifications`) is on.
    pub fn with_mailer(mut self, mailer: Option<Mailer>, email_notifications: bool) -> Self {
        self.mailer = mailer.filter(|_| email_notifications);
        self
    }

    /// The directory holding every mailbox's files.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Checks that `extension` is a well-formed number (so it can name a directory) and
    /// exists; returns whether its voicemail is enabled.
    async fn mailbox(&self, extension: &str) -> Result<bool> {
        Ok(self.mailbox_owner(extension).await?.voicemail_enabled)
    }

    /// [`Self::mailbox`], giving the extension's row.
    async fn mailbox_owner(&self, extension: &str) -> Result<ExtensionRow> {
        check_number(extension)?;
        Ok(crate::store::extensions::get(self.db.pool(), extension)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("extension {extension}")))?)
    }

    /// Stores a message `samples` (8 kHz, 16-bit, mono) left for `extension` by
    /// `caller`: what the voicemail IVR calls when a recording ends. A recording
    /// shorter than `voicemail.min_message_seconds` is refused with
    /// [`VoicemailError::TooShort`] and nothing is stored; one longer than
    /// `voicemail.max_message_seconds` is cut there. The message is in the mailbox
    /// (file, row and `voicemail.received` event) once this returns `Ok`, and not at all
    /// otherwise. The owner's e-mail (when there is one to send) goes afterwards, in the
    /// background: its fate does not change the result.
    pub async fn deposit(
        &self,
        extension: &str,
        caller: &str,
        caller_name: &str,
        samples: &[i16],
    ) -> Result<VoicemailMessage> {
        let owner = self.mailbox_owner(extension).await?;
        if !owner.voicemail_enabled {
            return Err(VoicemailError::Disabled(extension.to_owned()));
        }
        let max = (self.max_message_seconds * SAMPLE_RATE) as usize;
        let samples = &samples[..samples.len().min(max)];
        let duration_ms = samples_to_ms(samples.len());
        if duration_ms < (self.min_message_seconds * 1000) as i64 {
            return Err(VoicemailError::TooShort {
                duration_ms,
                min_seconds: self.min_message_seconds,
            });
        }
        let id = uuid::Uuid::now_v7();
        let row = MessageRow {
            id: id.hyphenated().to_string(),
            extension: extension.to_owned(),
            caller: caller.to_owned(),
            caller_name: caller_name.to_owned(),
            received_at: Timestamp::now(),
            duration_ms,
            folder: Folder::New.as_str().to_owned(),
            file: files::message_file(extension, &id),
        };
        let path = files::resolve(&self.root, &row.file)?;
        let bytes = Arc::new(wav::write(samples));
        let dest = path.clone();
        let file_bytes = Arc::clone(&bytes);
        blocking(move || files::write_atomically(&dest, &file_bytes)).await?;

        if let Err(e) = self.insert_message(&row, id).await {
            // Not stored: the file must not outlive the failed transaction.
            if let Err(rm) = blocking(move || files::remove(&path)).await {
                tracing::warn!(error = %rm, file = %row.file, "voicemail file of a failed deposit not removed; the sweep will");
            }
            return Err(e);
        }
        tracing::info!(extension, caller, message = %id, duration_ms, "voicemail received");
        let message = VoicemailMessage::from_row(row);
        self.email_owner(&owner, &message, bytes);
        Ok(message)
    }

    /// Queues the e-mail of the new `message` (its file is `wav`) to `owner`, when
    /// e-mail is on and `owner` has an address. Never fails: problems are logged.
    fn email_owner(&self, owner: &ExtensionRow, message: &VoicemailMessage, wav: Arc<Vec<u8>>) {
        let Some(mailer) = &self.mailer else { return };
        let Some(address) = owner
            .email
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let what = format!("voicemail {}", message.id);
        let to = match address.parse::<lettre::Address>() {
            Ok(a) => lettre::message::Mailbox::new(Some(owner.name.clone()), a),
            Err(e) => {
                tracing::warn!(extension = %owner.number, message = %message.id, error = %e, "voicemail e-mail not sent: the extension's e-mail address is invalid");
                return;
            }
        };
        let wav = Arc::try_unwrap(wav).unwrap_or_else(|shared| shared.as_ref().clone());
        match email::build(mailer.from(), to, &owner.name, message, self.timezone, wav) {
            Ok(mail) => mailer.send_later(mail, what),
            Err(e) => {
                tracing::warn!(extension = %owner.number, message = %message.id, error = %e, "voicemail e-mail not built");
            }
        }
    }

    async fn insert_message(&self, row: &MessageRow, id: uuid::Uuid) -> Result<()> {
        let mut tx = self.db.begin().await?;
        if let Err(e) = store::insert(&mut tx, row).await {
            return Err(if is_missing_extension(&e) {
                ServiceError::not_found(format!("extension {}", row.extension)).into()
            } else {
                e.into()
            });
        }
        emit(
            &mut tx,
            EventType::VoicemailReceived,
            &Received {
                caller: &row.caller,
                caller_name: &row.caller_name,
                duration_ms: row.duration_ms,
                extension: &row.extension,
                message_id: id,
                received_at: row.received_at,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every message of `extension`, newest first.
    pub async fn list(&self, extension: &str) -> Result<Vec<VoicemailMessage>> {
        Ok(self.page(extension, None, 0).await?.0)
    }

    /// A page of `extension`'s messages, newest first, and how many there are in
    /// each folder.
    pub async fn page(
        &self,
        extension: &str,
        limit: Option<i64>,
        offset: i64,
    ) -> Result<(Vec<VoicemailMessage>, Counts)> {
        self.mailbox(extension).await?;
        let rows = store::list(self.db.pool(), extension, limit, offset).await?;
        let counts = self.count(extension).await?;
        Ok((
            rows.into_iter().map(VoicemailMessage::from_row).collect(),
            counts,
        ))
    }

    /// Message `id` of `extension`.
    pub async fn get(&self, extension: &str, id: uuid::Uuid) -> Result<VoicemailMessage> {
        self.mailbox(extension).await?;
        Ok(VoicemailMessage::from_row(self.row(extension, id).await?))
    }

    async fn row(&self, extension: &str, id: uuid::Uuid) -> Result<MessageRow> {
        store::get(self.db.pool(), extension, &id.hyphenated().to_string())
            .await?
            .ok_or_else(|| {
                ServiceError::not_found(format!("voicemail message {id} of extension {extension}"))
                    .into()
            })
    }

    /// The WAV file of message `id` of `extension`.
    pub async fn audio(&self, extension: &str, id: uuid::Uuid) -> Result<Vec<u8>> {
        self.mailbox(extension).await?;
        let row = self.row(extension, id).await?;
        let path = files::resolve(&self.root, &row.file)?;
        Ok(blocking(move || std::fs::read(path)).await?)
    }

    /// Moves message `id` from `new` to `saved` (listened to); a saved message stays
    /// as it is. Emits `voicemail.read` when it moved.
    pub async fn mark_read(
        &self,
        by: &Actor,
        extension: &str,
        id: uuid::Uuid,
    ) -> Result<VoicemailMessage> {
        self.mailbox(extension).await?;
        let key = id.hyphenated().to_string();
        let mut tx = self.db.begin().await?;
        let moved = store::move_folder(
            &mut tx,
            extension,
            &key,
            Folder::New.as_str(),
            Folder::Saved.as_str(),
        )
        .await?;
        if moved {
            emit(
                &mut tx,
                EventType::VoicemailRead,
                &Changed {
                    actor: by.label(),
                    extension,
                    folder: Folder::New,
                    message_id: id,
                },
            )
            .await?;
        }
        let row = store::get(&mut *tx, extension, &key).await?;
        tx.commit().await?;
        let row = row.ok_or_else(|| {
            ServiceError::not_found(format!("voicemail message {id} of extension {extension}"))
        })?;
        if moved {
            tracing::info!(extension, message = %id, actor = %by.label(), "voicemail marked read");
        }
        Ok(VoicemailMessage::from_row(row))
    }

    /// Deletes message `id` of `extension`: the row (with `voicemail.deleted`), then its
    /// file.
    pub async fn delete(&self, by: &Actor, extension: &str, id: uuid::Uuid) -> Result<()> {
        self.mailbox(extension).await?;
        let key = id.hyphenated().to_string();
        let mut tx = self.db.begin().await?;
        let row = store::get(&mut *tx, extension, &key)
            .await?
            .ok_or_else(|| {
                ServiceError::not_found(format!("voicemail message {id} of extension {extension}"))
            })?;
        if !store::delete(&mut tx, extension, &key).await? {
            // Deleted meanwhile by someone else (PostgreSQL; SQLite's writers queue).
            return Err(ServiceError::not_found(format!(
                "voicemail message {id} of extension {extension}"
            ))
            .into());
        }
        emit(
            &mut tx,
            EventType::VoicemailDeleted,
            &Changed {
                actor: by.label(),
                extension,
                folder: Folder::parse(&row.folder),
                message_id: id,
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(extension, message = %id, actor = %by.label(), "voicemail deleted");
        // The message is gone once the row is; a file left behind is the sweep's.
        let path = files::resolve(&self.root, &row.file)?;
        if let Err(e) = blocking(move || files::remove(&path)).await {
            tracing::warn!(error = %e, file = %row.file, "voicemail file not removed; the sweep will");
        }
        Ok(())
    }

    /// How many messages `extension` has, new and saved.
    pub async fn counts(&self, extension: &str) -> Result<Counts> {
        self.mailbox(extension).await?;
        self.count(extension).await
    }

    async fn count(&self, extension: &str) -> Result<Counts> {
        let mut counts = Counts::default();
        for (folder, n) in store::counts(self.db.pool(), extension).await? {
            match Folder::parse(&folder) {
                Folder::New => counts.new += n,
                Folder::Saved => counts.saved += n,
            }
        }
        Ok(counts)
    }

    /// Replaces `extension`'s greeting with `wav_bytes`, which must be a WAV file of
    /// 8 kHz, 16-bit, mono PCM of at most [`MAX_GREETING_SECONDS`]; otherwise
    /// [`ServiceError::Invalid`] says what is wrong (field `greeting`). The file is
    /// stored re-encoded (only the samples are kept).
    pub async fn set_greeting(&self, extension: &str, wav_bytes: &[u8]) -> Result<Greeting> {
        self.mailbox(extension).await?;
        let samples = check_greeting(wav_bytes)?;
        self.store_greeting(extension, &samples).await
    }

    /// Replaces `extension`'s greeting with `samples` (8 kHz, 16-bit, mono): what the
    /// phone menu's "record greeting" calls.
    pub async fn record_greeting(&self, extension: &str, samples: &[i16]) -> Result<Greeting> {
        self.mailbox(extension).await?;
        check_greeting_length(samples.len())?;
        self.store_greeting(extension, samples).await
    }

    async fn store_greeting(&self, extension: &str, samples: &[i16]) -> Result<Greeting> {
        let row = GreetingRow {
            extension: extension.to_owned(),
            file: files::greeting_file(extension),
            duration_ms: samples_to_ms(samples.len()),
            updated_at: Timestamp::now(),
        };
        let path = files::resolve(&self.root, &row.file)?;
        let bytes = wav::write(samples);
        blocking(move || files::write_atomically(&path, &bytes)).await?;
        // A failure here leaves the new file in place: without a row it is never played
        // (and swept); with the previous row it is the greeting the caller asked for.
        let mut tx = self.db.begin().await?;
        store::upsert_greeting(&mut tx, &row).await?;
        tx.commit().await?;
        tracing::info!(
            extension,
            duration_ms = row.duration_ms,
            "voicemail greeting set"
        );
        Ok(Greeting {
            duration_ms: row.duration_ms,
            updated_at: row.updated_at,
        })
    }

    /// The custom greeting's metadata, if `extension` has one.
    pub async fn greeting_info(&self, extension: &str) -> Result<Option<Greeting>> {
        self.mailbox(extension).await?;
        Ok(store::get_greeting(self.db.pool(), extension)
            .await?
            .map(|g| Greeting {
                duration_ms: g.duration_ms,
                updated_at: g.updated_at,
            }))
    }

    /// The custom greeting's WAV file, if `extension` has one.
    pub async fn greeting_wav(&self, extension: &str) -> Result<Option<Vec<u8>>> {
        self.mailbox(extension).await?;
        let Some(row) = store::get_greeting(self.db.pool(), extension).await? else {
            return Ok(None);
        };
        let path = files::resolve(&self.root, &row.file)?;
        match blocking(move || std::fs::read(path)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(extension, file = %row.file, "voicemail greeting file is missing; using the default");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The custom greeting's samples (8 kHz, 16-bit, mono), if `extension` has one;
    /// the IVR plays the default greeting otherwise.
    pub async fn greeting(&self, extension: &str) -> Result<Option<Vec<i16>>> {
        let Some(bytes) = self.greeting_wav(extension).await? else {
            return Ok(None);
        };
        wav::read(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stored greeting of {extension} is unreadable: {e}"),
            )
            .into()
        })
    }

    /// Removes `extension`'s custom greeting (callers hear the default again).
    pub async fn delete_greeting(&self, extension: &str) -> Result<()> {
        self.mailbox(extension).await?;
        let mut tx = self.db.begin().await?;
        let existed = store::delete_greeting(&mut tx, extension).await?;
        tx.commit().await?;
        if !existed {
            return Err(ServiceError::not_found(format!(
                "a custom greeting of extension {extension}"
            ))
            .into());
        }
        tracing::info!(extension, "voicemail greeting removed");
        let path = files::resolve(&self.root, &files::greeting_file(extension))?;
        if let Err(e) = blocking(move || files::remove(&path)).await {
            tracing::warn!(error = %e, extension, "greeting file not removed; the sweep will");
        }
        Ok(())
    }

    /// Removes files the database does not know, older than `grace`: left by a crash
    /// between writing a message and committing it, by a removal that failed, or by a
    /// deleted extension (whose rows went with it). Returns how many files went.
    pub async fn sweep(&self, grace: Duration) -> Result<usize> {
        let root = self.root.as_ref().clone();
        let dirs = blocking(move || match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect::<Vec<String>>(),
            Err(_) => Vec::new(),
        })
        .await;
        let mut removed = 0;
        for extension in dirs {
            // Only directories named like a mailbox are ours to clean.
            if check_number(&extension).is_err() {
                continue;
            }
            let pool = self.db.pool();
            let expected = files::Expected {
                message_ids: store::ids(pool, &extension)
                    .await?
                    .into_iter()
                    .collect::<HashSet<_>>(),
                greeting: store::get_greeting(pool, &extension).await?.is_some(),
                extension_exists: crate::store::extensions::get(pool, &extension)
                    .await?
                    .is_some(),
            };
            let dir = self.root.join(&extension);
            removed += blocking(move || files::sweep_dir(&dir, &expected, grace)).await?;
        }
        if removed > 0 {
            tracing::info!(files = removed, "orphaned voicemail files removed");
        }
        Ok(removed)
    }
}

pub(crate) fn samples_to_ms(samples: usize) -> i64 {
    (samples as u64 * 1000 / SAMPLE_RATE) as i64
}

/// The samples of an uploaded greeting, or what is wrong with it.
pub(crate) fn check_greeting(bytes: &[u8]) -> Result<Vec<i16>, ServiceError> {
    let samples = wav::read(bytes).map_err(|e| {
        ServiceError::invalid(
            "greeting",
            format!("{e}; upload a WAV file of 8 kHz, 16-bit, mono PCM"),
        )
    })?;
    check_greeting_length(samples.len())?;
    Ok(samples)
}

fn check_greeting_length(samples: usize) -> Result<(), ServiceError> {
    if samples == 0 {
        return Err(ServiceError::invalid("greeting", "the recording is empty"));
    }
    let max = (MAX_GREETING_SECONDS * SAMPLE_RATE) as usize;
    if samples > max {
        return Err(ServiceError::invalid(
            "greeting",
            format!(
                "the recording lasts {:.1} s; a greeting may last at most {MAX_GREETING_SECONDS} s",
                samples as f64 / SAMPLE_RATE as f64
            ),
        ));
    }
    Ok(())
}

/// Runs file work on the blocking pool, never on the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("audio file task panicked")
}

/// Whether `err` is the database refusing a row for an extension that is gone (deleted
/// between the check and the insert).
fn is_missing_extension(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
}
