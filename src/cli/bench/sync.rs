//! `bench sync`: a full sync and a no-change re-sync of a simulated organisation, run as a
//! child process (so its peak RSS is its own, not the simulator's), against a plain fetch of
//! the same pages at the same concurrency.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::api::{AUTO_START, Concurrency, Operation, queries};
use crate::sim::{Faults, Sim};

/// One sync run of the child process.
#[derive(Debug)]
struct ChildRun {
    seconds: f64,
    peak_rss_mib: f64,
    /// The largest anonymous part of the RSS sampled (the rest is mostly the binary's code
    /// pages, about 50 MiB once DuckDB has run a sync's statements).
    peak_anon_mib: f64,
    writes: u64,
    rows: u64,
    /// Seconds of the publish step (views + Parquet export) inside the sync.
    publish_seconds: f64,
    /// The sync's own seconds (before publishing) and the writer thread's busy part of
    /// them: near 100% the warehouse, not the server, sets the pace.
    sync_seconds: f64,
    writer_seconds: f64,
    /// CPU seconds (user + system) the child used: the tool's own work, whatever the
    /// simulator in this process cost.
    cpu_seconds: f64,
}

impl ChildRun {
    /// How much of the sync the writer thread was busy, e.g. "writer busy 5.0 of the sync's
    /// 6.8 s (74%)".
    fn writer_busy(&self) -> String {
        format!(
            "writer busy {:.1} of the sync's {:.1} s ({:.0}%)",
            self.writer_seconds,
            self.sync_seconds,
            100.0 * self.writer_seconds / self.sync_seconds.max(0.001)
        )
    }
}

/// CPU seconds (user + system) of the children waited for so far (0 off Unix).
#[cfg(not(unix))]
fn children_cpu_seconds() -> f64 {
    0.0
}

/// CPU seconds (user + system) of the children waited for so far.
#[cfg(unix)]
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// How the simulator of `bench sync` answers.
pub struct Server {
    pub latency: Duration,
    /// 429 above this many requests per second (syncs only).
    pub rate_limit_rps: Option<f64>,
    /// [`Faults::replay`], filled by a plain fetch first.
    pub replay: bool,
}

pub async fn run(
    users: usize,
    server: Server,
    concurrency: Concurrency,
    full_only: bool,
    memory_limit: Option<String>,
) -> Result<()> {
    let Server {
        latency,
        rate_limit_rps,
        replay,
    } = server;
    let super::Org {
        sim,
        dir,
        config_file: config,
        config: settings,
    } = super::Org::start("sync", users, 3).await?;
    sim.set_faults(Faults {
        latency,
        replay,
        ..Faults::default()
    });
    let scope = settings.api(crate::config::Access::Read)?.scope;
    let db = settings.db;
    if let Some(limit) = &memory_limit {
        // The syncs read it from the organisation's file, whose last table is [warehouse].
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&config)?;
        writeln!(file, "memory_limit = \"{limit}\"")?;
    }
    let cap = memory_limit.map_or_else(String::new, |limit| format!(", memory_limit {limit}"));

    let plain_concurrency = match concurrency {
        Concurrency::Fixed(n) => n,
        Concurrency::Auto => AUTO_START,
    };
    if replay {
        // Every page answered once, to be replayed from now on.
        plain_fetch(&sim, &scope, plain_concurrency).await?;
    }
    let plain = if full_only {
        (f64::NAN, 0)
    } else {
        plain_fetch(&sim, &scope, plain_concurrency).await?
    };
    // The plain loop does not retry: the server's rate limit applies to the syncs only.
    sim.set_faults(Faults {
        latency,
        rate_limit_rps,
        replay,
        ..Faults::default()
    });
    sim.reset_counters();
    let full = child_sync(&sim, &config, &db, concurrency).await?;
    let refused_full = refused(&sim);
    let replayed_full = sim.counters().replayed;
    // The file after the full sync: a re-sync only adds to it what its checkpoint wrote.
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
    sim.reset_counters();
    let again = if full_only {
        None
    } else {
        Some(child_sync(&sim, &config, &db, concurrency).await?)
    };
    let refused_again = refused(&sim);
    println!(
        "sync of {users} users / {} rows at latency {} ms, concurrency {concurrency}{cap}:",
        full.rows,
        latency.as_millis()
    );
    if !full_only {
        println!(
            "  plain fetch of the same pages: {:.1} s ({} pages, concurrency {plain_concurrency})",
            plain.0, plain.1
        );
    }
    if replay {
        println!(
            "  simulator replaying answers from memory: {replayed_full} of the full sync's {} \
             GraphQL requests",
            refused_full.1
        );
    }
    if let Some(rps) = rate_limit_rps {
        println!(
            "  simulator limit {rps} requests/s: refused (429) {} of {} requests in the full \
             sync ({:.2}%), {} of {} in the re-sync ({:.2}%)",
            refused_full.0,
            refused_full.1,
            100.0 * refused_full.0 as f64 / refused_full.1.max(1) as f64,
            refused_again.0,
            refused_again.1,
            100.0 * refused_again.0 as f64 / refused_again.1.max(1) as f64,
        );
    }
    println!(
        "  full sync: {:.1} s{}, {:.0}k rows/s; export {:.1} s; \
         peak RSS {:.0} MiB (anonymous {:.0} MiB); file {size:.0} MiB; tool CPU {:.1} s ({:.0}k rows per CPU-second); {}",
        full.seconds,
        if full_only {
            String::new()
        } else {
            format!(" = {:.2}× the plain fetch", full.seconds / plain.0)
        },
        full.rows as f64 / full.seconds / 1000.0,
        full.publish_seconds,
        full.peak_rss_mib,
        full.peak_anon_mib,
        full.cpu_seconds,
        full.rows as f64 / full.cpu_seconds.max(0.001) / 1000.0,
        full.writer_busy(),
    );
    let Some(again) = again else {
        std::fs::remove_dir_all(&dir)?;
        return Ok(());
    };
    println!(
        "  no-change re-sync: {:.1} s = {:.2}× the plain fetch; export {:.1} s; rows written {} \
         (new + changed + deleted); peak RSS {:.0} MiB; tool CPU {:.1} s; {}",
        again.seconds,
        again.seconds / plain.0,
        again.publish_seconds,
        again.writes,
        again.peak_rss_mib,
        again.cpu_seconds,
        again.writer_busy(),
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// (429 answers, GraphQL requests) the simulator counted since its counters were reset.
fn refused(sim: &Sim) -> (u64, u64) {
    let counters = sim.counters();
    let refused = counters.faults.get("429").copied().unwrap_or(0);
    (refused, counters.graphql_requests)
}

/// Fetch every page a sync reads, with a plain reqwest loop (offsets in parallel).
/// Its token has the sync's `scope`, so that its answers are the sync's (and replayed to it).
async fn plain_fetch(sim: &Sim, scope: &str, concurrency: usize) -> Result<(f64, usize)> {
    let http = reqwest::Client::builder().gzip(true).build()?;
    let token = super::sim_token(&http, sim, Some(scope)).await?;
    let scans: [(Operation, Value); 6] = [
        (queries::USERS, json!({ "archived": false })),
        (queries::USERS, json!({ "archived": true })),
        (
            queries::PORTFOLIO,
            json!({ "relatedObjectTypes": ["TRAINING"] }),
        ),
        (
            queries::PORTFOLIO,
            json!({ "relatedObjectTypes": ["CERTIFICATE"] }),
        ),
        (queries::GROUPS, json!({})),
        (queries::TRAININGS, json!({})),
    ];
    let url = format!("{}/graphql/", sim.url());
    let started = Instant::now();
    let mut pages = 0;
    for (op, vars) in scans {
        let fetch = |offset: u64| {
            let (http, token, url) = (http.clone(), token.clone(), url.clone());
            let mut vars = vars.clone();
            vars["first"] = json!(50);
            vars["offset"] = json!(offset);
            async move {
                let body: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "query": op.document, "variables": vars, "operationName": op.name }))
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok(
                    body["data"][op.connection[0]]["count"]
                        .as_u64()
                        .unwrap_or(0),
                )
            }
        };
        let count = fetch(0).await?;
        let n = count.div_ceil(50).max(1);
        futures_util::stream::iter(1..n)
            .map(|k| fetch(k * 50))
            .buffered(concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        pages += n as usize;
    }
    Ok((started.elapsed().as_secs_f64(), pages))
}

/// Run `pluvo-warehouse sync` as a child process; sample its peak RSS until it exits.
async fn child_sync(
    sim: &Sim,
    config: &Path,
    db: &Path,
    concurrency: Concurrency,
) -> Result<ChildRun> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let cpu_before = children_cpu_seconds();
    let started = Instant::now();
    let child = Command::new(exe)
        .args(["--quiet", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db)
        .args([
            "sync",
            "--format",
            "json",
            "--concurrency",
            &concurrency.to_string(),
        ])
        .env("PLUVO_CLIENT_SECRET", sim.client_secret())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
    let (mut peak_kib, mut anon_kib) = (0.0f64, 0.0f64);
    while !waiter.is_finished() {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let field = |name: &str| crate::store::alloc::status_kib(&status, name).unwrap_or(0.0);
            peak_kib = peak_kib.max(field("VmHWM:"));
            anon_kib = anon_kib.max(field("RssAnon:"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = waiter.await??;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = children_cpu_seconds() - cpu_before;
    if !output.status.success() {
        bail!("sync failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let outcome: Value =
        serde_json::from_slice(&output.stdout).context("reading the sync summary")?;
    let sum = |field: &str| -> u64 {
        outcome["streams"]
            .as_array()
            .map(|s| s.iter().map(|x| x[field].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    Ok(ChildRun {
        seconds,
        peak_rss_mib: peak_kib / 1024.0,
        peak_anon_mib: anon_kib / 1024.0,
        writes: sum("new") + sum("changed") + sum("deleted"),
        rows: sum("new") + sum("changed") + sum("unchanged"),
        publish_seconds: outcome["publish_seconds"].as_f64().unwrap_or(0.0),
        sync_seconds: outcome["seconds"].as_f64().unwrap_or(0.0),
        writer_seconds: outcome["writer_seconds"].as_f64().unwrap_or(0.0),
        cpu_seconds,
    })
}
