//! `webhook serve`: a receiver that lands Pluvo webhook events in the warehouse as they happen.
//!
//! Flow: HTTP POST → `verify` (signature over the raw body, 401) → `event` (decode, 400) →
//! `writer` (group commit into `webhook_events`, one transaction per batch) → 200. Pluvo sends
//! no delivery id, so a redelivery is recognised by the SHA-256 of its body and stored once.
//! `server` holds the HTTP side and graceful shutdown; SQL lives in `store` (`webhooks.rs`)
//! and `sql/` (table `webhook_events`, views `*_events`).
//!
//! The receiver holds the warehouse's single writer for its whole life: a `sync` on the same
//! file fails at once with the "in use by another process" message while it runs.

pub mod event;
pub mod refresh;
pub mod server;
pub mod verify;
mod writer;

use std::future::Future;
use std::net::SocketAddr;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::{Client, ClientOptions};
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::store::Warehouse;

pub use refresh::Refresh;
pub use server::{Options, Receiver, Stats};

/// Errors of the receiver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on `{addr}`: {source}; pass another address or port with --bind")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving webhooks: {0}")]
    Serve(#[source] std::io::Error),
    #[error("a receiver task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `webhook` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
}

/// Run a `webhook` command until `shutdown` resolves (SIGINT/SIGTERM in the CLI).
pub async fn run(
    config: &Config,
    command: Command,
    shutdown: impl Future<Output = ()>,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let Command::Serve(args) = command;
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
            client: Client::new(&config.api()?, ClientOptions::default())
                .context("creating the API client for --refresh")?,
            debounce: Duration::from_millis(args.refresh_debounce_ms),
        }),
        false => None,
    };
    let warehouse = Warehouse::open(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))?;
    let options = Options {
        bind: args.bind,
        path: args.path,
        key,
        max_body: args.max_body,
        refresh,
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
            "Stopped: {} stored, {} redeliveries, {} refused (401), {} malformed (400), {} failed.",
            stats.stored, stats.duplicates, stats.unauthorized, stats.malformed, stats.failed
        );
    }
    Ok(Exit::Ok)
}
