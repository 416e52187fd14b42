//! Plan: the admin's SQL → validated rows → diffed against the warehouse → stored plan.
//!
//! Runs the selection in the warehouse (DuckDB: tables, views, or `'people.csv'`), checks the
//! action's columns and their types before anything else, rejects null and duplicate keys,
//! marks rows already in place as no-ops (already archived, already a member, ...) and stores
//! the plan with its rows in `_push_plans` / `_push_ledger`. Sends nothing.

use std::collections::BTreeMap;

use duckdb::{Connection, params};
use serde_json::{Map, Value};

use super::actions::{Action, ColumnType, Row};
use super::ledger::{self, NewRow};
use super::{Error, Result};
use crate::query::{Param, set_params};

/// The SQL that selects the rows, with its `--param k=v` values (read with `getvariable('k')`),
/// parsed by the same [`parse_params`](crate::query::parse_params) as `query`'s.
#[derive(Debug, Clone)]
pub struct Selection {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Selection {
    /// The parameters as stored with the plan: name → SQL literal.
    pub fn stored_params(&self) -> BTreeMap<String, String> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.literal.clone()))
            .collect()
    }
}

/// What a new plan holds, for printing.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan_id: i64,
    pub selected: u64,
    pub noop: u64,
    /// Rows to send.
    pub planned: u64,
    /// Rows that cannot be sent (e.g. a ref the warehouse cannot resolve to a user id).
    pub unsendable: u64,
    /// Rows to send whose ref is not in the warehouse's `users` (Pluvo will likely refuse them).
    pub unknown_refs: u64,
    /// The first rows to send.
    pub first: Vec<Row>,
}

fn sql_error(e: duckdb::Error) -> Error {
    Error::Sql {
        message: e.to_string(),
    }
}

fn db(doing: &'static str) -> impl FnOnce(duckdb::Error) -> Error {
    move |source| Error::Ledger {
        doing,
        cause: source,
    }
}

/// Fill in what the action needs from the warehouse (a certificate's title) and check that its
/// target exists there (group, training, certificate template).
pub fn resolve(conn: &Connection, action: Action) -> Result<Action> {
    let exists = |table: &'static str, column: &str, value: &str| -> Result<Option<String>> {
        let sql = format!(
            "SELECT coalesce({}, '') FROM {table} WHERE {column} = ? AND _deleted_at IS NULL LIMIT 1",
            if table == "certificates" {
                "title"
            } else {
                "ref"
            }
        );
        match conn.query_row(&sql, params![value], |r| r.get::<_, String>(0)) {
            Ok(v) => Ok(Some(v)),
            Err(duckdb::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(db("checking the action's target")(e)),
        }
    };
    let missing = |what: &'static str, value: &str, table: &'static str| Error::UnknownTarget {
        what,
        value: value.to_string(),
        table,
    };
    match action {
        Action::AddToGroup { ref group } => {
            exists("groups", "ref", group)?.ok_or_else(|| missing("group", group, "groups"))?;
            Ok(action)
        }
        Action::AddToTraining { ref training, .. } => {
            exists("trainings", "ref", training)?
                .ok_or_else(|| missing("training", training, "trainings"))?;
            Ok(action)
        }
        Action::GenerateCertificate {
            certificate,
            training,
            issue_date,
            ..
        } => {
            let title = exists("certificates", "id", &certificate)?
                .ok_or_else(|| missing("certificate template", &certificate, "certificates"))?;
            Ok(Action::GenerateCertificate {
                certificate,
                title,
                training,
                issue_date,
            })
        }
        other => Ok(other),
    }
}

/// Run the selection, validate, diff and store the plan. Sends nothing.
pub fn plan(
    conn: &Connection,
    action: &Action,
    notify: bool,
    selection: &Selection,
) -> Result<Planned> {
    let sql = selection.sql.trim().trim_end_matches(';').trim_end();
    if sql.is_empty() {
        return Err(Error::Sql {
            message: "the selection is empty".into(),
        });
    }
    // One read-only SELECT, by DuckDB's parser, before any of it runs: the selection runs on
    // the writer's connection, where `...) q; UPDATE _push_ledger ...; SELECT * FROM (...`
    // or a `WITH d AS (DELETE ...)` would otherwise rewrite the ledger.
    use crate::store::guard::{self, GuardError, Refusal};
    match guard::check(conn, sql) {
        Ok(()) => {}
        Err(GuardError::Refused(Refusal::Syntax { message })) => {
            return Err(Error::Sql { message });
        }
        Err(GuardError::Refused(refusal)) => {
            return Err(Error::NotReadOnly {
                reason: refusal.to_string(),
            });
        }
        Err(GuardError::Db(e)) => return Err(sql_error(e)),
    }
    set_params(conn, &selection.params).map_err(sql_error)?;
    let source = format!("(\n{sql}\n) q");
    let columns = describe(conn, &source)?;
    let projection = project(action, &columns)?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE push_input AS
         SELECT row_number() OVER () AS seq, {projection} FROM {source}"
    ))
    .map_err(sql_error)?;
    let result = diff_and_store(conn, action, notify, selection);
    let _ = conn.execute_batch("DROP TABLE IF EXISTS push_input");
    result
}

/// Column names and DuckDB types of the selection.
fn describe(conn: &Connection, source: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(&format!("DESCRIBE SELECT * FROM {source}"))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(sql_error)?;
    rows.collect::<std::result::Result<_, _>>()
        .map_err(sql_error)
}

fn is_integer(ty: &str) -> bool {
    matches!(
        ty,
        "TINYINT"
            | "SMALLINT"
            | "INTEGER"
            | "BIGINT"
            | "HUGEINT"
            | "UTINYINT"
            | "USMALLINT"
            | "UINTEGER"
            | "UBIGINT"
            | "UHUGEINT"
    )
}

/// The SELECT list that normalises the action's columns (text, lists, typed values).
fn project(action: &Action, columns: &[(String, String)]) -> Result<String> {
    let mut out = Vec::new();
    for spec in action.columns() {
        let found = columns.iter().find(|(n, _)| n == spec.name);
        let Some((_, ty)) = found else {
            if spec.required {
                return Err(Error::MissingColumn {
                    action: action.name(),
                    column: spec.name,
                    found: columns.iter().map(|(n, _)| n.clone()).collect(),
                });
            }
            out.push(format!("NULL AS \"{}\"", spec.name));
            continue;
        };
        let c = format!("q.\"{}\"", spec.name);
        let bad = |expected: &'static str| Error::ColumnType {
            column: spec.name,
            found: ty.clone(),
            expected,
        };
        let expr = match spec.ty {
            ColumnType::Text if ty == "VARCHAR" || ty == "UUID" || is_integer(ty) => {
                format!("CAST({c} AS VARCHAR) AS \"{}\"", spec.name)
            }
            ColumnType::Text => return Err(bad("text (VARCHAR)")),
            ColumnType::TextList if ty == "VARCHAR[]" => format!("{c} AS \"{}\"", spec.name),
            ColumnType::TextList if ty == "VARCHAR" => format!(
                "[trim(x) FOR x IN string_split({c}, ',') IF trim(x) <> ''] AS \"{}\"",
                spec.name
            ),
            ColumnType::TextList => return Err(bad("a list (VARCHAR[]) or comma-separated text")),
            ColumnType::Value => {
                let (value, kind) = match ty.as_str() {
                    "VARCHAR" => (c.clone(), "string"),
                    "BOOLEAN" => (c.clone(), "boolean"),
                    "VARCHAR[]" => (c.clone(), "choice"),
                    "DATE"
                    | "TIMESTAMP"
                    | "TIMESTAMP WITH TIME ZONE"
                    | "TIMESTAMP_S"
                    | "TIMESTAMP_MS"
                    | "TIMESTAMP_NS" => (
                        format!("strftime({c}::TIMESTAMP, '%Y-%m-%dT%H:%M:%SZ')"),
                        "datetime",
                    ),
                    _ => return Err(bad("VARCHAR, BOOLEAN, DATE/TIMESTAMP or VARCHAR[]")),
                };
                out.push(format!("'{kind}' AS value_kind"));
                format!("{value} AS \"{}\"", spec.name)
            }
        };
        out.push(expr);
    }
    Ok(out.join(", "))
}

/// Rows already in place according to the warehouse, per action (a SQL boolean over the input
/// row `i`, with `?` parameters). Actions without a warehouse table to diff against (offer
/// enrollments, training members by role) rely on the server's "already" answers instead.
fn noop_sql(action: &Action) -> (&'static str, Vec<String>) {
    match action {
        Action::ArchiveUsers => (
            "coalesce((SELECT bool_and(u.archived) FROM users u
                       WHERE u.ref = i.ref AND u._deleted_at IS NULL), false)",
            vec![],
        ),
        Action::UnarchiveUsers => (
            "coalesce((SELECT bool_and(NOT u.archived) FROM users u
                       WHERE u.ref = i.ref AND u._deleted_at IS NULL), false)",
            vec![],
        ),
        Action::AddToGroup { group } => (
            "EXISTS (SELECT 1 FROM group_members m
                     WHERE m.group_ref = ? AND m.user_ref = i.ref AND m.role = 'participant'
                       AND m._deleted_at IS NULL)",
            vec![group.clone()],
        ),
        Action::GenerateCertificate {
            title, issue_date, ..
        } => (
            "EXISTS (SELECT 1 FROM portfolio_items p
                     WHERE p.user_ref = i.ref AND p.related_object_type = 'CERTIFICATE'
                       AND p.title = ? AND p.completion_date = CAST(? AS DATE)
                       AND p._deleted_at IS NULL)",
            vec![title.clone(), issue_date.to_string()],
        ),
        Action::SetExtraField { category } => (
            "coalesce((SELECT bool_and(json_extract(u.extra_fields, '$.\"' || ? || '\"')
                                       = to_json(i.value)) FROM users u
                       WHERE u.ref = i.ref AND u._deleted_at IS NULL), false)",
            vec![category.clone()],
        ),
        Action::UpsertUsers => (
            "coalesce((SELECT bool_and(u.name IS NOT DISTINCT FROM i.name
                           AND u.email IS NOT DISTINCT FROM i.email
                           AND (i.language IS NULL OR u.language = i.language)
                           AND (i.roles IS NULL OR list_sort(u.roles) = list_sort(i.roles)))
                       FROM users u WHERE u.ref = i.ref AND u._deleted_at IS NULL), false)",
            vec![],
        ),
        Action::AddToTraining { .. } | Action::Enroll { .. } => ("false", vec![]),
    }
}

fn diff_and_store(
    conn: &Connection,
    action: &Action,
    notify: bool,
    selection: &Selection,
) -> Result<Planned> {
    let selected: i64 = conn
        .query_row("SELECT count(*) FROM push_input", [], |r| r.get(0))
        .map_err(db("counting the selection"))?;
    if selected == 0 {
        return Err(Error::EmptySelection);
    }
    // Required values: no nulls (and no empty key).
    for spec in action.columns().iter().filter(|c| c.required) {
        let empty_key = if spec.name == "ref" {
            " OR trim(ref) = ''"
        } else {
            ""
        };
        let (count, first): (i64, Vec<i64>) = conn
            .query_row(
                &format!(
                    "SELECT count(*), coalesce(list(seq ORDER BY seq)[1:5], [])
                     FROM push_input WHERE \"{}\" IS NULL{empty_key}",
                    spec.name
                ),
                [],
                |r| {
                    let first: duckdb::types::Value = r.get(1)?;
                    Ok((r.get(0)?, list_i64(first)))
                },
            )
            .map_err(db("checking for null values"))?;
        if count > 0 {
            return Err(Error::NullValues {
                column: spec.name,
                count: count as u64,
                first_rows: first,
            });
        }
    }
    let (count, examples): (i64, Vec<String>) = conn
        .query_row(
            "SELECT count(*), coalesce(list(ref ORDER BY ref)[1:5], []) FROM
               (SELECT ref FROM push_input GROUP BY ref HAVING count(*) > 1)",
            [],
            |r| {
                let ex: duckdb::types::Value = r.get(1)?;
                Ok((r.get(0)?, list_text(ex)))
            },
        )
        .map_err(db("checking for duplicate keys"))?;
    if count > 0 {
        return Err(Error::DuplicateKeys {
            count: count as u64,
            examples,
        });
    }

    let (noop, noop_params) = noop_sql(action);
    let sql = format!(
        "SELECT i.ref, to_json(i)::VARCHAR, {noop},
                (SELECT min(u.id) FROM users u WHERE u.ref = i.ref AND u._deleted_at IS NULL)
         FROM push_input i ORDER BY i.seq"
    );
    let mut stmt = conn
        .prepare(&sql)
        .map_err(db("diffing against the warehouse"))?;
    let found = stmt
        .query_map(duckdb::params_from_iter(noop_params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(db("diffing against the warehouse"))?;
    let needs_id = matches!(action, Action::GenerateCertificate { .. });
    let mut rows = Vec::new();
    let mut unknown_refs = 0;
    for r in found {
        let (key, input, noop, user_id) = r.map_err(db("diffing against the warehouse"))?;
        let mut input: Map<String, Value> = serde_json::from_str(&input).unwrap_or_default();
        input.remove("seq");
        input.remove("ref");
        if user_id.is_none() && !noop {
            unknown_refs += 1;
        }
        let failed = match (&user_id, needs_id) {
            (None, true) => Some(
                "ref not in the warehouse's `users`: no user id to send; run `sync` first".into(),
            ),
            _ => None,
        };
        if let Some(id) = user_id.filter(|_| needs_id) {
            input.insert("user_id".into(), Value::String(id));
        }
        rows.push(NewRow {
            row: Row { key, input },
            noop,
            failed,
        });
    }
    let plan_id = ledger::create_plan(
        conn,
        action,
        notify,
        &selection.sql,
        &selection.stored_params(),
        &rows,
    )?;
    let sendable: Vec<&NewRow> = rows
        .iter()
        .filter(|r| !r.noop && r.failed.is_none())
        .collect();
    Ok(Planned {
        plan_id,
        selected: rows.len() as u64,
        noop: rows.iter().filter(|r| r.noop).count() as u64,
        planned: sendable.len() as u64,
        unsendable: rows.iter().filter(|r| r.failed.is_some()).count() as u64,
        unknown_refs,
        first: sendable.iter().take(5).map(|r| r.row.clone()).collect(),
    })
}

fn list_i64(v: duckdb::types::Value) -> Vec<i64> {
    match v {
        duckdb::types::Value::List(items) => items
            .into_iter()
            .filter_map(|x| match x {
                duckdb::types::Value::BigInt(n) => Some(n),
                duckdb::types::Value::Int(n) => Some(n.into()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn list_text(v: duckdb::types::Value) -> Vec<String> {
    match v {
        duckdb::types::Value::List(items) => items
            .into_iter()
            .filter_map(|x| match x {
                duckdb::types::Value::Text(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
