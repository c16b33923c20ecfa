//! Bulk import: many extensions created or updated at once from CSV or JSON, with a
//! result per row. Only the credentials a row gives are hashed, in parallel, in
//! batches that commit together with their events.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::model::Extension;
use super::rules::{self, SipHa1};
use super::{ExtensionService, blocking, changed_fields, set_ha1};
use crate::crypto;
use crate::features::events::{EventType, emit};
use crate::features::{Actor, ServiceError};
use crate::role::Role;
use crate::store::extensions::{self as store, ExtensionRow};
use crate::time::Timestamp;

/// Rows per transaction: large enough to amortise commits, small enough to keep the
/// write lock short and progress visible.
const BATCH: usize = 500;

/// One row of an import. Everything but `number` is optional: for an existing
/// extension only what is given changes; a new one needs `name`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    pub number: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
    pub sip_secret: Option<String>,
    pub voicemail_pin: Option<String>,
    pub allow_external: Option<bool>,
    pub voicemail_enabled: Option<bool>,
    pub active: Option<bool>,
}

/// The CSV columns accepted (header row, any order).
pub const CSV_COLUMNS: &[&str] = &[
    "number",
    "name",
    "email",
    "role",
    "password",
    "sip_secret",
    "voicemail_pin",
    "allow_external",
    "voicemail_enabled",
    "active",
];

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkippedRow {
    /// 1-based data row (the CSV header is row 0).
    pub row: usize,
    pub number: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub skipped: usize,
    pub skipped_rows: Vec<SkippedRow>,
}

/// Rows parsed from an upload; a row that could not even be read carries its reason.
pub type ParsedRows = Vec<Result<ImportRow, (String, String)>>;

/// Reads CSV with a header row. An unknown column fails the whole file (naming it);
/// a bad cell fails only its row.
pub fn parse_csv(data: &[u8]) -> Result<ParsedRows, ServiceError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(data);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ServiceError::invalid("csv", format!("cannot read the header row: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    for h in &headers {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            return Err(ServiceError::invalid(
                "csv",
                format!("unknown column `{h}`; allowed: {}", CSV_COLUMNS.join(", ")),
            ));
        }
    }
    if !headers.iter().any(|h| h == "number") {
        return Err(ServiceError::invalid(
            "csv",
            "the header row needs a `number` column",
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ServiceError::invalid("csv", e.to_string()))?;
        let cells: HashMap<&str, &str> = headers
            .iter()
            .map(String::as_str)
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .collect();
        rows.push(row_from_cells(&cells));
    }
    Ok(rows)
}

fn row_from_cells(cells: &HashMap<&str, &str>) -> Result<ImportRow, (String, String)> {
    let number = cells
        .get("number")
        .map(|s| (*s).to_owned())
        .unwrap_or_default();
    let text = |k: &str| cells.get(k).map(|s| (*s).to_owned());
    let boolean = |k: &str| -> Result<Option<bool>, (String, String)> {
        match cells.get(k).map(|s| s.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "true" | "yes" | "1" | "y" => Ok(Some(true)),
                "false" | "no" | "0" | "n" => Ok(Some(false)),
                _ => Err((number.clone(), format!("{k}: `{v}` is not true/false"))),
            },
        }
    };
    let role = match cells.get("role") {
        None => None,
        Some(r) => match Role::parse(&r.to_ascii_lowercase()) {
            Some(role @ (Role::Admin | Role::User)) => Some(role),
            _ => return Err((number.clone(), format!("role: `{r}` is not admin or user"))),
        },
    };
    Ok(ImportRow {
        number: number.clone(),
        name: text("name"),
        email: text("email"),
        role,
        password: text("password"),
        sip_secret: text("sip_secret"),
        voicemail_pin: text("voicemail_pin"),
        allow_external: boolean("allow_external")?,
        voicemail_enabled: boolean("voicemail_enabled")?,
        active: boolean("active")?,
    })
}

/// A validated row with its credentials hashed.
struct Prepared {
    index: usize,
    row: ImportRow,
    exists: bool,
    password_hash: Option<String>,
    pin_hash: Option<String>,
    ha1: Option<SipHa1>,
}

impl ExtensionService {
    /// Imports `rows`, calling `progress(done, total)` as batches commit.
    pub async fn import(
        &self,
        by: &Actor,
        rows: ParsedRows,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<ImportReport, ServiceError> {
        let total = rows.len();
        let existing: HashSet<String> = store::all_numbers(self.db().pool())
            .await?
            .into_iter()
            .collect();
        let mut report = ImportReport::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut valid = Vec::new();
        for (i, parsed) in rows.into_iter().enumerate() {
            let index = i + 1;
            let checked = parsed.and_then(|row| {
                if let Some(first) = seen.get(&row.number) {
                    return Err((row.number.clone(), format!("duplicate of row {first}")));
                }
                self.check_row(&row, existing.contains(&row.number))
                    .map_err(|e| (row.number.clone(), e.to_string()))?;
                seen.insert(row.number.clone(), index);
                Ok(row)
            });
            match checked {
                Ok(row) => valid.push((index, row)),
                Err((number, reason)) => skip(&mut report, index, number, reason),
            }
        }
        let mut done = report.skipped;
        progress(done, total);

        for batch in valid.chunks(BATCH) {
            let realm = self.realm().to_owned();
            let batch: Vec<(usize, ImportRow)> = batch.to_vec();
            let existing_flags: Vec<bool> = batch
                .iter()
                .map(|(_, r)| existing.contains(&r.number))
                .collect();
            let prepared = blocking(move || {
                batch
                    .into_par_iter()
                    .zip(existing_flags)
                    .map(|((index, row), exists)| Prepared {
                        password_hash: row.password.as_deref().map(crypto::hash_password),
                        pin_hash: row.voicemail_pin.as_deref().map(crypto::hash_pin),
                        ha1: row
                            .sip_secret
                            .as_deref()
                            .map(|s| rules::sip_ha1(&row.number, &realm, s)),
                        index,
                        row,
                        exists,
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let n = prepared.len();
            self.write_batch(by, prepared, &mut report).await?;
            done += n;
            progress(done, total);
        }
        report.skipped_rows.sort_by_key(|s| s.row);
        tracing::info!(
            created = report.created,
            updated = report.updated,
            skipped = report.skipped,
            actor = %by.label(),
            "extension import finished"
        );
        Ok(report)
    }

    fn check_row(&self, row: &ImportRow, exists: bool) -> Result<(), ServiceError> {
        rules::check_number(&row.number)?;
        match &row.name {
            Some(n) => {
                rules::check_name(n)?;
            }
            None if !exists => {
                return Err(ServiceError::invalid(
                    "name",
                    "a new extension needs a name",
                ));
            }
            None => {}
        }
        rules::check_email(row.email.as_deref())?;
        if let Some(p) = &row.password {
            if row.number == rules::AUTO_ATTENDANT {
                return Err(ServiceError::invalid(
                    "password",
                    "the auto attendant (extension 0) cannot log in",
                ));
            }
            rules::check_password(p, &row.number)?;
        }
        if let Some(s) = &row.sip_secret {
            rules::check_sip_secret(s, &row.number)?;
        }
        if let Some(p) = &row.voicemail_pin {
            rules::check_pin("voicemail_pin", p, &row.number, self.min_pin_length())?;
        }
        if row.number == rules::AUTO_ATTENDANT && row.role == Some(Role::Admin) {
            return Err(ServiceError::invalid(
                "role",
                "the auto attendant (extension 0) cannot be an admin",
            ));
        }
        Ok(())
    }

    async fn write_batch(
        &self,
        by: &Actor,
        batch: Vec<Prepared>,
        report: &mut ImportReport,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db().begin().await?;
        let now = Timestamp::now();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut written = Vec::with_capacity(batch.len());
        for p in batch {
            let row = if p.exists {
                store::get_for_update(&mut tx, self.db().backend(), &p.row.number).await?
            } else {
                None
            };
            let (mut target, created) = match row {
                Some(current) => (current, false),
                None => (super::blank_row(&p.row.number, now), true),
            };
            let before = target.clone();
            apply(&mut target, &p);
            if !created
                && before.role == Role::Admin
                && before.active
                && !(target.role == Role::Admin && target.active)
                && store::count_active_admins(&mut tx, Some(&target.number)).await? == 0
            {
                outcomes.push(Err((
                    p.index,
                    target.number.clone(),
                    "it is the last active admin".to_owned(),
                )));
                continue;
            }
            target.updated_at = now;
            let extension = Extension::from(&target);
            if created {
                store::insert(&mut tx, &target).await?;
                emit(
                    &mut tx,
                    EventType::ExtensionCreated,
                    &json!({"extension": extension, "actor": by.label()}),
                )
                .await?;
            } else {
                let mut changes = changed_fields(&before, &target);
                for (given, name) in [
                    (p.password_hash.is_some(), "password"),
                    (p.ha1.is_some(), "sip_secret"),
                    (p.pin_hash.is_some(), "voicemail_pin"),
                ] {
                    if given {
                        changes.push(name);
                    }
                }
                // A row that changes nothing is still "updated" in the report (it was
                // applied), but writes nothing and tells no one.
                if !changes.is_empty() {
                    store::update(&mut tx, &target).await?;
                    emit(
                        &mut tx,
                        EventType::ExtensionUpdated,
                        &json!({"extension": extension, "changes": changes, "actor": by.label()}),
                    )
                    .await?;
                }
            }
            written.push(target.number.clone());
            outcomes.push(Ok(created));
        }
        tx.commit().await?;
        for number in &written {
            self.changes().extension(number);
        }
        for outcome in outcomes {
            match outcome {
                Ok(true) => report.created += 1,
                Ok(false) => report.updated += 1,
                Err((index, number, reason)) => skip(report, index, number, reason),
            }
        }
        Ok(())
    }
}

fn skip(report: &mut ImportReport, row: usize, number: String, reason: String) {
    report.skipped += 1;
    report.skipped_rows.push(SkippedRow {
        row,
        number,
        reason,
    });
}

fn apply(target: &mut ExtensionRow, p: &Prepared) {
    let r = &p.row;
    if let Some(name) = &r.name {
        target.name = name.trim().to_owned();
    }
    if let Some(email) = &r.email {
        target.email = Some(email.trim().to_owned()).filter(|e| !e.is_empty());
    }
    if let Some(role) = r.role {
        target.role = role;
    }
    if let Some(v) = r.allow_external {
        target.allow_external = v;
    }
    if let Some(v) = r.voicemail_enabled {
        target.voicemail_enabled = v;
    }
    if let Some(v) = r.active {
        target.active = v;
    }
    if let Some(hash) = &p.password_hash {
        target.password_hash = Some(hash.clone());
        // An imported password is set by an administrator: the user chooses their own.
        target.must_change_password = true;
    }
    if let Some(hash) = &p.pin_hash {
        target.voicemail_pin_hash = Some(hash.clone());
    }
    if let Some(ha1) = &p.ha1 {
        set_ha1(
            target,
            SipHa1 {
                realm: ha1.realm.clone(),
                md5: ha1.md5.clone(),
                sha256: ha1.sha256.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_and_bad_cells() {
        let data = b"number,name,email,sip_secret,voicemail_pin,allow_external\n\
            2001,Ann,ann@example.com,secret-2001-x,4829,yes\n\
            2002,Bob,,,,maybe\n";
        let rows = parse_csv(data).unwrap();
        assert_eq!(rows.len(), 2);
        let ann = rows[0].as_ref().unwrap();
        assert_eq!(ann.name.as_deref(), Some("Ann"));
        assert_eq!(ann.allow_external, Some(true));
        assert_eq!(ann.password, None);
        let (number, reason) = rows[1].as_ref().unwrap_err();
        assert_eq!(number, "2002");
        assert!(reason.contains("allow_external"));
    }

    #[test]
    fn unknown_columns_are_refused() {
        let err = parse_csv(b"number,nmae\n1,x\n").unwrap_err().to_string();
        assert!(err.contains("nmae"), "{err}");
        assert!(parse_csv(b"name\nx\n").is_err());
    }
}
