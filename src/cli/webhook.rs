//! `webhook serve`: start the receiver of [`crate::webhook`] until SIGINT/SIGTERM, print its
//! URL (stdout) and, when it stops, what it stored.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::{Client, ClientOptions};
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::store::Warehouse;
use crate::webhook::{Limits, Options, Receiver, Refresh};

/// `webhook` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Receive Pluvo webhooks and store them in `webhook_events` (key from PLUVO_WEBHOOK_KEY)
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub bind: SocketAddr,
    /// URL path of the endpoint configured in Pluvo
    #[arg(long, default_value = "/pluvo/webhook")]
    pub path: String,
    /// Largest body accepted, in bytes (larger ones are answered 413)
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body: usize,
    /// Re-read the users and certificate days that events name (needs the API settings)
    #[arg(long)]
    pub refresh: bool,
    /// With --refresh: collect events this long after the first before refreshing, in ms
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub refresh_debounce_ms: u64,
    /// Time for a request's headers; also how long an idle connection is kept, in seconds
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub header_timeout_secs: f64,
    /// Time for a request's body once its headers are in, in seconds (408 after it)
    #[arg(long, default_value_t = 20.0, value_name = "SECS")]
    pub body_timeout_secs: f64,
    /// Connections served at once (more wait until one ends)
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// On SIGINT/SIGTERM: how long requests in flight may still take, in seconds
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub shutdown_timeout_secs: f64,
    /// Refuse deliveries whose sentDate is older than this many hours (replays); 0: no limit
    #[arg(long, default_value_t = 168)]
    pub max_age_hours: u64,
}

/// Run a `webhook` command until `shutdown` resolves (SIGINT/SIGTERM in the CLI).
pub async fn run(
    config: &Config,
    command: WebhookCommand,
    shutdown: impl Future<Output = ()>,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let WebhookCommand::Serve(args) = command;
    super::one_warehouse(config, "webhook serve")?;
    let key = config.webhook_key().cloned().ok_or_else(|| {
        UsageError::new(
            "no webhook key: set PLUVO_WEBHOOK_KEY to the key of the webhook in Pluvo's settings",
        )
    })?;
    if !args.path.starts_with('/') {
        return Err(
            UsageError::new(format!("`--path` must start with `/`, got `{}`", args.path)).into(),
        );
    }
    let refresh = match args.refresh {
        true => Some(Refresh {
            client: Client::new(
                &config.api(crate::config::Access::Read)?,
                ClientOptions::default(),
            )
            .context("creating the API client for --refresh")?,
            debounce: Duration::from_millis(args.refresh_debounce_ms),
        }),
        false => None,
    };
    let secs = |flag: &str, value: f64| {
        if value.is_finite() && value > 0.0 && value <= 3600.0 {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(UsageError::new(format!(
                "`--{flag} {value}` is not a number of seconds between 0 and 3600"
            )))
        }
    };
    let limits = Limits {
        header_timeout: secs("header-timeout-secs", args.header_timeout_secs)?,
        body_timeout: secs("body-timeout-secs", args.body_timeout_secs)?,
        max_connections: args.max_connections.max(1),
        shutdown_timeout: secs("shutdown-timeout-secs", args.shutdown_timeout_secs)?,
        max_age: (args.max_age_hours > 0).then(|| Duration::from_secs(args.max_age_hours * 3600)),
    };
    let warehouse = Warehouse::open(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))?;
    let options = Options {
        bind: args.bind,
        path: args.path,
        key,
        max_body: args.max_body,
        refresh,
        limits,
    };
    let receiver = Receiver::start(warehouse, options).await?;
    // The URL goes to stdout (scripts and tests read it); the rest to stderr.
    println!("{}", receiver.url());
    if !quiet {
        eprintln!(
            "Receiving Pluvo webhooks at {} into `{}`; Ctrl-C (or SIGTERM) stops after in-flight writes.",
            receiver.url(),
            config.db.display()
        );
    }
    shutdown.await;
    let stats = receiver
        .stop()
        .await
        .context("stopping the webhook receiver")?;
    if !quiet {
        eprintln!(
            "Stopped: {} stored, {} redeliveries, {} refused (401), {} malformed (400), {} too old (400), {} failed.",
            stats.stored,
            stats.duplicates,
            stats.unauthorized,
            stats.malformed,
            stats.stale,
            stats.failed
        );
    }
    Ok(Exit::Ok)
}
