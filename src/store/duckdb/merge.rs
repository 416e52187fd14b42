//! Committing pages: stage a batch (checked, deduplicated, hashed), diff it against the table by key and hash, write only new and changed rows (closing history versions), record the seen keys and the checkpoint, in one transaction.
//!
//! A sync stages its pages with [`Warehouse::stage`] and merges them in large groups (see
//! [`Pending`]); [`Warehouse::commit`] merges at once.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::*;

/// Merge staged rows at least this often, however few: the rows staged since the last merge
/// are the work a killed sync redoes (their checkpoint is stored with their merge).
pub const MERGE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// A stream's rows staged since its last merge, in temporary tables (one per table; DuckDB
/// keeps them under the memory cap and spills them beside the file), with the checkpoint that
/// covers them.
///
/// Why: a merge costs one scan of the target table's keys (DuckDB has no index join here),
/// so merging every few thousand rows makes a scan quadratic in the table's size: at 1M users
/// (6M portfolio rows) that was 1,200 merges each reading millions of keys. Staged, a scan
/// merges once per [`Warehouse::merge_rows`] rows (sized to the memory cap), or after
/// [`MERGE_AFTER`].
pub(super) struct Pending {
    stream: String,
    run: RunId,
    /// The checkpoint to store with the merge: it covers every row staged.
    checkpoint: String,
    tables: Vec<PendingTable>,
    rows: u64,
    since: Instant,
    /// The writer's time preparing and appending the staged rows.
    staging: Duration,
}

/// Where the writer's time in one merge went, for its debug line (`sync -v`): the writer
/// thread is a fast server's bottleneck, so these are the figures to cut.
#[derive(Debug, Default)]
struct MergeTimes {
    /// Diffing the staged rows against the tables and writing what changed.
    sql: Duration,
    /// Committing the transactions (DuckDB writes the WAL).
    commit: Duration,
    /// Checkpoints the merge made due (the WAL compressed into the file).
    checkpoint: Duration,
}

/// Milliseconds, for a log field.
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

struct PendingTable {
    spec: &'static TableSpec,
    temp: String,
    /// Its rows went into the table itself ([`Warehouse::append_direct`]), not into `temp`.
    direct: bool,
    rows: u64,
    duplicates: u64,
    /// Hashes of the staged keys (a key staged again forces a merge first: last row wins).
    keys: HashSet<u64, foldhash::fast::FixedState>,
}

impl Warehouse {
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
    /// Rows of the stream staged with [`Warehouse::stage`] and not yet merged are merged
    /// first, with their own checkpoint.
    pub fn commit(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        batches: Vec<(&TableSpec, RecordBatch)>,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let mut all = self.flush(stream)?;
        for (table, stats) in self.commit_now(stream, run, checkpoint, batches)? {
            *all.entry(table).or_default() += stats;
        }
        Ok(all)
    }

    /// Stage batches of a stream (checked, deduplicated and hashed, as [`Warehouse::commit`]
    /// does) for a later merge, with the checkpoint that covers them and everything staged
    /// before; merge everything staged when [`Warehouse::merge_rows`] rows are staged or the
    /// oldest was staged [`MERGE_AFTER`] ago. Returns the stats of what was merged (empty
    /// when nothing was). A key staged again merges what was staged before it first, so the
    /// later row wins, as within one commit. A killed process loses the staged rows and
    /// resumes from the last merged checkpoint; so does a failed append, which drops all the
    /// stream has staged.
    pub fn stage(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        batches: Vec<(&'static TableSpec, RecordBatch)>,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let started = Instant::now();
        let prepared = prepare(batches)?;
        self.stage_prepared(stream, run, checkpoint, prepared, started.elapsed())
    }

    /// [`Warehouse::stage`] of batches already prepared ([`prepare`], which a sync runs off
    /// the writer thread); `preparing` is the time that took here, if any (for the merge's
    /// debug line).
    pub fn stage_prepared(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        prepared: Vec<Prepared<'static>>,
        preparing: Duration,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let mut merged: BTreeMap<&'static str, MergeStats> = BTreeMap::new();
        let mut staging = preparing;
        let again = self
            .pending
            .iter()
            .find(|p| p.stream == stream)
            .is_some_and(|p| {
                prepared.iter().any(|prepared| {
                    p.tables
                        .iter()
                        .filter(|t| t.spec.table == prepared.spec.table)
                        .any(|t| prepared.keys.iter().any(|h| t.keys.contains(h)))
                })
            });
        if again {
            // A key staged again: merge what came before it (covered by the checkpoint staged
            // with it), so that the later row wins.
            merged = self.flush(stream)?;
        }
        let at = match self.pending.iter().position(|p| p.stream == stream) {
            Some(at) => at,
            None => {
                self.pending.push(Pending {
                    stream: stream.to_owned(),
                    run,
                    checkpoint: checkpoint.to_owned(),
                    tables: Vec::new(),
                    rows: 0,
                    since: Instant::now(),
                    staging: Duration::ZERO,
                });
                self.pending.len() - 1
            }
        };
        let appending = Instant::now();
        if let Err(e) = self.append_pending(at, prepared) {
            // What a failed append left in its staging table is unknown (after an appender
            // commit ran out of memory, appending again to the table stored misaligned rows):
            // nothing staged for the stream is merged; a later run fetches it again from the
            // last merged checkpoint. In a first load's transaction the failure may have
            // aborted it: rolled back, to the last commit.
            self.drop_pending(stream);
            self.fail_bulk(stream);
            return Err(e);
        }
        let pending = &mut self.pending[at];
        staging += appending.elapsed();
        pending.staging += staging;
        pending.run = run;
        checkpoint.clone_into(&mut pending.checkpoint);
        if pending.rows >= self.merge_rows || pending.since.elapsed() >= MERGE_AFTER {
            for (table, stats) in self.merge_pending(at)? {
                *merged.entry(table).or_default() += stats;
            }
        }
        Ok(merged)
    }

    /// A stream's scan starts, from its first page or resumed from a checkpoint, and will
    /// merge into `tables`. A table holding no row at all (a first load) then holds, at the
    /// scan's end, only rows this scan merged (one stream fills each table; rows another
    /// stream merged meanwhile are as fresh): none can be missing. So the stream's merges
    /// into it record no seen keys, and the end of its scan looks for no missing rows there.
    /// At 100k users those keys were a third of the rows a first load wrote, and at 1M users
    /// their end-of-scan anti-join read the table once per part.
    ///
    /// `promised`: the one of `tables` into which the scan promises to merge no key twice
    /// (the portfolio's occurrence numbering makes every item key of a scan distinct). On a
    /// first load its merges also insert the staged rows without the diff against the table:
    /// a join that reads every key of the table so far, to find nothing but new rows, at a
    /// cost growing with each merge (at 1M users, 6M rows, most of the writer's SQL). The
    /// diff is back after a failed merge (some of its parts may be written). Without the
    /// promise, a first load's merge diffs only when the table has one of its keys already
    /// ([`merge_first_load`]).
    ///
    /// Both hold for the stream's own rows, until the end of its scan (or the next start).
    /// Returns the first-load tables.
    pub fn start_scan(
        &mut self,
        stream: &str,
        tables: &[&'static TableSpec],
        promised: Option<&'static TableSpec>,
    ) -> Result<Vec<&'static str>> {
        self.end_first_loads(stream);
        self.end_bulk(stream)?;
        let mut first = Vec::new();
        for spec in tables {
            let table = spec.table;
            let empty: bool = self
                .conn
                .query_row(
                    &format!("SELECT count(*) = 0 FROM main.{}", q(table)),
                    [],
                    |r| r.get(0),
                )
                .map_err(|cause| StoreError::Merge { table, cause })?;
            if empty && !first.contains(&table) {
                first.push(table);
                let diff = promised.is_none_or(|spec| spec.table != table);
                self.first_loads.insert(
                    table,
                    FirstLoad {
                        stream: stream.to_owned(),
                        diff,
                    },
                );
            }
        }
        // A scan that loads only empty tables merges in a long transaction ([`bulk`]); one
        // that also merges into a table holding rows diffs there, and keeps its commits.
        if !first.is_empty() && tables.iter().all(|spec| first.contains(&spec.table)) {
            self.start_bulk(stream, first.clone(), promised)?;
        }
        Ok(first)
    }

    /// Forget the stream's first loads ([`Warehouse::start_scan`]): its scan ended.
    pub(super) fn end_first_loads(&mut self, stream: &str) {
        self.first_loads.retain(|_, load| load.stream != stream);
    }

    /// Whether `stream`'s rows in `table` are a first load's ([`Warehouse::start_scan`]).
    pub(super) fn first_load(&self, stream: &str, table: &str) -> bool {
        !How::of(&self.first_loads, stream, table).seen
    }

    /// Append prepared batches to the staging tables of `self.pending[at]`.
    fn append_pending(&mut self, at: usize, prepared: Vec<Prepared<'static>>) -> Result<()> {
        let stream = self.pending[at].stream.clone();
        let direct = self.direct_tables(&stream);
        if prepared.iter().any(|p| direct.contains(&p.spec.table)) {
            self.begin_bulk(&stream)?;
        }
        let (now, run) = (self.now(), self.pending[at].run);
        // `stream_conn`, with `self.pending` borrowed apart below.
        let conn = match self.bulks.iter().find(|b| b.stream == stream) {
            Some(bulk) => &bulk.conn,
            None => &self.conn,
        };
        for Prepared {
            spec,
            staged,
            duplicates,
            keys,
        } in prepared
        {
            let pending = &mut self.pending[at];
            let t = match pending
                .tables
                .iter()
                .position(|t| t.spec.table == spec.table)
            {
                Some(t) => t,
                None => {
                    let temp = format!("_pending_{}", self.staged_tables);
                    self.staged_tables += 1;
                    let direct = direct.contains(&spec.table);
                    if !direct {
                        create_stage(conn, spec, &temp)?;
                    }
                    pending.tables.push(PendingTable {
                        spec,
                        temp,
                        direct,
                        rows: 0,
                        duplicates: 0,
                        keys: HashSet::default(),
                    });
                    pending.tables.len() - 1
                }
            };
            let rows = staged.num_rows() as u64;
            let entry = &mut pending.tables[t];
            if entry.direct {
                append_direct(conn, spec, staged, now, run)?;
            } else {
                append_stage(conn, spec, &entry.temp, staged)?;
            }
            entry.rows += rows;
            entry.duplicates += duplicates;
            entry.keys.extend(keys);
            pending.rows += rows;
        }
        Ok(())
    }

    /// Merge what the stream has staged ([`Warehouse::stage`]) and store the checkpoint
    /// staged last, in one transaction. Returns the stats (empty when nothing was staged).
    pub fn flush(&mut self, stream: &str) -> Result<BTreeMap<&'static str, MergeStats>> {
        match self.pending.iter().position(|p| p.stream == stream) {
            Some(at) => self.merge_pending(at),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Forget what the stream has staged, without merging it.
    pub(super) fn drop_pending(&mut self, stream: &str) {
        if let Some(at) = self.pending.iter().position(|p| p.stream == stream) {
            let pending = self.pending.remove(at);
            let conn = self.stream_conn(stream);
            drop_temp(conn, pending.tables.iter().map(|t| t.temp.as_str()));
        }
    }

    /// Rows staged before a merge, sized to the memory cap ([`Warehouse::set_memory_limit`]).
    pub fn merge_rows(&self) -> u64 {
        self.merge_rows
    }

    /// Merge the staged rows of `self.pending[at]` and remove it (its temporary tables too,
    /// whatever the outcome: a failed merge leaves the checkpoint where it was).
    fn merge_pending(&mut self, at: usize) -> Result<BTreeMap<&'static str, MergeStats>> {
        let pending = self.pending.remove(at);
        let staged: Vec<Staged> = pending
            .tables
            .iter()
            .map(|t| Staged {
                spec: t.spec,
                stage: t.temp.clone(),
                rows: t.rows,
                duplicates: t.duplicates,
                direct: t.direct,
            })
            .collect();
        let started = Instant::now();
        let mut times = MergeTimes::default();
        let result = self.merge_staged_tables(
            &pending.stream,
            pending.run,
            &pending.checkpoint,
            &staged,
            &mut times,
        );
        if tracing::enabled!(tracing::Level::DEBUG) {
            // Where the memory is: DuckDB's buffers (held to the cap) and the whole process.
            let duckdb_mib = self
                .conn
                .query_row(
                    "SELECT sum(memory_usage_bytes) / 1048576 FROM duckdb_memory()",
                    [],
                    |r| r.get::<_, f64>(0),
                )
                .unwrap_or(f64::NAN);
            let (rss_mib, peak_mib) = crate::store::alloc::memory_mib();
            tracing::debug!(
                stream = pending.stream,
                rows = pending.rows,
                ms = ms(started.elapsed()),
                staging_ms = ms(pending.staging),
                sql_ms = ms(times.sql),
                commit_ms = ms(times.commit),
                checkpoint_ms = ms(times.checkpoint),
                duckdb_mib = duckdb_mib.round(),
                rss_mib = rss_mib.round(),
                peak_mib = peak_mib.round(),
                "Merged staged rows."
            );
        }
        let conn = self.stream_conn(&pending.stream);
        drop_temp(conn, pending.tables.iter().map(|t| t.temp.as_str()));
        result
    }

    /// The batches merged at once (nothing staged), with the checkpoint.
    fn commit_now(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        batches: Vec<(&TableSpec, RecordBatch)>,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let tables = prepare(batches)?;
        let mut staged = Vec::with_capacity(tables.len());
        for (i, prepared) in tables.into_iter().enumerate() {
            let (spec, rows) = (prepared.spec, prepared.staged.num_rows() as u64);
            let stage = format!("_stage_{i}");
            stage_batch(self.stream_conn(stream), spec, &stage, prepared.staged)?;
            staged.push(Staged {
                spec,
                stage,
                rows,
                duplicates: prepared.duplicates,
                direct: false,
            });
        }
        let mut result =
            self.merge_staged_tables(stream, run, checkpoint, &staged, &mut MergeTimes::default());
        if result.is_ok() && self.in_bulk(stream) {
            // Committed when it returns, as its name says: not left to the long transaction.
            result = self.commit_bulk().and(result);
        }
        drop_temp(
            self.stream_conn(stream),
            staged.iter().map(|s| s.stage.as_str()),
        );
        result
    }

    /// Merge staged tables and store the checkpoint: in one transaction when they hold at
    /// most [`Warehouse::merge_part_rows`] rows (what a sync stages: `merge_rows` is the same
    /// size), else in parts of that many rows, each its own transaction, the checkpoint stored
    /// by the last. Why parts: DuckDB keeps a transaction's changes until its commit, and one
    /// merge far larger than the memory cap ended in a DuckDB FATAL error at the commit's
    /// checkpoint (120k rows at 20 MB), after which the database refuses every statement. A
    /// process killed between parts resumes from the previous checkpoint and merges the
    /// parts' rows again, by key: they come back unchanged, nothing doubles. Adds the time
    /// of each step to `times`.
    ///
    /// A table of a first load ([`Warehouse::start_scan`]) gets the stream's rows merged
    /// without recording their keys, and without the diff if the stream promised new keys.
    fn merge_staged_tables(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        staged: &[Staged<'_>],
        times: &mut MergeTimes,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let merged = self.merge_staged_parts(stream, run, checkpoint, staged, times);
        if merged.is_err() {
            // Some parts may be written: a retry of the same rows must find them.
            for s in staged {
                if let Some(load) = self.first_loads.get_mut(s.spec.table) {
                    load.diff = true;
                }
            }
        }
        merged
    }

    /// [`Warehouse::merge_staged_tables`] in parts.
    ///
    /// A part whose SQL runs out of DuckDB's memory is rolled back whole, so it is merged
    /// again: after a checkpoint (which frees what committed parts still hold in memory) and
    /// in two halves, each halved again if it runs out too, down to [`MIN_RETRY_ROWS`].
    /// Why: not all of DuckDB's memory spills. At the smallest cap, 20 MB, a 1M-user re-sync
    /// in which 950k users changed failed in the `UPDATE` of a merge of 9.5k changed users
    /// (`could not allocate block of size 256.0 KiB`), with the portfolio's merges running
    /// beside it and committed changes not yet checkpointed; merged again this way, the
    /// sync finished (one part retried). A failed commit is not retried: its
    /// outcome is DuckDB's to report, and the error stops the sync.
    fn merge_staged_parts(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        staged: &[Staged<'_>],
        times: &mut MergeTimes,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        // A first load's long transaction merges each staged table whole: rows appended to a
        // table inside an open transaction have DuckDB's transaction-local row ids (from
        // 2^62), so a part chosen by `rowid` would find none of them. Its merge only inserts,
        // and its commits are what bound it.
        let most = if self.in_bulk(stream) {
            u64::MAX
        } else {
            self.merge_part_rows
        };
        let mut parts: VecDeque<Vec<Piece>> = merge_parts(staged, most).into();
        let mut committed = 0;
        let mut all: BTreeMap<&'static str, MergeStats> = BTreeMap::new();
        while let Some(part) = parts.pop_front() {
            let last = parts.is_empty().then_some(checkpoint);
            match self.merge_part(stream, run, last, staged, &part, times) {
                Ok(stats) => {
                    committed += 1;
                    for (table, stats) in stats {
                        *all.entry(table).or_default() += stats;
                    }
                }
                // Not in a first load's transaction: the failure rolled back more than the part.
                Err(StoreError::Merge { table, cause })
                    if out_of_memory(&cause) && !self.in_bulk(stream) =>
                {
                    let rows = part_rows(&part);
                    let Some((first, second)) = halve(&part).filter(|_| rows >= MIN_RETRY_ROWS)
                    else {
                        return Err(StoreError::Merge { table, cause });
                    };
                    tracing::info!(
                        stream,
                        table,
                        rows,
                        "A merge ran out of DuckDB's memory: merging it again in two halves, \
                         after a checkpoint (a larger `warehouse.memory_limit` avoids this)."
                    );
                    #[cfg(test)]
                    {
                        self.retried_parts += 1;
                    }
                    let checkpointing = Instant::now();
                    self.checkpoint_wal()?;
                    times.checkpoint += checkpointing.elapsed();
                    parts.push_front(second);
                    parts.push_front(first);
                }
                Err(e) => return Err(e),
            }
        }
        if committed > 1 {
            tracing::debug!(stream, parts = committed, "Merged in parts.");
        }
        Ok(all)
    }

    /// One transaction of [`Warehouse::merge_staged_parts`]: the pieces of `part`, and the
    /// stream's checkpoint if given (the last part). Returns the stats of what it merged. In
    /// a first load's long transaction ([`bulk`]) the merge commits only when that is due;
    /// a failure rolls that transaction back.
    fn merge_part(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: Option<&str>,
        staged: &[Staged<'_>],
        part: &[Piece],
        times: &mut MergeTimes,
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let now = self.now();
        let started = Instant::now();
        let bulk = self.in_bulk(stream);
        if bulk {
            self.begin_bulk(stream)?;
        } else {
            let tables: Vec<&str> = part.iter().map(|p| staged[p.table].spec.table).collect();
            self.commit_bulk_of(stream, &tables)?;
        }
        let merged = {
            let own = if bulk {
                None
            } else {
                Some(
                    self.conn
                        .unchecked_transaction()
                        .map_err(Self::db("starting a page transaction"))?,
                )
            };
            let tx: &Connection = match &own {
                Some(tx) => tx,
                None => self.stream_conn(stream),
            };
            let merged = self.merge_pieces(tx, stream, run, now, checkpoint, staged, part);
            let committing = Instant::now();
            times.sql += committing - started;
            let merged = match (merged, own) {
                (Ok(merged), Some(tx)) => tx
                    .commit()
                    .map(|()| merged)
                    .map_err(Self::db("committing a page")),
                // Dropping `own` rolls it back.
                (merged, _) => merged,
            };
            times.commit += committing.elapsed();
            merged
        };
        if bulk {
            let committing = Instant::now();
            match &merged {
                Ok(stats) => {
                    let rows = stats
                        .values()
                        .map(|s| s.new + s.changed + s.unchanged)
                        .sum();
                    self.merged_in_bulk(stream, rows)?;
                }
                Err(_) => self.fail_bulk(stream),
            }
            times.commit += committing.elapsed();
        }
        let merged = merged?;
        let checkpointing = Instant::now();
        // Until a checkpoint DuckDB holds the committed rows in memory (or its spill)
        // too: written into the file once the WAL has grown past its bound.
        self.checkpoint_if_due()?;
        times.checkpoint += checkpointing.elapsed();
        Ok(merged)
    }

    /// The SQL of [`Warehouse::merge_part`] in the transaction `tx`: each piece merged as its
    /// table's load says ([`How`]), then the checkpoint if given.
    #[allow(clippy::too_many_arguments)]
    fn merge_pieces(
        &self,
        tx: &Connection,
        stream: &str,
        run: RunId,
        now: Now,
        checkpoint: Option<&str>,
        staged: &[Staged<'_>],
        part: &[Piece],
    ) -> Result<BTreeMap<&'static str, MergeStats>> {
        let mut all: BTreeMap<&'static str, MergeStats> = BTreeMap::new();
        for piece in part {
            let s = &staged[piece.table];
            let spec = s.spec;
            let merge = |source| StoreError::Merge {
                table: spec.table,
                cause: source,
            };
            let rows = piece.end - piece.start;
            #[cfg(test)]
            if self.out_of_memory_over.is_some_and(|most| rows > most) {
                return Err(merge(test_out_of_memory()));
            }
            let source = if rows == s.rows {
                format!("temp.{}", s.stage)
            } else {
                format!(
                    "(SELECT * FROM temp.{} WHERE rowid >= {} AND rowid < {})",
                    s.stage, piece.start, piece.end
                )
            };
            let how = How::of(&self.first_loads, stream, spec.table);
            let (new, changed) = if rows == 0 {
                (0, 0)
            } else if how.diff && !how.seen {
                merge_first_load(tx, spec, &source, run, now).map_err(merge)?
            } else if how.diff {
                merge_staged(tx, spec, &source, run, now).map_err(merge)?
            } else if s.direct {
                (rows, 0)
            } else {
                let new = insert_new(tx, spec, &format!("{source} d"), run, now);
                (new.map_err(merge)? as u64, 0)
            };
            if how.seen && rows > 0 {
                record_seen(tx, spec, &source, stream).map_err(merge)?;
            }
            let stats = MergeStats {
                new,
                changed,
                unchanged: rows - new - changed,
                duplicates: if piece.start == 0 { s.duplicates } else { 0 },
            };
            *all.entry(spec.table).or_default() += stats;
        }
        if let Some(checkpoint) = checkpoint {
            store_checkpoint(tx, stream, checkpoint, run, now)
                .map_err(Self::db("storing a checkpoint"))?;
            #[cfg(test)]
            if self.fail_before_commit {
                // Simulates a crash inside the transaction: it is rolled back.
                return Err(StoreError::Db {
                    doing: "test: crash before commit",
                    cause: duckdb::Error::QueryReturnedNoRows,
                });
            }
        }
        Ok(all)
    }

    /// Rows merged in one transaction at most (see `merge_staged_tables`).
    pub fn merge_part_rows(&self) -> u64 {
        self.merge_part_rows
    }
}

/// Drop staging tables, whatever the merge's outcome: their rows are either merged or
/// fetched again from the last checkpoint, and dropping frees their memory (and spill) now
/// rather than at the next page. A failure to drop only leaves a temporary table behind.
fn drop_temp<'a>(conn: &Connection, tables: impl IntoIterator<Item = &'a str>) {
    for table in tables {
        let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS temp.{table}"));
    }
}

/// A table's first load by one stream ([`Warehouse::start_scan`]).
#[derive(Debug)]
pub(super) struct FirstLoad {
    stream: String,
    /// The stream's rows are diffed against the table: unless it promised new keys there,
    /// and again after a failed merge (some of its parts may be written).
    diff: bool,
}

/// How one table's staged rows are merged ([`Warehouse::start_scan`]).
#[derive(Debug, Clone, Copy)]
struct How {
    /// Diffed against the table (else inserted as new: the scan's promise on a first load).
    diff: bool,
    /// Their keys recorded as seen (not on a first load).
    seen: bool,
}

impl How {
    /// How `stream`'s rows are merged into `table`: a first load's record no seen keys, and
    /// skip the diff if the stream promised new keys ([`Warehouse::start_scan`]).
    fn of(first_loads: &BTreeMap<&'static str, FirstLoad>, stream: &str, table: &str) -> How {
        match first_loads.get(table) {
            Some(load) if load.stream == stream => How {
                diff: load.diff,
                seen: false,
            },
            _ => How {
                diff: true,
                seen: true,
            },
        }
    }
}

/// Rows `start..end` (by `rowid`) of the staged table `staged[table]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) table: usize,
    pub(super) start: u64,
    pub(super) end: u64,
}

/// The transactions of a merge: the staged tables cut into pieces of at most `part_rows`
/// rows, packed in order into transactions of at most `part_rows` rows (a table with no rows
/// is a piece of 0 rows: its duplicates are still counted). Never empty.
pub(super) fn merge_parts(staged: &[Staged<'_>], part_rows: u64) -> Vec<Vec<Piece>> {
    let part_rows = part_rows.max(1);
    let mut parts: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut in_part = 0;
    for (table, s) in staged.iter().enumerate() {
        let mut start: u64 = 0;
        loop {
            let end = start.saturating_add(part_rows).min(s.rows);
            let rows = end - start;
            if in_part + rows > part_rows && !parts.last().is_some_and(Vec::is_empty) {
                parts.push(Vec::new());
                in_part = 0;
            }
            parts
                .last_mut()
                .expect("never empty")
                .push(Piece { table, start, end });
            in_part += rows;
            start = end;
            if start >= s.rows {
                break;
            }
        }
    }
    parts
}

/// The smallest part [`Warehouse::merge_staged_parts`] halves after it ran out of memory:
/// one smaller than this that still does, after a checkpoint, is reported (the cap is too
/// small for the data), rather than retried row by row.
const MIN_RETRY_ROWS: u64 = 1_000;

/// The rows of one transaction's pieces.
fn part_rows(part: &[Piece]) -> u64 {
    part.iter().map(|p| p.end - p.start).sum()
}

/// A part cut in two, each piece at its middle (an empty piece stays in the first, which
/// counts its duplicates); `None` when the second would be empty.
pub(super) fn halve(part: &[Piece]) -> Option<(Vec<Piece>, Vec<Piece>)> {
    let mut first = Vec::new();
    let mut second = Vec::new();
    for piece in part {
        let middle = piece.start + (piece.end - piece.start).div_ceil(2);
        first.push(Piece {
            end: middle,
            ..*piece
        });
        if middle < piece.end {
            second.push(Piece {
                start: middle,
                ..*piece
            });
        }
    }
    (!second.is_empty()).then_some((first, second))
}

/// Whether DuckDB refused a statement for want of memory under its cap (the statement failed
/// and changed nothing; DuckDB stays usable, unlike a failed checkpoint).
fn out_of_memory(error: &duckdb::Error) -> bool {
    const OUT_OF_MEMORY: duckdb::ffi::duckdb_state =
        duckdb::ffi::duckdb_error_type_DUCKDB_ERROR_OUT_OF_MEMORY as _;
    match error {
        duckdb::Error::DuckDBFailure(code, message) => {
            code.extended_code == OUT_OF_MEMORY
                || message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Out of Memory Error"))
        }
        _ => false,
    }
}

/// The error DuckDB gives a statement that does not fit its memory cap, for tests that make
/// parts fail ([`Warehouse::out_of_memory_over`]).
#[cfg(test)]
fn test_out_of_memory() -> duckdb::Error {
    duckdb::Error::DuckDBFailure(
        duckdb::ffi::Error::new(duckdb::ffi::duckdb_error_type_DUCKDB_ERROR_OUT_OF_MEMORY as _),
        Some("Out of Memory Error: could not allocate block of size 256.0 KiB (test)".into()),
    )
}

/// One table's staged rows, ready to merge.
pub(super) struct Staged<'a> {
    pub(super) spec: &'a TableSpec,
    pub(super) stage: String,
    pub(super) rows: u64,
    pub(super) duplicates: u64,
    /// Appended into the table itself already, in a first load's transaction
    /// ([`Warehouse::append_direct`]): the merge only counts them.
    pub(super) direct: bool,
}

pub(super) fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Join condition `a.k1 = b.k1 AND ...` over the key columns.
pub(super) fn key_match(spec: &TableSpec, a: &str, b: &str) -> String {
    spec.key
        .iter()
        .map(|c| format!("{a}.{k} = {b}.{k}", k = q(c.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub(super) fn key_names(spec: &TableSpec) -> String {
    spec.key
        .iter()
        .map(|c| q(c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn key_list(spec: &TableSpec, alias: &str) -> String {
    spec.key
        .iter()
        .map(|c| format!("{alias}.{}", q(c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A staged value as stored: JSON is staged as text and cast here.
pub(super) fn stored_value(alias: &str, name: &str, ty: ColumnType) -> String {
    match ty {
        ColumnType::Json => format!("CAST({alias}.{} AS JSON)", q(name)),
        _ => format!("{alias}.{}", q(name)),
    }
}

/// Load a prepared batch ([`Prepared::staged`]) into a fresh temporary table.
pub(super) fn stage_batch(
    conn: &Connection,
    spec: &TableSpec,
    stage: &str,
    batch: RecordBatch,
) -> Result<()> {
    create_stage(conn, spec, stage)?;
    append_stage(conn, spec, stage, batch)
}

/// Create (or empty) the temporary staging table `stage` of a table.
fn create_stage(conn: &Connection, spec: &TableSpec, stage: &str) -> Result<()> {
    let columns: Vec<String> = spec
        .columns()
        .map(|c| format!("{} {}", q(c.name), c.ty.staging_sql()))
        .chain(std::iter::once("_hash UBIGINT".to_string()))
        .collect();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {stage} ({})",
        columns.join(", ")
    ))
    .map_err(|source| StoreError::Merge {
        table: spec.table,
        cause: source,
    })
}

/// Append a prepared batch ([`Prepared::staged`]) to the staging table `stage`.
fn append_stage(
    conn: &Connection,
    spec: &TableSpec,
    stage: &str,
    staged: RecordBatch,
) -> Result<()> {
    let table = spec.table;
    if staged.num_rows() == 0 {
        return Ok(());
    }
    let mut appender = conn
        .appender_to_catalog_and_db(stage, "temp", "main")
        .map_err(|source| StoreError::Merge {
            table,
            cause: source,
        })?;
    appender
        .append_record_batch(staged)
        .and_then(|()| appender.flush())
        .map_err(|source| StoreError::Merge {
            table,
            cause: source,
        })?;
    Ok(())
}

/// Steps 2–3 of a page (see the module docs) for the staged rows `source` (a table or a
/// subquery). Returns (new, changed).
pub(super) fn merge_staged(
    tx: &Connection,
    spec: &TableSpec,
    source: &str,
    run: RunId,
    now: Now,
) -> duckdb::Result<(u64, u64)> {
    let target = q(spec.table);
    let first_key = q(spec.key[0].name);
    // With history: whether a changed row gets a new version (it was deleted, or its tracked
    // values differ), and the open version it closes, which is the row as it was: its tracked
    // values, from `_version_from` by run `_version_run_id` (NULL for a deleted row, whose
    // version closed with the delete, and in rows of a warehouse synced before schema
    // version 8, whose open version is stored: it is closed below by key).
    let version = match spec.history {
        Some(history) => format!(
            ", t._deleted_at IS NOT NULL OR {} AS _version, {}, \
             t._version_from AS _old_from, t._version_run_id AS _old_run_id",
            distinct(history.tracked, "t", "s"),
            history
                .tracked
                .iter()
                .map(|c| format!("t.{} AS {}", q(c), q(&format!("_old_{c}"))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE _diff AS
         SELECT s.*, t.{first_key} IS NULL AS _is_new{version}
         FROM {source} s LEFT JOIN main.{target} t ON {on}
         WHERE t.{first_key} IS NULL OR t._hash <> s._hash OR t._deleted_at IS NOT NULL",
        on = key_match(spec, "t", "s"),
    ))?;
    let (new, changed): (i64, i64) = tx.query_row(
        "SELECT count(*) FILTER (_is_new), count(*) FILTER (NOT _is_new) FROM temp._diff",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;

    if let Some(history) = spec.history.filter(|_| changed > 0) {
        // A changed row whose tracked values differ, or that was deleted, closes its open
        // version and opens one (in the row, by the update below). The open version is the
        // row as the diff read it; a warehouse synced before schema version 8 may still
        // store it, open, in the history table. Until issue 19's 20th session the new
        // versions were found by a second join with the history (rows with no open version
        // left): at 1M users it took 1.0–2.0 s of a 2.1–4.0 s merge of 100k items, 12% of
        // them changed.
        tx.execute_batch(&format!(
            "UPDATE main.{hist} AS h SET valid_to = {now}
             FROM temp._diff d
             WHERE {on} AND NOT d._is_new AND d._version AND h.valid_to IS NULL",
            hist = q(history.table),
            on = key_match(spec, "h", "d"),
        ))?;
        tx.execute_batch(&store_held_versions(
            spec,
            "temp._diff d WHERE NOT d._is_new AND d._version AND",
            Held::Diffed,
            now,
        ))?;
    }
    if changed > 0 {
        let set: Vec<String> = spec
            .values
            .iter()
            .map(|c| format!("{} = {}", q(c.name), stored_value("d", c.name, c.ty)))
            .collect();
        let version = if spec.history.is_some() {
            format!(
                ", _version_from = CASE WHEN d._version THEN {now} ELSE t._version_from END,
                 _version_run_id = CASE WHEN d._version THEN {run} ELSE t._version_run_id END"
            )
        } else {
            String::new()
        };
        tx.execute_batch(&format!(
            "UPDATE main.{target} AS t SET {set}, _hash = d._hash, _updated_at = {now},
                 _deleted_at = NULL, _run_id = {run}{version}
             FROM temp._diff d WHERE {on} AND NOT d._is_new",
            set = set.join(", "),
            on = key_match(spec, "t", "d"),
        ))?;
    }
    if new > 0 {
        insert_new(tx, spec, "temp._diff d WHERE d._is_new", run, now)?;
    }
    tx.execute_batch("DROP TABLE temp._diff")?;
    Ok((new as u64, changed as u64))
}

/// [`merge_staged`] for rows of a first load whose scan cannot promise new keys (a user can
/// come twice, in both parts or on two pages): they are all new unless the table has one of
/// their keys already, which in a first load is rare. One probe of the table's keys (a semi
/// join built on the staged keys) decides; when none is there, the rows are inserted as they
/// were staged. The diff would have copied every staged row into `temp._diff` first: at 1M
/// users the users stream's SQL took 4.5 s of the writer's 25.7 s, and without the copy the
/// writer's time fell by 1.8 to 3.8 s (two runs).
fn merge_first_load(
    tx: &Connection,
    spec: &TableSpec,
    source: &str,
    run: RunId,
    now: Now,
) -> duckdb::Result<(u64, u64)> {
    let seen: bool = tx.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM main.{target} t SEMI JOIN {source} s ON {on})",
            target = q(spec.table),
            on = key_match(spec, "t", "s"),
        ),
        [],
        |r| r.get(0),
    )?;
    if seen {
        return merge_staged(tx, spec, source, run, now);
    }
    let new = insert_new(tx, spec, &format!("{source} d"), run, now)?;
    Ok((new as u64, 0))
}

/// `(a.c1 IS DISTINCT FROM b.c1 OR ...)` over `columns`.
fn distinct(columns: &[&str], a: &str, b: &str) -> String {
    let differs: Vec<String> = columns
        .iter()
        .map(|c| format!("{a}.{c} IS DISTINCT FROM {b}.{c}", c = q(c)))
        .collect();
    format!("({})", differs.join(" OR "))
}

/// Insert the rows `from` (a `FROM` clause whose rows are aliased `d`: staged rows whose keys
/// the table does not have), in their first history version if the table has history (held
/// in the row: `sql/schema/008_open_versions.sql`). Returns the rows inserted.
fn insert_new(
    tx: &Connection,
    spec: &TableSpec,
    from: &str,
    run: RunId,
    now: Now,
) -> duckdb::Result<usize> {
    // The row's own columns and `_hash`, then its bookkeeping values ([`new_row`]), as
    // [`append_direct`](super::bulk::append_direct) writes them.
    let names: Vec<String> = direct_columns(spec).iter().map(|c| q(c)).collect();
    let values: Vec<String> = spec
        .columns()
        .map(|c| stored_value("d", c.name, c.ty))
        .chain(std::iter::once("d._hash".to_string()))
        .chain(new_row(spec).iter().map(|&(_, value)| match value {
            NewValue::Now => now.to_string(),
            NewValue::Null => "NULL".to_string(),
            NewValue::Run => run.to_string(),
        }))
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO main.{target} ({names}) SELECT {values} FROM {from}",
            target = q(spec.table),
            names = names.join(", "),
            values = values.join(", "),
        ),
        [],
    )
}

/// Where [`store_held_versions`] reads the open versions that rows hold.
pub(super) enum Held {
    /// Rows of `temp._diff` (aliased `d`): the row as the diff read it, its tracked values
    /// as `_old_<column>`, `_old_from`, `_old_run_id` ([`merge_staged`]).
    Diffed,
    /// Rows of the table itself (aliased `t`), as they are.
    Table,
}

/// The statement storing, closed at `now`, the open history version held by each row
/// `from` that holds one (a `FROM` clause ending in `WHERE ... AND` or `WHERE`, whose rows
/// are aliased `d` for [`Held::Diffed`] and `t` for [`Held::Table`]). A row holds its open
/// version from its first merge until a change of tracked values or a soft delete
/// (`sql/schema/008_open_versions.sql`); a deleted row, or one last written before schema
/// version 8, holds none. Only for a table with history.
pub(super) fn store_held_versions(spec: &TableSpec, from: &str, held: Held, now: Now) -> String {
    let history = spec.history.expect("a table with history");
    let (a, old, valid_from, run_id) = match held {
        Held::Diffed => ("d", "_old_", "d._old_from", "d._old_run_id"),
        Held::Table => ("t", "", "t._version_from", "t._version_run_id"),
    };
    let tracked: Vec<String> = history.tracked.iter().map(|c| q(c)).collect();
    let values: Vec<String> = history
        .tracked
        .iter()
        .map(|c| format!("{a}.{}", q(&format!("{old}{c}"))))
        .collect();
    format!(
        "INSERT INTO main.{hist} ({keys}, {tracked}, valid_from, valid_to, _run_id)
         SELECT {akeys}, {values}, {valid_from}, {now}, {run_id}
         FROM {from} {valid_from} IS NOT NULL",
        hist = q(history.table),
        keys = key_names(spec),
        tracked = tracked.join(", "),
        akeys = key_list(spec, a),
        values = values.join(", "),
    )
}

/// Step 4: the staged keys `source` go to the table's seen keys for the end of the scan.
fn record_seen(
    tx: &Connection,
    spec: &TableSpec,
    source: &str,
    stream: &str,
) -> duckdb::Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO main.{seen} (stream, {keys}) SELECT ?, {skeys} FROM {source} s",
            seen = q(&spec.seen_table()),
            keys = key_names(spec),
            skeys = key_list(spec, "s"),
        ),
        params![stream],
    )
    .map(drop)
}
