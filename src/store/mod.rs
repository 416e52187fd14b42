//! The DuckDB warehouse: schema and migrations, staging + merge by key, checkpoints, runs.
//!
//! Inputs: Arrow batches built by the streams (`batch.rs` makes them from rows) for a table
//! described by a [`TableSpec`] (`tables.rs`). Outputs: the tables in `sql/schema/*.sql`.
//! One [`Warehouse`] (`duckdb/`) is the single writer of one file. Pages are staged and merged
//! in groups sized to the memory cap (or every [`MERGE_AFTER`]); each merge, the keys it saw
//! and the checkpoint covering it commit in one transaction (a merge larger than the cap
//! commits in parts, the checkpoint with the last), so a killed sync resumes from its last
//! merged checkpoint with nothing lost and nothing doubled. Unchanged rows (same content
//! hash) are never written; rows missing from a complete scan are soft-deleted.
//!
//! Never calls HTTP and never prints; time comes from an injected [`Clock`].
//!
//! How the sync uses it (one writer task owns the [`Warehouse`]; streams send it pages):
//! ```ignore
//! let mut w = Warehouse::open(&config.db)?;            // fails at once if another sync runs
//! let run = w.begin_run(&["users", "portfolio"])?;
//! w.begin_stream(run, "users")?;
//! if full_refresh { w.reset_scan("users")?; }          // else resume from:
//! let from = w.checkpoint("users")?;                   // the stream's own JSON, or None
//! // per page: staged, merged once enough rows are staged (returns what was merged, if any)
//! let merged = w.stage("users", run, &cursor_json, vec![(&tables::USERS, batch)])?;
//! // after the last page (finish_scan merges what is still staged first):
//! let deleted = w.finish_scan("users", run, ScanEnd {
//!     complete: true, tables: vec![(&tables::USERS, Scope::All)], next_checkpoint: None })?;
//! w.record_stream(run, "users", &StreamStats { rows, rows_deleted: deleted, .. })?;
//! w.finish_run(run, RunStatus::Succeeded, None)?;
//! w.close()?;
//! ```

pub mod alloc;
mod batch;
mod duckdb;
pub mod guard;
mod schema;
pub mod sqltime;
pub mod tables;
mod webhooks;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use batch::{BatchBuilder, Cell, Prepared, Row, prepare};
pub use duckdb::{
    Deletes, GUARD_FLOOR, MAX_DELETE_SHARE, MERGE_AFTER, MergeStats, RunId, RunStatus, ScanEnd,
    Scope, StreamStats, WRITER_MEMORY_LIMIT, Warehouse, duckdb_config, lock_holder_pid,
    memory_bytes,
};
pub use schema::SCHEMA_VERSION;
pub use tables::{Column, ColumnType, HistorySpec, TableSpec, portfolio_item_key};
pub use webhooks::{WEBHOOK_VIEWS, WebhookRow};

/// Every row of `sql`, mapped by `row`; a failure to prepare, run or read it goes through
/// `err` (which names what was being read, in the caller's error type).
pub fn query_all<T, E>(
    conn: &::duckdb::Connection,
    sql: &str,
    err: impl Fn(::duckdb::Error) -> E,
    row: impl FnMut(&::duckdb::Row<'_>) -> ::duckdb::Result<T>,
) -> Result<Vec<T>, E> {
    let mut stmt = conn.prepare(sql).map_err(&err)?;
    let rows = stmt.query_map([], row).map_err(&err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// Errors of the warehouse. Messages name the file or table in backticks and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "`{}` is in use by another process ({}e.g. a running sync or an open notebook); \
         wait for it to finish or close it, then retry",
        path.display(), pid.map(|p| format!("PID {p}, ")).unwrap_or_default()
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error(
        "`{}` has schema version {found}, this pluvo-warehouse knows up to {known}; upgrade the tool",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("`{}` does not exist; run `pluvo-warehouse sync` first", path.display())]
    Missing { path: PathBuf },
    #[error("`{}` is not a pluvo-warehouse database ({reason}); pass another --db", path.display())]
    Foreign { path: PathBuf, reason: String },
    #[error(
        "cannot open `{}`: {cause}; if the file is damaged, restore it from a backup, or move \
         it aside and run `pluvo-warehouse sync` to build a new one",
        path.display()
    )]
    Open {
        path: PathBuf,
        cause: ::duckdb::Error,
    },
    #[error(
        "cannot write the warehouse `{}`: the folder `{}` {problem}; DuckDB writes a `.wal` \
         file beside the database. Make the folder writable, or pass --db in a writable folder",
        path.display(), dir.display()
    )]
    Unwritable {
        path: PathBuf,
        dir: PathBuf,
        problem: String,
    },
    #[error("migrating `{}` to schema version {version}: {cause}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        cause: ::duckdb::Error,
    },
    #[error("merging a page into `{table}`: {cause}")]
    Merge {
        table: &'static str,
        cause: ::duckdb::Error,
    },
    #[error(
        "nothing was deleted: {problems}. A wrong answer looks like this (the API client's \
         rights narrowed, `pluvo.url` pointing elsewhere); check, and if Pluvo really lost \
         these rows, run `pluvo-warehouse sync --accept-deletes`"
    )]
    DeletesRefused { stream: String, problems: String },
    #[error(
        "the first load of `{stream}` was rolled back after an error (above): it merges \
         nothing more in this run, and the next sync resumes it from its last commit"
    )]
    BulkRolledBack { stream: String },
    #[error("finishing the scan of `{table}`: {cause}")]
    FinishScan {
        table: &'static str,
        cause: ::duckdb::Error,
    },
    #[error("{doing}: {cause}")]
    Db {
        doing: &'static str,
        cause: ::duckdb::Error,
    },
    #[error("preparing a batch for `{table}`: {cause}")]
    Arrow {
        table: &'static str,
        cause: ::arrow::error::ArrowError,
    },
    #[error("batch for `{table}` does not match its spec: {problem}")]
    BatchShape {
        table: &'static str,
        problem: String,
    },
    #[error("`{table}` has no column `{column}`")]
    UnknownColumn { table: &'static str, column: String },
    #[error("column `{column}` of `{table}` is {expected}, got {got}")]
    CellType {
        table: &'static str,
        column: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("a row for `{table}` has no value for column `{column}`")]
    MissingCell {
        table: &'static str,
        column: &'static str,
    },
    #[error("key column `{column}` of `{table}` is null")]
    NullKey {
        table: &'static str,
        column: &'static str,
    },
    #[error("column `{column}` of `{table}` is not valid JSON: {problem}")]
    InvalidJson {
        table: &'static str,
        column: &'static str,
        problem: String,
    },
    #[error("`{value}` is not a valid value for DuckDB's `{setting}`")]
    Setting {
        setting: &'static str,
        value: String,
    },
    #[error("scope column `{column}` is not a column of `{table}`")]
    ScopeColumn { table: &'static str, column: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Refuse a warehouse whose folder cannot be written, before DuckDB opens it: DuckDB would
/// open the file and fail only at the first commit, on its `<file>.wal`. Probes by creating
/// (and removing) a file, which also catches read-only mounts and immutable folders.
pub(crate) fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let probe = dir.join(format!(
        ".{}.write-check-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StoreError::Unwritable {
            path: path.to_path_buf(),
            problem: match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".into(),
                _ => format!("is not writable ({e})"),
            },
            dir,
        }),
    }
}

/// Where the warehouse gets "now" from: the system clock in production, a fixed or stepped
/// clock in tests, so that timestamps and history versions are deterministic.
pub trait Clock: Send {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl<F: Fn() -> DateTime<Utc> + Send> Clock for F {
    fn now(&self) -> DateTime<Utc> {
        self()
    }
}
