//! `bench merge`: the warehouse's merge alone, without HTTP: a full load and a no-change
//! reload of N users with 5 portfolio items each, in pages of 50 rows, staged as a sync stages
//! them (`--commit-rows` rows at a time, merged in groups sized to the memory cap), then the end-of-scan soft-delete pass. Prints wall time, time in
//! commits, peak RSS and file size per pass (for tuning the merge SQL and the commit size).

use std::time::{Duration, Instant};

use anyhow::Result;
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, TimeZone, Utc};

use crate::store::tables::{PORTFOLIO_ITEMS, TableSpec, USERS, portfolio_item_key};
use crate::store::{BatchBuilder, MergeStats, RunStatus, ScanEnd, Scope, Warehouse};

/// Rows per page, as the API serves them.
const PAGE: usize = 50;

pub fn run(users: usize, commit_rows: usize, memory_limit: Option<&str>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("pluvo-bench-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.duckdb");
    let mut w = Warehouse::open(&path)?;
    if let Some(limit) = memory_limit {
        w.set_memory_limit(limit)?;
    }
    let user_pages = users.div_ceil(PAGE);
    let item_pages = (users * 5).div_ceil(PAGE);
    for pass in ["full load", "no-change reload"] {
        let started = Instant::now();
        let run = w.begin_run(&["users", "portfolio"])?;
        let mut totals = [MergeStats::default(); 2];
        for (n, (spec, stream, pages)) in [
            (&USERS, "users", user_pages),
            (&PORTFOLIO_ITEMS, "portfolio", item_pages),
        ]
        .into_iter()
        .enumerate()
        {
            let mut buffered = Vec::new();
            let mut rows = 0;
            let mut in_commit = Duration::ZERO;
            for p in 0..pages {
                let batch = if n == 0 {
                    users_page(p, users)?
                } else {
                    items_page(p, users * 5)?
                };
                rows += batch.num_rows();
                buffered.push((spec as &'static TableSpec, batch));
                if rows >= commit_rows || p + 1 == pages {
                    let t = Instant::now();
                    let mut stats =
                        w.stage(stream, run, &p.to_string(), std::mem::take(&mut buffered))?;
                    if p + 1 == pages {
                        for (table, more) in w.flush(stream)? {
                            *stats.entry(table).or_default() += more;
                        }
                    }
                    in_commit += t.elapsed();
                    totals[n] += stats.get(spec.table).copied().unwrap_or_default();
                    rows = 0;
                }
            }
            let commits_done = started.elapsed().as_secs_f64();
            w.finish_scan(
                stream,
                run,
                ScanEnd {
                    complete: true,
                    tables: vec![(spec, Scope::All)],
                    next_checkpoint: None,
                },
            )?;
            println!(
                "  {stream}: commits done at {commits_done:.1} s ({:.1} s in commit); \
                 scan finished at {:.1} s, peak RSS {:.0} MiB",
                in_commit.as_secs_f64(),
                started.elapsed().as_secs_f64(),
                super::memory_mib().1
            );
        }
        w.finish_run(run, RunStatus::Succeeded, None)?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
        println!(
            "{pass}: {users} users, {} items, staged {commit_rows} rows at a time: {:.1} s, \
             users {:?}, items {:?}, peak RSS {:.0} MiB, file {size:.0} MiB",
            users * 5,
            started.elapsed().as_secs_f64(),
            totals[0],
            totals[1],
            super::memory_mib().1
        );
    }
    w.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Page `p` of the users stream.
fn users_page(p: usize, users: usize) -> Result<RecordBatch> {
    let mut b = BatchBuilder::new(&USERS);
    let login = Utc.with_ymd_and_hms(2025, 12, 24, 18, 30, 15).unwrap();
    for i in p * PAGE..((p + 1) * PAGE).min(users) {
        let id = format!("u{i:07}");
        let mut row = b.row();
        row.set("id", id.as_str())?;
        row.set("ref", format!("ref-{id}"))?;
        row.set("name", format!("Name {id}"))?;
        row.set("email", format!("user{i}@example.org"))?;
        row.set("last_login", login)?;
        row.set("archived", false)?;
        row.set("language", "nl")?;
        row.set("roles", vec!["USER".to_string()])?;
        row.set("extra_fields", r#"{"team": "blue"}"#)?;
        b.push(row)?;
    }
    Ok(b.finish()?)
}

/// Page `p` of the portfolio stream: 5 trainings per user, a third of them completed.
fn items_page(p: usize, items: usize) -> Result<RecordBatch> {
    let mut b = BatchBuilder::new(&PORTFOLIO_ITEMS);
    for i in p * PAGE..((p + 1) * PAGE).min(items) {
        let user = format!("u{:07}", i / 5);
        let title = format!("Training {}", i % 5);
        let done =
            (i % 3 == 0).then(|| NaiveDate::from_ymd_opt(2025, 1 + (i % 12) as u32, 1).unwrap());
        let mut row = b.row();
        row.set(
            "item_key",
            portfolio_item_key(&user, "TRAINING", &title, None, 1),
        )?;
        row.set("user_ref", format!("ref-{user}"))?;
        row.set("user_id", user)?;
        row.set("related_object_type", "TRAINING")?;
        row.set("title", title)?;
        row.set("occurrence", 1)?;
        row.set("progress", (i % 101) as f64)?;
        row.set("score", None::<f64>)?;
        row.set("completion_date", done)?;
        row.set("end_date", done.map(|d| d + chrono::Duration::days(365)))?;
        row.set("time_spent_seconds", 3_600i64)?;
        b.push(row)?;
    }
    Ok(b.finish()?)
}
