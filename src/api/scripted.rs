//! Tests of the request state machine against a scripted loopback server: each GraphQL answer
//! is given in advance, so retries, re-auths and give-ups are counted exactly (the simulator's
//! faults are random; `tests/client.rs` covers those).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::{Client, ClientOptions, Error, Operation, Page};
use crate::config::{ApiConfig, HttpSettings, Secret, parse_base_url};

/// One scripted answer of `/graphql/`.
#[derive(Clone)]
enum Answer {
    Json(u16, Value),
    Raw(u16, &'static str),
    RateLimited(Option<&'static str>),
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    graphql: u32,
    tokens: u32,
    bearers: Vec<String>,
}

type Shared = Arc<Mutex<Script>>;

async fn token(State(script): State<Shared>, body: Bytes) -> Response {
    let mut s = script.lock().unwrap();
    s.tokens += 1;
    let form = String::from_utf8_lossy(&body).into_owned();
    if !form.contains("client_secret=right") {
        let body = json!({ "error": "invalid_client" }).to_string();
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    let body = json!({ "access_token": format!("tok-{}", s.tokens), "token_type": "Bearer",
        "expires_in": 3600 });
    (StatusCode::OK, body.to_string()).into_response()
}

async fn graphql(State(script): State<Shared>, headers: HeaderMap) -> Response {
    let mut s = script.lock().unwrap();
    s.graphql += 1;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    s.bearers.push(bearer);
    let answer = s
        .answers
        .pop_front()
        .unwrap_or(Answer::Json(200, json!({ "data": { "ok": true } })));
    match answer {
        Answer::Json(status, body) => {
            (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response()
        }
        Answer::Raw(status, body) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        Answer::RateLimited(after) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "{}").into_response();
            if let Some(after) = after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, after.parse().unwrap());
            }
            response
        }
    }
}

async fn serve(answers: Vec<Answer>) -> (String, Shared) {
    let script: Shared = Arc::new(Mutex::new(Script {
        answers: answers.into(),
        ..Script::default()
    }));
    let app = Router::new()
        .route("/oauth/token/", post(token))
        .route("/graphql/", post(graphql))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), script)
}

fn client_at(base: &str, secret: &str, max_attempts: u32) -> Client {
    client_with(base, secret, max_attempts, test_options())
}

/// Short backoffs and 2-row pages, so that faults and paging run fast.
fn test_options() -> ClientOptions {
    ClientOptions {
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(20),
        page_size: 2,
        ..ClientOptions::default()
    }
}

fn client_with(base: &str, secret: &str, max_attempts: u32, options: ClientOptions) -> Client {
    let config = ApiConfig {
        base_url: parse_base_url(base).unwrap(),
        client_id: "id".into(),
        client_secret: Secret::new(secret),
        scope: "users.read".into(),
        credentials: crate::config::DEFAULT_CREDENTIALS.into(),
        http: HttpSettings {
            max_attempts,
            ..HttpSettings::default()
        },
    };
    Client::new(&config, options).unwrap()
}

const OP: Operation = Operation::new("Op", "query Op { ok }");
const PAGED: Operation = Operation::new("Paged", "query Paged { c }").paged(&["c"]);
const ONCE: Operation = Operation::new("Once", "mutation Once { m }").not_idempotent();

fn ok() -> Answer {
    Answer::Json(200, json!({ "data": { "ok": true } }))
}

#[tokio::test]
async fn faults_are_retried_and_counted() {
    let (base, script) = serve(vec![
        Answer::Raw(503, "<html>busy</html>"),
        Answer::Raw(200, r#"{"data":{"o"#),
        Answer::Json(401, json!({ "detail": "expired" })),
        Answer::RateLimited(Some("0")),
        Answer::Raw(502, ""),
        ok(),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let data: Value = client.query(&OP, json!({})).await.unwrap();
    assert_eq!(data, json!({ "ok": true }));
    let stats = client.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.retries, 4, "503, cut body, 429, 502: {stats:?}");
    assert_eq!(stats.reauths, 1);
    assert_eq!(stats.token_requests, 2);
    assert_eq!(stats.rate_limited, 1);
    let s = script.lock().unwrap();
    assert_eq!(s.bearers[2], "Bearer tok-1");
    assert_eq!(s.bearers[3], "Bearer tok-2", "the new token after the 401");
}

#[tokio::test]
async fn a_fresh_token_refused_again_means_credentials_rejected() {
    let unauthorized = Answer::Json(401, json!({ "detail": "no" }));
    let (base, script) = serve(vec![unauthorized.clone(), unauthorized]).await;
    let client = client_at(&base, "right", 8);
    let err = client.query::<Value>(&OP, json!({})).await.unwrap_err();
    assert!(matches!(err, Error::CredentialsRejected { .. }), "{err:?}");
    assert!(err.to_string().starts_with("credentials rejected"), "{err}");
    // Every later request fails the same way without asking for tokens again.
    let again = client.query::<Value>(&OP, json!({})).await.unwrap_err();
    assert!(
        matches!(again, Error::CredentialsRejected { .. }),
        "{again:?}"
    );
    let s = script.lock().unwrap();
    assert_eq!((s.tokens, s.graphql), (2, 2));
}

#[tokio::test]
async fn an_auth_error_code_counts_as_an_expired_token() {
    let expired = json!({ "data": null, "errors": [{ "message": "Token expired.",
        "extensions": { "code": "AuthenticationExpired" } }] });
    let (base, _script) = serve(vec![Answer::Json(200, expired), ok()]).await;
    let client = client_at(&base, "right", 8);
    client.query::<Value>(&OP, json!({})).await.unwrap();
    assert_eq!(client.stats().reauths, 1);
}

#[tokio::test]
async fn retry_after_is_honoured_and_429_without_it_backs_off() {
    let (base, _script) = serve(vec![
        Answer::RateLimited(Some("1")),
        Answer::RateLimited(None),
        ok(),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let started = Instant::now();
    client.query::<Value>(&OP, json!({})).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().rate_limited, 2);
    assert!(
        client.stats().permitted_rate.is_some(),
        "the rate gate learnt a limit"
    );
}

#[tokio::test]
async fn validation_errors_and_other_4xx_are_not_retried() {
    let invalid = json!({ "data": null, "errors": [{ "message": "Unknown field \"x\" on type \"Query\".",
        "locations": [{ "line": 1, "column": 9 }] }] });
    let (base, script) = serve(vec![
        Answer::Json(400, invalid),
        Answer::Raw(403, "forbidden"),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let err = client.query::<Value>(&OP, json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "graphql errors from `Op`: Unknown field \"x\" on type \"Query\" (line 1, column 9)"
    );
    let err = client.query::<Value>(&OP, json!({})).await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 403, .. }), "{err:?}");
    assert!(err.to_string().contains("forbidden"), "{err}");
    assert_eq!(script.lock().unwrap().graphql, 2);
    assert_eq!(client.stats().retries, 0);
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let (base, script) = serve(vec![Answer::Raw(500, ""); 10]).await;
    let client = client_at(&base, "right", 3);
    let err = client.query::<Value>(&OP, json!({})).await.unwrap_err();
    assert!(matches!(err, Error::GaveUp { attempts: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("http 500"), "{err}");
    assert_eq!(script.lock().unwrap().graphql, 3);
}

#[tokio::test]
async fn an_unsafe_mutation_is_not_resent_but_a_refused_one_is() {
    let (base, script) = serve(vec![
        Answer::RateLimited(Some("0")),
        Answer::Raw(503, ""),
        Answer::Json(200, json!({ "data": { "m": 1 } })),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let err = client.query::<Value>(&ONCE, json!({})).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(
        script.lock().unwrap().graphql,
        2,
        "the 429 was resent, the 503 not"
    );
}

#[tokio::test]
async fn wrong_secret_is_one_token_request() {
    let (base, script) = serve(vec![]).await;
    let client = client_at(&base, "wrong", 8);
    let errors = futures_util::future::join_all(
        (0..6).map(|_| async { client.query::<Value>(&OP, json!({})).await.unwrap_err() }),
    )
    .await;
    for err in errors {
        let text = err.to_string();
        assert!(
            text.contains("invalid client") && text.contains("/oauth/token/"),
            "{text}"
        );
        assert!(!text.contains("wrong"), "{text}");
    }
    let s = script.lock().unwrap();
    assert_eq!((s.tokens, s.graphql), (1, 0));
}

fn page(cursor: &str, next: bool, ids: &[&str]) -> Answer {
    let edges: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "node": { "id": id } }))
        .collect();
    Answer::Json(
        200,
        json!({ "data": { "c": { "count": 6, "edges": edges,
        "pageInfo": { "hasNextPage": next, "endCursor": cursor } } } }),
    )
}

#[tokio::test]
async fn the_pager_follows_cursors_and_stops_on_a_repeated_one() {
    let (base, _script) = serve(vec![
        page("a", true, &["1", "2"]),
        page("b", true, &["3", "4"]),
        page("c", false, &["5", "6"]),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let pages: Vec<Page<Value>> = client.pages(&PAGED, json!({})).try_collect().await.unwrap();
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages[2].nodes,
        vec![json!({ "id": "5" }), json!({ "id": "6" })]
    );
    assert_eq!(client.stats().rows, 6);

    let (base, script) = serve(vec![
        page("a", true, &["1", "2"]),
        page("b", true, &["3", "4"]),
        page("a", true, &["1", "2"]),
        page("b", true, &["3", "4"]),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let err = client
        .pages::<Value>(&PAGED, json!({}))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorRepeated { .. }), "{err:?}");
    assert_eq!(
        script.lock().unwrap().graphql,
        3,
        "stopped at the first repeat"
    );
}

#[tokio::test]
async fn fetch_all_falls_back_to_cursors_when_offset_is_ignored() {
    const OFFSET: Operation = Operation::new("Offset", "query Offset { c }")
        .paged(&["c"])
        .with_offset();
    // A server that ignores `offset` answers page 0 three times; then the cursor scan.
    let (base, script) = serve(vec![
        page("a", true, &["1", "2"]),
        page("a", true, &["1", "2"]),
        page("a", true, &["1", "2"]),
        page("a", true, &["1", "2"]),
        page("b", true, &["3", "4"]),
        page("c", false, &["5", "6"]),
    ])
    .await;
    let client = client_at(&base, "right", 8);
    let rows: Vec<Value> = client
        .fetch_all(&OFFSET, json!({}), |v: &Value| Some(v["id"].to_string()))
        .await
        .unwrap();
    let ids: Vec<&str> = rows.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(script.lock().unwrap().graphql, 6);
}

/// A request the adaptive rate does not pace goes out at once, without waiting for a timer:
/// one per request, rounded up to tokio's next millisecond tick, halved the pages a second
/// against a fast server. A timer awaited would leave the wait pending on its first poll.
#[tokio::test]
async fn an_unpaced_request_waits_for_no_timer() {
    use futures_util::FutureExt;
    let client = client_at("http://127.0.0.1:9", "secret", 1);
    for n in 0..100 {
        assert!(
            client.wait_for_slot().now_or_never().is_some(),
            "request {n} waited for a timer"
        );
    }
}

/// `--concurrency auto` takes a transient server error as a sign of load, as it does a 429:
/// a server (or its gateway) that fails fast under load answers quickly, and counted as an
/// answer time its 502 would let the limit grow.
#[tokio::test]
async fn auto_concurrency_halves_on_a_transient_server_error() {
    let (base, _script) = serve(vec![Answer::Raw(502, "bad gateway"), ok()]).await;
    let options = ClientOptions {
        concurrency: 32,
        adaptive_concurrency: true,
        ..test_options()
    };
    let client = client_with(&base, "right", 8, options);
    assert_eq!(client.stats().concurrency, super::AUTO_START);
    let data: Value = client.query(&OP, json!({})).await.unwrap();
    assert_eq!(data, json!({ "ok": true }));
    assert_eq!(client.stats().concurrency, super::AUTO_START / 2);
}
