//! The [`Client`]: one GraphQL request = concurrency permit → rate gate → token → `POST
//! {base}/graphql/` → typed `data`, retried per `retry.rs`.
//!
//! The client is cheap to clone (an `Arc` inside); all clones share the token, the
//! concurrency limit, the adaptive rate and the counters. Responses are decoded straight from
//! the body into the caller's type, descending to the part of `data` it asked for (the
//! connection of a paged query) without building an intermediate JSON tree.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::Retryable;
use serde::de::{DeserializeOwned, IgnoredAny};
use tracing::{Instrument, debug, field};

use super::auth::{Token, TokenCache};
use super::envelope::{Envelope, parse_envelope};
use super::limit::{AUTO_START, Limiter};
use super::page::MAX_PAGE_SIZE;
use super::rate::RateGate;
use super::retry::{Failure, Policy, status_and_retry_after, transient_status};
use super::{Error, GraphQlError, Operation, Result};
use crate::config::{ApiConfig, HttpSettings, redact_url};

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("pluvo-warehouse/", env!("CARGO_PKG_VERSION"));

/// Run knobs of the client (the HTTP timeouts and retry bounds come from [`HttpSettings`]).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Requests in flight at once (`--concurrency`). Pluvo's limits are undocumented; 4 keeps
    /// a paced job near the limit without queueing much at the server. With
    /// `adaptive_concurrency`, the most in flight at once.
    pub concurrency: usize,
    /// Learn the number in flight from answer times and 429s (`--concurrency auto`), from
    /// [`AUTO_START`] up to `concurrency` (see `limit.rs`).
    pub adaptive_concurrency: bool,
    /// Nodes per page, 1..=50 (the API maximum).
    pub page_size: u32,
    /// First backoff delay; later ones double (with jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Renew the token this long before it expires (at most a quarter of its lifetime).
    pub renew_margin: Duration,
    /// Slow down on 429 (AIMD). Off only to measure the server's raw behaviour.
    pub adaptive_rate: bool,
    /// Requests in flight shared with other clients of the same run (`sync --all-orgs`):
    /// each request also holds one of these permits, so that several organisations synced
    /// at once stay within one overall budget instead of one budget each.
    pub budget: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            concurrency: 4,
            adaptive_concurrency: false,
            page_size: MAX_PAGE_SIZE,
            retry_base: Duration::from_millis(250),
            retry_cap: Duration::from_secs(30),
            renew_margin: Duration::from_secs(60),
            adaptive_rate: true,
            budget: None,
        }
    }
}

/// Counters for the run summary, from [`Client::stats`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// GraphQL requests sent (attempts, retries included).
    pub requests: u64,
    /// Attempts repeated after a failure (GraphQL and token requests; re-auths excluded).
    pub retries: u64,
    /// Tokens fetched because the server rejected the old one (401 or an `Auth` code).
    pub reauths: u64,
    /// Tokens fetched because the old one was about to expire.
    pub renewals: u64,
    /// Requests to the token endpoint (attempts).
    pub token_requests: u64,
    /// HTTP 429 answers.
    pub rate_limited: u64,
    /// Response body bytes received (after decompression).
    pub bytes: u64,
    /// Pages and nodes delivered by the pagers.
    pub pages: u64,
    pub rows: u64,
    /// The permitted request rate learnt from 429s, `None` while unlimited.
    pub permitted_rate: Option<f64>,
    /// Requests allowed in flight now (moves with `--concurrency auto`).
    pub concurrency: usize,
}

/// Requests and retries of one operation, from [`Client::op_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpStats {
    pub requests: u64,
    pub retries: u64,
}

impl Counters {
    fn count_op(&self, op: &'static str, f: impl FnOnce(&mut OpStats)) {
        f(self
            .by_op
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default());
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests and retries per operation name, so concurrent streams can each report theirs.
    pub by_op: std::sync::Mutex<std::collections::BTreeMap<&'static str, OpStats>>,
    pub requests: Counter,
    pub retries: Counter,
    pub reauths: Counter,
    pub renewals: Counter,
    pub token_requests: Counter,
    pub rate_limited: Counter,
    pub bytes: Counter,
    pub pages: Counter,
    pub rows: Counter,
}

/// What the token cache and the GraphQL requests share: the HTTP client, counters, policy.
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub counters: Counters,
    pub policy: Policy,
    pub settings: HttpSettings,
    /// The server has answered at least once (then connection failures are worth retrying).
    reached: AtomicBool,
}

impl Transport {
    pub(crate) fn mark_reached(&self) {
        self.reached.store(true, Ordering::Relaxed);
    }

    /// Classify a failed send. Before the server ever answered, failing to connect or to get
    /// an answer in time is final: a wrong host or port should fail in seconds, not after the
    /// whole retry budget.
    pub(crate) fn send_failure(
        &self,
        err: &reqwest::Error,
        op: &'static str,
        url: &str,
    ) -> Failure {
        let reached = self.reached.load(Ordering::Relaxed);
        let reason = if err.is_timeout() {
            let (what, limit, key) = if err.is_connect() {
                (
                    "connect",
                    self.settings.connect_timeout,
                    "connect_timeout_secs",
                )
            } else {
                ("answer", self.settings.timeout, "timeout_secs")
            };
            format!("no {what} within {limit:?} (`http.{key}`)")
        } else if is_tls(err) {
            format!(
                "TLS handshake failed ({}): the server may not speak https:// on this port",
                root_cause(err)
            )
        } else if err.is_connect() {
            format!("cannot connect: {}", root_cause(err))
        } else {
            format!("request failed: {}", root_cause(err))
        };
        if !reached && (err.is_connect() || err.is_timeout()) {
            return Failure::Fatal(Error::Unreachable {
                op,
                url: url.to_string(),
                reason,
            });
        }
        if err.is_connect() {
            Failure::NotSent { reason }
        } else if err.is_builder() {
            Failure::Fatal(Error::Build { reason })
        } else {
            Failure::Transient { reason }
        }
    }
}

/// True when a TLS error is in the chain (e.g. https:// to a plain-http port). `io::Error`
/// hides the error it wraps from `source()`, so look inside it too.
fn is_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    let wrapped = err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref);
    if let Some(inner) = wrapped
        && is_tls(inner)
    {
        return true;
    }
    err.source().is_some_and(is_tls)
}

/// The innermost cause of an error, e.g. "Connection refused (os error 111)".
/// Why an answer's body could not be read whole.
pub(crate) enum BodyError {
    /// Over the cap after decoding; the rest was not read.
    TooLarge,
    /// The connection broke or the encoding was bad.
    Cut(reqwest::Error),
}

/// The body, gzip-decoded, refused once it passes `cap` bytes. It is read chunk by chunk, so
/// at most `cap` plus one chunk is ever held: `bytes()` would hold all of a 1 MB gzip bomb's
/// gigabytes, or all of a runaway server's answer.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<bytes::Bytes, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Cut)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The Pluvo API client. Clone it freely.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    auth: TokenCache,
    graphql_url: reqwest::Url,
    graphql_url_text: String,
    limit: Limiter,
    gate: RateGate,
    options: ClientOptions,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.graphql_url_text)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// `data` that may be partial, with the errors that came with it ([`Client::query_partial`]).
#[derive(Debug, Clone)]
pub struct Partial<T> {
    pub data: Option<T>,
    pub errors: Vec<GraphQlError>,
    /// The size of the answer's body, in bytes.
    pub bytes: usize,
}

impl Client {
    /// A client for `config`; no request is made until the first query.
    pub fn new(config: &ApiConfig, options: ClientOptions) -> Result<Client> {
        if options.page_size == 0 || options.page_size > MAX_PAGE_SIZE {
            return Err(Error::PageSize {
                size: options.page_size,
            });
        }
        // reqwest is built without a default crypto provider; the first caller installs ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.http.connect_timeout)
            .timeout(config.http.timeout)
            .gzip(true)
            // A redirect would turn the POST into a GET: report it instead (wrong base URL).
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(options.concurrency.max(1))
            .build()
            .map_err(|err| Error::Build {
                reason: root_cause(&err),
            })?;
        let graphql_url = config.graphql_url();
        let policy = Policy::new(&config.http, options.retry_base, options.retry_cap);
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport {
                    http,
                    counters: Counters::default(),
                    policy,
                    settings: config.http.clone(),
                    reached: AtomicBool::new(false),
                },
                auth: TokenCache::new(config, options.renew_margin),
                graphql_url_text: redact_url(&graphql_url),
                graphql_url,
                limit: if options.adaptive_concurrency {
                    Limiter::adaptive(AUTO_START, options.concurrency, Instant::now())
                } else {
                    Limiter::fixed(options.concurrency)
                },
                gate: RateGate::new(Instant::now()),
                options,
            }),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Requests and retries so far of the operations named (summed).
    pub fn op_stats(&self, ops: &[&str]) -> OpStats {
        let by_op = self
            .inner
            .transport
            .counters
            .by_op
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        ops.iter()
            .filter_map(|name| by_op.get(name))
            .fold(OpStats::default(), |sum, o| OpStats {
                requests: sum.requests + o.requests,
                retries: sum.retries + o.retries,
            })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.transport.counters;
        Stats {
            requests: c.requests.get(),
            retries: c.retries.get(),
            reauths: c.reauths.get(),
            renewals: c.renewals.get(),
            token_requests: c.token_requests.get(),
            rate_limited: c.rate_limited.get(),
            bytes: c.bytes.get(),
            pages: c.pages.get(),
            rows: c.rows.get(),
            permitted_rate: self.inner.gate.rate(),
            concurrency: self.inner.limit.limit(),
        }
    }

    /// Get a token now (it is cached for the queries that follow). Commands call this before
    /// they open the warehouse, so wrong credentials or a wrong URL change nothing.
    pub async fn authenticate(&self) -> Result<()> {
        self.inner.auth.get(&self.inner.transport).await.map(drop)
    }

    /// Run `op` and decode all of `data` into `T`. Any GraphQL error fails the call.
    pub async fn query<T: DeserializeOwned>(
        &self,
        op: &Operation,
        variables: serde_json::Value,
    ) -> Result<T> {
        self.query_at(op, &variables, &[]).await
    }

    /// Run `op` and decode the value at `path` inside `data` (e.g. `["group", "users"]`).
    /// A `null` or missing value at the path is an [`Error::Decode`].
    pub async fn query_at<T: DeserializeOwned>(
        &self,
        op: &Operation,
        variables: &serde_json::Value,
        path: &[&str],
    ) -> Result<T> {
        Ok(self.query_at_sized(op, variables, path).await?.0)
    }

    /// [`Client::query_at`], with the size of the answer's body in bytes.
    pub(crate) async fn query_at_sized<T: DeserializeOwned>(
        &self,
        op: &Operation,
        variables: &serde_json::Value,
        path: &[&str],
    ) -> Result<(T, usize)> {
        let partial = self.send::<T>(op, variables, path, false).await?;
        let bytes = partial.bytes;
        let data = partial.data.ok_or_else(|| Error::Decode {
            op: op.name,
            reason: if path.is_empty() {
                "`data` is null".into()
            } else {
                format!("`{}` is null or missing in `data`", path.join("."))
            },
        })?;
        Ok((data, bytes))
    }

    /// Run `op`, accepting partial `data` alongside GraphQL errors (the caller decides). `T`
    /// must tolerate the nulls a failed field leaves. Authentication errors still re-auth.
    pub async fn query_partial<T: DeserializeOwned>(
        &self,
        op: &Operation,
        variables: serde_json::Value,
    ) -> Result<Partial<T>> {
        self.send(op, &variables, &[], true).await
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.transport.counters
    }

    /// One request with retries.
    async fn send<T: DeserializeOwned>(
        &self,
        op: &Operation,
        variables: &serde_json::Value,
        path: &[&str],
        allow_partial: bool,
    ) -> Result<Partial<T>> {
        let body = serde_json::to_vec(&serde_json::json!({
            "query": op.document,
            "variables": variables,
            "operationName": op.name,
        }))
        .map_err(|err| Error::Decode {
            op: op.name,
            reason: format!("cannot encode variables: {err}"),
        })?;
        let inner = &self.inner;
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let reauthed = AtomicBool::new(false);
        let result = (|| {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            self.attempt::<T>(op, body.clone(), path, allow_partial, n, &reauthed)
        })
        .retry(inner.transport.policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| f.retryable(op.idempotent))
        .adjust(|f, next| inner.transport.policy.adjust(f, next, started))
        .notify(|f, wait| {
            if !matches!(f, Failure::Unauthorized) {
                inner.transport.counters.retries.inc();
                inner
                    .transport
                    .counters
                    .count_op(op.name, |o| o.retries += 1);
            }
            debug!(op = op.name, reason = %f, ?wait, "Retrying.");
        })
        .await;
        let attempts = attempts.load(Ordering::Relaxed);
        result.map_err(|failure| match failure {
            Failure::Fatal(err) => err,
            Failure::Transient { reason } if !op.idempotent => Error::OutcomeUnknown {
                op: op.name,
                reason,
            },
            Failure::RateLimited { after } => Error::RateLimited {
                op: op.name,
                after: after.unwrap_or_default(),
                attempts,
            },
            Failure::Unauthorized => Error::CredentialsRejected {
                op: op.name,
                token_url: inner.auth.url().to_string(),
                reason: "http 401 on every attempt".into(),
            },
            other => Error::GaveUp {
                op: op.name,
                attempts,
                elapsed: started.elapsed(),
                last: format!("{other} from `{}`", inner.graphql_url_text),
            },
        })
    }

    /// One attempt: permit → rate slot → token → POST → classify.
    async fn attempt<T: DeserializeOwned>(
        &self,
        op: &Operation,
        body: Vec<u8>,
        path: &[&str],
        allow_partial: bool,
        attempt: u32,
        reauthed: &AtomicBool,
    ) -> Result<Partial<T>, Failure> {
        let inner = &*self.inner;
        let span = tracing::debug_span!(
            "graphql",
            op = op.name,
            attempt,
            status = field::Empty,
            bytes = field::Empty,
            ms = field::Empty
        );
        async move {
            let _permit = inner.limit.acquire().await;
            let _budget = match &inner.options.budget {
                Some(budget) => Some(budget.acquire().await.expect("the budget is never closed")),
                None => None,
            };
            let epoch = self.wait_for_slot().await;
            let token = inner
                .auth
                .get(&inner.transport)
                .await
                .map_err(Failure::Fatal)?;
            let answer = self.post(op, &token, body).await?;
            // The adaptive concurrency learns from every answer: a 429 or a transient server
            // error (a 503, or a 500/502/504 that a loaded server or its gateway gives fast)
            // says the server is struggling; any other answer gives its time.
            match answer.status {
                s if s == 429 || transient_status(s) => inner.limit.on_throttle(),
                _ => inner.limit.on_answer(answer.took, Instant::now()),
            }
            match answer.status {
                429 => return Err(self.throttled(epoch, answer.retry_after)),
                401 => return Err(self.unauthorized(op, &token, reauthed, "http 401").await),
                s if transient_status(s) => {
                    return Err(Failure::Transient {
                        reason: format!("http {s}"),
                    });
                }
                s if (300..400).contains(&s) => {
                    return Err(self.http_error(
                        op,
                        s,
                        format!(
                            "redirected to `{}`; check the base URL",
                            answer.location.unwrap_or_default()
                        ),
                    ));
                }
                _ => {}
            }
            let envelope = self.envelope::<T>(op, &answer, path)?;
            if envelope.errors.iter().any(GraphQlError::is_auth) {
                let code = envelope
                    .errors
                    .iter()
                    .find_map(GraphQlError::code)
                    .unwrap_or("Auth");
                let reason = format!("graphql error code `{code}`");
                return Err(self.unauthorized(op, &token, reauthed, &reason).await);
            }
            if !(200..300).contains(&answer.status) && envelope.errors.is_empty() {
                let body = &answer.body;
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(self.http_error(op, answer.status, text));
            }
            if !envelope.errors.is_empty() && (!allow_partial || envelope.data.is_none()) {
                return Err(Failure::Fatal(Error::GraphQl {
                    op: op.name,
                    errors: envelope.errors,
                }));
            }
            if inner.options.adaptive_rate {
                inner.gate.on_success(Instant::now());
            }
            Ok(Partial {
                data: envelope.data,
                errors: envelope.errors,
                bytes: answer.body.len(),
            })
        }
        .instrument(span)
        .await
    }

    /// Wait for a send slot of the adaptive rate; ask again if the rate was cut while
    /// waiting. Returns the rate's epoch, for [`Client::throttled`].
    pub(super) async fn wait_for_slot(&self) -> u64 {
        let inner = &*self.inner;
        if !inner.options.adaptive_rate {
            return 0;
        }
        loop {
            let slot = inner.gate.reserve(Instant::now());
            let mut now = Instant::now();
            // A slot already due is taken at once. Awaiting a timer for it anyway costs up to
            // a millisecond a request (tokio rounds deadlines up to its next tick): at 4 in
            // flight against a fast server, the client fetched 2,500 pages/s instead of 8,300.
            if slot.at > now {
                tokio::time::sleep_until(slot.at.into()).await;
                now = Instant::now();
            }
            if inner.gate.admit(slot, now) {
                return slot.epoch;
            }
        }
    }

    /// POST the request and read the whole answer (counted, timed, logged).
    async fn post(&self, op: &Operation, token: &Token, body: Vec<u8>) -> Result<Answer, Failure> {
        let inner = &*self.inner;
        let sent_at = Instant::now();
        inner.transport.counters.requests.inc();
        inner
            .transport
            .counters
            .count_op(op.name, |o| o.requests += 1);
        let response = inner
            .transport
            .http
            .post(inner.graphql_url.clone())
            .bearer_auth(token.value.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| {
                inner
                    .transport
                    .send_failure(&err, op.name, &inner.graphql_url_text)
            })?;
        inner.transport.mark_reached();
        let (status, retry_after) = status_and_retry_after(&response);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cap = inner.transport.settings.max_reply_bytes;
        let body = read_capped(response, cap).await;
        let span = tracing::Span::current();
        span.record("ms", sent_at.elapsed().as_millis() as u64);
        let body = body.map_err(|err| match err {
            BodyError::Cut(err) => Failure::Transient {
                reason: format!("response body cut off: {}", root_cause(&err)),
            },
            BodyError::TooLarge => Failure::Fatal(Error::TooLarge {
                op: op.name,
                url: inner.graphql_url_text.clone(),
                limit_mb: cap.div_ceil(1024 * 1024),
            }),
        })?;
        inner.transport.counters.bytes.add(body.len() as u64);
        span.record("bytes", body.len() as u64);
        debug!("Answered.");
        Ok(Answer {
            took: sent_at.elapsed(),
            status,
            retry_after,
            location,
            body,
        })
    }

    /// A 429: count it, slow the adaptive rate down, retry after the server's delay.
    fn throttled(&self, epoch: u64, retry_after: Option<Duration>) -> Failure {
        let inner = &*self.inner;
        inner.transport.counters.rate_limited.inc();
        if inner.options.adaptive_rate
            && let Some(rate) = inner.gate.on_throttle(epoch, Instant::now(), retry_after)
        {
            debug!(rate, "Rate limited; slowing down.");
        }
        Failure::RateLimited { after: retry_after }
    }

    /// A final HTTP error of `op`, naming the URL.
    fn http_error(&self, op: &Operation, status: u16, body: String) -> Failure {
        Failure::Fatal(Error::Http {
            op: op.name,
            url: self.inner.graphql_url_text.clone(),
            status,
            body,
        })
    }

    /// The answer's GraphQL envelope, or what its failure to parse means: a body cut off in
    /// transit is worth another try; a non-JSON error page is final; data that does not fit
    /// `T` is accepted when errors explain it (nulls left by failed fields).
    fn envelope<T: DeserializeOwned>(
        &self,
        op: &Operation,
        answer: &Answer,
        path: &[&str],
    ) -> Result<Envelope<T>, Failure> {
        let body = &answer.body;
        match parse_envelope::<T>(body, path) {
            Ok(envelope) => Ok(envelope),
            Err(err) if (err.is_eof() || err.is_syntax()) && body.first() == Some(&b'{') => {
                Err(Failure::Transient {
                    reason: format!("invalid JSON in the answer ({err})"),
                })
            }
            Err(err) if !(200..300).contains(&answer.status) => {
                Err(self.http_error(op, answer.status, snippet(body, &err)))
            }
            Err(err) if err.is_data() => {
                let errors = parse_envelope::<IgnoredAny>(body, &[])
                    .map(|e| e.errors)
                    .unwrap_or_default();
                if errors.is_empty() {
                    return Err(Failure::Fatal(Error::Decode {
                        op: op.name,
                        reason: err.to_string(),
                    }));
                }
                Ok(Envelope { data: None, errors })
            }
            Err(err) => Err(Failure::Transient {
                reason: format!("the answer is not JSON ({err})"),
            }),
        }
    }

    /// A 401 (or `Auth` code): drop the token and resend once; if even a token fetched after
    /// that is refused, the credentials are wrong — fail this and every later request.
    async fn unauthorized(
        &self,
        op: &Operation,
        token: &Token,
        reauthed: &AtomicBool,
        reason: &str,
    ) -> Failure {
        let inner = &*self.inner;
        if reauthed.load(Ordering::Relaxed) && token.is_fresh() {
            let err = Error::CredentialsRejected {
                op: op.name,
                token_url: inner.auth.url().to_string(),
                reason: reason.to_string(),
            };
            inner.auth.fail(&err).await;
            return Failure::Fatal(err);
        }
        reauthed.store(true, Ordering::Relaxed);
        debug!(op = op.name, reason, "Token rejected; re-authenticating.");
        inner.auth.invalidate(token.generation).await;
        Failure::Unauthorized
    }
}

/// The first bytes of a body that is not a GraphQL answer, for an error message.
fn snippet(body: &[u8], err: &serde_json::Error) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        format!("empty body ({err})")
    } else {
        text.replace('\n', " ")
    }
}

/// One HTTP answer, read whole.
struct Answer {
    /// From sending the request to the end of the body.
    took: Duration,
    status: u16,
    retry_after: Option<Duration>,
    location: Option<String>,
    body: bytes::Bytes,
}
