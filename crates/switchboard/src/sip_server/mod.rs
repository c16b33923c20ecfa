//! The SIP side of the PBX: transports, the ingress checks, the registrar and its
//! location service. Protocol rules live in `switchboard-sip`; this module adds the
//! sockets, the database and the extensions.

pub mod auth;
pub mod calls;
pub mod credentials;
pub mod drop_filter;
pub mod hot_desk;
pub mod ingress;
pub mod location;
pub mod mwi;
pub mod persist;
pub mod registrar;
pub mod transport;
pub mod udp;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_sip::Message;
use switchboard_sip::digest::{Algorithm, NonceCounts, NonceMint};
use switchboard_sip::header::HeaderName;
use switchboard_sip::text::push_hex;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use self::credentials::CredentialCache;
use self::location::Location;
use self::persist::PersistJob;
use self::transport::{Flow, Transports};
use crate::app::App;
use crate::config::{DigestAlgorithm, SipListen, SipTransport};
use crate::features::calls::Disposition;

/// Connection limits (spec 01: "limits on message size, connections and idle time").
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// Shared state of the SIP side.
pub struct SipCore {
    pub app: Arc<App>,
    pub realm: String,
    pub min_expires: u32,
    pub max_expires: u32,
    pub nonce_lifetime: u64,
    /// Digest algorithms offered, in order; only these are accepted.
    pub digest_algorithms: Vec<Algorithm>,
    /// The challenges of a 401 or 407, per algorithm and staleness.
    pub challenges: Vec<auth::ChallengeTemplate>,
    pub nonces: NonceMint,
    /// Nonce counts, sharded by nonce so registrations do not queue on one lock.
    nonce_counts: Vec<std::sync::Mutex<NonceCounts>>,
    pub credentials: CredentialCache,
    pub location: Location,
    /// What was last written to the registered-phone inventory, per device.
    pub inventory: registrar::InventoryMemo,
    pub transports: Transports,
    pub persist: mpsc::Sender<PersistJob>,
    pub limits: Limits,
    /// This node's name, recorded with the bindings it holds.
    pub node: String,
    /// Seeded per process: deterministic To tags of stateless responses, and request
    /// fingerprints.
    pub hasher: foldhash::fast::RandomState,
    pub metrics: SipMetrics,
    /// The call engine's inbox and the calls in progress.
    pub calls: calls::CallsHandle,
    /// The media relay every call's RTP goes through.
    pub relay: switchboard_relay::Relay,
    /// What the media applications say.
    pub prompts: crate::apps::prompts::Prompts,
    /// Message-waiting subscriptions (`message-summary`).
    pub mwi: mwi::Mwi,
    /// Who is hot-desked where.
    pub hot_desks: hot_desk::HotDesks,
    date: DateHeader,
}

/// Counters of the hot path, registered once (a `metrics::counter!` with labels
/// looks its key up on every call).
pub struct SipMetrics {
    pub udp_received: metrics::Counter,
    pub udp_sent: metrics::Counter,
    pub registrations_ok: metrics::Counter,
    /// Messages dropped unread: a blocked or flooding source (threat detection).
    pub blocked_dropped: metrics::Counter,
    /// `switchboard_calls_total` per disposition, in `Disposition::ALL` order.
    pub calls_ended: [metrics::Counter; Disposition::ALL.len()],
}

impl SipMetrics {
    fn new() -> Self {
        Self {
            udp_received: metrics::counter!("switchboard_sip_messages_received_total", "transport" => "udp"),
            blocked_dropped: metrics::counter!("switchboard_sip_blocked_dropped_total"),
            udp_sent: metrics::counter!("switchboard_sip_messages_sent_total", "transport" => "udp"),
            registrations_ok: metrics::counter!("switchboard_sip_registrations_total", "result" => "ok"),
            calls_ended: Disposition::ALL
                .map(|d| metrics::counter!("switchboard_calls_total", "disposition" => d.as_str())),
        }
    }

    /// Counts a call that ended so.
    pub fn call_ended(&self, disposition: Disposition) {
        if let Some(i) = Disposition::ALL.iter().position(|d| *d == disposition) {
            self.calls_ended[i].increment(1);
        }
    }
}

/// The `Date` header value (RFC 3261 §20.17), formatted once per second.
#[derive(Default)]
struct DateHeader(std::sync::Mutex<(i64, switchboard_sip::ByteString)>);

impl DateHeader {
    fn get(&self) -> switchboard_sip::ByteString {
        let now = chrono::Utc::now();
        let second = now.timestamp();
        let mut cached = self.0.lock().expect("date cache");
        if cached.0 != second || cached.1.is_empty() {
            *cached = (
                second,
                now.format("%a, %d %b %Y %H:%M:%S GMT").to_string().into(),
            );
        }
        cached.1.clone()
    }
}

const NONCE_SHARDS: usize = 16;

impl SipCore {
    /// A response to `req` with a To tag (deterministic for the request, so a
    /// retransmission answered statelessly gets the same tag).
    pub fn response(&self, req: &Message, code: u16, reason: Option<&str>) -> Message {
        self.response_tagged(req, code, reason, self.stateless_tag(req))
    }

    /// [`Self::response`] with the To tag `tag` (when the request has none).
    pub fn response_tagged(
        &self,
        req: &Message,
        code: u16,
        reason: Option<&str>,
        tag: u64,
    ) -> Message {
        let mut resp = Message::response_to(req, code, reason);
        if code > 100
            && let Some(to) = resp.header(&HeaderName::To)
        {
            // Most To headers of out-of-dialog requests carry no parameter that could
            // be a tag: then the tag is appended without parsing the header.
            let maybe_tag = to
                .as_bytes()
                .windows(3)
                .any(|w| w.eq_ignore_ascii_case(b"tag"));
            let tagged = if !maybe_tag {
                let mut value = String::with_capacity(to.len() + 21);
                value.push_str(to);
                value.push_str(";tag=");
                push_hex(&mut value, tag);
                Some(value)
            } else {
                switchboard_sip::header::NameAddr::parse(to)
                    .ok()
                    .filter(|addr| addr.tag().is_none())
                    .map(|mut addr| {
                        let mut hex = String::with_capacity(16);
                        push_hex(&mut hex, tag);
                        addr.params.set("tag", Some(&hex));
                        addr.to_string()
                    })
            };
            if let Some(value) = tagged {
                resp.set(HeaderName::To, value);
            }
        }
        resp.push(
            HeaderName::Server,
            switchboard_sip::ByteString::from_static(concat!(
                "Switchboard/",
                env!("CARGO_PKG_VERSION")
            )),
        );
        resp.push(
            HeaderName::ContentLength,
            switchboard_sip::ByteString::from_static("0"),
        );
        resp
    }

    /// The `Date` header value for now.
    pub fn date(&self) -> switchboard_sip::ByteString {
        self.date.get()
    }

    /// The To tag of a stateless response: the same for every retransmission.
    fn stateless_tag(&self, req: &Message) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((
            req.header(&HeaderName::CallId),
            req.header(&HeaderName::From),
            req.cseq().map(|c| c.seq).unwrap_or(0),
        ))
    }

    /// The To tag of a challenge sent without a transaction (RFC 3261 §8.2.7): the
    /// same for every retransmission of the request, and for its ACK (which has the
    /// request's Call-ID, From and CSeq number) recognisably ours, so that the ACK
    /// can be dropped on arrival. Differs from [`Self::stateless_tag`], which the
    /// engine's stateful answers carry and whose ACKs their transactions need.
    pub fn challenge_tag(&self, req: &Message) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((
            "stateless challenge",
            req.header(&HeaderName::CallId),
            req.header(&HeaderName::From),
            req.cseq().map(|c| c.seq).unwrap_or(0),
        ))
    }

    /// Whether `ack` acknowledges a challenge sent without a transaction: its To tag
    /// is that challenge's [`Self::challenge_tag`].
    pub fn acks_stateless_challenge(&self, ack: &Message) -> bool {
        let Ok(to) = ack.to_addr() else {
            return false;
        };
        let Some(tag) = to.tag() else {
            return false;
        };
        let mut hex = String::with_capacity(16);
        push_hex(&mut hex, self.challenge_tag(ack));
        tag == hex
    }

    /// Sends `msg` over `flow` now (outside a batch).
    pub fn reply(&self, flow: &Flow, msg: &Message) {
        let mut out = transport::Outbox::default();
        out.push(flow, msg);
        self.transports.send_all(&mut out, &self.metrics);
    }

    /// Records `nc` for `nonce` and refuses a replay; `request_tag` tells a
    /// retransmission of the same request from a replay.
    pub fn accept_nonce_count(
        &self,
        nonce: &str,
        nc: u32,
        request_tag: u64,
        now_secs: u64,
    ) -> bool {
        use std::hash::BuildHasher;
        let shard = (self.hasher.hash_one(nonce) as usize) % NONCE_SHARDS;
        let expires = NonceMint::issued_at(nonce).unwrap_or(now_secs) + self.nonce_lifetime;
        self.nonce_counts[shard]
            .lock()
            .expect("nonce shard")
            .accept(nonce, nc, request_tag, now_secs, expires)
    }
}

/// The running SIP side.
pub struct SipServer {
    pub core: Arc<SipCore>,
    /// Where each `sip.listen` entry is bound (ports resolved).
    pub listeners: Vec<SipListen>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SipServer {
    /// Binds every listener of `sip.listen`, loads credentials and bindings, and starts
    /// the transports and workers.
    pub async fn start(app: Arc<App>) -> anyhow::Result<Self> {
        let config = app.config.clone();
        let sip = &config.sip;
        let tls = if sip.listen.iter().any(|l| l.transport == SipTransport::Tls) {
            Some(tls_acceptor(sip).await?)
        } else {
            None
        };
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut listeners = Vec::new();
        for l in &sip.listen {
            match l.transport {
                SipTransport::Udp => {
                    let socket = udp::bind(l.addr)
                        .with_context(|| format!("cannot listen on {l} (sip.listen)"))?;
                    let bound = socket.local_addr()?;
                    listeners.push(SipListen {
                        transport: l.transport,
                        addr: bound,
                    });
                    udp.push(Arc::new(socket));
                }
                SipTransport::Tcp | SipTransport::Tls => {
                    let listener = TcpListener::bind(l.addr)
                        .await
                        .with_context(|| format!("cannot listen on {l} (sip.listen)"))?;
                    let bound = listener.local_addr()?;
                    listeners.push(SipListen {
                        transport: l.transport,
                        addr: bound,
                    });
                    let acceptor = (l.transport == SipTransport::Tls)
                        .then(|| tls.clone())
                        .flatten();
                    tcp.push((listener, acceptor));
                }
                // Served on the HTTP port (`websocket`); `SipListen::parse` never
                // yields them.
                SipTransport::Ws | SipTransport::Wss => {}
            }
        }

        let credentials = CredentialCache::load(app.db.clone())
            .await
            .context("cannot load SIP credentials")?;
        let location = Location::load(&app.db)
            .await
            .context("cannot load registrations")?;
        let hot_desks = hot_desk::HotDesks::load(&app.db)
            .await
            .context("cannot load hot-desk sessions")?;
        let (persist_tx, persist_rx) = mpsc::channel(persist::QUEUE);
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key);
        let digest_algorithms: Vec<Algorithm> = sip
            .digest_algorithms
            .iter()
            .map(|a| match a {
                DigestAlgorithm::Md5 => Algorithm::Md5,
                DigestAlgorithm::Sha256 => Algorithm::Sha256,
            })
            // FIPS 140 does not approve MD5.
            .filter(|a| !(config.security.fips_mode && *a == Algorithm::Md5))
            .collect();
        let relay = switchboard_relay::Relay::start(switchboard_relay::RelayConfig {
            bind_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            port_min: config.rtp.port_min,
            port_max: config.rtp.port_max,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
        .context("cannot start the media relay (rtp.port_min, rtp.port_max)")?;
        let core = Arc::new(SipCore {
            challenges: auth::ChallengeTemplate::all(&sip.realm, &digest_algorithms),
            digest_algorithms,
            realm: sip.realm.clone(),
            min_expires: sip.min_expires,
            max_expires: sip.max_expires,
            nonce_lifetime: u64::from(sip.nonce_lifetime),
            nonces: NonceMint::new(key),
            nonce_counts: (0..NONCE_SHARDS)
                .map(|_| std::sync::Mutex::new(NonceCounts::new(200_000 / NONCE_SHARDS)))
                .collect(),
            credentials,
            location,
            inventory: registrar::InventoryMemo::default(),
            transports: Transports::default(),
            persist: persist_tx,
            limits: Limits {
                max_connections: sip.max_connections,
                idle_timeout: Duration::from_secs(sip.idle_timeout),
            },
            node: node_name(),
            hasher: foldhash::fast::RandomState::default(),
            metrics: SipMetrics::new(),
            calls: calls::CallsHandle::default(),
            relay,
            prompts: crate::apps::prompts::Prompts::configured(
                app.config.prompts.directory.as_deref(),
                app.config.prompts.hold_music.as_deref(),
            )
            .context("the prompts cannot be loaded (prompts.directory, prompts.hold_music)")?,
            mwi: mwi::Mwi::default(),
            hot_desks,
            date: DateHeader::default(),
            app: app.clone(),
        });

        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        // One reader thread per core on each UDP socket: the first always reads, the
        // others help while it is behind (see `udp`), so a storm is handled on every
        // core without waking a reader per datagram otherwise.
        let readers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Handle::current();
        tasks.push(tokio::spawn(drop_filter::run(
            core.clone(),
            udp.clone(),
            stopped.clone(),
        )));
        for socket in udp {
            let local = core.transports.add_udp(socket.clone())?;
            let helpers = Arc::new(udp::Helpers::default());
            for i in 0..readers {
                let (core, socket, stopped) = (core.clone(), socket.clone(), stopped.clone());
                let helpers = helpers.clone();
                let role = if i == 0 {
                    udp::Role::First
                } else {
                    udp::Role::Helper
                };
                let runtime = runtime.clone();
                // Dropped when the thread ends (or panics): `shutdown` awaits that.
                let (done, finished) = tokio::sync::oneshot::channel::<()>();
                std::thread::Builder::new()
                    .name(format!("sip-udp-{i}"))
                    .spawn(move || {
                        let _runtime = runtime.enter();
                        udp::run(core, socket, helpers, role, stopped);
                        drop(done);
                    })
                    .with_context(|| format!("cannot start a UDP reader for {local}"))?;
                tasks.push(tokio::spawn(async move {
                    let _ = finished.await;
                }));
            }
        }
        for (listener, acceptor) in tcp {
            tasks.push(tokio::spawn(transport::run_stream_listener(
                core.clone(),
                listener,
                acceptor,
                stopped.clone(),
            )));
        }
        tasks.push(tokio::spawn(persist::run_writer(
            core.clone(),
            persist_rx,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(location::run_expiry(
            core.clone(),
            stopped.clone(),
        )));
        websocket::forget_orphans(&core).await;
        let (records, recorded) = tokio::sync::mpsc::unbounded_channel();
        tasks.push(tokio::spawn(calls::run(
            core.clone(),
            records,
            stopped.clone(),
        )));
        // Last: it ends once the engine is gone and its reports are written.
        tasks.push(tokio::spawn(crate::features::calls::run_recorder(
            app.db.clone(),
            recorded,
        )));
        tasks.push(tokio::spawn(calls::publish_media_metrics(
            core.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(mwi::run(core.clone(), stopped.clone())));
        tasks.push(tokio::spawn(hot_desk::run_refresh(
            core.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(credentials::run_refresh(
            core.clone(),
            stopped,
        )));
        for l in &listeners {
            tracing::info!(listener = %l, realm = %core.realm, "SIP listening");
        }
        Ok(Self {
            core,
            listeners,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// The bound address of the first listener of `transport`.
    pub fn addr(&self, transport: SipTransport) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.transport == transport)
            .map(|l| l.addr)
    }

    /// Turns true when the server stops (for connections served elsewhere: WebSockets).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops the transports; queued bindings are written before the writer ends.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.core.relay.shutdown();
        let mut tasks = self.tasks.lock().await;
        for t in tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("a SIP task did not stop in time");
            }
        }
    }
}

async fn tls_acceptor(sip: &crate::config::SipConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::tls::install_crypto_provider();
    let (Some(cert), Some(key)) = (&sip.tls.cert_file, &sip.tls.key_file) else {
        anyhow::bail!("a tls: listener needs sip.tls.cert_file and sip.tls.key_file");
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {} (sip.tls.cert_file)", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "{} is not a PEM certificate chain (sip.tls.cert_file)",
                cert.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read the private key {} (sip.tls.key_file)",
            key.display()
        )
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the SIP certificate and key do not match (sip.tls)")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".into())
}
