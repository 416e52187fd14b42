//! HTTP side of the simulator: `POST /oauth/token/`, `POST /graphql/`, the fault pipeline in
//! front of GraphQL, and `/_sim/*` admin endpoints (counters, churn ticks, faults) for tests
//! and demos that run the simulator in another process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use rand::{RngExt, distr::Alphanumeric};
use serde_json::json;

use super::schema::{self, Grant, PluvoSchema};
use super::{Faults, State, Token};

#[derive(Clone)]
struct App {
    state: Arc<State>,
    schema: PluvoSchema,
}

pub(super) fn router(state: Arc<State>) -> Router {
    let app = App {
        schema: schema::build(state.clone()),
        state,
    };
    Router::new()
        .route("/oauth/token/", post(token))
        .route("/graphql/", post(graphql))
        .route("/graphql", post(missing_slash))
        .route("/_sim/counters", get(counters))
        .route("/_sim/tick", post(tick))
        .route("/_sim/faults", post(set_faults).get(get_faults))
        .route("/_sim/expire-tokens", post(expire_tokens))
        .route("/_sim/webhooks/redeliver", post(redeliver_webhooks))
        .with_state(app)
}

/// A token bucket holding one second of burst at the configured rate.
#[derive(Debug, Default)]
pub(super) struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// Take one request; `Err(wait)` when over the rate.
    pub(super) fn take(&mut self, rps: f64, now: Instant) -> Result<(), Duration> {
        let capacity = rps.max(1.0);
        let elapsed = self
            .last
            .map_or(capacity / rps, |l| now.duration_since(l).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rps).min(capacity);
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rps))
        }
    }
}

fn respond(
    state: &State,
    status: StatusCode,
    body: impl Into<axum::body::Body>,
    json: bool,
) -> Response {
    state.count(|c| *c.responses.entry(status.as_u16()).or_default() += 1);
    let mut response = (status, body.into()).into_response();
    let kind = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

async fn token(AxState(app): AxState<App>, headers: HeaderMap, body: Bytes) -> Response {
    let st = &app.state;
    st.count(|c| c.token_requests += 1);
    let faults = st.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.token_unavailable {
        return server_error(st, StatusCode::SERVICE_UNAVAILABLE, "token");
    }
    let form: HashMap<String, String> = serde_urlencoded_pairs(&body);
    let (mut id, mut secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    if let Some((i, s)) = basic_auth(&headers) {
        id = Some(i);
        secret = Some(s);
    }
    let error = |status: StatusCode, code: &str| {
        respond(st, status, json!({ "error": code }).to_string(), true)
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if id.as_deref() != Some(&st.config.client_id)
        || secret.as_deref() != Some(&st.config.client_secret)
    {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let allowed: Vec<&str> = st.config.scopes.iter().map(String::as_str).collect();
    let requested: Vec<&str> = match form.get("scope") {
        Some(s) if !s.trim().is_empty() => s.split_whitespace().collect(),
        _ => allowed.clone(),
    };
    if requested.iter().any(|s| !allowed.contains(s)) {
        return error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let access: String = {
        let mut rng = st.rng.lock().unwrap_or_else(|e| e.into_inner());
        (0..30)
            .map(|_| char::from(rng.sample(Alphanumeric)))
            .collect()
    };
    let ttl = st.config.token_ttl;
    st.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(
        access.clone(),
        Token {
            expires: Instant::now() + ttl,
            scopes: requested.iter().map(|s| s.to_string()).collect(),
        },
    );
    st.count(|c| c.tokens_issued += 1);
    let body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": requested.join(" "),
    });
    respond(st, StatusCode::OK, body.to_string(), true)
}

fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Where an injected failure strikes.
enum Strike {
    None,
    FailBefore(StatusCode),
    FailAfter(StatusCode),
    Truncate,
}

fn roll(state: &State, faults: &Faults) -> Strike {
    let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
    if faults.fail_rate > 0.0 && rng.random_bool(faults.fail_rate.min(1.0)) {
        let status = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][rng.random_range(0..3)];
        return if rng.random_bool(0.5) {
            Strike::FailBefore(status)
        } else {
            Strike::FailAfter(status)
        };
    }
    if faults.truncate_rate > 0.0 && rng.random_bool(faults.truncate_rate.min(1.0)) {
        return Strike::Truncate;
    }
    Strike::None
}

fn server_error(state: &State, status: StatusCode, when: &str) -> Response {
    state.count(|c| *c.faults.entry(format!("5xx-{when}")).or_default() += 1);
    let body = format!(
        "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>",
        status
    );
    respond(state, status, body, false)
}

async fn graphql(AxState(app): AxState<App>, headers: HeaderMap, body: Bytes) -> Response {
    let st = &app.state;
    st.count(|c| {
        c.graphql_requests += 1;
        c.graphql_in_flight += 1;
        c.graphql_peak_in_flight = c.graphql_peak_in_flight.max(c.graphql_in_flight);
    });
    // Counted down however the answer ends (an early return, or the client hanging up).
    struct Answering<'a>(&'a State);
    impl Drop for Answering<'_> {
        fn drop(&mut self) {
            self.0
                .count(|c| c.graphql_in_flight = c.graphql_in_flight.saturating_sub(1));
        }
    }
    let _answering = Answering(st);
    let faults = st.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(rps) = faults.rate_limit_rps {
        let verdict = st
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(rps, Instant::now());
        if let Err(wait) = verdict {
            st.count(|c| *c.faults.entry("429".into()).or_default() += 1);
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let body = json!({ "detail": format!("Request was throttled. Expected available in {secs} seconds.") });
            let mut response = respond(st, StatusCode::TOO_MANY_REQUESTS, body.to_string(), true);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return response;
        }
    }

    let token = bearer(&headers).and_then(|t| {
        let tokens = st.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(t)
            .filter(|tok| tok.expires > Instant::now())
            .cloned()
    });
    let Some(token) = token else {
        return match faults.auth_error {
            super::AuthErrorMode::Http => respond(
                st,
                StatusCode::UNAUTHORIZED,
                json!({ "detail": "Authentication credentials were not provided or have expired." }).to_string(),
                true,
            ),
            super::AuthErrorMode::Graphql => respond(
                st,
                StatusCode::OK,
                json!({ "data": null, "errors": [{
                    "message": "Authentication token has expired or is invalid.",
                    "extensions": { "code": "AuthenticationExpired" }
                }]})
                .to_string(),
                true,
            ),
        };
    };

    let strike = roll(st, &faults);
    if let Strike::FailBefore(status) = strike {
        return server_error(st, status, "before");
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let body = json!({ "errors": [{ "message": format!("Request body is not a GraphQL request: {e}") }] });
            return respond(st, StatusCode::BAD_REQUEST, body.to_string(), true);
        }
    };
    let op = request.operation_name.clone().unwrap_or_else(|| "-".into());
    if faults.gateway_timeout_rate > 0.0 && is_mutation(&request) && {
        let mut rng = st.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random_bool(faults.gateway_timeout_rate.min(1.0))
    } {
        // The gateway gives up at once; the backend finishes the mutation later.
        st.count(|c| *c.faults.entry("504-then-apply".into()).or_default() += 1);
        let (schema, state, delay) = (
            app.schema.clone(),
            app.state.clone(),
            faults.gateway_apply_after,
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            state.count(|c| *c.operations.entry(op).or_default() += 1);
            let _ = schema.execute(request.data(Grant(token.scopes))).await;
        });
        let status = StatusCode::GATEWAY_TIMEOUT;
        let body = format!(
            "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>",
            status
        );
        return respond(st, status, body, false);
    }
    st.count(|c| *c.operations.entry(op).or_default() += 1);
    if faults.shift_pages > 0 && is_later_users_page(&request) {
        // Between pages: the rows move after the first page was read.
        st.shift_before_page();
    }
    if let Some(slow) = faults.slow_page
        && offset_of(&request) == Some(slow.offset)
    {
        tokio::time::sleep(slow.delay).await;
    }
    // Faults::replay: of data that does not change with the clock. Only queries are kept, so
    // a body found is a query's.
    let replay = (faults.replay
        && matches!(strike, Strike::None)
        && !faults.empty_lists
        && faults.shift_pages == 0
        && st.config.membership_delay.is_zero())
    .then(|| replay_key(&token.scopes, &request));
    if let Some(key) = &replay
        && let Some((status, bytes)) = st.replayed(key)
    {
        st.count(|c| c.replayed += 1);
        return respond(st, status, bytes, true);
    }
    let replay = replay
        .filter(|_| !is_mutation(&request))
        .map(|key| (key, st.version()));
    let response = app.schema.execute(request.data(Grant(token.scopes))).await;
    // Parse and validation errors carry no `path`: the document was refused (400). Errors in
    // resolvers carry the path of their field and come with HTTP 200.
    let refused = response.errors.iter().any(|e| e.path.is_empty());
    let status = if refused && response.data == async_graphql::Value::Null {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut bytes = if faults.empty_lists {
        let mut json = serde_json::to_value(&response).unwrap_or_default();
        if let Some(data) = json.get_mut("data") {
            empty_connections(data);
        }
        serde_json::to_vec(&json).unwrap_or_default()
    } else {
        serde_json::to_vec(&response).unwrap_or_default()
    };
    match strike {
        Strike::FailAfter(status) => server_error(st, status, "after"),
        Strike::Truncate => {
            st.count(|c| *c.faults.entry("truncated".into()).or_default() += 1);
            let cut = {
                let mut rng = st.rng.lock().unwrap_or_else(|e| e.into_inner());
                rng.random_range(1..bytes.len().max(2))
            };
            bytes.truncate(cut);
            respond(st, status, bytes, true)
        }
        _ => {
            let bytes = Bytes::from(bytes);
            if let Some((key, version)) = replay {
                st.keep(key, version, (status, bytes.clone()));
            }
            respond(st, status, bytes, true)
        }
    }
}

/// What a replayed answer is kept by ([`Faults::replay`]): the grant, the operation, the
/// variables (sorted) and the document.
fn replay_key(
    scopes: &std::collections::HashSet<String>,
    request: &async_graphql::Request,
) -> String {
    let mut scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    scopes.sort_unstable();
    let variables: std::collections::BTreeMap<String, String> = request
        .variables
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    format!(
        "{}\n{:?}\n{variables:?}\n{}",
        scopes.join(" "),
        request.operation_name,
        request.query
    )
}

/// The `empty_lists` fault: every connection in `value` loses its rows.
fn empty_connections(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("edges") {
                map.insert("edges".into(), json!([]));
                if map.contains_key("count") {
                    map.insert("count".into(), json!(0));
                }
                if let Some(info) = map.get_mut("pageInfo").and_then(|i| i.as_object_mut()) {
                    info.insert("hasNextPage".into(), json!(false));
                    info.insert("endCursor".into(), serde_json::Value::Null);
                }
            }
            map.values_mut().for_each(empty_connections);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(empty_connections),
        _ => {}
    }
}

/// A `paginatedUsers` page after the first (`offset` > 0): where the `shift_pages` fault
/// strikes, so that the first page is always read before the rows move.
fn is_later_users_page(request: &async_graphql::Request) -> bool {
    request.query.contains("paginatedUsers") && offset_of(request).is_some_and(|offset| offset > 0)
}

/// The request's `offset` variable, if it has one.
fn offset_of(request: &async_graphql::Request) -> Option<u64> {
    serde_json::to_value(&request.variables)
        .ok()
        .and_then(|v| v.get("offset").and_then(serde_json::Value::as_u64))
}

/// Whether the request's operation is a mutation (an unparsable document is not: the schema
/// refuses it).
fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let mutation = |ty: OperationType| ty == OperationType::Mutation;
    match &document.operations {
        DocumentOperations::Single(op) => mutation(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops
                .iter()
                .any(|(n, op)| n.as_str() == name && mutation(op.node.ty)),
            None => ops.values().any(|op| mutation(op.node.ty)),
        },
    }
}

/// Django answers a POST to a URL without its trailing slash with a redirect the client
/// cannot follow with its body; we answer 301 the same way.
async fn missing_slash(AxState(app): AxState<App>) -> Response {
    let mut response = respond(&app.state, StatusCode::MOVED_PERMANENTLY, "", false);
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/graphql/"));
    response
}

async fn counters(AxState(app): AxState<App>) -> Json<super::Counters> {
    Json(
        app.state
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

async fn tick(
    AxState(app): AxState<App>,
    Query(q): Query<HashMap<String, usize>>,
) -> Json<serde_json::Value> {
    let changes = q.get("changes").copied().unwrap_or(10);
    let out = app.state.write().tick(changes, chrono::Utc::now());
    let n = out.len();
    for c in out {
        app.state.record_change(c);
    }
    Json(json!({ "changes": n }))
}

async fn set_faults(AxState(app): AxState<App>, Json(faults): Json<Faults>) -> StatusCode {
    *app.state.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    StatusCode::NO_CONTENT
}

async fn get_faults(AxState(app): AxState<App>) -> Json<Faults> {
    Json(app.state.faults())
}

async fn expire_tokens(AxState(app): AxState<App>) -> StatusCode {
    app.state
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    StatusCode::NO_CONTENT
}

/// Deliver every webhook answered 2xx once more (a forced redelivery).
async fn redeliver_webhooks(AxState(app): AxState<App>) -> Json<serde_json::Value> {
    Json(json!({ "queued": app.state.redeliver_webhooks() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_to_the_rate() {
        let mut b = Bucket::default();
        let t0 = Instant::now();
        let ok = (0..20).filter(|_| b.take(10.0, t0).is_ok()).count();
        assert_eq!(ok, 10, "one second of burst");
        let wait = b.take(10.0, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100));
        assert!(b.take(10.0, t0 + Duration::from_millis(150)).is_ok());
    }
}
