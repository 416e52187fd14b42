//! A first load's long transaction: the merges of a scan that promised new keys into an
//! empty table (the portfolio's first load, [`Warehouse::start_scan`]) run on a connection
//! of their own, in one transaction committed every [`BULK_COMMIT_ROWS`] rows, instead of
//! one transaction per merge.
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
//! Only at caps of [`CHECKPOINT_MEMORY`] and more: the transaction holds a row group of the
//! table being filled, besides its staging table.

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
    /// The table it loads.
    table: &'static str,
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

impl Warehouse {
    /// Start the long transaction of `stream`'s first load, if the cap allows and no other
    /// stream has one ([`Warehouse::start_scan`] calls it for a promised first load).
    pub(super) fn start_bulk(&mut self, stream: &str, table: &'static str) -> Result<()> {
        let roomy = self
            .memory_limit
            .is_some_and(|cap| cap >= CHECKPOINT_MEMORY);
        if !roomy || self.bulk.is_some() {
            return Ok(());
        }
        let conn = self
            .conn
            .try_clone()
            .map_err(Self::db("opening a connection for a first load"))?;
        self.bulk = Some(Bulk {
            stream: stream.to_owned(),
            table,
            conn,
            open: false,
            rows: 0,
            since: Instant::now(),
            failed: false,
        });
        Ok(())
    }

    /// Whether `stream` merges in a first load's long transaction.
    pub(super) fn in_bulk(&self, stream: &str) -> bool {
        self.bulk.as_ref().is_some_and(|b| b.stream == stream)
    }

    /// The connection `stream` stages and merges on: its first load's, or the writer's.
    pub(super) fn stream_conn(&self, stream: &str) -> &Connection {
        match &self.bulk {
            Some(bulk) if bulk.stream == stream => &bulk.conn,
            _ => &self.conn,
        }
    }

    /// Open the first load's transaction if it is not; refused after a rollback.
    pub(super) fn begin_bulk(&mut self) -> Result<()> {
        let Some(bulk) = &mut self.bulk else {
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

    /// `rows` were merged in the first load's transaction: commit it if it is due.
    pub(super) fn merged_in_bulk(&mut self, rows: u64) -> Result<()> {
        let due = self.bulk.as_mut().is_some_and(|bulk| {
            bulk.rows += rows;
            bulk.rows >= self.bulk_commit_rows || bulk.since.elapsed() >= BULK_COMMIT_AFTER
        });
        if due { self.commit_bulk() } else { Ok(()) }
    }

    /// Commit the first load's transaction before another stream merges into its table, so
    /// that the other stream's diff finds its rows.
    pub(super) fn commit_bulk_of(&mut self, stream: &str, tables: &[&str]) -> Result<()> {
        match &self.bulk {
            Some(bulk) if bulk.stream != stream && tables.contains(&bulk.table) => {
                self.commit_bulk()
            }
            _ => Ok(()),
        }
    }

    /// Commit the first load's transaction, if one is open.
    pub(crate) fn commit_bulk(&mut self) -> Result<()> {
        if let Some(bulk) = self.bulk.as_mut().filter(|b| b.open) {
            bulk.open = false;
            bulk.conn
                .execute_batch("COMMIT")
                .map_err(Self::db("committing a first load"))?;
        }
        Ok(())
    }

    /// A statement of the first load's transaction failed: roll it back; the stream merges
    /// nothing more until its next scan.
    pub(super) fn fail_bulk(&mut self) {
        if let Some(bulk) = &mut self.bulk {
            if bulk.open {
                // A failed statement has aborted it already; nothing else can be done.
                let _ = bulk.conn.execute_batch("ROLLBACK");
                bulk.open = false;
            }
            bulk.failed = true;
        }
    }

    /// `stream`'s scan ends or starts again: commit its first load's transaction (unless it
    /// was rolled back) and close its connection.
    pub(super) fn end_bulk(&mut self, stream: &str) -> Result<()> {
        if !self.in_bulk(stream) {
            return Ok(());
        }
        let committed = self.commit_bulk();
        self.bulk = None;
        committed
    }
}
