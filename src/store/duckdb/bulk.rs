//! A first load's long transaction: the merges of a scan whose tables were all empty when it
//! started ([`Warehouse::start_scan`]: the first sync of `users` with `group_members`, of
//! the portfolio, ...) run on a connection of their own, one per stream, in one transaction
//! committed every [`BULK_COMMIT_ROWS`] rows, instead of one transaction per merge. Inside
//! it a merge finds the rows merged before it (a user that comes twice is diffed). The rows of
//! a table into which the scan promised new keys (the portfolio's) skip the staging table:
//! they are appended into the table itself as they arrive ([`append_direct`]).
//!
//! Why: DuckDB writes the rows of a transaction that appends at least a whole row group
//! (122,880 rows) to a table straight into the file, compressed, as each row group fills
//! ("optimistic writes"); its commit logs only where they are. Merged 100k rows a
//! transaction, the same rows were written to the WAL, held in DuckDB's memory until a
//! checkpoint (spilled to `<file>.tmp` beyond the cap: at 100k users the WAL was 112 MB and
//! the spill 134 MB, written and read back), then compressed into the file by the checkpoint.
//!
//! The transaction holds the stream's staging tables, its merged rows and its checkpoint, so
//! what a killed sync left is consistent: the rows and checkpoint of the last commit. It is
//! committed after [`BULK_COMMIT_ROWS`] rows or [`BULK_COMMIT_AFTER`], at the end of the
//! scan, before every DuckDB checkpoint (which needs no write transaction open) and when the
//! file closes. A failed statement aborts it: it is rolled back, the error ends the scan, and
//! the stream merges nothing more until its next scan, since a later commit would store a
//! checkpoint past the rows rolled back; the next run resumes from the last commit.
//!
//! A merge in it is never cut into parts: rows staged inside an open transaction have
//! DuckDB's transaction-local row ids, which a part chosen by `rowid` misses (its merges
//! insert, or diff a first load's own rows, and its commits bound it). Another stream's merge
//! into one of its tables commits it first, so that the other stream's diff finds its rows.
//!
//! Only at caps of [`CHECKPOINT_MEMORY`] and more: the transaction holds a row group of each
//! table being filled, besides its staging tables.

use std::time::{Duration, Instant};

use super::*;

/// Rows merged into a first load's transaction before it commits: four of DuckDB's row
/// groups. Each commit leaves the table one partly filled row group (written as it is), and
/// a killed sync fetches again at most this many rows.
pub(crate) const BULK_COMMIT_ROWS: u64 = 4 * 122_880;

/// A first load's transaction commits at least this often, however few its rows (a slow
/// server): what a killed sync fetches again.
pub const BULK_COMMIT_AFTER: Duration = Duration::from_secs(60);

/// The long transaction of one stream's first load (see the module docs).
pub(super) struct Bulk {
    pub(super) stream: String,
    /// The tables it loads.
    tables: Vec<&'static str>,
    /// Those of them whose rows are appended into the table itself ([`append_direct`]).
    direct: Vec<&'static str>,
    /// A connection of the warehouse's database, for this stream's staging and merges.
    pub(super) conn: Connection,
    /// A transaction is open on `conn`.
    open: bool,
    /// Rows merged in it, and since when it is open.
    rows: u64,
    since: Instant,
    /// Rolled back after a failure: the stream merges nothing more in this scan.
    failed: bool,
}

impl Bulk {
    fn commit(&mut self) -> Result<()> {
        if self.open {
            self.open = false;
            self.conn
                .execute_batch("COMMIT")
                .map_err(Warehouse::db("committing a first load"))?;
        }
        Ok(())
    }
}

impl Warehouse {
    /// Start the long transaction of `stream`'s first load of `tables`, if the cap allows
    /// ([`Warehouse::start_scan`]).
    /// `promised`: the table into which the scan promised new keys; its rows skip the
    /// staging table ([`append_direct`]) when the table's columns are the ones that writes.
    pub(super) fn start_bulk(
        &mut self,
        stream: &str,
        tables: Vec<&'static str>,
        promised: Option<&'static TableSpec>,
    ) -> Result<()> {
        let roomy = self
            .memory_limit
            .is_some_and(|cap| cap >= CHECKPOINT_MEMORY);
        if !roomy || tables.is_empty() || self.in_bulk(stream) {
            return Ok(());
        }
        let mut direct = Vec::new();
        if let Some(spec) = promised.filter(|spec| tables.contains(&spec.table)) {
            let columns: Vec<String> = self
                .conn
                .prepare(
                    "SELECT column_name FROM duckdb_columns()
                     WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([spec.table], |r| r.get(0))?
                        .collect::<duckdb::Result<_>>()
                })
                .map_err(Self::db("reading a table's columns"))?;
            if columns == direct_columns(spec) {
                direct.push(spec.table);
            }
        }
        let conn = self
            .conn
            .try_clone()
            .map_err(Self::db("opening a connection for a first load"))?;
        self.bulks.push(Bulk {
            stream: stream.to_owned(),
            tables,
            direct,
            conn,
            open: false,
            rows: 0,
            since: Instant::now(),
            failed: false,
        });
        Ok(())
    }

    fn bulk_of(&mut self, stream: &str) -> Option<&mut Bulk> {
        self.bulks.iter_mut().find(|b| b.stream == stream)
    }

    /// The tables whose rows `stream` appends into the table itself ([`append_direct`]).
    pub(super) fn direct_tables(&self, stream: &str) -> Vec<&'static str> {
        self.bulks
            .iter()
            .find(|b| b.stream == stream)
            .map_or_else(Vec::new, |b| b.direct.clone())
    }

    /// Whether `stream` merges in a first load's long transaction.
    pub(super) fn in_bulk(&self, stream: &str) -> bool {
        self.bulks.iter().any(|b| b.stream == stream)
    }

    /// The connection `stream` stages and merges on: its first load's, or the writer's.
    pub(super) fn stream_conn(&self, stream: &str) -> &Connection {
        match self.bulks.iter().find(|b| b.stream == stream) {
            Some(bulk) => &bulk.conn,
            None => &self.conn,
        }
    }

    /// Open `stream`'s first load transaction if it is not; refused after a rollback.
    pub(super) fn begin_bulk(&mut self, stream: &str) -> Result<()> {
        let Some(bulk) = self.bulk_of(stream) else {
            return Ok(());
        };
        if bulk.failed {
            return Err(StoreError::BulkRolledBack {
                stream: bulk.stream.clone(),
            });
        }
        if !bulk.open {
            bulk.conn
                .execute_batch("BEGIN TRANSACTION")
                .map_err(Self::db("starting a first load's transaction"))?;
            bulk.open = true;
            bulk.rows = 0;
            bulk.since = Instant::now();
        }
        Ok(())
    }

    /// `rows` were merged in `stream`'s first load transaction: commit it if it is due.
    pub(super) fn merged_in_bulk(&mut self, stream: &str, rows: u64) -> Result<()> {
        let most = self.bulk_commit_rows;
        match self.bulk_of(stream) {
            Some(bulk) => {
                bulk.rows += rows;
                if bulk.rows >= most || bulk.since.elapsed() >= BULK_COMMIT_AFTER {
                    bulk.commit()
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Commit the first load transactions of other streams that load one of `tables`
    /// before `stream` merges into them, so that its diff finds their rows.
    pub(super) fn commit_bulk_of(&mut self, stream: &str, tables: &[&str]) -> Result<()> {
        for bulk in &mut self.bulks {
            if bulk.stream != stream && bulk.tables.iter().any(|t| tables.contains(t)) {
                bulk.commit()?;
            }
        }
        Ok(())
    }

    /// Commit every open first load transaction.
    pub(crate) fn commit_bulk(&mut self) -> Result<()> {
        for bulk in &mut self.bulks {
            bulk.commit()?;
        }
        Ok(())
    }

    /// A statement of `stream`'s first load transaction failed: roll it back; the stream
    /// merges nothing more until its next scan.
    pub(super) fn fail_bulk(&mut self, stream: &str) {
        if let Some(bulk) = self.bulk_of(stream) {
            if bulk.open {
                // A failed statement has aborted it already; nothing else can be done.
                let _ = bulk.conn.execute_batch("ROLLBACK");
                bulk.open = false;
            }
            bulk.failed = true;
        }
    }

    /// `stream`'s scan ends or starts again: commit its first load transaction (unless it
    /// was rolled back) and close its connection.
    pub(super) fn end_bulk(&mut self, stream: &str) -> Result<()> {
        let Some(at) = self.bulks.iter().position(|b| b.stream == stream) else {
            return Ok(());
        };
        let mut bulk = self.bulks.remove(at);
        bulk.commit()
    }
}

/// What a new row holds after its own columns and `_hash`, in the table's order: (column,
/// value), the last two only with history. The one list both writers of new rows read:
/// [`insert_new`] (the SQL that inserts staged rows) and [`append_direct`].
const NEW_ROW: [(&str, NewValue); 6] = [
    ("_first_seen_at", NewValue::Now),
    ("_updated_at", NewValue::Now),
    ("_deleted_at", NewValue::Null),
    ("_run_id", NewValue::Run),
    ("_version_from", NewValue::Now),
    ("_version_run_id", NewValue::Run),
];

/// A bookkeeping value of a new row ([`NEW_ROW`]).
#[derive(Clone, Copy)]
pub(super) enum NewValue {
    Now,
    Null,
    Run,
}

/// [`NEW_ROW`] for a table of `spec`.
pub(super) fn new_row(spec: &TableSpec) -> &'static [(&'static str, NewValue)] {
    &NEW_ROW[..if spec.history.is_some() { 6 } else { 4 }]
}

/// The columns a new row is written with, by [`append_direct`] and [`insert_new`], in order:
/// the batch's (the spec's, then `_hash`), then [`new_row`]. A table whose columns differ (an
/// older layout) is not appended into directly: it is staged and inserted as usual.
pub(super) fn direct_columns(spec: &TableSpec) -> Vec<String> {
    spec.columns()
        .map(|c| c.name)
        .chain(std::iter::once("_hash"))
        .chain(new_row(spec).iter().map(|(name, _)| *name))
        .map(str::to_string)
        .collect()
}

/// Append a prepared batch of a promised first load into its table itself, in the long
/// transaction, with the values [`insert_new`] gives a new row ([`new_row`]): no staging
/// table, no `INSERT ... SELECT`. At 100k users (`bench sync --replay`, 4 runs alternated)
/// 2.02× → 1.91× the plain fetch, tool CPU 3.85 → 3.6 s, writer busy 1.75 → 1.5 s.
pub(super) fn append_direct(
    conn: &Connection,
    spec: &TableSpec,
    staged: RecordBatch,
    now: Now,
    run: RunId,
) -> Result<()> {
    use arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use std::sync::Arc;
    let table = spec.table;
    let rows = staged.num_rows();
    let now = now.0.timestamp_micros();
    let bookkeeping = new_row(spec).iter().map(|&(name, value)| {
        let (ty, column): (DataType, ArrayRef) = match value {
            NewValue::Run => (
                DataType::Int64,
                Arc::new(Int64Array::from(vec![run.0; rows])),
            ),
            NewValue::Now | NewValue::Null => (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    matches!(
                        value,
                        NewValue::Now
                    )
                    .then_some(now);
                    rows
                ])),
            ),
        };
        (Field::new(name, ty, true), column)
    });
    let batch = crate::store::batch::with_columns(spec, staged, bookkeeping)?;
    let merge = |cause| StoreError::Merge { table, cause };
    let mut appender = conn.appender(table).map_err(merge)?;
    appender
        .append_record_batch(batch)
        .and_then(|()| appender.flush())
        .map_err(merge)
}
