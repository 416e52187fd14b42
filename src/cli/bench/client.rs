//! `bench client`: what the API client costs over a plain fetch loop. Both page all users of a
//! simulator with added latency: by cursor at concurrency 1, by parallel offsets above it.
//! Reports pages/s, rows/s and the client's overhead (median over rounds).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::api::{Client, ClientOptions, Page, queries};
use crate::sim::{Faults, Sim, SimConfig};

/// One measured scan.
#[derive(Debug, Clone, Copy)]
struct Scan {
    pages: usize,
    rows: usize,
    took: Duration,
}

/// Run the comparison and print one line per concurrency.
pub async fn run(
    users: usize,
    latency: Duration,
    concurrencies: &[usize],
    rounds: usize,
) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start(SimConfig {
        users,
        seed: 1,
        ..SimConfig::default()
    })
    .await?;
    sim.set_faults(Faults {
        latency,
        ..Faults::default()
    });
    println!(
        "client vs plain loop: {users} users, latency {} ms, median of {rounds} rounds",
        latency.as_millis()
    );
    for &concurrency in concurrencies {
        let mut ratios = Vec::new();
        let mut plain_rate = Vec::new();
        let mut client_rate = Vec::new();
        let mut rows_per_sec = Vec::new();
        for _ in 0..rounds.max(1) {
            let p = plain(&sim, concurrency).await?;
            let c = with_client(&sim, concurrency).await?;
            if (p.pages, p.rows) != (c.pages, c.rows) {
                bail!("plain loop and client disagree: {p:?} vs {c:?}");
            }
            ratios.push(c.took.as_secs_f64() / p.took.as_secs_f64());
            plain_rate.push(p.pages as f64 / p.took.as_secs_f64());
            client_rate.push(c.pages as f64 / c.took.as_secs_f64());
            rows_per_sec.push(c.rows as f64 / c.took.as_secs_f64());
        }
        println!(
            "concurrency {concurrency}: plain {:.1} pages/s | client {:.1} pages/s, {:.0} rows/s | overhead {:+.1}% (median)",
            median(&mut plain_rate),
            median(&mut client_rate),
            median(&mut rows_per_sec),
            (median(&mut ratios) - 1.0) * 100.0
        );
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The plain loop: reqwest, a token, the same query, no retries or rate control.
async fn plain(sim: &Sim, concurrency: usize) -> Result<Scan> {
    let http = reqwest::Client::builder().gzip(true).build()?;
    let token = super::sim_token(&http, sim, None).await?;
    let url = format!("{}/graphql/", sim.url());
    let fetch = |vars: Value| {
        let (http, token, url) = (http.clone(), token.clone(), url.clone());
        async move {
            let body: Value = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "query": queries::USERS.document, "variables": vars, "operationName": "Users" }))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(body["data"]["paginatedUsers"].clone())
        }
    };
    let started = Instant::now();
    let mut scan = Scan {
        pages: 0,
        rows: 0,
        took: Duration::ZERO,
    };
    let mut add = |conn: &Value| {
        scan.pages += 1;
        scan.rows += conn["edges"].as_array().map_or(0, Vec::len);
    };
    if concurrency == 1 {
        let mut after: Option<String> = None;
        loop {
            let conn = fetch(json!({ "first": 50, "after": after })).await?;
            add(&conn);
            if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap_or(false) {
                break;
            }
            after = conn["pageInfo"]["endCursor"].as_str().map(String::from);
        }
    } else {
        let first = fetch(json!({ "first": 50, "offset": 0 })).await?;
        add(&first);
        let pages = first["count"].as_u64().unwrap_or(0).div_ceil(50);
        let rest: Vec<Value> = futures_util::stream::iter(1..pages)
            .map(|k| fetch(json!({ "first": 50, "offset": k * 50 })))
            .buffered(concurrency)
            .try_collect()
            .await?;
        rest.iter().for_each(&mut add);
    }
    scan.took = started.elapsed();
    Ok(scan)
}

/// The same scan through [`Client`]: cursor pages at concurrency 1, offset pages above.
async fn with_client(sim: &Sim, concurrency: usize) -> Result<Scan> {
    let client = Client::new(
        &sim.api_config(),
        ClientOptions {
            concurrency,
            ..ClientOptions::default()
        },
    )?;
    // Fetch the token before the clock starts, as the plain loop does.
    client
        .query::<Value>(&queries::USER, json!({ "ref": "none" }))
        .await?;
    let started = Instant::now();
    let pages: Vec<Page<Value>> = if concurrency == 1 {
        client
            .pages(&queries::USERS, json!({}))
            .try_collect()
            .await?
    } else {
        client
            .offset_pages(&queries::USERS, json!({}), |u: &Value| {
                Some(u["id"].as_str().unwrap_or_default().to_string())
            })
            .try_collect()
            .await?
    };
    Ok(Scan {
        pages: pages.len(),
        rows: pages.iter().map(|p| p.nodes.len()).sum(),
        took: started.elapsed(),
    })
}
