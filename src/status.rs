//! The warehouse's status: what it holds and how the last sync went, read from the warehouse's
//! own bookkeeping (`_runs`, `_run_streams`, `_checkpoints`, the data tables and, when the
//! push tables exist, `_push_plans`/`_push_ledger`).
//!
//! Reads an open warehouse and never talks to Pluvo; `cli/status.rs` opens it read-only and
//! prints (a table, or JSON for monitoring: its keys are stable and documented in
//! docs/operations.md, "Monitoring").

use duckdb::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::store::{StoreError, Warehouse, query_all};
use crate::streams;

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub db: String,
    pub schema_version: i64,
    /// `warehouse` (the file itself), or `snapshot` when a writer holds the file: the
    /// answer then comes from the published snapshot and its copy of the run history.
    pub source: &'static str,
    /// A sync or `webhook serve` holds the file right now. Not a failure: monitoring should
    /// judge `last_run` (the newest published one) and not alarm on `busy` alone.
    pub busy: bool,
    /// Why the answer comes from the snapshot, when it does.
    pub note: Option<String>,
    /// The newest run (any status), `null` before the first sync.
    pub last_run: Option<RunStatus>,
    /// The last run of each stream that has run, in registry order.
    pub streams: Vec<StreamStatus>,
    pub checkpoints: Vec<CheckpointStatus>,
    pub tables: Vec<TableCount>,
    /// Plans not `done` or with failed rows; `null` when the warehouse has no push tables.
    pub push_plans: Option<Vec<PushPlanStatus>>,
}

/// One row of `_runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub run_id: i64,
    /// running | succeeded | failed | interrupted
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub seconds: Option<f64>,
    pub error: Option<String>,
}

/// The last run of one stream (`_run_streams`).
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub stream: String,
    pub run_id: i64,
    /// succeeded | failed | running | interrupted
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub seconds: Option<f64>,
    pub rows_new: i64,
    pub rows_changed: i64,
    pub rows_unchanged: i64,
    pub rows_deleted: i64,
    pub requests: i64,
    pub retries: i64,
    pub error: Option<String>,
    pub schema_drift: Option<String>,
}

/// A stream's checkpoint: a scan in progress (`part`, `next_page`) or the state kept
/// between runs.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointStatus {
    pub stream: String,
    pub scan_in_progress: bool,
    /// The part being scanned (0-based, e.g. users: 0 active, 1 archived).
    pub part: Option<u64>,
    /// The first page of that part not yet committed.
    pub next_page: Option<u64>,
    /// What the last complete scan left for the next (e.g. a date window), if anything.
    pub state: Option<Value>,
    pub run_id: i64,
    pub updated_at: String,
}

/// Rows of one data table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    pub table: String,
    pub live: i64,
    pub deleted: i64,
}

/// A push plan that still needs attention.
#[derive(Debug, Clone, Serialize)]
pub struct PushPlanStatus {
    pub plan_id: i64,
    pub action: String,
    /// planned | applying | partial | unfinished | done
    pub status: String,
    pub created_at: String,
    pub rows_planned: i64,
    /// Ledger rows not sent yet or with an unknown outcome (`pending`, `sent`).
    pub rows_pending: i64,
    pub rows_failed: i64,
}

/// Timestamps (UTC) as ISO 8601 text.
fn iso(column: &str) -> String {
    format!("strftime({column}::TIMESTAMP, '%Y-%m-%dT%H:%M:%SZ')")
}

fn seconds(from: &str, to: &str) -> String {
    format!("date_diff('millisecond', {from}::TIMESTAMP, {to}::TIMESTAMP)::DOUBLE / 1000")
}

fn db(doing: &'static str) -> impl Fn(duckdb::Error) -> StoreError {
    move |source| StoreError::Db {
        doing,
        cause: source,
    }
}

/// The status from a published snapshot, read while a writer holds the warehouse `db`: its
/// run history and row counts as of that snapshot; no checkpoints nor push plans (they are
/// not published).
pub fn collect_snapshot(
    db: &std::path::Path,
    reader: &crate::export::snapshot::Reader,
    schema_version: i64,
) -> Result<Status, StoreError> {
    let conn = reader.connection();
    Ok(Status {
        db: db.display().to_string(),
        schema_version,
        source: "snapshot",
        busy: true,
        note: reader.source.note(),
        last_run: last_run(conn)?,
        streams: stream_runs(conn)?,
        checkpoints: Vec::new(),
        tables: table_counts(conn)?,
        push_plans: None,
    })
}

/// Read the status of an open warehouse.
pub fn collect(warehouse: &Warehouse) -> Result<Status, StoreError> {
    let conn = warehouse.connection();
    Ok(Status {
        db: warehouse.path().display().to_string(),
        schema_version: warehouse.schema_version(),
        source: "warehouse",
        busy: false,
        note: None,
        last_run: last_run(conn)?,
        streams: stream_runs(conn)?,
        checkpoints: checkpoints(conn)?,
        tables: table_counts(conn)?,
        push_plans: if has_table(conn, "_push_plans")? && has_table(conn, "_push_ledger")? {
            Some(push_plans(conn)?)
        } else {
            None
        },
    })
}

fn last_run(conn: &Connection) -> Result<Option<RunStatus>, StoreError> {
    let sql = format!(
        "SELECT run_id, status, {}, {}, {}, error FROM _runs ORDER BY run_id DESC LIMIT 1",
        iso("started_at"),
        iso("ended_at"),
        seconds("started_at", "ended_at"),
    );
    let runs = query_all(conn, &sql, db("reading `_runs`"), |r| {
        Ok(RunStatus {
            run_id: r.get(0)?,
            status: r.get(1)?,
            started_at: r.get(2)?,
            ended_at: r.get(3)?,
            seconds: r.get(4)?,
            error: r.get(5)?,
        })
    })?;
    Ok(runs.into_iter().next())
}

fn stream_runs(conn: &Connection) -> Result<Vec<StreamStatus>, StoreError> {
    let sql = format!(
        "SELECT s.stream, s.run_id,
                CASE WHEN s.error IS NOT NULL THEN 'failed'
                     WHEN s.ended_at IS NULL THEN r.status
                     ELSE 'succeeded' END,
                {}, {}, {},
                s.rows_new, s.rows_changed, s.rows_unchanged, s.rows_deleted,
                s.requests, s.retries, s.error, s.schema_drift
         FROM _run_streams s JOIN _runs r USING (run_id)
         QUALIFY row_number() OVER (PARTITION BY s.stream ORDER BY s.run_id DESC) = 1",
        iso("s.started_at"),
        iso("s.ended_at"),
        seconds("s.started_at", "s.ended_at"),
    );
    let doing = "reading `_run_streams`";
    let mut out = query_all(conn, &sql, db(doing), |r| {
        Ok(StreamStatus {
            stream: r.get(0)?,
            run_id: r.get(1)?,
            status: r.get(2)?,
            started_at: r.get(3)?,
            ended_at: r.get(4)?,
            seconds: r.get(5)?,
            rows_new: r.get(6)?,
            rows_changed: r.get(7)?,
            rows_unchanged: r.get(8)?,
            rows_deleted: r.get(9)?,
            requests: r.get(10)?,
            retries: r.get(11)?,
            error: r.get(12)?,
            schema_drift: r.get(13)?,
        })
    })?;
    out.sort_by_key(|s| registry_order(&s.stream));
    Ok(out)
}

/// Position in the stream registry (unknown names last, e.g. from a newer tool).
fn registry_order(stream: &str) -> (usize, String) {
    let i = streams::ALL
        .iter()
        .position(|s| s.name == stream)
        .unwrap_or(usize::MAX);
    (i, stream.to_string())
}

fn checkpoints(conn: &Connection) -> Result<Vec<CheckpointStatus>, StoreError> {
    let sql = format!(
        "SELECT stream, state, run_id, {} FROM _checkpoints",
        iso("updated_at")
    );
    let doing = "reading `_checkpoints`";
    let rows = query_all(conn, &sql, db(doing), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out: Vec<CheckpointStatus> = rows
        .into_iter()
        .map(|(stream, text, run_id, updated_at)| {
            // The checkpoint format of streams/sync.rs: `part` + `next_page` during a scan,
            // `state` between scans. Anything else is shown as it is.
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let part = value.get("part").and_then(Value::as_u64);
            CheckpointStatus {
                stream,
                scan_in_progress: part.is_some(),
                part,
                next_page: part.and(value.get("next_page").and_then(Value::as_u64)),
                state: match value.get("state") {
                    Some(Value::Null) | None if value.is_object() => None,
                    Some(state) => Some(state.clone()),
                    None => Some(value),
                },
                run_id,
                updated_at,
            }
        })
        .collect();
    out.sort_by_key(|c| registry_order(&c.stream));
    Ok(out)
}

fn table_counts(conn: &Connection) -> Result<Vec<TableCount>, StoreError> {
    let doing = "counting table rows";
    streams::ALL
        .iter()
        .flat_map(|s| s.tables.iter())
        .map(|spec| {
            let sql = format!(
                "SELECT count(*) FILTER (_deleted_at IS NULL),
                        count(*) FILTER (_deleted_at IS NOT NULL)
                 FROM \"{}\"",
                spec.table
            );
            conn.query_row(&sql, [], |r| {
                Ok(TableCount {
                    table: spec.table.to_string(),
                    live: r.get(0)?,
                    deleted: r.get(1)?,
                })
            })
            .map_err(db(doing))
        })
        .collect()
}

/// Tables added by later migrations (push) are looked up rather than assumed, so `status`
/// works on files with or without them.
fn has_table(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT count(*) > 0 FROM information_schema.tables
         WHERE table_name = ? AND table_catalog = current_database()",
        [name],
        |r| r.get(0),
    )
    .map_err(db("looking up the push tables"))
}

fn push_plans(conn: &Connection) -> Result<Vec<PushPlanStatus>, StoreError> {
    let sql = format!(
        "SELECT p.plan_id, p.action, p.status, {}, p.rows_planned,
                count(l.status) FILTER (l.status IN ('pending', 'sent')),
                count(l.status) FILTER (l.status = 'failed')
         FROM _push_plans p LEFT JOIN _push_ledger l USING (plan_id)
         GROUP BY ALL
         HAVING p.status <> 'done' OR count(l.status) FILTER (l.status = 'failed') > 0
         ORDER BY p.plan_id",
        iso("p.created_at")
    );
    let doing = "reading `_push_plans`";
    let plans = query_all(conn, &sql, db(doing), |r| {
        Ok(PushPlanStatus {
            plan_id: r.get(0)?,
            action: r.get(1)?,
            status: r.get(2)?,
            created_at: r.get(3)?,
            rows_planned: r.get(4)?,
            rows_pending: r.get(5)?,
            rows_failed: r.get(6)?,
        })
    })?;
    Ok(plans)
}
