//! `switchboard serve`: opens the application, seeds the first-start extensions,
//! serves HTTP, runs the background workers, and shuts down gracefully.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::app::App;
use crate::config::Config;
use crate::first_start::{self, OperatorCredentials};
use crate::sip_server::SipServer;
use crate::time::Timestamp;
use crate::{telemetry, tls};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How often voicemail files without a database row are looked for, and how old such a
/// file must be to go (a deposit writes its file a moment before its row commits).
const VOICEMAIL_SWEEP_EVERY: Duration = Duration::from_secs(3600);
const VOICEMAIL_SWEEP_GRACE: Duration = Duration::from_secs(900);

/// A running server.
pub struct Server {
    pub app: Arc<App>,
    pub http_addr: SocketAddr,
    /// Where people open the panel.
    pub admin_url: String,
    /// Set when this start created extension 1001: print it once.
    pub operator: Option<OperatorCredentials>,
    pub sip: Arc<SipServer>,
    stop: watch::Sender<bool>,
    http_handle: axum_server::Handle<SocketAddr>,
    http: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
}

pub async fn start(config: Config) -> anyhow::Result<Server> {
    // First: a metric handle taken before the recorder exists reports nothing, and the
    // SIP side takes its handles once, at start (hot-path counters, the engine's gauges).
    let metrics = telemetry::metrics_handle();
    let app = Arc::new(App::open(config).await?);
    let operator = first_start::seed(&app.extensions)
        .await
        .context("first-start seeding failed")?;

    let sip = Arc::new(SipServer::start(app.clone()).await?);

    let listen = app.config.http.listen.0;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    listener.set_nonblocking(true)?;
    let http_addr = listener.local_addr()?;
    let tls = tls::http_config(&app.config).await?;
    let admin_url = admin_url(&app.config, http_addr);

    let state = AppState {
        app: app.clone(),
        sip: Some(sip.clone()),
        metrics: metrics.clone(),
        started_at: Timestamp::now(),
        http_addr,
    };
    let service = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = watch::channel(false);

    // axum-server serves plain HTTP and HTTPS alike, with graceful shutdown.
    let http_handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)?.handle(http_handle.clone());
    let http = match tls {
        Some(tls) => {
            let server = server.acceptor(axum_server::tls_rustls::RustlsAcceptor::new(tls));
            tokio::spawn(async move { server.serve(service).await })
        }
        None => tokio::spawn(async move { server.serve(service).await }),
    };

    let workers = vec![
        // Devices that missed three heartbeats go offline (with their event) within a
        // fifth of an interval, not only when someone looks.
        spawn_every(
            stopped.clone(),
            (app.devices.heartbeat_interval() / 5).max(Duration::from_secs(1)),
            {
                let app = app.clone();
                move || {
                    let app = app.clone();
                    async move {
                        if let Err(e) = app.devices.sweep_offline().await {
                            tracing::warn!(error = %e, "device offline sweep failed");
                        }
                    }
                }
            },
        ),
        // WebPhone sessions idle past `features.webrtc.session_idle_timeout` end (with
        // `webrtc.session_ended`, reason `expired`) within a fifth of the timeout.
        spawn_every(stopped.clone(), app.webrtc.sweep_interval(), {
            let app = app.clone();
            move || {
                let app = app.clone();
                async move {
                    if let Err(e) = app.webrtc.sweep_expired().await {
                        tracing::warn!(error = %e, "WebPhone session expiry failed");
                    }
                }
            }
        }),
        spawn_every(stopped.clone(), SESSION_SWEEP_EVERY, {
            let app = app.clone();
            move || {
                let app = app.clone();
                async move {
                    match app.auth.sweep_expired().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(sessions = n, "expired sessions removed"),
                        Err(e) => tracing::warn!(error = %e, "session sweep failed"),
                    }
                    // Logins that never got their second factor, abandoned key registrations.
                    if let Err(e) = app.mfa.sweep_expired().await {
                        tracing::warn!(error = %e, "MFA challenge sweep failed");
                    }
                }
            }
        }),
        // Files left by a crash between a voicemail's file and its row, or by a deleted
        // extension; the first run is at start.
        spawn_every(stopped.clone(), VOICEMAIL_SWEEP_EVERY, {
            let app = app.clone();
            move || {
                let app = app.clone();
                async move {
                    if let Err(e) = app.voicemail.sweep(VOICEMAIL_SWEEP_GRACE).await {
                        tracing::warn!(error = %e, "voicemail sweep failed");
                    }
                }
            }
        }),
        // Threat detection: blocks end on time (spec 08), old events go hourly.
        spawn_every(stopped.clone(), Duration::from_secs(1), {
            let app = app.clone();
            move || {
                let app = app.clone();
                async move {
                    if let Err(e) = app.threats.expire().await {
                        tracing::warn!(error = %e, "block expiry failed");
                    }
                }
            }
        }),
        spawn_every(stopped.clone(), Duration::from_secs(3600), {
            let app = app.clone();
            move || {
                let app = app.clone();
                async move {
                    if let Err(e) = app.threats.prune().await {
                        tracing::warn!(error = %e, "threat events not pruned");
                    }
                }
            }
        }),
        // Webhook fan-out and delivery (spec 06).
        tokio::spawn(crate::features::webhooks::worker::run(
            app.clone(),
            stopped.clone(),
        )),
        // Hot-desk auto-logout (spec 05): idle sessions end every `cleanup_interval`.
        spawn_every(
            stopped.clone(),
            Duration::from_secs(app.config.features.hot_desking.cleanup_interval.max(1)),
            {
                let app = app.clone();
                move || {
                    let app = app.clone();
                    async move {
                        if !app.config.features.hot_desking.enabled {
                            return;
                        }
                        if let Err(e) = app.hot_desk.sweep().await {
                            tracing::warn!(error = %e, "hot-desk auto-logout failed");
                        }
                    }
                }
            },
        ),
        // Histograms are aggregated lazily; upkeep keeps their memory bounded.
        spawn_every(stopped, Duration::from_secs(5), move || {
            let metrics = metrics.clone();
            async move { metrics.run_upkeep() }
        }),
    ];

    tracing::info!(%http_addr, admin = %admin_url, database = app.db.backend().as_str(), "switchboard started");
    Ok(Server {
        app,
        http_addr,
        admin_url,
        operator,
        sip,
        stop,
        http_handle,
        http,
        workers,
    })
}

/// Runs `job` every `period` until `stop` turns true.
fn spawn_every<F, Fut>(mut stop: watch::Receiver<bool>, period: Duration, job: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => job().await,
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
        }
    })
}

impl Server {
    /// Stops accepting, lets in-flight requests finish (up to a timeout), stops the
    /// workers and closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        // Stops accepting at once; open connections get DRAIN_TIMEOUT to finish.
        self.http_handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
        self.http
            .await
            .context("HTTP task failed")?
            .context("HTTP server failed")?;
        for w in self.workers {
            let _ = w.await;
        }
        self.sip.shutdown().await;
        self.app.db.close().await;
        tracing::info!("switchboard stopped");
        Ok(())
    }
}

/// The panel's address for the banner and logs: `http.public_url`, else the listen
/// address with a wildcard replaced by this host's primary address.
fn admin_url(config: &Config, bound: SocketAddr) -> String {
    if let Some(public) = &config.http.public_url {
        return format!("{}/admin/", public.trim_end_matches('/'));
    }
    let scheme = if config.http.tls.is_enabled() {
        "https"
    } else {
        "http"
    };
    let ip = if bound.ip().is_unspecified() {
        primary_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        bound.ip()
    };
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    format!("{scheme}://{host}:{}/admin/", bound.port())
}

/// The address this host uses to reach the outside world (no packet is sent: a UDP
/// "connect" only asks the kernel for a route).
pub(crate) fn primary_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

/// Catches SIGINT (Ctrl-C) and SIGTERM from the moment it is called, so a signal sent
/// as soon as the banner is out stops the server gracefully rather than killing it;
/// the future resolves when one arrives.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    let arrives = |stream: std::io::Result<Signal>| async move {
        match stream {
            Ok(mut s) => {
                s.recv().await;
            }
            // Not catchable: the default action (termination) stays.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    async move {
        tokio::select! {
            _ = arrives(interrupt) => {},
            _ = arrives(terminate) => {},
        }
        tracing::info!("shutdown signal received");
    }
}
