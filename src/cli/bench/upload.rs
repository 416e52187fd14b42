//! `bench upload`: publishing a synced simulated organisation's snapshot (default 100k users)
//! to object storage given by the user (`--to s3://bucket/prefix`, e.g. a local MinIO or moto
//! server through `AWS_ENDPOINT`): per round the wall time of the whole publish (upload,
//! pointer, pruning), MB/s and files; the median of the rounds. Each round uploads a new
//! snapshot (a new export of the same data), as every sync does.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;

use crate::export::remote::{self, Target};
use crate::export::{Options, export};
use crate::pipeline::{SyncOptions, sync};
use crate::store::Warehouse;
use crate::streams::Silent;

pub async fn run(users: usize, rounds: usize, to: &str) -> Result<()> {
    let target = Target::open(to).map_err(super::super::export::remote_usage)?;
    let super::Org {
        sim, dir, config, ..
    } = super::Org::start("upload", users, 3).await?;
    let started = Instant::now();
    sync(
        &config,
        &SyncOptions::default(),
        std::sync::Arc::new(Silent),
    )
    .await
    .context("the sync")?;
    let sync_seconds = started.elapsed().as_secs_f64();
    sim.stop().await;

    let warehouse = Warehouse::open_read_only(&config.db)?;
    let out = dir.join("export");
    println!(
        "upload of {users} users' snapshot to {} ({} rounds; synced in {sync_seconds:.1} s):",
        target.display(),
        rounds.max(1)
    );
    let mut seconds = Vec::new();
    let mut last = None;
    for round in 1..=rounds.max(1) {
        let report = export(warehouse.connection(), &Options::new(&out), Utc::now())?;
        let published = remote::publish(
            &target,
            &report.dir,
            &report.manifest,
            remote::GRACE,
            Utc::now(),
        )
        .await
        .with_context(|| format!("publishing to `{}`", target.display()))?;
        let mb = published.bytes as f64 / 1_048_576.0;
        println!(
            "  round {round}: {} files, {mb:.1} MB in {:.2} s, {:.1} MB/s, {:.0} files/s",
            published.files,
            published.seconds,
            mb / published.seconds.max(1e-9),
            published.files as f64 / published.seconds.max(1e-9)
        );
        seconds.push(published.seconds);
        last = Some((report, published));
    }
    drop(warehouse);
    let (report, published) = last.expect("at least one round");
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let mb = published.bytes as f64 / 1_048_576.0;
    let largest = report
        .manifest
        .tables
        .iter()
        .max_by_key(|t| t.bytes)
        .map(|t| format!("{} {:.1} MB", t.name, t.bytes as f64 / 1_048_576.0))
        .unwrap_or_default();
    println!(
        "  median {median:.2} s (min {:.2}, max {:.2}): {mb:.1} MB in {} files ({largest} the \
         largest table), {:.1} MB/s; files above {} MiB as multipart uploads, {} at once",
        seconds[0],
        seconds[seconds.len() - 1],
        published.files,
        mb / median,
        remote::PART_BYTES / 1_048_576,
        remote::CONCURRENCY
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
