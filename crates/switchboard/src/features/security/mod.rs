//! Threat detection (spec 08, seed 002 phase 2): the PBX's own fail2ban, in front of
//! the SIP stack (`sip_server::ingress`) and the HTTP API (`api::security_layer`).
//!
//! [`ThreatService`] keeps, per address, what it did wrong lately (failed
//! authentications, suspicious requests, a scanner's User-Agent, floods) and a 0–100
//! score; past a threshold the address is blocked for `ip_block_duration`. Blocks are
//! checked on every SIP datagram before it is parsed and on every HTTP request, from a
//! snapshot read without a lock ([`blocklist`]); they are rows (reloaded at start), end by
//! a timer, and each block, unblock and threat is an event (`security.*`).
//! `trusted_networks`, and the machine itself (127.0.0.1, ::1), are never blocked.

pub mod blocklist;
pub mod patterns;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ipnet::IpNet;
use serde::Serialize;
use utoipa::ToSchema;

use self::blocklist::{Block, Blocklist};
use super::events::{EventType, emit};
use super::{Actor, ServiceError};
use crate::config::{Config, ThreatDetectionConfig};
use crate::store::Db;
use crate::store::security::{self as store, BlockRow, ThreatRow};
use crate::time::Timestamp;

/// Threat events are kept this long.
const EVENT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Addresses tracked at most; beyond, the quietest are forgotten first.
const MAX_TRACKED: usize = 100_000;

/// Where a signal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Sip,
    Http,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sip => "sip",
            Self::Http => "http",
        }
    }
}

/// Something an address did that counts against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Wrong credentials: SIP digest, web password, hot-desk PIN, device token, second
    /// factor (`what` says which).
    FailedAuth(&'static str),
    /// Authentication as an extension that does not exist (number probing).
    UnknownExtension(String),
    /// A scanner's User-Agent.
    Scanner(String),
    /// SQL injection or path traversal (`kind`) in a request.
    Attack { kind: &'static str, sample: String },
    /// More requests per second than the flood rate.
    Flood(u32),
}

impl Signal {
    fn kind(&self) -> &'static str {
        match self {
            Self::FailedAuth(_) => "failed_auth",
            Self::UnknownExtension(_) => "unknown_extension",
            Self::Scanner(_) => "scanner",
            Self::Attack { kind, .. } => kind,
            Self::Flood(_) => "flood",
        }
    }

    fn detail(&self) -> String {
        let text = match self {
            Self::FailedAuth(what) => (*what).to_owned(),
            Self::UnknownExtension(n) => format!("extension {n}"),
            Self::Scanner(ua) => ua.clone(),
            Self::Attack { sample, .. } => sample.clone(),
            Self::Flood(rate) => format!("{rate} requests/s"),
        };
        text.chars().take(200).collect()
    }
}

/// What an address did within the window.
#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    suspicious: VecDeque<Instant>,
    scanner: bool,
    floods: u32,
    /// The current second's requests, for flood detection.
    second: Option<Instant>,
    requests: u32,
    last_seen: Option<Instant>,
}

impl Record {
    fn prune(&mut self, now: Instant, window: Duration) {
        for q in [&mut self.failures, &mut self.suspicious] {
            while q.front().is_some_and(|t| now.duration_since(*t) > window) {
                q.pop_front();
            }
        }
    }

    fn score(&self) -> u8 {
        let s = self.failures.len() * 10
            + self.suspicious.len() * 15
            + usize::from(self.scanner) * 60
            + self.floods as usize * 40;
        s.min(100) as u8
    }
}

/// `GET /api/security/check-ip/{ip}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IpCheck {
    pub ip: String,
    pub blocked: bool,
    /// `null` while blocked until unblocked (or when not blocked).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub blocked_until: Option<Timestamp>,
    pub reason: Option<String>,
    /// 0–100.
    pub threat_score: u8,
}

/// A block as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BlockView {
    /// An address or a CIDR range.
    pub ip: String,
    pub reason: String,
    /// `auto` or `manual`.
    pub source: String,
    #[schema(value_type = String, format = DateTime)]
    pub blocked_at: Timestamp,
    /// `null`: until unblocked.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub blocked_until: Option<Timestamp>,
}

impl From<&Block> for BlockView {
    fn from(b: &Block) -> Self {
        Self {
            ip: network_text(&b.network),
            reason: b.reason.clone(),
            source: b.source.clone(),
            blocked_at: b.blocked_at,
            blocked_until: b.expires_at,
        }
    }
}

/// A threat event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ThreatEvent {
    pub id: String,
    pub ip: String,
    /// `failed_auth`, `unknown_extension`, `scanner`, `sql_injection`, `path_traversal`,
    /// `flood`.
    pub kind: String,
    /// `sip` or `http`.
    pub protocol: String,
    pub detail: String,
    pub score: i64,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
}

impl From<ThreatRow> for ThreatEvent {
    fn from(r: ThreatRow) -> Self {
        Self {
            id: r.id,
            ip: r.ip,
            kind: r.kind,
            protocol: r.protocol,
            detail: r.detail,
            score: r.score,
            occurred_at: r.occurred_at,
        }
    }
}

/// `GET /api/security/threat-summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    pub hours: u32,
    pub blocked_count: usize,
    pub events_by_type: HashMap<String, i64>,
    pub top_offenders: Vec<Offender>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Offender {
    pub ip: String,
    pub events: i64,
    /// The highest score it reached in the period.
    pub threat_score: i64,
    pub blocked: bool,
}

pub struct ThreatService {
    db: Db,
    config: ThreatDetectionConfig,
    trusted: Vec<IpNet>,
    blocks: ArcSwap<Blocklist>,
    /// Serialises changes to `blocks` (copy, change, publish).
    changing: parking_lot::Mutex<()>,
    records: DashMap<IpAddr, Record, foldhash::fast::RandomState>,
    /// Where writes from the SIP threads run.
    runtime: tokio::runtime::Handle,
    /// Bumped at every change of the blocklist (the SIP sockets' kernel filter follows).
    changed: tokio::sync::watch::Sender<u64>,
}

impl ThreatService {
    /// The service with the blocks of the database (those already ended are lifted by
    /// the first timer turn).
    pub async fn load(db: Db, config: &Config) -> Result<Self, ServiceError> {
        let td = config.security.threat_detection.clone();
        let mut trusted: Vec<IpNet> = td
            .trusted_networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .collect();
        trusted.extend(["127.0.0.1/32", "::1/128"].map(|n| n.parse::<IpNet>().expect("literal")));
        let mut list = Blocklist::default();
        for row in store::blocks(db.pool()).await? {
            let Ok(network) = parse_network(&row.network) else {
                tracing::warn!(network = %row.network, "unreadable block in the database: skipped");
                continue;
            };
            list.insert(Block {
                network,
                reason: row.reason,
                source: row.source,
                blocked_at: row.blocked_at,
                expires_at: row.expires_at,
            });
        }
        Ok(Self {
            db,
            config: td,
            trusted,
            blocks: ArcSwap::from_pointee(list),
            changing: parking_lot::Mutex::new(()),
            records: DashMap::default(),
            runtime: tokio::runtime::Handle::current(),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn config(&self) -> &ThreatDetectionConfig {
        &self.config
    }

    /// Whether requests from `ip` are refused (the check of every packet and request).
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.config.enabled && self.blocks.load().blocks(ip, Timestamp::now())
    }

    /// Tells of each change of the blocklist.
    pub fn watch_blocks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The IPv4 networks blocked now, for a kernel filter; `None` when threat detection
    /// is off.
    pub fn blocked_v4(&self) -> Option<Vec<ipnet::Ipv4Net>> {
        if !self.config.enabled {
            return None;
        }
        let now = Timestamp::now();
        Some(
            self.blocks
                .load()
                .all()
                .filter(|b| b.expires_at.is_none_or(|t| t > now))
                .filter_map(|b| match b.network {
                    IpNet::V4(n) => Some(n),
                    IpNet::V6(_) => None,
                })
                .collect(),
        )
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Counts a request from `ip`; true when it is part of a flood (and `ip` is now
    /// blocked). Trusted addresses are not counted.
    pub fn count_request(&self, ip: IpAddr, protocol: Protocol) -> bool {
        if !self.config.enabled || self.is_trusted(ip) {
            return false;
        }
        let limit = match protocol {
            Protocol::Sip => self.config.sip_flood_rate,
            Protocol::Http => self.config.http_flood_rate,
        };
        if limit == 0 {
            return false;
        }
        let now = Instant::now();
        let flood = {
            let mut r = self.records.entry(ip).or_default();
            r.last_seen = Some(now);
            if r.second
                .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
            {
                r.second = Some(now);
                r.requests = 0;
            }
            r.requests += 1;
            // Once per second of flood, not once per packet.
            r.requests == limit + 1
        };
        if flood {
            self.signal(ip, protocol, Signal::Flood(limit + 1));
        }
        flood
    }

    /// Records `signal` from `ip`; blocks it when a threshold is reached.
    pub fn signal(&self, ip: IpAddr, protocol: Protocol, signal: Signal) {
        if !self.config.enabled {
            return;
        }
        let now = Instant::now();
        let window = Duration::from_secs(self.config.failed_login_window);
        let trusted = self.is_trusted(ip);
        let (score, block) = {
            let mut r = self.records.entry(ip).or_default();
            r.prune(now, window);
            r.last_seen = Some(now);
            match &signal {
                Signal::FailedAuth(_) => r.failures.push_back(now),
                Signal::UnknownExtension(_) | Signal::Attack { .. } => r.suspicious.push_back(now),
                Signal::Scanner(_) => {
                    r.scanner = true;
                    if !self.config.block_scanners {
                        r.suspicious.push_back(now);
                    }
                }
                Signal::Flood(_) => r.floods += 1,
            }
            let block = if r.failures.len() >= self.config.failed_login_threshold as usize {
                Some(format!(
                    "{} failed authentications within {} s",
                    r.failures.len(),
                    self.config.failed_login_window
                ))
            } else if r.suspicious.len() >= self.config.suspicious_pattern_threshold as usize {
                Some(format!("{} suspicious requests", r.suspicious.len()))
            } else {
                match &signal {
                    Signal::Scanner(ua) if self.config.block_scanners => {
                        Some(format!("scanner: {ua}"))
                    }
                    Signal::Flood(rate) => Some(format!("flood: over {rate} requests/s")),
                    _ => None,
                }
            };
            (r.score(), block)
        };
        if self.records.len() > MAX_TRACKED {
            self.forget_quiet(window);
        }
        // The machine and trusted networks are never blocked, and what they do is not
        // written down (it could be anything, at any rate).
        if trusted {
            return;
        }
        let row = ThreatRow {
            id: uuid::Uuid::now_v7().to_string(),
            ip: ip.to_string(),
            kind: signal.kind().to_owned(),
            protocol: protocol.as_str().to_owned(),
            detail: signal.detail(),
            score: i64::from(score),
            occurred_at: Timestamp::now(),
        };
        tracing::info!(%ip, kind = %row.kind, detail = %row.detail, score, "threat detected");
        let block = block.filter(|_| !self.is_blocked(ip)).map(|reason| {
            let until = Timestamp::now().plus_secs(self.config.ip_block_duration);
            self.apply_block(IpNet::from(ip), reason, "auto", Some(until))
        });
        let db = self.db.clone();
        self.runtime.spawn(async move {
            if let Err(e) = persist_threat(&db, &row, block.as_ref(), &Actor::System).await {
                tracing::warn!(error = %e, ip = %row.ip, "threat event not stored");
            }
        });
    }

    /// Blocks `network` (an address or a CIDR range) for `duration` (`None`: until
    /// unblocked) by an admin.
    pub async fn block(
        &self,
        by: &Actor,
        network: &str,
        duration: Option<Duration>,
        reason: &str,
    ) -> Result<BlockView, ServiceError> {
        let net = parse_network(network).map_err(|why| ServiceError::invalid("ip", why))?;
        if self
            .trusted
            .iter()
            .any(|t| t.contains(&net) || net.contains(t))
        {
            return Err(ServiceError::conflict_on(
                "trusted_network",
                "ip",
                format!(
                    "{network} is (or covers) a trusted network (security.threat_detection.trusted_networks, or the machine itself), which is never blocked"
                ),
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(ServiceError::invalid(
                "reason",
                "why, in 1 to 200 characters",
            ));
        }
        let until = duration.map(|d| Timestamp::now().plus(d));
        let block = self.apply_block(net, reason.to_owned(), "manual", until);
        persist_threat_block(&self.db, &block, by).await?;
        tracing::info!(network = %network_text(&net), by = %by.label(), "address blocked");
        Ok(BlockView::from(&block))
    }

    /// Lifts the block of `network`.
    pub async fn unblock(&self, by: &Actor, network: &str) -> Result<(), ServiceError> {
        let net = parse_network(network).map_err(|why| ServiceError::invalid("ip", why))?;
        let removed = self.change_blocks(|list| list.remove(&net));
        let Some(removed) = removed else {
            return Err(ServiceError::not_found(format!(
                "a block of {}",
                network_text(&net)
            )));
        };
        self.forget(&net);
        let mut tx = self.db.begin().await?;
        store::delete_block(&mut tx, &network_text(&net), None).await?;
        emit(
            &mut tx,
            EventType::SecurityIpUnblocked,
            &unblocked(&removed, "manual", by),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(network = %network_text(&net), by = %by.label(), "address unblocked");
        Ok(())
    }

    /// Lifts the blocks that have ended (the timer's turn) and forgets quiet addresses.
    pub async fn expire(&self) -> Result<usize, ServiceError> {
        let now = Timestamp::now();
        let expired = self.blocks.load().expired(now);
        for b in &expired {
            // Unless replaced meanwhile by a longer block.
            self.change_blocks(|list| {
                if list
                    .find(b.network.addr())
                    .is_some_and(|c| c.expires_at == b.expires_at)
                {
                    list.remove(&b.network);
                }
            });
            self.forget(&b.network);
            let mut tx = self.db.begin().await?;
            if store::delete_block(&mut tx, &network_text(&b.network), Some(now)).await? {
                emit(
                    &mut tx,
                    EventType::SecurityIpUnblocked,
                    &unblocked(b, "expired", &Actor::System),
                )
                .await?;
            }
            tx.commit().await?;
            tracing::info!(network = %network_text(&b.network), "block expired");
        }
        self.forget_quiet(Duration::from_secs(self.config.failed_login_window));
        Ok(expired.len())
    }

    /// Forgets threat events older than their retention.
    pub async fn prune(&self) -> Result<u64, ServiceError> {
        let mut tx = self.db.begin().await?;
        let n = store::prune_threats(&mut tx, Timestamp::now().minus(EVENT_RETENTION)).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub fn check(&self, ip: &str) -> Result<IpCheck, ServiceError> {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| ServiceError::invalid("ip", format!("`{ip}` is not an IP address")))?;
        let list = self.blocks.load();
        let block = list
            .find(addr)
            .filter(|b| b.expires_at.is_none_or(|t| t > Timestamp::now()));
        let score = self.records.get(&addr).map_or(0, |r| r.score());
        Ok(IpCheck {
            ip: addr.to_string(),
            blocked: block.is_some(),
            blocked_until: block.and_then(|b| b.expires_at),
            reason: block.map(|b| b.reason.clone()),
            threat_score: score,
        })
    }

    pub fn blocked(&self) -> Vec<BlockView> {
        let mut out: Vec<BlockView> = self.blocks.load().all().map(BlockView::from).collect();
        out.sort_by(|a, b| b.blocked_at.cmp(&a.blocked_at).then(a.ip.cmp(&b.ip)));
        out
    }

    pub async fn events(
        &self,
        ip: Option<&str>,
        hours: u32,
        limit: i64,
    ) -> Result<Vec<ThreatEvent>, ServiceError> {
        let since = Timestamp::now().minus(Duration::from_secs(u64::from(hours) * 3600));
        Ok(store::threats(self.db.pool(), since, ip, limit)
            .await?
            .into_iter()
            .map(ThreatEvent::from)
            .collect())
    }

    pub async fn summary(&self, hours: u32) -> Result<Summary, ServiceError> {
        let since = Timestamp::now().minus(Duration::from_secs(u64::from(hours) * 3600));
        let rows = store::threats(self.db.pool(), since, None, 100_000).await?;
        let mut by_type: HashMap<String, i64> = HashMap::new();
        let mut by_ip: HashMap<String, (i64, i64)> = HashMap::new();
        for r in &rows {
            *by_type.entry(r.kind.clone()).or_default() += 1;
            let e = by_ip.entry(r.ip.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(r.score);
        }
        let list = self.blocks.load();
        let now = Timestamp::now();
        let mut top: Vec<Offender> = by_ip
            .into_iter()
            .map(|(ip, (events, score))| Offender {
                blocked: ip.parse().is_ok_and(|a| list.blocks(a, now)),
                ip,
                events,
                threat_score: score,
            })
            .collect();
        top.sort_by(|a, b| {
            b.threat_score
                .cmp(&a.threat_score)
                .then(b.events.cmp(&a.events))
                .then(a.ip.cmp(&b.ip))
        });
        top.truncate(10);
        Ok(Summary {
            hours,
            blocked_count: list
                .all()
                .filter(|b| b.expires_at.is_none_or(|t| t > now))
                .count(),
            events_by_type: by_type,
            top_offenders: top,
        })
    }

    /// Publishes a block in memory (in force at once) and gives it for storing.
    fn apply_block(
        &self,
        network: IpNet,
        reason: String,
        source: &str,
        until: Option<Timestamp>,
    ) -> Block {
        let block = Block {
            network: network.trunc(),
            reason,
            source: source.to_owned(),
            blocked_at: Timestamp::now(),
            expires_at: until,
        };
        self.change_blocks(|list| list.insert(block.clone()));
        tracing::warn!(network = %network_text(&block.network), reason = %block.reason, "address blocked");
        block
    }

    /// Changes the blocklist: a copy is changed and published (readers never wait), and
    /// the kernel filter is told.
    fn change_blocks<R>(&self, change: impl FnOnce(&mut Blocklist) -> R) -> R {
        let _guard = self.changing.lock();
        let mut list = Blocklist::clone(&self.blocks.load());
        let out = change(&mut list);
        self.blocks.store(Arc::new(list));
        self.changed.send_modify(|g| *g += 1);
        out
    }

    /// Forgets what the addresses of `net` did (a lifted block starts them afresh).
    fn forget(&self, net: &IpNet) {
        self.records.retain(|ip, _| !net.contains(ip));
    }

    fn forget_quiet(&self, window: Duration) {
        let now = Instant::now();
        self.records
            .retain(|_, r| r.last_seen.is_some_and(|t| now.duration_since(t) <= window));
    }
}

#[derive(Serialize)]
struct BlockedEvent<'a> {
    actor: String,
    blocked_until: Option<Timestamp>,
    ip: String,
    reason: &'a str,
    source: &'a str,
}

#[derive(Serialize)]
struct UnblockedEvent {
    actor: String,
    ip: String,
    /// `manual` or `expired`.
    reason: &'static str,
}

#[derive(Serialize)]
struct DetectedEvent<'a> {
    detail: &'a str,
    ip: &'a str,
    kind: &'a str,
    protocol: &'a str,
    threat_score: i64,
}

fn unblocked(b: &Block, reason: &'static str, by: &Actor) -> UnblockedEvent {
    UnblockedEvent {
        actor: by.label(),
        ip: network_text(&b.network),
        reason,
    }
}

async fn persist_threat_block(db: &Db, block: &Block, by: &Actor) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    put_block(&mut tx, block, by).await?;
    tx.commit().await
}

async fn put_block(
    tx: &mut crate::store::Tx,
    block: &Block,
    by: &Actor,
) -> Result<(), sqlx::Error> {
    let row = BlockRow {
        network: network_text(&block.network),
        reason: block.reason.clone(),
        source: block.source.clone(),
        actor: by.label(),
        blocked_at: block.blocked_at,
        expires_at: block.expires_at,
    };
    store::put_block(tx, &row).await?;
    emit(
        tx,
        EventType::SecurityIpBlocked,
        &BlockedEvent {
            actor: by.label(),
            blocked_until: block.expires_at,
            ip: row.network.clone(),
            reason: &block.reason,
            source: &block.source,
        },
    )
    .await?;
    Ok(())
}

async fn persist_threat(
    db: &Db,
    row: &ThreatRow,
    block: Option<&Block>,
    by: &Actor,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    store::add_threat(&mut tx, row).await?;
    emit(
        &mut tx,
        EventType::SecurityThreatDetected,
        &DetectedEvent {
            detail: &row.detail,
            ip: &row.ip,
            kind: &row.kind,
            protocol: &row.protocol,
            threat_score: row.score,
        },
    )
    .await?;
    if let Some(block) = block {
        put_block(&mut tx, block, by).await?;
    }
    tx.commit().await
}

/// An address or CIDR range; an address is its /32 or /128.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("`{t}` is not an IP address or CIDR range (192.0.2.7, 198.51.100.0/24, 2001:db8::/32)"))
}

/// An address as itself, a range in CIDR form.
fn network_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_as_addresses_or_ranges() {
        assert_eq!(
            network_text(&parse_network("192.0.2.7").unwrap()),
            "192.0.2.7"
        );
        assert_eq!(
            network_text(&parse_network("198.51.100.9/24").unwrap()),
            "198.51.100.0/24"
        );
        assert_eq!(
            network_text(&parse_network("2001:db8::1/32").unwrap()),
            "2001:db8::/32"
        );
        assert!(parse_network("nowhere").is_err());
    }

    #[test]
    fn the_score_adds_up_and_caps() {
        let now = Instant::now();
        let mut r = Record::default();
        assert_eq!(r.score(), 0);
        r.failures.extend([now, now, now]);
        assert_eq!(r.score(), 30);
        r.scanner = true;
        assert_eq!(r.score(), 90);
        r.floods = 1;
        assert_eq!(r.score(), 100);
    }
}
