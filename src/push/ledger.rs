//! The exactly-once bookkeeping of write-back: `_push_plans` and `_push_ledger`
//! (`sql/schema/002_push.sql`).
//!
//! A ledger row per (plan, row key) moves `pending → sent → succeeded | already | failed`
//! (`noop` rows were dropped by the plan and are never sent). Each move is one SQL statement,
//! so it commits atomically: a batch's rows are `sent` in the file *before* its request leaves,
//! and get their outcome right after the answer. A process killed at any moment therefore
//! leaves each row either settled (never sent again), `pending` (never sent), or `sent` (outcome
//! unknown: resent only through an idempotent mutation, see `apply.rs`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use duckdb::{Connection, params, params_from_iter};
use serde::Serialize;
use serde_json::{Map, Value};

use super::actions::{Action, Row, RowOutcome, RowStatus};
use super::{Error, Result};

/// Ledger statuses, as stored.
pub const NOOP: &str = "noop";
pub const PENDING: &str = "pending";
pub const SENT: &str = "sent";
pub const SUCCEEDED: &str = "succeeded";
pub const ALREADY: &str = "already";
pub const FAILED: &str = "failed";

/// A stored plan (one `_push_plans` row).
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    pub plan_id: i64,
    pub action: Action,
    pub notify: bool,
    pub sql: String,
    pub params: BTreeMap<String, String>,
    pub rows_selected: u64,
    pub rows_noop: u64,
    pub rows_planned: u64,
    pub status: String,
    pub created_at: String,
}

/// A plan row before it is stored: key, input and whether the warehouse shows it in place
/// already (`noop`), or why it cannot be sent at all (`failed`).
#[derive(Debug, Clone)]
pub struct NewRow {
    pub row: Row,
    pub noop: bool,
    pub failed: Option<String>,
}

fn db(doing: &'static str) -> impl FnOnce(duckdb::Error) -> Error {
    move |source| Error::Ledger {
        doing,
        cause: source,
    }
}

/// Store a new plan and its rows in one transaction; returns the plan id.
pub fn create_plan(
    conn: &Connection,
    action: &Action,
    notify: bool,
    sql: &str,
    params: &BTreeMap<String, String>,
    rows: &[NewRow],
) -> Result<i64> {
    let args = serde_json::json!({ "action": action, "notify": notify }).to_string();
    let params_json = serde_json::to_string(params).unwrap_or_else(|_| "{}".into());
    let noop = rows.iter().filter(|r| r.noop).count() as i64;
    let planned = rows.len() as i64 - noop;
    conn.execute_batch("BEGIN TRANSACTION")
        .map_err(db("starting the plan transaction"))?;
    let stored = (|| {
        let plan_id: i64 = conn
            .query_row(
                "SELECT coalesce(max(plan_id), 0) + 1 FROM _push_plans",
                [],
                |r| r.get(0),
            )
            .map_err(db("numbering the plan"))?;
        conn.execute(
            "INSERT INTO _push_plans (plan_id, action, mutation, args, sql_text, params,
                 rows_selected, rows_noop, rows_planned, status, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', now())",
            params![
                plan_id,
                action.name(),
                action.mutation(),
                args,
                sql,
                params_json,
                rows.len() as i64,
                noop,
                planned
            ],
        )
        .map_err(db("storing the plan"))?;
        let mut app = conn
            .appender("_push_ledger")
            .map_err(db("storing the plan rows"))?;
        for (seq, r) in rows.iter().enumerate() {
            let (status, error) = match (&r.failed, r.noop) {
                (Some(why), _) => (FAILED, Some(why.as_str())),
                (None, true) => (NOOP, None),
                (None, false) => (PENDING, None),
            };
            app.append_row(params![
                plan_id,
                r.row.key,
                seq as i64 + 1,
                action.mutation(),
                Value::Object(r.row.input.clone()).to_string(),
                status,
                None::<i64>,
                None::<String>,
                error,
                0i32,
                None::<String>,
                None::<String>,
            ])
            .map_err(db("storing the plan rows"))?;
        }
        app.flush().map_err(db("storing the plan rows"))?;
        Ok(plan_id)
    })();
    match stored {
        Ok(id) => {
            conn.execute_batch("COMMIT")
                .map_err(db("committing the plan"))?;
            Ok(id)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The stored plan `plan_id`.
pub fn plan(conn: &Connection, plan_id: i64) -> Result<PlanRecord> {
    let found = conn.query_row(
        "SELECT args::VARCHAR, sql_text, params::VARCHAR, rows_selected, rows_noop, rows_planned,
                status, strftime(created_at::TIMESTAMP, '%Y-%m-%d %H:%M:%S')
         FROM _push_plans WHERE plan_id = ?",
        params![plan_id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        },
    );
    let (args, sql, params, selected, noop, planned, status, created_at) = match found {
        Ok(x) => x,
        Err(duckdb::Error::QueryReturnedNoRows) => return Err(Error::NoPlan { plan_id }),
        Err(e) => return Err(db("reading the plan")(e)),
    };
    #[derive(serde::Deserialize)]
    struct Args {
        action: Action,
        notify: bool,
    }
    let args: Args = serde_json::from_str(&args).map_err(|e| Error::Corrupt {
        plan_id,
        problem: format!("args: {e}"),
    })?;
    Ok(PlanRecord {
        plan_id,
        action: args.action,
        notify: args.notify,
        sql,
        params: serde_json::from_str(&params).unwrap_or_default(),
        rows_selected: selected as u64,
        rows_noop: noop as u64,
        rows_planned: planned as u64,
        status,
        created_at,
    })
}

/// An unfinished plan with the same action, arguments and selection as a new `--apply`.
#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    pub plan_id: i64,
    pub created_at: DateTime<Utc>,
}

/// The newest unfinished plan (status applying/unfinished) with exactly this action,
/// arguments and selection; the caller decides whether it is recent enough to resume.
pub fn unfinished_twin(
    conn: &Connection,
    action: &Action,
    notify: bool,
    sql: &str,
    params: &BTreeMap<String, String>,
) -> Result<Option<Twin>> {
    let args = serde_json::json!({ "action": action, "notify": notify }).to_string();
    let params_json = serde_json::to_string(params).unwrap_or_else(|_| "{}".into());
    let found: Option<(i64, i64)> = conn
        .query_row(
            "SELECT plan_id, epoch_us(created_at::TIMESTAMP) FROM _push_plans
             WHERE status IN ('applying', 'unfinished') AND args::VARCHAR = ?
               AND sql_text = ? AND params::VARCHAR = ?
             ORDER BY plan_id DESC LIMIT 1",
            params![args, sql, params_json],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(db("looking for an unfinished plan"))?;
    Ok(found.map(|(plan_id, micros)| Twin {
        plan_id,
        created_at: DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default(),
    }))
}

/// Other plans of the same mutation with rows whose outcome is unknown (`sent`) for keys
/// this plan would send: (other plan id, rows), oldest plan first.
pub fn unknown_elsewhere(conn: &Connection, plan_id: i64) -> Result<Vec<(i64, u64)>> {
    let mut stmt = conn
        .prepare(
            "SELECT b.plan_id, count(*) FROM _push_ledger a
             JOIN _push_ledger b ON a.row_key = b.row_key AND a.mutation = b.mutation
             WHERE a.plan_id = ? AND a.status = 'pending' AND b.plan_id <> a.plan_id
               AND b.status = 'sent'
             GROUP BY b.plan_id ORDER BY b.plan_id",
        )
        .map_err(db("looking for unknown outcomes"))?;
    let rows = stmt
        .query_map(params![plan_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .map_err(db("looking for unknown outcomes"))?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(db("looking for unknown outcomes"))
}

/// Set the plan's status; `applying` also records the first apply time.
pub fn set_status(conn: &Connection, plan_id: i64, status: &str) -> Result<()> {
    conn.execute(
        "UPDATE _push_plans SET status = ?,
             applied_at = CASE WHEN ? = 'applying' THEN coalesce(applied_at, now()) ELSE applied_at END,
             finished_at = CASE WHEN ? = 'applying' THEN finished_at ELSE now() END
         WHERE plan_id = ?",
        params![status, status, status, plan_id],
    )
    .map_err(db("updating the plan status"))?;
    Ok(())
}

/// Rows of the plan with one of `statuses`, in selection order.
pub fn rows(conn: &Connection, plan_id: i64, statuses: &[&str]) -> Result<Vec<Row>> {
    let list = statuses.join("\u{1f}");
    let mut stmt = conn
        .prepare(
            "SELECT row_key, input::VARCHAR FROM _push_ledger
             WHERE plan_id = ? AND list_contains(string_split(?, chr(31)), status)
             ORDER BY seq",
        )
        .map_err(db("reading the ledger"))?;
    let found = stmt
        .query_map(params![plan_id, list], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db("reading the ledger"))?;
    let mut out = Vec::new();
    for row in found {
        let (key, input) = row.map_err(db("reading the ledger"))?;
        let input: Map<String, Value> = serde_json::from_str(&input).unwrap_or_default();
        out.push(Row { key, input });
    }
    Ok(out)
}

/// Rows of the plan left `sent` (outcome unknown) that were sent at or before `cutoff`, in
/// selection order.
pub fn sent_before(conn: &Connection, plan_id: i64, cutoff: DateTime<Utc>) -> Result<Vec<Row>> {
    let mut stmt = conn
        .prepare(
            "SELECT row_key, input::VARCHAR FROM _push_ledger
             WHERE plan_id = ? AND status = 'sent' AND epoch_us(sent_at::TIMESTAMP) <= ?
             ORDER BY seq",
        )
        .map_err(db("reading the ledger"))?;
    let found = stmt
        .query_map(params![plan_id, cutoff.timestamp_micros()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db("reading the ledger"))?;
    let mut out = Vec::new();
    for row in found {
        let (key, input) = row.map_err(db("reading the ledger"))?;
        let input: Map<String, Value> = serde_json::from_str(&input).unwrap_or_default();
        out.push(Row { key, input });
    }
    Ok(out)
}

/// When the most recent of the plan's rows still `sent` (outcome unknown) was sent.
pub fn last_sent_at(conn: &Connection, plan_id: i64) -> Result<Option<DateTime<Utc>>> {
    let micros: Option<i64> = conn
        .query_row(
            "SELECT epoch_us(max(sent_at)::TIMESTAMP) FROM _push_ledger
             WHERE plan_id = ? AND status = 'sent'",
            params![plan_id],
            |r| r.get(0),
        )
        .map_err(db("reading the ledger"))?;
    Ok(micros.and_then(DateTime::<Utc>::from_timestamp_micros))
}

/// Mark `keys` as `sent` in request `batch` (one statement: atomic), before the request leaves.
pub fn mark_sent(conn: &Connection, plan_id: i64, batch: i64, keys: &[Row]) -> Result<()> {
    let list = join_keys(keys.iter().map(|r| r.key.as_str()));
    conn.execute(
        "UPDATE _push_ledger SET status = 'sent', attempts = attempts + 1, batch = ?,
             sent_at = now()
         WHERE plan_id = ? AND list_contains(string_split(?, chr(31)), row_key)",
        params![batch, plan_id, list],
    )
    .map_err(db("marking a batch as sent"))?;
    Ok(())
}

/// Move `keys` back to `pending` (an unknown outcome that is safe, or proven necessary, to
/// resend).
pub fn mark_pending(conn: &Connection, plan_id: i64, keys: &[&str]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    conn.execute(
        "UPDATE _push_ledger SET status = 'pending'
         WHERE plan_id = ? AND status = 'sent' AND list_contains(string_split(?, chr(31)), row_key)",
        params![plan_id, join_keys(keys.iter().copied())],
    )
    .map_err(db("returning rows to pending"))?;
    Ok(())
}

/// Record the outcomes of one answered batch (one statement: atomic).
pub fn record(conn: &Connection, plan_id: i64, outcomes: &[RowOutcome]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut values = Vec::with_capacity(outcomes.len() * 4);
    for o in outcomes {
        let (status, error) = match &o.status {
            RowStatus::Succeeded => (SUCCEEDED, None),
            RowStatus::Already => (ALREADY, None),
            RowStatus::Failed(why) => (FAILED, Some(why.clone())),
        };
        values.push(duckdb::types::Value::Text(o.key.clone()));
        values.push(duckdb::types::Value::Text(status.into()));
        values.push(duckdb::types::Value::Text(o.answer.to_string()));
        values.push(match error {
            Some(e) => duckdb::types::Value::Text(e),
            None => duckdb::types::Value::Null,
        });
    }
    values.push(duckdb::types::Value::BigInt(plan_id));
    let tuples = vec!["(?, ?, ?, ?)"; outcomes.len()].join(", ");
    conn.execute(
        &format!(
            "UPDATE _push_ledger l SET status = o.status, answer = o.answer::JSON, error = o.error,
                 finished_at = now()
             FROM (VALUES {tuples}) o(row_key, status, answer, error)
             WHERE l.row_key = o.row_key AND l.plan_id = ?"
        ),
        params_from_iter(values),
    )
    .map_err(db("recording a batch's outcome"))?;
    Ok(())
}

/// Rows per status for a plan.
pub fn counts(conn: &Connection, plan_id: i64) -> Result<BTreeMap<String, u64>> {
    let mut stmt = conn
        .prepare("SELECT status, count(*) FROM _push_ledger WHERE plan_id = ? GROUP BY status")
        .map_err(db("counting the ledger"))?;
    let rows = stmt
        .query_map(params![plan_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db("counting the ledger"))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (s, n) = r.map_err(db("counting the ledger"))?;
        out.insert(s, n as u64);
    }
    Ok(out)
}

/// Failed rows of a plan: (key, error), first `limit` in selection order.
pub fn failures(conn: &Connection, plan_id: i64, limit: usize) -> Result<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(
            "SELECT row_key, coalesce(error, '') FROM _push_ledger
             WHERE plan_id = ? AND status = 'failed' ORDER BY seq LIMIT ?",
        )
        .map_err(db("reading failed rows"))?;
    let rows = stmt
        .query_map(params![plan_id, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db("reading failed rows"))?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(db("reading failed rows"))
}

/// The next request number of a plan (numbers keep increasing across resumes).
pub fn next_batch(conn: &Connection, plan_id: i64) -> Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(batch), 0) + 1 FROM _push_ledger WHERE plan_id = ?",
        params![plan_id],
        |r| r.get(0),
    )
    .map_err(db("numbering requests"))
}

fn join_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    keys.collect::<Vec<_>>().join("\u{1f}")
}
