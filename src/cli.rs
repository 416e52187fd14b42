//! Command-line interface: clap types, subcommand dispatch and everything printed to the
//! terminal (the only place that owns progress bars). Library modules return data and
//! errors; this module turns them into output and an exit code.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::api::{Client, ClientOptions};
use crate::config::{Config, Flags};
use crate::error::{Exit, UsageError, exit_code};
use crate::sim::{self, AuthErrorMode, Faults, Sim, SimConfig};
use crate::store::Warehouse;
use crate::streams::{self, StreamOutcome};

const EXIT_CODES: &str = "\
Exit codes: 0 ok, 1 error, 2 usage or configuration error, 3 finished but some rows failed.
Configuration: pluvo-warehouse.toml (see --config), then PLUVO_URL, PLUVO_CLIENT_ID,
PLUVO_CLIENT_SECRET, PLUVO_SCOPE from the environment, then flags.";

/// Pluvo learning platform → local DuckDB warehouse, Parquet export, and SQL-driven write-back.
#[derive(Debug, Parser)]
#[command(name = "pluvo-warehouse", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file [default: pluvo-warehouse.toml; env PLUVO_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// DuckDB warehouse file [default: pluvo.duckdb; env PLUVO_DB]
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Organisation base URL, e.g. https://acme.pluvo.com [env PLUVO_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Only errors and final results
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the built-in simulator, sync it into a warehouse, and show what the tool does
    Demo(DemoArgs),
    /// Extract Pluvo into the warehouse, incrementally (resumes after a crash)
    Sync(SyncArgs),
    /// Publish every table as Parquet (atomic snapshot + manifest); `export compliance`
    Export(crate::export::command::ExportArgs),
    /// Run SQL against the warehouse (its published snapshot while a sync writes it)
    Query(crate::query::QueryArgs),
    /// Install the analyst views of sql/views/ into the warehouse and list them
    Views,
    /// Write back: apply an action to the users a SQL query selects (plan first, exactly once)
    Push(crate::push::PushArgs),
    /// Write a commented pluvo-warehouse.toml and list the OAuth scopes the client needs
    Init(crate::init::InitArgs),
    /// Check configuration, token endpoint, credentials, scopes and the database file
    Doctor,
    /// Print a shell completion script (bash, zsh, fish, ...)
    Completions(crate::completions::CompletionsArgs),
    /// Last run per stream, checkpoints, row counts, pending push plans (read-only)
    Status(crate::status::StatusArgs),
    /// The built-in Pluvo simulator (tests, demos, benchmarks)
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Receive Pluvo webhooks into the warehouse in real time
    Webhook {
        #[command(subcommand)]
        command: crate::webhook::Command,
    },
    /// Benchmarks that print figures (medians, ratios, memory)
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Streams to sync, comma-separated [default: all: users,portfolio,certificates,groups,trainings]
    #[arg(long, value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Ignore checkpoints: re-read everything and reconcile
    #[arg(long)]
    pub full_refresh: bool,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Output of the run summary
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Folder for the demo's warehouse (kept afterwards)
    #[arg(long, default_value = "pluvo-demo")]
    pub dir: PathBuf,
    /// Users in the simulated organisation
    #[arg(long, default_value_t = 3_000)]
    pub users: usize,
}

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
        /// Requests in flight, for the sync and the plain fetch alike
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
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

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated organisation over HTTP (token endpoint + GraphQL)
    Serve(Box<ServeArgs>),
    /// Print the GraphQL schema (SDL) the simulator serves
    Sdl,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 8700)]
    pub port: u16,
    /// Address to bind; loopback by default
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Users in the generated organisation
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Seed of the generated data (same seed, same organisation)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Accepted OAuth client id
    #[arg(long, default_value = "demo")]
    pub client_id: String,
    /// Accepted OAuth client secret
    #[arg(long, default_value = "demo-secret")]
    pub client_secret: String,
    /// Scopes this client may be granted (space-separated; default all)
    #[arg(long)]
    pub scopes: Option<String>,
    /// Token lifetime in seconds
    #[arg(long, default_value_t = 86_400)]
    pub token_ttl: u64,
    /// Latency added to every answer, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Requests per second before answering 429 with Retry-After
    #[arg(long, value_name = "RPS")]
    pub rate_limit: Option<f64>,
    /// Probability of a 500/502/503 answer
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_rate: f64,
    /// Probability of a JSON body cut in the middle
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub truncate_rate: f64,
    /// How an expired token is answered: HTTP 401 or a GraphQL `errors[]` entry
    #[arg(long, value_enum, default_value_t = AuthErrorMode::Http)]
    pub auth_error: AuthErrorMode,
    /// Seconds before group membership changes become visible
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub membership_delay: u64,
    /// Random changes per churn tick (0 = no automatic churn)
    #[arg(long, default_value_t = 0)]
    pub churn: usize,
    /// Seconds between churn ticks
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub tick_secs: u64,
    /// Deliver signed webhooks of every change (mutations, churn) to this URL
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Environment variable that holds the webhook signing key
    #[arg(long, default_value = "PLUVO_WEBHOOK_KEY", value_name = "VAR")]
    pub webhook_key_env: String,
    /// Webhook events to deliver, comma-separated [default: all]
    #[arg(long, value_delimiter = ',', value_name = "EVENTS")]
    pub webhook_events: Vec<String>,
    /// Wait before the first webhook retry, in milliseconds (doubles each attempt)
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub webhook_backoff_ms: u64,
}

impl ServeArgs {
    fn sim_config(&self) -> Result<SimConfig> {
        for (name, p) in [
            ("--fail-rate", self.fail_rate),
            ("--truncate-rate", self.truncate_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(
                    UsageError::new(format!("`{name}` must be between 0 and 1, got {p}")).into(),
                );
            }
        }
        if self.rate_limit.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(UsageError::new(
                "`--rate-limit` must be a positive number of requests per second",
            )
            .into());
        }
        let mut config = SimConfig {
            users: self.users,
            seed: self.seed,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            token_ttl: Duration::from_secs(self.token_ttl),
            membership_delay: Duration::from_secs(self.membership_delay),
            faults: Faults {
                latency: Duration::from_millis(self.latency_ms),
                rate_limit_rps: self.rate_limit,
                fail_rate: self.fail_rate,
                truncate_rate: self.truncate_rate,
                auth_error: self.auth_error,
            },
            addr: SocketAddr::new(self.bind, self.port),
            ..SimConfig::default()
        };
        if let Some(url) = &self.webhook_url {
            let key = std::env::var(&self.webhook_key_env)
                .ok()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    UsageError::new(format!(
                        "`--webhook-url` needs the signing key in the environment variable `{}`",
                        self.webhook_key_env
                    ))
                })?;
            let mut webhook = sim::WebhookConfig::new(url.clone(), key);
            webhook.events = self.webhook_events.clone();
            webhook.backoff = Duration::from_millis(self.webhook_backoff_ms);
            config.webhook = Some(webhook);
        }
        if let Some(scopes) = &self.scopes {
            let unknown: Vec<&str> = scopes
                .split_whitespace()
                .filter(|s| !sim::ALL_SCOPES.contains(s))
                .collect();
            if !unknown.is_empty() {
                return Err(UsageError::new(format!(
                    "unknown scope(s) `{}`; known: {}",
                    unknown.join(" "),
                    sim::ALL_SCOPES.join(" ")
                ))
                .into());
            }
            config.scopes = scopes.split_whitespace().map(str::to_string).collect();
        }
        Ok(config)
    }
}

/// Parse the command line, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    crate::store::alloc::tune();
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {}", crate::error::message(&err));
            exit_code(&err).into()
        }
    }
}

fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "pluvo_warehouse=info,warn",
        (false, 1) => "pluvo_warehouse=debug,info",
        (false, _) => "pluvo_warehouse=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLUVO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let color = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}

async fn run(cli: Cli) -> Result<Exit> {
    let flags = Flags {
        config: cli.config.clone(),
        db: cli.db.clone(),
        url: cli.url.clone(),
    };
    let quiet = cli.quiet;
    match cli.command {
        Command::Demo(args) => crate::demo::run(&args.dir, args.users, quiet).await,
        Command::Sync(args) => {
            let config = Config::load(&flags)?;
            let outcome = sync(&config, &args, quiet).await?;
            print_sync(&outcome, args.format)?;
            // Also on stderr: with --quiet or --format json the table is all there is otherwise.
            let failed: Vec<&str> = outcome
                .streams
                .iter()
                .filter_map(|s| s.error.as_deref())
                .collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "{} of {} streams failed: {}",
                    failed.len(),
                    outcome.streams.len(),
                    failed.join("; ")
                );
            }
            Ok(Exit::Ok)
        }
        Command::Export(args) => crate::export::command::run(&Config::load(&flags)?, &args),
        Command::Query(args) => crate::query::run(&Config::load(&flags)?, &args),
        Command::Views => crate::views::run(&Config::load(&flags)?),
        Command::Push(args) => crate::push::run(&Config::load(&flags)?, &args, quiet).await,
        Command::Init(args) => crate::init::run(&args, &flags),
        Command::Doctor => crate::doctor::run(&flags).await,
        Command::Completions(args) => crate::completions::run(&args),
        Command::Status(args) => crate::status::run(&Config::load(&flags)?, &args),
        Command::Sim { command } => match command {
            SimCommand::Serve(args) => serve(*args).await,
            SimCommand::Sdl => {
                print!("{}", sim::sdl());
                Ok(Exit::Ok)
            }
        },
        Command::Webhook { command } => {
            crate::webhook::run(&Config::load(&flags)?, command, shutdown_signal(), quiet).await
        }
        Command::Bench { command } => match command {
            BenchCommand::Sim {
                start_users,
                users,
                pages,
            } => {
                let report = crate::bench::sim::run(start_users, users, pages).await?;
                println!("{report}");
                Ok(Exit::Ok)
            }
            BenchCommand::Sync {
                users,
                latency_ms,
                concurrency,
            } => {
                let latency = Duration::from_millis(latency_ms);
                crate::bench::sync::run(users, latency, concurrency).await?;
                Ok(Exit::Ok)
            }
            BenchCommand::Webhook {
                rate,
                seconds,
                in_flight,
            } => {
                crate::bench::webhook::run(rate, seconds, in_flight).await?;
                Ok(Exit::Ok)
            }
            BenchCommand::Export { users, rounds } => {
                crate::bench::export::run(users, rounds).await?;
                Ok(Exit::Ok)
            }
            BenchCommand::Push {
                rows,
                latency_ms,
                concurrency,
            } => {
                let latency = Duration::from_millis(latency_ms);
                crate::bench::push::run(rows, latency, concurrency).await?;
                Ok(Exit::Ok)
            }
            BenchCommand::Client {
                users,
                latency_ms,
                concurrency,
                rounds,
            } => {
                let latency = Duration::from_millis(latency_ms);
                crate::bench::client::run(users, latency, &concurrency, rounds).await?;
                Ok(Exit::Ok)
            }
        },
    }
}

async fn serve(args: ServeArgs) -> Result<Exit> {
    let config = args.sim_config()?;
    let started = std::time::Instant::now();
    let sim = Sim::start(config)
        .await
        .with_context(|| format!("starting the simulator on {}:{}", args.bind, args.port))?;
    let url = sim.url();
    let users = args.users;
    eprintln!(
        "Pluvo simulator: {users} users (seed {}) generated in {:.1}s, serving {url}",
        args.seed,
        started.elapsed().as_secs_f64()
    );
    eprintln!("  token:   POST {url}/oauth/token/   graphql: POST {url}/graphql/");
    eprintln!("  admin:   GET {url}/_sim/counters   POST {url}/_sim/tick?changes=N");
    if let Some(url) = &args.webhook_url {
        eprintln!(
            "  webhooks: POST {url} (signed with ${}; POST /_sim/webhooks/redeliver resends)",
            args.webhook_key_env
        );
    }
    println!("export PLUVO_URL={url}");
    println!("export PLUVO_CLIENT_ID={}", args.client_id);
    println!("export PLUVO_CLIENT_SECRET={}", args.client_secret);
    let ticker = (args.churn > 0).then(|| {
        let every = Duration::from_secs(args.tick_secs.max(1));
        (every, args.churn)
    });
    let mut interval = ticker
        .map(|(every, _)| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    loop {
        tokio::select! {
            _ = shutdown_signal() => break,
            _ = async { interval.as_mut().unwrap().tick().await }, if interval.is_some() => {
                let changes = sim.tick(ticker.map(|t| t.1).unwrap_or(0));
                tracing::info!(changes = changes.len(), "Churn tick applied.");
            }
        }
    }
    eprintln!("Simulator stopped.");
    sim.stop().await;
    Ok(Exit::Ok)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `sync`: open the warehouse (single writer), run the streams, return the outcome.
pub async fn sync(config: &Config, args: &SyncArgs, quiet: bool) -> Result<streams::Outcome> {
    streams::select(&args.streams).map_err(|e| UsageError::new(e.to_string()))?;
    let api_config = config.api()?;
    let client = Client::new(
        &api_config,
        ClientOptions {
            concurrency: args.concurrency as usize,
            ..ClientOptions::default()
        },
    )
    .context("creating the API client")?;
    // Credentials and URL first: if they are wrong, the warehouse is not even opened.
    client.authenticate().await?;
    let warehouse = Warehouse::open(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))?;
    warehouse
        .set_memory_limit(&config.memory_limit)
        .context("applying `warehouse.memory_limit`")?;
    let options = streams::Options {
        streams: args.streams.clone(),
        full_refresh: args.full_refresh,
    };
    let progress = Bars::new(quiet);
    let (warehouse, outcome) = streams::run(&client, warehouse, &options, progress)
        .await
        .context("sync")?;
    if !outcome.failed() {
        // Readers are never locked out: they read this snapshot while the next sync writes.
        let report = crate::export::command::after_sync(&warehouse, config)?;
        tracing::info!(dir = %report.dir.display(), seconds = report.seconds, "Snapshot published.");
    }
    warehouse.close().context("closing the warehouse")?;
    Ok(outcome)
}

/// Print a sync summary as a table (terminal) or JSON (monitoring).
pub fn print_sync(outcome: &streams::Outcome, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(outcome)?),
        Format::Table => {
            println!(
                "{:<13} {:>8} {:>8} {:>10} {:>8} {:>6} {:>8}  note",
                "stream", "new", "changed", "unchanged", "deleted", "pages", "seconds"
            );
            for s in &outcome.streams {
                let note = match (&s.error, s.complete, s.resumed) {
                    (Some(e), _, _) => format!("FAILED: {e}"),
                    (None, false, _) => "incomplete scan: no deletes this run".into(),
                    (None, true, true) => "resumed from checkpoint".into(),
                    _ => String::new(),
                };
                println!(
                    "{:<13} {:>8} {:>8} {:>10} {:>8} {:>6} {:>8.1}  {note}",
                    s.stream, s.new, s.changed, s.unchanged, s.deleted, s.pages, s.seconds
                );
            }
            println!(
                "run {}: {} requests, {} retries, {:.1}s",
                outcome.run_id, outcome.requests, outcome.retries, outcome.seconds
            );
        }
    }
    Ok(())
}

/// Progress bars per stream on a terminal; plain log lines otherwise; nothing with `--quiet`.
pub struct Bars {
    multi: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<std::collections::HashMap<&'static str, indicatif::ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool) -> std::sync::Arc<Bars> {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        std::sync::Arc::new(Bars {
            multi: (tty && !quiet).then(indicatif::MultiProgress::new),
            bars: Default::default(),
        })
    }
}

impl streams::Progress for Bars {
    fn part(&self, stream: &'static str, label: &'static str, total: Option<u64>) {
        let Some(multi) = &self.multi else {
            tracing::info!(stream, part = label, rows = total, "Scanning.");
            return;
        };
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(stream).or_insert_with(|| {
            let bar = multi.add(indicatif::ProgressBar::new(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>13} {bar:30} {pos:>7}/{len:7} {per_sec:>10} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(stream);
            bar
        });
        bar.inc_length(total.unwrap_or(0));
        bar.set_message(label);
    }

    fn rows(&self, stream: &'static str, rows: u64) {
        if let Some(bar) = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
        {
            bar.inc(rows);
        }
    }

    fn finished(&self, stream: &'static str, outcome: &StreamOutcome) {
        match self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
        {
            Some(bar) if outcome.error.is_some() => bar.abandon_with_message("failed"),
            Some(bar) => bar.finish_with_message("done"),
            None => tracing::info!(
                stream,
                new = outcome.new,
                changed = outcome.changed,
                deleted = outcome.deleted,
                "Stream finished."
            ),
        }
    }
}
