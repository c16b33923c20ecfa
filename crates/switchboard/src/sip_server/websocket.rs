//! SIP over WebSocket (RFC 7118) at `/sip` on the HTTP port, for browser phones (JsSIP,
//! SIP.js) and the built-in WebPhone: one SIP message per WebSocket message, replies and
//! requests to the phone on its own connection, as for TCP.
//!
//! A browser cannot be reached once its socket is gone (its Contact is a made-up
//! `….invalid` host), so its registrations end with the connection, not at expiry.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket};
use bytes::Bytes;
use tokio::sync::watch;

use super::SipCore;
use super::location::{Binding, event_data};
use super::persist::PersistJob;
use super::transport::{Flow, Outbox};
use crate::config::SipTransport;
use crate::features::events::EventType;

/// A ping goes out this often; a browser that answers nothing (no message, no pong)
/// for `SILENCE` lost its network, and its registrations end.
const PING_EVERY: Duration = Duration::from_secs(30);
const SILENCE: Duration = Duration::from_secs(75);

/// Serves one upgraded connection until either side closes it or the server stops.
/// `flow` has no `conn` yet: it gets one here.
pub async fn serve(
    core: Arc<SipCore>,
    mut socket: WebSocket,
    mut flow: Flow,
    mut stop: watch::Receiver<bool>,
) {
    let Some((id, mut outbound)) = core.transports.open_connection(core.limits.max_connections)
    else {
        tracing::warn!(remote = %flow.remote, "WebSocket refused: sip.max_connections reached");
        let _ = socket.send(WsMessage::Close(None)).await;
        return;
    };
    flow.conn = Some(id);
    tracing::debug!(remote = %flow.remote, conn = id, "SIP WebSocket opened");
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let data = match incoming {
                    Some(Ok(WsMessage::Text(text))) => Bytes::from(text),
                    Some(Ok(WsMessage::Binary(data))) => data,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {
                        last_heard = tokio::time::Instant::now();
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                };
                last_heard = tokio::time::Instant::now();
                // RFC 5626 keep-alive sent inside the WebSocket (SIP.js does): a
                // double CRLF is answered with one.
                if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    if data.len() >= 4 && socket.send(WsMessage::Text("\r\n".into())).await.is_err() {
                        break;
                    }
                    continue;
                }
                metrics::counter!("switchboard_sip_messages_received_total", "transport" => flow.transport.as_str()).increment(1);
                let mut out = Outbox::default();
                super::ingress::handle(&core, data, flow.clone(), &mut out);
                core.calls.flush(&core);
                core.transports.send_all(&mut out, &core.metrics);
            }
            queued = outbound.recv() => {
                let Some(data) = queued else { break };
                if socket.send(frame(data)).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE {
                    tracing::debug!(remote = %flow.remote, "SIP WebSocket silent too long; closing");
                    break;
                }
                if socket.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            _ = stop.changed() => break,
        }
    }
    core.transports.close_connection(id);
    let _ = socket.send(WsMessage::Close(None)).await;
    forget(&core, |b| b.flow.conn == Some(id), "connection_closed").await;
    tracing::debug!(remote = %flow.remote, conn = id, "SIP WebSocket closed");
}

/// SIP is text; a message that is not UTF-8 (a binary body) goes as a binary frame.
fn frame(data: Bytes) -> WsMessage {
    // A `Bytes` clone is a reference count, not a copy.
    match Utf8Bytes::try_from(data.clone()) {
        Ok(text) => WsMessage::Text(text),
        Err(_) => WsMessage::Binary(data),
    }
}

/// Registrations over WebSocket restored from the database at start: their
/// connections died with the previous process, so they go at once.
pub async fn forget_orphans(core: &SipCore) {
    forget(
        core,
        |b| is_websocket(b.flow.transport) && b.flow.conn.is_none(),
        "connection_closed",
    )
    .await;
}

fn is_websocket(t: SipTransport) -> bool {
    matches!(t, SipTransport::Ws | SipTransport::Wss)
}

/// Removes the bindings `gone` picks, from memory and (with their
/// `extension.unregistered` events) from the database.
async fn forget(core: &SipCore, gone: impl Fn(&Binding) -> bool, reason: &str) {
    let taken = core.location.take_where(gone);
    if taken.is_empty() {
        return;
    }
    let mut job = PersistJob::default();
    for (ext, b) in &taken {
        tracing::info!(extension = %ext, contact = %b.contact_uri, reason, "registration ended");
        job.deletes.push((ext.clone(), b.key.clone()));
        job.events.push((
            EventType::ExtensionUnregistered,
            event_data(ext, b, Some(reason)),
        ));
    }
    metrics::gauge!("switchboard_sip_registrations").set(core.location.count() as f64);
    if core.persist.send(job).await.is_err() {
        tracing::warn!("registrations of a closed WebSocket not removed: the server is stopping");
    }
}
