//! A `sync` process killed with SIGKILL at several moments, then run again, ends with the same
//! tables as an uninterrupted sync; the killed runs are recorded as `interrupted`; the WAL a
//! killed sync leaves is replayed under the memory cap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pluvo_warehouse::sim::{Faults, SimConfig};
use pluvo_warehouse::store::Warehouse;

use crate::support::{SpillWatch, command, config_file, rows, sim_with, sync};

/// Data columns per table (bookkeeping excluded), as in `tests/sync.rs`.
const TABLES: &[&str] = &[
    "SELECT id, ref, name, email, last_login, archived, language, roles, extra_fields, _deleted_at IS NULL FROM users ORDER BY id",
    "SELECT item_key, user_id, title, occurrence, progress, score, completion_date, end_date, time_spent_seconds, _deleted_at IS NULL FROM portfolio_items ORDER BY item_key",
    "SELECT group_id, user_id, role, _deleted_at IS NULL FROM group_members ORDER BY ALL",
    "SELECT id, name, _deleted_at IS NULL FROM certificates ORDER BY id",
    "SELECT id, ref, user_count, _deleted_at IS NULL FROM groups ORDER BY id",
    "SELECT id, title, _deleted_at IS NULL FROM trainings ORDER BY id",
    "SELECT item_key, progress, valid_to IS NULL FROM portfolio_item_history ORDER BY ALL",
];

/// `pluvo-warehouse --quiet --config CONFIG --db DB sync`, secret from the environment only.
fn sync_command(config: &Path, db: &Path, secret: &str) -> Command {
    command(config, db, secret, &["sync"])
}

// Multi-threaded: the simulator keeps serving while this thread waits for the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_resumes_to_the_same_tables() {
    kill_and_resume(5, Faults::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_under_faults_resumes_to_the_same_tables() {
    kill_and_resume(
        8,
        Faults {
            fail_rate: 0.1,
            truncate_rate: 0.05,
            rate_limit_rps: Some(150.0),
            ..Faults::default()
        },
    )
    .await;
}

/// Kill a sync (slowed down, with `faults`) at several moments, run it to its end, and compare
/// with an uninterrupted, fault-free sync of the same organisation.
async fn kill_and_resume(seed: u64, faults: Faults) {
    let sim = sim_with(SimConfig {
        users: 1500,
        seed,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.duckdb");
    sync(&sim, &reference, false).await;

    // Slow the source down so that a sync takes about a second and can be killed midway.
    sim.set_faults(Faults {
        latency: Duration::from_millis(15),
        ..faults
    });
    let db = dir.path().join("killed.duckdb");
    let config = config_file(&sim, dir.path());
    let run = || {
        sync_command(&config, &db, sim.client_secret())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts")
    };
    let mut killed = 0;
    for after_ms in [150, 400, 700, 1000] {
        let mut child = run();
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL: no cleanup, no rollback handler
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        killed >= 2,
        "the sync was killed midway at least twice ({killed})"
    );
    let last = run().wait_with_output().unwrap();
    assert!(
        last.status.success(),
        "final sync: {}",
        String::from_utf8_lossy(&last.stderr)
    );

    for sql in TABLES {
        assert_eq!(rows(&reference, sql), rows(&db, sql), "{sql}");
    }
    let statuses = rows(
        &db,
        "SELECT status, count(*) FROM _runs GROUP BY ALL ORDER BY ALL",
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("interrupted")),
        "killed runs are marked interrupted: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("succeeded")),
        "{statuses:?}"
    );
    assert_eq!(
        rows(
            &db,
            "SELECT stream, state::JSON ->> 'part' IS NULL FROM _checkpoints ORDER BY ALL"
        ),
        vec!["portfolio | true"],
        "a finished sync leaves no scan position, only the portfolio's window state"
    );
}

// A second sync on a warehouse that a running sync holds fails at once with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_fails_at_once_while_one_runs() {
    let sim = sim_with(SimConfig {
        users: 1500,
        seed: 6,
        ..SimConfig::default()
    })
    .await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(30),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.duckdb");
    let config = config_file(&sim, dir.path());
    let second = || sync_command(&config, &db, sim.client_secret());
    let mut first = second()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first sync is still running"
    );
    let started = std::time::Instant::now();
    let out = second().output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    assert!(stderr.contains(&format!("PID {}", first.id())), "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "fails at once, took {took:?}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

/// A warehouse at `path` whose last 100 MB of committed rows (more than the default cap a
/// reader replays them under) are only in its WAL, as a sync killed before its checkpoint
/// leaves it: five inserts of 100k rows (each under a row group, so DuckDB logs the rows
/// rather than writing them to the file) and no checkpoint at close.
fn killed_with_a_large_wal(path: &Path) {
    let w = Warehouse::open(path).unwrap();
    w.connection()
        .execute_batch("PRAGMA disable_checkpoint_on_shutdown; CREATE TABLE scratch (t VARCHAR)")
        .unwrap();
    for part in 0..5 {
        w.connection()
            .execute_batch(&format!(
                "INSERT INTO scratch SELECT repeat(sha256(({part} * 100000 + range)::VARCHAR), 3) \
                 FROM range(100000)"
            ))
            .unwrap();
    }
    drop(w);
    let wal = std::fs::metadata(path.with_extension("duckdb.wal"))
        .unwrap()
        .len();
    assert!(wal > 90_000_000, "the WAL holds the rows: {wal} bytes");
}

/// DuckDB replays a WAL while the file opens, before any `SET` runs: uncapped, replaying the
/// 165 MB a killed 100k-user sync left held 273 MiB. Under the cap the replayed rows that do
/// not fit spill beside the file, for the writer and for a reader alike, and a reader's
/// queries then get DuckDB's default memory and threads again.
#[test]
fn a_wal_left_by_a_killed_sync_replays_under_the_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let spill_folder = path.with_extension("duckdb.tmp");
    let count = |w: &Warehouse| -> i64 {
        w.connection()
            .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
            .unwrap()
    };
    let settings = |conn: &duckdb::Connection| -> (String, i64) {
        conn.query_row(
            "SELECT current_setting('memory_limit'), current_setting('threads')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    killed_with_a_large_wal(&path);

    let spill = SpillWatch::start(spill_folder.clone());
    let reader = Warehouse::open_read_only(&path).unwrap();
    let spilled = spill.stop();
    assert!(
        spilled >= 262_144,
        "the reader's replay spilled {spilled} bytes"
    );
    assert_eq!(count(&reader), 500_000);
    let default = duckdb::Connection::open_in_memory().unwrap();
    assert_eq!(settings(reader.connection()), settings(&default));
    drop(reader);

    let spill = SpillWatch::start(spill_folder);
    let writer = Warehouse::open_with_memory_limit(&path, "20MB").unwrap();
    let spilled = spill.stop();
    assert!(
        spilled >= 262_144,
        "the writer's replay spilled {spilled} bytes"
    );
    assert_eq!(count(&writer), 500_000);
    assert_eq!(writer.memory_limit(), Some(20_000_000));
}
