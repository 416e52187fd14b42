//! `push`: plans send nothing, every action's happy path against the simulator's state,
//! per-row failures, validation errors with zero mutations, and exactly-once under kills and
//! faults (the simulator counts every mutation row processed and applied, per target).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pluvo_warehouse::sim::{Faults, Sim, SimConfig};

use crate::support::{command, config_file, rows, sim_with, sync};

/// A synced warehouse next to a running simulator.
struct Env {
    sim: Sim,
    _dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
}

async fn synced(users: usize, seed: u64) -> Env {
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
    Env {
        sim,
        _dir: dir,
        db,
        config,
    }
}

impl Env {
    /// Let `push resume` look up lost answers of non-repeatable mutations at once: the
    /// simulator applies mutations before it answers, so there is nothing to wait for (the
    /// grace period itself is tested in `safety.rs`).
    fn settle_at_once(&self) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str("\n[push]\nsettle_after_secs = 0\n");
        std::fs::write(&self.config, text).unwrap();
    }

    /// Run `pluvo-warehouse push ARGS` to completion.
    fn push(&self, args: &[&str]) -> Output {
        let mut all = vec!["push"];
        all.extend_from_slice(args);
        command(&self.config, &self.db, self.sim.client_secret(), &all)
            .output()
            .expect("the binary runs")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.db.parent().unwrap().join(name)
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

fn inactive_sql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/views/inactive_users.sql")
}

/// The inactive set computed independently of the view and of `push`.
fn inactive_refs(db: &Path) -> BTreeSet<String> {
    rows(
        db,
        "SELECT ref FROM users WHERE _deleted_at IS NULL AND NOT archived
           AND (last_login IS NULL OR last_login::TIMESTAMP < now()::TIMESTAMP - INTERVAL 180 DAY)",
    )
    .into_iter()
    .collect()
}

fn archived_in_sim(sim: &Sim) -> BTreeSet<String> {
    sim.with_data(|d| {
        d.users
            .iter()
            .filter(|u| u.archived && !u.deleted)
            .filter_map(|u| u.ref_.clone())
            .collect()
    })
}

/// Ledger rows of a plan per status, e.g. `["succeeded | 12"]`.
fn ledger(db: &Path, plan: i64) -> Vec<String> {
    rows(
        db,
        &format!(
            "SELECT status, count(*) FROM _push_ledger WHERE plan_id = {plan} GROUP BY ALL ORDER BY ALL"
        ),
    )
}

/// Every `mutation:target` key of `refs` was applied exactly once; returns the rows processed
/// (applied + resends of idempotent mutations).
fn applied_once(sim: &Sim, mutation: &str, targets: &BTreeSet<String>) -> u64 {
    let c = sim.counters();
    let mut processed = 0;
    for t in targets {
        let key = format!("{mutation}:{t}");
        assert_eq!(c.applied.get(&key), Some(&1), "{key} applied once");
        processed += c.mutations[&key];
    }
    let prefix = format!("{mutation}:");
    let applied_total: u64 = c
        .applied
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        applied_total,
        targets.len() as u64,
        "{mutation}: nothing else applied"
    );
    processed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_inactive_users_plans_without_sending_then_archives_exactly_that_set() {
    let env = synced(600, 11).await;
    let selected = inactive_refs(&env.db);
    assert!(selected.len() > 100, "{}", selected.len());
    let archived_before = archived_in_sim(&env.sim);
    let sql = inactive_sql();
    let sql = sql.to_str().unwrap();

    // Dry run: a stored plan, zero mutations.
    let out = env.push(&["archive-users", "--sql", sql, "--param", "days=180"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "selected {} rows; 0 already in place (dropped); {} to send in",
            selected.len(),
            selected.len()
        )),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "quiet run: {}",
        text(&out)
    );
    let c = env.sim.counters();
    assert!(c.mutations.is_empty(), "dry run sent {:?}", c.mutations);
    assert_eq!(
        ledger(&env.db, 1),
        vec![format!("pending | {}", selected.len())]
    );
    let planned: BTreeSet<String> = rows(
        &env.db,
        "SELECT row_key FROM _push_ledger WHERE plan_id = 1",
    )
    .into_iter()
    .collect();
    assert_eq!(planned, selected);

    // Above --max-rows (default 500 would pass here, so ask for less): refused, nothing sent.
    let out = env.push(&["apply", "1", "--max-rows", "100"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "plan 1 has {} rows to send, more than --max-rows 100",
            selected.len()
        )),
        "{stderr}"
    );
    assert!(env.sim.counters().mutations.is_empty());

    // Apply: exactly the selected users are archived, each once, no notification.
    let out = env.push(&["apply", "1", "--max-rows", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let expected: BTreeSet<String> = archived_before.union(&selected).cloned().collect();
    assert_eq!(archived_in_sim(&env.sim), expected);
    let processed = applied_once(&env.sim, "updateOrCreateUser", &selected);
    assert_eq!(processed, selected.len() as u64, "no resend without faults");
    assert_eq!(env.sim.counters().notifications, 0);
    assert_eq!(
        ledger(&env.db, 1),
        vec![format!("succeeded | {}", selected.len())]
    );
    // Per-user mutations go as aliases: 50 per request.
    let requests = rows(
        &env.db,
        "SELECT count(DISTINCT batch) FROM _push_ledger WHERE plan_id = 1",
    );
    assert_eq!(requests, vec![selected.len().div_ceil(50).to_string()]);

    // The warehouse was updated: the view selects nobody now (nothing to do, no plan
    // stored), and the same refs selected directly are all dropped as already archived.
    let out = env.push(&["archive-users", "--sql", sql, "--param", "days=180"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to do"),
        "{}",
        text(&out)
    );
    let same = "SELECT row_key AS ref FROM _push_ledger WHERE plan_id = 1";
    let out = env.push(&["archive-users", "--query", same]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        ledger(&env.db, 2),
        vec![format!("noop | {}", selected.len())]
    );
    assert_eq!(archived_in_sim(&env.sim), expected, "plans sent nothing");
    let out = env.push(&["status", "1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("ledger: succeeded {}", selected.len())),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_to_group_drops_members_and_records_failed_refs() {
    let env = synced(300, 12).await;
    let group = rows(&env.db, "SELECT ref FROM groups ORDER BY ref LIMIT 1").remove(0);
    let members: BTreeSet<String> = rows(
        &env.db,
        &format!("SELECT user_ref FROM group_members WHERE group_ref = '{group}' AND role = 'participant' AND _deleted_at IS NULL"),
    )
    .into_iter()
    .collect();
    assert!(!members.is_empty());
    // The first 120 users (some already members) and one ref Pluvo does not know.
    let query =
        "SELECT ref FROM (SELECT ref FROM users ORDER BY ref LIMIT 120) UNION ALL SELECT 'NOPE-1'";
    let out = env.push(&["add-to-group", "--group", &group, "--query", query]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(env.sim.counters().mutations.is_empty(), "dry run");
    let first: BTreeSet<String> = rows(&env.db, "SELECT ref FROM users ORDER BY ref LIMIT 120")
        .into_iter()
        .collect();
    let already = first.intersection(&members).count();
    let to_add: BTreeSet<String> = first.difference(&members).cloned().collect();
    assert!(already > 0, "some selected users are members already");

    let out = env.push(&[
        "add-to-group",
        "--group",
        &group,
        "--query",
        query,
        "--apply",
        "--batch-size",
        "40",
    ]);
    assert_eq!(out.status.code(), Some(3), "a row failed: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NOPE-1"), "{stdout}");
    let targets: BTreeSet<String> = to_add.iter().map(|r| format!("{group}:{r}")).collect();
    applied_once(&env.sim, "addUsersToGroup", &targets);
    assert_eq!(
        env.sim.counters().mutation_rows("addUsersToGroup"),
        to_add.len() as u64,
        "members already in place were not sent"
    );
    assert_eq!(
        ledger(&env.db, 2),
        vec![
            "failed | 1".to_string(),
            format!("noop | {already}"),
            format!("succeeded | {}", to_add.len())
        ]
    );
    assert_eq!(
        rows(
            &env.db,
            "SELECT error FROM _push_ledger WHERE status = 'failed'"
        ),
        vec!["in `failedRefs` (unknown user?)"]
    );
    // 120 rows in batches of 40: three requests carried them all.
    assert_eq!(
        rows(
            &env.db,
            "SELECT count(DISTINCT batch) FROM _push_ledger WHERE plan_id = 2 AND batch IS NOT NULL"
        ),
        vec![(to_add.len() + 1).div_ceil(40).to_string()]
    );
    // The warehouse now shows the new members.
    let now_members = rows(
        &env.db,
        &format!(
            "SELECT count(*) FROM group_members WHERE group_ref = '{group}' AND role = 'participant' AND _deleted_at IS NULL"
        ),
    );
    assert_eq!(
        now_members,
        vec![(members.len() + to_add.len()).to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_selections_fail_clearly_and_send_nothing() {
    let env = synced(200, 13).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["archive-users", "--query", "SELECT id, email FROM users"],
            "`archive-users` needs a column `ref` in the selection, which has: id, email",
        ),
        (
            &[
                "archive-users",
                "--query",
                "SELECT ref FROM users UNION ALL SELECT ref FROM users ORDER BY 1 LIMIT 6",
            ],
            "refs appear more than once in the selection",
        ),
        (
            &[
                "archive-users",
                "--query",
                "SELECT NULL::VARCHAR AS ref UNION ALL SELECT 'EMP0000001'",
            ],
            "column `ref` is null or empty in 1 rows",
        ),
        (
            &[
                "archive-users",
                "--query",
                "SELECT last_login AS ref FROM users",
            ],
            "column `ref` is TIMESTAMP; it must be text",
        ),
        (
            &[
                "add-to-group",
                "--group",
                "NO-SUCH-GROUP",
                "--query",
                "SELECT ref FROM users",
            ],
            "group `NO-SUCH-GROUP` is not in the warehouse table `groups`",
        ),
        (
            &["archive-users", "--query", "SELECT ref FROM no_such_table"],
            "the selection failed in DuckDB",
        ),
        (
            &[
                "archive-users",
                "--query",
                "SELECT ref FROM users",
                "--apply",
                "--max-rows",
                "10",
            ],
            "rows to send, more than --max-rows 10; nothing was sent",
        ),
    ];
    for (args, message) in cases {
        let out = env.push(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let c = env.sim.counters();
    assert!(c.mutations.is_empty(), "{:?}", c.mutations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_applies_its_mutation() {
    let env = synced(200, 14).await;
    let d = env.sim.data();
    let archived: Vec<String> = d
        .users
        .iter()
        .filter(|u| u.archived)
        .take(3)
        .filter_map(|u| u.ref_.clone())
        .collect();
    let active: Vec<String> = d
        .users
        .iter()
        .filter(|u| !u.archived)
        .take(6)
        .filter_map(|u| u.ref_.clone())
        .collect();
    let values = |refs: &[String]| {
        refs.iter()
            .map(|r| format!("SELECT '{r}' AS ref"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let ok = |out: Output| assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    ok(env.push(&["unarchive-users", "--query", &values(&archived), "--apply"]));
    env.sim.with_data(|d| {
        for r in &archived {
            assert!(!d.users[d.user_by_ref(r).unwrap() as usize].archived, "{r}");
        }
    });

    let training = &d.trainings[0];
    ok(env.push(&[
        "add-to-training",
        "--training",
        &training.ref_,
        "--query",
        &values(&active),
        "--apply",
    ]));
    let c = env.sim.counters();
    for r in &active {
        let key = format!("addUsersToTraining:{}:{r}:PARTICIPANT", training.ref_);
        assert_eq!(c.mutations.get(&key), Some(&1), "{key}");
    }

    let event = &d.offer_events[0];
    ok(env.push(&[
        "enroll",
        "--offer-event",
        &event.ref_,
        "--query",
        &values(&active),
        "--apply",
    ]));
    env.sim.with_data(|d| {
        let e = d
            .offer_events
            .iter()
            .find(|e| e.ref_ == event.ref_)
            .unwrap();
        for r in &active {
            let seq = d.users[d.user_by_ref(r).unwrap() as usize].seq;
            assert!(e.enrollments.contains_key(&seq), "{r} enrolled");
        }
    });

    let template = &d.certificates[0];
    ok(env.push(&[
        "generate-certificate",
        "--certificate",
        &template.id.to_string(),
        "--issue-date",
        "2026-07-20",
        "--query",
        &values(&active),
        "--apply",
    ]));
    env.sim.with_data(|d| {
        for r in &active {
            let u = &d.users[d.user_by_ref(r).unwrap() as usize];
            let issued = u
                .items
                .iter()
                .filter(|i| {
                    *i.title == *template.title
                        && i.completion_date == Some("2026-07-20".parse().unwrap())
                })
                .count();
            assert_eq!(issued, 1, "{r}: one certificate");
        }
    });

    // The issue day was re-read into the warehouse after the apply.
    let issued = rows(
        &env.db,
        &format!(
            "SELECT count(DISTINCT user_ref) FROM portfolio_items WHERE related_object_type = 'CERTIFICATE'
               AND title = '{}' AND completion_date = DATE '2026-07-20' AND _deleted_at IS NULL",
            template.title
        ),
    );
    assert_eq!(issued, vec![active.len().to_string()]);

    let extra = format!(
        "SELECT ref, 'Dept ' || ref AS value FROM ({})",
        values(&active)
    );
    ok(env.push(&[
        "set-extra-field",
        "--category",
        "department",
        "--query",
        &extra,
        "--apply",
    ]));
    env.sim.with_data(|d| {
        for r in &active {
            let u = &d.users[d.user_by_ref(r).unwrap() as usize];
            assert_eq!(
                u.extra["department"],
                serde_json::json!(format!("Dept {r}"))
            );
        }
    });

    assert_eq!(
        rows(
            &env.db,
            &format!(
                "SELECT extra_fields->>'department' FROM users WHERE ref = '{}'",
                active[1]
            )
        ),
        vec![format!("Dept {}", active[1])],
        "the warehouse shows the new value"
    );

    // HR sync from a CSV file: one existing user renamed, one new user.
    let csv = env.path("people.csv");
    std::fs::write(
        &csv,
        format!(
            "ref,email,name,language,roles\n{},renamed@example.com,Renamed Person,nl,USER\nNEW-1,new.one@example.com,New One,en,\"USER,TRAINER\"\n",
            active[0]
        ),
    )
    .unwrap();
    let people = format!("select * from '{}'", csv.display());
    ok(env.push(&["upsert-users", "--sql", &people, "--apply"]));
    env.sim.with_data(|d| {
        let renamed = &d.users[d.user_by_ref(&active[0]).unwrap() as usize];
        assert_eq!(renamed.name, "Renamed Person");
        assert_eq!(renamed.email.as_deref(), Some("renamed@example.com"));
        let new = &d.users[d.user_by_ref("NEW-1").expect("created") as usize];
        assert_eq!(new.name, "New One");
        assert_eq!(new.role_names(), vec!["TRAINER", "USER"]);
    });
    assert_eq!(env.sim.counters().notifications, 0, "no --notify, no mail");
    assert_eq!(
        rows(&env.db, "SELECT name, email FROM users WHERE ref = 'NEW-1'"),
        vec!["New One | new.one@example.com"],
        "upserted users were re-read into the warehouse"
    );

    // Every plan is complete in the ledger.
    let open = rows(
        &env.db,
        "SELECT plan_id, status FROM _push_ledger WHERE status NOT IN ('succeeded', 'already', 'noop') ORDER BY ALL",
    );
    assert!(open.is_empty(), "{open:?}");
}

/// A certificate case: the template, the refs of the first `n` users, and the SQL selecting
/// them.
struct CertificateCase {
    template: String,
    title: String,
    refs: BTreeSet<String>,
    query: String,
}

fn certificate_case(sim: &Sim, n: usize) -> CertificateCase {
    let (template, title, refs): (String, String, BTreeSet<String>) = sim.with_data(|d| {
        let t = &d.certificates[1];
        let refs = d
            .users
            .iter()
            .take(n)
            .filter_map(|u| u.ref_.clone())
            .collect();
        (t.id.to_string(), t.title.to_string(), refs)
    });
    let list: Vec<String> = refs.iter().map(|r| format!("'{r}'")).collect();
    let query = format!("SELECT ref FROM users WHERE ref IN ({})", list.join(", "));
    CertificateCase {
        template,
        title,
        refs,
        query,
    }
}

/// `title:ref` keys of the simulator's `generateCertificate` counters.
fn certificate_targets(case: &CertificateCase) -> BTreeSet<String> {
    case.refs
        .iter()
        .map(|r| format!("{}:{r}", case.title))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_apply_resumes_and_applies_each_row_exactly_once() {
    let env = synced(400, 15).await;
    env.sim.set_faults(Faults {
        latency: Duration::from_millis(20),
        ..Faults::default()
    });
    // Archive 300 users, 10 per request, two requests in flight.
    let archive = [
        "archive-users",
        "--query",
        "SELECT ref FROM users WHERE NOT archived ORDER BY ref LIMIT 300",
        "--apply",
        "--batch-size",
        "10",
        "--concurrency",
        "2",
    ];
    let selected: BTreeSet<String> = rows(
        &env.db,
        "SELECT ref FROM users WHERE NOT archived ORDER BY ref LIMIT 300",
    )
    .into_iter()
    .collect();
    let crash = |args: &[&str], at: &str| {
        let mut all = vec!["push"];
        all.extend_from_slice(args);
        command(&env.config, &env.db, env.sim.client_secret(), &all)
            .env("PLUVO_PUSH_CRASH", at)
            .output()
            .unwrap()
    };
    // Killed right after a batch was marked sent (before it left), then right after an answer
    // arrived (applied on the server, not recorded): re-running the same apply resumes plan 1.
    for at in ["sent:3", "answered:4", "sent:1"] {
        let out = crash(&archive, at);
        assert_ne!(out.status.code(), Some(0), "{at}: {}", text(&out));
        let in_flight = rows(
            &env.db,
            "SELECT count(*) FROM _push_ledger WHERE plan_id = 1 AND status = 'sent'",
        );
        assert_ne!(in_flight, vec!["0"], "{at}: the kill left rows in flight");
    }
    // And a SIGKILL from outside at a moment the test does not choose.
    let mut child = command(
        &env.config,
        &env.db,
        env.sim.client_secret(),
        &[
            "push",
            "resume",
            "1",
            "--batch-size",
            "10",
            "--concurrency",
            "2",
        ],
    )
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(
        rows(&env.db, "SELECT count(*) FROM _push_plans"),
        vec!["1"],
        "every run resumed plan 1"
    );
    let out = env.push(&["resume", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    applied_once(&env.sim, "updateOrCreateUser", &selected);
    assert_eq!(
        ledger(&env.db, 1),
        vec![format!("succeeded | {}", selected.len())]
    );

    // generateCertificate is not idempotent: an answer lost to a kill must not issue twice.
    env.settle_at_once();
    let case = certificate_case(&env.sim, 60);
    let certify = [
        "generate-certificate",
        "--certificate",
        &case.template,
        "--issue-date",
        "2026-07-21",
        "--query",
        &case.query,
        "--apply",
        "--batch-size",
        "10",
        "--concurrency",
        "2",
    ];
    let out = crash(&certify, "answered:2");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let out = crash(&certify, "sent:2");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let out = env.push(&certify);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let targets = certificate_targets(&case);
    let processed = applied_once(&env.sim, "generateCertificate", &targets);
    assert_eq!(
        processed,
        case.refs.len() as u64,
        "no certificate issued twice"
    );
    let verified = rows(
        &env.db,
        "SELECT count(*) FROM _push_ledger WHERE plan_id = 2 AND answer->>'verified' = 'portfolio'",
    );
    assert_ne!(
        verified,
        vec!["0"],
        "the lost answer was settled from the portfolio"
    );
    assert_eq!(
        ledger(&env.db, 2),
        vec![format!("succeeded | {}", case.refs.len())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_break_exactly_once() {
    let env = synced(400, 16).await;
    env.sim.set_faults(Faults {
        fail_rate: 0.1,
        truncate_rate: 0.05,
        rate_limit_rps: Some(200.0),
        ..Faults::default()
    });
    let query = "SELECT ref FROM users WHERE NOT archived ORDER BY ref LIMIT 300";
    let selected: BTreeSet<String> = rows(&env.db, query).into_iter().collect();
    let out = env.push(&[
        "archive-users",
        "--query",
        query,
        "--apply",
        "--batch-size",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    applied_once(&env.sim, "updateOrCreateUser", &selected);
    assert_eq!(
        ledger(&env.db, 1),
        vec![format!("succeeded | {}", selected.len())]
    );

    // Answers of generateCertificate lost to a fault are never re-sent by the run that sent
    // them (exit 1); `push resume` looks them up and sends only what is missing.
    env.settle_at_once();
    let case = certificate_case(&env.sim, 200);
    let mut out = env.push(&[
        "generate-certificate",
        "--certificate",
        &case.template,
        "--issue-date",
        "2026-07-22",
        "--query",
        &case.query,
        "--apply",
        "--batch-size",
        "10",
    ]);
    for _ in 0..8 {
        if out.status.code() != Some(1) {
            break;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown outcome"),
            "{}",
            text(&out)
        );
        out = env.push(&["resume", "2"]);
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let targets = certificate_targets(&case);
    let processed = applied_once(&env.sim, "generateCertificate", &targets);
    assert_eq!(
        processed,
        case.refs.len() as u64,
        "no certificate issued twice"
    );
    assert_eq!(
        ledger(&env.db, 2),
        vec![format!("succeeded | {}", case.refs.len())]
    );
    let faults = env.sim.counters().faults;
    assert!(
        faults.contains_key("5xx-after") && faults.contains_key("truncated"),
        "{faults:?}"
    );
}
