//! Several organisations in one run (`sync --org NAME`, `sync --all-orgs`): each named
//! organisation of `[orgs]` is synced by [`crate::pipeline::sync`] into its own warehouse, all
//! at once and within ONE request budget (the `--concurrency` permits are shared by their
//! clients, not given to each); then their snapshots are published side by side with an `org`
//! partition ([`crate::export::orgs::combine`]) and, with `export.to`, uploaded as one
//! snapshot. A failing organisation (wrong secret, server down, a failed stream) is reported
//! with its error and does not stop the others; the combined snapshot then holds its last
//! published data. Nothing here prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use crate::api::{AUTO_CEILING, Concurrency};
use crate::config::{Config, ConfigError};
use crate::export::orgs::{Combined, combine};
use crate::export::remote::Published;
use crate::export::{self, ExportError};
use crate::pipeline::{self, SyncOptions};
use crate::streams::{Outcome, Silent};

/// How one organisation's sync ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrgResult {
    pub org: String,
    /// Its warehouse file.
    pub db: PathBuf,
    pub ok: bool,
    /// The error chain, one line, naming what to fix (no secret: errors never hold one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run summary, when the sync ran (also when some of its streams failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    pub seconds: f64,
}

/// What a run over several organisations did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrgsOutcome {
    pub orgs: Vec<OrgResult>,
    /// The combined snapshot (every configured organisation's current data), when published
    /// (not when no organisation has published one yet).
    pub dataset: Option<Combined>,
    /// Its upload to `export.to`, when configured.
    pub published: Option<Published>,
    /// Why the combined snapshot or its upload failed (the syncs themselves are recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_error: Option<String>,
}

impl OrgsOutcome {
    /// The organisations whose sync failed.
    pub fn failed(&self) -> Vec<&str> {
        self.orgs
            .iter()
            .filter(|o| !o.ok)
            .map(|o| o.org.as_str())
            .collect()
    }
}

/// Errors that stop the whole run: before any sync (a bad name, a bad `export.to`), or in
/// publishing the combined snapshot after them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pipeline(#[from] Box<pipeline::Error>),
}

impl Error {
    /// A configuration error (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Config(_) => true,
            Error::Pipeline(e) => e.is_usage(),
        }
    }
}

/// Sync the organisations `names` of `config` (all of `[orgs]` when empty) at once, then
/// publish every configured organisation's current snapshot side by side. Returns per
/// organisation how it went; an error only for what stops the whole run.
pub async fn sync(
    config: &Config,
    names: &[String],
    options: &SyncOptions,
) -> Result<OrgsOutcome, Error> {
    // Every name is checked before anything runs: a typo syncs nothing.
    let names: Vec<String> = if names.is_empty() {
        config.org_names()
    } else {
        names.to_vec()
    };
    for name in &names {
        if !config.orgs.iter().any(|o| &o.name == name) {
            return Err(ConfigError::UnknownOrg {
                name: name.clone(),
                path: config.file.clone(),
                known: config.org_names().join(", "),
            }
            .into());
        }
    }
    config.check_org_overrides()?;
    let target = pipeline::export_target(config).map_err(Box::new)?;
    // One budget for all: `--concurrency 8` is 8 requests in flight in all, whatever the
    // number of organisations (each client may use all of it when the others are idle).
    let budget = Arc::new(tokio::sync::Semaphore::new(match options.concurrency {
        Concurrency::Fixed(n) => n.max(1),
        Concurrency::Auto => AUTO_CEILING,
    }));
    let options = SyncOptions {
        budget: Some(budget),
        ..options.clone()
    };
    // One task each, so that one organisation's merge (DuckDB work, on its task's thread)
    // does not hold back another's requests.
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let name = name.clone();
            let org = config.org(&name);
            let db = config
                .orgs
                .iter()
                .find(|o| o.name == name)
                .map(|o| o.db.clone())
                .unwrap_or_default();
            let options = options.clone();
            let span = tracing::info_span!("org", org = %name);
            let task = tokio::spawn(
                async move {
                    let started = Instant::now();
                    let result = match org {
                        Ok(org) => pipeline::sync(&org, &options, Arc::new(Silent)).await,
                        Err(e) => Err(e.into()),
                    };
                    (result, started.elapsed().as_secs_f64())
                }
                .instrument(span),
            );
            (name, db, task)
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for (name, db, task) in tasks {
        let (result, seconds) = match task.await {
            Ok(done) => done,
            // A panic in one organisation's sync is that organisation's failure.
            Err(e) => (Err(pipeline::Error::Task(e.to_string())), 0.0),
        };
        results.push(match result {
            Ok(outcome) => OrgResult {
                org: name,
                db,
                ok: true,
                error: None,
                outcome: Some(outcome),
                seconds,
            },
            Err(e) => {
                let error = crate::error::message(&e);
                tracing::error!(org = %name, "{error}");
                OrgResult {
                    outcome: e.outcome().cloned(),
                    org: name,
                    db,
                    ok: false,
                    error: Some(error),
                    seconds,
                }
            }
        });
    }

    let parts: Vec<(String, PathBuf)> = config
        .orgs
        .iter()
        .map(|o| (o.name.clone(), o.export_dir.clone()))
        .collect();
    let (dataset, published, publish_error) = match publish(config, &parts, &target).await {
        Ok((dataset, published)) => (dataset, published, None),
        Err(e) => {
            let error = crate::error::message(&e);
            tracing::error!("{error}");
            (None, None, Some(error))
        }
    };
    Ok(OrgsOutcome {
        orgs: results,
        dataset,
        published,
        publish_error,
    })
}

/// Why publishing the organisations side by side failed.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("publishing the organisations side by side in `{}`", dir.display())]
    Combine {
        dir: PathBuf,
        #[source]
        source: Box<ExportError>,
    },
    #[error(transparent)]
    Remote(Box<pipeline::Error>),
}

/// The combined snapshot of `parts` (name, export folder), then its upload to `target`.
async fn publish(
    config: &Config,
    parts: &[(String, PathBuf)],
    target: &Option<crate::export::remote::Target>,
) -> Result<(Option<Combined>, Option<Published>), PublishError> {
    if !parts
        .iter()
        .any(|(_, dir)| export::current_snapshot(dir).is_some())
    {
        return Ok((None, None));
    }
    let dataset = combine(
        parts,
        &config.export_dir,
        Utc::now(),
        config.export_group_readable,
    )
    .map_err(|source| PublishError::Combine {
        dir: config.export_dir.clone(),
        source: Box::new(source),
    })?;
    tracing::info!(
        dir = %dataset.report.dir.display(),
        orgs = dataset.report.manifest.orgs.len(),
        "Organisations published side by side."
    );
    let published = match target {
        Some(target) => Some(
            pipeline::publish_remote(target, &dataset.report)
                .await
                .map_err(|e| PublishError::Remote(Box::new(e)))?,
        ),
        None => None,
    };
    Ok((Some(dataset), published))
}
