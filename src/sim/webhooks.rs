//! Webhook deliveries of the simulator. Every change in the change log (mutations and churn
//! ticks) becomes Pluvo-style events (flat JSON with `event`, `id`, `ref`, `sentDate`, see
//! pluvo-api.md "Webhooks"), signed and POSTed to the configured URL by a delivery task that
//! retries non-2xx answers with exponential backoff up to `max_attempts` times, and stops for
//! good when answered 410, as Pluvo does.
//!
//! The signer here is the simulator's own ([`sign`]): the simulator imports nothing from the
//! crate, and the receiver (`webhook/verify.rs`) checks signatures with its own code, so a bug
//! in one is caught by the other (both are tested against the same vector computed with
//! Python's `hmac`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use chrono::{NaiveDate, Utc};
use hmac::{KeyInit, Mac};
use rand::{RngExt, distr::Alphanumeric};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::State;
use super::data::{Change, Dataset, Id, Item, ItemChange, Kind};

/// Where and how the simulator delivers webhooks.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The receiver's URL (`http://127.0.0.1:8787/pluvo/webhook`).
    pub url: String,
    /// The signing key (never printed).
    pub key: String,
    /// Events to deliver, e.g. `USER_CREATED`; empty = all.
    pub events: Vec<String>,
    /// Wait before the first retry; doubles each attempt (Pluvo's exact schedule is unknown).
    pub backoff: Duration,
    /// Attempts per delivery before giving up (Pluvo: 72).
    pub max_attempts: u32,
    /// Per-attempt timeout (Pluvo: 30 s).
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl WebhookConfig {
    /// Pluvo's behaviour towards `url`, signed with `key`: all events, 72 attempts, 30 s timeout.
    pub fn new(url: impl Into<String>, key: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            key: key.into(),
            events: Vec::new(),
            backoff: Duration::from_secs(1),
            max_attempts: 72,
            timeout: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("key", &"***")
            .field("events", &self.events)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// `X-Signature` for `body`: HMAC-SHA1 keyed with the salt followed by the key, base64.
pub fn sign(key: &str, salt: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(format!("{salt}{key}").as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The events a change produces, as `(event name, payload without event/sentDate)`.
pub(super) fn events(data: &Dataset, change: &Change) -> Vec<(&'static str, Value)> {
    let user = |pos: u32| data.users.get(pos as usize);
    match change {
        Change::UserCreated(pos, _) | Change::UserUpdated(pos) | Change::UserDeleted(pos) => {
            let name = match change {
                Change::UserCreated(..) => "USER_CREATED",
                Change::UserUpdated(_) => "USER_UPDATED",
                _ => "USER_DELETED",
            };
            user(*pos).map_or_else(Vec::new, |u| {
                vec![(
                    name,
                    json!({
                        "id": u.id.to_string(), "ref": u.ref_, "name": u.name, "email": u.email,
                        "archived": u.archived, "roles": u.role_names(), "language": u.language,
                        "lastLogin": u.last_login.map(|t| t.to_rfc3339()),
                    }),
                )]
            })
        }
        Change::ItemChanged(pos, how) => {
            let Some(u) = user(*pos) else {
                return Vec::new();
            };
            let (name, item) = match how {
                ItemChange::Created(i) => ("PORTFOLIO_ITEM_CREATED", u.items.get(*i)),
                ItemChange::Updated(i) => ("PORTFOLIO_ITEM_UPDATED", u.items.get(*i)),
                ItemChange::Deleted(item) => ("PORTFOLIO_ITEM_DELETED", Some(item)),
            };
            let Some(item) = item else {
                return Vec::new();
            };
            let owner = json!({ "id": u.id.to_string(), "ref": u.ref_, "name": u.name });
            let id = item_id(u.id, item).to_string();
            let mut out = vec![(
                name,
                json!({
                    "id": id, "ref": null, "user": owner, "title": &*item.title,
                    "relatedObjectType": item.kind.as_str(), "progress": item.progress,
                    "score": item.score, "completionDate": item.completion_date.map(date),
                    "endDate": item.end_date.map(date),
                }),
            )];
            if item.kind == Kind::Certificate && matches!(how, ItemChange::Created(_)) {
                let training = item.training.and_then(|t| data.trainings.get(t as usize));
                out.push((
                    "EVENT_CERTIFICATE_ACHIEVED",
                    json!({
                        "id": id, "ref": null, "user": owner, "title": &*item.title,
                        "training": training.map(|t| json!({ "id": t.id.to_string(), "title": &*t.title })),
                        "creationDate": item.completion_date.map(date_time),
                        "expiryDate": item.end_date.map(date_time),
                    }),
                ));
            }
            out
        }
        // Assumed: Pluvo reports a membership change as an update of the group.
        Change::MembershipChanged(_, g) => {
            data.groups.get(*g as usize).map_or_else(Vec::new, |g| {
                vec![(
                    "GROUP_UPDATED",
                    json!({ "id": g.id.to_string(), "ref": g.ref_, "name": g.name }),
                )]
            })
        }
        // Enrollment payloads use snake_case keys (pluvo-api.md).
        Change::Enrolled(pos, e) => {
            let (Some(u), Some(event)) = (user(*pos), data.offer_events.get(*e as usize)) else {
                return Vec::new();
            };
            let Some((id, status)) = event.enrollments.get(&u.seq) else {
                return Vec::new();
            };
            vec![(
                "OFFER_EVENT_ENROLLED",
                json!({
                    "id": id.to_string(), "ref": null, "status": status,
                    "offer_event": { "id": event.id.to_string(), "ref": event.ref_,
                                     "title": event.title, "type": event.kind },
                    "user": { "id": u.id.to_string(), "ref": u.ref_, "name": u.name },
                }),
            )]
        }
    }
}

/// Portfolio items have no id in the simulator: derive a stable one from what keys them in
/// the warehouse (user, type, title), so created/updated/deleted events of one item agree.
fn item_id(user: Id, item: &Item) -> Id {
    let mut h = std::hash::DefaultHasher::new();
    (item.kind, &*item.title).hash(&mut h);
    Id(user.0 ^ u128::from(h.finish()))
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn date_time(d: NaiveDate) -> String {
    d.format("%Y-%m-%dT00:00:00.000Z").to_string()
}

/// The body of one delivery: the event's payload with `event` and `sentDate` (now) added.
pub(super) fn body(event: &str, mut payload: Value) -> Bytes {
    payload["event"] = json!(event);
    payload["sentDate"] = json!(Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    Bytes::from(serde_json::to_vec(&payload).expect("JSON values serialise"))
}

/// Deliver queued bodies until the simulator stops; one task per delivery, `concurrency` at once.
pub(super) async fn run(
    state: Arc<State>,
    config: WebhookConfig,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "Simulator cannot build its webhook HTTP client.");
            return;
        }
    };
    let config = Arc::new(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1)));
    while let Some(body) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (state, http, config) = (state.clone(), http.clone(), config.clone());
        tokio::spawn(async move {
            deliver(&state, &http, &config, body).await;
            drop(slot);
        });
    }
}

/// One delivery with Pluvo's retry behaviour: 2xx done, 410 disables, anything else retried.
async fn deliver(state: &State, http: &reqwest::Client, config: &WebhookConfig, body: Bytes) {
    for attempt in 0..config.max_attempts {
        if state.webhooks_disabled.load(Ordering::Relaxed) {
            break;
        }
        let salt: String = {
            let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..16)
                .map(|_| char::from(rng.sample(Alphanumeric)))
                .collect()
        };
        let status = http
            .post(&config.url)
            .header("content-type", "application/json")
            .header("x-signature", sign(&config.key, &salt, &body))
            .header("x-signature-salt", salt)
            .body(body.clone())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        state.count(|c| *c.webhook_attempts.entry(status).or_default() += 1);
        if (200..300).contains(&status) {
            state.count(|c| c.webhooks_delivered += 1);
            state
                .delivered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(body);
            return;
        }
        if status == 410 {
            tracing::warn!(url = %config.url, "Webhook receiver answered 410: subscription disabled.");
            state.webhooks_disabled.store(true, Ordering::Relaxed);
            break;
        }
        if attempt + 1 < config.max_attempts {
            let factor = 2u32.saturating_pow(attempt.min(16));
            tokio::time::sleep(config.backoff.saturating_mul(factor)).await;
        }
    }
    state.count(|c| c.webhooks_given_up += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_implementation() {
        // python3: base64(hmac.new(b'salt123' + b'key-abc', body, hashlib.sha1).digest())
        let body = br#"{"event":"USER_CREATED","id":"1"}"#;
        assert_eq!(
            sign("key-abc", "salt123", body),
            "jv6Yylx/vbPEZf9lnA5+m6W8BQs="
        );
    }
}
