//! `bench sim`: how fast the simulator starts and answers, so tests and other benchmarks
//! know the simulator is not their bottleneck. Uses a raw HTTP client, not `api`.

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::{Summary, memory_mib};
use crate::sim::{Sim, SimConfig};

const USER_PAGE: &str = "query Page($offset: Int) { paginatedUsers(first: 50, offset: $offset) {
  count pageInfo { hasNextPage endCursor } edges { cursor node { id ref name email lastLogin
  archived roles language extraFields participantGroups { id ref name } managerGroups { id ref name } } } } }";
const ITEM_PAGE: &str = "query Page($offset: Int) { portfolioReport(first: 50, offset: $offset) {
  count pageInfo { hasNextPage endCursor } edges { node { user { id ref } title progress score
  completionDate endDate timeSpent { days seconds } } } } }";

/// Figures of one `bench sim` run.
#[derive(Debug)]
pub struct Report {
    pub start_users: usize,
    pub start_secs: f64,
    pub start_rss_mib: f64,
    pub page_users: usize,
    pub user_pages: Summary,
    pub item_pages: Summary,
}

/// Start a simulator of `start_users` (timed), then time `pages` random 50-row pages of users
/// and of the portfolio report on one of `page_users`.
pub async fn run(start_users: usize, page_users: usize, pages: usize) -> anyhow::Result<Report> {
    let started = Instant::now();
    let big = Sim::start(SimConfig {
        users: start_users,
        ..SimConfig::default()
    })
    .await?;
    let start_secs = started.elapsed().as_secs_f64();
    let start_rss_mib = memory_mib().0;
    drop(big);

    let sim = Sim::start(SimConfig {
        users: page_users,
        ..SimConfig::default()
    })
    .await?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let token = super::sim_token(&http, &sim, None).await?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut time_pages = async |query: &str, field: &str| -> anyhow::Result<Summary> {
        let first: Value = post(&http, &sim, &token, query, 0).await?.1;
        let count = first["data"][field]["count"].as_u64().unwrap_or(0) as usize;
        let mut samples = Vec::with_capacity(pages);
        for i in 0..pages + 10 {
            let offset = rng.random_range(0..count.max(1));
            let (took, body) = post(&http, &sim, &token, query, offset).await?;
            if body.get("errors").is_some() {
                anyhow::bail!("page answered errors: {body}");
            }
            if i >= 10 {
                samples.push(took);
            }
        }
        Ok(Summary::of(&mut samples))
    };
    let user_pages = time_pages(USER_PAGE, "paginatedUsers").await?;
    let item_pages = time_pages(ITEM_PAGE, "portfolioReport").await?;
    Ok(Report {
        start_users,
        start_secs,
        start_rss_mib,
        page_users,
        user_pages,
        item_pages,
    })
}

async fn post(
    http: &reqwest::Client,
    sim: &Sim,
    token: &str,
    query: &str,
    offset: usize,
) -> anyhow::Result<(Duration, Value)> {
    let started = Instant::now();
    let body: Value = http
        .post(format!("{}/graphql/", sim.url()))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": { "offset": offset } }))
        .send()
        .await?
        .json()
        .await?;
    Ok((started.elapsed(), body))
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "start: {} users generated and serving in {:.2} s (RSS {:.0} MiB)",
            self.start_users, self.start_secs, self.start_rss_mib
        )?;
        writeln!(
            f,
            "users page (50 rows, {} users): {}",
            self.page_users, self.user_pages
        )?;
        write!(f, "portfolio page (50 rows): {}", self.item_pages)
    }
}
