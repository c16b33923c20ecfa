//! The command line: `serve` (default), `config check`, `migrate`, `extension …`,
//! `device …`.

mod device;
mod extension;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, LogFormat};
use crate::{app::App, first_start, server, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard IP PBX: SIP registrar and call server, media, REST API and web panel"
)]
#[command(
    long_about = "Switchboard IP PBX.\n\nWith no command it serves: SQLite under ./data, HTTP (API and admin panel) on 8080. \
    Configuration comes from --config FILE, else ./config.yml when present, else built-in defaults."
)]
struct Cli {
    /// Configuration file (default: ./config.yml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format: text for people, json for machines (overrides logging.format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<CliLogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CliLogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the PBX (the default). Prints where it listens and, on first start, the
    /// operator's credentials.
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Manage extensions without the web panel (the rescue path).
    #[command(subcommand)]
    Extension(extension::ExtensionCommand),
    /// Enrol this machine as a device of a PBX and report heartbeats (runs on the
    /// device; reads no PBX configuration).
    #[command(subcommand)]
    Device(device::DeviceCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it with secrets masked (exit 0 when valid).
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The device agent runs on another machine: no PBX configuration, no database.
    if let Some(Command::Device(cmd)) = cli.command {
        return device_main(cmd);
    }
    let loaded = match config::load(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = match cli.log_format {
        Some(CliLogFormat::Json) => LogFormat::Json,
        Some(CliLogFormat::Text) => LogFormat::Text,
        None => loaded.config.logging.format,
    };
    let serving = matches!(cli.command, None | Some(Command::Serve));
    // One-shot commands keep their output for the operator: only warnings are logged.
    let level = if serving {
        loaded.config.logging.level.clone()
    } else {
        "warn".into()
    };
    telemetry::init_logging(&level, format);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }

    if let Some(Command::Config(ConfigCommand::Check)) = cli.command {
        return config_check(&loaded);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => serve(loaded.config).await,
            Some(Command::Migrate) => migrate(loaded.config).await,
            Some(Command::Extension(cmd)) => extension::run(cmd, loaded.config).await,
            Some(Command::Config(_) | Command::Device(_)) => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn device_main(cmd: device::DeviceCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(device::run(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(loaded: &config::Loaded) -> ExitCode {
    let source = loaded
        .source
        .as_ref()
        .map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    match serde_saphyr::to_string(&loaded.config) {
        Ok(yaml) => {
            println!("# effective configuration from {source} (secrets masked)\n{yaml}");
            if loaded.warnings.is_empty() {
                println!("# configuration OK");
            } else {
                println!(
                    "# configuration OK with {} warning(s) (see above)",
                    loaded.warnings.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = server::start(config).await?;
    let stop = server::shutdown_signal();
    if let Some(creds) = &server.operator {
        println!("{}", first_start::banner(creds, &server.admin_url));
    }
    println!(
        "Switchboard is running: admin panel {}  (HTTP on {})",
        server.admin_url, server.http_addr
    );
    stop.await;
    server.shutdown().await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let app = App::open(config).await?;
    println!(
        "database schema is up to date ({})",
        app.db.backend().as_str()
    );
    app.db.close().await;
    Ok(())
}
