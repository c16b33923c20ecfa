//! Logs (`tracing`, text or JSON) and Prometheus metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::app::App;
use crate::config::LogFormat;
use crate::store::extensions::{self as ext_store, ListFilter};

/// Installs the global log subscriber; `RUST_LOG` overrides `level` when set.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide metrics recorder (installed once, also when several servers run
/// in one test process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                )
                .expect("valid buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            metrics::gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION"))
                .set(1.0);
            handle
        })
        .clone()
}

/// Gauges read at scrape time.
pub async fn refresh_gauges(app: &App, sip: Option<&crate::sip_server::SipServer>) {
    if let Ok(n) = ext_store::count(app.db.pool(), &ListFilter::default()).await {
        metrics::gauge!("switchboard_extensions").set(n as f64);
    }
    if let Some(sip) = sip {
        metrics::gauge!("switchboard_sip_registrations").set(sip.core.location.count() as f64);
        metrics::gauge!("switchboard_sip_connections")
            .set(sip.core.transports.connections() as f64);
    }
}
