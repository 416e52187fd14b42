//! The command layer: clap types, dispatch, and everything printed to the terminal. Only
//! this folder uses clap, `anyhow` and `indicatif`; library modules return typed values and
//! typed errors, and nothing outside `cli/` imports it.
//!
//! One file per subcommand (`sync.rs`, `push.rs`, `query.rs`, …), each with its clap
//! arguments and a `run` that calls the library and prints; `output.rs` holds what they share
//! (the `--format` switch, the table printer), `progress.rs` the progress bars.

pub mod bench;
mod completions;
mod demo;
mod doctor;
mod export;
mod init;
pub mod output;
pub mod progress;
mod push;
mod query;
mod report;
mod sim;
mod status;
mod sync;
mod views;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::{Config, Flags};
use crate::error::{Exit, exit_code};

const EXIT_CODES: &str = "\
Exit codes: 0 ok, 1 error, 2 usage or configuration error, 3 finished but some rows failed.
Configuration: pluvo-warehouse.toml (see --config), then PLUVO_URL, PLUVO_CLIENT_ID,
PLUVO_CLIENT_SECRET, PLUVO_SCOPE from the environment, then flags.";

/// Everything this process creates is for its owner only: the DuckDB file, its WAL and
/// spill files (which DuckDB creates itself), exports, answers. Files 0600, folders 0700,
/// whatever the inherited umask; `warehouse.export_group_readable` opens exports to the
/// group explicitly.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask(2) only sets this process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// `pluvo-warehouse query … | head`: when the reader goes away, end as Unix tools do (killed by
/// SIGPIPE, no message) instead of panicking in `println!`. Only for commands that open no
/// socket ([`Command::offline`]): vectored socket writes (`writev`) raise SIGPIPE too, and a
/// TLS handshake with a server that hangs up must be an error, not a silent death.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Pluvo learning platform → local DuckDB warehouse, Parquet export, and SQL-driven write-back.
#[derive(Debug, Parser)]
#[command(name = "pluvo-warehouse", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file [default: pluvo-warehouse.toml; env PLUVO_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// DuckDB warehouse file [default: pluvo.duckdb; env PLUVO_DB]
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Organisation base URL, e.g. https://acme.pluvo.com [env PLUVO_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Only errors and final results
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines on stderr as text, or as one JSON object per line (for log shippers)
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PLUVO_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the built-in simulator, sync it into a warehouse, and show what the tool does
    Demo(demo::DemoArgs),
    /// Extract Pluvo into the warehouse, incrementally (resumes after a crash)
    Sync(sync::SyncArgs),
    /// Publish every table as Parquet (atomic snapshot + manifest); `export compliance`
    Export(export::ExportArgs),
    /// Run SQL against the warehouse (its published snapshot while a sync writes it)
    Query(query::QueryArgs),
    /// Write a shareable HTML report: charts, data freshness and the compliance roster
    Report(report::ReportArgs),
    /// Install the analyst views of sql/views/ into the warehouse and list them
    Views(views::ViewsArgs),
    /// Write back: apply an action to the users a SQL query selects (plan first, exactly once)
    Push(push::PushArgs),
    /// Write a commented pluvo-warehouse.toml and list the OAuth scopes the client needs
    Init(init::InitArgs),
    /// Check configuration, token endpoint, credentials, scopes and the database file
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, ...)
    Completions(completions::CompletionsArgs),
    /// Last run per stream, checkpoints, row counts, pending push plans (read-only)
    Status(status::StatusArgs),
    /// The built-in Pluvo simulator (tests, demos, benchmarks)
    Sim {
        #[command(subcommand)]
        command: sim::SimCommand,
    },
    /// Receive Pluvo webhooks into the warehouse in real time
    Webhook {
        #[command(subcommand)]
        command: webhook::WebhookCommand,
    },
    /// Benchmarks that print figures (medians, ratios, memory)
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

impl Command {
    /// Commands that make no network connection: their output is what gets piped to `head`.
    fn offline(&self) -> bool {
        matches!(
            self,
            Command::Query(_) | Command::Status(_) | Command::Views(_) | Command::Completions(_)
        )
    }
}

/// Parse the command line, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    private_files();
    let cli = Cli::parse();
    if cli.command.offline() {
        quiet_on_closed_pipe();
    }
    let log_format = cli.log_format;
    init_logging(cli.quiet, cli.verbose, log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(err) => {
            let message = crate::error::message(err.as_ref());
            match log_format {
                LogFormat::Text => eprintln!("error: {message}"),
                // The final error is a log line too, so a shipper sees why a run failed.
                LogFormat::Json => eprintln!(
                    r#"{{"timestamp":{},"level":"ERROR","fields":{{"message":{}}}}}"#,
                    serde_json::Value::from(
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    ),
                    serde_json::Value::from(message),
                ),
            }
            exit_code(err.as_ref()).into()
        }
    }
}

fn init_logging(quiet: bool, verbose: u8, format: LogFormat) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "pluvo_warehouse=info,warn",
        (false, 1) => "pluvo_warehouse=debug,info",
        (false, _) => "pluvo_warehouse=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLUVO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let color = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(color).try_init(),
        LogFormat::Json => logs.json().flatten_event(false).try_init(),
    };
}

async fn run(cli: Cli) -> Result<Exit> {
    let flags = Flags {
        config: cli.config.clone(),
        db: cli.db.clone(),
        url: cli.url.clone(),
    };
    let quiet = cli.quiet;
    match cli.command {
        Command::Demo(args) => demo::run(&args, quiet).await,
        Command::Sync(args) => sync::run(&Config::load(&flags)?, &args, quiet).await,
        Command::Export(args) => export::run(&Config::load(&flags)?, &args).await,
        Command::Query(args) => query::run(&Config::load(&flags)?, &args).await,
        Command::Report(args) => report::run(&Config::load(&flags)?, &args),
        Command::Views(args) => views::run(&Config::load(&flags)?, &args),
        Command::Push(args) => push::run(&Config::load(&flags)?, &args, quiet).await,
        Command::Init(args) => init::run(&args, &flags),
        Command::Doctor(args) => doctor::run(&flags, &args).await,
        Command::Completions(args) => completions::run(&args),
        Command::Status(args) => status::run(&Config::load(&flags)?, &args),
        Command::Sim { command } => sim::run(command).await,
        Command::Webhook { command } => {
            webhook::run(&Config::load(&flags)?, command, shutdown_signal(), quiet).await
        }
        Command::Bench { command } => bench::run(command).await,
    }
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed by this call, not
/// at the first poll: a receiver prints its URL before it waits, and a SIGTERM sent right after
/// that line must stop it gracefully rather than kill it (the default action).
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Commands that work on one warehouse (`export`, `views`, `webhook serve`) in a configuration
/// of only `[orgs]`, with no warehouse file at the default path: there is no `[pluvo]`
/// warehouse to work on, and creating an empty one (which a later `export` would publish over
/// the organisations' dataset) helps nobody. Say how to name one.
fn one_warehouse(config: &Config, command: &str) -> Result<(), crate::error::UsageError> {
    if !config.orgs_only() || config.db.exists() {
        return Ok(());
    }
    let example = config
        .org_names()
        .first()
        .and_then(|name| config.org_files(name).ok())
        .map(|org| org.db.display().to_string())
        .unwrap_or_else(|| "NAME.duckdb".into());
    Err(crate::error::UsageError::new(format!(
        "`{}` names organisations ({}) and no `[pluvo]` warehouse: `sync --org NAME` and \
         `sync --all-orgs` publish them (each on its own and side by side); to use `{command}` \
         on one organisation's warehouse, name its file, e.g. `pluvo-warehouse --db {example} \
         {command}`",
        config.file.display(),
        config.org_names().join(", "),
    )))
}
