//! `switchboard device heartbeat`: in the foreground (suits systemd), one heartbeat now
//! and then every interval.
//!
//! On a failure it retries after 2, 4, 8, 16 s… (capped at the interval); after
//! [`MAX_FAILURES`] consecutive failures it stops with a non-zero exit, so systemd (or
//! the operator) sees it. Failures that retrying cannot cure stop it at once:
//! `401`/`403` (the secret is wrong or revoked), `404` (the device was deleted on the
//! server) and `400` (the server refuses what this device reports). Unreachable
//! server, TLS errors, `5xx` and `429` are retried. SIGTERM/SIGINT stop it cleanly
//! (exit 0), also in the middle of a request or a wait.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::client::{Answer, Api};
use super::info;
use super::state::{self, State};

pub const MAX_FAILURES: u32 = 5;

/// How a heartbeat went.
enum Beat {
    Ok(String),
    /// Worth retrying.
    Failed(String),
    /// Retrying cannot help.
    Fatal(String),
}

/// The wait before retry number `failures` (1 = after the first failure): `base`
/// doubled each time, never longer than `cap`.
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    base.saturating_mul(factor).min(cap)
}

/// One heartbeat (`--once`): Ok when the server accepted it.
pub async fn once(api: &Api, state_path: &Path, state: &mut State) -> anyhow::Result<()> {
    match beat(api, state_path, state).await {
        Beat::Ok(message) => {
            println!("{message}");
            Ok(())
        }
        Beat::Failed(message) | Beat::Fatal(message) => bail!("heartbeat failed: {message}"),
    }
}

/// The loop, until a signal (Ok) or too many failures (Err).
pub async fn run(
    api: &Api,
    state_path: &Path,
    state: &mut State,
    interval: Duration,
    backoff_base: Duration,
) -> anyhow::Result<()> {
    // Registered before the first request, so an early SIGTERM is a clean stop too.
    let stop = crate::server::shutdown_signal();
    tokio::pin!(stop);
    let mut failures = 0;
    loop {
        let outcome = tokio::select! {
            beat = beat(api, state_path, state) => beat,
            () = &mut stop => return stopped(),
        };
        let wait = match outcome {
            Beat::Ok(message) => {
                failures = 0;
                println!("{message}");
                interval
            }
            Beat::Fatal(message) => bail!("heartbeat stopped: {message}"),
            Beat::Failed(message) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    bail!(
                        "heartbeat stopped after {failures} consecutive failures; last: {message}"
                    );
                }
                let wait = backoff(backoff_base, interval, failures);
                println!(
                    "heartbeat failed ({failures}/{MAX_FAILURES}): {message}; retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {},
            () = &mut stop => return stopped(),
        }
    }
}

fn stopped() -> anyhow::Result<()> {
    println!("heartbeat stopped by signal");
    Ok(())
}

/// Sends the current addresses; on success records the time in the state file.
async fn beat(api: &Api, state_path: &Path, state: &mut State) -> Beat {
    let now = info::collect();
    let body = json!({ "ip_address": now.ip_address, "ip_lan": now.ip_lan, "mac": now.mac });
    let path = format!("/api/devices/{}/online", state.device_key);
    let answer = match api
        .call(Method::POST, &path, Some(&state.device_secret), Some(&body))
        .await
    {
        Ok(a) => a,
        Err(failure) => return Beat::Failed(failure.to_string()),
    };
    match judge(&answer) {
        Beat::Ok(message) => {
            state.last_heartbeat = Some(chrono::Utc::now());
            if let Err(e) = state::save(state_path, state) {
                eprintln!("warning: heartbeat not recorded in the state file: {e:#}");
            }
            Beat::Ok(message)
        }
        other => other,
    }
}

fn judge(answer: &Answer) -> Beat {
    let status = answer.status;
    if status == StatusCode::OK {
        let v = answer.json().unwrap_or_default();
        return Beat::Ok(format!(
            "heartbeat ok: the server sees {} (last_seen {})",
            v["ip_address"].as_str().unwrap_or("?"),
            v["last_seen"].as_str().unwrap_or("?")
        ));
    }
    let message = answer.error_message();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Beat::Fatal(format!(
            "the server refuses this device's secret ({message}): the device was unregistered \
             or the state file is stale; register again with a new token"
        )),
        StatusCode::NOT_FOUND => Beat::Fatal(format!(
            "the server does not know this device ({message}): it was deleted there; \
             register again with a new token"
        )),
        StatusCode::BAD_REQUEST => {
            Beat::Fatal(format!("the server refuses the heartbeat: {message}"))
        }
        _ => Beat::Failed(format!("HTTP {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_interval() {
        let s = Duration::from_secs;
        let waits: Vec<_> = (1..=6).map(|n| backoff(s(2), s(60), n)).collect();
        assert_eq!(waits, [s(2), s(4), s(8), s(16), s(32), s(60)]);
        assert_eq!(backoff(s(2), s(10), 4), s(10));
        assert_eq!(backoff(s(2), s(60), 200), s(60), "no overflow");
    }

    #[test]
    fn only_curable_failures_are_retried() {
        let answer = |status, body: &str| Answer {
            status,
            body: body.into(),
        };
        assert!(matches!(judge(&answer(StatusCode::OK, "{}")), Beat::Ok(_)));
        for fatal in [
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
        ] {
            assert!(
                matches!(judge(&answer(fatal, "")), Beat::Fatal(_)),
                "{fatal}"
            );
        }
        for retried in [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert!(
                matches!(judge(&answer(retried, "")), Beat::Failed(_)),
                "{retried}"
            );
        }
    }
}
