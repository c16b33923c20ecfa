//! The assembled application: configuration, database and feature services, shared
//! by the server and the CLI.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::crypto::master_key::MasterKey;
use crate::features::auth::AuthService;
use crate::features::auto_attendant::AutoAttendantService;
use crate::features::calls::CdrService;
use crate::features::devices::DeviceService;
use crate::features::events::Changes;
use crate::features::extensions::ExtensionService;
use crate::features::hot_desk::HotDeskService;
use crate::features::mail::Mailer;
use crate::features::mfa::MfaService;
use crate::features::registered_phones::RegisteredPhoneService;
use crate::features::security::ThreatService;
use crate::features::voicemail::VoicemailService;
use crate::features::webhooks::WebhookService;
use crate::features::webrtc::WebrtcService;
use crate::store::Db;

pub struct App {
    pub config: Arc<Config>,
    pub db: Db,
    /// Encrypts the secrets that must be recovered.
    pub master_key: Arc<MasterKey>,
    /// In-process change notices for caches (the SIP side's credentials).
    pub changes: Changes,
    pub registered_phones: RegisteredPhoneService,
    pub extensions: ExtensionService,
    pub auth: AuthService,
    pub mfa: MfaService,
    pub cdr: CdrService,
    pub voicemail: VoicemailService,
    pub auto_attendant: AutoAttendantService,
    pub hot_desk: HotDeskService,
    pub webhooks: WebhookService,
    pub devices: DeviceService,
    /// Browser phone sessions (spec 03).
    pub webrtc: WebrtcService,
    /// Threat detection: what SIP and HTTP requests meet first.
    pub threats: Arc<ThreatService>,
    /// Outgoing e-mail; `None` when `smtp.host` is not set.
    pub mailer: Option<Mailer>,
}

impl App {
    /// Creates `data_dir`, connects to the database and brings its schema up to date.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        let url = config.database.url.expose();
        let db = Db::connect(url, config.database.max_connections)
            .await
            .with_context(|| {
                format!("cannot open the database {}", config.database.url.masked())
            })?;
        db.migrate().await.context("database migration failed")?;
        let master_key = Arc::new(MasterKey::load(&config, &db).await?);
        let changes = Changes::new();
        let extensions = ExtensionService::new(db.clone(), &config, changes.clone());
        let registered_phones = RegisteredPhoneService::new(db.clone());
        let cdr = CdrService::new(db.clone());
        let mailer = Mailer::from_config(&config.smtp)?;
        let voicemail = VoicemailService::new(db.clone(), &config)
            .with_mailer(mailer.clone(), config.voicemail.email_notifications);
        let auto_attendant = AutoAttendantService::new(db.clone(), &config);
        let devices = DeviceService::new(db.clone(), &config);
        let webrtc = WebrtcService::new(db.clone(), &config, extensions.clone());
        let webhooks = WebhookService::new(db.clone(), master_key.clone(), &config);
        let threats = Arc::new(ThreatService::load(db.clone(), &config).await?);
        let mfa = MfaService::new(db.clone(), master_key.clone(), &config, threats.clone());
        let auth = AuthService::new(db.clone(), extensions.clone(), mfa.clone(), &config);
        let hot_desk =
            HotDeskService::new(db.clone(), extensions.clone(), changes.clone(), &config);
        Ok(Self {
            config: Arc::new(config),
            db,
            master_key,
            changes,
            extensions,
            auth,
            mfa,
            registered_phones,
            cdr,
            voicemail,
            auto_attendant,
            hot_desk,
            webhooks,
            devices,
            webrtc,
            threats,
            mailer,
        })
    }
}
