//! Committing pages: stage a batch (checked, deduplicated, hashed), diff it against the table by key and hash, write only new and changed rows (closing history versions), record the seen keys and the checkpoint, in one transaction.

use super::*;

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
                    cause: source,
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
                cause: source,
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
                cause: duckdb::Error::QueryReturnedNoRows,
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

/// Load a deduplicated batch, plus its `_hash` column, into a fresh temporary table.
pub(super) fn stage_batch(
    conn: &Connection,
    spec: &TableSpec,
    stage: &str,
    batch: RecordBatch,
) -> Result<()> {
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
    .map_err(|source| StoreError::Merge {
        table,
        cause: source,
    })?;
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

/// Steps 2–4 of a page (see the module docs). Returns (new, changed).
pub(super) fn merge_staged(
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
