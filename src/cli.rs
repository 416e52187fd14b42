//! Command-line interface: clap types, subcommand dispatch and everything printed to the
//! terminal (the only place that owns progress bars). Library modules return data and
//! errors; this module turns them into output and an exit code.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::error::{Exit, UsageError, exit_code};
use crate::sim::{self, AuthErrorMode, Faults, Sim, SimConfig};

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
    /// The built-in Pluvo simulator (tests, demos, benchmarks)
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Benchmarks that print figures (medians, ratios, memory)
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
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
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated organisation over HTTP (token endpoint + GraphQL)
    Serve(ServeArgs),
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
            eprintln!("error: {err:#}");
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
    match cli.command {
        Command::Sim { command } => match command {
            SimCommand::Serve(args) => serve(args).await,
            SimCommand::Sdl => {
                print!("{}", sim::sdl());
                Ok(Exit::Ok)
            }
        },
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
