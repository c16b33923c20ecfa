//! The event catalogue and `emit`, which appends an event to the outbox inside the
//! caller's transaction, so an event exists exactly when its change committed.
//!
//! Later features add their event types to [`EventType`]; `docs/events.md` documents
//! each one's `data` fields.

use serde::Serialize;

use crate::store::{self, Conn};
use crate::time::Timestamp;

/// Every event Switchboard emits (06-webhooks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ExtensionCreated,
    ExtensionUpdated,
    ExtensionDeleted,
    ExtensionRegistered,
    ExtensionUnregistered,
    CallStarted,
    CallAnswered,
    CallEnded,
    CallTransferred,
    VoicemailReceived,
    VoicemailRead,
    VoicemailDeleted,
    AutoAttendantUpdated,
    HotDeskLogin,
    HotDeskLogout,
    /// `POST /api/webhooks/{id}/test`: delivered to that subscription only.
    WebhookTest,
    SecurityIpBlocked,
    SecurityIpUnblocked,
    SecurityThreatDetected,
    MfaMethodAdded,
    MfaMethodRemoved,
    MfaDisabled,
    DeviceRegistered,
    DeviceOnline,
    DeviceOffline,
    DeviceDeleted,
    WebrtcSessionCreated,
    WebrtcSessionEnded,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        Self::ExtensionCreated,
        Self::ExtensionUpdated,
        Self::ExtensionDeleted,
        Self::ExtensionRegistered,
        Self::ExtensionUnregistered,
        Self::CallStarted,
        Self::CallAnswered,
        Self::CallEnded,
        Self::CallTransferred,
        Self::VoicemailReceived,
        Self::VoicemailRead,
        Self::VoicemailDeleted,
        Self::AutoAttendantUpdated,
        Self::HotDeskLogin,
        Self::HotDeskLogout,
        Self::WebhookTest,
        Self::SecurityIpBlocked,
        Self::SecurityIpUnblocked,
        Self::SecurityThreatDetected,
        Self::MfaMethodAdded,
        Self::MfaMethodRemoved,
        Self::MfaDisabled,
        Self::DeviceRegistered,
        Self::DeviceOnline,
        Self::DeviceOffline,
        Self::DeviceDeleted,
        Self::WebrtcSessionCreated,
        Self::WebrtcSessionEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExtensionCreated => "extension.created",
            Self::ExtensionUpdated => "extension.updated",
            Self::ExtensionDeleted => "extension.deleted",
            Self::ExtensionRegistered => "extension.registered",
            Self::ExtensionUnregistered => "extension.unregistered",
            Self::CallStarted => "call.started",
            Self::CallAnswered => "call.answered",
            Self::CallEnded => "call.ended",
            Self::CallTransferred => "call.transferred",
            Self::VoicemailReceived => "voicemail.received",
            Self::VoicemailRead => "voicemail.read",
            Self::VoicemailDeleted => "voicemail.deleted",
            Self::AutoAttendantUpdated => "auto_attendant.updated",
            Self::HotDeskLogin => "hot_desk.login",
            Self::HotDeskLogout => "hot_desk.logout",
            Self::WebhookTest => "webhook.test",
            Self::SecurityIpBlocked => "security.ip_blocked",
            Self::SecurityIpUnblocked => "security.ip_unblocked",
            Self::SecurityThreatDetected => "security.threat_detected",
            Self::MfaMethodAdded => "mfa.method_added",
            Self::MfaMethodRemoved => "mfa.method_removed",
            Self::MfaDisabled => "mfa.disabled",
            Self::DeviceRegistered => "device.registered",
            Self::DeviceOnline => "device.online",
            Self::DeviceOffline => "device.offline",
            Self::DeviceDeleted => "device.deleted",
            Self::WebrtcSessionCreated => "webrtc.session_created",
            Self::WebrtcSessionEnded => "webrtc.session_ended",
        }
    }
}

/// In-process notices that something committed a change, for caches of this process
/// to drop their copy at once. (Other processes and nodes learn it from the outbox.)
#[derive(Clone)]
pub struct Changes(tokio::sync::broadcast::Sender<Change>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Extension(String),
    /// A hot-desk session began or ended.
    HotDesk,
}

impl Changes {
    pub fn new() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }

    pub fn extension(&self, number: &str) {
        // No subscriber (no SIP side running) is fine.
        let _ = self.0.send(Change::Extension(number.to_owned()));
    }

    pub fn hot_desk(&self) {
        let _ = self.0.send(Change::HotDesk);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.0.subscribe()
    }
}

impl Default for Changes {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends `event_type` with `data` to the outbox on `conn` (a transaction) and
/// returns its id (UUIDv7, so ids sort by creation time and receivers can de-duplicate).
pub async fn emit(
    conn: &mut Conn,
    event_type: EventType,
    data: &impl Serialize,
) -> store::Result<uuid::Uuid> {
    let id = uuid::Uuid::now_v7();
    let data = serde_json::to_string(data).map_err(|e| sqlx::Error::Encode(e.into()))?;
    store::events::append(
        conn,
        &id.to_string(),
        event_type.as_str(),
        Timestamp::now(),
        &data,
    )
    .await?;
    metrics::counter!("switchboard_events_emitted_total", "event_type" => event_type.as_str())
        .increment(1);
    Ok(id)
}

/// Appends several events (type and JSON data) to the outbox on `conn` (a
/// transaction), in order, in as few statements as the database allows.
pub async fn emit_many(conn: &mut Conn, events: Vec<(EventType, String)>) -> store::Result<()> {
    let now = Timestamp::now();
    // One labelled counter lookup per type in the batch, not per event (a call storm's
    // batches hold thousands of events of three types).
    let mut counts: Vec<(EventType, u64)> = Vec::new();
    for (event_type, _) in &events {
        match counts.iter_mut().find(|(t, _)| t == event_type) {
            Some((_, n)) => *n += 1,
            None => counts.push((*event_type, 1)),
        }
    }
    let rows: Vec<store::events::NewEvent> = events
        .into_iter()
        .map(|(event_type, data)| {
            (
                uuid::Uuid::now_v7().to_string(),
                event_type.as_str(),
                now,
                data,
            )
        })
        .collect();
    store::events::append_many(conn, rows).await?;
    for (event_type, n) in counts {
        metrics::counter!("switchboard_events_emitted_total", "event_type" => event_type.as_str())
            .increment(n);
    }
    Ok(())
}
