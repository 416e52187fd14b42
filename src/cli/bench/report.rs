//! `bench report`: the HTML report and the compliance workbook of a synced simulated
//! organisation (default 100k users): wall time (median of rounds) and file size, so the
//! report is known to stay quick and small enough to e-mail as the organisation grows.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;

use crate::export::compliance::{self, Format};
use crate::pipeline::{SyncOptions, sync};
use crate::report::{self, Request};
use crate::store::Warehouse;
use crate::streams::Silent;

fn median(mut seconds: Vec<f64>) -> (f64, f64, f64) {
    seconds.sort_by(f64::total_cmp);
    (
        seconds[seconds.len() / 2],
        seconds[0],
        seconds[seconds.len() - 1],
    )
}

pub async fn run(users: usize, rounds: usize) -> Result<()> {
    let super::Org {
        sim, dir, config, ..
    } = super::Org::start("report", users, 3).await?;
    let started = Instant::now();
    sync(
        &config,
        &SyncOptions::default(),
        std::sync::Arc::new(Silent),
    )
    .await
    .context("the sync")?;
    let synced = started.elapsed().as_secs_f64();
    sim.stop().await;

    let warehouse = Warehouse::open_read_only(&config.db)?;
    let conn = warehouse.connection();
    let as_of = Utc::now().date_naive();
    let out = dir.join("report.html");
    let mut request = Request::new(as_of);
    request.source = format!("the warehouse {}", config.db.display());
    let mut seconds = Vec::new();
    let mut written = None;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        written = Some(report::write(conn, &request, &out)?);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let written = written.expect("at least one round");
    let (med, min, max) = median(seconds);
    println!(
        "report of {users} users ({} not archived), {rounds} rounds (sync took {synced:.1} s):",
        written.users
    );
    println!(
        "  html: median {med:.2} s (min {min:.2}, max {max:.2}); {:.0} KB, roster {} of {} rows listed",
        written.bytes as f64 / 1024.0,
        written.roster_shown,
        written.roster_total
    );

    let titles: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT title FROM certificates WHERE _deleted_at IS NULL AND title IS NOT NULL ORDER BY 1",
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let xlsx = dir.join("roster.xlsx");
    let mut seconds = Vec::new();
    let mut rows = 0;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        rows = compliance::write(
            conn,
            &compliance::Request {
                certificates: &titles,
                as_of,
                days: 90,
                format: Format::Xlsx,
                out: &xlsx,
            },
        )?
        .rows;
        seconds.push(started.elapsed().as_secs_f64());
    }
    let (med, min, max) = median(seconds);
    let (_, peak) = super::memory_mib();
    println!(
        "  xlsx ({} certificates, {rows} rows): median {med:.2} s (min {min:.2}, max {max:.2}); {:.1} MB; peak RSS of the process {peak:.0} MiB",
        titles.len(),
        std::fs::metadata(&xlsx)?.len() as f64 / 1_048_576.0
    );
    drop(warehouse);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
