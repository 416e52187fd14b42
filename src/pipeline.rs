//! The sync pipeline the commands share (as dlt calls it): authenticate → open the warehouse
//! (single writer) → run the streams → install the analyst views and publish the Parquet
//! snapshot. Plain options in, an [`Outcome`] or a typed [`Error`] out; progress goes to an
//! injected [`Progress`] sink, so the same function serves `sync`, `demo`, the benchmarks and
//! the tests. Nothing here prints.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use crate::api::{AUTO_CEILING, Client, ClientOptions, Concurrency};
use crate::config::{Config, ConfigError};
use crate::error::UsageError;
use crate::export::remote::{self, RemoteError, Target};
use crate::export::{self, ExportError, Report};
use crate::store::{Deletes, StoreError, Warehouse};
use crate::streams::{self, Outcome, Progress};

/// What a sync is asked to do.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Stream names; empty = all.
    pub streams: Vec<String>,
    /// Ignore checkpoints: re-read everything and reconcile.
    pub full_refresh: bool,
    /// Requests in flight at once, or `auto`.
    pub concurrency: Concurrency,
    /// A person checked: the URL now serves another organisation, and that is intended (its
    /// rows replace the old organisation's, which are marked deleted).
    pub accept_organisation: bool,
    /// A person checked: record the deletions the guard would refuse (see
    /// [`crate::store::Deletes`]).
    pub accept_deletes: bool,
    /// Requests in flight shared with the other organisations of the run, if any
    /// ([`ClientOptions::budget`]).
    pub budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            streams: Vec::new(),
            full_refresh: false,
            // `auto` since issue 19, from 4 (the fixed default until then) up to 32; the
            // figures that decided it are in docs/sync.md.
            concurrency: Concurrency::Auto,
            accept_organisation: false,
            accept_deletes: false,
            budget: None,
        }
    }
}

/// Why a sync stopped. Each message says what was being done; the cause follows in the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("creating the API client")]
    Client(#[source] crate::api::Error),
    #[error(transparent)]
    Auth(crate::api::Error),
    #[error("opening the warehouse `{}`", db.display())]
    Open {
        db: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error(transparent)]
    Organisation(Box<streams::identity::Error>),
    #[error("recording which organisation the warehouse holds")]
    RecordOrganisation(#[source] Box<StoreError>),
    #[error("applying `warehouse.memory_limit`")]
    MemoryLimit(#[source] Box<StoreError>),
    #[error("sync")]
    Sync(#[source] streams::Error),
    /// Some streams failed; the others were merged and recorded. Carries the whole outcome
    /// so that the caller can still show what happened.
    #[error("{} of {} streams failed: {}", .0.streams.iter().filter(|s| s.error.is_some()).count(),
        .0.streams.len(), .0.streams.iter().filter_map(|s| s.error.as_deref()).collect::<Vec<_>>().join("; "))]
    StreamsFailed(Box<Outcome>),
    #[error("installing the analyst views")]
    Views(#[source] duckdb::Error),
    #[error("the sync succeeded, but publishing its Parquet snapshot to `{}` failed", dir.display())]
    Publish {
        dir: PathBuf,
        #[source]
        source: Box<ExportError>,
    },
    #[error("closing the warehouse")]
    Close(#[source] Box<StoreError>),
    /// The task running a sync ended abnormally (a panic), with its message.
    #[error("the sync stopped unexpectedly: {0}")]
    Task(String),
    #[error("opening `export.to`")]
    Target(#[source] Box<RemoteError>),
    #[error(
        "the sync succeeded and its snapshot was published in `{}`, but publishing it to `{url}` \
         (`export.to`) failed; the next sync (or `pluvo-warehouse export`) publishes it again",
        dir.display()
    )]
    Remote {
        dir: PathBuf,
        url: String,
        #[source]
        source: Box<RemoteError>,
    },
}

impl Error {
    /// A usage or configuration error (exit code 2): the variants that wrap one
    /// transparently, which an error chain would otherwise not show.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Config(_) => true,
            Error::Organisation(e) => matches!(**e, streams::identity::Error::Other(_)),
            Error::Auth(e) => e.is_auth(),
            _ => false,
        }
    }

    /// The outcome of a run whose streams partly failed, for printing.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            Error::StreamsFailed(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// `sync`: authenticate, open the warehouse, run the streams, publish. Credentials and URL
/// are checked first: when they are wrong, the warehouse is not even opened. Returns an error
/// when any stream failed (after recording the run; nothing is published then).
pub async fn sync(
    config: &Config,
    options: &SyncOptions,
    progress: Arc<dyn Progress>,
) -> Result<Outcome, Error> {
    streams::select(&options.streams).map_err(|e| UsageError::new(e.to_string()))?;
    // Before any request: a typo in the URL costs nothing.
    let target = export_target(config)?;
    let client = Client::new(
        &config.api(crate::config::Access::Read)?,
        ClientOptions {
            concurrency: match options.concurrency {
                Concurrency::Fixed(n) => n,
                Concurrency::Auto => AUTO_CEILING,
            },
            adaptive_concurrency: options.concurrency == Concurrency::Auto,
            budget: options.budget.clone(),
            ..ClientOptions::default()
        },
    )
    .map_err(Error::Client)?;
    client.authenticate().await.map_err(Error::Auth)?;
    let warehouse =
        Warehouse::open_with_memory_limit(&config.db, &config.memory_limit).map_err(|source| {
            match source {
                StoreError::Setting { .. } => Error::MemoryLimit(Box::new(source)),
                source => Error::Open {
                    db: config.db.clone(),
                    source: Box::new(source),
                },
            }
        })?;
    // Nothing is read into the warehouse from an organisation it does not hold.
    let base_url = config
        .api(crate::config::Access::Read)?
        .base_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let warehouse = std::sync::Mutex::new(warehouse);
    streams::identity::check(&client, &warehouse, &base_url, options.accept_organisation)
        .await
        .map_err(|e| Error::Organisation(Box::new(e)))?;
    let mut warehouse = warehouse.into_inner().unwrap_or_else(|e| e.into_inner());
    warehouse.set_deletes(if options.accept_deletes || options.accept_organisation {
        Deletes::Accepted
    } else {
        Deletes::Guarded {
            max_share: config.max_delete_share,
        }
    });
    let run = streams::Options {
        streams: options.streams.clone(),
        full_refresh: options.full_refresh,
    };
    let (warehouse, outcome) = streams::run(&client, warehouse, &run, progress)
        .await
        .map_err(Error::Sync)?;
    if outcome.failed() {
        warehouse.close().map_err(|e| Error::Close(Box::new(e)))?;
        return Err(Error::StreamsFailed(Box::new(outcome)));
    }
    streams::identity::record(&warehouse, &base_url)
        .map_err(|e| Error::RecordOrganisation(Box::new(e)))?;
    // Readers are never locked out: they read this snapshot while the next sync writes.
    let report = publish(&warehouse, config)?;
    let mut outcome = outcome;
    outcome.publish_seconds = Some(report.seconds);
    tracing::info!(dir = %report.dir.display(), seconds = report.seconds, "Snapshot published.");
    warehouse.close().map_err(|e| Error::Close(Box::new(e)))?;
    if let Some(target) = &target {
        outcome.published = Some(publish_remote(target, &report).await?);
    }
    Ok(outcome)
}

/// The object storage of `export.to` (`PLUVO_EXPORT_TO`), opened with the credentials of the
/// environment; a URL the tool cannot write to is a configuration error naming the setting.
pub fn export_target(config: &Config) -> Result<Option<Target>, Error> {
    let Some((url, origin)) = &config.export_to else {
        return Ok(None);
    };
    match Target::open(url) {
        Ok(target) => Ok(Some(target)),
        Err(e @ RemoteError::Unsupported { .. }) => Err(Error::Config(ConfigError::Invalid {
            key: "export.to",
            origin: origin.clone(),
            problem: e.to_string(),
        })),
        Err(e) => Err(Error::Target(Box::new(e))),
    }
}

/// Upload the published local snapshot `report` to `target` and make it current there.
pub async fn publish_remote(target: &Target, report: &Report) -> Result<remote::Published, Error> {
    remote::publish(
        target,
        &report.dir,
        &report.manifest,
        remote::GRACE,
        Utc::now(),
    )
    .await
    .map_err(|source| Error::Remote {
        dir: report.dir.clone(),
        url: target.display().to_string(),
        source: Box::new(source),
    })
}

/// The end of a successful sync: install the analyst views, then publish the snapshot that
/// readers use while the next sync holds the file.
pub fn publish(warehouse: &Warehouse, config: &Config) -> Result<Report, Error> {
    crate::views::install(warehouse.connection()).map_err(Error::Views)?;
    let options = export::Options {
        // Row groups the writer's memory cap can hold (a Parquet row group does not spill).
        row_group_bytes: warehouse.memory_limit().map(export::row_group_bytes),
        group_readable: config.export_group_readable,
        ..export::Options::new(&config.export_dir)
    };
    export::export(warehouse.connection(), &options, Utc::now()).map_err(|source| Error::Publish {
        dir: config.export_dir.clone(),
        source: Box::new(source),
    })
}
