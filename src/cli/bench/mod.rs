//! Benchmarks that print figures (`pluvo-warehouse bench ...`): medians and ratios over
//! repeated runs, never pass/fail assertions. Each benchmark starts its own simulator.

pub mod client;
pub mod export;
pub mod merge;
pub mod push;
pub mod report;
pub mod sim;
pub mod sync;
pub mod upload;
pub mod webhook;

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use crate::error::Exit;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Simulator start-up time and 50-row page latency
    Sim {
        /// Users generated for the start-up measurement
        #[arg(long, default_value_t = 1_000_000)]
        start_users: usize,
        /// Users in the organisation that pages are read from
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Pages timed per query
        #[arg(long, default_value_t = 300)]
        pages: usize,
    },
    /// Full sync and no-change re-sync (child process) vs a plain fetch of the same pages
    Sync {
        /// Users in the simulated organisation (about 5 portfolio items each)
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Latency the simulator adds to every answer, in milliseconds
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Requests in flight, for the sync and the plain fetch alike; `auto` for the sync
        /// (the plain fetch then runs at 4)
        #[arg(long, default_value = "4", value_name = "N|auto")]
        concurrency: crate::api::Concurrency,
        /// The simulator answers 429 above this many requests per second (none by default)
        #[arg(long)]
        rate_limit_rps: Option<f64>,
        /// Only the full sync: no plain fetch, no re-sync (for the largest organisations)
        #[arg(long)]
        full_only: bool,
        /// The simulator answers each query from memory after a first plain fetch, so that its
        /// own CPU hardly counts, as a fast server's: the figures are the tool's own cost (it
        /// keeps every answer: up to a few 100k users)
        #[arg(long)]
        replay: bool,
        /// DuckDB's memory cap for the syncs (`warehouse.memory_limit`, at least 20MB), e.g.
        /// `20MB` to see a small cap at scale [default: the tool's default]
        #[arg(long, value_parser = memory_limit, value_name = "SIZE")]
        memory_limit: Option<String>,
    },
    /// Webhook receiver under load: signed events at a fixed rate, answer times, none lost
    Webhook {
        /// Events per second offered
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        /// Seconds of load
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Most unanswered requests at once
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
    },
    /// Parquet export of a synced organisation: wall time, MB written, share of a sync
    Export {
        /// Users in the simulated organisation (about 5 portfolio items each)
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Exports timed (the median is reported)
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Upload of a synced organisation's snapshot to object storage: MB/s, files, wall time
    Upload {
        /// Where to publish: s3://bucket/prefix (credentials and `AWS_ENDPOINT` from the
        /// environment), gs://, az:// or file:///folder
        #[arg(long, value_name = "URL")]
        to: String,
        /// Users in the simulated organisation (about 5 portfolio items each)
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Uploads timed (the median is reported)
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The HTML report and the compliance workbook of a synced organisation: time and size
    Report {
        /// Users in the simulated organisation (about 5 portfolio items each)
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Reports timed (the median is reported)
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The warehouse merge alone (no HTTP): full load and no-change reload, peak RSS
    Merge {
        /// Users (5 portfolio items each)
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Rows handed to the warehouse at a time (staged; merged in groups sized to the cap)
        #[arg(long, default_value_t = 5_000)]
        commit_rows: usize,
        /// DuckDB memory cap, e.g. 64MB [default: the sync's]
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Write-back: archive and add-to-group of N users, batched vs one mutation per request
    Push {
        /// Rows per action
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Latency the simulator adds to every answer, in milliseconds
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Requests in flight
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// API client vs a plain fetch loop: pages/s, rows/s, overhead
    Client {
        /// Users in the simulated organisation
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Latency the simulator adds to every answer, in milliseconds
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Concurrency levels to measure
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        concurrency: Vec<usize>,
        /// Rounds per level (the median is reported)
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

/// Run a benchmark; its figures go to stdout.
pub async fn run(command: BenchCommand) -> Result<Exit> {
    match command {
        BenchCommand::Sim {
            start_users,
            users,
            pages,
        } => {
            let report = sim::run(start_users, users, pages).await?;
            println!("{report}");
            Ok(Exit::Ok)
        }
        BenchCommand::Sync {
            users,
            latency_ms,
            concurrency,
            rate_limit_rps,
            full_only,
            replay,
            memory_limit,
        } => {
            let latency = Duration::from_millis(latency_ms);
            let server = sync::Server {
                latency,
                rate_limit_rps,
                replay,
            };
            sync::run(users, server, concurrency, full_only, memory_limit).await?;
            Ok(Exit::Ok)
        }
        BenchCommand::Webhook {
            rate,
            seconds,
            in_flight,
        } => {
            webhook::run(rate, seconds, in_flight).await?;
            Ok(Exit::Ok)
        }
        BenchCommand::Export { users, rounds } => {
            export::run(users, rounds).await?;
            Ok(Exit::Ok)
        }
        BenchCommand::Upload { to, users, rounds } => {
            upload::run(users, rounds, &to).await?;
            Ok(Exit::Ok)
        }
        BenchCommand::Report { users, rounds } => {
            report::run(users, rounds).await?;
            Ok(Exit::Ok)
        }
        BenchCommand::Merge {
            users,
            commit_rows,
            memory_limit,
        } => {
            merge::run(users, commit_rows.max(1), memory_limit.as_deref())?;
            Ok(Exit::Ok)
        }
        BenchCommand::Push {
            rows,
            latency_ms,
            concurrency,
        } => {
            let latency = Duration::from_millis(latency_ms);
            push::run(rows, latency, concurrency).await?;
            Ok(Exit::Ok)
        }
        BenchCommand::Client {
            users,
            latency_ms,
            concurrency,
            rounds,
        } => {
            let latency = Duration::from_millis(latency_ms);
            client::run(users, latency, &concurrency, rounds).await?;
            Ok(Exit::Ok)
        }
    }
}

/// Median, p90 and p99 of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Summary {
        samples.sort();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i].as_secs_f64() * 1000.0
        };
        Summary {
            n: samples.len(),
            median_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            self.n, self.median_ms, self.p90_ms, self.p99_ms
        )
    }
}

pub use crate::store::alloc::memory_mib;

/// A token from the simulator's own credentials, fetched with a plain HTTP client.
pub async fn sim_token(
    http: &reqwest::Client,
    sim: &crate::sim::Sim,
    scope: Option<&str>,
) -> anyhow::Result<String> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", sim.client_id()),
        ("client_secret", sim.client_secret()),
    ];
    form.extend(scope.map(|scope| ("scope", scope)));
    let answer: serde_json::Value = http
        .post(format!("{}/oauth/token/", sim.url()))
        .form(&form)
        .send()
        .await?
        .json()
        .await?;
    answer["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the simulator answered no token: {answer}"))
}

/// `--memory-limit`: a memory amount as `warehouse.memory_limit` takes it.
fn memory_limit(text: &str) -> Result<String, String> {
    crate::config::parse_memory_limit(text)
        .ok_or_else(|| format!("`{text}` is not a memory amount of at least 20MB, like \"64MB\""))
}

/// A benchmark's simulated organisation, with a scratch folder holding a configuration that
/// points at it (`pluvo-warehouse.toml`, warehouse `bench.duckdb`) and that configuration
/// loaded with the simulator's secret, as a user's environment would give it.
pub struct Org {
    pub sim: crate::sim::Sim,
    pub dir: std::path::PathBuf,
    pub config_file: std::path::PathBuf,
    pub config: crate::config::Config,
}

impl Org {
    /// Start an organisation of `users` generated from `seed`, for the benchmark `name`
    /// (its folder is `<tmp>/pluvo-bench-<name>-<pid>`; the caller removes it).
    pub async fn start(name: &str, users: usize, seed: u64) -> anyhow::Result<Org> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = crate::sim::Sim::start(crate::sim::SimConfig {
            users,
            seed,
            ..crate::sim::SimConfig::default()
        })
        .await?;
        let dir = std::env::temp_dir().join(format!("pluvo-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config_file = dir.join("pluvo-warehouse.toml");
        let config =
            super::demo::config_for_sim(&sim, &config_file, &dir.join("bench.duckdb"), "bench")?;
        Ok(Org {
            sim,
            dir,
            config_file,
            config,
        })
    }
}
