//! Issue 18: the date and time SQL an analyst types works as written — `now()`,
//! `current_date`, intervals, `date_trunc`, `extract`, casts, literals — in `query`, in the
//! snapshot reader, in the installed views and in push selections, in UTC.
//!
//! Every expected answer is computed here, in Rust, from the instants stored in the warehouse
//! (read as microseconds since the epoch, which needs no date function), and the clock of
//! this test; none comes from DuckDB's own date arithmetic.

use std::path::Path;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use duckdb::{AccessMode, Connection};
use pluvo_warehouse::sim::SimConfig;
use pluvo_warehouse::store::duckdb_config;
use serde_json::Value;

use crate::support::{command, config_file, sim_with, sync};

/// What the warehouse holds, read without any date function.
struct Stored {
    /// `last_login` of every user, UTC.
    logins: Vec<Option<DateTime<Utc>>>,
    /// `archived` of every user, in the same order.
    archived: Vec<bool>,
    /// `end_date` of every portfolio item.
    ends: Vec<Option<NaiveDate>>,
}

fn stored(db: &Path) -> Stored {
    let conn =
        Connection::open_with_flags(db, duckdb_config(AccessMode::ReadOnly).unwrap()).unwrap();
    let mut stmt = conn
        .prepare("SELECT epoch_us(last_login), archived FROM users WHERE _deleted_at IS NULL")
        .unwrap();
    let users: Vec<(Option<i64>, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn
        .prepare(
            "SELECT end_date - DATE '1970-01-01' FROM portfolio_items WHERE _deleted_at IS NULL",
        )
        .unwrap();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let ends = stmt
        .query_map([], |r| r.get::<_, Option<i64>>(0))
        .unwrap()
        .map(|d| d.unwrap().map(|d| epoch + Duration::days(d)))
        .collect();
    Stored {
        logins: users
            .iter()
            .map(|(us, _)| us.map(|us| DateTime::from_timestamp_micros(us).unwrap()))
            .collect(),
        archived: users.iter().map(|(_, a)| *a).collect(),
        ends,
    }
}

/// A simulated organisation synced into a fresh warehouse, with the config and secret the
/// binary needs.
struct Org {
    sim: pluvo_warehouse::sim::Sim,
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    config: std::path::PathBuf,
    secret: String,
}

impl Org {
    /// Generated around the real clock (no anchor), so "180 days ago" splits the users.
    async fn synced(users: usize, seed: u64) -> Org {
        let sim = sim_with(SimConfig {
            users,
            seed,
            ..SimConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.duckdb");
        sync(&sim, &db, false).await;
        let config = config_file(&sim, dir.path());
        let secret = sim.client_secret().to_string();
        Org {
            sim,
            dir,
            db,
            config,
            secret,
        }
    }
}

fn count(items: impl Iterator<Item = bool>) -> String {
    items.filter(|b| *b).count().to_string()
}

/// `(value, count)` lines of a `GROUP BY 1 ORDER BY 1` over the logged-in users, as CSV.
fn grouped<K: Ord + std::fmt::Display>(keys: impl Iterator<Item = K>) -> String {
    let mut counts = std::collections::BTreeMap::<K, usize>::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k},{n}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_18_date_time_sql_works_as_written_in_query_views_snapshot_and_push() {
    let Org {
        sim: _sim,
        dir: _dir,
        db,
        config,
        secret,
    } = Org::synced(400, 18).await;
    let s = stored(&db);
    let now = Utc::now();
    let today = now.date_naive();
    let logins: Vec<DateTime<Utc>> = s.logins.iter().flatten().copied().collect();
    assert!(
        logins.iter().any(|l| *l < now - Duration::days(180))
            && logins.iter().any(|l| *l >= now - Duration::days(180)),
        "the organisation has users on both sides of 180 days"
    );
    let before = |days: i64| count(logins.iter().map(|l| *l < now - Duration::days(days)));
    let literal = "2026-01-01".parse::<NaiveDate>().unwrap();
    let min = logins.iter().min().unwrap();
    let max = logins.iter().max().unwrap();
    let monday = |d: NaiveDate| d - Duration::days(d.weekday().num_days_from_monday() as i64);

    // (SQL as an analyst types it, the answer as `query --format csv` prints it, header off)
    let cases: Vec<(String, String)> =
        vec![
        // The issue's table, as written.
        (
            "select count(*) from users where last_login < now() - interval 180 day".into(),
            before(180),
        ),
        ("select current_date".into(), today.to_string()),
        (
            "select count(*) from portfolio_items where end_date < today() + 90".into(),
            count(s.ends.iter().map(|e| e.is_some_and(|e| e < today + Duration::days(90)))),
        ),
        (
            "select date_trunc('month', last_login) as m, count(*) from users \
             where last_login is not null group by 1 order by 1"
                .into(),
            grouped(logins.iter().map(|l| {
                format!("{:04}-{:02}-01 00:00:00", l.year(), l.month())
            })),
        ),
        (
            "select extract(year from last_login), count(*) from users \
             where last_login is not null group by 1 order by 1"
                .into(),
            grouped(logins.iter().map(|l| l.year())),
        ),
        (
            "select last_login::date, count(*) from users where last_login is not null \
             group by 1 order by 1"
                .into(),
            grouped(logins.iter().map(|l| l.date_naive())),
        ),
        (
            "select count(*) from users where last_login < now()::timestamp - interval 180 day"
                .into(),
            before(180),
        ),
        // The clock: UTC, typed for arithmetic, the same in every spelling.
        ("select typeof(now())".into(), "TIMESTAMP".into()),
        ("select typeof(current_timestamp)".into(), "TIMESTAMP".into()),
        ("select typeof(current_date)".into(), "DATE".into()),
        ("select today() = current_date".into(), "true".into()),
        ("select now()::date = current_date".into(), "true".into()),
        (
            format!(
                "select abs(date_diff('second', now(), TIMESTAMP '{}')) < 120",
                now.format("%Y-%m-%d %H:%M:%S")
            ),
            "true".into(),
        ),
        (
            format!(
                "select abs(date_diff('second', current_timestamp, TIMESTAMP '{}')) < 120",
                now.format("%Y-%m-%d %H:%M:%S")
            ),
            "true".into(),
        ),
        (
            format!(
                "select abs(date_diff('second', get_current_timestamp(), TIMESTAMP '{}')) < 120",
                now.format("%Y-%m-%d %H:%M:%S")
            ),
            "true".into(),
        ),
        (
            format!(
                "select abs(epoch(transaction_timestamp()) - {}) < 120",
                now.timestamp()
            ),
            "true".into(),
        ),
        // Intervals and day arithmetic.
        (
            "select count(*) from users where last_login > now() - interval '1 year'".into(),
            count(logins.iter().map(|l| *l > now - Duration::days(365))),
        ),
        (
            "select count(*) from users where last_login < now() - to_days(400)".into(),
            before(400),
        ),
        (
            "select count(*) from users where last_login < now() - interval 30 day".into(),
            before(30),
        ),
        (
            "select count(*) from users where last_login between now() - interval 90 day and now()"
                .into(),
            count(logins.iter().map(|l| *l >= now - Duration::days(90) && *l <= now)),
        ),
        (
            "select count(*) from users where epoch(now()) - epoch(last_login) > 86400 * 180"
                .into(),
            count(logins.iter().map(|l| (now - *l).num_seconds() > 86_400 * 180)),
        ),
        (
            "select count(*) from portfolio_items \
             where end_date between current_date and current_date + interval 90 day"
                .into(),
            count(s.ends.iter().map(|e| {
                e.is_some_and(|e| e >= today && e <= today + Duration::days(90))
            })),
        ),
        (
            "select count(*) from portfolio_items where end_date < current_date".into(),
            count(s.ends.iter().map(|e| e.is_some_and(|e| e < today))),
        ),
        ("select current_date - DATE '2026-01-01'".into(), {
            (today - literal).num_days().to_string()
        }),
        // date_diff / datediff, in whole days between the dates.
        (
            "select date_diff('day', max(last_login), now()) from users".into(),
            (today - max.date_naive()).num_days().to_string(),
        ),
        (
            "select datediff('day', min(last_login), current_date) from users".into(),
            (today - min.date_naive()).num_days().to_string(),
        ),
        (
            "select date_diff('month', DATE '2026-01-31', DATE '2026-03-01')".into(),
            "2".into(),
        ),
        // date_trunc, extract, date_part, strftime: windows by month and week.
        (
            "select date_trunc('week', last_login)::date, count(*) from users \
             where last_login is not null group by 1 order by 1"
                .into(),
            grouped(logins.iter().map(|l| monday(l.date_naive()))),
        ),
        (
            "select strftime(last_login, '%Y-%m') as month, count(*) from users \
             where last_login is not null group by 1 order by 1"
                .into(),
            grouped(logins.iter().map(|l| l.format("%Y-%m").to_string())),
        ),
        (
            "select date_part('year', min(last_login)) from users".into(),
            min.year().to_string(),
        ),
        (
            "select extract(month from max(last_login)) from users".into(),
            max.month().to_string(),
        ),
        (
            "select year(min(last_login)), month(min(last_login)), day(min(last_login)) from users"
                .into(),
            format!("{},{},{}", min.year(), min.month(), min.day()),
        ),
        ("select extract(dow from DATE '2026-12-01')".into(), "2".into()),
        ("select dayname(DATE '2026-12-01')".into(), "Tuesday".into()),
        (
            // DuckDB truncates a DATE to a TIMESTAMP (stock DuckDB alike).
            "select date_trunc('year', current_date)".into(),
            format!("{}-01-01 00:00:00", today.year()),
        ),
        // Casts and comparisons with literals.
        (
            "select count(*) from users where last_login >= '2026-01-01'".into(),
            count(logins.iter().map(|l| l.date_naive() >= literal)),
        ),
        (
            "select count(*) from users where last_login < TIMESTAMP '2026-06-01 12:00:00'"
                .into(),
            count(logins.iter().map(|l| {
                l.naive_utc()
                    < "2026-06-01T12:00:00"
                        .parse::<chrono::NaiveDateTime>()
                        .unwrap()
            })),
        ),
        (
            "select count(*) from users where last_login::date < current_date - 180".into(),
            count(logins.iter().map(|l| l.date_naive() < today - Duration::days(180))),
        ),
        (
            "select count(*) from users where cast(last_login as date) = current_date".into(),
            count(logins.iter().map(|l| l.date_naive() == today)),
        ),
        // Constructors and calendar helpers.
        ("select make_date(2026, 2, 28) + 1".into(), "2026-03-01".into()),
        ("select last_day(DATE '2026-02-10')".into(), "2026-02-28".into()),
        (
            "select date_add(DATE '2026-01-31', interval 1 month)".into(),
            "2026-02-28 00:00:00".into(),
        ),
        (
            "select age(TIMESTAMP '2026-03-01 00:00:00', TIMESTAMP '2025-01-01 00:00:00')".into(),
            "1 year 2 months".into(),
        ),
        (
            "select age(now(), min(last_login)) >= interval 0 day from users".into(),
            "true".into(),
        ),
        // Local time for reports (UTC+1 in winter, UTC+2 in summer).
        (
            "select to_local(TIMESTAMP '2026-07-01 10:00:00', 'Europe/Amsterdam')".into(),
            "2026-07-01 12:00:00".into(),
        ),
        (
            "select to_local(TIMESTAMP '2026-12-01 10:00:00', 'Europe/Amsterdam')".into(),
            "2026-12-01 11:00:00".into(),
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let query = |sql: &str, extra: &[&str]| {
        let mut args = vec!["query", "--format", "csv"];
        args.extend_from_slice(extra);
        args.push(sql);
        let out = command(&config, &db, &secret, &args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let mut failures = Vec::new();
    for (sql, expected) in &cases {
        let (code, stdout, stderr) = query(sql, &[]);
        // CSV: drop the header line; DuckDB quotes nothing here.
        let answer: Vec<&str> = stdout.lines().skip(1).collect();
        if code != Some(0) || answer.join("\n") != *expected {
            failures.push(format!(
                "{sql}\n  expected {expected:?}\n  got {:?} (exit {code:?}) {stderr}",
                answer.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} date/time expressions failed in `query`:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The same SQL through the published snapshot (Parquet) gives the same answers.
    for (sql, expected) in cases.iter().take(8) {
        let (code, stdout, stderr) = query(sql, &["--snapshot"]);
        let answer: Vec<&str> = stdout.lines().skip(1).collect();
        assert_eq!(
            (code, answer.join("\n")),
            (Some(0), expected.clone()),
            "{sql} in the snapshot: {stderr}"
        );
    }

    // The installed view, with its default parameters: inactive for 180 days, not archived.
    let inactive = count(
        s.logins
            .iter()
            .zip(&s.archived)
            .map(|(l, archived)| !archived && l.is_none_or(|l| l < now - Duration::days(180))),
    );
    let (_, stdout, stderr) = query("select count(*) from inactive_users", &[]);
    assert_eq!(stdout.lines().nth(1), Some(inactive.as_str()), "{stderr}");

    // The examples of this feature in docs/query.md run as shown (against this warehouse).
    let page = include_str!("../docs/query.md");
    let section = page
        .split("## Times and time zones")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/query.md has the section");
    let shown: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("pluvo-warehouse "))
        .collect();
    assert!(shown.len() >= 4, "{shown:?}");
    for example in shown {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "\"$BIN\" --quiet --config \"$CONFIG\" --db \"$DB\" {example}"
            ))
            .env("BIN", env!("CARGO_BIN_EXE_pluvo-warehouse"))
            .env("CONFIG", &config)
            .env("DB", &db)
            .env("PLUVO_CLIENT_SECRET", &secret)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().count() >= 2,
            "docs/query.md example `{example}`: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Push selections run the same SQL: a dry run selects exactly the expected users.
    let selections = [
        ("last_login < now() - interval 180 day", before(180)),
        ("last_login < current_date - 180", {
            count(logins.iter().map(|l| {
                l.naive_utc() < (today - Duration::days(180)).and_hms_opt(0, 0, 0).unwrap()
            }))
        }),
        ("last_login >= '2026-01-01'", {
            count(logins.iter().map(|l| l.date_naive() >= literal))
        }),
        (
            "date_trunc('month', last_login) = date_trunc('month', now())",
            {
                count(
                    logins
                        .iter()
                        .map(|l| l.year() == now.year() && l.month() == now.month()),
                )
            },
        ),
        (
            "extract(year from last_login) = extract(year from current_date)",
            { count(logins.iter().map(|l| l.year() == today.year())) },
        ),
    ];
    for (predicate, expected) in selections {
        let sql = format!("select ref from users where {predicate}");
        let out = command(
            &config,
            &db,
            &secret,
            &["push", "archive-users", "--query", &sql, "--format", "json"],
        )
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let selected = if expected == "0" {
            // An empty selection stores no plan and says so.
            assert!(stderr.contains("nothing to do"), "{predicate}: {stderr}");
            "0".to_string()
        } else {
            let plan: Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("{predicate}: {e}: {stdout} {stderr}"));
            plan["selected"].to_string()
        };
        assert_eq!(selected, expected, "push selection `{predicate}`: {stderr}");
    }
}

/// Answers of `queries` from stock DuckDB 2.0 (with ICU) in Python, reading the warehouse
/// file and, separately, the published Parquet snapshot, once per `TimeZone` setting.
/// Prints JSON `{"<source> <zone>": ["row,row\nrow", ...]}`.
const STOCK_READER: &str = r#"
import json, sys, duckdb
db, snapshot, zones, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
def text(v):
    return "" if v is None else str(v)
out = {}
for source in ["file", "parquet"]:
    for zone in zones:
        con = duckdb.connect(db, read_only=True) if source == "file" else duckdb.connect()
        if source == "parquet":
            con.execute(f"CREATE VIEW users AS SELECT * FROM read_parquet('{snapshot}/users/*.parquet')")
        con.execute(f"SET TimeZone = '{zone}'")
        answers = []
        for q in queries:
            if source == "parquet" and "inactive_users" in q:
                continue
            rows = con.execute(q).fetchall()
            answers.append("\n".join(",".join(text(v) for v in row) for row in rows))
        out[f"{source} {zone}"] = answers
        con.close()
print(json.dumps(out))
"#;

/// The file and the Parquet snapshot answer the same in stock DuckDB, whatever the reader's
/// time zone, as in the tool: stored times are UTC wall-clock TIMESTAMPs, not TIMESTAMPTZ.
#[tokio::test(flavor = "multi_thread")]
async fn issue_18_stock_duckdb_gives_the_same_answers_in_every_time_zone() {
    let Org {
        sim,
        dir: _dir,
        db,
        config,
        secret,
    } = Org::synced(300, 19).await;
    sim.stop().await;

    // Answers that depend only on the stored times, plus "now" in the portable spelling the
    // views use (`make_timestamp(epoch_us(now()))` is UTC in every DuckDB).
    let queries = [
        "select date_trunc('month', last_login), count(*) from users \
         where last_login is not null group by 1 order by 1",
        "select last_login::date, count(*) from users where last_login is not null \
         group by 1 order by 1",
        "select extract(hour from last_login), count(*) from users \
         where last_login is not null group by 1 order by 1",
        "select count(*) from users where last_login >= '2026-06-01'",
        "select strftime(min(last_login), '%Y-%m-%d %H:%M:%S') from users",
        "select count(*) from users \
         where last_login < make_timestamp(epoch_us(now())) - interval 180 day",
        "select count(*) from inactive_users",
    ];
    let mut ours = Vec::new();
    for q in queries {
        let out = command(&config, &db, &secret, &["query", "--format", "csv", q])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        ours.push(text.lines().skip(1).collect::<Vec<_>>().join("\n"));
    }
    let snapshot = db.with_file_name("w-export").join("current");
    let zones = ["UTC", "America/New_York", "Asia/Tokyo", "Europe/Amsterdam"];
    let out = crate::support::python_with(&["duckdb==2.0.0"])
        .arg("-c")
        .arg(STOCK_READER)
        .arg(&db)
        .arg(&snapshot)
        .arg(serde_json::to_string(&zones).unwrap())
        .arg(serde_json::to_string(&queries).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stock DuckDB: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), 2 * zones.len());
    for (reader, answers) in &theirs {
        let expected = if reader.starts_with("parquet") {
            &ours[..ours.len() - 1] // the view lives in the file only
        } else {
            &ours[..]
        };
        assert_eq!(answers, expected, "stock DuckDB reading the {reader}");
    }
}
