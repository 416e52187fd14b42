//! `bench webhook`: a loopback client posts signed events to a `webhook serve` receiver at a
//! fixed rate (2,000/s for 10 s by default), then checks the table: every event stored once,
//! none lost, none doubled. Prints answer times (median, p90, p99) and the rate achieved.
//!
//! Answer time is measured from each event's scheduled send time, so a receiver that falls
//! behind shows it in the tail (no coordinated omission).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use super::Summary;
use crate::config::Secret;
use crate::sim::webhooks::sign;
use crate::store::Warehouse;
use crate::webhook::{Options, Receiver};

const KEY: &str = "bench-webhook-key";

/// Send `rate` events/s for `seconds`, at most `in_flight` unanswered at once.
pub async fn run(rate: u32, seconds: u64, in_flight: usize) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("pluvo-bench-webhook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let db = dir.join("bench-webhook.duckdb");
    let warehouse = Warehouse::open(&db)?;
    let receiver = Receiver::start(
        warehouse,
        Options {
            bind: "127.0.0.1:0".parse()?,
            path: "/pluvo/webhook".into(),
            key: Secret::new(KEY),
            max_body: 1 << 20,
            refresh: None,
            limits: crate::webhook::Limits::default(),
        },
    )
    .await?;
    let url = Arc::new(receiver.url());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    let total = u64::from(rate) * seconds;
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due).await;
        let slot = slots.clone().acquire_owned().await?;
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&json!({
                "event": "USER_UPDATED", "id": format!("u-{i}"), "ref": format!("emp-{}", i % 5000),
                "sentDate": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "name": "Bench User", "archived": false,
            }))
            .expect("JSON serialises");
            let salt = format!("salt-{i}");
            let status = http
                .post(url.as_str())
                .header("X-Signature-Salt", &salt)
                .header("X-Signature", sign(KEY, &salt, &body))
                .body(body)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            drop(slot);
            (status, due.elapsed())
        }));
    }
    let mut times = Vec::with_capacity(tasks.len());
    let mut not_ok = 0u64;
    for task in tasks {
        let (status, took) = task.await?;
        if status != 200 {
            not_ok += 1;
        }
        times.push(took);
    }
    let elapsed = start.elapsed();
    let stats = receiver.stop().await?;
    let (rows, distinct): (u64, u64) = {
        let read = Warehouse::open_read_only(&db)?;
        read.connection()
            .query_row(
                "SELECT count(*), count(DISTINCT payload->>'$.id') FROM webhook_events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .context("counting stored events")?
    };
    let summary = Summary::of(&mut times);
    println!(
        "webhook receiver: {total} signed events offered at {rate}/s over {seconds} s, {} in flight max",
        in_flight
    );
    println!(
        "  sent in {:.2} s = {:.0} events/s; answers not 200: {not_ok}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("  answer time (from scheduled send): {summary}");
    println!(
        "  stored rows {rows} (distinct events {distinct}), receiver counted {} stored, {} duplicates",
        stats.stored, stats.duplicates
    );
    println!(
        "  lost {}, duplicated {}",
        total.saturating_sub(distinct),
        rows - distinct
    );
    let _ = std::fs::remove_dir_all(&dir);
    if rows != total || distinct != total {
        bail!("{total} events sent but {rows} rows ({distinct} distinct) stored");
    }
    Ok(())
}
