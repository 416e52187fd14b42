//! Tests of the warehouse against real DuckDB files in temporary folders. Time comes from a
//! stepped clock; "source" pages come from small deterministic generators below.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone};
use duckdb::types::Value;

use super::*;
use crate::store::BatchBuilder;
use crate::store::tables::{GROUP_MEMBERS, PORTFOLIO_ITEMS, USERS, portfolio_item_key};

// ------------------------------------------------------------------------------ fixtures

/// A clock that stands still until a test moves it.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> TestClock {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap();
        TestClock(Arc::new(AtomicI64::new(start.timestamp_micros())))
    }
    fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds * 1_000_000, Ordering::SeqCst);
    }
    fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.at()
    }
}

fn open(path: &Path, clock: &TestClock) -> Warehouse {
    Warehouse::open_with_clock(path, Box::new(clock.clone())).unwrap()
}

struct User<'a> {
    id: &'a str,
    email: Option<&'a str>,
}

fn user(id: &str, email: &str) -> (String, Option<String>) {
    (id.to_string(), Some(email.to_string()))
}

fn users_batch(rows: &[(String, Option<String>)]) -> RecordBatch {
    let rows: Vec<User> = rows
        .iter()
        .map(|(id, email)| User {
            id,
            email: email.as_deref(),
        })
        .collect();
    let mut b = BatchBuilder::new(&USERS);
    for u in rows {
        let mut row = b.row();
        row.set("id", u.id).unwrap();
        row.set("ref", format!("ref-{}", u.id)).unwrap();
        row.set("name", format!("Name {}", u.id)).unwrap();
        row.set("email", u.email).unwrap();
        row.set(
            "last_login",
            Utc.with_ymd_and_hms(2025, 12, 24, 18, 30, 15).unwrap()
                + chrono::Duration::microseconds(123_456),
        )
        .unwrap();
        row.set("archived", false).unwrap();
        row.set("language", "nl").unwrap();
        row.set("roles", vec!["USER".to_string(), "TRAINER".to_string()])
            .unwrap();
        row.set("extra_fields", r#"{"team": "blue", "cost_center": 42}"#)
            .unwrap();
        b.push(row).unwrap();
    }
    b.finish().unwrap()
}

#[derive(Clone)]
struct Item {
    user: String,
    title: String,
    progress: f64,
    completion: Option<NaiveDate>,
    user_ref: String,
}

fn item(user: &str, title: &str, progress: f64, completion: Option<NaiveDate>) -> Item {
    Item {
        user: user.into(),
        title: title.into(),
        progress,
        completion,
        user_ref: format!("ref-{user}"),
    }
}

fn key_of(i: &Item) -> String {
    portfolio_item_key(&i.user, "TRAINING", &i.title, None, 1)
}

fn items_batch(items: &[Item]) -> RecordBatch {
    let mut b = BatchBuilder::new(&PORTFOLIO_ITEMS);
    for i in items {
        let mut row = b.row();
        row.set("item_key", key_of(i)).unwrap();
        row.set("user_id", &i.user).unwrap();
        row.set("user_ref", &i.user_ref).unwrap();
        row.set("related_object_type", "TRAINING").unwrap();
        row.set("title", &i.title).unwrap();
        row.set("occurrence", 1).unwrap();
        row.set("progress", i.progress).unwrap();
        row.set("score", None::<f64>).unwrap();
        row.set("completion_date", i.completion).unwrap();
        row.set(
            "end_date",
            i.completion.map(|d| d + chrono::Duration::days(365)),
        )
        .unwrap();
        row.set("time_spent_seconds", 3_600i64).unwrap();
        b.push(row).unwrap();
    }
    b.finish().unwrap()
}

fn member_batch(rows: &[(&str, &str)]) -> RecordBatch {
    let mut b = BatchBuilder::new(&GROUP_MEMBERS);
    for (group, user) in rows {
        let mut row = b.row();
        row.set("group_id", *group).unwrap();
        row.set("user_id", *user).unwrap();
        row.set("role", "participant").unwrap();
        row.set("group_ref", None::<String>).unwrap();
        row.set("user_ref", format!("ref-{user}")).unwrap();
        b.push(row).unwrap();
    }
    b.finish().unwrap()
}

fn complete<'a>(spec: &'a TableSpec) -> ScanEnd<'a> {
    ScanEnd {
        complete: true,
        tables: vec![(spec, Scope::All)],
        next_checkpoint: None,
    }
}

fn scalar<T: duckdb::types::FromSql>(w: &Warehouse, sql: &str) -> T {
    w.connection().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Every row of a query, each as one line of debug-printed values.
fn dump(w: &Warehouse, sql: &str) -> Vec<String> {
    let mut stmt = w.connection().prepare(sql).unwrap();
    stmt.query_map([], |r| {
        let n = r.as_ref().column_count();
        let cells: Vec<String> = (0..n)
            .map(|i| format!("{:?}", r.get::<_, Value>(i).unwrap()))
            .collect();
        Ok(cells.join(" | "))
    })
    .unwrap()
    .collect::<std::result::Result<_, _>>()
    .unwrap()
}

/// What an analyst compares between two warehouses: all data, without times and run ids.
fn content(w: &Warehouse) -> Vec<String> {
    let mut out = Vec::new();
    for spec in tables::ALL {
        out.push(format!("-- {}", spec.table));
        out.extend(dump(
            w,
            &format!(
                "SELECT * EXCLUDE (_first_seen_at, _updated_at, _deleted_at, _run_id{}),
                        _deleted_at IS NULL AS present
                 FROM {} ORDER BY ALL",
                if spec.history.is_some() {
                    ", _version_from, _version_run_id"
                } else {
                    ""
                },
                q(spec.table)
            ),
        ));
    }
    out.push("-- portfolio_item_history".into());
    out.extend(dump(
        w,
        "SELECT * EXCLUDE (valid_from, valid_to, _run_id), valid_to IS NULL AS current
         FROM portfolio_item_history ORDER BY ALL",
    ));
    out
}

/// Set by the parent test to make a child copy of this test binary do one job.
const CHILD_ENV: &str = "PLUVO_STORE_TEST_CHILD";

fn spawn_child(test: &str, job: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, job)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Read the child's stdout until a line contains `marker` (libtest may print the test's name
/// on the same line first); returns the line from the marker on.
fn wait_for_line(out: &mut impl BufRead, marker: &str) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        if let Some(at) = line.find(marker) {
            return Some(line[at..].trim().to_string());
        }
    }
}

mod bulk;
mod first_load;
mod merge;
mod opening;
mod runs;
mod types;
