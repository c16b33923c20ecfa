//! Calls: the dial plan, the calls in progress, call detail records and the call
//! events. The call engine (sip_server::calls) reports to [`run_recorder`], which
//! writes each call's events and its CDR; the API reads [`ActiveCalls`] and
//! [`CdrService`].

pub mod dialplan;
mod recorder;

use dashmap::DashMap;
use serde::Serialize;
use utoipa::ToSchema;

pub use self::recorder::run_recorder;
use crate::store::cdr::{self, CdrFilter, CdrRow};
use crate::store::{self, Db};
use crate::time::Timestamp;

/// How a call ended (the CDR's `disposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    Voicemail,
    Cancelled,
    Failed,
}

impl Disposition {
    pub const ALL: [Disposition; 6] = [
        Self::Answered,
        Self::Busy,
        Self::NoAnswer,
        Self::Voicemail,
        Self::Cancelled,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Voicemail => "voicemail",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

/// A call in progress (`GET /api/calls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActiveCall {
    #[schema(value_type = String)]
    pub id: uuid::Uuid,
    pub caller: String,
    pub caller_name: String,
    /// What was dialled.
    pub callee: String,
    /// The extension being rung or talking (forwarding may have moved the call).
    pub ringing: Option<String>,
    /// `ringing` or `answered`.
    pub state: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<Timestamp>,
    /// The relay's RTP ports for this call (RTCP on the next port each), when its media
    /// is anchored.
    pub media_ports: Option<MediaPorts>,
}

/// The relay's RTP port facing each phone of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct MediaPorts {
    pub caller: u16,
    pub callee: u16,
}

/// The calls in progress, kept by the call engine.
#[derive(Debug, Default)]
pub struct ActiveCalls(DashMap<uuid::Uuid, ActiveCall>);

impl ActiveCalls {
    pub fn insert(&self, id: uuid::Uuid, call: ActiveCall) {
        self.0.insert(id, call);
    }

    pub fn remove(&self, id: &uuid::Uuid) {
        self.0.remove(id);
    }

    /// Changes call `id` in place, when it is in progress: a call that starts ringing
    /// or is answered changes a field or two, and a fresh copy cost its four strings.
    pub fn update(&self, id: &uuid::Uuid, change: impl FnOnce(&mut ActiveCall)) {
        if let Some(mut call) = self.0.get_mut(id) {
            change(&mut call);
        }
    }

    pub fn get(&self, id: &uuid::Uuid) -> Option<ActiveCall> {
        self.0.get(id).map(|c| c.clone())
    }

    /// Every call, oldest first.
    pub fn list(&self) -> Vec<ActiveCall> {
        let mut calls: Vec<ActiveCall> = self.0.iter().map(|c| c.clone()).collect();
        calls.sort_by_key(|c| (c.started_at, c.id));
        calls
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One finished call (`GET /api/cdr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallRecord {
    #[schema(value_type = String)]
    pub id: uuid::Uuid,
    pub caller: String,
    pub caller_name: String,
    /// What was dialled.
    pub callee: String,
    /// The extension that answered.
    pub answered_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub ended_at: Timestamp,
    /// Seconds talked (answer to end).
    pub duration: i64,
    pub disposition: Disposition,
    /// Why it ended: `caller hung up`, `callee hung up`, or the final SIP response.
    pub hangup_cause: String,
    /// The audio codec both sides used, when media was anchored.
    pub codec: Option<String>,
}

impl CallRecord {
    fn to_row(&self) -> CdrRow {
        CdrRow {
            id: self.id.to_string(),
            caller: self.caller.clone(),
            caller_name: self.caller_name.clone(),
            callee: self.callee.clone(),
            answered_by: self.answered_by.clone(),
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: self.ended_at,
            duration: self.duration,
            disposition: self.disposition.as_str().to_owned(),
            hangup_cause: self.hangup_cause.clone(),
            codec: self.codec.clone(),
        }
    }

    fn from_row(r: CdrRow) -> Self {
        Self {
            id: r.id.parse().unwrap_or_default(),
            caller: r.caller,
            caller_name: r.caller_name,
            callee: r.callee,
            answered_by: r.answered_by,
            started_at: r.started_at,
            answered_at: r.answered_at,
            ended_at: r.ended_at,
            duration: r.duration,
            disposition: Disposition::parse(&r.disposition).unwrap_or(Disposition::Failed),
            hangup_cause: r.hangup_cause,
            codec: r.codec,
        }
    }
}

/// What the call engine reports, in order, for the recorder to persist.
#[derive(Debug, Clone)]
pub enum CallEvent {
    Started(ActiveCall),
    Answered(ActiveCall),
    /// A transfer put `to` in the place of `from` (extension numbers).
    Transferred {
        call: ActiveCall,
        from: String,
        to: String,
    },
    Ended(CallRecord),
}

/// Reads call detail records.
#[derive(Clone)]
pub struct CdrService {
    db: Db,
}

impl CdrService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// A page of the records matching `filter`, newest first, and how many match.
    pub async fn list(
        &self,
        filter: &CdrFilter,
        limit: i64,
        offset: i64,
    ) -> store::Result<(Vec<CallRecord>, i64)> {
        let rows = cdr::list(self.db.pool(), filter, limit, offset).await?;
        let total = cdr::count(self.db.pool(), filter).await?;
        Ok((rows.into_iter().map(CallRecord::from_row).collect(), total))
    }
}

/// Records as CSV (RFC 4180), one header line then one line per call.
pub fn to_csv(records: &[CallRecord]) -> String {
    let mut out = String::from(
        "id,caller,caller_name,callee,answered_by,started_at,answered_at,ended_at,duration,disposition,hangup_cause,codec\r\n",
    );
    for r in records {
        let fields = [
            r.id.to_string(),
            r.caller.clone(),
            r.caller_name.clone(),
            r.callee.clone(),
            r.answered_by.clone().unwrap_or_default(),
            r.started_at.to_rfc3339(),
            r.answered_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            r.ended_at.to_rfc3339(),
            r.duration.to_string(),
            r.disposition.as_str().to_owned(),
            r.hangup_cause.clone(),
            r.codec.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed
/// with `'` so a spreadsheet never runs a caller's display name as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("1001"), "1001");
        assert_eq!(csv_field("Doe, John"), "\"Doe, John\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
