//! `switchboard device …`: the client side of device enrolment (spec 11). It runs on
//! the device, not on the PBX: it never reads the PBX configuration nor opens a
//! database; all it keeps is its state file (server, key, secret).

mod client;
mod heartbeat;
mod ident;
mod info;
mod ssh;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::json;

use client::{Api, TlsArgs};
use state::State;

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Enrol this machine with a PBX using a one-time 6-character token; the device key
    /// and secret are saved to the state file.
    Register {
        /// The PBX, e.g. https://pbx.example
        #[arg(long, value_name = "URL")]
        server: String,
        /// The one-time token code an admin created (6 letters or digits).
        #[arg(long)]
        token: String,
        /// The device key (default: `device-` and 8 random hex digits).
        #[arg(long)]
        key: Option<String>,
        /// A note for the admins (where the box is, what it does).
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Send heartbeats in the foreground: now and every interval; stops after 5
    /// consecutive failures (non-zero exit).
    Heartbeat {
        /// Seconds between heartbeats.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        interval: u64,
        /// Send one heartbeat and exit (0 when the server accepted it).
        #[arg(long)]
        once: bool,
        /// First retry delay in milliseconds (doubled at each failure); for tests.
        #[arg(long, default_value_t = 2000, hide = true)]
        backoff_ms: u64,
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Show whether this machine is registered, with which server and key.
    Status {
        /// Show the whole device key.
        #[arg(long)]
        show_key: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Forget the registration (and ask the server to delete the device when it lets a
    /// device do so).
    Unregister {
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// This device's SSH public key on the server.
    #[command(subcommand)]
    SshKey(SshKeyCommand),
    /// Fetch the server's SSH host keys, print their fingerprints, optionally add them
    /// to a known_hosts file.
    SshHostkey {
        /// Append the keys not yet there to this known_hosts file.
        #[arg(long, value_name = "FILE")]
        known_hosts: Option<PathBuf>,
        /// The server to ask (default: the one this device is registered with).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        tls: TlsArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SshKeyCommand {
    /// Send a public key to the server (for SSH access to or from this device).
    Publish {
        /// The public key file (default: ~/.ssh/id_ed25519.pub).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The account to log in as on this device.
        #[arg(long)]
        ssh_user: Option<String>,
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        tls: TlsArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StateArg {
    /// The state file (default: ~/.config/switchboard/device.json).
    #[arg(long = "state", value_name = "FILE")]
    path: Option<PathBuf>,
}

pub async fn run(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Register {
            server,
            token,
            key,
            note,
            state,
            tls,
        } => register(&server, &token, key, note, &state::path(state.path)?, &tls).await,
        DeviceCommand::Heartbeat {
            interval,
            once,
            backoff_ms,
            state,
            tls,
        } => {
            let path = state::path(state.path)?;
            let mut saved = state::require(&path)?;
            let api = Api::new(&saved.server, &tls)?;
            if once {
                return heartbeat::once(&api, &path, &mut saved).await;
            }
            let interval = Duration::from_secs(interval);
            let base = Duration::from_millis(backoff_ms.max(1));
            heartbeat::run(&api, &path, &mut saved, interval, base).await
        }
        DeviceCommand::Status { show_key, state } => status(&state::path(state.path)?, show_key),
        DeviceCommand::Unregister { state, tls } => {
            unregister(&state::path(state.path)?, &tls).await
        }
        DeviceCommand::SshKey(SshKeyCommand::Publish {
            file,
            ssh_user,
            state,
            tls,
        }) => publish_ssh_key(file, ssh_user, &state::path(state.path)?, &tls).await,
        DeviceCommand::SshHostkey {
            known_hosts,
            server,
            state,
            tls,
        } => ssh_hostkey(known_hosts, server, &state::path(state.path)?, &tls).await,
    }
}

async fn register(
    server: &str,
    token: &str,
    key: Option<String>,
    note: Option<String>,
    path: &Path,
    tls: &TlsArgs,
) -> anyhow::Result<()> {
    // Everything checkable is checked before the request: a wasted attempt still
    // counts on the server.
    let token = ident::normalize_token(token)?;
    let key = match key {
        Some(k) => {
            ident::check_key(&k)?;
            k
        }
        None => ident::generate_key(),
    };
    // A second registration would overwrite the only copy of the current secret.
    if let Some(old) = state::load(path)? {
        bail!(
            "already registered as {} with {} ({}): run `switchboard device unregister` first",
            ident::mask_key(&old.device_key),
            old.server,
            path.display()
        );
    }
    let api = Api::new(server, tls)?;
    let info = info::collect();
    let body = json!({
        "token_code": token,
        "device_info": {
            "ip_address": info.ip_address,
            "ip_lan": info.ip_lan,
            "ip_public": null,
            "mac": info.mac,
            "hostname": info.hostname,
            "note": note,
        },
    });
    let answer = api
        .call(
            Method::POST,
            &format!("/api/devices/{key}/register"),
            None,
            Some(&body),
        )
        .await?;
    let device_secret = match answer.status {
        StatusCode::OK => answer.json()?["device_secret"]
            .as_str()
            .filter(|s| !s.is_empty())
            .context("the server accepted the registration but sent no device_secret")?
            .to_owned(),
        StatusCode::BAD_REQUEST => bail!(
            "the server refused the registration: {}",
            answer.error_message()
        ),
        StatusCode::UNAUTHORIZED => {
            bail!("the token is unknown or expired: ask an admin for a new one")
        }
        StatusCode::CONFLICT => bail!(
            "the token was already used, or this device key is registered already ({})",
            answer.error_message()
        ),
        status => bail!(
            "registration failed: HTTP {status}: {}",
            answer.error_message()
        ),
    };
    let saved = State {
        server: api.server().to_owned(),
        device_key: key.clone(),
        device_secret,
        registered_at: chrono::Utc::now(),
        last_heartbeat: None,
    };
    state::save(path, &saved).with_context(|| {
        format!("registered as {key}, but the secret could not be saved: ask an admin to delete the device and register again")
    })?;
    println!("registered as {key} with {}", api.server());
    println!("state saved to {}", path.display());
    Ok(())
}

fn status(path: &Path, show_key: bool) -> anyhow::Result<()> {
    let Some(saved) = state::load(path)? else {
        println!("not registered (no state file at {})", path.display());
        return Ok(());
    };
    let key = if show_key {
        saved.device_key.clone()
    } else {
        ident::mask_key(&saved.device_key)
    };
    let last = saved
        .last_heartbeat
        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    println!("registered");
    println!("server:         {}", saved.server);
    println!("device key:     {key}");
    println!("registered at:  {}", saved.registered_at.to_rfc3339());
    println!("last heartbeat: {last}");
    Ok(())
}

/// The local state goes in every case: the operator asked to forget the registration,
/// and a server that cannot be told can still delete the device on its side.
async fn unregister(path: &Path, tls: &TlsArgs) -> anyhow::Result<()> {
    let Some(saved) = state::load(path)? else {
        println!("not registered (no state file at {})", path.display());
        return Ok(());
    };
    println!("{}", tell_server_unregister(&saved, tls).await);
    state::remove(path)?;
    println!("local registration removed ({})", path.display());
    Ok(())
}

async fn tell_server_unregister(saved: &State, tls: &TlsArgs) -> String {
    let api = match Api::new(&saved.server, tls) {
        Ok(api) => api,
        Err(e) => return format!("the server was not told: {e:#}"),
    };
    let path = format!("/api/devices/{}", saved.device_key);
    match api
        .call(
            Method::DELETE,
            &path,
            Some(&saved.device_secret),
            None::<&()>,
        )
        .await
    {
        Err(failure) => {
            format!("the server was not told ({failure}): ask an admin to delete the device")
        }
        Ok(a) if a.status.is_success() => "the server deleted the device".to_owned(),
        Ok(a) if a.status == StatusCode::NOT_FOUND => {
            "the server no longer knows this device".to_owned()
        }
        Ok(a) => format!(
            "the server did not delete the device (HTTP {}: {}): only an admin may there; ask one to delete {}",
            a.status,
            a.error_message(),
            saved.device_key
        ),
    }
}

async fn publish_ssh_key(
    file: Option<PathBuf>,
    ssh_user: Option<String>,
    path: &Path,
    tls: &TlsArgs,
) -> anyhow::Result<()> {
    let file = match file {
        Some(f) => f,
        None => home_file(".ssh/id_ed25519.pub")?,
    };
    let pubkey = ssh::read_public_key(&file)?;
    let saved = state::require(path)?;
    let api = Api::new(&saved.server, tls)?;
    let body = json!({ "pubkey": pubkey, "ssh_user": ssh_user });
    let url_path = format!("/api/devices/{}/ssh-key", saved.device_key);
    let answer = api
        .call(
            Method::PUT,
            &url_path,
            Some(&saved.device_secret),
            Some(&body),
        )
        .await?;
    match answer.status {
        s if s.is_success() => {
            println!(
                "public key {} published to {}",
                file.display(),
                saved.server
            );
            Ok(())
        }
        StatusCode::BAD_REQUEST => bail!("the server refused the key: {}", answer.error_message()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => bail!(
            "the server does not accept this device any more ({}): register again",
            answer.error_message()
        ),
        status => bail!(
            "publishing failed: HTTP {status}: {}",
            answer.error_message()
        ),
    }
}

async fn ssh_hostkey(
    known_hosts: Option<PathBuf>,
    server: Option<String>,
    path: &Path,
    tls: &TlsArgs,
) -> anyhow::Result<()> {
    let server = match server {
        Some(s) => s,
        None => state::require(path)?.server,
    };
    let api = Api::new(&server, tls)?;
    let answer = api
        .call(Method::GET, "/api/ssh-hostkey", None, None::<&()>)
        .await?;
    match answer.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => bail!("the server publishes no SSH host key"),
        status => bail!(
            "fetching the host keys failed: HTTP {status}: {}",
            answer.error_message()
        ),
    }
    let keys = ssh::parse_host_keys(&answer.body)?;
    if keys.is_empty() {
        bail!("the server sent no SSH host key");
    }
    for key in &keys {
        println!("{} {} ({})", key.fingerprint, key.host, key.key_type);
    }
    if let Some(file) = known_hosts {
        let added = ssh::append_known_hosts(&file, &keys)?;
        println!("{added} key(s) added to {}", file.display());
    }
    Ok(())
}

fn home_file(relative: &str) -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(relative)),
        _ => bail!("HOME is not set: give the file with --file"),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        device: DeviceCommand,
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Wrapper::command().debug_assert();
        let parsed = Wrapper::try_parse_from([
            "device", "ssh-key", "publish", "--file", "k.pub", "--state", "s.json",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
