//! [`Warehouse`]: one DuckDB file, one writer. This file: opening (lock and schema checks,
//! migrations) and settings; `merge.rs`: the generic merge of a page into a table; `scan.rs`:
//! the end of a scan (soft deletes); `runs.rs`: checkpoints and run bookkeeping; `bulk.rs`:
//! the long transaction of a first load.
//!
//! A page is committed like this, in one transaction per call of [`Warehouse::commit`]:
//! 1. (before the transaction) the batch is checked against its [`TableSpec`], deduplicated by
//!    key (last row wins), hashed, and bulk-loaded into a temporary staging table with the
//!    Arrow appender. Staging is per connection and not part of the file, so loading it
//!    outside the transaction changes nothing on disk.
//! 2. `_diff` = staged rows whose key is new, whose hash differs, or whose row was
//!    soft-deleted. Rows with the same hash are counted as unchanged and never written.
//!    (Skipped on a first load whose stream promised new keys: [`Warehouse::start_scan`].)
//! 3. Changed rows are updated, new rows inserted; with history, the current version of each
//!    changed item is closed and a new one opened.
//! 4. The staged keys go to `_seen_<table>` (one narrow row each), and the stream's checkpoint
//!    is stored. (The keys are not recorded on a first load, whose scan is the source of every
//!    row of the table: [`Warehouse::start_scan`].)
//!
//! Killing the process at any moment therefore leaves either the whole page with its
//! checkpoint or neither; resuming from the checkpoint re-merges by key, so nothing doubles.
//! The cost of a commit is one scan of the target's key and hash columns (DuckDB has no index
//! join here) plus a per-row part, so a sync does not merge every page group: it stages them
//! ([`Warehouse::stage`], temporary tables under the memory cap) and merges once per
//! [`Warehouse::merge_rows`] rows (sized to the cap), after [`MERGE_AFTER`], and at the end of
//! each part, each merge with the checkpoint covering its rows (a first load's
//! merges share one transaction, committed every few row groups: `bulk.rs`). `bench merge`
//! times the merge alone.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use duckdb::{AccessMode, Config, Connection, params};

use super::batch::{Prepared, prepare};
use super::schema::{self, MIGRATIONS, SCHEMA_VERSION};
use super::tables::{self, ColumnType, TableSpec};
use super::{Clock, Result, StoreError, SystemClock};

/// DuckDB's memory cap for the writer (and the Parquet export at the end of `sync`). DuckDB's
/// default (80% of RAM) lets its block cache grow with the warehouse; a sync touches mostly
/// the key and hash columns, so a fixed cap keeps the process's memory flat as the
/// organisation grows. Everything the sync asks of DuckDB is sized to fit any cap the
/// configuration accepts, so a smaller cap is slower, never fatal: hash joins spill to
/// `<file>.tmp` beside the warehouse, the end-of-scan anti-join runs in parts sized to the
/// cap ([`KEY_BYTES_PER_PART`]), Parquet row groups are cut by bytes, DuckDB runs each
/// statement on one thread ([`DUCKDB_THREADS`]), and no table has an index (ART indexes stay
/// in memory and grow with the organisation; see `sql/schema/006_no_index.sql`).
///
/// 32 MB was the default until issue 19: enough for 100k users of the simulator, but a 1M-user
/// organisation ran out of memory with it. Measured by `bench sync --users 100000
/// --latency-ms 0` (2 shared cores): peak RSS 103 MiB at 32 MB, 188 MiB at 128 MB.
///
/// 128 MB until issue 19's last round, when a 1M-user sync peaked at 249–253 MiB (265 MB;
/// the target is 250 MB), about 50 MiB of it the binary's code pages. At 96 MB, with merges
/// and checkpoints as large as at 128 MB ([`ROW_BYTES_PER_MERGE`],
/// [`WAL_BYTES_PER_CAP_BYTE`]), the same sync peaked at 216 MiB for about 15% more CPU
/// (168 against 142–152 CPU-seconds; wall 201 s against 166–178 s). Sizing the merges to the
/// smaller cap as well cost 40% more CPU for a 230 MiB peak: more merges, each reading the
/// whole table's keys.
///
/// 96 MB until issue 19's 18th session, when a 1M-user sync still peaked at 218–233 MiB and
/// its no-change re-sync at 231–233 MiB, a few MiB under the target. At 80 MB, with merges,
/// checkpoints and anti-join parts as large as at 96 MB ([`ROW_BYTES_PER_MERGE`],
/// [`WAL_BYTES_PER_CAP_BYTE`], [`KEY_BYTES_PER_PART`]) and a first load of the portfolio
/// merging without the diff ([`Warehouse::start_scan`]), measured against a standalone
/// simulator at 0 ms with `sync -v` (2 shared cores, one run each unless given): 1M users,
/// full sync 110 s and 214 MiB against 120 / 143 s and 224 / 233 MiB; no-change re-sync
/// 81 / 87 / 88 s and 216–221 MiB against 74 / 83 / 97 s and 231–233 MiB. 100k users with a
/// replaying simulator (3 alternated runs): 6.95–7.46 s, 183–198 MiB against 7.55–8.47 s,
/// 192–199 MiB.
pub const WRITER_MEMORY_LIMIT: &str = "80MB";

/// Seen keys per part of the end-of-scan anti-join under a memory cap of `bytes` (see
/// [`KEY_BYTES_PER_PART`]).
fn anti_join_keys(bytes: u64) -> u64 {
    let large = bytes.saturating_sub(ANTI_JOIN_FIXED_BYTES) / KEY_BYTES_PER_PART;
    let small = bytes / KEY_BYTES_PER_SMALL_PART;
    large.max(small).max(1_000)
}

/// Seen keys per part of the end-of-scan anti-join before the memory cap is known (see
/// `soft_delete_unseen`); [`Warehouse::set_memory_limit`] sizes it to the cap.
pub(super) const ANTI_JOIN_KEYS: u64 = 50_000;

/// Bytes of the memory cap per key of one part of the anti-join, beyond
/// [`ANTI_JOIN_FIXED_BYTES`]; at small caps a part is at least the cap over
/// [`KEY_BYTES_PER_SMALL_PART`] keys. DuckDB's hash join spills, but not below a floor that
/// grows with the keys: measured with the bundled DuckDB (2.0) alone on a 1M-user warehouse
/// (6M item keys, the statement `find_unseen` runs, one thread), one part of 6M keys passes
/// at 60 and 80 MB (2.5–3.3 s), 3M at 40 MB (6M fails), 1.5M at 30 MB (3M fails); during a
/// sync other work shares the cap, and 600k keys failed at 32 MB before (below). This gives
/// 3.3M keys at the default 80 MB (2 parts for 6M items), 1.7M at 60 MB and the small parts
/// from 41 MB down. Each part reads the whole table and its seen keys: in parts of
/// 156k keys (the cap over 512 bytes, until issue 19's 19th session) the same 6M keys took
/// 20.7 s in 39 parts, against 2.5 s in one.
const KEY_BYTES_PER_PART: u64 = 12;

/// The memory cap an anti-join part needs besides its keys (see [`KEY_BYTES_PER_PART`]).
const ANTI_JOIN_FIXED_BYTES: u64 = 40_000_000;

/// Bytes of the memory cap per key of one part of the anti-join at the smallest caps, where
/// [`KEY_BYTES_PER_PART`] leaves nothing: measured with DuckDB 2.0 on 600k item keys, 50k
/// keys a part pass at 16 MB (320 bytes a key), the whole set in one part fails at 32 MB.
/// 512 bytes a key gives 39k keys at 20 MB, the smallest cap, and 80k at 41 MB.
const KEY_BYTES_PER_SMALL_PART: u64 = 512;

/// Rows staged per merge before the memory cap is known ([`Warehouse::stage`]);
/// [`Warehouse::set_memory_limit`] sizes it to the cap.
pub(super) const MERGE_ROWS: u64 = 50_000;

/// Bytes of the memory cap per row staged for one merge, beyond [`MERGE_FIXED_BYTES`]: the
/// merge's join holds the staged rows (every column) and the staging tables of the streams
/// running at once share the cap; what does not fit spills. It gives 100k rows at the default
/// 80 MB and 20k at the smallest cap, 20 MB. Until issue 19's 18th session a merge was the cap
/// over 960 bytes (1,280 until the default went from 128 to 96 MB): 100k rows at 96 MB, 20.8k
/// at 20 MB. Each merge reads the whole table's keys, so fewer, larger merges cost less CPU:
/// merges sized to 80 MB that way (83k rows) made a 1M-user no-change re-sync 94.5 s against
/// 73.5 s. Over 800 bytes with no fixed part, the 25k-row merges of a 20 MB cap ran out of
/// memory (`a_stage_far_larger_than_the_cap_merges_in_parts`).
const ROW_BYTES_PER_MERGE: u64 = 750;

/// The part of the memory cap a merge does not size itself to: DuckDB's own buffers (the
/// catalog, the WAL, other streams' staging tables), whatever the cap.
const MERGE_FIXED_BYTES: u64 = 5_000_000;

/// The threads DuckDB runs a statement of the writer on (the checkpoint that ends a sync
/// excepted: [`LAST_CHECKPOINT_THREADS`]). One, whatever the cap and the cores:
/// while a worker thread runs the last task of a statement, DuckDB's calling thread polls its
/// task queue in a loop (mutex lock/unlock, `Executor::IdleState`) instead of sleeping, which
/// was 17% of the tool's CPU in a profile of a 50k-user sync; one thread also holds one set
/// of buffers (two threads under 16 MB ran out of memory where one did not). The sync's
/// network and decoding run beside it on the other cores. Measured by `bench sync --users
/// 50000 --latency-ms 0 --full-only` (2 shared cores): tool CPU 10.2 → 7.5 s, export 2.0 →
/// 1.5 s, peak RSS unchanged (medians of 2 runs each, load average 7).
pub const DUCKDB_THREADS: u32 = 1;

/// The WAL size at which DuckDB checkpoints by itself, inside whichever statement commits
/// past it. That checkpoint compresses row groups of every column at once and needs memory
/// the cap may not have left (staging tables of other streams hold some): at 20 MB it failed
/// as "FATAL … Failed to create checkpoint", after which DuckDB refuses every statement. So
/// the writer checkpoints itself ([`Warehouse::checkpoint_wal`]) once a merge leaves the WAL
/// past [`Warehouse::wal_checkpoint_bytes`], and before closing; this threshold, far above
/// that, is only a backstop (a long-running `webhook serve`).
const CHECKPOINT_THRESHOLD: &str = "1GB";

/// Bytes of WAL per byte of the memory cap after which the writer checkpoints (see
/// [`Warehouse::wal_checkpoint_bytes`]): 3, 240 MB at the default 80 MB cap, 60 MB at the
/// smallest. Until a checkpoint, committed rows wait in DuckDB's buffers, spilled to
/// `<file>.tmp` beyond the cap, so the bound is disk (the WAL and about as much spill), and a
/// killed sync leaves up to that much WAL to replay at the next open, which replays it under
/// the cap too ([`replay_config`]).
///
/// 0.8 until issue 19's 22nd session (half until the default cap went from 128 to 96 MB, two
/// thirds until it went to 80 MB). At 3 a 100k-user first load checkpoints once, at the end:
/// `bench sync --users 100000 --latency-ms 0 --replay`, 3 runs alternated, medians: full sync
/// 6.3 → 5.6 s, writer busy 4.4 → 3.7 s, file 75 → 50 MiB, peak RSS 187 → 185 MiB. At 1M
/// users the checkpoints cost about the same either way (`--full-only`, one run each at 0.8,
/// 1.6 and 3: 106.5 / 106.8 / 104.8 s, peak 209 / 205 / 209 MiB).
///
/// Why not after every merge, as until issue 19's last round: a checkpoint rewrites the
/// row groups a merge left partly filled and vacuums small ones, whatever it adds, so its
/// cost is mostly per checkpoint, not per row. Measured on a 100k-user full sync at 0 ms
/// (15 merges; the writer's time in checkpoints): after each merge 5.0 s and a 80 MiB file,
/// every 4th merge 2.6 s and 60 MiB, one at the end 1.8 s and 53 MiB (but a 219 MB WAL and
/// 139 MB of spill).
const WAL_BYTES_PER_CAP_BYTE: f64 = 3.0;

/// The smallest WAL the writer lets grow before a checkpoint, whatever the cap.
const WAL_CHECKPOINT_FLOOR: u64 = 8_000_000;

/// The threads DuckDB may use for the checkpoint that ends a sync
/// ([`Warehouse::checkpoint_at_end`]), at most the machine's cores. When it runs, the pages
/// are all fetched and merged, so [`DUCKDB_THREADS`]' reason (a second thread's work hidden
/// behind the network and decoding) no longer holds, and a first load small enough for one
/// WAL ([`WAL_BYTES_PER_CAP_BYTE`]) compresses all its rows there. Measured by `bench sync
/// --latency-ms 0 --replay` (2 shared cores, 3 runs alternated, medians): 100k users, full
/// sync 6.3 → 5.2 s, tool CPU 8.1 → 7.5 s, peak RSS 179 → 198 MiB; 1M users (`--full-only`,
/// one run) 94.7–98.6 → 87.8 s, peak 215 → 209 MiB.
const LAST_CHECKPOINT_THREADS: u32 = 2;

/// The memory a checkpoint gets when the cap is smaller: one row group of a table's columns
/// being compressed, a fixed amount that does not grow with the organisation.
const CHECKPOINT_MEMORY: u64 = 64_000_000;

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
    /// How rows missing from a complete scan are recorded ([`Warehouse::set_deletes`]).
    deletes: Deletes,
    /// The memory cap in bytes, once set.
    memory_limit: Option<u64>,
    /// Rows staged by [`Warehouse::stage`] and not yet merged, per stream.
    pending: Vec<merge::Pending>,
    /// Staging tables created so far (their names are numbered).
    staged_tables: u64,
    /// Rows a stream stages before they are merged ([`Warehouse::merge_rows`]).
    pub(crate) merge_rows: u64,
    /// The WAL size past which a merge is followed by a checkpoint (sized to the cap; tests
    /// lower it). See [`WAL_BYTES_PER_CAP_BYTE`].
    pub(crate) wal_checkpoint_bytes: u64,
    /// Rows merged in one transaction at most: a larger merge runs in parts
    /// (`merge_staged_tables`). Sized to the cap like `merge_rows`; tests lower it or raise
    /// `merge_rows` alone.
    pub(crate) merge_part_rows: u64,
    /// Tables that held no row when a stream's scan started ([`Warehouse::start_scan`]):
    /// that stream's merges into them record no seen keys (and skip the diff if it
    /// promised new keys), and the end of its scan finds no row of them missing.
    first_loads: BTreeMap<&'static str, FirstLoad>,
    /// The long transactions of first loads, one per stream ([`bulk`]).
    bulks: Vec<Bulk>,
    /// Rows after which that transaction commits ([`BULK_COMMIT_ROWS`]; tests lower it).
    pub(crate) bulk_commit_rows: u64,
    #[cfg(test)]
    pub(crate) fail_before_commit: bool,
    /// Tests: a merge piece of more rows than this fails as out of DuckDB's memory.
    #[cfg(test)]
    pub(crate) out_of_memory_over: Option<u64>,
    /// Tests: merge parts merged again after running out of memory.
    #[cfg(test)]
    pub(crate) retried_parts: u32,
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

    /// [`Warehouse::open`] with DuckDB's memory capped at `limit` (e.g. `"80MB"`, see
    /// [`Warehouse::set_memory_limit`]) from the first moment: the replay of a WAL a killed
    /// sync left stays under the cap the user chose too ([`replay_config`]).
    pub fn open_with_memory_limit(path: impl AsRef<Path>, limit: &str) -> Result<Warehouse> {
        Self::open_capped(path.as_ref(), Box::new(SystemClock), limit)
    }

    /// [`Warehouse::open`] with an injected clock (tests, deterministic timestamps).
    pub fn open_with_clock(path: impl AsRef<Path>, clock: Box<dyn Clock>) -> Result<Warehouse> {
        Self::open_capped(path.as_ref(), clock, WRITER_MEMORY_LIMIT)
    }

    /// A warehouse on an open connection, with every setting at its default.
    fn with(conn: Connection, path: PathBuf, clock: Box<dyn Clock>, schema_version: i64) -> Self {
        Warehouse {
            conn,
            path,
            clock,
            schema_version,
            anti_join_keys: ANTI_JOIN_KEYS,
            deletes: Deletes::Immediate,
            memory_limit: None,
            pending: Vec::new(),
            staged_tables: 0,
            merge_rows: MERGE_ROWS,
            merge_part_rows: MERGE_ROWS,
            wal_checkpoint_bytes: WAL_CHECKPOINT_FLOOR,
            first_loads: BTreeMap::new(),
            bulks: Vec::new(),
            bulk_commit_rows: BULK_COMMIT_ROWS,
            #[cfg(test)]
            fail_before_commit: false,
            #[cfg(test)]
            out_of_memory_over: None,
            #[cfg(test)]
            retried_parts: 0,
        }
    }

    fn open_capped(path: &Path, clock: Box<dyn Clock>, limit: &str) -> Result<Warehouse> {
        let path = path.to_path_buf();
        memory_limit_bytes(limit)?;
        super::check_writable(&path)?;
        let config = replay_config(AccessMode::ReadWrite, &path, limit)
            .map_err(|source| open_error(&path, source))?;
        let mut conn = Connection::open_with_flags(&path, config)
            .map_err(|source| open_error(&path, source))?;
        super::sqltime::install(&conn).map_err(Self::db("defining the time functions"))?;
        let now = clock.now();
        let schema_version = schema::migrate(&mut conn, &path, MIGRATIONS, now)?;
        // Let DuckDB stream results out of order: keeping the insertion order makes a Parquet
        // export buffer rows per thread. (It spills beside the warehouse: [`replay_config`].)
        conn.execute_batch(&format!(
            "SET preserve_insertion_order = false; \
             SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'"
        ))
        .map_err(|source| open_error(&path, source))?;
        let mut warehouse = Warehouse::with(conn, path, clock, schema_version);
        warehouse.set_memory_limit(limit)?;
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
        let config = replay_config(AccessMode::ReadOnly, &path, WRITER_MEMORY_LIMIT)
            .map_err(|source| open_error(&path, source))?;
        let conn = Connection::open_with_flags(&path, config)
            .map_err(|source| open_error(&path, source))?;
        // A reader's queries get DuckDB's defaults (80% of the memory, every core) once the
        // file is open; only the replay of a WAL was capped.
        conn.execute_batch("RESET memory_limit; RESET threads")
            .map_err(|source| open_error(&path, source))?;
        super::sqltime::install(&conn).map_err(Self::db("defining the time functions"))?;
        let found = schema::version(&conn, &path)?.ok_or_else(|| StoreError::Foreign {
            path: path.clone(),
            reason: "it is empty".into(),
        })?;
        schema::check_not_newer(&path, found, SCHEMA_VERSION)?;
        Ok(Warehouse::with(conn, path, Box::new(SystemClock), found))
    }

    /// Cap the memory DuckDB may use on this connection (buffer pool, hash tables), e.g.
    /// `"80MB"`. Above the cap DuckDB evicts cached blocks and spills to `<file>.tmp`; the
    /// work that cannot spill is sized to the cap: the parts of the end-of-scan anti-join and
    /// the merge groups (see [`WRITER_MEMORY_LIMIT`]); DuckDB runs on [`DUCKDB_THREADS`].
    pub fn set_memory_limit(&mut self, limit: &str) -> Result<()> {
        let bytes = memory_limit_bytes(limit)?;
        self.conn
            .execute_batch(&format!(
                "SET memory_limit = '{limit}'; SET threads = {DUCKDB_THREADS}"
            ))
            .map_err(Self::db("setting DuckDB's memory limit"))?;
        self.memory_limit = Some(bytes);
        self.anti_join_keys = anti_join_keys(bytes);
        self.merge_rows =
            (bytes.saturating_sub(MERGE_FIXED_BYTES) / ROW_BYTES_PER_MERGE).max(5_000);
        self.merge_part_rows = self.merge_rows;
        self.wal_checkpoint_bytes =
            ((bytes as f64 * WAL_BYTES_PER_CAP_BYTE) as u64).max(WAL_CHECKPOINT_FLOOR);
        Ok(())
    }

    /// The memory cap set by [`Warehouse::set_memory_limit`], in bytes (`None`: DuckDB's
    /// default, for a reader).
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// The number of threads DuckDB may use for one statement.
    pub fn set_threads(&self, threads: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("SET threads = {}", threads.max(1)))
            .map_err(Self::db("setting DuckDB's threads"))
    }

    /// Write DuckDB's checkpoint (the WAL into the file) now, with at least
    /// [`CHECKPOINT_MEMORY`] of memory: see [`CHECKPOINT_THRESHOLD`]. The writer calls it
    /// after a merge that leaves the WAL past [`Warehouse::wal_checkpoint_bytes`]
    /// ([`Warehouse::checkpoint_if_due`]) and before closing.
    pub(crate) fn checkpoint_wal(&mut self) -> Result<()> {
        // DuckDB checkpoints only with no write transaction open.
        self.commit_bulk()?;
        let raise = self.memory_limit.filter(|cap| *cap < CHECKPOINT_MEMORY);
        let set = |bytes: u64| format!("SET memory_limit = '{}KB'", bytes / 1000);
        if raise.is_some() {
            self.conn
                .execute_batch(&set(CHECKPOINT_MEMORY))
                .map_err(Self::db("raising DuckDB's memory limit for a checkpoint"))?;
        }
        let done = self
            .conn
            .execute_batch("CHECKPOINT")
            .map_err(Self::db("writing the warehouse's checkpoint"));
        if let Some(cap) = raise {
            self.conn
                .execute_batch(&set(cap))
                .map_err(Self::db("setting DuckDB's memory limit"))?;
        }
        done
    }

    /// [`Warehouse::checkpoint_wal`] on up to [`LAST_CHECKPOINT_THREADS`] threads, for the
    /// checkpoint that ends a sync; on one below a cap of [`CHECKPOINT_MEMORY`] (two threads
    /// hold two row groups' buffers, and small caps are raised for any checkpoint already).
    /// DuckDB's threads are [`DUCKDB_THREADS`] again afterwards, whatever the outcome.
    pub(crate) fn checkpoint_at_end(&mut self) -> Result<()> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = LAST_CHECKPOINT_THREADS.min(u32::try_from(cores).unwrap_or(u32::MAX));
        let roomy = self
            .memory_limit
            .is_some_and(|cap| cap >= CHECKPOINT_MEMORY);
        if threads <= DUCKDB_THREADS || !roomy {
            return self.checkpoint_wal();
        }
        self.set_threads(threads)?;
        let done = self.checkpoint_wal();
        let reset = self.set_threads(DUCKDB_THREADS);
        done.and(reset)
    }

    /// [`Warehouse::checkpoint_wal`] if the WAL has grown past
    /// [`Warehouse::wal_checkpoint_bytes`] (a missing WAL is empty).
    pub(crate) fn checkpoint_if_due(&mut self) -> Result<()> {
        let wal = PathBuf::from(format!("{}.wal", self.path.display()));
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size >= self.wal_checkpoint_bytes {
            self.checkpoint_wal()?;
        }
        Ok(())
    }

    /// Close the file, writing DuckDB's checkpoint (WAL → file) and reporting its errors,
    /// which a plain drop would swallow.
    pub fn close(mut self) -> Result<()> {
        // The checkpoint commits the first loads' transactions (which exist only under a cap).
        if self.memory_limit.is_some() {
            self.checkpoint_wal()?;
        }
        self.bulks.clear();
        self.conn.close().map_err(|(_, source)| StoreError::Db {
            doing: "closing the warehouse",
            cause: source,
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

    pub(super) fn now(&self) -> Now {
        Now(self.clock.now())
    }

    pub(super) fn db(doing: &'static str) -> impl FnOnce(duckdb::Error) -> StoreError {
        move |source| StoreError::Db {
            doing,
            cause: source,
        }
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
        cause: source,
    }
}

/// DuckDB settings for every connection the tool opens. Extension autoloading is off: DuckDB
/// would otherwise try to download a missing extension (e.g. `icu` for time-zone arithmetic)
/// from the internet in the middle of a query. The bundled build has `parquet` and `json`;
/// the time functions that live in ICU come from [`super::sqltime`].
pub fn duckdb_config(mode: AccessMode) -> ::duckdb::Result<Config> {
    let writes = matches!(mode, AccessMode::ReadWrite);
    let config = Config::default()
        .access_mode(mode)?
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?;
    if writes {
        // A file this tool creates opens in DuckDB 1.1 to 1.4 clients too (DBeaver's driver,
        // R, older Python, BI connectors), not only in 2.0: storage format 64, as DuckDB 1.0
        // wrote it. DuckDB 1.0.0 itself cannot read the primary-key indexes DuckDB 2.0 writes
        // in it. Files created by earlier versions of the tool keep their format.
        return config.with("storage_compatibility_version", STORAGE_VERSION);
    }
    Ok(config)
}

/// [`duckdb_config`] for opening the warehouse at `path`, with DuckDB's memory capped at
/// `limit`, its threads at a writer's ([`DUCKDB_THREADS`]) and its spill folder
/// beside the file (DuckDB's default for a file, made explicit: the folder is known to
/// be writable), from the start: a killed sync leaves its WAL (up to
/// [`Warehouse::wal_checkpoint_bytes`] of committed rows), and DuckDB replays it while the
/// file opens, before any `SET` can run. Uncapped, replaying a 165 MB WAL left by a 100k-user
/// sync held 273 MiB.
fn replay_config(mode: AccessMode, path: &Path, limit: &str) -> ::duckdb::Result<Config> {
    duckdb_config(mode)?
        .max_memory(limit)?
        .threads(DUCKDB_THREADS.into())?
        .with("temp_directory", format!("{}.tmp", path.display()))
}

/// The oldest DuckDB release whose storage format new warehouse files use (see
/// [`duckdb_config`]); DuckDB 1.1 through 2.0 read it (1.0.0 fails on the indexes of the
/// bookkeeping tables' primary keys, as DuckDB 2.0 writes them).
pub const STORAGE_VERSION: &str = "v1.0.0";
/// A memory amount as DuckDB reads it (`"128MB"`, `"1.5 GiB"`, `"512 KB"`) in bytes; `None`
/// for anything else. The check also keeps the text safe to inline in `SET`.
pub fn memory_bytes(limit: &str) -> Option<u64> {
    let text = limit.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// A `memory_limit` setting in bytes ([`memory_bytes`]), or the error naming it.
fn memory_limit_bytes(limit: &str) -> Result<u64> {
    memory_bytes(limit).ok_or_else(|| StoreError::Setting {
        setting: "memory_limit",
        value: limit.to_owned(),
    })
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
pub(super) struct Now(DateTime<Utc>);

impl fmt::Display for Now {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TIMESTAMP '{}'", self.0.format("%Y-%m-%d %H:%M:%S%.6f"))
    }
}

mod bulk;
mod merge;
mod runs;
mod scan;

use bulk::*;
pub use merge::MERGE_AFTER;
use merge::*;
use runs::*;
pub use scan::{Deletes, GUARD_FLOOR, MAX_DELETE_SHARE};

#[cfg(test)]
mod tests;
