//! Test harness: starts the in-process simulator on 127.0.0.1:0, and talks raw HTTP to it
//! (independent of the crate's API client, so simulator tests don't share its bugs).

#![allow(dead_code)]

use pluvo_warehouse::sim::{Sim, SimConfig};
use serde_json::{Value, json};

/// A simulator with `users` users and the default (fault-free) settings.
pub async fn sim(users: usize) -> Sim {
    sim_with(SimConfig {
        users,
        seed: 7,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        ..SimConfig::default()
    })
    .await
}

pub async fn sim_with(config: SimConfig) -> Sim {
    Sim::start(config)
        .await
        .expect("simulator starts on loopback")
}

/// A raw HTTP client with a generous timeout.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Fetch a token with the simulator's own credentials.
pub async fn token(sim: &Sim) -> String {
    let response = http()
        .post(format!("{}/oauth/token/", sim.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// POST a GraphQL document; returns (HTTP status, body text).
pub async fn post_gql(sim: &Sim, token: &str, query: &str, variables: Value) -> (u16, String) {
    let response = http()
        .post(format!("{}/graphql/", sim.url()))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// POST a GraphQL document that must succeed; returns `data`.
pub async fn gql(sim: &Sim, token: &str, query: &str, variables: Value) -> Value {
    let (status, body) = post_gql(sim, token, query, variables).await;
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

/// Page a connection to its end with `first: 50` and `after`; returns every node.
pub async fn page_all(
    sim: &Sim,
    token: &str,
    query: &str,
    field: &str,
    mut variables: Value,
) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        variables["first"] = json!(50);
        variables["after"] = json!(after);
        let data = gql(sim, token, query, variables.clone()).await;
        let conn = &data[field];
        for edge in conn["edges"].as_array().unwrap() {
            nodes.push(edge["node"].clone());
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return nodes;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
}
