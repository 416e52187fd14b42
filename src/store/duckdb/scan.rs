//! The end of a scan: find the rows in each table's scope that a complete scan did not
//! return (an anti-join against the seen keys, in parts), decide what to record, then clear
//! the scan.
//!
//! What a missing row becomes depends on the warehouse's [`Deletes`] policy:
//! - [`Deletes::Immediate`]: soft-deleted now (the store's default; targeted refreshes, whose
//!   rows were looked up one by one, and the store's own tests).
//! - [`Deletes::Guarded`] (`sync`): a row is soft-deleted only when the previous complete scan
//!   covering it missed it too (`_missing_<table>`); a first miss is only noted, and a scan
//!   that returns the row clears the note. Offset pages shift when Pluvo deletes and inserts
//!   during a scan, so one miss is not proof. Before anything is recorded, the scan is
//!   refused ([`StoreError::DeletesRefused`], nothing deleted or noted) when for a table it
//!   returned no row at all while rows would go, or would remove more than `max_share` of the
//!   table's rows (and more than [`GUARD_FLOOR`]): the signature of a wrong answer (narrowed
//!   rights, another organisation) rather than of Pluvo's users leaving.
//! - [`Deletes::Accepted`] (`sync --accept-deletes`): a person looked; soft-deleted now.

use super::*;

/// A scan may always remove up to this many rows of a table without the share check (small
/// tables: 3 of 8 certificate templates is 37 %, and ordinary).
pub const GUARD_FLOOR: u64 = 10;

/// How rows missing from a complete scan are recorded; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deletes {
    Immediate,
    Guarded {
        /// Largest share (0..=1) of a table's present rows one scan may remove.
        max_share: f64,
    },
    Accepted,
}

/// Default `warehouse.max_delete_share`: well under half. A day on which a quarter of an
/// organisation's users or items disappear is worth a person's look.
pub const MAX_DELETE_SHARE: f64 = 0.25;

/// One table's part of the end of a scan.
struct Unseen<'a> {
    spec: &'a TableSpec,
    scope: (String, Vec<String>),
    /// Temporary table holding the keys of the rows the scan did not return.
    gone: String,
    rows: u64,
}

impl Warehouse {
    /// How rows missing from a complete scan are recorded from now on (see [`Deletes`]).
    pub fn set_deletes(&mut self, deletes: Deletes) {
        self.deletes = deletes;
    }

    /// End a stream's scan. If it was complete, rows in each table's scope that the scan did
    /// not return are soft-deleted (`_deleted_at` = now, history version closed) as the
    /// [`Deletes`] policy says; a partial scan deletes nothing. Either way the scan's seen
    /// keys are cleared and the checkpoint is replaced by `next_checkpoint` (or removed), in
    /// one transaction. Returns the number of rows soft-deleted, or
    /// [`StoreError::DeletesRefused`] (after that transaction: the scan ended, nothing was
    /// deleted) when the guard refused.
    pub fn finish_scan(&mut self, stream: &str, run: RunId, end: ScanEnd<'_>) -> Result<u64> {
        // Rows still staged belong to this scan: merged first, with their checkpoint, and
        // committed (a first load's long transaction), before this transaction replaces the
        // checkpoint.
        self.flush(stream)?;
        self.end_bulk(stream)?;
        // A first load's table holds only rows of this scan: none is missing.
        let first_loads: Vec<bool> = end
            .tables
            .iter()
            .map(|(spec, _)| self.first_load(stream, spec.table))
            .collect();
        self.end_first_loads(stream);
        let now = self.now();
        for (spec, scope) in &end.tables {
            scope_sql(spec, scope)?; // validate before starting
        }
        let deletes = self.deletes;
        let parts = self.anti_join_keys;
        let tx = self
            .conn
            .transaction()
            .map_err(Self::db("starting the end of a scan"))?;
        let finish = |table: &'static str| move |cause| StoreError::FinishScan { table, cause };
        if matches!(deletes, Deletes::Guarded { .. }) {
            // A row this scan returned exists, whatever the scan's end.
            for (spec, _) in &end.tables {
                clear_seen_misses(&tx, spec, stream).map_err(finish(spec.table))?;
            }
        }
        let mut deleted = 0;
        let mut refused = None;
        if end.complete {
            let mut unseen = Vec::new();
            for (i, (spec, scope)) in end.tables.iter().enumerate() {
                if first_loads[i] {
                    continue;
                }
                let scope = scope_sql(spec, scope)?;
                let gone = format!("_gone_{i}");
                let rows = find_unseen(&tx, spec, stream, &scope, &gone, parts)
                    .map_err(finish(spec.table))?;
                unseen.push(Unseen {
                    spec,
                    scope,
                    gone,
                    rows,
                });
            }
            if let Deletes::Guarded { max_share } = deletes {
                refused = guard(&tx, stream, &unseen, max_share)?;
            }
            if refused.is_none() {
                for u in &unseen {
                    let table = finish(u.spec.table);
                    deleted += match deletes {
                        Deletes::Guarded { .. } => {
                            confirm_misses(&tx, u, run, now).map_err(table)?
                        }
                        _ => soft_delete(&tx, u.spec, &u.gone, run, now).map_err(table)?,
                    };
                }
            }
            for u in &unseen {
                tx.execute_batch(&format!("DROP TABLE IF EXISTS temp.{}", u.gone))
                    .map_err(finish(u.spec.table))?;
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
        match refused {
            Some(err) => Err(err),
            None => Ok(deleted),
        }
    }
}

/// The guard of [`Deletes::Guarded`]: `Some(refusal)` when, for some table, the scan returned
/// no row while rows would go, or would remove more than `max_share` of its present rows.
fn guard(
    tx: &Connection,
    stream: &str,
    unseen: &[Unseen<'_>],
    max_share: f64,
) -> Result<Option<StoreError>> {
    let mut tables: Vec<&str> = unseen.iter().map(|u| u.spec.table).collect();
    tables.dedup();
    let mut problems = Vec::new();
    for table in tables {
        let of_table: Vec<&Unseen> = unseen.iter().filter(|u| u.spec.table == table).collect();
        let gone: u64 = of_table.iter().map(|u| u.rows).sum();
        if gone == 0 {
            continue;
        }
        let spec = of_table[0].spec;
        let count = |sql: String, with_stream: bool| -> Result<u64> {
            let n: i64 = if with_stream {
                tx.query_row(&sql, params![stream], |r| r.get(0))
            } else {
                tx.query_row(&sql, [], |r| r.get(0))
            }
            .map_err(|cause| StoreError::FinishScan {
                table: spec.table,
                cause,
            })?;
            Ok(n as u64)
        };
        let present = count(
            format!(
                "SELECT count(*) FROM main.{} WHERE _deleted_at IS NULL",
                q(spec.table)
            ),
            false,
        )?;
        let returned = count(
            format!(
                "SELECT count(*) FROM main.{} WHERE stream = ?",
                q(&spec.seen_table())
            ),
            true,
        )?;
        if returned == 0 {
            problems.push(format!(
                "the scan of `{stream}` returned no rows for `{table}`, which has {present}"
            ));
        } else if gone > GUARD_FLOOR && gone as f64 > max_share * present as f64 {
            problems.push(format!(
                "the scan of `{stream}` would mark {gone} of {present} rows of `{table}` deleted \
                 ({:.0}%, more than `warehouse.max_delete_share` = {:.0}%)",
                100.0 * gone as f64 / present.max(1) as f64,
                100.0 * max_share
            ));
        }
    }
    Ok((!problems.is_empty()).then(|| StoreError::DeletesRefused {
        stream: stream.to_string(),
        problems: problems.join("; "),
    }))
}

/// Forget the misses noted for rows that this scan returned.
fn clear_seen_misses(tx: &Connection, spec: &TableSpec, stream: &str) -> duckdb::Result<()> {
    let missing = q(&spec.missing_table());
    let noted: i64 = tx.query_row(&format!("SELECT count(*) FROM main.{missing}"), [], |r| {
        r.get(0)
    })?;
    if noted == 0 {
        return Ok(());
    }
    tx.execute(
        &format!(
            "DELETE FROM main.{missing} m WHERE EXISTS
             (SELECT 1 FROM main.{seen} s WHERE s.stream = ? AND {on})",
            seen = q(&spec.seen_table()),
            on = key_match(spec, "s", "m"),
        ),
        params![stream],
    )?;
    Ok(())
}

/// [`Deletes::Guarded`]: soft-delete the unseen rows that the previous complete scan missed
/// too; note the others; forget notes of rows in scope that are no longer missing. Returns
/// the rows soft-deleted.
fn confirm_misses(tx: &Connection, u: &Unseen<'_>, run: RunId, now: Now) -> duckdb::Result<u64> {
    let spec = u.spec;
    let missing = q(&spec.missing_table());
    let gone = &u.gone;
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE _confirmed AS
         SELECT g.* FROM temp.{gone} g WHERE EXISTS (SELECT 1 FROM main.{missing} m WHERE {on})",
        on = key_match(spec, "m", "g"),
    ))?;
    let deleted = soft_delete(tx, spec, "_confirmed", run, now)?;
    let (predicate, params) = &u.scope;
    tx.execute(
        &format!(
            "DELETE FROM main.{missing} m WHERE EXISTS
             (SELECT 1 FROM main.{target} t WHERE {on} AND {predicate})",
            target = q(spec.table),
            on = key_match(spec, "t", "m"),
        ),
        duckdb::params_from_iter(params.iter()),
    )?;
    tx.execute_batch(&format!(
        "INSERT INTO main.{missing} ({keys}, run_id)
         SELECT {gkeys}, {run} FROM temp.{gone} g
         WHERE NOT EXISTS (SELECT 1 FROM temp._confirmed c WHERE {on});
         DROP TABLE temp._confirmed",
        keys = key_names(spec),
        gkeys = key_list(spec, "g"),
        on = key_match(spec, "c", "g"),
    ))?;
    Ok(deleted)
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

/// Collect into the temporary table `gone` the keys of the present rows in scope that the
/// scan did not return; returns how many.
fn find_unseen(
    tx: &Connection,
    spec: &TableSpec,
    stream: &str,
    (predicate, params): &(String, Vec<String>),
    gone: &str,
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
        "CREATE OR REPLACE TEMP TABLE {gone} AS SELECT {keys} FROM main.{target} t LIMIT 0",
        keys = key_list(spec, "t"),
    ))?;
    for part in 0..parts {
        let select = format!(
            "INSERT INTO temp.{gone}
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
    let rows: i64 = tx.query_row(&format!("SELECT count(*) FROM temp.{gone}"), [], |r| {
        r.get(0)
    })?;
    Ok(rows as u64)
}

/// Soft-delete the rows whose keys are in the temporary table `keys` (and close their
/// history version); returns how many.
fn soft_delete(
    tx: &Connection,
    spec: &TableSpec,
    keys: &str,
    run: RunId,
    now: Now,
) -> duckdb::Result<u64> {
    let target = q(spec.table);
    let rows: i64 = tx.query_row(&format!("SELECT count(*) FROM temp.{keys}"), [], |r| {
        r.get(0)
    })?;
    if rows > 0 {
        let mut version = "";
        if let Some(history) = spec.history {
            // The open version is stored, closed at `now`, from the row that holds it, or
            // was stored open by a sync before schema version 8 and is closed in place.
            tx.execute_batch(&format!(
                "UPDATE main.{hist} AS h SET valid_to = {now}
                 FROM temp.{keys} g WHERE {on} AND h.valid_to IS NULL",
                hist = q(history.table),
                on = key_match(spec, "h", "g"),
            ))?;
            tx.execute_batch(&store_held_versions(
                spec,
                &format!(
                    "main.{target} t SEMI JOIN temp.{keys} g ON {on} WHERE",
                    on = key_match(spec, "t", "g")
                ),
                Held::Table,
                now,
            ))?;
            version = ", _version_from = NULL, _version_run_id = NULL";
        }
        tx.execute_batch(&format!(
            "UPDATE main.{target} AS t SET _deleted_at = {now}, _updated_at = {now}, _run_id = {run}{version}
             FROM temp.{keys} g WHERE {on}",
            on = key_match(spec, "t", "g"),
        ))?;
    }
    Ok(rows as u64)
}
