//! Issue #16, "safe to leave unattended": a wrong answer from Pluvo never wipes the warehouse
//! or doubles an effect. One test per scenario, each driving the simulator into it: a gateway
//! that answers 504 while the mutation still takes effect; another organisation at the same
//! URL; empty lists; rows deleted and inserted between offset pages; a resumed scan; an old
//! unfinished plan. (Token failures: `client.rs`; fsync around the switch: `export::durable`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pluvo_warehouse::sim::{Faults, Seed, Sim, SimConfig};

use crate::support::{command, config_file, rows, sim_with, sync};

/// A synced warehouse next to a running simulator, with `extra` appended to its config file.
struct Env {
    sim: Sim,
    _dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
}

async fn synced(users: usize, seed: u64, extra: &str) -> Env {
    let sim = sim_with(SimConfig {
        users,
        seed,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pluvo.duckdb");
    sync(&sim, &db, false).await;
    let config = config_file(&sim, dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    Env {
        sim,
        _dir: dir,
        db,
        config,
    }
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        command(&self.config, &self.db, self.sim.client_secret(), args)
            .output()
            .expect("the binary runs")
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ledger(db: &Path, plan: i64) -> Vec<String> {
    rows(
        db,
        &format!(
            "SELECT status, count(*) FROM _push_ledger WHERE plan_id = {plan} GROUP BY ALL ORDER BY ALL"
        ),
    )
}

// ---------------------------------------------------------------- 1. 504, then applied

/// The acceptance case of scenario 1: the gateway answers every mutation 504 at once and the
/// backend issues the certificates 1.5 s later. The run that sent them never re-sends them
/// (exit 1, said plainly); `push resume` within the grace period sends nothing; after it, it
/// finds every certificate in the portfolio and sends nothing either. Every user holds the
/// certificate exactly once, and the ledger agrees with the simulator's counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_certificates_after_a_504_are_issued_exactly_once() {
    // The grace period leaves room for the first push (two 1.5 s gateway waits) and a process
    // start on a loaded machine: with 4 s, the "at once" resume below was sometimes already
    // past it.
    let env = synced(320, 21, "\n[push]\nsettle_after_secs = 8\n").await;
    let (template, title, refs): (String, String, BTreeSet<String>) = env.sim.with_data(|d| {
        let t = &d.certificates[1];
        let refs = d
            .users
            .iter()
            .filter(|u| !u.deleted)
            .filter_map(|u| u.ref_.clone())
            .take(300)
            .collect();
        (t.id.to_string(), t.title.to_string(), refs)
    });
    assert_eq!(refs.len(), 300);
    let list: Vec<String> = refs.iter().map(|r| format!("'{r}'")).collect();
    let query = format!("SELECT ref FROM users WHERE ref IN ({})", list.join(", "));
    env.sim.set_faults(Faults {
        gateway_timeout_rate: 1.0,
        gateway_apply_after: Duration::from_millis(1500),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let out = env.run(&[
        "push",
        "generate-certificate",
        "--certificate",
        &template,
        "--issue-date",
        "2026-07-23",
        "--query",
        &query,
        "--apply",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("300 rows of plan 1 have an unknown outcome")
            && err.contains("not sent again")
            && err.contains("push resume 1"),
        "{}",
        text(&out)
    );
    assert_eq!(ledger(&env.db, 1), vec!["sent | 300"]);

    // At once: still within the grace period, nothing is looked up or sent.
    let out = env.run(&["push", "resume", "1"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the push and this resume took {:?}, past the grace period: too slow a machine for this check",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("unknown outcome"), "{}", text(&out));
    assert_eq!(ledger(&env.db, 1), vec!["sent | 300"]);

    // After the grace period: settled from the portfolio, nothing re-sent.
    let wait = Duration::from_millis(8500).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let out = env.run(&["push", "resume", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(ledger(&env.db, 1), vec!["succeeded | 300"]);
    let verified = rows(
        &env.db,
        "SELECT count(*) FROM _push_ledger WHERE plan_id = 1 AND answer->>'verified' = 'portfolio'",
    );
    assert_eq!(verified, vec!["300"]);

    let c = env.sim.counters();
    assert_eq!(
        c.faults.get("504-then-apply"),
        Some(&2),
        "two requests (250 + 50 rows), never re-sent: {c:?}"
    );
    for r in &refs {
        let key = format!("generateCertificate:{title}:{r}");
        assert_eq!(c.applied.get(&key), Some(&1), "{key}: issued once");
    }
    assert_eq!(c.mutation_rows("generateCertificate"), 300, "no duplicate");
    let held: u64 = env.sim.with_data(|d| {
        d.users
            .iter()
            .filter(|u| u.ref_.as_ref().is_some_and(|r| refs.contains(r)))
            .map(|u| {
                u.items
                    .iter()
                    .filter(|i| &*i.title == title.as_str())
                    .filter(|i| i.completion_date == "2026-07-23".parse().ok())
                    .count() as u64
            })
            .sum()
    });
    assert_eq!(held, 300, "every user holds the certificate exactly once");
}

/// A new plan of a non-idempotent mutation that would send rows whose outcome is unknown in
/// another plan is refused until that plan is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_new_plan_does_not_resend_rows_of_unknown_outcome() {
    let env = synced(60, 22, "\n[push]\nsettle_after_secs = 600\n").await;
    let (template, title) = env.sim.with_data(|d| {
        let t = &d.certificates[0];
        (t.id.to_string(), t.title.to_string())
    });
    let query = "SELECT ref FROM users WHERE ref IS NOT NULL ORDER BY ref LIMIT 10";
    env.sim.set_faults(Faults {
        gateway_timeout_rate: 1.0,
        gateway_apply_after: Duration::from_millis(200),
        ..Faults::default()
    });
    let certify = |date: &str| {
        env.run(&[
            "push",
            "generate-certificate",
            "--certificate",
            &template,
            "--issue-date",
            date,
            "--query",
            query,
            "--apply",
        ])
    };
    let out = certify("2026-07-24");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    env.sim.set_faults(Faults::default());
    // The same users, another day: a second plan, refused before anything is sent.
    let out = certify("2026-07-25");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("plan 1 has 10 rows whose outcome is unknown")
            && stderr(&out).contains("push resume 1"),
        "{}",
        text(&out)
    );
    assert_eq!(ledger(&env.db, 2), vec!["pending | 10"]);
    // Pluvo applies plan 1's request 200 ms after its 504, and the second command can be
    // done sooner: wait for plan 1's certificates, then no row of plan 2 may exist.
    let issued = |date: &str| -> usize {
        let date = date.parse().ok();
        env.sim.with_data(|d| {
            d.users
                .iter()
                .flat_map(|u| &u.items)
                .filter(|i| &*i.title == title.as_str() && i.completion_date == date)
                .count()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while issued("2026-07-24") < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(issued("2026-07-24"), 10, "plan 1, applied after its 504");
    assert_eq!(issued("2026-07-25"), 0, "plan 2 sent nothing");
    assert_eq!(env.sim.counters().mutation_rows("generateCertificate"), 10);
}

// ---------------------------------------------------------------- 2. another organisation

/// Users of the warehouse that are not deleted.
fn live_users(db: &Path) -> u64 {
    rows(db, "SELECT count(*) FROM users WHERE _deleted_at IS NULL")[0]
        .parse()
        .unwrap()
}

/// Scenario 2: the URL now serves another organisation. The sync refuses before reading a
/// page: nothing merged, nothing deleted, exit 2, both organisations and the flag named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_another_organisation_at_the_same_url_is_refused() {
    let env = synced(150, 31, "").await;
    let before = rows(&env.db, "SELECT count(*), count(_deleted_at) FROM users");
    env.sim.replace_organisation(Seed {
        users: 120,
        seed: 32,
        anchor: "2026-06-01T12:00:00Z".parse().unwrap(),
    });
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("another organisation")
            && err.contains(&env.sim.url())
            && err.contains("--accept-organisation")
            && err.matches("fingerprint").count() >= 2,
        "{}",
        text(&out)
    );
    assert_eq!(
        rows(&env.db, "SELECT count(*), count(_deleted_at) FROM users"),
        before,
        "nothing merged, nothing deleted"
    );
    // A person looked: accepted, the warehouse now holds the new organisation.
    let out = env.run(&["sync", "--accept-organisation"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        live_users(&env.db),
        env.sim
            .with_data(|d| d.users.iter().filter(|u| !u.deleted).count()) as u64
    );
    let out = env.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the new organisation is recorded: {}",
        text(&out)
    );
}

/// Scenario 2: lists come back empty (rights narrowed). Nothing is deleted, the run says why
/// and exits 1; the published snapshot stays the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_empty_lists_delete_nothing() {
    let env = synced(150, 33, "").await;
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    env.sim.set_faults(Faults {
        empty_lists: true,
        ..Faults::default()
    });
    for _ in 0..2 {
        let out = env.run(&["sync"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains("returned no rows")
                && err.contains("`users`")
                && err.contains("--accept-deletes"),
            "{}",
            text(&out)
        );
        assert_eq!(
            rows(&env.db, "SELECT count(_deleted_at) FROM users"),
            vec!["0"]
        );
        assert_eq!(
            rows(&env.db, "SELECT count(_deleted_at) FROM portfolio_items"),
            vec!["0"]
        );
    }
}

/// Scenario 2: a scan that would delete more than `warehouse.max_delete_share` of a table
/// deletes nothing until a person accepts it with `--accept-deletes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_mass_delete_waits_for_a_person() {
    let env = synced(200, 34, "").await;
    let gone = env.sim.edit(|d| {
        let mut n = 0;
        for u in d
            .users
            .iter_mut()
            .filter(|u| !u.deleted && !u.archived)
            .take(80)
        {
            u.deleted = true;
            n += 1;
        }
        n
    });
    let live = live_users(&env.db);
    let out = env.run(&["sync", "--streams", "users"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{gone} of {live} rows of `users`"))
            && err.contains("warehouse.max_delete_share")
            && err.contains("--accept-deletes"),
        "{}",
        text(&out)
    );
    assert_eq!(live_users(&env.db), live, "nothing deleted");
    let out = env.run(&["sync", "--streams", "users", "--accept-deletes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        live_users(&env.db),
        live - gone as u64,
        "deleted once accepted"
    );
}

// ---------------------------------------------------------------- 3. rows that still exist

/// Warehouse users marked deleted that the simulator still has.
fn wrongly_deleted(env: &Env) -> Vec<String> {
    let live: BTreeSet<String> = env.sim.with_data(|d| {
        d.users
            .iter()
            .filter(|u| !u.deleted)
            .map(|u| u.id.to_string())
            .collect()
    });
    rows(
        &env.db,
        "SELECT id FROM users WHERE _deleted_at IS NOT NULL",
    )
    .into_iter()
    .filter(|id| live.contains(id))
    .collect()
}

/// Scenario 3: users are deleted and created between offset pages, so a row moves into a page
/// already read while `count` still matches. No user that exists is recorded deleted; the
/// users really deleted are, once two complete scans missed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_rows_shifting_between_pages_are_not_deleted() {
    let env = synced(200, 35, "").await;
    let deleted_before = env
        .sim
        .with_data(|d| d.users.iter().filter(|u| u.deleted).count());
    env.sim.set_faults(Faults {
        shift_pages: 3,
        ..Faults::default()
    });
    // One page at a time, so that every later page sees one more shift than the one before.
    let out = env.run(&["sync", "--streams", "users", "--concurrency", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deleted_now = env
        .sim
        .with_data(|d| d.users.iter().filter(|u| u.deleted).count());
    assert_eq!(deleted_now - deleted_before, 3, "the fault struck");
    assert_eq!(wrongly_deleted(&env), Vec::<String>::new());
    for _ in 0..2 {
        let out = env.run(&["sync", "--streams", "users"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(wrongly_deleted(&env), Vec::<String>::new());
    }
    let deleted: BTreeSet<String> = env.sim.with_data(|d| {
        d.users
            .iter()
            .filter(|u| u.deleted)
            .map(|u| u.id.to_string())
            .collect()
    });
    let recorded: BTreeSet<String> = rows(
        &env.db,
        "SELECT id FROM users WHERE _deleted_at IS NOT NULL",
    )
    .into_iter()
    .collect();
    assert_eq!(
        recorded, deleted,
        "the real deletions are recorded after two scans"
    );
}

/// Scenario 3: a scan resumed at a later offset page trusts pages a killed process read; it
/// deletes nothing (here: twice in a row, with the first pages never read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_resumed_offset_scan_deletes_nothing() {
    let env = synced(400, 36, "").await;
    for _ in 0..2 {
        // What a sync killed after its first page group leaves: a checkpoint at page 1.
        let conn = duckdb::Connection::open(&env.db).unwrap();
        conn.execute_batch(
            "DELETE FROM _checkpoints WHERE stream = 'users';
             INSERT INTO _checkpoints VALUES ('users', '{\"part\":0,\"next_page\":1}', 1, now());
             DELETE FROM _seen_users;",
        )
        .unwrap();
        drop(conn);
        let out = env.run(&["sync", "--streams", "users"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            rows(&env.db, "SELECT count(_deleted_at) FROM users"),
            vec!["0"]
        );
    }
}

// ---------------------------------------------------------------- 5. yesterday's plan

/// Scenario 5: `push ACTION --apply` does not resume an unfinished plan made long ago; it
/// plans anew from today's warehouse and says which plan it left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_an_old_unfinished_plan_is_not_resumed_silently() {
    let env = synced(120, 37, "").await;
    let archive = [
        "push",
        "archive-users",
        "--query",
        "SELECT ref FROM users WHERE NOT archived AND ref IS NOT NULL ORDER BY ref LIMIT 30",
        "--apply",
        "--batch-size",
        "10",
    ];
    let out = command(&env.config, &env.db, env.sim.client_secret(), &archive)
        .env("PLUVO_PUSH_CRASH", "sent:2")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let conn = duckdb::Connection::open(&env.db).unwrap();
    conn.execute_batch(
        "UPDATE _push_plans SET created_at = TIMESTAMPTZ '2026-01-01 06:00:00+00' WHERE plan_id = 1",
    )
    .unwrap();
    drop(conn);
    let plan1 = ledger(&env.db, 1);
    let out = env.run(&archive);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("plan 1") && stderr(&out).contains("push resume 1"),
        "{}",
        text(&out)
    );
    assert_eq!(rows(&env.db, "SELECT count(*) FROM _push_plans"), vec!["2"]);
    assert_eq!(ledger(&env.db, 1), plan1, "plan 1 left as it was");
}
