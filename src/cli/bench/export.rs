//! `bench export`: the Parquet export of a synced simulated organisation (default 100k users,
//! ~500k portfolio items): wall time (median of rounds), MB written, rows/s, and the share of a
//! no-change `sync` that its publish step (views + export, which every successful sync runs)
//! takes.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;

use crate::export::{Options, export};
use crate::pipeline::{SyncOptions, sync};
use crate::store::Warehouse;
use crate::streams::Silent;

pub async fn run(users: usize, rounds: usize) -> Result<()> {
    let super::Org {
        sim, dir, config, ..
    } = super::Org::start("export", users, 3).await?;
    let db = config.db.clone();
    let args = SyncOptions::default();
    let started = Instant::now();
    sync(&config, &args, std::sync::Arc::new(Silent))
        .await
        .context("the first sync")?;
    let full_sync = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sync(&config, &args, std::sync::Arc::new(Silent))
        .await
        .context("the no-change sync")?;
    let no_change_sync = started.elapsed().as_secs_f64();
    sim.stop().await;

    let warehouse = Warehouse::open_read_only(&db)?;
    let out = dir.join("export");
    let mut seconds = Vec::new();
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let report = export(warehouse.connection(), &Options::new(&out), Utc::now())?;
        seconds.push(started.elapsed().as_secs_f64());
        last = Some(report);
    }
    drop(warehouse);
    let report = last.expect("at least one round");
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let rows: u64 = report.manifest.tables.iter().map(|t| t.rows).sum();
    let mb = report.manifest.bytes() as f64 / 1_048_576.0;
    let db_mb = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
    println!(
        "export of {users} users ({rows} rows in {} tables), {} rounds:",
        report.manifest.tables.len(),
        seconds.len()
    );
    for t in &report.manifest.tables {
        println!(
            "  {:<24} {:>9} rows {:>5} files {:>8.2} MB",
            t.name,
            t.rows,
            t.files,
            t.bytes as f64 / 1_048_576.0
        );
    }
    println!(
        "  wall time: median {median:.2} s (min {:.2}, max {:.2}); {mb:.1} MB written \
         ({:.0} MB/s, {:.0}k rows/s); the DuckDB file is {db_mb:.1} MB",
        seconds[0],
        seconds[seconds.len() - 1],
        mb / median,
        rows as f64 / median / 1000.0
    );
    println!(
        "  sync with publish: full {full_sync:.1} s, no-change {no_change_sync:.1} s; \
         the export is {:.0}% of a no-change sync",
        100.0 * median / no_change_sync
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
