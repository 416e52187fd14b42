//! `webhook serve`: signed events from the simulator are stored once each (also after a forced
//! redelivery), the simulator retries like Pluvo, bad signatures and bodies are refused with
//! nothing stored, and SIGTERM stops the binary after its in-flight writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use pluvo_warehouse::config::Secret;
use pluvo_warehouse::sim::webhooks::sign;
use pluvo_warehouse::sim::{Sim, SimConfig, WebhookConfig};
use pluvo_warehouse::store::Warehouse;
use pluvo_warehouse::webhook::{Options, Receiver, Stats};
use serde_json::json;

use crate::support;

const KEY: &str = "test-webhook-key";

async fn receiver(db: &Path, max_body: usize) -> Receiver {
    let warehouse = Warehouse::open(db).expect("warehouse opens");
    let options = Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        path: "/pluvo/webhook".into(),
        key: Secret::new(KEY),
        max_body,
        refresh: None,
        // The fixed bodies here are dated 2020; the replay window is tried in security.rs.
        limits: pluvo_warehouse::webhook::Limits {
            max_age: None,
            ..Default::default()
        },
    };
    Receiver::start(warehouse, options)
        .await
        .expect("receiver starts")
}

/// A simulator delivering to `url` with fast retries.
async fn sim_delivering_to(url: &str, concurrency: usize) -> Sim {
    let mut hook = WebhookConfig::new(url, KEY);
    hook.backoff = Duration::from_millis(10);
    hook.max_attempts = 5;
    hook.concurrency = concurrency;
    support::sim_with(SimConfig {
        users: 60,
        seed: 7,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        webhook: Some(hook),
        ..SimConfig::default()
    })
    .await
}

/// POST `body` with the given signature headers; returns the HTTP status.
async fn post(url: &str, body: &[u8], salt: Option<&str>, signature: Option<String>) -> u16 {
    let mut request = support::http().post(url).body(body.to_vec());
    if let Some(salt) = salt {
        request = request.header("X-Signature-Salt", salt);
    }
    if let Some(signature) = signature {
        request = request.header("X-Signature", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

fn count(db: &Path) -> usize {
    support::rows(db, "SELECT count(*) FROM webhook_events")[0]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_events_are_stored_once_each_even_when_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let receiver = receiver(&db, 1 << 20).await;
    let sim = sim_delivering_to(&receiver.url(), 8).await;

    // Churn, a certificate and an enrollment, each producing events.
    sim.tick(40);
    let (template, title, user_id, user_ref, offer_ref) = sim.with_data(|d| {
        let c = &d.certificates[0];
        let u = &d.users[3];
        (
            c.id.to_string(),
            c.title.to_string(),
            u.id.to_string(),
            u.ref_.clone().unwrap(),
            d.offer_events[0].ref_.clone(),
        )
    });
    let token = support::token(&sim).await;
    support::gql(&sim, &token,
        "mutation($id: UUID!, $u: [UUID!]!) { generateCertificate(id: $id, userIds: $u) { bulkGenerate { succeededIds } } }",
        json!({ "id": template, "u": [user_id] })).await;
    support::gql(&sim, &token,
        "mutation($e: String!, $r: [String!]!) { createOfferEventEnrollments(offerEventRef: $e, userRefs: $r, sendMail: false) { status } }",
        json!({ "e": offer_ref, "r": [user_ref] })).await;

    let c = sim.webhooks_settled(Duration::from_secs(60)).await;
    assert!(c.webhooks_settled() && c.webhooks_given_up == 0, "{c:?}");
    let first = sim.webhook_bodies();
    assert!(
        first.len() >= 30,
        "40 changes deliver at least 30 events: {}",
        first.len()
    );

    // A forced redelivery of everything: the same bytes, new salts.
    assert_eq!(sim.redeliver_webhooks(), first.len());
    let c = sim.webhooks_settled(Duration::from_secs(60)).await;
    assert_eq!(c.webhooks_delivered as usize, 2 * first.len(), "{c:?}");
    assert_eq!(
        c.webhook_attempts.get(&200).copied(),
        Some(c.webhooks_delivered),
        "{c:?}"
    );

    let stats = receiver.stop().await.unwrap();
    let distinct: BTreeSet<String> = first
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(
        stats,
        Stats {
            stored: distinct.len() as u64,
            duplicates: (2 * first.len() - distinct.len()) as u64,
            ..Stats::default()
        }
    );
    let stored: BTreeSet<String> =
        support::rows(&db, "SELECT payload::VARCHAR FROM webhook_events")
            .into_iter()
            .collect();
    assert_eq!(stored, distinct, "every delivered body stored exactly once");

    // The typed views read both payload styles.
    let cert = support::rows(
        &db,
        "SELECT user_ref, title, training_id IS NULL, expiry_date > creation_date FROM certificate_achieved_events",
    );
    assert_eq!(cert, [format!("{user_ref} | {title} | true | true")]);
    let enrolled = support::rows(
        &db,
        "SELECT user_ref, offer_event_ref, status FROM enrollment_events",
    );
    assert_eq!(enrolled, [format!("{user_ref} | {offer_ref} | ENROLLED")]);
    let families = support::rows(
        &db,
        "SELECT (SELECT count(*) FROM user_events) + (SELECT count(*) FROM group_events)
              + (SELECT count(*) FROM portfolio_events) + (SELECT count(*) FROM enrollment_events)
              + (SELECT count(*) FROM certificate_achieved_events) = count(*),
                count(*) FILTER (sent_date IS NULL OR user_ref IS NULL AND event NOT LIKE 'GROUP%')
         FROM webhook_events",
    );
    assert_eq!(
        families,
        ["true | 0"],
        "each event in one view, dates and users decoded"
    );
}

/// A receiver answering statuses from a script (then 200), recording what it got.
async fn scripted_receiver(
    script: Vec<u16>,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
) {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let script = std::sync::Arc::new(std::sync::Mutex::new(script.into_iter()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (log, script) = (log.clone(), script.clone());
            async move {
                let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
                let body = String::from_utf8(body.to_vec()).unwrap();
                assert_eq!(
                    sign(KEY, &header("x-signature-salt"), body.as_bytes()),
                    header("x-signature")
                );
                log.lock().unwrap().push((header("x-signature-salt"), body));
                let status = script.lock().unwrap().next().unwrap_or(200);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn archive(sim: &Sim, token: &str, user: usize) {
    let r = sim.with_data(|d| d.users[user].ref_.clone().unwrap());
    support::gql(sim, token,
        "mutation($r: String) { updateOrCreateUser(ref: $r, sendInvite: false, user: { archived: true }) { created } }",
        json!({ "r": r })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_retries_non_2xx_and_stops_on_410() {
    // 503, 500 and 401 are retried; the same body each time, signed with a new salt.
    let (url, seen) = scripted_receiver(vec![503, 500, 401]).await;
    let sim = sim_delivering_to(&url, 1).await;
    let token = support::token(&sim).await;
    archive(&sim, &token, 1).await;
    let c = sim.webhooks_settled(Duration::from_secs(30)).await;
    let attempts: Vec<(u16, u64)> = c.webhook_attempts.clone().into_iter().collect();
    assert_eq!(attempts, [(200, 1), (401, 1), (500, 1), (503, 1)], "{c:?}");
    assert_eq!((c.webhooks_delivered, c.webhooks_given_up), (1, 0));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(_, b)| b).collect::<BTreeSet<_>>().len(),
        1,
        "same body"
    );
    assert_eq!(
        seen.iter().map(|(s, _)| s).collect::<BTreeSet<_>>().len(),
        4,
        "new salt each time"
    );
    assert!(
        seen[0].1.contains(r#""event":"USER_UPDATED""#),
        "{}",
        seen[0].1
    );

    // 410 disables the subscription: later events are not sent.
    let (url, seen) = scripted_receiver(vec![410]).await;
    let sim = sim_delivering_to(&url, 1).await;
    let token = support::token(&sim).await;
    archive(&sim, &token, 1).await;
    archive(&sim, &token, 2).await;
    let c = sim.webhooks_settled(Duration::from_secs(30)).await;
    let attempts: Vec<(u16, u64)> = c.webhook_attempts.clone().into_iter().collect();
    assert_eq!(attempts, [(410, 1)], "{c:?}");
    assert_eq!((c.webhooks_delivered, c.webhooks_given_up), (0, 2));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_bodies_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let receiver = receiver(&db, 4096).await;
    let url = receiver.url();
    let body = br#"{"event":"USER_UPDATED","id":"u1","ref":"emp-1","sentDate":"2026-06-01T10:00:00.000Z"}"#;
    let signed = |b: &[u8]| Some(sign(KEY, "salt-1", b));
    let tampered = br#"{"event":"USER_UPDATED","id":"u2","ref":"emp-1","sentDate":"2026-06-01T10:00:00.000Z"}"#;

    assert_eq!(
        post(&url, tampered, Some("salt-1"), signed(body)).await,
        401,
        "tampered body"
    );
    assert_eq!(
        post(
            &url,
            body,
            Some("salt-1"),
            Some(sign("another-key", "salt-1", body))
        )
        .await,
        401,
        "wrong key"
    );
    assert_eq!(
        post(&url, body, Some("salt-2"), signed(body)).await,
        401,
        "wrong salt"
    );
    assert_eq!(
        post(&url, body, Some("salt-1"), None).await,
        401,
        "no signature"
    );
    assert_eq!(post(&url, body, None, signed(body)).await, 401, "no salt");
    let broken = br#"{"event":"USER_UPDATED","id":"#;
    assert_eq!(
        post(&url, broken, Some("salt-1"), signed(broken)).await,
        400,
        "malformed JSON"
    );
    let no_event = br#"{"id":"u1"}"#;
    assert_eq!(
        post(&url, no_event, Some("salt-1"), signed(no_event)).await,
        400,
        "no event"
    );
    let big =
        serde_json::to_vec(&json!({ "event": "USER_UPDATED", "pad": "x".repeat(8000) })).unwrap();
    assert_eq!(
        post(&url, &big, Some("salt-1"), signed(&big)).await,
        413,
        "oversized"
    );
    let wrong_path = url.replace("/pluvo/webhook", "/other");
    assert_eq!(
        post(&wrong_path, body, Some("salt-1"), signed(body)).await,
        404
    );

    // The receiver does store a good delivery, once.
    assert_eq!(post(&url, body, Some("salt-1"), signed(body)).await, 200);
    assert_eq!(
        post(&url, body, Some("salt-9"), Some(sign(KEY, "salt-9", body))).await,
        200
    );
    let stats = receiver.stop().await.unwrap();
    assert_eq!(
        stats,
        Stats {
            stored: 1,
            duplicates: 1,
            unauthorized: 5,
            malformed: 2,
            ..Stats::default()
        }
    );
    assert_eq!(count(&db), 1);
    let row = support::rows(
        &db,
        "SELECT event, object_id, object_ref, user_ref, sent_date::VARCHAR FROM webhook_events",
    );
    assert_eq!(
        row,
        ["USER_UPDATED | u1 | emp-1 | emp-1 | 2026-06-01 10:00:00"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_after_in_flight_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"))
        .args(["-q", "webhook", "serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .env("PLUVO_WEBHOOK_KEY", KEY)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut url)
        .await
        .unwrap();
    let url = url.trim().to_string();
    assert!(url.ends_with("/pluvo/webhook"), "{url}");

    // 300 distinct events in flight from 30 clients; SIGTERM after the first 100 answers.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..30 {
        let (url, answered) = (url.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let http = support::http();
            let mut ok = Vec::new();
            for i in 0..10 {
                let body = format!(
                    r#"{{"event":"USER_UPDATED","id":"{client}-{i}","ref":"emp-{client}"}}"#
                );
                let sent = http
                    .post(&url)
                    .header("X-Signature-Salt", "s")
                    .header("X-Signature", sign(KEY, "s", body.as_bytes()))
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => ok.push(body),
                    Ok(r) => assert_eq!(r.status(), 503, "only 200 or stopping"),
                    Err(_) => break, // connection refused or closed: the receiver stopped
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }));
    }
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut ok = BTreeSet::new();
    for t in tasks {
        ok.extend(t.await.unwrap());
    }
    assert!(ok.len() >= 100, "{}", ok.len());
    let stored: BTreeSet<String> =
        support::rows(&db, "SELECT payload::VARCHAR FROM webhook_events")
            .into_iter()
            .collect();
    assert_eq!(stored, ok, "every 200 answer is stored, nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_refresh_a_new_certificate_reaches_portfolio_items_without_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    // The simulator needs the receiver's URL and the receiver the simulator's: pick the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sim = sim_delivering_to(&format!("http://127.0.0.1:{port}/pluvo/webhook"), 4).await;
    support::sync(&sim, &db, false).await;

    let config = support::config_for(&sim, &db);
    let client = pluvo_warehouse::api::Client::new(
        &config.api(pluvo_warehouse::config::Access::Read).unwrap(),
        Default::default(),
    )
    .unwrap();
    let receiver = Receiver::start(
        Warehouse::open(&db).unwrap(),
        Options {
            bind: format!("127.0.0.1:{port}").parse().unwrap(),
            path: "/pluvo/webhook".into(),
            key: Secret::new(KEY),
            max_body: 1 << 20,
            refresh: Some(pluvo_warehouse::webhook::Refresh {
                client,
                debounce: Duration::from_millis(100),
            }),
            limits: pluvo_warehouse::webhook::Limits::default(),
        },
    )
    .await
    .unwrap();

    sim.reset_counters();
    let (template, user_id, user_ref) = sim.with_data(|d| {
        let u = d
            .users
            .iter()
            .find(|u| !u.deleted && u.ref_.is_some())
            .unwrap();
        (
            d.certificates[0].id.to_string(),
            u.id.to_string(),
            u.ref_.clone().unwrap(),
        )
    });
    let token = support::token(&sim).await;
    support::gql(&sim, &token,
        "mutation($id: UUID!, $u: [UUID!]!) { generateCertificate(id: $id, title: \"Webhook refresh test\", userIds: $u) { bulkGenerate { succeededIds } } }",
        json!({ "id": template, "u": [user_id] })).await;
    let c = sim.webhooks_settled(Duration::from_secs(30)).await;
    assert_eq!(
        (c.webhooks_delivered, c.webhooks_given_up),
        (2, 0),
        "item created + certificate achieved: {c:?}"
    );
    for _ in 0..300 {
        if receiver.stats().refreshes + receiver.stats().refresh_failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = receiver.stop().await.unwrap();
    assert_eq!(
        (stats.stored, stats.refreshes, stats.refresh_failures),
        (2, 1, 0),
        "{stats:?}"
    );

    // Only the targeted reads ran: one user, one certificate day; no full scan.
    let ops: BTreeSet<String> = sim.counters().operations.into_keys().collect();
    let allowed: BTreeSet<String> = ["-", "User", "PortfolioReport"].map(String::from).into();
    assert!(ops.is_subset(&allowed), "{ops:?}");
    let found = support::rows(
        &db,
        &format!(
        "SELECT related_object_type, completion_date = now()::TIMESTAMP::DATE, _deleted_at IS NULL
         FROM portfolio_items WHERE user_ref = '{user_ref}' AND title = 'Webhook refresh test'"),
    );
    assert_eq!(found, ["CERTIFICATE | true | true"]);
    let runs = support::rows(
        &db,
        "SELECT streams FROM _runs ORDER BY run_id DESC LIMIT 1",
    );
    assert_eq!(runs, ["[refresh]"]);
}
