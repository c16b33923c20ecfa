//! `switchboard extension …`: the operator's tools without the web panel, on the same
//! services as the API.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;
use crate::config::Config;
use crate::features::Actor;
use crate::features::extensions::import::{ImportRow, parse_csv};
use crate::features::extensions::model::NewExtension;
use crate::role::Role;
use crate::store::extensions::ListFilter;

#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Create an extension; credentials not given are generated and printed once.
    Add {
        number: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_parser = ["admin", "user"], default_value = "user")]
        role: String,
        /// Read the web password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        allow_external: bool,
    },
    /// List extensions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a web password (the rescue path for a forgotten admin password). Without
    /// --password-stdin a temporary one is generated, printed, and must be changed at
    /// the next login.
    SetPassword {
        number: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new voicemail PIN (generated and printed unless --pin-stdin).
    ResetPin {
        number: String,
        /// Read the PIN from the first line of standard input.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Turn off an extension's second factors (the rescue path for an admin who lost
    /// their authenticator and backup codes); they enrol again at the next login.
    DisableMfa { number: String },
    /// Create or update extensions from a CSV file with a header row (or a JSON array
    /// when the file ends in .json).
    Import { file: PathBuf },
}

fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from stdin"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(line)
}

pub async fn run(cmd: ExtensionCommand, config: Config) -> anyhow::Result<()> {
    let app = App::open(config).await?;
    let result = dispatch(cmd, &app).await;
    app.db.close().await;
    result
}

async fn dispatch(cmd: ExtensionCommand, app: &App) -> anyhow::Result<()> {
    let svc = &app.extensions;
    match cmd {
        ExtensionCommand::Add {
            number,
            name,
            email,
            role,
            password_stdin,
            allow_external,
        } => {
            let password = if password_stdin {
                Some(read_stdin_line("password")?)
            } else {
                None
            };
            let created = svc
                .create(
                    &Actor::Cli,
                    NewExtension {
                        number,
                        name,
                        email,
                        role: Role::parse(&role),
                        password,
                        allow_external: Some(allow_external),
                        ..Default::default()
                    },
                )
                .await?;
            println!(
                "created extension {} ({})",
                created.extension.number, created.extension.name
            );
            let c = &created.credentials;
            if let Some(p) = &c.password {
                println!("  password:      {p}   (must be changed at first login)");
            }
            if let Some(s) = &c.sip_secret {
                println!("  SIP secret:    {s}");
            }
            if let Some(p) = &c.voicemail_pin {
                println!("  voicemail PIN: {p}");
            }
        }
        ExtensionCommand::List { json } => {
            let (items, total) = svc.list(&ListFilter::default(), i64::MAX, 0).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!(
                    "{:<14} {:<28} {:<6} {:<7} EMAIL",
                    "NUMBER", "NAME", "ROLE", "ACTIVE"
                );
                for e in &items {
                    println!(
                        "{:<14} {:<28} {:<6} {:<7} {}",
                        e.number,
                        e.name,
                        e.role.as_str(),
                        if e.active { "yes" } else { "no" },
                        e.email.as_deref().unwrap_or("")
                    );
                }
                println!("{total} extension(s)");
            }
        }
        ExtensionCommand::SetPassword {
            number,
            password_stdin,
        } => {
            let given = if password_stdin {
                Some(read_stdin_line("password")?)
            } else {
                None
            };
            let must_change = given.is_none();
            let generated = svc
                .set_password(&Actor::Cli, &number, given, must_change)
                .await?;
            match generated {
                Some(p) => println!(
                    "extension {number}: temporary password {p}\nIt must be changed at the next login. All sessions were logged out."
                ),
                None => println!("extension {number}: password set. All sessions were logged out."),
            }
        }
        ExtensionCommand::ResetPin { number, pin_stdin } => {
            let given = if pin_stdin {
                Some(read_stdin_line("PIN")?)
            } else {
                None
            };
            match svc.set_pin(&Actor::Cli, &number, "pin", given).await? {
                Some(pin) => println!("extension {number}: new voicemail PIN {pin}"),
                None => println!("extension {number}: voicemail PIN set"),
            }
        }
        ExtensionCommand::DisableMfa { number } => {
            app.mfa
                .disable(&Actor::Cli, &number, None, false, None)
                .await?;
            println!("extension {number}: second factors removed; the password alone logs in");
        }
        ExtensionCommand::Import { file } => import(app, &file).await?,
    }
    Ok(())
}

async fn import(app: &App, file: &std::path::Path) -> anyhow::Result<()> {
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let rows: Vec<ImportRow> =
            crate::api::extract::parse_json(&data).map_err(|e| anyhow::anyhow!(e.message))?;
        rows.into_iter().map(Ok).collect()
    } else {
        parse_csv(&data)?
    };
    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} importing [{bar:40}] {pos}/{len} rows ({per_sec}, {eta} left)",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let progress_bar = bar.clone();
    let report = app
        .extensions
        .import(&Actor::Cli, rows, &move |done, _total| {
            progress_bar.set_position(done as u64)
        })
        .await?;
    bar.finish_and_clear();
    println!(
        "created {}, updated {}, skipped {}",
        report.created, report.updated, report.skipped
    );
    for s in &report.skipped_rows {
        println!(
            "  row {} ({}): {}",
            s.row,
            if s.number.is_empty() { "-" } else { &s.number },
            s.reason
        );
    }
    Ok(())
}
