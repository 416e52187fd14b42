//! Publishing: the Parquet export reads back equal to the tables (types included), a filtered
//! read touches one partition, a killed export leaves the previous one intact, every analyst
//! view agrees with an independent computation from the simulator's data, `query` formats
//! parse back, and readers keep working while a slow sync holds the warehouse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{NaiveDate, TimeZone, Utc};
use duckdb::{AccessMode, Connection};
use pluvo_warehouse::export::{self, Manifest, TABLES};
use pluvo_warehouse::sim::{Dataset, Faults, Kind};
use pluvo_warehouse::store::duckdb_config;
use serde_json::Value;

use crate::support::{cli, config_file, rows, sim, sync};

/// The simulator's "now" in `support::sim` and the `as_of` the view tests use.
const AS_OF: &str = "2026-06-01";

fn as_of() -> NaiveDate {
    AS_OF.parse().unwrap()
}

/// The export folder `sync` publishes to for `db` (`<stem>-export` beside it).
fn export_dir(db: &Path) -> PathBuf {
    let stem = db.file_stem().unwrap().to_string_lossy();
    db.with_file_name(format!("{stem}-export"))
}

fn read_only(db: &Path) -> Connection {
    Connection::open_with_flags(db, duckdb_config(AccessMode::ReadOnly).unwrap()).unwrap()
}

/// Every `.parquet` file under `dir`, sorted.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Arrow type without list item names (DuckDB says `l`, Parquet readers `element`/`item`).
fn norm(t: &DataType) -> String {
    match t {
        DataType::List(f) | DataType::LargeList(f) => format!("List({})", norm(f.data_type())),
        other => format!("{other:?}"),
    }
}

fn cells(batch: &RecordBatch, column: usize) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let f = ArrayFormatter::try_new(batch.column(column).as_ref(), &options).unwrap();
    (0..batch.num_rows())
        .map(|i| f.value(i).to_string())
        .collect()
}

/// `SELECT *` of `table` in the types the export writes for engines (issue 21): `_hash` as
/// the signed `BIGINT` with the same bits, JSON as text.
fn engine_select(db: &Path, table: &str) -> String {
    let columns = rows(
        db,
        &format!(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns
             WHERE table_name = '{table}' ORDER BY ordinal_position"
        ),
    );
    let replace: Vec<String> = columns
        .iter()
        .filter_map(|c| match c.split_once(' ').unwrap() {
            ("_hash", "UBIGINT") => Some(
                "CAST(CASE WHEN _hash >= 9223372036854775808 THEN _hash::HUGEINT - 18446744073709551616 \
                 ELSE _hash::HUGEINT END AS BIGINT) AS _hash"
                    .to_string(),
            ),
            (name, "JSON") => Some(format!("{name}::VARCHAR AS {name}")),
            _ => None,
        })
        .collect();
    // Columns the export leaves out (`export::UNEXPORTED_COLUMNS`).
    let exclude: Vec<&str> = pluvo_warehouse::export::UNEXPORTED_COLUMNS
        .iter()
        .filter(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .collect();
    let exclude = if exclude.is_empty() {
        String::new()
    } else {
        format!(" EXCLUDE ({})", exclude.join(", "))
    };
    if replace.is_empty() {
        format!("SELECT *{exclude} FROM \"{table}\"")
    } else {
        format!(
            "SELECT *{exclude} REPLACE ({}) FROM \"{table}\"",
            replace.join(", ")
        )
    }
}

/// The table as DuckDB hands it to Arrow, in the types the export writes
/// ([`engine_select`]): (column name → normalised type, sorted rows).
fn table_via_duckdb(db: &Path, table: &str) -> (Vec<(String, String)>, Vec<Vec<String>>) {
    let conn = read_only(db);
    let mut stmt = conn.prepare(&engine_select(db, table)).unwrap();
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).unwrap().collect();
    let schema = stmt.schema();
    let types = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), norm(f.data_type())))
        .collect();
    let mut rows = Vec::new();
    for batch in &batches {
        let columns: Vec<Vec<String>> = (0..batch.num_columns()).map(|c| cells(batch, c)).collect();
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    rows.sort();
    (types, rows)
}

/// The exported table read with the `parquet` crate (not DuckDB): (types of the columns in
/// the files, sorted rows in `columns` order; hive partition values taken from the folders).
fn table_via_parquet(
    dir: &Path,
    columns: &[String],
) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    let mut types = BTreeMap::new();
    let mut rows = Vec::new();
    for file in parquet_files(dir) {
        let partition: BTreeMap<String, String> = file
            .strip_prefix(dir)
            .unwrap()
            .components()
            .filter_map(|c| {
                let (k, v) = c.as_os_str().to_str()?.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (i, field) in schema.fields().iter().enumerate() {
                types.insert(field.name().clone(), norm(field.data_type()));
                by_name.insert(field.name().clone(), cells(&batch, i));
            }
            if let Some(year) = partition.get("completion_year") {
                // The folder says the year: every row in it has a completion date of that year.
                for date in &by_name["completion_date"] {
                    let expected = if date == "∅" {
                        "__HIVE_DEFAULT_PARTITION__"
                    } else {
                        &date[..4]
                    };
                    assert_eq!(year, expected, "{}", file.display());
                }
            }
            for r in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|c| match by_name.get(c) {
                            Some(values) => values[r].clone(),
                            None => partition[c].clone(),
                        })
                        .collect(),
                );
            }
        }
    }
    rows.sort();
    (types, rows)
}

// Acceptance: the Parquet export read back (parquet crate and DuckDB read_parquet) equals the
// tables, types included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_back_equal_to_the_tables_with_their_types() {
    let sim = sim(400).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await; // publishes the snapshot at its end
    let current = export::current_snapshot(&export_dir(&db)).expect("sync published");
    let manifest = Manifest::read(&current).unwrap();
    assert_eq!(manifest.run_id, Some(1));
    assert_eq!(
        manifest
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        TABLES.iter().map(|t| t.name).collect::<Vec<_>>()
    );

    for table in TABLES {
        let entry = manifest.table(table.name).unwrap();
        let (types, expected) = table_via_duckdb(&db, table.name);
        assert!(!expected.is_empty(), "`{}` has rows", table.name);
        assert_eq!(
            entry.rows,
            expected.len() as u64,
            "manifest rows of `{}`",
            table.name
        );

        // 1. The parquet crate's Arrow reader, independent of DuckDB.
        let columns: Vec<String> = types.iter().map(|(n, _)| n.clone()).collect();
        let (file_types, got) = table_via_parquet(&current.join(table.name), &columns);
        assert_eq!(
            got, expected,
            "rows of `{}` via the parquet crate",
            table.name
        );
        for (name, t) in &types {
            if table.partition_by.contains(&name.as_str()) {
                assert!(
                    !file_types.contains_key(name),
                    "partition column in the file"
                );
            } else {
                assert_eq!(
                    file_types.get(name),
                    Some(t),
                    "type of `{}.{name}`",
                    table.name
                );
            }
        }

        // 2. DuckDB's read_parquet over the snapshot: same rows, same SQL types.
        let list = columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let read = format!(
            "SELECT {list} FROM read_parquet('{}/{}')",
            current.display(),
            entry.glob
        );
        let engine = engine_select(&db, table.name);
        assert_eq!(
            rows(&db, &format!("{read} ORDER BY ALL")),
            rows(&db, &format!("SELECT {list} FROM ({engine}) ORDER BY ALL")),
            "`{}` via read_parquet",
            table.name
        );
        assert_eq!(
            rows(
                &db,
                &format!("SELECT column_name, column_type FROM (DESCRIBE {read})")
            ),
            rows(
                &db,
                &format!(
                    "SELECT column_name, column_type FROM (DESCRIBE SELECT {list} FROM ({engine}))"
                )
            ),
            "SQL types of `{}`",
            table.name
        );
    }
    // --tables: one table re-exported, the others carried over as hard links (same files).
    let report = export::export(
        &read_only(&db),
        &export::Options {
            tables: vec!["users".into()],
            ..export::Options::new(export_dir(&db))
        },
        Utc::now(),
    )
    .unwrap();
    assert_eq!(report.written, ["users"]);
    let next = export::current_snapshot(&export_dir(&db)).unwrap();
    assert_ne!(next, current);
    for table in TABLES {
        let (old, new) = (
            parquet_files(&current.join(table.name)),
            parquet_files(&next.join(table.name)),
        );
        assert_eq!(old.len(), new.len(), "`{}` files", table.name);
        for (a, b) in old.iter().zip(&new) {
            use std::os::unix::fs::MetadataExt;
            let same = std::fs::metadata(a).unwrap().ino() == std::fs::metadata(b).unwrap().ino();
            assert_eq!(same, table.name != "users", "{}", b.display());
        }
    }
    let rows_of = |m: &Manifest| {
        m.tables
            .iter()
            .map(|t| (t.name.clone(), t.rows))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rows_of(&assert_complete(&export_dir(&db))),
        rows_of(&manifest)
    );

    // Readers see real types, not strings.
    let (types, _) = table_via_duckdb(&db, "users");
    let types: BTreeMap<_, _> = types.into_iter().collect();
    assert_eq!(types["last_login"], r#"Timestamp(Microsecond, None)"#);
    assert_eq!(types["roles"], "List(Utf8)");
    let (types, _) = table_via_duckdb(&db, "portfolio_items");
    let types: BTreeMap<_, _> = types.into_iter().collect();
    assert_eq!(types["completion_date"], "Date32");
    assert_eq!(types["progress"], "Float64");
}

// Acceptance: a partitioned table prunes. Every file outside the wanted partition is replaced
// by garbage: a filtered read that opened any of them would fail; it answers correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_read_touches_one_partition() {
    let sim = sim(300).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let current = export::current_snapshot(&export_dir(&db)).unwrap();
    let items = current.join("portfolio_items");
    // DuckDB reads the footer of the first file of a glob to learn the schema: filter on the
    // partition that sorts first, so every other file can be garbage.
    let files = parquet_files(&items);
    let wanted = files[0].parent().unwrap().to_path_buf();
    let year: i32 = wanted.file_name().unwrap().to_str().unwrap()["completion_year=".len()..]
        .parse()
        .expect("the first partition has a year");
    assert!(
        wanted.starts_with(items.join("related_object_type=CERTIFICATE")),
        "{files:?}"
    );
    let (inside, outside): (Vec<_>, Vec<_>) = files.iter().partition(|f| f.starts_with(&wanted));
    assert_eq!(inside.len(), 1, "one file in the partition: {files:?}");
    assert!(outside.len() >= 4, "several partitions: {files:?}");
    let expected = rows(
        &db,
        &format!(
            "SELECT count(*), sum(progress) FROM portfolio_items
             WHERE related_object_type = 'CERTIFICATE' AND year(completion_date) = {year}"
        ),
    );
    assert_ne!(expected, ["0 | ∅"]);
    for file in &outside {
        std::fs::write(file, b"not parquet").unwrap();
    }
    let glob = format!("{}/**/*.parquet", items.display());
    assert_eq!(
        rows(
            &db,
            &format!(
                "SELECT count(*), sum(progress) FROM read_parquet('{glob}', hive_partitioning = true)
                 WHERE related_object_type = 'CERTIFICATE' AND completion_year = {year}"
            )
        ),
        expected
    );
    let conn = read_only(&db);
    let unfiltered = conn.query_row(
        &format!("SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"),
        [],
        |r| r.get::<_, i64>(0),
    );
    assert!(
        unfiltered.is_err(),
        "an unfiltered read opens the other files"
    );
}

/// The snapshot `current` points to is complete: every table's files hold its manifest rows.
fn assert_complete(export: &Path) -> Manifest {
    let current = export::current_snapshot(export).expect("a published snapshot");
    let manifest = Manifest::read(&current).unwrap();
    let conn = Connection::open_in_memory().unwrap();
    for t in &manifest.tables {
        let n: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM read_parquet('{}/{}')",
                    current.display(),
                    t.glob
                ),
                [],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("`{}` unreadable: {e}", t.name));
        assert_eq!(n as u64, t.rows, "`{}` rows", t.name);
    }
    manifest
}

// Acceptance: an export killed midway (SIGKILL) leaves the previous export readable and
// complete; the next export cleans up and publishes; stale partitions disappear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_export_leaves_the_previous_one_readable_and_complete() {
    let sim = sim(2000).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let out = export_dir(&db);
    let before = assert_complete(&out);
    let config = config_file(&sim, dir.path());
    let snapshots = out.join(export::SNAPSHOTS);

    let mut killed_midway = 0;
    for _ in 0..10 {
        let mut child = cli(&config, &db, sim.client_secret())
            .arg("export")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill as soon as the export has written its first file into its temporary folder.
        let tmp = loop {
            let tmp = std::fs::read_dir(&snapshots)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(".tmp-")
                });
            if let Some(tmp) = tmp.filter(|t| !parquet_files(t).is_empty()) {
                break Some(tmp);
            }
            if child.try_wait().unwrap().is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        child.kill().ok();
        child.wait().unwrap();
        if tmp.is_some_and(|t| t.exists()) {
            killed_midway += 1;
            // The previous export is still the published one, readable and complete.
            assert_eq!(assert_complete(&out), before);
            if killed_midway == 2 {
                break;
            }
        }
    }
    assert!(killed_midway >= 1, "the export was killed midway");

    // Stale partitions: every completed training now has a 2020 completion (trainings keep
    // their key when their completion date changes, so the rows move); re-export.
    sim.edit(|d: &mut Dataset| {
        for user in &mut d.users {
            for item in user
                .items
                .iter_mut()
                .filter(|i| i.kind == Kind::Training && i.completion_date.is_some())
            {
                item.completion_date = Some(NaiveDate::from_ymd_opt(2020, 3, 1).unwrap());
            }
        }
    });
    sync(&sim, &db, false).await;
    let after = assert_complete(&out);
    assert_eq!(after.run_id, Some(2));
    let leftovers: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.iter().all(|n| !n.starts_with(".tmp-")),
        "interrupted exports are cleaned up: {leftovers:?}"
    );
    assert!(
        leftovers.contains(&before.snapshot) || leftovers.len() == 2,
        "{leftovers:?}"
    );
    let mut training_years: Vec<String> = std::fs::read_dir(
        export::current_snapshot(&out)
            .unwrap()
            .join("portfolio_items/related_object_type=TRAINING"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
    training_years.sort();
    assert_eq!(
        training_years,
        [
            "completion_year=2020",
            "completion_year=__HIVE_DEFAULT_PARTITION__"
        ]
    );
}

// ------------------------------------------------------------------------ analyst views

/// Rows of a view after `SET VARIABLE`s, each row as strings.
fn view_rows(db: &Path, vars: &str, sql: &str) -> Vec<Vec<String>> {
    let conn = read_only(db);
    conn.execute_batch(vars).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).unwrap().collect();
    let mut out = Vec::new();
    for batch in &batches {
        let columns: Vec<Vec<String>> = (0..batch.num_columns()).map(|c| cells(batch, c)).collect();
        for r in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    out
}

fn view_set(db: &Path, vars: &str, sql: &str) -> BTreeSet<Vec<String>> {
    view_rows(db, vars, sql).into_iter().collect()
}

/// The average rounded to one decimal as DuckDB's `round(avg(x), 1)` prints it; `∅` for none.
fn avg1(values: &[f64]) -> String {
    if values.is_empty() {
        return "∅".into();
    }
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    format!("{:.1}", (avg * 10.0).round() / 10.0)
}

fn live(d: &Dataset) -> impl Iterator<Item = &pluvo_warehouse::sim::data::User> {
    d.users.iter().filter(|u| !u.deleted)
}

fn completed(i: &pluvo_warehouse::sim::data::Item) -> bool {
    i.progress >= 100.0 || i.completion_date.is_some()
}

// Acceptance: each sql/views file checked against an independent computation from the
// simulator's generated data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_agrees_with_the_simulators_data() {
    let sim = sim(600).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let today = as_of();
    let as_of_ts = Utc.from_utc_datetime(&today.and_hms_opt(0, 0, 0).unwrap());
    let vars = format!("SET VARIABLE as_of = DATE '{AS_OF}';");
    let mut checked = BTreeSet::new();

    // inactive_users: no login for `days` days (or never), not archived.
    for days in [30, 180, 365] {
        let got: BTreeSet<String> = view_rows(
            &db,
            &format!("{vars} SET VARIABLE days = {days};"),
            "SELECT ref FROM inactive_users",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
        let expected: BTreeSet<String> = sim.with_data(|d| {
            live(d)
                .filter(|u| !u.archived)
                .filter(|u| {
                    u.last_login
                        .is_none_or(|t| t < as_of_ts - chrono::Duration::days(days))
                })
                .map(|u| u.ref_.clone().unwrap())
                .collect()
        });
        assert!(!expected.is_empty());
        assert_eq!(got, expected, "inactive_users, days = {days}");
    }
    checked.insert("inactive_users");

    // completion_by_group: participants' training items, completed, average score.
    let got = view_set(
        &db,
        "",
        "SELECT group_ref, members, training_items, completed, avg_score FROM completion_by_group",
    );
    let expected: BTreeSet<Vec<String>> = sim.with_data(|d| {
        d.groups
            .iter()
            .enumerate()
            .filter_map(|(g, group)| {
                let members: Vec<_> = live(d)
                    .filter(|u| {
                        u.memberships
                            .iter()
                            .any(|m| m.group == g as u32 && !m.manager)
                    })
                    .collect();
                if members.is_empty() {
                    return None;
                }
                let items: Vec<_> = members
                    .iter()
                    .flat_map(|u| u.items.iter().filter(|i| i.kind == Kind::Training))
                    .collect();
                let scores: Vec<f64> = items.iter().filter_map(|i| i.score).collect();
                Some(vec![
                    group.ref_.clone(),
                    members.len().to_string(),
                    items.len().to_string(),
                    items.iter().filter(|i| completed(i)).count().to_string(),
                    avg1(&scores),
                ])
            })
            .collect()
    });
    assert_eq!(got, expected, "completion_by_group");
    checked.insert("completion_by_group");

    // completion_by_training: per training title.
    let got = view_set(
        &db,
        "",
        "SELECT training_ref, training, items, completed, avg_score FROM completion_by_training",
    );
    let expected: BTreeSet<Vec<String>> = sim.with_data(|d| {
        d.trainings
            .iter()
            .enumerate()
            .filter_map(|(t, training)| {
                let items: Vec<_> = live(d)
                    .flat_map(|u| u.items.iter())
                    .filter(|i| i.training == Some(t as u32))
                    .collect();
                let scores: Vec<f64> = items.iter().filter_map(|i| i.score).collect();
                (!items.is_empty()).then(|| {
                    vec![
                        training.ref_.clone(),
                        training.title.to_string(),
                        items.len().to_string(),
                        items.iter().filter(|i| completed(i)).count().to_string(),
                        avg1(&scores),
                    ]
                })
            })
            .collect()
    });
    assert_eq!(got, expected, "completion_by_training");
    checked.insert("completion_by_training");

    // overdue_trainings: open items whose training ended before as_of (stalled_days so large
    // that nothing counts as stalled), then also stalled ones (stalled_days 0, as_of tomorrow:
    // every started open item's current version is older than that).
    let open_items = |d: &Dataset, due_before: NaiveDate, stalled: bool| -> BTreeSet<Vec<String>> {
        live(d)
            .filter(|u| !u.archived)
            .flat_map(|u| u.items.iter().map(move |i| (u, i)))
            .filter(|(_, i)| i.kind == Kind::Training && !completed(i))
            .filter_map(|(u, i)| {
                let training = &d.trainings[i.training.unwrap() as usize];
                let due = training.end_date.map(|t| t.date_naive());
                let status = if due.is_some_and(|due| due < due_before) {
                    "overdue"
                } else if stalled && i.progress > 0.0 {
                    "stalled"
                } else {
                    return None;
                };
                Some(vec![
                    u.ref_.clone().unwrap(),
                    training.ref_.clone(),
                    status.to_string(),
                ])
            })
            .collect()
    };
    let sql = "SELECT user_ref, training_ref, status FROM overdue_trainings";
    let got = view_set(
        &db,
        &format!("{vars} SET VARIABLE stalled_days = 100000;"),
        sql,
    );
    let expected = sim.with_data(|d| open_items(d, today, false));
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "overdue_trainings (overdue only)");
    let tomorrow = Utc::now().date_naive() + chrono::Duration::days(1);
    let got = view_set(
        &db,
        &format!("SET VARIABLE as_of = DATE '{tomorrow}'; SET VARIABLE stalled_days = 0;"),
        sql,
    );
    let expected = sim.with_data(|d| open_items(d, tomorrow, true));
    assert!(expected.iter().any(|r| r[2] == "stalled"));
    assert_eq!(got, expected, "overdue_trainings (overdue and stalled)");
    checked.insert("overdue_trainings");

    // certificates_per_period: issued certificates per month (and per year) and title.
    for (period, key) in [("month", "%Y-%m-01"), ("year", "%Y-01-01")] {
        let got = view_set(
            &db,
            &format!("SET VARIABLE period = '{period}';"),
            "SELECT period_start, certificate, achieved FROM certificates_per_period",
        );
        let expected: BTreeSet<Vec<String>> = sim.with_data(|d| {
            let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
            for i in live(d).flat_map(|u| u.items.iter()) {
                if let (Kind::Certificate, Some(date)) = (i.kind, i.completion_date) {
                    *counts
                        .entry((date.format(key).to_string(), i.title.to_string()))
                        .or_default() += 1;
                }
            }
            counts
                .into_iter()
                .map(|((p, t), n)| vec![p, t, n.to_string()])
                .collect()
        });
        assert_eq!(got, expected, "certificates_per_period by {period}");
    }
    checked.insert("certificates_per_period");

    // expiring_certificates: end date within 90 days of as_of, users not archived.
    let got = view_set(
        &db,
        &format!("{vars} SET VARIABLE days = 90;"),
        "SELECT user_ref, certificate, expires_on FROM expiring_certificates",
    );
    let expected: BTreeSet<Vec<String>> = sim.with_data(|d| {
        live(d)
            .filter(|u| !u.archived)
            .flat_map(|u| u.items.iter().map(move |i| (u, i)))
            .filter(|(_, i)| i.kind == Kind::Certificate)
            .filter(|(_, i)| {
                i.end_date
                    .is_some_and(|e| e >= today && e <= today + chrono::Duration::days(90))
            })
            .map(|(u, i)| {
                vec![
                    u.ref_.clone().unwrap(),
                    i.title.to_string(),
                    i.end_date.unwrap().to_string(),
                ]
            })
            .collect()
    });
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "expiring_certificates");
    checked.insert("expiring_certificates");

    // compliance_roster: users not archived × required certificates, status from the issue
    // with the latest expiry.
    // Half a year after the simulator's "now", so that some certificates have expired.
    let later = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let required = ["BHV", "VCA Basic"];
    let got: Vec<Vec<String>> = view_rows(
        &db,
        &format!(
            "SET VARIABLE as_of = DATE '{later}'; SET VARIABLE days = 60; SET VARIABLE certificates = ['BHV', 'VCA Basic'];"
        ),
        "SELECT user_ref, certificate, status, issued_on, expires_on FROM compliance_roster",
    );
    let expected: Vec<Vec<String>> = sim.with_data(|d| {
        let mut users: Vec<_> = live(d).filter(|u| !u.archived).collect();
        users.sort_by(|a, b| a.ref_.cmp(&b.ref_));
        users
            .iter()
            .flat_map(|u| {
                required.iter().map(move |title| {
                    let held = u
                        .items
                        .iter()
                        .filter(|i| i.kind == Kind::Certificate && &*i.title == *title)
                        .max_by_key(|i| i.end_date);
                    let (status, issued, expires) = match held {
                        None => ("missing", "∅".to_string(), "∅".to_string()),
                        Some(i) => {
                            let end = i.end_date.unwrap();
                            let status = if end < later {
                                "expired"
                            } else if end <= later + chrono::Duration::days(60) {
                                "expiring"
                            } else {
                                "valid"
                            };
                            (
                                status,
                                i.completion_date.unwrap().to_string(),
                                end.to_string(),
                            )
                        }
                    };
                    vec![
                        u.ref_.clone().unwrap(),
                        title.to_string(),
                        status.to_string(),
                        issued,
                        expires,
                    ]
                })
            })
            .collect()
    });
    for status in ["missing", "expired", "expiring", "valid"] {
        assert!(expected.iter().any(|r| r[2] == status), "{status} occurs");
    }
    assert_eq!(got, expected, "compliance_roster");
    checked.insert("compliance_roster");

    let all: BTreeSet<&str> = pluvo_warehouse::views::VIEWS
        .iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(checked, all, "every view is checked");
}

// ------------------------------------------------------------------------ query

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// id, ref, name, archived, roles, items, max progress.
type UserRow = (String, String, String, bool, Vec<String>, i64, f64);

// Acceptance: `query --format csv|json` parses back to the same rows; bad SQL gives DuckDB's
// error and exit 1; parameters reach the views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_formats_parse_back_and_errors_are_duckdbs() {
    let sim = sim(200).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let config = config_file(&sim, dir.path());
    let query = |args: &[&str]| {
        run(cli(&config, &db, sim.client_secret())
            .arg("query")
            .args(args))
    };

    let sql = "SELECT u.id, u.ref, u.name, u.archived, u.roles,
                      (SELECT count(*) FROM portfolio_items p WHERE p.user_id = u.id) AS items,
                      (SELECT max(progress) FROM portfolio_items p WHERE p.user_id = u.id) AS progress
               FROM users u ORDER BY u.id";
    let expected: Vec<UserRow> = {
        let conn = read_only(&db);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, ref, name, archived, array_to_string(roles, '|'), items, progress FROM ({sql})"
            ))
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, String>(4)?
                    .split('|')
                    .map(str::to_string)
                    .collect(),
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(expected.len(), 200);

    // JSON lines: one object per row, numbers as numbers, lists as arrays.
    let out = query(&[sql, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Vec<_> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["ref"].as_str().unwrap().to_string(),
                v["name"].as_str().unwrap().to_string(),
                v["archived"].as_bool().unwrap(),
                v["roles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect::<Vec<_>>(),
                v["items"].as_i64().unwrap(),
                v["progress"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // CSV with a header; the default format when stdout is not a terminal.
    let out = query(&[sql]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id", "ref", "name", "archived", "roles", "items", "progress"
        ]
    );
    let got: Vec<_> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_string(),
                r[1].to_string(),
                r[2].to_string(),
                r[3].parse::<bool>().unwrap(),
                r[4].trim_matches(['[', ']'])
                    .split(", ")
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
                r[5].parse::<i64>().unwrap(),
                r[6].parse::<f64>().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // Parquet needs --out; written atomically, readable back.
    let out = query(&[sql, "--format", "parquet"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let file = dir.path().join("answer.parquet");
    let out = query(&[sql, "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        rows(
            &db,
            &format!("SELECT count(*), sum(items) FROM '{}'", file.display())
        ),
        rows(&db, &format!("SELECT count(*), sum(items) FROM ({sql})"))
    );

    // Parameters become variables the views read; a list from a repeated name.
    let out = query(&[
        "SELECT count(*) AS n FROM inactive_users",
        "--param",
        "days=30",
        "--param",
        &format!("as_of={AS_OF}"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = read_only(&db);
    let n: i64 = {
        conn.execute_batch(&format!(
            "SET VARIABLE days = 30; SET VARIABLE as_of = DATE '{AS_OF}';"
        ))
        .unwrap();
        conn.query_row("SELECT count(*) FROM inactive_users", [], |r| r.get(0))
            .unwrap()
    };
    drop(conn);
    assert_eq!(text(&out.stdout).trim(), format!("{{\"n\":{n}}}"));
    let out = query(&[
        "SELECT DISTINCT certificate FROM compliance_roster ORDER BY 1",
        "--param",
        "certificates=BHV",
        "--param",
        "certificates=Food Safety",
    ]);
    assert_eq!(
        text(&out.stdout),
        "certificate\nBHV\nFood Safety\n",
        "{}",
        text(&out.stderr)
    );

    // Bad SQL: DuckDB's message with the line, exit 1.
    let out = query(&["SELEC 1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Parser Error") && err.contains("SELEC"),
        "{err}"
    );
    assert!(err.contains("LINE 1"), "{err}");
    let out = query(&["SELECT id\nFROM userz"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("userz") && err.contains("LINE 2"), "{err}");
    assert!(out.stdout.is_empty());

    // No warehouse and nothing published: an error that says both, exit 1.
    let out = run(cli(
        &config,
        &dir.path().join("none.duckdb"),
        sim.client_secret(),
    )
    .args(["query", "SELECT 1"]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no published snapshot in") && err.contains("none.duckdb` does not exist"),
        "{err}"
    );
}

// Acceptance: `query` and a DuckDB read of the published data both succeed while a long sync
// runs against a slow simulator, and answer the last complete state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_are_never_locked_out_by_a_running_sync() {
    let sim = sim(400).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let config = config_file(&sim, dir.path());
    let first = run(cli(&config, &db, sim.client_secret()).arg("sync"));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let count_sql = "SELECT count(*) AS n, CAST(sum(progress) AS BIGINT) AS progress FROM portfolio_items WHERE _deleted_at IS NULL";
    let before = rows(&db, count_sql);

    // Change the source and slow it down: the second sync takes seconds and holds the file.
    sim.tick(300);
    sim.set_faults(Faults {
        latency: Duration::from_millis(60),
        ..Faults::default()
    });
    // Not --quiet: its first progress line on stderr says the warehouse is open.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"))
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .arg("sync")
        .env("PLUVO_CLIENT_SECRET", sim.client_secret())
        .env("PLUVO_LOG", "info")
        .env_remove("PLUVO_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(
        line.contains("run=2"),
        "the sync has opened the warehouse: {line}"
    );

    let out = run(cli(&config, &db, sim.client_secret())
        .args(["query", "--format", "csv"])
        .arg(count_sql));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let note = text(&out.stderr);
    assert!(
        note.contains("is being written by another process")
            && note.contains("published snapshot")
            && note.contains("run 1"),
        "{note}"
    );
    let answer: Vec<String> = text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.replace(',', " | "))
        .collect();
    assert_eq!(answer, before, "the last complete state");

    let published = Connection::open_in_memory()
        .unwrap()
        .query_row(
            &format!(
                "SELECT count(*) FROM read_parquet('{}/current/portfolio_items/**/*.parquet') WHERE _deleted_at IS NULL",
                export_dir(&db).display()
            ),
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(
        published.to_string(),
        before[0].split(" | ").next().unwrap()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync was still running"
    );

    let status = child.wait().unwrap();
    assert!(status.success());
    let after = rows(&db, count_sql);
    assert_ne!(after, before, "the tick changed the data");
    let out = run(cli(&config, &db, sim.client_secret())
        .args(["query", "--format", "csv"])
        .arg(count_sql));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let answer: Vec<String> = text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.replace(',', " | "))
        .collect();
    assert_eq!(answer, after);
    assert_eq!(assert_complete(&export_dir(&db)).run_id, Some(2));
}

// `export compliance`: dated and reproducible, with run id and export time inside; an unknown
// title is a usage error that lists the known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_export_is_dated_and_reproducible() {
    let sim = sim(150).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let config = config_file(&sim, dir.path());
    let export = |out: &Path, extra: &[&str]| {
        run(cli(&config, &db, sim.client_secret())
            .args([
                "export",
                "compliance",
                "--certificate",
                "BHV",
                "--certificate",
                "First Aid Certificate",
            ])
            .args(["--as-of", AS_OF, "--out"])
            .arg(out)
            .args(extra))
    };
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    for file in [&a, &b] {
        let out = export(file, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let read = |file: &Path| -> Vec<Vec<String>> {
        let mut reader = csv::Reader::from_path(file).unwrap();
        let headers: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(
            headers,
            [
                "as_of",
                "user_ref",
                "user_id",
                "name",
                "email",
                "certificate",
                "status",
                "issued_on",
                "expires_on",
                "days_left",
                "run_id",
                "exported_at"
            ]
        );
        reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    };
    let (rows_a, rows_b) = (read(&a), read(&b));
    let users = sim.with_data(|d| live(d).filter(|u| !u.archived).count());
    assert_eq!(rows_a.len(), users * 2);
    assert!(rows_a.iter().all(|r| r[0] == AS_OF && r[10] == "1"));
    let without_time = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter().map(|r| r[..11].to_vec()).collect()
    };
    assert_eq!(without_time(&rows_a), without_time(&rows_b), "reproducible");
    let missing = rows_a.iter().filter(|r| r[6] == "missing").count();
    let expected_missing = sim.with_data(|d| {
        live(d)
            .filter(|u| !u.archived)
            .map(|u| {
                ["BHV", "First Aid Certificate"]
                    .iter()
                    .filter(|t| {
                        !u.items
                            .iter()
                            .any(|i| i.kind == Kind::Certificate && &*i.title == **t)
                    })
                    .count()
            })
            .sum::<usize>()
    });
    assert_eq!(missing, expected_missing);

    let parquet = dir.path().join("c.parquet");
    let out = export(&parquet, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        rows(
            &db,
            &format!(
                "SELECT count(*), count(DISTINCT run_id) FROM '{}'",
                parquet.display()
            )
        ),
        [format!("{} | 1", users * 2)]
    );

    let out = run(cli(&config, &db, sim.client_secret())
        .args([
            "export",
            "compliance",
            "--certificate",
            "Unicorn Riding",
            "--out",
        ])
        .arg(dir.path().join("x.csv")));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no certificate titled `Unicorn Riding`") && err.contains("BHV"),
        "{err}"
    );
}
