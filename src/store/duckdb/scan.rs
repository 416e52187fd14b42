//! The end of a scan: soft-delete the rows in each table's scope that a complete scan did not return (an anti-join against the seen keys, in parts), then clear the scan.

use super::*;

impl Warehouse {
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
                        cause: source,
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

/// The SQL predicate (over alias `t`) of a scope, and its parameters in order.
pub(super) fn scope_sql(spec: &TableSpec, scope: &Scope<'_>) -> Result<(String, Vec<String>)> {
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

pub(super) fn soft_delete_unseen(
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
