//! The configuration tree. Field names are the YAML keys; defaults are the seeds'
//! defaults where a seed gives one (see `config.example.yml`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::types::{HttpTls, ListenAddr, Secret, SipListen};
use crate::role::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// SQLite file, master key, TLS files, voicemail audio.
    pub data_dir: PathBuf,
    /// IANA time zone used for schedules (DND rules, queue hours) and reports.
    pub timezone: String,
    pub logging: LoggingConfig,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub sip: SipConfig,
    pub rtp: RtpConfig,
    pub calls: CallsConfig,
    pub voicemail: VoicemailConfig,
    /// Extension 0 (spec 01 "Auto attendant"); the API's settings replace it once set.
    pub auto_attendant: crate::features::auto_attendant::Settings,
    pub prompts: PromptsConfig,
    pub smtp: SmtpConfig,
    pub security: SecurityConfig,
    pub features: FeaturesConfig,
    pub integrations: IntegrationsConfig,
    pub devices: DevicesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            timezone: "UTC".into(),
            logging: LoggingConfig::default(),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            sip: SipConfig::default(),
            rtp: RtpConfig::default(),
            calls: CallsConfig::default(),
            voicemail: VoicemailConfig::default(),
            auto_attendant: Default::default(),
            prompts: PromptsConfig::default(),
            smtp: SmtpConfig::default(),
            security: SecurityConfig::default(),
            features: FeaturesConfig::default(),
            integrations: IntegrationsConfig::default(),
            devices: DevicesConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// A `tracing` filter: `info`, `debug`, `switchboard=debug,sqlx=warn`, …
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (relative to the working directory) or `postgres://user:pass@host/db`.
    pub url: Secret,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://./data/switchboard.db"),
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub listen: ListenAddr,
    /// `off`, `self_signed`, or `{cert_file, key_file}`.
    pub tls: HttpTls,
    /// The URL people reach the panel at (banner, WebAuthn origin, e-mails); derived
    /// from `listen` when empty.
    pub public_url: Option<String>,
    /// A session token unused this long expires (seconds).
    pub session_idle_timeout: u64,
    /// A session token expires this long after login whatever its use (seconds).
    pub session_absolute_timeout: u64,
    /// Largest request body accepted (bytes); extension imports accept up to 64 MiB.
    pub body_limit: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddr("0.0.0.0:8080".parse().expect("valid default")),
            tls: HttpTls::Off,
            public_url: None,
            session_idle_timeout: 12 * 3600,
            session_absolute_timeout: 7 * 24 * 3600,
            body_limit: 2 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_configured(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SipConfig {
    pub listen: Vec<SipListen>,
    /// Digest realm; also the SIP domain accepted in request URIs.
    pub realm: String,
    pub tls: TlsFiles,
    /// Shortest registration accepted (423 below it), seconds.
    pub min_expires: u32,
    /// Longest registration granted, seconds.
    pub max_expires: u32,
    /// How long a digest nonce stays valid (seconds); older ones get `stale=true`.
    pub nonce_lifetime: u32,
    /// Digest algorithms offered in challenges, in order of preference. Phones use the
    /// first one they support; many older ones read only the first challenge, hence MD5
    /// first by default. With `security.fips_mode` MD5 is never offered or accepted.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// Open TCP/TLS connections at most; more are refused.
    pub max_connections: usize,
    /// A TCP/TLS connection silent this long is closed (seconds). Longer than
    /// `max_expires` so a phone's registration flow outlives its refresh interval.
    pub idle_timeout: u64,
    pub timers: SipTimers,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                SipListen::parse("udp:0.0.0.0:5060").expect("valid default"),
                SipListen::parse("tcp:0.0.0.0:5060").expect("valid default"),
            ],
            realm: "switchboard".into(),
            tls: TlsFiles::default(),
            min_expires: 60,
            max_expires: 3600,
            nonce_lifetime: 300,
            digest_algorithms: vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256],
            max_connections: 10_000,
            idle_timeout: 3660,
            timers: SipTimers::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

/// RFC 3261 timer bases, milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SipTimers {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

impl Default for SipTimers {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RtpConfig {
    pub port_min: u16,
    pub port_max: u16,
    /// Address written into SDP `c=` lines when the PBX is behind NAT; empty = the
    /// address the signalling arrived on.
    pub public_address: Option<String>,
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            port_min: 10000,
            port_max: 20000,
            public_address: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CallsConfig {
    /// Seconds an unanswered call rings before no-answer handling.
    pub ring_timeout: u64,
    /// Seconds without RTP (not on hold) before a call is ended as dead.
    pub media_timeout: u64,
    /// Numbers routed before anything else in the dial plan.
    pub emergency_numbers: Vec<String>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout: 30,
            media_timeout: 60,
            emergency_numbers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VoicemailConfig {
    pub max_message_seconds: u64,
    /// Recordings shorter than this are discarded.
    pub min_message_seconds: u64,
    /// Silence that ends a recording, seconds.
    pub silence_timeout: u64,
    /// Send a NOTIFY to phones that do not SUBSCRIBE to message-summary.
    pub unsolicited_mwi: bool,
    /// E-mail new messages (with the audio) to the extension's address when SMTP is set.
    pub email_notifications: bool,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        Self {
            max_message_seconds: 120,
            min_message_seconds: 2,
            silence_timeout: 5,
            unsolicited_mwi: false,
            email_notifications: true,
        }
    }
}

/// What the PBX says and plays (prompts/README.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptsConfig {
    /// WAV files named like `prompts/en` replacing the built-in English prompts.
    pub directory: Option<PathBuf>,
    /// A WAV file replacing the built-in hold music.
    pub hold_music: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    None,
    #[default]
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    /// Empty = no e-mail is sent.
    pub host: Option<String>,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            from: "Switchboard <switchboard@localhost>".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    pub fips_mode: bool,
    pub enforce_fips: bool,
    /// Shortest voicemail / hot-desk PIN accepted (4–12).
    pub min_pin_length: usize,
    /// Passphrase the master key is derived from (PBKDF2-HMAC-SHA256, 600,000 rounds)
    /// instead of `data/master.key`; `SWITCHBOARD_MASTER_KEY` wins over both.
    pub master_key_passphrase: Option<Secret>,
    pub mfa: MfaConfig,
    pub threat_detection: ThreatDetectionConfig,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            fips_mode: false,
            enforce_fips: false,
            min_pin_length: 4,
            master_key_passphrase: None,
            mfa: MfaConfig::default(),
            threat_detection: ThreatDetectionConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MfaConfig {
    pub enabled: bool,
    /// Every user must enrol a second factor at their next login.
    pub required: bool,
    /// Roles that must enrol even when `required` is false.
    pub required_for: Vec<Role>,
    pub backup_codes: usize,
    pub issuer: String,
    pub yubikey: YubikeyConfig,
    pub fido2: Fido2Config,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            required_for: Vec::new(),
            backup_codes: 10,
            issuer: "Switchboard".into(),
            yubikey: YubikeyConfig::default(),
            fido2: Fido2Config::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct YubikeyConfig {
    pub enabled: bool,
    pub client_id: Option<String>,
    pub api_key: Option<Secret>,
    /// Validation servers (protocol 2.0), tried in order.
    pub api_urls: Vec<String>,
}

impl Default for YubikeyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            client_id: None,
            api_key: None,
            api_urls: vec!["https://api.yubico.com/wsapi/2.0/verify".into()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Fido2Config {
    pub enabled: bool,
    /// WebAuthn relying-party id (a domain); empty = the host of `http.public_url`.
    pub rp_id: Option<String>,
    /// Origin the browser reports; empty = `http.public_url`.
    pub rp_origin: Option<String>,
    pub rp_name: String,
}

impl Default for Fido2Config {
    fn default() -> Self {
        Self {
            enabled: true,
            rp_id: None,
            rp_origin: None,
            rp_name: "Switchboard".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreatDetectionConfig {
    pub enabled: bool,
    /// Seconds an automatic block lasts.
    pub ip_block_duration: u64,
    pub failed_login_threshold: u32,
    /// Sliding window for counting failures, seconds.
    pub failed_login_window: u64,
    pub suspicious_pattern_threshold: u32,
    /// Block a scanner User-Agent at once.
    pub block_scanners: bool,
    /// CIDRs that are never blocked.
    pub trusted_networks: Vec<String>,
    pub sip_scanner_user_agents: Vec<String>,
    pub http_scanner_user_agents: Vec<String>,
    /// Requests per second from one IP above which it counts as a flood.
    pub sip_flood_rate: u32,
    pub http_flood_rate: u32,
}

impl Default for ThreatDetectionConfig {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            enabled: true,
            ip_block_duration: 3600,
            failed_login_threshold: 10,
            failed_login_window: 3600,
            suspicious_pattern_threshold: 5,
            block_scanners: true,
            trusted_networks: Vec::new(),
            sip_scanner_user_agents: list(&[
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "VaxSIPUserAgent",
                "pplsip",
                "iWar",
                "sundayddr",
                "SIPBomber",
                "sipsak",
            ]),
            http_scanner_user_agents: list(&[
                "nmap",
                "nikto",
                "sqlmap",
                "masscan",
                "zgrab",
                "gobuster",
                "dirbuster",
                "wpscan",
            ]),
            sip_flood_rate: 200,
            http_flood_rate: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FeaturesConfig {
    pub hot_desking: HotDeskingConfig,
    pub webhooks: WebhooksConfig,
    pub webrtc: WebrtcConfig,
    pub dnd_scheduling: DndSchedulingConfig,
    pub skills_routing: SkillsRoutingConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExclusivePolicy {
    /// A new login moves the extension to the new device.
    #[default]
    Moved,
    /// A new login fails with 409 while the extension is logged in elsewhere.
    Reject,
}

/// Seed 000. Defaults are the seed's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HotDeskingConfig {
    pub enabled: bool,
    pub require_pin: bool,
    pub allow_concurrent_logins: bool,
    pub auto_logout_timeout: u64,
    pub auto_logout_enabled: bool,
    pub cleanup_interval: u64,
    pub exclusive_policy: ExclusivePolicy,
    pub max_pin_failures: u32,
}

impl Default for HotDeskingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            require_pin: true,
            allow_concurrent_logins: false,
            auto_logout_timeout: 28800,
            auto_logout_enabled: true,
            cleanup_interval: 60,
            exclusive_policy: ExclusivePolicy::Moved,
            max_pin_failures: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksConfig {
    pub enabled: bool,
    pub subscriptions: Vec<WebhookSubscriptionConfig>,
    /// Allow loopback / private / link-local targets (tests, on-premises receivers).
    pub allow_private_targets: bool,
    /// Give up on an event this many seconds after it was created.
    pub max_age: u64,
    /// Seconds to wait for a receiver's answer.
    pub timeout: u64,
    /// Deliveries in flight at once across all subscriptions.
    pub max_concurrency: usize,
    /// Seconds before each retry of a failed delivery; the last repeats until `max_age`.
    pub retry_delays: Vec<u64>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            subscriptions: Vec::new(),
            allow_private_targets: false,
            max_age: 86400,
            timeout: 10,
            max_concurrency: 16,
            retry_delays: vec![5, 30, 120, 600, 1800, 3600],
        }
    }
}

/// Seed 000 shape plus `secret`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSubscriptionConfig {
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// `whsec_<base64>`; generated (and logged once) when absent.
    pub secret: Option<Secret>,
}

impl Default for WebhookSubscriptionConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            events: vec!["*".into()],
            enabled: true,
            secret: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebrtcConfig {
    pub enabled: bool,
    /// Create virtual extensions such as `webrtc-admin` on first use.
    pub auto_create_virtual: bool,
    /// STUN/TURN servers handed to browsers (`stun:host:port`, `turn:…`).
    pub ice_servers: Vec<String>,
    /// Address put in ICE candidates when the PBX is behind NAT.
    pub public_address: Option<String>,
    /// Seconds after which an idle browser session expires.
    pub session_idle_timeout: u64,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            auto_create_virtual: true,
            ice_servers: Vec::new(),
            public_address: None,
            session_idle_timeout: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DndSchedulingConfig {
    pub enabled: bool,
    pub calendar_dnd: bool,
    /// Seconds between re-evaluations of rules and calendars.
    pub check_interval: u64,
}

impl Default for DndSchedulingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            calendar_dnd: true,
            check_interval: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SkillsRoutingConfig {
    pub enabled: bool,
    pub fallback_to_any: bool,
    pub proficiency_weight: f64,
}

impl Default for SkillsRoutingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fallback_to_any: true,
            proficiency_weight: 0.7,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IntegrationsConfig {
    pub active_directory: ActiveDirectoryConfig,
    pub outlook: OutlookConfig,
}

/// Seed 001 keys plus the spec's additions (04-directory.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ActiveDirectoryConfig {
    pub enabled: bool,
    pub auto_provision: bool,
    pub server: String,
    pub base_dn: String,
    pub bind_dn: String,
    pub bind_password: Option<Secret>,
    pub user_search_base: String,
    pub use_ssl: bool,
    pub start_tls: bool,
    pub ca_file: Option<PathBuf>,
    pub deactivate_removed_users: bool,
    /// Empty = people with telephoneNumber or ipPhone, excluding disabled accounts.
    pub user_filter: Option<String>,
    pub username_attribute: String,
    pub name_attribute: String,
    pub email_attribute: String,
    pub extension_attribute: Option<String>,
    /// Keep the last N digits of the number; empty = all digits.
    pub extension_digits: Option<usize>,
    /// Members of this group (DN) get the admin role.
    pub admin_group: Option<String>,
    /// Seconds between periodic syncs; empty = only at start and on demand.
    pub sync_interval: Option<u64>,
    pub page_size: u32,
}

impl Default for ActiveDirectoryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            auto_provision: false,
            server: String::new(),
            base_dn: String::new(),
            bind_dn: String::new(),
            bind_password: None,
            user_search_base: String::new(),
            use_ssl: true,
            start_tls: false,
            ca_file: None,
            deactivate_removed_users: true,
            user_filter: None,
            username_attribute: "sAMAccountName".into(),
            name_attribute: "displayName".into(),
            email_attribute: "mail".into(),
            extension_attribute: None,
            extension_digits: None,
            admin_group: None,
            sync_interval: None,
            page_size: 500,
        }
    }
}

/// Microsoft Graph credentials for calendar DND (OAuth2 client credentials).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OutlookConfig {
    pub enabled: bool,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub graph_base_url: String,
    pub login_base_url: String,
}

impl Default for OutlookConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            graph_base_url: "https://graph.microsoft.com/v1.0".into(),
            login_base_url: "https://login.microsoftonline.com".into(),
        }
    }
}

/// Seed 003, server side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DevicesConfig {
    /// Seconds between heartbeats; a device missing three is offline.
    pub heartbeat_interval: u64,
    /// Default lifetime of an enrolment token, seconds.
    pub token_expiry: u64,
    pub ssh_host_key_files: Vec<String>,
    /// Accept the device key alone (no secret) from old clients. Insecure.
    pub legacy_key_only_auth: bool,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: 60,
            token_expiry: 7 * 24 * 3600,
            ssh_host_key_files: vec!["/etc/ssh/ssh_host_*_key.pub".into()],
            legacy_key_only_auth: false,
        }
    }
}
