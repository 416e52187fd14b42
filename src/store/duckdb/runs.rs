//! Run bookkeeping (`_runs`, `_run_streams`) and checkpoints (`_checkpoints`): begin and finish a run, record a stream, read, store and reset a scan's checkpoint.

use super::*;

impl Warehouse {
    pub(super) fn mark_interrupted_runs(&self) -> Result<()> {
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
        self.drop_pending(stream);
        self.end_first_loads(stream);
        self.end_bulk(stream)?;
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
}

/// Upsert a checkpoint. An UPDATE first: cheaper than `INSERT OR REPLACE`, which deletes and
/// re-inserts through the primary-key index on every page.
pub(super) fn store_checkpoint(
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
pub(super) fn clear_scan(
    tx: &Connection,
    stream: &str,
    specs: &[&TableSpec],
) -> duckdb::Result<()> {
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
