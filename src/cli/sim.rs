//! `sim serve` and `sim sdl`: the built-in Pluvo simulator as a standalone HTTP server (for
//! trying the tool by hand, or pointing another client at it).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::shutdown_signal;
use crate::error::{Exit, UsageError};
use crate::sim::{self, AuthErrorMode, Faults, Sim, SimConfig};

/// Run a `sim` subcommand.
pub async fn run(command: SimCommand) -> Result<Exit> {
    match command {
        SimCommand::Serve(args) => serve(*args).await,
        SimCommand::Sdl => {
            print!("{}", sim::sdl());
            Ok(Exit::Ok)
        }
    }
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
    /// Answer a query asked before from memory until the data changes (a fast server, for
    /// profiling the tool; as `bench sync --replay`)
    #[arg(long)]
    pub replay: bool,
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
                replay: self.replay,
                ..Faults::default()
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
    // Installed before the lines a script waits for, so its SIGTERM right after them is graceful.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
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
            _ = &mut shutdown => break,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn faults(args: &[&str]) -> Faults {
        let serve =
            Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap();
        serve.args.sim_config().unwrap().faults
    }

    /// `--replay` makes the standalone simulator answer from memory, as `bench sync --replay`
    /// does; without it every query is executed.
    #[test]
    fn replay_is_off_unless_asked_for() {
        assert!(!faults(&[]).replay);
        let replaying = faults(&["--replay", "--latency-ms", "3"]);
        assert!(replaying.replay);
        assert_eq!(replaying.latency, Duration::from_millis(3));
    }
}
