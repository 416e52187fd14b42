//! The report's numbers: SQL over the analyst views (`sql/views/`), wrapped but never
//! re-written, so the report and `query "SELECT … FROM compliance_roster"` cannot disagree.
//!
//! Every figure here is also serialized into the page as JSON, so this struct is the report's
//! machine-readable form (the tests compare it with SQL over the warehouse).

use chrono::{Datelike, Months, NaiveDate, Utc};
use duckdb::Connection;
use serde::Serialize;

use super::{Error, Request, db};
use crate::error::UsageError;
use crate::store::query_all;
use crate::views;

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Data {
    pub as_of: NaiveDate,
    pub generated_at: String,
    pub source: String,
    /// The newest successful run in the source.
    pub run_id: Option<i64>,
    /// The groups asked for (refs); empty = everyone.
    pub groups: Vec<String>,
    /// Users not archived (and in the groups asked for): the population of the roster and the
    /// inactivity chart.
    pub users: i64,
    pub days: u32,
    pub inactive_days: u32,
    pub freshness: Vec<Freshness>,
    pub completion: Completion,
    pub expiry: Vec<Bar>,
    pub inactivity: Vec<Bar>,
    pub roster: Roster,
}

/// The last successful sync of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    pub stream: String,
    /// When its last complete scan ended (UTC), `None` if none ever did.
    pub last_success: Option<String>,
    /// How the newest run of the stream went: succeeded | failed | running | interrupted.
    pub last_status: String,
}

/// One row of `completion_by_group`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupCompletion {
    pub group_ref: Option<String>,
    pub group_name: Option<String>,
    pub members: i64,
    pub training_items: i64,
    pub completed: i64,
    pub completion_pct: Option<f64>,
    pub avg_score: Option<f64>,
}

impl GroupCompletion {
    /// The group's name, else its ref.
    pub fn label(&self) -> String {
        self.group_name
            .clone()
            .or_else(|| self.group_ref.clone())
            .unwrap_or_else(|| "(unnamed)".into())
    }
}

/// Completion per group: the chart shows `charted` (the groups lagging most, lowest first);
/// `all` is the whole view, in its own order.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub charted: Vec<GroupCompletion>,
    pub all: Vec<GroupCompletion>,
}

/// One bar of a chart: its label and count; `alert` bars are drawn in the warning colour
/// (expired certificates, inactive users).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bar {
    pub label: String,
    pub count: i64,
    pub alert: bool,
}

/// The roster: counts per certificate and status over every row, and the rows shown.
#[derive(Debug, Clone, Serialize)]
pub struct Roster {
    pub limit: usize,
    pub certificates: Vec<CertificateCounts>,
    pub rows: Vec<RosterRow>,
}

/// `compliance_roster` counted by status for one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateCounts {
    pub certificate: String,
    pub valid: i64,
    pub expiring: i64,
    pub expired: i64,
    pub missing: i64,
    /// Rows of this certificate in the table.
    pub shown: i64,
}

impl CertificateCounts {
    pub fn total(&self) -> i64 {
        self.valid + self.expiring + self.expired + self.missing
    }
}

/// One row of `compliance_roster`.
#[derive(Debug, Clone, Serialize)]
pub struct RosterRow {
    pub user_ref: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub certificate: String,
    pub status: String,
    pub issued_on: Option<NaiveDate>,
    pub expires_on: Option<NaiveDate>,
    pub days_left: Option<i64>,
}

/// A text as a SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `AND <column> IN (participants of the groups)`, or nothing when no group was asked for.
fn scope(groups: &[String], column: &str) -> String {
    if groups.is_empty() {
        return String::new();
    }
    format!(
        " AND {column} IN (SELECT m.user_id FROM group_members m
            JOIN \"groups\" g ON g.id = m.group_id AND g._deleted_at IS NULL
            WHERE m._deleted_at IS NULL AND m.role = 'participant' AND g.ref IN ({}))",
        list(groups)
    )
}

fn one(conn: &Connection, sql: &str, doing: &'static str) -> Result<i64, Error> {
    conn.query_row(sql, [], |r| r.get(0)).map_err(db(doing))
}

fn view(name: &str) -> &'static views::View {
    views::find(name).unwrap_or_else(|| panic!("`{name}` is in views::VIEWS"))
}

fn body(name: &str) -> &'static str {
    view(name).body()
}

/// Refuse names that are not in the warehouse, listing (some of) the ones that are.
fn check_known(
    conn: &Connection,
    what: &str,
    asked: &[String],
    known_sql: &str,
) -> Result<(), Error> {
    let known: Vec<String> =
        query_all(conn, known_sql, db("reading the known names"), |r| r.get(0))?;
    let unknown: Vec<String> = asked
        .iter()
        .filter(|a| !known.contains(a))
        .map(|a| format!("`{a}`"))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let mut shown = known
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > 20 {
        shown.push_str(&format!(", … ({} in all)", known.len()));
    }
    Err(UsageError::new(format!(
        "no {what} {}; known: {}",
        unknown.join(", "),
        if shown.is_empty() { "none" } else { &shown }
    ))
    .into())
}

/// Read every figure of the report from `conn` (the warehouse or its snapshot, with the
/// analyst views' tables). Sets the views' variables (`as_of`, `days`, `certificates`).
pub fn collect(conn: &Connection, request: &Request) -> Result<Data, Error> {
    check_known(
        conn,
        "group with ref",
        &request.groups,
        "SELECT DISTINCT ref FROM \"groups\" WHERE _deleted_at IS NULL AND ref IS NOT NULL ORDER BY ref",
    )?;
    check_known(
        conn,
        "certificate titled",
        &request.certificates,
        "SELECT DISTINCT title FROM certificates WHERE _deleted_at IS NULL AND title IS NOT NULL ORDER BY title",
    )?;
    let as_of = request.as_of;
    let certificates = if request.certificates.is_empty() {
        "NULL".to_string()
    } else {
        format!("[{}]::VARCHAR[]", list(&request.certificates))
    };
    conn.execute_batch(&format!(
        "SET VARIABLE as_of = DATE '{as_of}'; SET VARIABLE certificates = {certificates};"
    ))
    .map_err(db("setting the views' parameters"))?;

    let run_id: Option<i64> = conn
        .query_row(
            "SELECT max(run_id) FROM _runs WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .map_err(db("reading the last run"))?;
    // The population of `inactive_users` and `compliance_roster`.
    let users = one(
        conn,
        &format!(
            "SELECT count(*) FROM users u WHERE u._deleted_at IS NULL AND NOT u.archived{}",
            scope(&request.groups, "u.id")
        ),
        "counting the users",
    )?;

    let roster_read = db("reading the roster");
    let tally = views::joined_as_written(conn, || tally(conn, request), &roster_read)?;
    Ok(Data {
        as_of,
        generated_at: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        source: request.source.clone(),
        run_id,
        groups: request.groups.clone(),
        users,
        days: request.days,
        inactive_days: request.inactive_days,
        freshness: freshness(conn)?,
        completion: completion(conn, request)?,
        expiry: expiry(&tally, as_of),
        inactivity: inactivity(conn, request, users)?,
        roster: views::joined_as_written(conn, || roster(conn, request, &tally), &roster_read)?,
    })
}

/// Per stream, in registry order: the end of its last complete scan and its newest run.
fn freshness(conn: &Connection) -> Result<Vec<Freshness>, Error> {
    let mut rows = query_all(
        conn,
        "SELECT s.stream,
                strftime(max(s.ended_at) FILTER (WHERE s.error IS NULL AND s.ended_at IS NOT NULL)::TIMESTAMP,
                         '%Y-%m-%d %H:%M UTC'),
                arg_max(CASE WHEN s.error IS NOT NULL THEN 'failed'
                             WHEN s.ended_at IS NULL THEN r.status
                             ELSE 'succeeded' END, s.run_id)
         FROM _run_streams s JOIN _runs r USING (run_id)
         GROUP BY s.stream",
        db("reading `_run_streams`"),
        |r| {
            Ok(Freshness {
                stream: r.get(0)?,
                last_success: r.get(1)?,
                last_status: r.get(2)?,
            })
        },
    )?;
    rows.sort_by_key(|f| {
        (
            crate::streams::ALL
                .iter()
                .position(|s| s.name == f.stream)
                .unwrap_or(usize::MAX),
            f.stream.clone(),
        )
    });
    Ok(rows)
}

fn completion(conn: &Connection, request: &Request) -> Result<Completion, Error> {
    let filter = if request.groups.is_empty() {
        String::new()
    } else {
        format!("WHERE c.group_ref IN ({})", list(&request.groups))
    };
    let all_groups = query_all(
        conn,
        &format!(
            "SELECT * FROM ({}\n) c {filter}",
            body("completion_by_group")
        ),
        db("reading `completion_by_group`"),
        |r| {
            Ok(GroupCompletion {
                group_ref: r.get("group_ref")?,
                group_name: r.get("group_name")?,
                members: r.get("members")?,
                training_items: r.get("training_items")?,
                completed: r.get("completed")?,
                completion_pct: r.get("completion_pct")?,
                avg_score: r.get("avg_score")?,
            })
        },
    )?;
    // The view orders by completion, highest first, groups without training items last; the
    // chart shows the ones lagging most.
    let mut charted: Vec<GroupCompletion> = all_groups
        .iter()
        .filter(|g| g.completion_pct.is_some())
        .cloned()
        .collect();
    charted.sort_by(|a, b| {
        a.completion_pct
            .partial_cmp(&b.completion_pct)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.group_ref.cmp(&b.group_ref))
    });
    charted.truncate(request.chart_groups);
    Ok(Completion {
        charted,
        all: all_groups,
    })
}

/// `compliance_roster` with the request's parameters, limited to its scope, in no particular
/// order (the report counts the rows, and orders the ones it lists itself).
fn roster_sql(request: &Request) -> String {
    format!(
        "SELECT * FROM ({}\n) r WHERE true{}",
        view("compliance_roster").unordered_body(),
        scope(&request.groups, "r.user_id")
    )
}

/// `compliance_roster` counted by certificate, status and month of expiry (for held
/// certificates): one pass over the roster gives both the counts per certificate and the
/// expiry timeline, which matters at 1M users × every certificate.
#[derive(Debug, Clone)]
struct Tally {
    certificate: String,
    status: String,
    month: Option<NaiveDate>,
    count: i64,
}

fn tally(conn: &Connection, request: &Request) -> Result<Vec<Tally>, Error> {
    conn.execute_batch(&format!("SET VARIABLE days = {};", request.days))
        .map_err(db("setting the views' parameters"))?;
    query_all(
        conn,
        &format!(
            "SELECT certificate, status,
                    CASE WHEN status IN ('valid', 'expiring')
                         THEN date_trunc('month', expires_on)::DATE END AS month,
                    count(*)
             FROM ({}) x GROUP BY ALL",
            roster_sql(request)
        ),
        db("counting the roster"),
        |r| {
            Ok(Tally {
                certificate: r.get(0)?,
                status: r.get(1)?,
                month: r.get(2)?,
                count: r.get(3)?,
            })
        },
    )
}

/// Held certificates (roster rows) already expired, then expiring per calendar month: the
/// month of `as_of` and the 11 after it.
fn expiry(tally: &[Tally], as_of: NaiveDate) -> Vec<Bar> {
    let first = as_of.with_day(1).unwrap_or(as_of);
    let sum = |keep: &dyn Fn(&Tally) -> bool| -> i64 {
        tally.iter().filter(|t| keep(t)).map(|t| t.count).sum()
    };
    let mut bars = vec![Bar {
        label: "expired".into(),
        count: sum(&|t| t.status == "expired"),
        alert: true,
    }];
    for i in 0..12 {
        let month = first + Months::new(i);
        bars.push(Bar {
            label: month.format("%b %Y").to_string(),
            count: sum(&|t| t.status != "expired" && t.month == Some(month)),
            alert: false,
        });
    }
    bars
}

/// Users by time since their last login, from `inactive_users` run at several thresholds:
/// `inactive_users(days = d)` holds everyone not seen for `d` days (or never), so the
/// difference of two thresholds is one bucket, on exactly the view's rule.
fn inactivity(conn: &Connection, request: &Request, users: i64) -> Result<Vec<Bar>, Error> {
    let threshold = request.inactive_days.max(1);
    let mut edges: Vec<u32> = vec![30, 90, threshold, 365];
    edges.sort_unstable();
    edges.dedup();
    let view = body("inactive_users");
    let mut at = Vec::with_capacity(edges.len());
    for d in &edges {
        conn.execute_batch(&format!("SET VARIABLE days = {d};"))
            .map_err(db("setting the views' parameters"))?;
        at.push(one(
            conn,
            &format!(
                "SELECT count(*) FROM ({view}\n) i WHERE true{}",
                scope(&request.groups, "i.id")
            ),
            "counting inactive users",
        )?);
    }
    let never = one(
        conn,
        &format!(
            "SELECT count(*) FROM ({view}\n) i WHERE i.last_login IS NULL{}",
            scope(&request.groups, "i.id")
        ),
        "counting users who never logged in",
    )?;
    // Seen within the smallest edge: never inactive, whatever the threshold.
    let mut bars = vec![Bar {
        label: format!("under {} days", edges[0]),
        count: users - at[0],
        alert: false,
    }];
    for (i, pair) in edges.windows(2).enumerate() {
        bars.push(Bar {
            label: format!("{}–{} days", pair[0], pair[1] - 1),
            count: at[i] - at[i + 1],
            alert: pair[0] >= threshold,
        });
    }
    let last = *edges.last().unwrap_or(&365);
    bars.push(Bar {
        label: format!("{last}+ days"),
        count: at[edges.len() - 1] - never,
        alert: last >= threshold,
    });
    bars.push(Bar {
        label: "never".into(),
        count: never,
        alert: true,
    });
    Ok(bars)
}

fn roster(conn: &Connection, request: &Request, tally: &[Tally]) -> Result<Roster, Error> {
    conn.execute_batch(&format!("SET VARIABLE days = {};", request.days))
        .map_err(db("setting the views' parameters"))?;
    let sql = roster_sql(request);
    let mut titles: Vec<&str> = tally.iter().map(|t| t.certificate.as_str()).collect();
    titles.sort_unstable();
    titles.dedup();
    let mut certificates: Vec<CertificateCounts> = titles
        .into_iter()
        .map(|title| {
            let n = |status: &str| -> i64 {
                tally
                    .iter()
                    .filter(|t| t.certificate == title && t.status == status)
                    .map(|t| t.count)
                    .sum()
            };
            CertificateCounts {
                certificate: title.to_string(),
                valid: n("valid"),
                expiring: n("expiring"),
                expired: n("expired"),
                missing: n("missing"),
                shown: 0,
            }
        })
        .collect();
    // Most at risk first: expired, then expiring (soonest first), missing, valid. One query
    // a certificate, each a top-N (memory for N rows): ranking the whole roster at once
    // (`row_number()` over a partition per certificate) held every row, 2.4 GB and 5.8 s at
    // 1M users, against 0.3 s and 165 MB a certificate.
    let mut rows = Vec::new();
    for c in &certificates {
        rows.extend(query_all(
            conn,
            &format!(
                "SELECT user_ref, name, email, certificate, status, issued_on, expires_on,
                        days_left
                 FROM ({sql}) x
                 WHERE certificate = {title}
                 ORDER BY CASE status WHEN 'expired' THEN 0 WHEN 'expiring' THEN 1
                                      WHEN 'missing' THEN 2 ELSE 3 END,
                          days_left NULLS LAST, user_ref, user_id
                 LIMIT {limit}",
                title = quote(&c.certificate),
                limit = request.roster_limit
            ),
            db("reading the roster"),
            |r| {
                Ok(RosterRow {
                    user_ref: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    certificate: r.get(3)?,
                    status: r.get(4)?,
                    issued_on: r.get(5)?,
                    expires_on: r.get(6)?,
                    days_left: r.get(7)?,
                })
            },
        )?);
    }
    for c in &mut certificates {
        c.shown = rows
            .iter()
            .filter(|r| r.certificate == c.certificate)
            .count() as i64;
    }
    Ok(Roster {
        limit: request.roster_limit,
        certificates,
        rows,
    })
}
