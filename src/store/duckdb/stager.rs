//! Staging page groups for a later merge, on a DuckDB connection of its own ([`Stager`]).
//!
//! A sync stages each page group (checked, deduplicated, hashed, appended to in-memory tables)
//! and merges a stream's staged rows in large groups ([`Pending`]). Staging and merging are
//! separate steps so that they can run on separate threads: the sync's stager thread appends
//! the next groups while the writer merges (and checkpoints) the last ones. The staged tables
//! live in an in-memory database attached to the warehouse's DuckDB instance
//! ([`STAGING`]), which every connection of the instance sees and which writes no WAL; DuckDB
//! keeps it under the memory cap and spills it beside the file.

use std::collections::HashSet;
use std::time::Instant;

use super::*;

/// The in-memory database the staged tables live in, attached to the writer's DuckDB
/// instance (seen by its every connection, gone with the process).
pub(super) const STAGING: &str = "_staging";

/// Who may use DuckDB's memory at once. The stager's appends and the writer's merges take it
/// shared and run side by side; each retries once, alone (exclusive), when DuckDB runs out of
/// memory, and checkpoints always run alone (one that fails for memory is fatal to DuckDB).
/// Why: under a small cap (20 MB) an append beside a merge could not pin a block ("failed to
/// pin block of size 256.0 KiB (19.3 MiB/19.0 MiB used)"), where either alone fits; a memory
/// setting may make a sync slower, never make it fail.
pub(super) type Gate = Arc<std::sync::RwLock<()>>;

/// Run `f` on `state` with `gate` shared; when DuckDB runs out of memory, run `again` (given
/// the error) with it exclusive.
pub(super) fn gated<S: ?Sized, T>(
    gate: &Gate,
    state: &mut S,
    f: impl FnOnce(&mut S) -> Result<T>,
    again: impl FnOnce(&mut S, StoreError) -> Result<T>,
) -> Result<T> {
    let first = {
        let _shared = gate.read().unwrap_or_else(|e| e.into_inner());
        f(state)
    };
    match first {
        Err(e) if e.out_of_memory() => {
            let _alone = gate.write().unwrap_or_else(|e| e.into_inner());
            tracing::debug!(error = %e, "DuckDB ran out of memory beside other work; once more, alone.");
            again(state, e)
        }
        other => other,
    }
}

/// Merge staged rows at least this often, however few: the rows staged since the last merge
/// are the work a killed sync redoes (their checkpoint is stored with their merge).
pub const MERGE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// A stream's rows staged since its last merge, one table each, with the checkpoint that
/// covers them: staging with [`Stager::stage`], sealed for a merge ([`Warehouse::merge_pending`])
/// by [`Stager::stage`] or [`Stager::flush`].
///
/// Why: a merge costs one scan of the target table's keys (DuckDB has no index join here),
/// so merging every few thousand rows makes a scan quadratic in the table's size: at 1M users
/// (6M portfolio rows) that was 1,200 merges each reading millions of keys. Staged, a scan
/// merges once per [`Warehouse::merge_rows`] rows (sized to the memory cap), or after
/// [`MERGE_AFTER`].
pub struct Pending {
    pub(super) stream: String,
    pub(super) run: RunId,
    /// The checkpoint to store with the merge: it covers every row staged.
    pub(super) checkpoint: String,
    pub(super) tables: Vec<PendingTable>,
    pub(super) rows: u64,
    since: Instant,
}

impl Pending {
    /// The stream whose rows these are.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The staged tables' qualified names.
    pub(super) fn table_names(&self) -> impl Iterator<Item = String> + '_ {
        self.tables.iter().map(|t| t.qualified())
    }
}

pub(super) struct PendingTable {
    pub(super) spec: &'static TableSpec,
    /// In [`STAGING`]'s `main` schema.
    pub(super) name: String,
    pub(super) rows: u64,
    pub(super) duplicates: u64,
    /// Hashes of the staged keys (a key staged again seals what came before it: last row
    /// wins). Emptied when sealed.
    keys: HashSet<u64>,
}

impl PendingTable {
    pub(super) fn qualified(&self) -> String {
        format!("{STAGING}.main.{}", self.name)
    }
}

/// Stages page groups on a connection of its own ([`Warehouse::stager`]); what it seals goes
/// to [`Warehouse::merge_pending`], on the writer's connection, in the order sealed.
pub struct Stager {
    conn: Connection,
    gate: Gate,
    pending: Vec<Pending>,
    /// Staging tables created so far (their names are numbered).
    created: u64,
    /// Rows a stream stages before they are sealed ([`Warehouse::merge_rows`]).
    pub(super) merge_rows: u64,
}

impl Stager {
    /// A stager on a new connection to `conn`'s DuckDB instance, with [`STAGING`] attached.
    pub(super) fn open(conn: &Connection, gate: Gate, merge_rows: u64) -> Result<Stager> {
        let conn = conn
            .try_clone()
            .map_err(Warehouse::db("opening the staging connection"))?;
        conn.execute_batch(&format!("ATTACH IF NOT EXISTS ':memory:' AS {STAGING}"))
            .map_err(Warehouse::db("attaching the staging database"))?;
        Ok(Stager {
            conn,
            gate,
            pending: Vec::new(),
            created: 0,
            merge_rows,
        })
    }

    /// Stage batches of a stream (checked, deduplicated and hashed, as [`Warehouse::commit`]
    /// does) with the checkpoint that covers them and everything staged before. Returns what
    /// is sealed for a merge, oldest first: what was staged before a key staged again (so
    /// that the later row wins, as within one commit), and everything once
    /// [`Warehouse::merge_rows`] rows are staged or the oldest was staged [`MERGE_AFTER`]
    /// ago. Until merged, the rows are lost with the process; a resumed run starts from the
    /// last merged checkpoint.
    pub fn stage(
        &mut self,
        stream: &str,
        run: RunId,
        checkpoint: &str,
        batches: Vec<(&'static TableSpec, RecordBatch)>,
    ) -> Result<Vec<Pending>> {
        let mut sealed = Vec::new();
        let mut prepared = Vec::new();
        for (spec, batch) in by_table(batches)? {
            let (batch, duplicates, hashes) = dedupe_by_key(spec, batch)?;
            prepared.push((spec, batch, duplicates as u64, hashes));
        }
        let again = self
            .pending
            .iter()
            .find(|p| p.stream == stream)
            .is_some_and(|p| {
                prepared.iter().any(|(spec, _, _, hashes)| {
                    p.tables
                        .iter()
                        .filter(|t| t.spec.table == spec.table)
                        .any(|t| hashes.iter().any(|h| t.keys.contains(h)))
                })
            });
        if again {
            // A key staged again: seal what came before it (covered by the checkpoint staged
            // with it), so that the later row merges after it.
            sealed.extend(self.flush(stream));
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
                });
                self.pending.len() - 1
            }
        };
        for (spec, batch, duplicates, hashes) in prepared {
            let pending = &mut self.pending[at];
            let t = match pending
                .tables
                .iter()
                .position(|t| t.spec.table == spec.table)
            {
                Some(t) => t,
                None => {
                    let name = format!("_pending_{}", self.created);
                    self.created += 1;
                    let create = || create_stage(&self.conn, spec, STAGING, &name);
                    gated(&self.gate, &mut (), |_| create(), |_, _| create())?;
                    pending.tables.push(PendingTable {
                        spec,
                        name,
                        rows: 0,
                        duplicates: 0,
                        keys: HashSet::new(),
                    });
                    pending.tables.len() - 1
                }
            };
            let rows = batch.num_rows() as u64;
            let entry = &mut pending.tables[t];
            let (conn, name, staged) = (&self.conn, &entry.name, entry.rows);
            gated(
                &self.gate,
                &mut (),
                |_| append_stage(conn, spec, STAGING, name, batch.clone()),
                |_, failed| {
                    // The appender flushes once more when it is dropped: append again only
                    // if none of the batch's rows arrived.
                    let sql = format!("SELECT count(*) FROM {STAGING}.main.{name}");
                    let count = conn
                        .query_row(&sql, [], |r| r.get::<_, i64>(0))
                        .map_err(Warehouse::db("counting staged rows"))?
                        as u64;
                    if count == staged + rows {
                        Ok(())
                    } else if count == staged {
                        append_stage(conn, spec, STAGING, name, batch.clone())
                    } else {
                        Err(failed)
                    }
                },
            )?;
            entry.rows += rows;
            entry.duplicates += duplicates;
            entry.keys.extend(hashes);
            pending.rows += rows;
        }
        let pending = &mut self.pending[at];
        pending.run = run;
        checkpoint.clone_into(&mut pending.checkpoint);
        if pending.rows >= self.merge_rows || pending.since.elapsed() >= MERGE_AFTER {
            sealed.extend(self.flush(stream));
        }
        Ok(sealed)
    }

    /// Seal what the stream has staged, with the checkpoint staged last (`None` when
    /// nothing was staged).
    pub fn flush(&mut self, stream: &str) -> Option<Pending> {
        let at = self.pending.iter().position(|p| p.stream == stream)?;
        let mut pending = self.pending.remove(at);
        for table in &mut pending.tables {
            table.keys = HashSet::new();
        }
        Some(pending)
    }

    /// Forget what the stream has staged, without merging it.
    pub fn drop_pending(&mut self, stream: &str) {
        if let Some(pending) = self.flush(stream) {
            drop_tables(&self.conn, pending.table_names());
        }
    }
}

impl Drop for Stager {
    /// Staged rows not sealed are not merged: free their memory now.
    fn drop(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            drop_tables(&self.conn, pending.table_names());
        }
    }
}

/// Drop staging tables (qualified names), whatever the merge's outcome: their rows are either
/// merged or fetched again from the last checkpoint, and dropping frees their memory (and
/// spill) now rather than at the next page. A failure to drop only leaves a table behind.
pub(super) fn drop_tables<T: AsRef<str>>(conn: &Connection, tables: impl IntoIterator<Item = T>) {
    for table in tables {
        let table = table.as_ref();
        let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}"));
    }
}

/// Create (or empty) the staging table `catalog.main.name` of a table.
pub(super) fn create_stage(
    conn: &Connection,
    spec: &TableSpec,
    catalog: &str,
    name: &str,
) -> Result<()> {
    let columns: Vec<String> = spec
        .columns()
        .map(|c| format!("{} {}", q(c.name), c.ty.staging_sql()))
        .chain(std::iter::once("_hash UBIGINT".to_string()))
        .collect();
    // DuckDB names a temporary table only with TEMP.
    let table = if catalog == "temp" {
        format!("TEMP TABLE {name}")
    } else {
        format!("TABLE {catalog}.main.{name}")
    };
    conn.execute_batch(&format!(
        "CREATE OR REPLACE {table} ({})",
        columns.join(", ")
    ))
    .map_err(|source| StoreError::Merge {
        table: spec.table,
        cause: source,
    })
}

/// Append a deduplicated batch, plus its `_hash` column, to the staging table
/// `catalog.main.name`.
pub(super) fn append_stage(
    conn: &Connection,
    spec: &TableSpec,
    catalog: &str,
    name: &str,
    batch: RecordBatch,
) -> Result<()> {
    let table = spec.table;
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
    let staged = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|source| {
        StoreError::Arrow {
            table,
            cause: source,
        }
    })?;
    let mut appender = conn
        .appender_to_catalog_and_db(name, catalog, "main")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A DuckDB error with `message`, as a merge's.
    fn failure(message: &str) -> StoreError {
        StoreError::Merge {
            table: "users",
            cause: duckdb::Error::DuckDBFailure(
                duckdb::ffi::Error::new(1),
                Some(message.to_owned()),
            ),
        }
    }

    #[test]
    fn duckdb_out_of_memory_is_told_from_other_errors() {
        for message in [
            "Out of Memory Error: failed to pin block of size 256.0 KiB (19.3 MiB/19.0 MiB used)",
            "Failed to append: Failed to commit: failed to pin block of size 256.0 KiB",
            "Failed to append: could not allocate block of size 256.0 KiB (18.8 MiB/19.0 MiB used)",
        ] {
            assert!(failure(message).out_of_memory(), "{message}");
        }
        assert!(!failure("Constraint Error: duplicate key").out_of_memory());
    }

    #[test]
    fn work_out_of_memory_runs_again_alone_and_other_failures_do_not() {
        let gate = Gate::default();
        // Whether another user of the gate would have had to wait, in each run.
        let mut waited = Vec::new();
        let answer = gated(
            &gate,
            &mut waited,
            |w| {
                w.push(gate.try_write().is_err());
                Err(failure("Out of Memory Error: failed to pin block"))
            },
            |w, first| {
                assert!(first.out_of_memory());
                w.push(gate.try_read().is_err());
                Ok(7)
            },
        );
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(
            waited,
            [true, true],
            "shared first (an exclusive user waits), then alone (everyone waits)"
        );
        let answer: Result<()> = gated(
            &gate,
            &mut (),
            |_| Err(failure("Constraint Error: duplicate key")),
            |_, _| panic!("only running out of memory runs again"),
        );
        assert!(answer.unwrap_err().to_string().contains("duplicate key"));
        assert!(gate.try_write().is_ok(), "the gate is free afterwards");
    }
}
