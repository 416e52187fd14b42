//! [`Warehouse`]: one DuckDB file, one writer. Opening (lock and schema checks, migrations),
//! the generic merge of a page into a table, the end of a scan (soft deletes), checkpoints and
//! run bookkeeping.
//!
//! A page is committed like this, in one transaction per call of [`Warehouse::commit`]:
//! 1. (before the transaction) the batch is checked against its [`TableSpec`], deduplicated by
//!    key (last row wins), hashed, and bulk-loaded into a temporary staging table with the
//!    Arrow appender. Staging is per connection and not part of the file, so loading it
//!    outside the transaction changes nothing on disk.
//! 2. `_diff` = staged rows whose key is new, whose hash differs, or whose row was
//!    soft-deleted. Rows with the same hash are counted as unchanged and never written.
//! 3. Changed rows are updated, new rows inserted; with history, the current version of each
//!    changed item is closed and a new one opened.
//! 4. The staged keys go to `_seen_<table>` (one narrow row each), and the stream's checkpoint
//!    is stored.
//!
//! Killing the process at any moment therefore leaves either the whole page with its
//! checkpoint or neither; resuming from the checkpoint re-merges by key, so nothing doubles.
//! The cost of a commit is one scan of the target's key and hash columns (DuckDB has no index
//! join here) plus a per-row part, so streams should buffer pages and commit about every 10k
//! rows: 100k users + 500k items load in ~13 s with 10k-row commits and ~25 s with 2.5k-row
//! commits; an unchanged reload takes ~7 s and writes no data row (benchmark in the tests).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use duckdb::{AccessMode, Config, Connection, params};

use super::batch::{check_shape, dedupe_by_key, row_hashes};
use super::schema::{self, MIGRATIONS, SCHEMA_VERSION};
use super::tables::{self, ColumnType, TableSpec};
use super::{Clock, Result, StoreError, SystemClock};

/// DuckDB's memory cap for the writer (and the Parquet export at the end of `sync`). DuckDB's
/// default (80% of RAM) lets its block cache grow with the warehouse; a sync touches mostly
/// the key and hash columns, so a fixed cap keeps the process's memory flat as the
/// organisation grows. What must fit: a commit's hash join (the staged page group, ~10k
/// rows), one part of the end-of-scan anti-join ([`ANTI_JOIN_KEYS`] keys) and one Parquet row
/// group. Measured (100k users, 500k items, latency 0, 2 cores, with [`super::alloc::tune`]):
/// peak RSS 109 MB at 32 MB, 141 MB at 64 MB; the 10k-user sync peaks at 90 MB either way.
/// At 24 and 28 MB the anti-join of `group_members` ran out of memory (whatever the number
/// of parts), and at 28 MB the export of `portfolio_items` did too. Tune with
/// [`Warehouse::set_memory_limit`].
pub const WRITER_MEMORY_LIMIT: &str = "32MB";

/// Seen keys per part of the end-of-scan anti-join (see `soft_delete_unseen`).
const ANTI_JOIN_KEYS: u64 = 50_000;

/// The id of one `sync` (or other writing command) in `_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a run ended (`_runs.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// The process ended without finishing the run (killed); set by the next writer.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// What merging one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Keys not in the table before: inserted.
    pub new: u64,
    /// Keys whose content hash differed, or that were soft-deleted and are back: updated.
    pub changed: u64,
    /// Keys with the same content: not written.
    pub unchanged: u64,
    /// Rows dropped because a later row of the same batch had the same key.
    pub duplicates: u64,
}

impl std::ops::AddAssign for MergeStats {
    fn add_assign(&mut self, o: MergeStats) {
        self.new += o.new;
        self.changed += o.changed;
        self.unchanged += o.unchanged;
        self.duplicates += o.duplicates;
    }
}

/// A stream's totals for `_run_streams`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub rows: MergeStats,
    pub rows_deleted: u64,
    pub requests: u64,
    pub retries: u64,
    /// Unknown or missing fields seen in the API's answers, reported once per run.
    pub schema_drift: Option<String>,
    pub error: Option<String>,
}

/// The part of a table a scan covered: only rows in scope can be soft-deleted by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The whole table (a full scan).
    All,
    /// Rows whose text `column` is one of `values` (e.g. the groups whose members were read).
    In {
        column: &'a str,
        values: &'a [String],
    },
    /// Rows whose DATE `column` lies in `from..=to` (a completion-date window).
    Between {
        column: &'a str,
        from: NaiveDate,
        to: NaiveDate,
    },
    /// Rows in every one of these scopes (e.g. certificates completed in a window).
    And(Vec<Scope<'a>>),
}

/// How a stream's scan ended; see [`Warehouse::finish_scan`].
#[derive(Debug, Clone)]
pub struct ScanEnd<'a> {
    /// True only when every page of the scan was read. A partial scan deletes nothing.
    pub complete: bool,
    /// The tables the stream filled, each with the part of it the scan covered. A table may
    /// be listed more than once: the scan covered the union of its scopes.
    pub tables: Vec<(&'a TableSpec, Scope<'a>)>,
    /// State to keep for the next run (e.g. a completion-date watermark); `None` removes the
    /// checkpoint so the next run starts from the beginning.
    pub next_checkpoint: Option<&'a str>,
}

/// The warehouse file, opened by the single writer (or read-only).
pub struct Warehouse {
    conn: Connection,
    path: PathBuf,
    clock: Box<dyn Clock>,
    schema_version: i64,
    /// Seen keys per part of the end-of-scan anti-join ([`ANTI_JOIN_KEYS`]; tests lower it).
    pub(crate) anti_join_keys: u64,
    #[cfg(test)]
    pub(crate) fail_before_commit: bool,
}

impl fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warehouse")
            .field("path", &self.path)
            .field("schema_version", &self.schema_version)
            .finish_non_exhaustive()
    }
}

impl Warehouse {
    /// Open (or create) the file for writing: take DuckDB's file lock, migrate the schema, and
    /// mark runs left `running` by a killed process as `interrupted`. Fails at once with
    /// [`StoreError::Locked`] when another process has the file open.
    pub fn open(path: impl AsRef<Path>) -> Result<Warehouse> {
        Self::open_with_clock(path, Box::new(SystemClock))
    }

    /// [`Warehouse::open`] with an injected clock (tests, deterministic timestamps).
    pub fn open_with_clock(path: impl AsRef<Path>, clock: Box<dyn Clock>) -> Result<Warehouse> {
        let path = path.as_ref().to_path_buf();
        super::check_writable(&path)?;
        let config =
            duckdb_config(AccessMode::ReadWrite).map_err(|source| open_error(&path, source))?;
        let mut conn = Connection::open_with_flags(&path, config)
            .map_err(|source| open_error(&path, source))?;
        let now = clock.now();
        let schema_version = schema::migrate(&mut conn, &path, MIGRATIONS, now)?;
        let warehouse = Warehouse {
            conn,
            path,
            clock,
            schema_version,
            anti_join_keys: ANTI_JOIN_KEYS,
            #[cfg(test)]
            fail_before_commit: false,
        };
        warehouse.set_memory_limit(WRITER_MEMORY_LIMIT)?;
        warehouse.mark_interrupted_runs()?;
        Ok(warehouse)
    }

    /// Open an existing file for reading (`query`, `status`, `export`). Refuses a newer
    /// schema; an older one is readable as it is (see [`Warehouse::schema_version`]).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Warehouse> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(StoreError::Missing { path });
        }
        let config =
            duckdb_config(AccessMode::ReadOnly).map_err(|source| open_error(&path, source))?;
        let conn = Connection::open_with_flags(&path, config)
            .map_err(|source| open_error(&path, source))?;
        let found = schema::version(&conn, &path)?.ok_or_else(|| StoreError::Foreign {
            path: path.clone(),
            reason: "it is empty".into(),
        })?;
        schema::check_not_newer(&path, found, SCHEMA_VERSION)?;
        Ok(Warehouse {
            conn,
            path,
            clock: Box::new(SystemClock),
            schema_version: found,
            anti_join_keys: ANTI_JOIN_KEYS,
            #[cfg(test)]
            fail_before_commit: false,
        })
    }

    /// Cap the memory DuckDB may use on this connection (buffer pool, hash tables), e.g.
    /// `"96MB"`. Above the cap DuckDB evicts cached blocks and spills to `<file>.tmp`.
    pub fn set_memory_limit(&self, limit: &str) -> Result<()> {
        let valid = !limit.is_empty()
            && limit
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ' ');
        if !valid {
            return Err(StoreError::Setting {
                setting: "memory_limit",
                value: limit.to_owned(),
            });
        }
        self.conn
            .execute_batch(&format!("SET memory_limit = '{limit}'"))
            .map_err(Self::db("setting DuckDB's memory limit"))
    }

    /// The number of threads DuckDB may use for one statement.
    pub fn set_threads(&self, threads: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("SET threads = {}", threads.max(1)))
            .map_err(Self::db("setting DuckDB's threads"))
    }

    /// Close the file, writing DuckDB's checkpoint (WAL → file) and reporting its errors,
    /// which a plain drop would swallow.
    pub fn close(self) -> Result<()> {
        self.conn.close().map_err(|(_, source)| StoreError::Db {
            doing: "closing the warehouse",
            source,
        })
    }

    /// The connection, for readers (`query`, `export`, views). Writes go through the methods.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection for writes of sibling modules (`webhooks.rs`), in their own transactions.
    pub(super) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (after migration, for a writer).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    fn now(&self) -> Now {
        Now(self.clock.now())
    }

    fn db(doing: &'static str) -> impl FnOnce(duckdb::Error) -> StoreError {
        move |source| StoreError::Db { doing, source }
    }

    // ---------------------------------------------------------------- runs and checkpoints

    fn mark_interrupted_runs(&self) -> Result<()> {
        self.conn
            .execute(
                "UPDATE _runs SET status = 'interrupted',
                    error = coalesce(error, 'the process ended before the run finished')
                 WHERE status = 'running'",
                [],
            )
            .map_err(Self::db("marking killed runs as interrupted"))?;
        Ok(())
    }

    /// Start a run: a new `_runs` row with status `running`.
    pub fn begin_run(&mut self, streams: &[&str]) -> Result<RunId> {
        let now = self.now();
        let streams = serde_json::to_string(streams).expect("strings serialise");
        let run: i64 = self
            .conn
            .query_row(
                &format!(
                    "INSERT INTO _runs (run_id, started_at, status, streams)
                     SELECT coalesce(max(run_id), 0) + 1, {now}, 'running',
                            CAST(CAST(? AS JSON) AS VARCHAR[])
                     FROM _runs
                     RETURNING run_id"
                ),
                params![streams],
                |r| r.get(0),
            )
            .map_err(Self::db("starting a run in `_runs`"))?;
        Ok(RunId(run))
    }

    /// End a run with its status and, for a failed run, the error chain.
    pub fn finish_run(&mut self, run: RunId, status: RunStatus, error: Option<&str>) -> Result<()> {
        let now = self.now();
        self.conn
            .execute(
                &format!(
                    "UPDATE _runs SET ended_at = {now}, status = ?, error = ? WHERE run_id = ?"
                ),
                params![status.as_str(), error, run.0],
            )
            .map_err(Self::db("finishing a run in `_runs`"))?;
        Ok(())
    }

    /// Note that a stream started (its `_run_streams` row, counts zero, `started_at` now).
    pub fn begin_stream(&mut self, run: RunId, stream: &str) -> Result<()> {
        let now = self.now();
        self.conn
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO _run_streams VALUES
                     (?, ?, 0, 0, 0, 0, 0, 0, NULL, NULL, {now}, NULL)"
                ),
                params![run.0, stream],
            )
            .map_err(Self::db("recording a stream in `_run_streams`"))?;
        Ok(())
    }

    /// Store a stream's totals and end time (call when it ends, successfully or not).
    pub fn record_stream(&mut self, run: RunId, stream: &str, stats: &StreamStats) -> Result<()> {
        let now = self.now();
        let n = |v: u64| v as i64;
        self.conn
            .execute(
                &format!(
                    "INSERT INTO _run_streams VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {now}, {now})
                     ON CONFLICT (run_id, stream) DO UPDATE SET
                        rows_new = excluded.rows_new, rows_changed = excluded.rows_changed,
                        rows_unchanged = excluded.rows_unchanged,
                        rows_deleted = excluded.rows_deleted, requests = excluded.requests,
                        retries = excluded.retries, schema_drift = excluded.schema_drift,
                        error = excluded.error, ended_at = excluded.ended_at"
                ),
                params![
                    run.0,
                    stream,
                    n(stats.rows.new),
                    n(stats.rows.changed),
                    n(stats.rows.unchanged),
                    n(stats.rows_deleted),
                    n(stats.requests),
                    n(stats.retries),
                    stats.schema_drift.as_deref(),
                    stats.error.as_deref(),
                ],
            )
            .map_err(Self::db("recording a stream in `_run_streams`"))?;
        Ok(())
    }

    /// The stream's checkpoint: where an unfinished scan resumes, or what a finished scan left
    /// for the next run. `None`: start from the beginning.
    pub fn checkpoint(&self, stream: &str) -> Result<Option<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT state FROM _checkpoints WHERE stream = ?")
            .map_err(Self::db("reading a checkpoint"))?;
        let mut rows = stmt
            .query_map(params![stream], |r| r.get::<_, String>(0))
            .map_err(Self::db("reading a checkpoint"))?;
        rows.next()
            .transpose()
            .map_err(Self::db("reading a checkpoint"))
    }

    /// Forget an unfinished scan of `stream` (its seen keys and checkpoint), e.g. for
    /// `--full-refresh`, or when the stream decides not to resume. Call it before the first
    /// page whenever the scan does not continue from [`Warehouse::checkpoint`]: otherwise keys
    /// seen by the abandoned scan would count as seen by the new one.
    pub fn reset_scan(&mut self, stream: &str) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(Self::db("resetting a scan"))?;
        clear_scan(&tx, stream, &[]).map_err(Self::db("resetting a scan"))?;
        tx.execute("DELETE FROM _checkpoints WHERE stream = ?", params![stream])
            .map_err(Self::db("resetting a scan"))?;
        tx.commit().map_err(Self::db("resetting a scan"))?;
        Ok(())
    }

    // ---------------------------------------------------------------- pages

    /// Merge one page of one table and store the stream's checkpoint, atomically.
    /// Shorthand for [`Warehouse::commit`] with a single batch.
    pub fn commit_page(
        &mut self,
        spec: &TableSpec,
        batch: RecordBatch,
        stream: &str,
        checkpoint: &str,
        run: RunId,
    ) -> Result<MergeStats> {
        let stats = self.commit(stream, run, checkpoint, vec![(spec, batch)])?;
        Ok(stats.get(spec.table).copied().unwrap_or_default())
    }

    /// Merge batches into one or more tables (e.g. groups and their members, or several
    /// buffered pages of one table) and store the stream's checkpoint, all in one
    /// transaction. Batches of the same table are concatenated in the order given and merged
    /// together: the last row of a key wins, and the table is scanned once per call, which is
    /// why buffering a few pages per call is much cheaper than one call per page. Across
    /// calls, a key merges into its existing row. Returns the stats per table.
    pub fn commit(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        batches: Vec<(&TableSpec, RecordBatch)>,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let now = self.now();
        let mut by_table: Vec<(&TableSpec, Vec<RecordBatch>)> = Vec::new();
        for (spec, batch) in batches {
            check_shape(spec, &batch)?;
            match by_table.iter_mut().find(|(s, _)| s.table == spec.table) {
                Some((_, list)) => list.push(batch),
                None => by_table.push((spec, vec![batch])),
            }
        }
        let mut staged = Vec::with_capacity(by_table.len());
        for (i, (spec, list)) in by_table.into_iter().enumerate() {
            let batch = if list.len() == 1 {
                list.into_iter().next().expect("one batch")
            } else {
                concat_batches(&spec.arrow_schema(), &list).map_err(|source| StoreError::Arrow {
                    table: spec.table,
                    source,
                })?
            };
            let (batch, duplicates) = dedupe_by_key(spec, batch)?;
            let rows = batch.num_rows() as u64;
            let stage = format!("_stage_{i}");
            stage_batch(&self.conn, spec, &stage, batch)?;
            staged.push((spec, stage, rows, duplicates as u64));
        }

        let tx = self
            .conn
            .transaction()
            .map_err(Self::db("starting a page transaction"))?;
        let mut all = BTreeMap::new();
        for (spec, stage, rows, duplicates) in &staged {
            let merge = |source| StoreError::Merge {
                table: spec.table,
                source,
            };
            let (new, changed) = if *rows == 0 {
                (0, 0)
            } else {
                merge_staged(&tx, spec, stage, stream, run, now).map_err(merge)?
            };
            let stats = MergeStats {
                new,
                changed,
                unchanged: rows - new - changed,
                duplicates: *duplicates,
            };
            all.insert(spec.table, stats);
        }
        store_checkpoint(&tx, stream, checkpoint, run, now)
            .map_err(Self::db("storing a checkpoint"))?;
        #[cfg(test)]
        if self.fail_before_commit {
            // Simulates a crash inside the transaction: dropping `tx` rolls it back.
            return Err(StoreError::Db {
                doing: "test: crash before commit",
                source: duckdb::Error::QueryReturnedNoRows,
            });
        }
        tx.commit().map_err(Self::db("committing a page"))?;
        for (_, stage, _, _) in &staged {
            // Free the staging memory now rather than at the next page.
            let _ = self
                .conn
                .execute_batch(&format!("DROP TABLE IF EXISTS temp.{stage}"));
        }
        Ok(all)
    }

    // ---------------------------------------------------------------- end of a scan

    /// End a stream's scan. If it was complete, rows in each table's scope that the scan did
    /// not return are soft-deleted (`_deleted_at` = now, history version closed); a partial
    /// scan deletes nothing. Either way the scan's seen keys are cleared and the checkpoint is
    /// replaced by `next_checkpoint` (or removed), in one transaction. Returns the number of
    /// rows soft-deleted.
    pub fn finish_scan(&mut self, stream: &str, run: RunId, end: ScanEnd<'_>) -> Result<u64> {
        let now = self.now();
        for (spec, scope) in &end.tables {
            scope_sql(spec, scope)?; // validate before starting
        }
        let tx = self
            .conn
            .transaction()
            .map_err(Self::db("starting the end of a scan"))?;
        let mut deleted = 0;
        if end.complete {
            for (spec, scope) in &end.tables {
                let scope = scope_sql(spec, scope)?;
                let parts = self.anti_join_keys;
                deleted += soft_delete_unseen(&tx, spec, stream, run, now, scope, parts).map_err(
                    |source| StoreError::FinishScan {
                        table: spec.table,
                        source,
                    },
                )?;
            }
        }
        let specs: Vec<&TableSpec> = end.tables.iter().map(|(spec, _)| *spec).collect();
        clear_scan(&tx, stream, &specs).map_err(Self::db("clearing the seen keys of a scan"))?;
        match end.next_checkpoint {
            Some(state) => store_checkpoint(&tx, stream, state, run, now),
            None => tx
                .execute("DELETE FROM _checkpoints WHERE stream = ?", params![stream])
                .map(drop),
        }
        .map_err(Self::db("storing a checkpoint"))?;
        tx.commit()
            .map_err(Self::db("committing the end of a scan"))?;
        Ok(deleted)
    }
}

/// Map DuckDB's open errors to ours; in particular its lock error, whose text (DuckDB 2.0,
/// `local_file_system.cpp`) is `IO Error: Could not set lock on file "<path>": Conflicting
/// lock is held in <program> (PID <n>) by user <u>. ...`.
fn open_error(path: &Path, source: duckdb::Error) -> StoreError {
    let text = source.to_string();
    if text.contains("Could not set lock on file") {
        return StoreError::Locked {
            path: path.to_path_buf(),
            pid: lock_holder_pid(&text),
        };
    }
    if text.contains("not a valid DuckDB database file") {
        return StoreError::Foreign {
            path: path.to_path_buf(),
            reason: "it is not a DuckDB file, or it is damaged".into(),
        };
    }
    StoreError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// DuckDB settings for every connection the tool opens. Extension autoloading is off: DuckDB
/// would otherwise try to download a missing extension (e.g. `icu` for time-zone arithmetic)
/// from the internet in the middle of a query. The bundled build has `parquet` and `json`;
/// for TIMESTAMPTZ arithmetic cast to TIMESTAMP (UTC), as the views in sql/ do.
pub fn duckdb_config(mode: AccessMode) -> ::duckdb::Result<Config> {
    Config::default()
        .access_mode(mode)?
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")
}

/// The PID in DuckDB's lock error message, if it names one.
pub fn lock_holder_pid(message: &str) -> Option<u32> {
    let start = message.find("PID ")? + "PID ".len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A timestamp as a SQL literal. Our own formatting of our own clock: safe to inline, and it
/// keeps every statement free of positional-parameter bookkeeping.
#[derive(Debug, Clone, Copy)]
struct Now(DateTime<Utc>);

impl fmt::Display for Now {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TIMESTAMPTZ '{}'",
            self.0.format("%Y-%m-%d %H:%M:%S%.6f+00")
        )
    }
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Join condition `a.k1 = b.k1 AND ...` over the key columns.
fn key_match(spec: &TableSpec, a: &str, b: &str) -> String {
    spec.key
        .iter()
        .map(|c| format!("{a}.{k} = {b}.{k}", k = q(c.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn key_names(spec: &TableSpec) -> String {
    spec.key
        .iter()
        .map(|c| q(c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_list(spec: &TableSpec, alias: &str) -> String {
    spec.key
        .iter()
        .map(|c| format!("{alias}.{}", q(c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A staged value as stored: JSON is staged as text and cast here.
fn stored_value(alias: &str, name: &str, ty: ColumnType) -> String {
    match ty {
        ColumnType::Json => format!("CAST({alias}.{} AS JSON)", q(name)),
        _ => format!("{alias}.{}", q(name)),
    }
}

/// Load a deduplicated batch, plus its `_hash` column, into a fresh temporary table.
fn stage_batch(conn: &Connection, spec: &TableSpec, stage: &str, batch: RecordBatch) -> Result<()> {
    let table = spec.table;
    let columns: Vec<String> = spec
        .columns()
        .map(|c| format!("{} {}", q(c.name), c.ty.staging_sql()))
        .chain(std::iter::once("_hash UBIGINT".to_string()))
        .collect();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {stage} ({})",
        columns.join(", ")
    ))
    .map_err(|source| StoreError::Merge { table, source })?;
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let hashes: ArrayRef = Arc::new(UInt64Array::from(row_hashes(spec, &batch)));
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_hash", DataType::UInt64, false));
    let mut arrays = batch.columns().to_vec();
    arrays.push(hashes);
    let staged = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|source| StoreError::Arrow { table, source })?;
    let mut appender = conn
        .appender_to_catalog_and_db(stage, "temp", "main")
        .map_err(|source| StoreError::Merge { table, source })?;
    appender
        .append_record_batch(staged)
        .and_then(|()| appender.flush())
        .map_err(|source| StoreError::Merge { table, source })?;
    Ok(())
}

/// Steps 2–4 of a page (see the module docs). Returns (new, changed).
fn merge_staged(
    tx: &Connection,
    spec: &TableSpec,
    stage: &str,
    stream: &str,
    run: RunId,
    now: Now,
) -> duckdb::Result<(u64, u64)> {
    let target = q(spec.table);
    let first_key = q(spec.key[0].name);
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE _diff AS
         SELECT s.*, t.{first_key} IS NULL AS _is_new
         FROM temp.{stage} s LEFT JOIN main.{target} t ON {on}
         WHERE t.{first_key} IS NULL OR t._hash <> s._hash OR t._deleted_at IS NOT NULL",
        on = key_match(spec, "t", "s"),
    ))?;
    let (new, changed): (i64, i64) = tx.query_row(
        "SELECT count(*) FILTER (_is_new), count(*) FILTER (NOT _is_new) FROM temp._diff",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;

    if changed > 0 {
        let set: Vec<String> = spec
            .values
            .iter()
            .map(|c| format!("{} = {}", q(c.name), stored_value("d", c.name, c.ty)))
            .collect();
        tx.execute_batch(&format!(
            "UPDATE main.{target} AS t SET {set}, _hash = d._hash, _updated_at = {now},
                 _deleted_at = NULL, _run_id = {run}
             FROM temp._diff d WHERE {on} AND NOT d._is_new",
            set = set.join(", "),
            on = key_match(spec, "t", "d"),
        ))?;
    }
    if new > 0 {
        let names: Vec<String> = spec.columns().map(|c| q(c.name)).collect();
        let values: Vec<String> = spec
            .columns()
            .map(|c| stored_value("d", c.name, c.ty))
            .collect();
        tx.execute_batch(&format!(
            "INSERT INTO main.{target} ({names}, _hash, _first_seen_at, _updated_at, _deleted_at, _run_id)
             SELECT {values}, d._hash, {now}, {now}, NULL, {run}
             FROM temp._diff d WHERE d._is_new",
            names = names.join(", "),
            values = values.join(", "),
        ))?;
    }
    if let Some(history) = spec.history.filter(|_| new + changed > 0) {
        let hist = q(history.table);
        let tracked: Vec<String> = history.tracked.iter().map(|c| q(c)).collect();
        let insert = |filter: &str| {
            format!(
                "INSERT INTO main.{hist} ({keys}, {tracked}, valid_from, valid_to, _run_id)
                 SELECT {dkeys}, {dtracked}, {now}, NULL, {run} FROM temp._diff d WHERE {filter}",
                keys = key_names(spec),
                tracked = tracked.join(", "),
                dkeys = key_list(spec, "d"),
                dtracked = tracked
                    .iter()
                    .map(|c| format!("d.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        // A key new to the table has no history (rows are never hard-deleted), so new rows
        // open their first version without reading the history table.
        if new > 0 {
            tx.execute_batch(&insert("d._is_new"))?;
        }
        if changed > 0 {
            let differs: Vec<String> = tracked
                .iter()
                .map(|c| format!("h.{c} IS DISTINCT FROM d.{c}"))
                .collect();
            tx.execute_batch(&format!(
                "UPDATE main.{hist} AS h SET valid_to = {now}
                 FROM temp._diff d
                 WHERE {on} AND NOT d._is_new AND h.valid_to IS NULL AND ({differs})",
                on = key_match(spec, "h", "d"),
                differs = differs.join(" OR "),
            ))?;
            // Changed rows whose tracked values differ (now closed) or that were deleted (closed
            // then) get a new version; the others keep their open one.
            tx.execute_batch(&insert(&format!(
                "NOT d._is_new AND NOT EXISTS
                 (SELECT 1 FROM main.{hist} h WHERE {on} AND h.valid_to IS NULL)",
                on = key_match(spec, "h", "d"),
            )))?;
        }
    }
    tx.execute(
        &format!(
            "INSERT INTO main.{seen} (stream, {keys}) SELECT ?, {skeys} FROM temp.{stage} s",
            seen = q(&spec.seen_table()),
            keys = key_names(spec),
            skeys = key_list(spec, "s"),
        ),
        params![stream],
    )?;
    tx.execute_batch("DROP TABLE temp._diff")?;
    Ok((new as u64, changed as u64))
}

/// The scope as a predicate on alias `t`, with its one optional text parameter.
/// The SQL predicate (over alias `t`) of a scope, and its parameters in order.
fn scope_sql(spec: &TableSpec, scope: &Scope<'_>) -> Result<(String, Vec<String>)> {
    let column = |name: &str, want: ColumnType| {
        spec.column(name)
            .filter(|c| c.ty == want)
            .ok_or_else(|| StoreError::ScopeColumn {
                table: spec.table,
                column: name.to_owned(),
            })
    };
    Ok(match scope {
        Scope::All => ("TRUE".into(), Vec::new()),
        Scope::In {
            column: name,
            values,
        } => {
            let c = column(name, ColumnType::Varchar)?;
            (
                format!(
                    "t.{} IN (SELECT unnest(CAST(CAST(? AS JSON) AS VARCHAR[])))",
                    q(c.name)
                ),
                vec![serde_json::to_string(values).expect("strings serialise")],
            )
        }
        Scope::Between {
            column: name,
            from,
            to,
        } => {
            let c = column(name, ColumnType::Date)?;
            (
                format!(
                    "t.{} BETWEEN DATE '{}' AND DATE '{}'",
                    q(c.name),
                    from.format("%Y-%m-%d"),
                    to.format("%Y-%m-%d")
                ),
                Vec::new(),
            )
        }
        Scope::And(scopes) => {
            let mut predicates = vec!["TRUE".to_owned()];
            let mut params = Vec::new();
            for scope in scopes {
                let (predicate, more) = scope_sql(spec, scope)?;
                predicates.push(format!("({predicate})"));
                params.extend(more);
            }
            (predicates.join(" AND "), params)
        }
    })
}

fn soft_delete_unseen(
    tx: &Connection,
    spec: &TableSpec,
    stream: &str,
    run: RunId,
    now: Now,
    (predicate, params): (String, Vec<String>),
    keys_per_part: u64,
) -> duckdb::Result<u64> {
    let target = q(spec.table);
    let seen = q(&spec.seen_table());
    // The anti-join builds a hash table of the seen keys. Done in one statement it holds
    // every seen key at once (500k item keys: more than the writer's memory limit), so it
    // runs in parts by a hash of the key, each holding about `keys_per_part` keys.
    let seen_rows: i64 = tx.query_row(
        &format!("SELECT count(*) FROM main.{seen} WHERE stream = ?"),
        params![stream],
        |r| r.get(0),
    )?;
    let parts = (seen_rows as u64).div_ceil(keys_per_part.max(1)).max(1);
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE _gone AS SELECT {keys} FROM main.{target} t LIMIT 0",
        keys = key_list(spec, "t"),
    ))?;
    for part in 0..parts {
        let select = format!(
            "INSERT INTO temp._gone
             SELECT {keys} FROM main.{target} t
             WHERE t._deleted_at IS NULL AND {predicate} AND hash({keys}) % {parts} = {part}
               AND NOT EXISTS (SELECT 1 FROM main.{seen} s
                               WHERE s.stream = ? AND hash({skeys}) % {parts} = {part} AND {on})",
            keys = key_list(spec, "t"),
            skeys = key_list(spec, "s"),
            on = key_match(spec, "s", "t"),
        );
        let values = params.iter().map(String::as_str).chain([stream]);
        tx.execute(&select, duckdb::params_from_iter(values))?;
    }
    let gone: i64 = tx.query_row("SELECT count(*) FROM temp._gone", [], |r| r.get(0))?;
    if gone > 0 {
        tx.execute_batch(&format!(
            "UPDATE main.{target} AS t SET _deleted_at = {now}, _updated_at = {now}, _run_id = {run}
             FROM temp._gone g WHERE {on}",
            on = key_match(spec, "t", "g"),
        ))?;
        if let Some(history) = spec.history {
            tx.execute_batch(&format!(
                "UPDATE main.{hist} AS h SET valid_to = {now}
                 FROM temp._gone g WHERE {on} AND h.valid_to IS NULL",
                hist = q(history.table),
                on = key_match(spec, "h", "g"),
            ))?;
        }
    }
    tx.execute_batch("DROP TABLE temp._gone")?;
    Ok(gone as u64)
}

/// Upsert a checkpoint. An UPDATE first: cheaper than `INSERT OR REPLACE`, which deletes and
/// re-inserts through the primary-key index on every page.
fn store_checkpoint(
    tx: &Connection,
    stream: &str,
    state: &str,
    run: RunId,
    now: Now,
) -> duckdb::Result<()> {
    let updated = tx.execute(
        &format!(
            "UPDATE _checkpoints SET state = ?, run_id = ?, updated_at = {now} WHERE stream = ?"
        ),
        params![state, run.0, stream],
    )?;
    if updated == 0 {
        tx.execute(
            &format!("INSERT INTO _checkpoints VALUES (?, ?, ?, {now})"),
            params![stream, state, run.0],
        )?;
    }
    Ok(())
}

/// Delete the stream's seen keys from the given tables and from every known table.
fn clear_scan(tx: &Connection, stream: &str, specs: &[&TableSpec]) -> duckdb::Result<()> {
    let mut names: Vec<String> = specs
        .iter()
        .chain(tables::ALL.iter())
        .map(|s| s.seen_table())
        .collect();
    names.sort();
    names.dedup();
    for seen in names {
        tx.execute(
            &format!("DELETE FROM main.{} WHERE stream = ?", q(&seen)),
            params![stream],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
