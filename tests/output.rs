//! One output style: every command that prints a result prints it as JSON with `--format json`,
//! log lines (and the final error) can be JSON for a log shipper, a closed pipe ends a command
//! quietly instead of with a panic, and tables come from one printer.

use std::process::Stdio;

use serde_json::Value;

use crate::support::{command, config_file, rows, sim};

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_as_json_and_logs_as_json_lines() {
    let sim = sim(60).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&sim, dir.path());
    let db = dir.path().join("w.duckdb");
    let secret = sim.client_secret().to_string();
    let run = |args: &[&str]| {
        let mut cmd = command(&config, &db, &secret, args);
        cmd.env_remove("PLUVO_LOG_FORMAT");
        cmd
    };

    // Logs as JSON: without --quiet a sync logs; every stderr line is one JSON object.
    let out = tokio::task::spawn_blocking({
        let mut cmd = run(&["sync", "--format", "json"]);
        cmd.env("PLUVO_LOG_FORMAT", "json")
            .args(["--verbose"])
            .env("PLUVO_LOG", "pluvo_warehouse=debug");
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    let sync = json(&out);
    assert_eq!(sync["streams"][0]["stream"], "users", "{sync}");
    assert_eq!(sync["streams"][0]["new"], 60, "{sync}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "a verbose sync logs something");
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(
            !line.contains(&secret),
            "the secret is in a log line: {line}"
        );
    }
    // A merge's debug line says where the memory is (DuckDB's buffers and the whole process)
    // and where the writer's time went: staging, then the merge's SQL, commits and
    // checkpoints, which add up to no more than the merge took.
    let merged: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["fields"]["message"] == "Merged staged rows.")
        .collect();
    assert!(!merged.is_empty(), "{stderr}");
    for m in &merged {
        let f = &m["fields"];
        let mib = |name: &str| f[name].as_f64().unwrap_or_else(|| panic!("{name}: {m}"));
        assert!(mib("duckdb_mib") >= 0.0 && mib("rss_mib") > 0.0, "{m}");
        assert!(mib("peak_mib") >= mib("rss_mib"), "{m}");
        let ms = |name: &str| f[name].as_u64().unwrap_or_else(|| panic!("{name}: {m}"));
        ms("staging_ms");
        assert!(
            ms("sql_ms") + ms("commit_ms") + ms("checkpoint_ms") <= ms("ms"),
            "{m}"
        );
    }
    // A first load of the portfolio skips the diff against its empty table (the stream's
    // keys cannot repeat in a scan); the debug line says so, for that stream alone.
    let first: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["fields"]["message"] == "First load: merging without the diff.")
        .collect();
    assert_eq!(first.len(), 1, "{stderr}");
    assert_eq!(first[0]["fields"]["stream"], "portfolio", "{stderr}");
    // Every stream's tables were empty: none records the keys it saw (all its rows are new).
    let fresh: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["fields"]["message"] == "First load: no seen keys to record.")
        .map(|v| format!("{}: {}", v["fields"]["stream"], v["fields"]["tables"]))
        .collect();
    for stream in [
        "\"users\": \"users, group_members\"",
        "\"portfolio\": \"portfolio_items\"",
    ] {
        assert!(fresh.iter().any(|f| f == stream), "{stream}: {fresh:?}");
    }
    assert_eq!(
        fresh.len(),
        sync["streams"].as_array().unwrap().len(),
        "{fresh:?}"
    );
    // The summary says how long the writer thread was busy: the merges ran on it, so their
    // time is part of it, and it is part of the sync's.
    let writer = sync["writer_seconds"].as_f64().expect("writer_seconds");
    let merges: u64 = merged
        .iter()
        .map(|m| m["fields"]["ms"].as_u64().unwrap())
        .sum();
    assert!(
        writer * 1000.0 >= merges as f64,
        "{writer} s, merges {merges} ms"
    );
    assert!(writer <= sync["seconds"].as_f64().unwrap(), "{sync}");

    // export --format json: what was published, table by table, agreeing with the warehouse.
    let export = json(&run(&["export", "--format", "json"]).output().unwrap());
    let tables = export["manifest"]["tables"].as_array().unwrap();
    let users = tables.iter().find(|t| t["name"] == "users").unwrap();
    let live: u64 = rows(&db, "SELECT count(*) FROM users")[0].parse().unwrap();
    assert_eq!(users["rows"], live, "{export}");
    assert!(
        export["dir"].as_str().unwrap().contains("snapshots"),
        "{export}"
    );
    // Nothing changed since the sync published: every table is linked from its snapshot,
    // none written again.
    assert_eq!(export["written"], Value::Array(Vec::new()), "{export}");

    // push status --format json: the list of plans is JSON too (none yet).
    let plans = json(
        &run(&["push", "status", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(plans, Value::Array(Vec::new()));

    // doctor --format json: every check with its result; all pass against the simulator.
    let doctor = json(&run(&["doctor", "--format", "json"]).output().unwrap());
    assert_eq!(doctor["ok"], true, "{doctor}");
    let names: Vec<&str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"credentials") && names.contains(&"database"),
        "{names:?}"
    );

    // views --format json: every analyst view, what it answers, its columns with their types
    // as DuckDB describes them in the warehouse.
    let views = json(&run(&["views", "--format", "json"]).output().unwrap());
    let names: Vec<&str> = views
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = pluvo_warehouse::views::VIEWS
        .iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, expected, "{views}");
    let inactive = &views[0];
    assert!(
        inactive["about"]
            .as_str()
            .unwrap()
            .starts_with("inactive_users: users who have not logged in"),
        "{inactive}"
    );
    let columns: Vec<String> = inactive["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} | {}",
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        columns,
        rows(
            &db,
            "SELECT column_name, column_type FROM (DESCRIBE inactive_users)"
        ),
        "{inactive}"
    );
    assert!(
        columns.contains(&"days_since_login | BIGINT".to_string()),
        "{columns:?}"
    );

    // The final error of a failing command is a JSON log line too.
    let out = run(&["query", "SELECT * FROM no_such_table"])
        .env("PLUVO_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_table"),
        "{last}"
    );

    // `query … | head -1`: the reader goes away; the command stops without a panic message.
    let mut child = run(&[
        "query",
        "--format",
        "csv",
        "SELECT range AS n FROM range(2000000)",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "the output was cut: not a success"
    );

    // The tables for people: `status` prints each section through the one table printer, so a
    // number column ends at the same place in every row.
    let out = run(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("table "))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(block.len() > 3, "{text}");
    let end = block[0].find("live").unwrap() + "live".len();
    for line in &block[1..] {
        let digits = line[..end].trim_end();
        assert_eq!(
            digits.len(),
            end,
            "`live` column drifts in {line:?}:\n{text}"
        );
        assert!(digits.ends_with(|c: char| c.is_ascii_digit()), "{line:?}");
    }
}
