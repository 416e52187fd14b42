//! Issue 21, beyond one machine: the snapshot in types every engine reads (checked with
//! pyarrow, the reader under Spark's and polars' Python APIs and most BI connectors).

use std::collections::BTreeMap;

use pluvo_warehouse::export::{self, Manifest, TABLES};

use crate::support::{python_with, rows, sim, sync};

/// The pins of the pyarrow reader (the same as the polars/pandas example test).
const PYARROW: &[&str] = &["pandas==3.1.1", "pyarrow==26.0.1"];

/// Every table of the snapshot in `argv[1]` read as a hive-partitioned pyarrow dataset:
/// JSON `{table: {"rows": n, "files": n, "types": {column: type}}}`.
const READ_TYPES: &str = r#"
import json, os, sys
import pyarrow.dataset as ds
snapshot, tables = sys.argv[1], json.loads(sys.argv[2])
out = {}
for table in tables:
    path = os.path.join(snapshot, table)
    data = ds.dataset(path, format="parquet", partitioning="hive")
    out[table] = {
        "rows": data.count_rows(),
        "files": len(data.files),
        "types": {f.name: str(f.type) for f in data.schema},
    }
print(json.dumps(out))
"#;

/// Issue 21: pyarrow reads every table of the snapshot with the warehouse's row counts, no
/// unsigned integer anywhere, times as microseconds, dates as dates, typed partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_engines_read_every_table_in_portable_types() {
    let sim = sim(150).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let current = export::current_snapshot(&dir.path().join("w-export")).expect("published");
    let manifest = Manifest::read(&current).unwrap();
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    let out = python_with(PYARROW)
        .arg("-c")
        .arg(READ_TYPES)
        .arg(&current)
        .arg(serde_json::to_string(&names).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for table in TABLES {
        let got = &read[table.name];
        let count = rows(&db, &format!("SELECT count(*) FROM \"{}\"", table.name));
        assert_eq!(
            got["rows"].to_string(),
            count[0],
            "rows of `{}`",
            table.name
        );
        assert_eq!(
            got["rows"].as_u64(),
            Some(manifest.table(table.name).unwrap().rows)
        );
        let types: BTreeMap<String, String> = serde_json::from_value(got["types"].clone()).unwrap();
        let sql_types: BTreeMap<String, String> = rows(
            &db,
            &format!(
                "SELECT column_name || '|' || data_type FROM information_schema.columns
                 WHERE table_name = '{}'",
                table.name
            ),
        )
        .into_iter()
        .map(|l| {
            let (c, t) = l.split_once('|').unwrap();
            (c.to_string(), t.to_string())
        })
        .filter(|(c, _)| {
            !pluvo_warehouse::export::UNEXPORTED_COLUMNS.contains(&(table.name, c.as_str()))
        })
        .collect();
        for (column, ty) in &types {
            assert!(!ty.contains("uint"), "`{}.{column}` is {ty}", table.name);
            let expected = match sql_types.get(column).map(String::as_str) {
                Some("TIMESTAMP") => "timestamp[us]",
                Some("DATE") => "date32[day]",
                Some("UBIGINT" | "BIGINT") => "int64",
                Some("VARCHAR" | "JSON") => "string",
                Some("DOUBLE") => "double",
                Some("BOOLEAN") => "bool",
                Some("VARCHAR[]") => "list<element: string>",
                Some(other) => panic!("`{}.{column}`: add {other}", table.name),
                // Partition columns: typed from the folder names.
                None => match column.as_str() {
                    "completion_year" => "int32",
                    "related_object_type" => "string",
                    other => panic!("unexpected column `{other}` in `{}`", table.name),
                },
            };
            assert_eq!(ty, expected, "`{}.{column}`", table.name);
        }
        assert_eq!(
            types.len(),
            sql_types.len() + table.partition_by.len() - usize::from(!table.derived.is_empty()),
            "columns of `{}`: {types:?}",
            table.name
        );
    }
}

// ------------------------------------------------------------------ object storage (S3)

/// The pinned S3 server: moto's standalone server from PyPI (a real HTTP S3 protocol server,
/// not an in-process mock of our client).
const MOTO: &[&str] = &["moto[server]==5.2.5"];
/// Credentials the server accepts; the secret must never be printed or logged.
const KEY_ID: &str = "AKIAPLUVOTEST";
const SECRET_KEY: &str = "moto-secret-never-in-a-log-0123456789";
const BUCKET: &str = "pluvo-lake";

/// A moto S3 server on a free loopback port with one bucket, stopped when dropped.
struct S3 {
    child: std::process::Child,
    endpoint: String,
}

impl S3 {
    async fn start() -> S3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = python_with(MOTO)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto starts");
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = std::time::Instant::now();
        loop {
            let put = crate::support::http()
                .put(format!("{}/{BUCKET}", s3.endpoint))
                .send()
                .await;
            if put.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "moto did not start on {}",
                s3.endpoint
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        s3
    }

    /// The environment a user sets for S3: the usual AWS variables.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "eu-west-1".to_string()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// Keys under `prefix` in the bucket (moto answers unsigned reads), sorted.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/{BUCKET}?list-type=2&prefix={prefix}&max-keys=1000",
                self.endpoint
            );
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={t}"));
            }
            let body = crate::support::http()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            keys.extend(between(&body, "<Key>", "</Key>"));
            token = between(&body, "<NextContinuationToken>", "</NextContinuationToken>")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// The manifest `current.json` under `prefix` names, read by the tool's own (signed)
    /// reader: moto refuses unsigned reads of objects.
    async fn current(&self, prefix: &str) -> Option<Manifest> {
        let env = self.env().into_iter().map(|(k, v)| (k.to_string(), v));
        pluvo_warehouse::export::remote::Target::open_with(&format!("s3://{BUCKET}/{prefix}"), env)
            .unwrap()
            .current()
            .await
            .unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every text between `open` and `close` in `body`.
fn between(body: &str, open: &str, close: &str) -> Vec<String> {
    body.split(open)
        .skip(1)
        .filter_map(|s| s.split_once(close).map(|(v, _)| v.replace("&amp;", "&")))
        .collect()
}

/// Row counts of every exported table, one `name count` line each, through
/// `query --from URL` (the tool's reader of an object storage snapshot), or through the
/// warehouse file when `from` is None.
fn counts_sql() -> String {
    TABLES
        .iter()
        .map(|t| format!("SELECT '{0}' AS t, count(*) AS n FROM \"{0}\"", t.name))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
        + " ORDER BY t"
}

/// Issue 21: `export --to s3://…` publishes to a real S3 protocol server; the tool's reader
/// (`query --from`) reads every table back with the warehouse's counts; `current.json` is a
/// manifest naming a complete snapshot folder; no credential in the output or the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_export_to_s3_reads_back_every_table_and_a_killed_upload_changes_nothing() {
    let s3 = S3::start().await;
    let sim = sim(400).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let config = crate::support::config_file(&sim, dir.path());
    let url = format!("s3://{BUCKET}/team/warehouse");
    let env = s3.env();
    let run = |args: &[&str], log: &str| {
        let mut cmd = crate::support::command(&config, &db, sim.client_secret(), args);
        cmd.env("PLUVO_LOG", log);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd
    };

    let out = run(&["export", "--to", &url], "trace").output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("to {url}")), "{stdout}");
    assert!(
        !stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY),
        "the secret key is printed or logged"
    );
    assert!(
        stderr.contains("Snapshot published to object storage"),
        "{stderr}"
    );

    // The layout: the pointer is the snapshot's manifest; every file the manifest counts is there.
    let first = s3.current("team/warehouse").await.expect("current.json");
    let keys = s3.keys("team/warehouse/").await;
    let base = format!("team/warehouse/snapshots/{}/", first.snapshot);
    assert!(keys.contains(&format!("{base}manifest.json")), "{keys:?}");
    let parquet = keys
        .iter()
        .filter(|k| k.starts_with(&base) && k.ends_with(".parquet"));
    assert_eq!(
        parquet.count() as u64,
        first.tables.iter().map(|t| t.files).sum::<u64>()
    );
    assert!(
        keys.iter()
            .any(|k| k.contains("/portfolio_items/related_object_type=TRAINING/completion_year=")),
        "hive folders kept as they are: {keys:?}"
    );

    let expected = rows(&db, &counts_sql());
    let read_back = |from: &str| {
        let out = run(
            &["query", "--from", from, "--format", "csv", &counts_sql()],
            "warn",
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.replace(',', " | "))
            .collect::<Vec<_>>()
    };
    assert_eq!(read_back(&url), expected);
    assert!(expected.iter().all(|l| !l.ends_with(" 0")), "{expected:?}");

    // New data, then an upload killed (SIGKILL) once some of its files are in the bucket:
    // `current.json` still names the first snapshot, and readers get its counts.
    sim.edit(|d: &mut pluvo_warehouse::sim::Dataset| {
        d.users.truncate(d.users.len() - 50);
    });
    sync(&sim, &db, false).await;
    let mut killed_midway = 0;
    for _ in 0..8 {
        let before = s3.current("team/warehouse").await.unwrap();
        let known = s3.keys("team/warehouse/snapshots/").await;
        let mut child = run(&["export", "--to", &url], "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let partial = loop {
            let keys = s3.keys("team/warehouse/snapshots/").await;
            if keys.iter().any(|k| !known.contains(k)) {
                break true;
            }
            if child.try_wait().unwrap().is_some() || started.elapsed().as_secs() > 60 {
                break false;
            }
        };
        child.kill().ok();
        child.wait().unwrap();
        let current = s3.current("team/warehouse").await.unwrap();
        if partial && current == before {
            killed_midway += 1;
            // Readers get the previous snapshot, complete: its manifest's counts.
            let counts: Vec<String> = {
                let mut c: Vec<String> = before
                    .tables
                    .iter()
                    .map(|t| format!("{} | {}", t.name, t.rows))
                    .collect();
                c.sort();
                c
            };
            assert_eq!(
                read_back(&url),
                counts,
                "readers still get the previous snapshot"
            );
            if before == first {
                assert_eq!(counts, expected);
            }
            break;
        }
    }
    assert_eq!(killed_midway, 1, "an upload was killed midway");

    // The next export publishes the new data; the killed upload's files are not read.
    let out = run(&["export", "--to", &url], "warn").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = read_back(&url);
    assert_eq!(after, rows(&db, &counts_sql()));
    assert_ne!(after, expected);
    let second = s3.current("team/warehouse").await.unwrap();
    assert_ne!(second.snapshot, first.snapshot);
}

// ------------------------------------------------------------------ export.to, several orgs

/// Row counts per table of a published snapshot folder, read by DuckDB itself
/// (`read_parquet` with hive partitioning), per organisation: `table org count` lines, sorted.
fn counts_by_org(snapshot: &std::path::Path) -> Vec<String> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!(
            "SELECT org, count(*) FROM read_parquet('{}/{}/**/*.parquet', hive_partitioning = true,
                hive_types = {{'org': VARCHAR}}) GROUP BY org ORDER BY org",
            snapshot.display(),
            table.name
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap();
        for row in rows {
            let (org, n) = row.unwrap();
            out.push(format!("{} {org} {n}", table.name));
        }
    }
    out.sort();
    out
}

/// The same lines from each organisation's own warehouse (tables with rows only, as a table
/// without rows has no file to read).
fn counts_of_warehouses(orgs: &[(&str, &std::path::Path)]) -> Vec<String> {
    let mut out = Vec::new();
    for (org, db) in orgs {
        for table in TABLES {
            let n = rows(db, &format!("SELECT count(*) FROM \"{}\"", table.name));
            if n[0] != "0" {
                out.push(format!("{} {org} {}", table.name, n[0]));
            }
        }
    }
    out.sort();
    out
}

/// Issue 21: `[export] to` makes every `sync` publish its snapshot to object storage too
/// (the same upload as `export --to`); a URL the tool cannot write to is refused before
/// anything is read, naming the setting and where it came from; no credential is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_every_sync_publishes_to_the_configured_object_storage() {
    let s3 = S3::start().await;
    let sim = sim(120).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pluvo-warehouse.toml"),
        format!(
            "[pluvo]\nurl = \"{}\"\nclient_id = \"{}\"\n\n[export]\nto = \"s3://{BUCKET}/every-sync\"\n",
            sim.url(),
            sim.client_id()
        ),
    )
    .unwrap();
    let mut env: Vec<(&str, String)> = s3.env();
    env.push(("PLUVO_CLIENT_SECRET", sim.client_secret().to_string()));
    env.push(("PLUVO_LOG", "debug".to_string()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let run = crate::support::run_bin(dir.path(), &["sync"], &env_refs).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("to s3://{BUCKET}/every-sync")),
        "{}",
        run.stdout
    );
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(SECRET_KEY),
            "the secret key is printed or logged"
        );
    }
    let db = dir.path().join("pluvo.duckdb");
    let current = s3.current("every-sync").await.expect("published by sync");
    let run_id = rows(
        &db,
        "SELECT max(run_id) FROM _runs WHERE status = 'succeeded'",
    );
    assert_eq!(
        current.run_id.map(|r| r.to_string()),
        Some(run_id[0].clone())
    );
    for table in TABLES {
        let n = rows(&db, &format!("SELECT count(*) FROM \"{}\"", table.name));
        assert_eq!(current.table(table.name).unwrap().rows.to_string(), n[0]);
    }
    // The JSON summary carries the upload.
    let json = crate::support::run_bin(dir.path(), &["sync", "--format", "json"], &env_refs).await;
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let summary: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let second = s3.current("every-sync").await.unwrap();
    assert_ne!(second.snapshot, current.snapshot);
    assert_eq!(summary["published"]["snapshot"], second.snapshot.as_str());

    // A URL no store takes, from the environment: refused before the warehouse is touched.
    let before = std::fs::metadata(&db).unwrap().modified().unwrap();
    let mut bad = env_refs.clone();
    bad.push(("PLUVO_EXPORT_TO", "ftp://files.example.com/pluvo"));
    let refused = crate::support::run_bin(dir.path(), &["sync"], &bad).await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("`export.to`")
            && refused.stderr.contains("PLUVO_EXPORT_TO")
            && refused.stderr.contains("s3://bucket/prefix"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::metadata(&db).unwrap().modified().unwrap(), before);

    // An upload that fails (no such bucket): the sync itself succeeded and says so, exit 1,
    // and the error holds no credential.
    let runs = rows(&db, "SELECT count(*) FROM _runs WHERE status = 'succeeded'");
    let mut missing = env_refs.clone();
    missing.push(("PLUVO_EXPORT_TO", "s3://no-such-bucket/pluvo"));
    let failed = crate::support::run_bin(dir.path(), &["sync"], &missing).await;
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("the sync succeeded")
            && failed.stderr.contains("s3://no-such-bucket/pluvo")
            && !failed.stderr.contains(SECRET_KEY),
        "{}",
        failed.stderr
    );
    let after = rows(&db, "SELECT count(*) FROM _runs WHERE status = 'succeeded'");
    assert_eq!(
        after[0].parse::<u64>().unwrap(),
        runs[0].parse::<u64>().unwrap() + 1
    );
}

/// A configuration of two organisations, each with its own simulator, secret variable and
/// warehouse, publishing to `s3://BUCKET/{prefix}`.
fn orgs_config(dir: &std::path::Path, orgs: &[(&str, &pluvo_warehouse::sim::Sim)], prefix: &str) {
    let mut text = format!("[export]\nto = \"s3://{BUCKET}/{prefix}\"\n");
    for (name, sim) in orgs {
        text.push_str(&format!(
            "\n[orgs.{name}]\nurl = \"{}\"\nclient_id = \"{}\"\nsecret_env = \"{}_SECRET\"\ndb = \"{name}.duckdb\"\n",
            sim.url(),
            sim.client_id(),
            name.to_uppercase()
        ));
    }
    std::fs::write(dir.join("pluvo-warehouse.toml"), text).unwrap();
}

/// Issue 21: two organisations synced by one command end in two warehouses and ONE dataset
/// with an `org` partition (local and in object storage), whose per-organisation counts are
/// each warehouse's; with one organisation's secret wrong, the other still syncs and
/// publishes, the command exits non-zero and names the failing organisation, and the dataset
/// keeps the failing one's last published data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_two_organisations_sync_side_by_side_and_one_failing_does_not_stop_the_other() {
    let s3 = S3::start().await;
    let acme = sim(150).await;
    let globex = crate::support::sim_with(pluvo_warehouse::sim::SimConfig {
        users: 90,
        seed: 11,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        ..pluvo_warehouse::sim::SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    orgs_config(dir.path(), &[("acme", &acme), ("globex", &globex)], "orgs");
    let mut env: Vec<(&str, String)> = s3.env();
    env.push(("ACME_SECRET", acme.client_secret().to_string()));
    env.push(("GLOBEX_SECRET", globex.client_secret().to_string()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (acme_db, globex_db) = (
        dir.path().join("acme.duckdb"),
        dir.path().join("globex.duckdb"),
    );

    let run = crate::support::run_bin(
        dir.path(),
        &["sync", "--all-orgs", "--format", "json"],
        &env_refs,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["orgs"].as_array().unwrap().len(), 2, "{summary}");
    assert!(acme_db.exists() && globex_db.exists());
    let expected = counts_of_warehouses(&[("acme", &acme_db), ("globex", &globex_db)]);
    assert!(
        expected.iter().any(|l| l.starts_with("users acme 1")),
        "{expected:?}"
    );
    assert!(
        expected.iter().any(|l| l.starts_with("users globex ")),
        "{expected:?}"
    );
    // Locally: the combined snapshot beside the (default) warehouse, one table per name.
    let local = export::current_snapshot(&dir.path().join("pluvo-export")).expect("combined");
    assert_eq!(counts_by_org(&local), expected);
    let manifest = Manifest::read(&local).unwrap();
    assert_eq!(
        manifest
            .orgs
            .iter()
            .map(|p| p.org.as_str())
            .collect::<Vec<_>>(),
        ["acme", "globex"]
    );
    // In object storage: the same files under one snapshot, named by `current.json`, read
    // back through the tool's own reader, whose tables have the `org` column.
    let remote = s3.current("orgs").await.expect("current.json");
    assert_eq!(remote, manifest);
    let keys = s3
        .keys(&format!("orgs/snapshots/{}/", remote.snapshot))
        .await;
    assert!(
        keys.iter().any(|k| k.contains("/users/org=acme/"))
            && keys.iter().any(|k| k.contains("/users/org=globex/")),
        "{keys:?}"
    );
    let query = crate::support::run_bin(
        dir.path(),
        &[
            "query",
            "--from",
            &format!("s3://{BUCKET}/orgs"),
            "--format",
            "csv",
            "SELECT org, count(*) AS n FROM users GROUP BY org ORDER BY org",
        ],
        &env_refs,
    )
    .await;
    assert_eq!(query.code, Some(0), "{}", query.stderr);
    let users = |db: &std::path::Path| rows(db, "SELECT count(*) FROM users")[0].clone();
    assert_eq!(
        query.stdout.lines().skip(1).collect::<Vec<_>>(),
        [
            format!("acme,{}", users(&acme_db)),
            format!("globex,{}", users(&globex_db))
        ]
    );

    // `query` without a warehouse of its own reads the local dataset, `org` column included.
    let local_query = crate::support::run_bin(
        dir.path(),
        &[
            "query",
            "--format",
            "csv",
            "SELECT org, count(*) AS n FROM users GROUP BY org ORDER BY org",
        ],
        &env_refs,
    )
    .await;
    assert_eq!(local_query.code, Some(0), "{}", local_query.stderr);
    assert_eq!(local_query.stdout, query.stdout);
    // `--db` names one warehouse: refused with the organisations, before any sync.
    let flagged = crate::support::run_bin(
        dir.path(),
        &["--db", "other.duckdb", "sync", "--all-orgs"],
        &env_refs,
    )
    .await;
    assert_eq!(flagged.code, Some(2), "{}", flagged.stderr);
    assert!(flagged.stderr.contains("flag `--db`"), "{}", flagged.stderr);
    assert!(!dir.path().join("other.duckdb").exists());

    // Acme changes; globex's secret is now wrong.
    acme.edit(|d: &mut pluvo_warehouse::sim::Dataset| d.users.truncate(d.users.len() - 20));
    let globex_before = counts_of_warehouses(&[("globex", &globex_db)]);
    let mut wrong = env_refs.clone();
    wrong.retain(|(k, _)| *k != "GLOBEX_SECRET");
    wrong.push(("GLOBEX_SECRET", "not-the-secret"));
    let run = crate::support::run_bin(dir.path(), &["sync", "--all-orgs"], &wrong).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("1 of 2 organisations failed (globex)")
            && run.stderr.contains("`globex`: ")
            && run.stderr.contains("GLOBEX_SECRET")
            && !run.stderr.contains("not-the-secret"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("acme") && l.contains(" ok "))
            && run
                .stdout
                .lines()
                .any(|l| l.starts_with("globex") && l.contains("FAILED")),
        "{}",
        run.stdout
    );
    let now = counts_of_warehouses(&[("acme", &acme_db), ("globex", &globex_db)]);
    assert_ne!(now, expected, "acme was synced");
    assert_eq!(
        counts_of_warehouses(&[("globex", &globex_db)]),
        globex_before
    );
    let local = export::current_snapshot(&dir.path().join("pluvo-export")).unwrap();
    assert_eq!(
        counts_by_org(&local),
        now,
        "acme's new data and globex's last"
    );
    let republished = s3.current("orgs").await.unwrap();
    assert_ne!(republished.snapshot, remote.snapshot, "published again");
    assert_eq!(republished, Manifest::read(&local).unwrap());

    // One organisation by name; an unknown name syncs nothing and says which exist.
    let one = crate::support::run_bin(dir.path(), &["sync", "--org", "acme"], &env_refs).await;
    assert_eq!(one.code, Some(0), "{}", one.stderr);
    assert!(
        !one.stdout.lines().any(|l| l.starts_with("globex")),
        "{}",
        one.stdout
    );
    let unknown =
        crate::support::run_bin(dir.path(), &["sync", "--org", "initech"], &env_refs).await;
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("`initech`") && unknown.stderr.contains("acme, globex"),
        "{}",
        unknown.stderr
    );
}

/// Issue 21: organisations synced at once share ONE `--concurrency` budget: two
/// organisations on the same (slow) server never have more requests in flight there than
/// the budget, where each alone would use all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_organisations_share_one_request_budget() {
    let sim = sim(300).await;
    sim.set_faults(pluvo_warehouse::sim::Faults {
        latency: std::time::Duration::from_millis(40),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for name in ["north", "south"] {
        text.push_str(&format!(
            "[orgs.{name}]\nurl = \"{}\"\nclient_id = \"{}\"\nsecret_env = \"PLUVO_SHARED_SECRET\"\ndb = \"{name}.duckdb\"\n\n",
            sim.url(),
            sim.client_id(),
        ));
    }
    std::fs::write(dir.path().join("pluvo-warehouse.toml"), text).unwrap();
    let secret = [("PLUVO_SHARED_SECRET", sim.client_secret())];
    let run = crate::support::run_bin(
        dir.path(),
        &["sync", "--all-orgs", "--concurrency", "3"],
        &secret,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let peak = sim.counters().graphql_peak_in_flight;
    assert!(
        peak <= 3,
        "{peak} requests in flight at once, over the budget of 3"
    );
    assert!(peak >= 2, "the budget was not used: {peak}");
    assert_eq!(
        rows(
            &dir.path().join("north.duckdb"),
            "SELECT count(*) FROM users"
        ),
        rows(
            &dir.path().join("south.duckdb"),
            "SELECT count(*) FROM users"
        )
    );
}
