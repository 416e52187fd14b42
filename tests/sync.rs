//! `sync` against the simulator: a full sync equals the simulator's data, a second sync writes
//! nothing, churn + incremental sync equals a fresh full sync, history records changes,
//! deletions are soft, and a killed sync resumes to the same tables.

use std::collections::BTreeSet;
use std::time::Duration;

use pluvo_warehouse::sim::{Faults, Kind, SimConfig};

use crate::support::{rows, sim, sim_with, sync};

/// Data columns of every table (no `_` bookkeeping columns), in key order: two warehouses
/// with equal answers hold the same data.
const TABLES: &[(&str, &str)] = &[
    (
        "users",
        "SELECT id, ref, name, email, last_login, archived, language, roles, extra_fields, _deleted_at IS NULL FROM users ORDER BY id",
    ),
    (
        "portfolio_items",
        "SELECT item_key, user_id, user_ref, related_object_type, title, occurrence, progress, score, completion_date, end_date, time_spent_seconds, _deleted_at IS NULL FROM portfolio_items ORDER BY item_key",
    ),
    (
        "certificates",
        "SELECT id, name, title, _deleted_at IS NULL FROM certificates ORDER BY id",
    ),
    (
        "groups",
        "SELECT id, ref, name, user_count, _deleted_at IS NULL FROM groups ORDER BY id",
    ),
    (
        "group_members",
        "SELECT group_id, user_id, role, group_ref, user_ref, _deleted_at IS NULL FROM group_members ORDER BY ALL",
    ),
    (
        "trainings",
        "SELECT id, ref, title, is_active, archived, start_date, end_date, _deleted_at IS NULL FROM trainings ORDER BY id",
    ),
];

/// Live rows only (what a fresh full sync of the current state would hold).
fn live(db: &std::path::Path, table: &str, sql: &str) -> Vec<String> {
    let live_sql = sql.replace(
        &format!("FROM {table} ORDER BY"),
        &format!("FROM {table} WHERE _deleted_at IS NULL ORDER BY"),
    );
    rows(db, &live_sql)
}

#[tokio::test]
async fn a_full_sync_equals_the_simulator_row_for_row() {
    let sim = sim(260).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let outcome = sync(&sim, &db, false).await;
    let d = sim.data();

    let mut want: Vec<String> = d
        .users
        .iter()
        .map(|u| {
            format!(
                "{} {} {} {:?} {}",
                u.id,
                u.ref_.clone().unwrap(),
                u.name,
                u.last_login.map(|t| t.timestamp()),
                u.archived
            )
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = rows(
        &db,
        "SELECT id || ' ' || ref || ' ' || name || ' ' || \
         coalesce('Some(' || epoch(last_login::TIMESTAMP)::BIGINT || ')', 'None') || ' ' || archived FROM users",
    );
    got.sort();
    assert_eq!(got, want);

    let items: usize = d.users.iter().map(|u| u.items.len()).sum();
    let count = |sql: &str| rows(&db, sql)[0].clone();
    let n = |v: usize| v.to_string();
    assert_eq!(count("SELECT count(*) FROM portfolio_items"), n(items));
    let certs = d
        .users
        .iter()
        .flat_map(|u| &u.items)
        .filter(|i| i.kind == Kind::Certificate)
        .count();
    assert_eq!(
        count("SELECT count(*) FROM portfolio_items WHERE related_object_type = 'CERTIFICATE'"),
        n(certs)
    );
    // Sum of progress and of time spent, to the unit.
    let progress: f64 = d
        .users
        .iter()
        .flat_map(|u| &u.items)
        .map(|i| i.progress)
        .sum();
    let spent: u64 = d
        .users
        .iter()
        .flat_map(|u| &u.items)
        .map(|i| i.time_spent_secs as u64)
        .sum();
    assert_eq!(
        count("SELECT sum(progress)::BIGINT FROM portfolio_items"),
        (progress.round() as i64).to_string()
    );
    assert_eq!(
        count("SELECT sum(time_spent_seconds)::BIGINT FROM portfolio_items"),
        spent.to_string()
    );
    let retaken = d
        .users
        .iter()
        .map(|u| {
            let titles: Vec<_> = u.items.iter().map(|i| (i.kind, i.title.clone())).collect();
            titles.len() - titles.iter().collect::<BTreeSet<_>>().len()
        })
        .sum::<usize>();
    assert_eq!(
        count("SELECT count(*) FROM portfolio_items WHERE occurrence > 1"),
        n(retaken)
    );

    let members: usize = d.users.iter().map(|u| u.memberships.len()).sum();
    assert_eq!(count("SELECT count(*) FROM group_members"), n(members));
    assert_eq!(
        count("SELECT count(*) FROM certificates"),
        n(d.certificates.len())
    );
    assert_eq!(count("SELECT count(*) FROM groups"), n(d.groups.len()));
    assert_eq!(
        count("SELECT count(*) FROM trainings"),
        n(d.trainings.len())
    );
    assert!(outcome.streams.iter().all(|s| s.complete));

    // Types: real DATE / TIMESTAMPTZ columns.
    let types = rows(
        &db,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name IN ('users','portfolio_items') AND column_name IN ('last_login','completion_date','end_date') ORDER BY ALL",
    );
    assert_eq!(
        types,
        vec![
            "completion_date | DATE",
            "end_date | DATE",
            "last_login | TIMESTAMP WITH TIME ZONE"
        ]
    );
}

#[tokio::test]
async fn a_second_sync_without_changes_writes_nothing() {
    let sim = sim(150).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let before: Vec<Vec<String>> = TABLES.iter().map(|(_, sql)| rows(&db, sql)).collect();
    let updated_before = rows(&db, "SELECT max(_updated_at) FROM users");
    let second = sync(&sim, &db, false).await;
    for s in &second.streams {
        assert_eq!((s.new, s.changed, s.deleted), (0, 0, 0), "{s:?}");
        assert!(s.unchanged > 0, "{s:?}");
    }
    let after: Vec<Vec<String>> = TABLES.iter().map(|(_, sql)| rows(&db, sql)).collect();
    assert_eq!(before, after);
    assert_eq!(
        updated_before,
        rows(&db, "SELECT max(_updated_at) FROM users")
    );
    let runs = rows(
        &db,
        "SELECT sum(rows_new + rows_changed + rows_deleted) FROM _run_streams WHERE run_id = (SELECT max(run_id) FROM _runs)",
    );
    assert_eq!(runs, vec!["0"], "_run_streams records zero writes");
}

#[tokio::test]
async fn churn_then_incremental_sync_equals_a_fresh_full_sync() {
    let sim = sim(200).await;
    let dir = tempfile::tempdir().unwrap();
    let incremental = dir.path().join("inc.duckdb");
    sync(&sim, &incremental, false).await;
    for _ in 0..3 {
        sim.tick(80);
        sync(&sim, &incremental, false).await;
    }
    let fresh = dir.path().join("fresh.duckdb");
    sync(&sim, &fresh, true).await;
    for (table, sql) in TABLES {
        assert_eq!(
            live(&incremental, table, sql),
            live(&fresh, table, sql),
            "table `{table}`"
        );
    }
    let deleted_users = sim.with_data(|d| d.users.iter().filter(|u| u.deleted).count());
    assert!(deleted_users > 0, "churn deleted someone");
    assert_eq!(
        rows(
            &incremental,
            "SELECT count(*) FROM users WHERE _deleted_at IS NOT NULL"
        ),
        vec![deleted_users.to_string()]
    );
    let versions = rows(
        &incremental,
        "SELECT count(*) FROM (SELECT item_key FROM portfolio_item_history GROUP BY item_key HAVING count(*) > 1)",
    );
    assert_ne!(versions, vec!["0"], "history holds changed items");
    let open = rows(
        &incremental,
        "SELECT count(*) FROM portfolio_item_history WHERE valid_to IS NULL",
    );
    let live_items = rows(
        &incremental,
        "SELECT count(*) FROM portfolio_items WHERE _deleted_at IS NULL",
    );
    assert_eq!(open, live_items, "one open version per live item");
}

#[tokio::test]
async fn a_sync_under_faults_gives_the_same_tables() {
    let sim = sim_with(SimConfig {
        users: 180,
        seed: 11,
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.duckdb");
    sync(&sim, &clean, false).await;
    sim.set_faults(Faults {
        fail_rate: 0.1,
        truncate_rate: 0.05,
        rate_limit_rps: Some(80.0),
        ..Faults::default()
    });
    let faulty = dir.path().join("faulty.duckdb");
    let outcome = sync(&sim, &faulty, false).await;
    assert!(outcome.retries > 0, "faults caused retries: {outcome:?}");
    for (table, sql) in TABLES {
        assert_eq!(rows(&clean, sql), rows(&faulty, sql), "table `{table}`");
    }
}
