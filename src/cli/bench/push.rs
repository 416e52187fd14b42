//! `bench push`: archive N users and add N users to a group through the real plan → apply
//! path against a simulator with latency, and report HTTP requests and wall time against one
//! mutation per request (measured on a sample with `--batch-size 1`, extrapolated to N).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::api::{Client, ClientOptions};
use crate::config::Config;
use crate::pipeline::{SyncOptions, sync};
use crate::push::{self, Action, Options, Selection};
use crate::sim::Faults;
use crate::store::Warehouse;
use crate::streams::Silent;

/// Rows sent one per request to measure the baseline (extrapolated to the full set).
const BASELINE_ROWS: usize = 200;

/// One measured apply.
struct Measured {
    rows: u64,
    requests: u64,
    seconds: f64,
}

pub async fn run(rows: usize, latency: Duration, concurrency: usize) -> Result<()> {
    // 8% of generated users are archived: this many leaves `rows` active ones to archive.
    let users = rows * 100 / 90 + BASELINE_ROWS * 2;
    let super::Org {
        sim, dir, config, ..
    } = super::Org::start("push", users, 4).await?;
    let args = SyncOptions {
        streams: vec!["users".into(), "groups".into()],
        ..SyncOptions::default()
    };
    sync(&config, &args, std::sync::Arc::new(Silent))
        .await
        .context("syncing the bench org")?;
    sim.set_faults(Faults {
        latency,
        ..Faults::default()
    });
    let warehouse = Warehouse::open(&config.db)?;
    let group: String = warehouse.connection().query_row(
        "SELECT ref FROM groups ORDER BY ref LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    let active = "SELECT ref FROM users WHERE NOT archived AND _deleted_at IS NULL ORDER BY ref";
    let cases = [
        (
            Action::ArchiveUsers,
            format!("{active} LIMIT {rows}"),
            format!("{active} DESC LIMIT {BASELINE_ROWS}"),
        ),
        (
            Action::AddToGroup {
                group: group.clone(),
            },
            format!(
                "SELECT ref FROM users WHERE ref NOT IN (SELECT user_ref FROM group_members
                   WHERE group_ref = '{group}') ORDER BY ref DESC LIMIT {rows}"
            ),
            format!(
                "SELECT ref FROM users WHERE ref NOT IN (SELECT user_ref FROM group_members
                   WHERE group_ref = '{group}') ORDER BY ref LIMIT {BASELINE_ROWS}"
            ),
        ),
    ];
    println!(
        "push benchmark at latency {} ms, concurrency {concurrency} ({users} simulated users):",
        latency.as_millis()
    );
    for (action, sql, baseline_sql) in cases {
        // The sample first: the batched run changes what the selections return.
        let single = measure(
            &config,
            &warehouse,
            &action,
            &baseline_sql,
            Some(1),
            concurrency,
        )
        .await?;
        let batched = measure(&config, &warehouse, &action, &sql, None, concurrency).await?;
        let per_row_seconds = single.seconds / single.rows.max(1) as f64;
        let single_seconds = per_row_seconds * batched.rows as f64;
        println!(
            "  {:<14} {} rows: {} HTTP requests, {:.1} s ({:.0} rows/s); one mutation per request: \
             {} requests, {:.1} s (measured on {} rows) → {:.0}× fewer requests, {:.1}× faster",
            action.name(),
            batched.rows,
            batched.requests,
            batched.seconds,
            batched.rows as f64 / batched.seconds,
            batched.rows,
            single_seconds,
            single.rows,
            batched.rows as f64 / batched.requests.max(1) as f64,
            single_seconds / batched.seconds,
        );
    }
    warehouse.close()?;
    sim.stop().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Plan and apply `sql` with a fresh client; the client's request count includes the token.
async fn measure(
    config: &Config,
    warehouse: &Warehouse,
    action: &Action,
    sql: &str,
    batch_size: Option<usize>,
    concurrency: usize,
) -> Result<Measured> {
    let client = Client::new(
        &config.api(crate::config::Access::Write)?,
        ClientOptions {
            concurrency,
            ..ClientOptions::default()
        },
    )?;
    let selection = Selection {
        sql: sql.to_string(),
        params: Default::default(),
    };
    let planned = push::plan(warehouse.connection(), action, false, &selection)?;
    let started = Instant::now();
    let outcome = push::apply(
        &client,
        warehouse,
        planned.plan_id,
        &Options {
            batch_size,
            concurrency,
            max_rows: u64::MAX,
            settle_after: push::apply::SETTLE_AFTER,
        },
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        outcome.complete(),
        "bench apply did not complete: {outcome:?}"
    );
    Ok(Measured {
        rows: outcome.sent,
        requests: client.stats().requests,
        seconds,
    })
}
