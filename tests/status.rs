//! `status`: last run per stream, checkpoints, row counts and push plans, read-only; a locked
//! or missing warehouse is named with what to do.

use serde_json::Value;

use crate::support::{rows, run_bin, sim, sync};

/// `status --format json` of `db`, which must succeed.
async fn status_json(dir: &std::path::Path, db: &str) -> Value {
    let run = run_bin(dir, &["--db", db, "status", "--format", "json"], &[]).await;
    assert_eq!(run.code, Some(0), "status failed: {run:?}");
    serde_json::from_str(&run.stdout).expect("status --format json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_runs_checkpoints_counts_and_push_plans() {
    let sim = sim(120).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let first = sync(&sim, &db, false).await;
    let db_text = db.to_str().unwrap();

    let status = status_json(dir.path(), db_text).await;
    assert_eq!(status["last_run"]["run_id"], first.run_id);
    assert_eq!(status["last_run"]["status"], "succeeded");
    let streams = status["streams"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["users", "portfolio", "certificates", "groups", "trainings"]
    );
    for (s, o) in streams.iter().zip(&first.streams) {
        assert_eq!(s["stream"], o.stream);
        assert_eq!(s["status"], "succeeded", "{s}");
        assert_eq!(s["rows_new"], o.new, "{s}");
        assert_eq!(s["requests"], o.requests, "{s}");
        assert!(s["requests"].as_i64().unwrap() > 0, "{s}");
    }
    let users_live: i64 = rows(&db, "SELECT count(*) FROM users")[0].parse().unwrap();
    assert_eq!(users_live, 120);
    let users = &status["tables"][0];
    assert_eq!(
        (
            users["table"].as_str(),
            users["live"].as_i64(),
            users["deleted"].as_i64()
        ),
        (Some("users"), Some(120), Some(0))
    );
    // Between runs: no scan in progress; the portfolio keeps a state for its next window.
    let checkpoints = status["checkpoints"].as_array().unwrap();
    assert!(
        checkpoints.iter().all(|c| c["scan_in_progress"] == false),
        "{checkpoints:?}"
    );
    let portfolio = checkpoints
        .iter()
        .find(|c| c["stream"] == "portfolio")
        .expect("portfolio checkpoint");
    assert!(portfolio["state"].is_object(), "{portfolio}");
    assert_eq!(
        status["push_plans"],
        Value::Array(Vec::new()),
        "no push plans yet"
    );

    // A user disappears: the next run notes it missing, the one after (a second complete scan
    // without it) soft-deletes it, and status counts it as deleted.
    sim.edit(|d| d.users[0].deleted = true);
    sync(&sim, &db, false).await;
    let second = sync(&sim, &db, false).await;
    // A scan in progress and push plans, written as the tool would.
    {
        let config = pluvo_warehouse::store::duckdb_config(duckdb::AccessMode::ReadWrite);
        let conn = duckdb::Connection::open_with_flags(&db, config.unwrap()).unwrap();
        conn.execute_batch(
            r#"INSERT OR REPLACE INTO _checkpoints
                VALUES ('users', '{"part":1,"next_page":7}', 2, now());
            INSERT INTO _push_plans (plan_id, action, mutation, args, sql_text, params,
                rows_selected, rows_noop, rows_planned, status, created_at)
            SELECT plan_id, action, 'm', '{}', 'SELECT 1', '{}', n, 0, n, status, created_at
            FROM (VALUES
                (1, 'archive-users', 'done', 2, '2026-06-01 10:00:00+00'::TIMESTAMPTZ),
                (2, 'add-to-group', 'partial', 3, '2026-06-01 11:00:00+00'::TIMESTAMPTZ),
                (3, 'archive-users', 'done', 1, '2026-06-01 12:00:00+00'::TIMESTAMPTZ))
                AS p(plan_id, action, status, n, created_at);
            INSERT INTO _push_ledger (plan_id, row_key, seq, mutation, input, status, attempts)
            SELECT plan_id, 'r' || seq, seq, 'm', '{}', status, 1
            FROM (VALUES (1, 1, 'succeeded'), (1, 2, 'succeeded'), (2, 1, 'failed'),
                (2, 2, 'pending'), (2, 3, 'sent'), (3, 1, 'failed')) AS l(plan_id, seq, status);"#,
        )
        .unwrap();
    }
    let status = status_json(dir.path(), db_text).await;
    assert_eq!(status["last_run"]["run_id"], second.run_id);
    let users = &status["tables"][0];
    assert_eq!(
        (users["live"].as_i64(), users["deleted"].as_i64()),
        (Some(119), Some(1))
    );
    // The user and the rows that hung on it (its group memberships) are soft-deleted.
    let deleted = status["streams"][0]["rows_deleted"].as_u64().unwrap();
    assert_eq!(deleted, second.streams[0].deleted);
    assert!(deleted >= 1, "{deleted}");
    let users_cp = status["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stream"] == "users")
        .unwrap()
        .clone();
    assert_eq!(users_cp["scan_in_progress"], true);
    assert_eq!(
        (users_cp["part"].as_u64(), users_cp["next_page"].as_u64()),
        (Some(1), Some(7))
    );
    let plans: Vec<(i64, i64, i64)> = status["push_plans"]
        .as_array()
        .expect("push section when the tables exist")
        .iter()
        .map(|p| {
            (
                p["plan_id"].as_i64().unwrap(),
                p["rows_pending"].as_i64().unwrap(),
                p["rows_failed"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        plans,
        [(2, 2, 1), (3, 0, 1)],
        "done plans without failures are left out"
    );

    let table = run_bin(dir.path(), &["--db", db_text, "status"], &[]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    for expected in [
        "scan in progress: part 1, next page 7",
        "add-to-group",
        &format!("last run {}: succeeded", second.run_id),
    ] {
        assert!(
            table.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            table.stdout
        );
    }
    let users_line = table
        .stdout
        .lines()
        .find(|l| l.split_whitespace().collect::<Vec<_>>() == ["users", "119", "1"])
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(users_line.starts_with("users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_pid_of_a_writer_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let db_text = db.to_str().unwrap();

    let missing = run_bin(dir.path(), &["--db", db_text, "status"], &[]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("does not exist; run `pluvo-warehouse sync` first"),
        "{}",
        missing.stderr
    );

    // This process holds the writer's lock, as a running sync would.
    let writer = pluvo_warehouse::store::Warehouse::open(&db).unwrap();
    let locked = run_bin(
        dir.path(),
        &["--db", db_text, "status", "--format", "json"],
        &[],
    )
    .await;
    assert_eq!(locked.code, Some(1), "{locked:?}");
    assert!(locked.stdout.is_empty(), "{}", locked.stdout);
    let pid = format!("PID {}", std::process::id());
    assert!(
        locked.stderr.contains(&pid) && locked.stderr.contains("is in use by another process"),
        "{}",
        locked.stderr
    );
    writer.close().unwrap();

    let empty = run_bin(dir.path(), &["--db", db_text, "status"], &[]).await;
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert!(
        empty.stdout.contains("no sync has run yet"),
        "{}",
        empty.stdout
    );
}

/// Issue 22: monitoring must not cry wolf. While a writer (a sync, `webhook serve`) holds the
/// file, `status` answers from the published snapshot, exits 0 and says so with `busy`; the
/// last run and the row counts are those of the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_22_status_answers_from_the_snapshot_while_a_writer_holds_the_file() {
    let sim = sim(80).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let first = sync(&sim, &db, false).await;
    let db_text = db.to_str().unwrap();
    let free = status_json(dir.path(), db_text).await;
    assert_eq!(free["busy"], false);
    assert_eq!(free["source"], "warehouse");

    // This process holds the writer's lock, as a running sync would.
    let writer = pluvo_warehouse::store::Warehouse::open(&db).unwrap();
    let run = run_bin(
        dir.path(),
        &["--db", db_text, "status", "--format", "json"],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let busy: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(busy["busy"], true);
    assert_eq!(busy["source"], "snapshot");
    assert_eq!(busy["last_run"]["run_id"], first.run_id);
    assert_eq!(busy["last_run"]["status"], "succeeded");
    assert_eq!(busy["tables"], free["tables"], "the snapshot's counts");
    assert_eq!(busy["streams"], free["streams"]);
    assert!(
        run.stderr.contains("is being written by another process")
            && run.stderr.contains(&format!("PID {}", std::process::id())),
        "{}",
        run.stderr
    );
    // The monitoring check of docs/operations.md passes while the writer runs.
    assert!(
        busy["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "succeeded")
    );
    let table = run_bin(dir.path(), &["--db", db_text, "status"], &[]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(
        table.stdout.contains("busy: another process writes it"),
        "{}",
        table.stdout
    );
    writer.close().unwrap();
}

/// A configuration of only `[orgs]`: `status` shows every organisation's warehouse in turn
/// (one not synced yet is named, exit 1, the other still shown), `status --org NAME` shows
/// one without needing its secret, `export`, `views` and `webhook serve` say how to name a
/// warehouse (there is no `[pluvo]` one, and they do not create an empty one), one warehouse's snapshot and the side-by-side dataset never replace each
/// other in one folder, and an unknown name is a configuration error naming the known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_organisation_of_orgs() {
    let acme = sim(60).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pluvo-warehouse.toml"),
        format!(
            "[orgs.acme]\nurl = \"{url}\"\nclient_id = \"{id}\"\nsecret_env = \"ACME_SECRET\"\n\
             db = \"acme.duckdb\"\n\n[orgs.globex]\nurl = \"{url}\"\nclient_id = \"{id}\"\n\
             secret_env = \"GLOBEX_SECRET\"\ndb = \"globex.duckdb\"\n",
            url = acme.url(),
            id = acme.client_id()
        ),
    )
    .unwrap();
    let synced = run_bin(
        dir.path(),
        &["sync", "--org", "acme"],
        &[("ACME_SECRET", acme.client_secret())],
    )
    .await;
    assert_eq!(synced.code, Some(0), "{synced:?}");

    // Without --org: both organisations, acme's runs and globex's missing file.
    let all = run_bin(dir.path(), &["status", "--format", "json"], &[]).await;
    assert_eq!(all.code, Some(1), "{all:?}");
    let json: Value = serde_json::from_str(&all.stdout).expect("JSON");
    let orgs = json["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 2, "{json}");
    assert_eq!(orgs[0]["org"], "acme");
    assert_eq!(
        orgs[0]["status"]["last_run"]["status"], "succeeded",
        "{json}"
    );
    let users = orgs[0]["status"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "users")
        .unwrap()["live"]
        .as_i64()
        .unwrap();
    assert_eq!(users, 60, "{json}");
    assert_eq!(orgs[1]["org"], "globex");
    assert!(
        orgs[1]["error"].as_str().unwrap().contains("globex.duckdb"),
        "{json}"
    );
    assert!(all.stderr.contains("globex"), "{}", all.stderr);
    let table = run_bin(dir.path(), &["status"], &[]).await;
    assert!(
        table.stdout.contains("organisation acme") && table.stdout.contains("organisation globex"),
        "{}",
        table.stdout
    );

    // One organisation, no secret in the environment.
    let one = run_bin(
        dir.path(),
        &["status", "--org", "acme", "--format", "json"],
        &[],
    )
    .await;
    assert_eq!(one.code, Some(0), "{one:?}");
    let json: Value = serde_json::from_str(&one.stdout).expect("JSON");
    assert_eq!(json["last_run"]["status"], "succeeded", "{json}");
    assert!(
        json["db"].as_str().unwrap().ends_with("acme.duckdb"),
        "{json}"
    );

    // `export` has no `[pluvo]` warehouse to export here: it says how to name one.
    let export = run_bin(dir.path(), &["export"], &[]).await;
    assert_eq!(export.code, Some(2), "{export:?}");
    assert!(
        export.stderr.contains("acme, globex") && export.stderr.contains("acme.duckdb export"),
        "{}",
        export.stderr
    );
    // Nor `views` (which would create an empty `pluvo.duckdb`).
    let views = run_bin(dir.path(), &["views"], &[]).await;
    assert_eq!(views.code, Some(2), "{views:?}");
    assert!(
        views.stderr.contains("--db acme.duckdb views"),
        "{}",
        views.stderr
    );
    // Refused before it binds: a receiver that started would run until stopped.
    let receiver = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run_bin(
            dir.path(),
            &["webhook", "serve", "--bind", "127.0.0.1:0"],
            &[("PLUVO_WEBHOOK_KEY", "k")],
        ),
    )
    .await
    .expect("`webhook serve` refuses at once in a file of only [orgs]");
    assert_eq!(receiver.code, Some(2), "{receiver:?}");
    assert!(
        receiver.stderr.contains("--db acme.duckdb webhook serve"),
        "{}",
        receiver.stderr
    );
    assert!(!dir.path().join("pluvo.duckdb").exists());
    let acme_export = run_bin(dir.path(), &["--db", "acme.duckdb", "export"], &[]).await;
    assert_eq!(acme_export.code, Some(0), "{acme_export:?}");

    // One warehouse's snapshot never replaces the side-by-side dataset, nor the reverse.
    let combined = pluvo_warehouse::export::current_snapshot(&dir.path().join("pluvo-export"))
        .expect("the side-by-side dataset");
    let over = run_bin(
        dir.path(),
        &["--db", "acme.duckdb", "export", "--out", "pluvo-export"],
        &[],
    )
    .await;
    assert_eq!(over.code, Some(1), "{over:?}");
    assert!(
        over.stderr.contains("side-by-side dataset (acme)"),
        "{}",
        over.stderr
    );
    assert_eq!(
        pluvo_warehouse::export::current_snapshot(&dir.path().join("pluvo-export")),
        Some(combined)
    );
    let config = std::fs::read_to_string(dir.path().join("pluvo-warehouse.toml")).unwrap();
    std::fs::write(
        dir.path().join("single.toml"),
        format!("[warehouse]\nexport_dir = \"acme-export\"\n\n{config}"),
    )
    .unwrap();
    let reverse = run_bin(
        dir.path(),
        &["--config", "single.toml", "sync", "--org", "acme"],
        &[("ACME_SECRET", acme.client_secret())],
    )
    .await;
    assert_eq!(reverse.code, Some(1), "{reverse:?}");
    assert!(
        reverse
            .stderr
            .contains("holds the snapshots of one warehouse"),
        "{}",
        reverse.stderr
    );
    let acme_current =
        pluvo_warehouse::export::current_snapshot(&dir.path().join("acme-export")).unwrap();
    assert!(
        !acme_current.to_string_lossy().ends_with("-orgs"),
        "{}",
        acme_current.display()
    );

    let unknown = run_bin(dir.path(), &["status", "--org", "initech"], &[]).await;
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown.stderr.contains("initech") && unknown.stderr.contains("acme, globex"),
        "{}",
        unknown.stderr
    );
}
