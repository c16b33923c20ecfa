//! SIP transports: UDP sockets, TCP and TLS connections (and WebSocket ones, served by
//! `websocket`). Every message arrives with
//! the [`Flow`] it came on, and replies and later requests to a phone go back over it
//! (RFC 3581 for UDP, the phone's own connection for TCP/TLS, RFC 5626 style).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use switchboard_sip::Message;
use switchboard_sip::{ErrorKind, Framed, parse_stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::{SipCore, SipMetrics};
use crate::config::SipTransport;

/// How a message reached us, and so how to answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: SipTransport,
    /// The listener it arrived on.
    pub local: SocketAddr,
    /// The peer's address as seen by the socket (NAT included).
    pub remote: SocketAddr,
    /// The connection, for TCP and TLS.
    pub conn: Option<u64>,
}

impl Flow {
    pub fn is_reliable(&self) -> bool {
        self.transport != SipTransport::Udp
    }
}

/// Outbound side of every transport.
#[derive(Default)]
pub struct Transports {
    udp: DashMap<SocketAddr, Arc<UdpSocket>>,
    connections: DashMap<u64, mpsc::Sender<Bytes>>,
    next_conn: AtomicU64,
    open: AtomicUsize,
}

/// Messages to send once the message (or batch of datagrams) at hand is handled.
#[derive(Debug, Default)]
pub struct Outbox {
    queued: Vec<(Flow, Bytes)>,
    /// The datagrams of one UDP socket as `send_all` hands them to `sendmmsg`, kept
    /// so that a batch allocates nothing.
    batch: Vec<(SocketAddr, Bytes)>,
}

impl Outbox {
    pub fn push(&mut self, flow: &Flow, msg: &Message) {
        self.queued.push((flow.clone(), msg.to_bytes()));
    }

    pub fn push_bytes(&mut self, flow: Flow, data: Bytes) {
        self.queued.push((flow, data));
    }

    /// Moves everything in `other` to the end of this one.
    pub fn append(&mut self, other: &mut Outbox) {
        self.queued.append(&mut other.queued);
    }
}

/// Outbound messages queued per connection before the connection counts as stuck.
const CONN_QUEUE: usize = 256;

impl Transports {
    pub fn add_udp(&self, socket: Arc<UdpSocket>) -> std::io::Result<SocketAddr> {
        let local = socket.local_addr()?;
        self.udp.insert(local, socket);
        Ok(local)
    }

    /// Queues `data` on connection `id`; false when it is gone or stuck.
    fn send_to_connection(&self, id: u64, data: Bytes) -> bool {
        self.connections
            .get(&id)
            .is_some_and(|tx| tx.try_send(data).is_ok())
    }

    /// Sends everything in `out` (and empties it): UDP in batches per socket, stream
    /// messages to their connections.
    pub fn send_all(&self, out: &mut Outbox, metrics: &SipMetrics) {
        // Datagrams are moved, not cloned, into the batch: a `Bytes` fresh from a
        // `Vec` allocates when first cloned.
        let mut other_sockets: Vec<(Flow, Bytes)> = Vec::new();
        while !out.queued.is_empty() {
            let mut local = None;
            out.batch.clear();
            for (flow, data) in out.queued.drain(..) {
                if let Some(id) = flow.conn {
                    if self.send_to_connection(id, data) {
                        metrics::counter!("switchboard_sip_messages_sent_total", "transport" => flow.transport.as_str()).increment(1);
                    }
                    continue;
                }
                match local {
                    None => {
                        local = Some(flow.local);
                        out.batch.push((flow.remote, data));
                    }
                    Some(l) if l == flow.local => out.batch.push((flow.remote, data)),
                    // Another listener's (rare): its own batch, next turn.
                    Some(_) => other_sockets.push((flow, data)),
                }
            }
            if let Some(local) = local {
                self.send_batch(local, &out.batch, metrics);
            }
            out.queued.append(&mut other_sockets);
        }
        out.batch.clear();
    }

    /// Sends `items` from listener `local`'s socket, one `sendmmsg` per batch.
    fn send_batch(&self, local: SocketAddr, items: &[(SocketAddr, Bytes)], metrics: &SipMetrics) {
        let Some(socket) = self.udp_socket(local) else {
            return;
        };
        let sent = match super::udp::send_batch(&socket, items) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "UDP send failed");
                0
            }
        };
        metrics.udp_sent.increment(sent as u64);
        if sent < items.len() {
            // The socket buffer is full: the rest waits for room, in order, on a
            // thread that may block (up to the socket's write timeout per send).
            let rest = items[sent..].to_vec();
            let udp_sent = metrics.udp_sent.clone();
            tokio::task::spawn_blocking(move || {
                for (to, data) in rest {
                    if socket.send_to(&data, to).is_ok() {
                        udp_sent.increment(1);
                    }
                }
            });
        }
    }

    /// The socket of listener `local`; for a flow restored after a restart (no known
    /// listener) any UDP socket.
    fn udp_socket(&self, local: SocketAddr) -> Option<Arc<UdpSocket>> {
        self.udp
            .get(&local)
            .map(|s| s.clone())
            .or_else(|| self.udp.iter().next().map(|e| e.value().clone()))
    }

    /// Live TCP/TLS/WebSocket connections.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Registers a new connection: its id and the queue of what to write on it, or
    /// `None` when `max` connections are open already.
    pub fn open_connection(&self, max: usize) -> Option<(u64, mpsc::Receiver<Bytes>)> {
        if self.open.load(Ordering::Relaxed) >= max {
            return None;
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        self.connections.insert(id, tx);
        self.open.fetch_add(1, Ordering::Relaxed);
        Some((id, rx))
    }

    /// Forgets connection `id` once it is closed.
    pub fn close_connection(&self, id: u64) {
        if self.connections.remove(&id).is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Accepts TCP (or, with `tls`, TLS) connections until `stop`.
pub async fn run_stream_listener(
    core: Arc<SipCore>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let transport = if tls.is_some() {
        SipTransport::Tls
    } else {
        SipTransport::Tcp
    };
    let mut stop_accept = stop.clone();
    loop {
        let (stream, remote) = tokio::select! {
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop_accept.changed() => return,
        };
        // A blocked address gets no connection at all (threat detection).
        if core.app.threats.is_blocked(remote.ip()) {
            drop(stream);
            continue;
        }
        let Some((id, rx)) = core.transports.open_connection(core.limits.max_connections) else {
            tracing::warn!(%remote, "connection refused: sip.max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let flow = Flow {
            transport,
            local,
            remote,
            conn: Some(id),
        };
        let core = core.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(&core, tls_stream, flow.clone(), rx, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(&core, stream, flow.clone(), rx, stop).await,
            }
            core.transports.close_connection(id);
        });
    }
}

/// Reads messages framed by Content-Length and writes queued outbound ones, until the
/// peer closes, the connection idles out, or `stop`.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    core: &Arc<SipCore>,
    stream: S,
    flow: Flow,
    mut outbound: mpsc::Receiver<Bytes>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let idle = core.limits.idle_timeout;
    let mut pending = Bytes::new();
    let mut chunk = BytesMut::with_capacity(8192);
    loop {
        tokio::select! {
            read = tokio::time::timeout(idle, reader.read_buf(&mut chunk)) => {
                let n = match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => n,
                    Err(_) => {
                        tracing::debug!(remote = %flow.remote, "connection idle too long; closing");
                        return;
                    }
                };
                let _ = n;
                pending = if pending.is_empty() {
                    chunk.split().freeze()
                } else {
                    let mut joined = BytesMut::with_capacity(pending.len() + chunk.len());
                    joined.extend_from_slice(&pending);
                    joined.extend_from_slice(&chunk.split());
                    joined.freeze()
                };
                loop {
                    match parse_stream(&pending) {
                        Ok(Framed::Message(msg, used)) => {
                            pending = pending.slice(used..);
                            let mut out = Outbox::default();
                            super::ingress::handle_parsed(core, *msg, flow.clone(), &mut out);
                            core.calls.flush(core);
                            core.transports.send_all(&mut out, &core.metrics);
                        }
                        Ok(Framed::KeepAlive(used)) => {
                            // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF.
                            if pending[..used].windows(4).any(|w| w == b"\r\n\r\n") {
                                let _ = writer.write_all(b"\r\n").await;
                            }
                            pending = pending.slice(used..);
                        }
                        Ok(Framed::Incomplete) => break,
                        Err(e) => {
                            // A stream that cannot be framed cannot be resynchronised.
                            let code = if e.kind == ErrorKind::TooLarge { 513 } else { 400 };
                            if let Some(reply) = super::ingress::error_reply(&pending, code, &e.message) {
                                let _ = writer.write_all(&reply).await;
                            }
                            tracing::debug!(remote = %flow.remote, error = %e, "closing a stream that cannot be framed");
                            return;
                        }
                    }
                }
            }
            out = outbound.recv() => match out {
                Some(data) => {
                    if writer.write_all(&data).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            _ = stop.changed() => return,
        }
    }
}

/// Our address as the peer of `flow` reaches it: the listener's, or for a wildcard
/// listener the one the kernel routes from towards the peer (cached per peer).
pub fn local_for(cache: &mut HashMap<IpAddr, IpAddr>, flow: &Flow) -> SocketAddr {
    if !flow.local.ip().is_unspecified() {
        return flow.local;
    }
    let peer = flow.remote.ip();
    if cache.len() >= 10_000 && !cache.contains_key(&peer) {
        cache.clear(); // bounded: a scan from many addresses cannot grow it
    }
    let ip = *cache.entry(peer).or_insert_with(|| route_source(peer));
    SocketAddr::new(ip, flow.local.port())
}

/// The source address the kernel would use towards `peer` (a connected UDP socket
/// sends nothing; it only asks the routing table).
fn route_source(peer: IpAddr) -> IpAddr {
    let any: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect((peer, 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(peer)
}
