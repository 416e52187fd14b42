//! The API client against the in-process simulator: exact results under faults, auth failures,
//! unreachable hosts, GraphQL errors, rate limits, every query and mutation, and no secret in
//! any log line.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use pluvo_warehouse::api::{self, Client, ClientOptions, Error, Operation, queries};
use pluvo_warehouse::config::{ApiConfig, DEFAULT_SCOPE, HttpSettings, Secret, parse_base_url};
use pluvo_warehouse::sim::{AuthErrorMode, Faults, Sim, SimConfig};
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------- harness

async fn start(users: usize, token_ttl: Duration) -> Sim {
    Sim::start(SimConfig {
        users,
        seed: 7,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        token_ttl,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts on loopback")
}

fn config(base: &str, client_id: &str, secret: &str, http: HttpSettings) -> ApiConfig {
    ApiConfig {
        base_url: parse_base_url(base).unwrap(),
        client_id: client_id.into(),
        client_secret: Secret::new(secret),
        scope: DEFAULT_SCOPE.into(),
        http,
        credentials: pluvo_warehouse::config::DEFAULT_CREDENTIALS.into(),
    }
}

/// Short backoffs so fault tests finish in seconds.
fn fast() -> ClientOptions {
    ClientOptions {
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(400),
        ..ClientOptions::default()
    }
}

fn client_for(sim: &Sim, options: ClientOptions) -> Client {
    client_with_attempts(sim, options, 12)
}

fn client_with_attempts(sim: &Sim, options: ClientOptions, max_attempts: u32) -> Client {
    let http = HttpSettings {
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        max_attempts,
        max_retry_time: Duration::from_secs(60),
        ..HttpSettings::default()
    };
    let cfg = config(&sim.url(), sim.client_id(), sim.client_secret(), http);
    Client::new(&cfg, options).unwrap()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct UserNode {
    id: String,
    #[serde(rename = "ref")]
    ref_: Option<String>,
    name: String,
    email: Option<String>,
    last_login: Option<String>,
    archived: bool,
    roles: Vec<String>,
    language: Option<String>,
    extra_fields: Option<String>,
    participant_groups: Vec<GroupRef>,
    manager_groups: Vec<GroupRef>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct GroupRef {
    id: String,
    #[serde(rename = "ref")]
    ref_: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PortfolioNode {
    user: PortfolioUser,
    title: String,
    progress: f64,
    score: Option<f64>,
    completion_date: Option<String>,
    end_date: Option<String>,
    time_spent: TimeSpent,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PortfolioUser {
    id: String,
    #[serde(rename = "ref")]
    ref_: Option<String>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct TimeSpent {
    days: i64,
    seconds: i64,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct CertificateNode {
    id: String,
    name: String,
    title: Option<String>,
}

type ItemKey = (String, &'static str, String, Option<String>);

fn item_key(kind: &'static str, n: &PortfolioNode) -> ItemKey {
    (
        n.user.id.clone(),
        kind,
        n.title.clone(),
        n.completion_date.clone(),
    )
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

// ---------------------------------------------------------------- acceptance

/// Issue 5: with faults on (fail 0.2, truncate 0.05, 50 rps, token TTL 2 s, tokens also
/// revoked between and inside scans, expiry answered as HTTP 401 and as a GraphQL `Auth`
/// code), paging all users, portfolio items and certificates returns exactly the simulator's
/// data, and the counters show the retries and re-auths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_5_pages_everything_exactly_under_faults() {
    let sim = start(150, Duration::from_secs(2)).await;
    sim.set_faults(Faults {
        fail_rate: 0.2,
        truncate_rate: 0.05,
        rate_limit_rps: Some(50.0),
        ..Faults::default()
    });
    let client = client_for(
        &sim,
        ClientOptions {
            page_size: 10,
            ..fast()
        },
    );
    let expected = sim.data();

    let work = async {
        let mut users = Vec::new();
        for archived in [false, true] {
            sim.expire_tokens(); // the scan starts with a revoked token: 401, re-auth
            let mut part: Vec<UserNode> = client
                .fetch_all(
                    &queries::USERS,
                    json!({ "archived": archived }),
                    |u: &UserNode| Some(u.id.clone()),
                )
                .await?;
            assert!(part.iter().all(|u| u.archived == archived));
            users.append(&mut part);
        }
        // From here expired tokens get a GraphQL `Auth` code with HTTP 200 instead of a 401.
        sim.set_faults(Faults {
            fail_rate: 0.2,
            truncate_rate: 0.05,
            rate_limit_rps: Some(50.0),
            auth_error: AuthErrorMode::Graphql,
            ..Faults::default()
        });
        let mut items = Vec::new();
        for kind in ["TRAINING", "CERTIFICATE"] {
            let vars = json!({ "relatedObjectTypes": [kind] });
            let key = |n: &PortfolioNode| {
                let n = item_key("", n);
                Some((n.0, n.2, n.3))
            };
            // Offset mode by hand: revoke the token after page 0, so the parallel pages all
            // meet an expired token at once and must share one re-auth.
            let mut pages =
                std::pin::pin!(client.offset_pages(&queries::PORTFOLIO, vars.clone(), key));
            let mut part: Vec<PortfolioNode> = Vec::new();
            let complete = loop {
                match pages.try_next().await {
                    Ok(Some(page)) => {
                        if page.index == 0 {
                            sim.expire_tokens();
                        }
                        part.extend(page.nodes);
                    }
                    Ok(None) => break true,
                    Err(Error::Incomplete { .. }) => break false,
                    Err(other) => return Err(other),
                }
            };
            if !complete {
                part = client
                    .pages(&queries::PORTFOLIO, vars)
                    .map_ok(|page| page.nodes)
                    .try_concat()
                    .await?;
            }
            items.extend(part.iter().map(|n| item_key(kind, n)));
        }
        sim.expire_tokens();
        let certificates: Vec<CertificateNode> = client
            .pages(&queries::CERTIFICATES, json!({}))
            .map_ok(|page| page.nodes)
            .try_concat()
            .await?;
        Ok::<_, Error>((users, items, certificates))
    };
    let (users, items, certificates) = work.await.unwrap();

    let want_users: Vec<(String, bool)> = sorted(
        expected
            .users
            .iter()
            .filter(|u| !u.deleted)
            .map(|u| (u.id.to_string(), u.archived))
            .collect(),
    );
    let got_users: Vec<(String, bool)> =
        sorted(users.iter().map(|u| (u.id.clone(), u.archived)).collect());
    assert_eq!(got_users.len(), want_users.len(), "user count");
    assert_eq!(got_users, want_users, "users");
    let distinct: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(distinct.len(), users.len(), "no duplicate users");
    assert!(
        expected.users.iter().any(|u| u.archived),
        "the seed has archived users"
    );

    let want_items: Vec<ItemKey> = sorted(
        expected
            .users
            .iter()
            .filter(|u| !u.deleted)
            .flat_map(|u| {
                u.items.iter().map(move |i| {
                    (
                        u.id.to_string(),
                        i.kind.as_str(),
                        i.title.to_string(),
                        i.completion_date.map(|d| d.to_string()),
                    )
                })
            })
            .collect(),
    );
    assert!(
        want_items.len() > 100,
        "a meaningful portfolio: {}",
        want_items.len()
    );
    assert_eq!(sorted(items), want_items, "portfolio items");

    let want_certs: Vec<String> = sorted(
        expected
            .certificates
            .iter()
            .map(|c| c.id.to_string())
            .collect(),
    );
    let got_certs: Vec<String> = sorted(certificates.iter().map(|c| c.id.clone()).collect());
    assert_eq!(got_certs, want_certs, "certificate templates");

    let stats = client.stats();
    let counters = sim.counters();
    eprintln!("client {stats:?}\nsim {counters:?}");
    assert!(stats.retries > 0, "retries happened: {stats:?}");
    // One re-auth per revocation that met a request (the first one came before any token),
    // however many parallel pages met it: single flight.
    assert_eq!(stats.reauths, 4, "re-auths: {stats:?}");
    assert_eq!(
        counters.responses.get(&401),
        Some(&1),
        "one 401, the rest as `Auth` codes"
    );
    assert!(stats.rows as usize >= want_users.len() + want_items.len());
    assert!(counters.server_errors() > 0 && counters.faults.contains_key("truncated"));
}

/// A wrong secret: one clear line naming the token URL and "invalid client"; concurrent
/// requests share the one failed token request instead of each retrying.
#[tokio::test]
async fn wrong_secret_fails_once_with_a_clear_message() {
    let sim = start(20, Duration::from_secs(3600)).await;
    let cfg = config(
        &sim.url(),
        sim.client_id(),
        "not-the-secret",
        HttpSettings::default(),
    );
    let client = Client::new(&cfg, fast()).unwrap();
    let results = futures_util::future::join_all((0..8).map(|_| {
        let client = client.clone();
        async move {
            client
                .query::<Value>(&queries::USER, json!({ "ref": "nobody" }))
                .await
        }
    }))
    .await;
    let token_url = format!("{}/oauth/token/", sim.url());
    for result in results {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::InvalidClient { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&token_url), "{text}");
        assert!(text.contains("invalid client"), "{text}");
        assert!(
            !text.contains('\n') && !text.contains("not-the-secret"),
            "{text}"
        );
    }
    let counters = sim.counters();
    assert!(
        (1..=2).contains(&counters.token_requests),
        "token requests: {}",
        counters.token_requests
    );
    assert_eq!(counters.graphql_requests, 0);
}

/// A port nobody listens on fails at once; a server that never answers fails within the
/// configured timeout — no retry budget spent on a host that was never reached.
#[tokio::test]
async fn unreachable_host_fails_within_the_timeout() {
    let http = HttpSettings {
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        max_attempts: 8,
        max_retry_time: Duration::from_secs(300),
        ..HttpSettings::default()
    };
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let base = format!("http://{closed}");
    let client = Client::new(&config(&base, "id", "secret", http.clone()), fast()).unwrap();
    let started = Instant::now();
    let err = client
        .query::<Value>(&queries::USER, json!({}))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        text.contains(&format!("{base}/oauth/token/")) && text.contains("cannot connect"),
        "{text}"
    );

    // Accepts connections, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let client = Client::new(
        &config(&format!("http://{addr}"), "id", "secret", http),
        fast(),
    )
    .unwrap();
    let started = Instant::now();
    let err = client
        .query::<Value>(&queries::USER, json!({}))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let text = err.to_string();
    assert!(text.contains("no answer within 1s"), "{text}");
}

/// A GraphQL error (unknown field) shows the server's message and where; nothing is retried.
#[tokio::test]
async fn graphql_errors_show_message_and_path_without_retry() {
    let sim = start(20, Duration::from_secs(3600)).await;
    let client = client_for(&sim, fast());
    const BAD: Operation = Operation::new(
        "Bad",
        "query Bad { paginatedUsers(first: 5) { count edges { node { id nosuchfield } } } }",
    );
    let err = client.query::<Value>(&BAD, json!({})).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::GraphQl { .. }), "{err:?}");
    assert!(
        text.contains("graphql errors from `Bad`") && text.contains("nosuchfield"),
        "{text}"
    );
    assert!(text.contains("line 1"), "location shown: {text}");
    assert_eq!(sim.counters().graphql_requests, 1, "not retried");

    // `first: 51` is over the API maximum: the resolver's error carries a path.
    let err = client
        .query::<Value>(&queries::USERS, json!({ "first": 51 }))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("at path `paginatedUsers`"), "{text}");
    assert!(text.contains("50"), "{text}");
    assert_eq!(sim.counters().graphql_requests, 2, "not retried");

    // The pager refuses it before asking.
    let err = Client::new(
        &config(&sim.url(), "demo", "x", HttpSettings::default()),
        ClientOptions {
            page_size: 51,
            ..ClientOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::PageSize { size: 51 }), "{err:?}");
}

/// Partial data with errors is an error unless the caller opts in.
#[tokio::test]
async fn partial_data_needs_opting_in() {
    let sim = start(20, Duration::from_secs(3600)).await;
    let client = client_for(&sim, fast());
    const TWO: Operation = Operation::new(
        "Two",
        "query Two { certificates(first: 1) { count } paginatedUsers(first: 51) { count } }",
    );
    let err = client.query::<Value>(&TWO, json!({})).await.unwrap_err();
    assert!(matches!(err, Error::GraphQl { .. }), "{err:?}");
    let partial = client
        .query_partial::<Value>(&TWO, json!({}))
        .await
        .unwrap();
    assert_eq!(partial.errors.len(), 1, "{:?}", partial.errors);
    let data = partial.data.unwrap();
    assert!(
        data["certificates"]["count"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(data["paginatedUsers"].is_null(), "{data}");
}

/// A mutation that is not safe to repeat is never resent once it may have reached the server.
#[tokio::test]
async fn generate_certificate_is_not_resent_after_an_unknown_outcome() {
    let sim = start(20, Duration::from_secs(3600)).await;
    let data = sim.data();
    let client = client_with_attempts(&sim, fast(), 4);
    client
        .query::<Value>(&queries::USER, json!({ "ref": "x" }))
        .await
        .unwrap(); // token first
    sim.set_faults(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    });
    let before = sim.counters().graphql_requests;
    let err = client
        .query::<Value>(
            &queries::GENERATE_CERTIFICATE,
            json!({ "id": data.certificates[0].id.to_string(), "userIds": [data.users[0].id.to_string()] }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("check the result first"), "{err}");
    assert_eq!(
        sim.counters().graphql_requests - before,
        1,
        "sent exactly once"
    );
    // An idempotent query under the same faults retries until the budget runs out.
    let err = client
        .query::<Value>(&queries::USER, json!({ "ref": "x" }))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::GaveUp { attempts: 4, .. }), "{err:?}");
    assert_eq!(sim.counters().graphql_requests - before, 1 + 4);
}

/// Over the server's rate limit the client slows down instead of hammering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_settles_near_the_server_limit() {
    // ~180 pages at 40 rps: long enough to pass the start-up burst and settle.
    let sim = start(1000, Duration::from_secs(3600)).await;
    sim.set_faults(Faults {
        rate_limit_rps: Some(40.0),
        ..Faults::default()
    });
    let client = client_for(
        &sim,
        ClientOptions {
            concurrency: 8,
            page_size: 5,
            ..fast()
        },
    );
    let started = Instant::now();
    let users: Vec<Value> = client
        .fetch_all(&queries::USERS, json!({}), |u: &Value| {
            Some(u["id"].to_string())
        })
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let stats = client.stats();
    let expected = sim
        .data()
        .users
        .iter()
        .filter(|u| !u.deleted && !u.archived)
        .count();
    assert_eq!(users.len(), expected);
    eprintln!("{stats:?} in {elapsed:?}");
    assert!(stats.rate_limited > 0, "{stats:?}");
    let rate = stats.permitted_rate.expect("a rate was learnt");
    assert!((20.0..60.0).contains(&rate), "settled near 40 rps: {rate}");
    let achieved = stats.requests as f64 / elapsed.as_secs_f64();
    assert!(
        achieved > 20.0,
        "kept close to the limit: {achieved:.1} rps"
    );
    // Unpaced, 8 connections would draw thousands of 429s in this time.
    assert!(stats.rate_limited < 40, "few 429s: {stats:?}");
}

/// Every operation in `queries` runs against the simulator without a GraphQL error.
#[tokio::test]
async fn every_query_and_mutation_runs_against_the_simulator() {
    let sim = start(60, Duration::from_secs(3600)).await;
    let data = sim.data();
    let client = client_for(&sim, fast());
    let user = data
        .users
        .iter()
        .find(|u| !u.deleted && u.ref_.is_some())
        .unwrap();
    let user_ref = user.ref_.clone().unwrap();
    let group = &data.groups[0];
    let training = &data.trainings[0];
    let offer = &data.offer_events[0];
    let category = &data.categories[0];
    let mut ran = HashSet::new();
    let mut run = async |op: &Operation, vars: Value| -> Value {
        ran.insert(op.name);
        client
            .query::<Value>(op, vars)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", op.name))
    };

    // Paged queries: first page with `first`.
    for (op, vars) in [
        (&queries::USERS, json!({ "first": 3, "archived": true })),
        (
            &queries::PORTFOLIO,
            json!({ "first": 3, "relatedObjectTypes": ["CERTIFICATE"],
            "completionDateFrom": "2000-01-01", "completionDateTo": "2100-01-01",
            "userGroupIds": [group.id.to_string()] }),
        ),
        (&queries::CERTIFICATES, json!({ "first": 3 })),
        (&queries::GROUPS, json!({ "first": 3, "offset": 1 })),
        (
            &queries::GROUP_MEMBERS,
            json!({ "first": 3, "id": group.id.to_string() }),
        ),
        (
            &queries::TRAININGS,
            json!({ "first": 3, "active": true, "archived": false }),
        ),
    ] {
        let answer = run(op, vars).await;
        let mut conn = &answer;
        for step in op.connection {
            conn = &conn[*step];
        }
        assert!(conn["count"].as_u64().is_some(), "{}: {answer}", op.name);
    }
    let one = run(&queries::USER, json!({ "ref": user_ref })).await;
    assert_eq!(one["user"]["id"], user.id.to_string());
    let event = run(&queries::OFFER_EVENT, json!({ "ref": offer.ref_ })).await;
    assert_eq!(event["offerEvent"]["ref"], offer.ref_);

    let upsert = run(
        &queries::UPDATE_OR_CREATE_USER,
        json!({ "ref": "client-test-1", "sendInvite": false,
            "user": { "name": "Client Test", "email": "client.test@example.com", "ref": "client-test-1" } }),
    )
    .await;
    assert_eq!(upsert["updateOrCreateUser"]["created"], true);
    run(
        &queries::UPDATE_EXTRA_CATEGORY_VALUES,
        json!({ "contentType": "USER", "modelRef": user_ref,
            "values": [{ "categoryRef": category.ref_, "stringValue": "Sales" }] }),
    )
    .await;
    let added = run(
        &queries::ADD_USERS_TO_GROUP,
        json!({ "groupRef": group.ref_, "userRefs": ["client-test-1"] }),
    )
    .await;
    assert_eq!(
        added["addUsersToGroup"]["addedRefs"],
        json!(["client-test-1"])
    );
    run(
        &queries::REMOVE_USERS_FROM_GROUP,
        json!({ "groupRef": group.ref_, "userRefs": ["client-test-1"] }),
    )
    .await;
    run(
        &queries::ADD_USERS_TO_TRAINING,
        json!({ "trainingRef": training.ref_, "userRefs": [user_ref], "sendInvites": false, "role": "PARTICIPANT" }),
    )
    .await;
    run(
        &queries::CREATE_OFFER_EVENT_ENROLLMENTS,
        json!({ "offerEventRef": offer.ref_, "userRefs": [user_ref], "sendMail": false }),
    )
    .await;
    let issued = run(
        &queries::GENERATE_CERTIFICATE,
        json!({ "id": data.certificates[0].id.to_string(), "userIds": [user.id.to_string()] }),
    )
    .await;
    assert_eq!(
        issued["generateCertificate"]["bulkGenerate"]["succeededIds"],
        json!([user.id.to_string()])
    );
    let all: HashSet<&str> = queries::ALL.iter().map(|op| op.name).collect();
    assert_eq!(ran, all, "every operation was exercised");
}

/// A slow page does not idle the other request slots: while it is outstanding the pages
/// after it are fetched, up to the window (4 pages a request in flight), never more than 4
/// at once, and everything still comes out in order.
#[tokio::test]
async fn a_slow_page_does_not_stall_an_offset_scan() {
    use futures_util::StreamExt;
    let sim = start(200, Duration::from_secs(3600)).await;
    let client = client_for(
        &sim,
        ClientOptions {
            page_size: 5,
            concurrency: 4,
            ..fast()
        },
    );
    sim.set_faults(Faults {
        slow_page: Some(pluvo_warehouse::sim::SlowPage {
            offset: 5,
            delay: Duration::from_millis(1500),
        }),
        ..Faults::default()
    });
    let mut pages = std::pin::pin!(
        client.offset_pages(&queries::USERS, json!({}), |u: &Value| Some(
            u["id"].to_string()
        ))
    );
    let first: api::Page<Value> = pages.next().await.unwrap().unwrap();
    let before = sim.counters().graphql_requests;
    let slow = pages.next().await.unwrap().unwrap();
    let during = sim.counters().graphql_requests - before;
    assert_eq!(slow.index, 1);
    // `buffered(4)` fetched pages 1–4 and then waited for page 1: 4 requests.
    assert!(
        (10..=16).contains(&during),
        "{during} pages requested while page 1 was slow"
    );
    let rest: Vec<api::Page<Value>> = pages.try_collect().await.unwrap();
    let indices: Vec<usize> = [first.index, slow.index]
        .into_iter()
        .chain(rest.iter().map(|p| p.index))
        .collect();
    assert_eq!(
        indices,
        (0..first.count.div_ceil(5) as usize).collect::<Vec<_>>()
    );
    assert!(sim.counters().graphql_peak_in_flight <= 4);
}

/// Cursor and offset paging see the same rows; the group-members connection pages by cursor.
#[tokio::test]
async fn cursor_and_offset_modes_agree() {
    let sim = start(120, Duration::from_secs(3600)).await;
    let client = client_for(
        &sim,
        ClientOptions {
            page_size: 7,
            ..fast()
        },
    );
    let by_cursor: Vec<api::Page<Value>> = client
        .pages(&queries::USERS, json!({}))
        .try_collect()
        .await
        .unwrap();
    let by_offset: Vec<api::Page<Value>> = client
        .offset_pages(&queries::USERS, json!({}), |u: &Value| {
            Some(u["id"].to_string())
        })
        .try_collect()
        .await
        .unwrap();
    let ids = |pages: &[api::Page<Value>]| -> Vec<String> {
        pages
            .iter()
            .flat_map(|p| p.nodes.iter().map(|u| u["id"].to_string()))
            .collect()
    };
    assert_eq!(ids(&by_cursor), ids(&by_offset), "same rows, same order");
    assert!(by_cursor.len() > 5);
    assert_eq!(
        by_offset.iter().map(|p| p.index).collect::<Vec<_>>(),
        (0..by_offset.len()).collect::<Vec<_>>()
    );
    assert!(!by_cursor.last().unwrap().has_next_page);

    // Certificates take no offset: offset mode refuses.
    let err = client
        .offset_pages(&queries::CERTIFICATES, json!({}), |c: &Value| {
            Some(c["id"].to_string())
        })
        .try_collect::<Vec<api::Page<Value>>>()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoOffset { .. }), "{err:?}");

    let data = sim.data();
    let (group, members) = (0..data.groups.len())
        .map(|g| {
            let n = data
                .users
                .iter()
                .filter(|u| {
                    !u.deleted
                        && u.memberships
                            .iter()
                            .any(|m| m.group == g as u32 && !m.manager)
                })
                .count();
            (g, n)
        })
        .max_by_key(|(_, n)| *n)
        .unwrap();
    assert!(members > 7, "a group spanning pages");
    let pages: Vec<api::Page<Value>> = client
        .pages(
            &queries::GROUP_MEMBERS,
            json!({ "id": data.groups[group].id.to_string() }),
        )
        .try_collect()
        .await
        .unwrap();
    let got: usize = pages.iter().map(|p| p.nodes.len()).sum();
    assert_eq!(got, members);
    assert_eq!(pages[0].count as usize, members);
}

// ---------------------------------------------------------------- secrets in logs

/// A loopback relay in front of the simulator that keeps every byte the client sent, so the
/// test learns the bearer tokens without the client exposing them.
async fn recording_relay(upstream: SocketAddr) -> (String, Arc<Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = in_read.read(&mut buf).await {
                        if n == 0 || out_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = out_write.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                    let _ = in_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (format!("http://{addr}"), sent)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 5: all log output at TRACE during an authenticated run with re-auths, retries and
/// failures contains neither the client secret nor any access token; nor do errors.
#[tokio::test]
async fn issue_5_no_secret_or_token_in_trace_logs() {
    let secret = "s3cret-Zq9xW-never-logged";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // With a single registered dispatcher, tracing caches a callsite's interest from whatever
    // thread hits it first (other tests' threads have no subscriber: "never"). A second,
    // silent dispatcher makes it ask every registered one instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    // The test runs on one thread, so every task (client, relay, simulator) logs here.
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let sim = Sim::start(SimConfig {
        users: 60,
        seed: 11,
        client_secret: secret.into(),
        token_ttl: Duration::from_secs(1),
        faults: Faults {
            fail_rate: 0.1,
            truncate_rate: 0.05,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (relay_url, sent) = recording_relay(sim.addr()).await;
    let http = HttpSettings {
        max_attempts: 12,
        ..HttpSettings::default()
    };
    let client = Client::new(
        &config(&relay_url, sim.client_id(), secret, http.clone()),
        ClientOptions {
            page_size: 5,
            renew_margin: Duration::ZERO,
            ..fast()
        },
    )
    .unwrap();
    let work = async {
        let users: Vec<Value> = client
            .fetch_all(
                &queries::USERS,
                json!({ "archived": false }),
                |u: &Value| Some(u["id"].to_string()),
            )
            .await
            .unwrap();
        sim.expire_tokens();
        let again: Vec<Value> = client
            .pages(&queries::CERTIFICATES, json!({}))
            .map_ok(|p| p.nodes)
            .try_concat()
            .await
            .unwrap();
        (users.len(), again.len())
    };
    let (users, certificates) = work.await;
    assert!(users > 0 && certificates > 0);
    let stats = client.stats();
    assert!(stats.reauths + stats.renewals >= 1, "{stats:?}");

    // Errors and Debug output are covered too: a wrong secret, a GraphQL error.
    let bad = Client::new(
        &config(
            &relay_url,
            sim.client_id(),
            &format!("{secret}-wrong"),
            http,
        ),
        fast(),
    )
    .unwrap();
    let err = bad
        .query::<Value>(&queries::USER, json!({}))
        .await
        .unwrap_err();
    tracing::error!(error = %err, debug = ?err, client = ?bad, "Expected failure.");
    let err = client
        .query::<Value>(&queries::USERS, json!({ "first": 51 }))
        .await
        .unwrap_err();
    tracing::error!(error = %err, debug = ?err, "Expected failure.");

    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).into_owned();
    let tokens: BTreeMap<String, ()> = sent
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization").then_some(())?;
            Some((value.trim().strip_prefix("Bearer ")?.to_string(), ()))
        })
        .collect();
    assert!(
        tokens.len() >= 2,
        "re-auth used a second token: {}",
        tokens.len()
    );
    assert!(sent.contains(secret), "the relay saw the token request");

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("op=\"Users\"") || logs.contains("op=Users"),
        "client spans logged: {} bytes, graphql spans: {}, head: {}",
        logs.len(),
        logs.matches("graphql").count(),
        &logs[..logs.len().min(3000)]
    );
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"));
    assert!(!logs.contains(secret), "the client secret is in the logs");
    for token in tokens.keys() {
        assert!(
            !logs.contains(token.as_str()),
            "an access token is in the logs"
        );
    }
}

// ---------------------------------------------------------------- issue 16: a bad minute

/// Issue #16, scenario 4: a token endpoint that fails for a while (not a refusal) is not
/// remembered for the life of the process: callers get the error during a short backoff
/// (no storm of token requests), then the next one gets a token.
#[tokio::test]
async fn issue_16_a_transient_token_failure_is_retried_later() {
    let sim = start(10, Duration::from_secs(3600)).await;
    sim.set_faults(Faults {
        token_unavailable: true,
        ..Faults::default()
    });
    let client = client_with_attempts(&sim, fast(), 2);
    let err = client.authenticate().await.unwrap_err();
    assert!(!err.is_auth(), "a 503 is not a refusal: {err}");
    assert!(err.to_string().contains("503"), "{err}");
    sim.set_faults(Faults::default());
    let asked = sim.counters().token_requests;
    assert!(
        client.authenticate().await.is_err(),
        "within the backoff the error is reused"
    );
    assert_eq!(
        sim.counters().token_requests,
        asked,
        "no storm of token requests"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    client
        .authenticate()
        .await
        .expect("after the backoff a token is fetched again");
    let answer: Value = client
        .query(&queries::USER, json!({ "ref": "nobody" }))
        .await
        .expect("queries work again");
    assert_eq!(answer["user"], Value::Null);
}

/// Issue #16, scenario 4: a renewal that fails keeps the token that is still valid, and the
/// requests go on with it; once the endpoint is back, the token is renewed.
#[tokio::test]
async fn issue_16_a_failed_renewal_keeps_the_valid_token() {
    let sim = start(10, Duration::from_secs(8)).await;
    let client = client_with_attempts(&sim, fast(), 2);
    client.authenticate().await.unwrap();
    // Renewal is due after 3/4 of the lifetime (6 s); the token lasts 8 s.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    sim.set_faults(Faults {
        token_unavailable: true,
        ..Faults::default()
    });
    let answer: Value = client
        .query(&queries::USER, json!({ "ref": "nobody" }))
        .await
        .expect("the still-valid token is used when its renewal fails");
    assert_eq!(answer["user"], Value::Null);
    let c = sim.counters();
    assert!(
        c.faults.get("5xx-token").copied().unwrap_or(0) >= 1,
        "the renewal was tried: {c:?}"
    );
    assert_eq!(c.tokens_issued, 1);
    sim.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let _: Value = client
        .query(&queries::USER, json!({ "ref": "nobody" }))
        .await
        .expect("renewed once the endpoint is back");
    assert_eq!(sim.counters().tokens_issued, 2, "renewed");
}
