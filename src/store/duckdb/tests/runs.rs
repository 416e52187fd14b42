//! Runs and checkpoints: bookkeeping, a crash mid-page, kill -9 at any point, then resume.

use super::*;

#[test]
fn runs_and_streams_are_recorded_and_killed_runs_become_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let clock = TestClock::new();
    let mut w = open(&path, &clock);
    let run = w.begin_run(&["users", "portfolio"]).unwrap();
    assert_eq!(run, RunId(1));
    w.begin_stream(run, "users").unwrap();
    clock.advance(5);
    let stats = StreamStats {
        rows: MergeStats {
            new: 3,
            changed: 2,
            unchanged: 1,
            duplicates: 0,
        },
        rows_deleted: 1,
        requests: 7,
        retries: 2,
        schema_drift: Some("User.nickname (unknown field)".into()),
        error: None,
    };
    w.record_stream(run, "users", &stats).unwrap();
    w.finish_run(run, RunStatus::Succeeded, None).unwrap();
    assert_eq!(
        dump(
            &w,
            "SELECT stream, rows_new, rows_changed, rows_unchanged, rows_deleted, requests,
                    retries, schema_drift, error,
                    (epoch_us(ended_at) - epoch_us(started_at)) // 1000000
             FROM _run_streams"
        ),
        [
            r#"Text("users") | BigInt(3) | BigInt(2) | BigInt(1) | BigInt(1) | BigInt(7) | BigInt(2) | Text("User.nickname (unknown field)") | Null | BigInt(5)"#
        ]
    );

    // A second run is killed (the Warehouse dropped without finish_run) ...
    let killed = w.begin_run(&["users"]).unwrap();
    assert_eq!(killed, RunId(2));
    drop(w);
    // ... and the next writer marks it.
    let w = open(&path, &clock);
    assert_eq!(
        dump(
            &w,
            "SELECT run_id, status, streams, ended_at IS NULL FROM _runs ORDER BY run_id"
        ),
        [
            r#"BigInt(1) | Text("succeeded") | List([Text("users"), Text("portfolio")]) | Boolean(false)"#,
            r#"BigInt(2) | Text("interrupted") | List([Text("users")]) | Boolean(true)"#,
        ]
    );
}

/// Source data for the crash tests: 10 pages of 20 users, each with two portfolio items, in
/// two versions ("before" and "after" some churn).
fn source_page(after: bool, page: usize) -> (RecordBatch, RecordBatch) {
    let ids = (page * 20..page * 20 + 20).filter(|i| !(after && i % 11 == 0));
    let ids: Vec<usize> = if after && page == 9 {
        ids.chain(200..210).collect()
    } else {
        ids.collect()
    };
    let users: Vec<_> = ids
        .iter()
        .map(|i| {
            let email = if after && i % 7 == 0 {
                "changed"
            } else {
                "orig"
            };
            user(&format!("u{i:03}"), &format!("{email}-{i}@x"))
        })
        .collect();
    let items: Vec<Item> = ids
        .iter()
        .flat_map(|i| {
            let bump = if after && i % 5 == 0 { 10.0 } else { 0.0 };
            let id = format!("u{i:03}");
            [
                item(&id, "Safety", 40.0 + bump, None),
                item(&id, "Privacy", 90.0, NaiveDate::from_ymd_opt(2025, 6, 1)),
            ]
        })
        .collect();
    (users_batch(&users), items_batch(&items))
}

const PAGES: usize = 10;

/// Sync the source version from the stream's checkpoint to the end, committing users and
/// their items together page by page.
fn sync_from_checkpoint(w: &mut Warehouse, after: bool, mut each_page: impl FnMut(usize)) {
    let run = w.begin_run(&["people"]).unwrap();
    let start = match w.checkpoint("people").unwrap() {
        Some(page) => page.parse::<usize>().unwrap() + 1,
        None => 0,
    };
    for page in start..PAGES {
        let (users, items) = source_page(after, page);
        w.commit(
            "people",
            run,
            &page.to_string(),
            vec![(&USERS, users), (&PORTFOLIO_ITEMS, items)],
        )
        .unwrap();
        each_page(page);
    }
    let end = ScanEnd {
        complete: true,
        tables: vec![(&USERS, Scope::All), (&PORTFOLIO_ITEMS, Scope::All)],
        next_checkpoint: None,
    };
    w.finish_scan("people", run, end).unwrap();
    w.finish_run(run, RunStatus::Succeeded, None).unwrap();
}

fn reference_content(after_run: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(&dir.path().join("ref.duckdb"), &TestClock::new());
    sync_from_checkpoint(&mut w, false, |_| {});
    if after_run {
        sync_from_checkpoint(&mut w, true, |_| {});
    }
    content(&w)
}

#[test]
fn crash_mid_page_and_resume_gives_identical_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let clock = TestClock::new();
    let mut w = open(&path, &clock);
    sync_from_checkpoint(&mut w, false, |_| {});

    // The second sync commits pages 0-3, then dies inside page 4's transaction.
    let run = w.begin_run(&["people"]).unwrap();
    for page in 0..5 {
        let (users, items) = source_page(true, page);
        w.fail_before_commit = page == 4;
        let result = w.commit(
            "people",
            run,
            &page.to_string(),
            vec![(&USERS, users), (&PORTFOLIO_ITEMS, items)],
        );
        assert_eq!(result.is_ok(), page < 4);
    }
    drop(w);

    let mut w = open(&path, &clock);
    assert_eq!(w.checkpoint("people").unwrap().as_deref(), Some("3"));
    let mut resumed = Vec::new();
    sync_from_checkpoint(&mut w, true, |page| resumed.push(page));
    assert_eq!(resumed, (4..PAGES).collect::<Vec<_>>());
    let got = content(&w);
    assert_eq!(got, reference_content(true));
    // The deletions and changes really happened (the comparison is not vacuous).
    assert!(got.iter().any(|l| l.ends_with("Boolean(false)")));
    assert_eq!(
        scalar::<String>(
            &w,
            "SELECT string_agg(status, ',' ORDER BY run_id) FROM _runs"
        ),
        "succeeded,interrupted,succeeded"
    );
}

#[test]
fn kill_9_at_any_point_then_resume_gives_identical_tables() {
    const TEST: &str =
        "store::duckdb::tests::runs::kill_9_at_any_point_then_resume_gives_identical_tables";
    if let Ok(path) = std::env::var(CHILD_ENV) {
        // Child: sync "after" from the checkpoint, announcing each committed page; the parent
        // kills it with SIGKILL somewhere in the middle.
        let mut w = open(Path::new(&path), &TestClock::new());
        sync_from_checkpoint(&mut w, true, |page| {
            println!("committed {page}");
            std::io::stdout().flush().unwrap();
        });
        println!("committed all");
        return;
    }
    let reference = reference_content(true);
    // Kill after different numbers of pages: before the first commit, mid-scan, at the end.
    for kill_after in [0usize, 3, 8] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        {
            let mut w = open(&path, &TestClock::new());
            sync_from_checkpoint(&mut w, false, |_| {});
        }
        let mut child = spawn_child(TEST, path.to_str().unwrap());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..kill_after {
            wait_for_line(&mut out, "committed").expect("child committed a page");
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let mut w = open(&path, &TestClock::new());
        let resume_from = w.checkpoint("people").unwrap();
        if kill_after == 3 {
            // At least pages 0-2 were committed, so this really resumes mid-scan.
            let page: usize = resume_from.as_deref().unwrap().parse().unwrap();
            assert!((2..PAGES).contains(&page), "{page}");
        }
        sync_from_checkpoint(&mut w, true, |_| {});
        assert_eq!(
            content(&w),
            reference,
            "killed after {kill_after} pages, resumed from {resume_from:?}"
        );
    }
}

/// The checkpoint that ends a sync may use two threads (nothing else runs then), and leaves
/// DuckDB on one again: the merges and the export of the next steps rely on one thread per
/// statement (`DUCKDB_THREADS`). Below a cap of `CHECKPOINT_MEMORY` it stays on one.
#[test]
fn the_checkpoint_at_the_end_empties_the_wal_and_leaves_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let threads = |w: &Warehouse| -> i64 {
        w.connection()
            .query_row("SELECT current_setting('threads')", [], |r| r.get(0))
            .unwrap()
    };
    for limit in ["80MB", "20MB"] {
        let mut w = Warehouse::open_with_memory_limit(&path, limit).unwrap();
        w.connection()
            .execute_batch(&format!(
                "CREATE OR REPLACE TABLE scratch AS SELECT range AS n, \
                 sha256(range::VARCHAR || '{limit}') AS t FROM range(60000)"
            ))
            .unwrap();
        let wal = path.with_extension("duckdb.wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(
            size() > 1_000_000,
            "{limit}: the rows are in the WAL: {}",
            size()
        );
        w.checkpoint_at_end().unwrap();
        assert!(
            size() < 10_000,
            "{limit}: the WAL is in the file: {} bytes",
            size()
        );
        assert_eq!(threads(&w), 1, "{limit}");
        let (rows, distinct): (i64, i64) = w
            .connection()
            .query_row("SELECT count(*), count(DISTINCT t) FROM scratch", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((rows, distinct), (60_000, 60_000), "{limit}");
        w.close().unwrap();
    }
}
