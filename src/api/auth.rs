//! The OAuth2 token cache: client_credentials against `{base}/oauth/token/` (pluvo-api.md).
//!
//! One token request at a time: [`TokenCache::get`] holds an async mutex while it fetches, so
//! concurrent requests wait for that one answer instead of each asking for a token. The token
//! is renewed shortly before `expires_in` runs out, and dropped on a 401 so the next request
//! fetches a new one ([`TokenCache::invalidate`]).
//!
//! Failures, for a process that runs for days (`webhook serve --refresh`):
//! - **rejected credentials** (the token endpoint refuses the client: 401 `invalid_client`,
//!   other 4xx refusals) are final: every later request gets the same error without another
//!   token request, so a wrong secret costs one request, not a storm;
//! - **anything else** (unreachable, 5xx or 429 until the retry budget ran out, a cut-off
//!   answer) is transient: callers get the error without a new token request for a backoff
//!   that doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], then the next caller tries again;
//! - a failed **renewal** keeps the current token while it is still valid: requests go on
//!   with it, and renewal is tried again after the backoff.
//!
//! Neither the secret nor a token is ever logged or put into an error: both live in
//! [`Secret`] and leave it only for the request body or the `Authorization` header.

use std::time::{Duration, Instant};

use backon::Retryable;
use serde::Deserialize;
use tracing::{Instrument, debug, field, warn};

use super::Error;
use super::client::Transport;
use super::retry::{Failure, status_and_retry_after, transient_status};
use crate::config::{ApiConfig, Secret, redact_url};

/// Used when the token answer has no `expires_in` (Pluvo sends 86400).
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// First wait after a transient token failure before the next token request.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between token requests after repeated transient failures.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A token is not used in its last seconds: a request sent with it could arrive expired.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// A token and when it was obtained.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Secret,
    /// Increases with every fetched token; a 401 drops only the token it was seen with.
    pub generation: u64,
    pub obtained: Instant,
    pub ttl: Duration,
}

impl Token {
    /// Recently issued: a 401 for such a token means the credentials, not the clock.
    pub(crate) fn is_fresh(&self) -> bool {
        self.obtained.elapsed() < (self.ttl / 2).min(Duration::from_secs(60))
    }

    /// When to renew: `margin` before expiry, but never sooner than 3/4 of the lifetime.
    fn renew_at(&self, margin: Duration) -> Instant {
        self.obtained + self.ttl - margin.min(self.ttl / 4)
    }

    /// Still usable now (not within [`EXPIRY_MARGIN`] of its expiry).
    fn valid(&self) -> bool {
        self.obtained.elapsed() + EXPIRY_MARGIN.min(self.ttl / 8) < self.ttl
    }
}

/// Why a token is being fetched (counted separately in [`super::Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    First,
    Renewal,
    Reauth,
}

struct State {
    token: Option<Token>,
    generation: u64,
    /// The last token was dropped by a 401.
    invalidated: bool,
    /// The credentials were rejected: final, every caller gets this error.
    failed: Option<Error>,
    /// The last fetch failed transiently: no new token request before `until`.
    backoff: Option<Backoff>,
}

/// A transient token failure and when to try again.
struct Backoff {
    error: Error,
    until: Instant,
    delay: Duration,
}

pub(crate) struct TokenCache {
    url: reqwest::Url,
    url_text: String,
    client_id: String,
    secret: Secret,
    scope: String,
    /// What to check when the client is refused ([`ApiConfig::credentials`]).
    credentials: String,
    renew_margin: Duration,
    state: tokio::sync::Mutex<State>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<f64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenCache {
    pub(crate) fn new(config: &ApiConfig, renew_margin: Duration) -> TokenCache {
        let url = config.token_url();
        TokenCache {
            url_text: redact_url(&url),
            url,
            client_id: config.client_id.clone(),
            secret: config.client_secret.clone(),
            scope: config.scope.clone(),
            credentials: config.credentials.clone(),
            renew_margin,
            state: tokio::sync::Mutex::new(State {
                token: None,
                generation: 0,
                invalidated: false,
                failed: None,
                backoff: None,
            }),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url_text
    }

    /// A valid token: the cached one, or a new one (fetched by exactly one caller at a time).
    pub(crate) async fn get(&self, transport: &Transport) -> Result<Token, Error> {
        let mut state = self.state.lock().await;
        if let Some(err) = &state.failed {
            return Err(err.clone_for_waiters());
        }
        let now = Instant::now();
        let waiting = state.backoff.as_ref().filter(|b| now < b.until);
        match (&state.token, waiting) {
            (Some(token), _) if now < token.renew_at(self.renew_margin) => {
                return Ok(token.clone());
            }
            // A renewal failed a moment ago: keep the token while it lasts.
            (Some(token), Some(_)) if token.valid() => return Ok(token.clone()),
            (_, Some(backoff)) => return Err(backoff.error.clone_for_waiters()),
            _ => {}
        }
        let reason = match (&state.token, state.invalidated) {
            (Some(_), _) => Reason::Renewal,
            (None, true) => Reason::Reauth,
            (None, false) => Reason::First,
        };
        match self.fetch(transport, reason).await {
            Ok((value, ttl)) => {
                state.generation += 1;
                let token = Token {
                    value,
                    generation: state.generation,
                    obtained: Instant::now(),
                    ttl,
                };
                state.token = Some(token.clone());
                state.invalidated = false;
                state.backoff = None;
                Ok(token)
            }
            Err((err, true)) => {
                state.token = None;
                state.failed = Some(err.clone_for_waiters());
                Err(err)
            }
            Err((err, false)) => {
                let delay = state
                    .backoff
                    .as_ref()
                    .map_or(BACKOFF_MIN, |b| (b.delay * 2).min(BACKOFF_MAX));
                warn!(url = %self.url_text, error = %err, ?delay, "Token request failed; trying again after a pause.");
                state.backoff = Some(Backoff {
                    error: err.clone_for_waiters(),
                    until: Instant::now() + delay,
                    delay,
                });
                match &state.token {
                    Some(token) if token.valid() => Ok(token.clone()),
                    _ => {
                        state.token = None;
                        Err(err)
                    }
                }
            }
        }
    }

    /// Drop the token of `generation` after a 401 (a newer one is kept).
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            state.token = None;
            state.invalidated = true;
        }
    }

    /// Fail every later request with `err` (credentials rejected even with a fresh token).
    pub(crate) async fn fail(&self, err: &Error) {
        let mut state = self.state.lock().await;
        state.token = None;
        state.failed = Some(err.clone_for_waiters());
    }

    /// One token, with retries for transient failures. Returns the token and its lifetime, or
    /// the error and whether it is final (the endpoint refused the client).
    async fn fetch(
        &self,
        transport: &Transport,
        reason: Reason,
    ) -> Result<(Secret, Duration), (Error, bool)> {
        match reason {
            Reason::First => {}
            Reason::Renewal => transport.counters.renewals.inc(),
            Reason::Reauth => transport.counters.reauths.inc(),
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        let result = (|| {
            attempt += 1;
            self.attempt(transport, attempt)
        })
        .retry(transport.policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| f.retryable(true))
        .adjust(|f, next| transport.policy.adjust(f, next, started))
        .notify(|f, wait| {
            transport.counters.retries.inc();
            debug!(url = %self.url_text, %f, ?wait, "Retrying the token request.");
        })
        .await;
        result.map_err(|failure| match failure {
            // A host never reached fails fast on first contact, but is not a refusal.
            Failure::Fatal(err @ Error::Unreachable { .. }) => (err, false),
            Failure::Fatal(err) => (err, true),
            other => (self.gave_up(other, started), false),
        })
    }

    /// The error for a transient failure that outlasted the retry budget.
    fn gave_up(&self, failure: Failure, started: Instant) -> Error {
        match failure {
            Failure::RateLimited { after } => Error::Token {
                url: self.url_text.clone(),
                reason: format!(
                    "rate limited (http 429, retry after {:?}) until the retry budget ran out",
                    after.unwrap_or_default()
                ),
            },
            other => Error::Token {
                url: self.url_text.clone(),
                reason: format!("{other} (gave up after {:.1?})", started.elapsed()),
            },
        }
    }

    async fn attempt(
        &self,
        transport: &Transport,
        attempt: u32,
    ) -> Result<(Secret, Duration), Failure> {
        let span = tracing::debug_span!(
            "token",
            url = %self.url_text,
            attempt,
            status = field::Empty,
            ms = field::Empty
        );
        async {
            transport.counters.token_requests.inc();
            let started = Instant::now();
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose()),
                ("scope", self.scope.as_str()),
            ];
            let sent = transport
                .http
                .post(self.url.clone())
                .form(&form)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(err) => {
                    return Err(transport.send_failure(&err, "oauth token", &self.url_text));
                }
            };
            transport.mark_reached();
            let (status, retry_after) = status_and_retry_after(&response);
            // A token answer is a few hundred bytes; 64 kB is generous.
            let body = super::client::read_capped(response, 64 * 1024)
                .await
                .map_err(|err| match err {
                    super::client::BodyError::Cut(err) => Failure::Transient {
                        reason: format!(
                            "token answer cut off: {}",
                            super::client::root_cause(&err)
                        ),
                    },
                    super::client::BodyError::TooLarge => Failure::Fatal(Error::Token {
                        url: self.url_text.clone(),
                        reason: "the answer is larger than 64 kB; not a token answer".into(),
                    }),
                })?;
            transport.counters.bytes.add(body.len() as u64);
            tracing::Span::current().record("ms", started.elapsed().as_millis() as u64);
            match status {
                200..=299 => self.parse_token(&body),
                429 => {
                    transport.counters.rate_limited.inc();
                    Err(Failure::RateLimited { after: retry_after })
                }
                s if transient_status(s) => Err(Failure::Transient {
                    reason: format!("token endpoint answered http {s}"),
                }),
                s => Err(Failure::Fatal(self.refusal(s, &body))),
            }
        }
        .instrument(span)
        .await
    }

    fn parse_token(&self, body: &[u8]) -> Result<(Secret, Duration), Failure> {
        let answer: TokenAnswer = serde_json::from_slice(body).map_err(|err| {
            if err.is_data() {
                Failure::Fatal(Error::Token {
                    url: self.url_text.clone(),
                    reason: format!("unexpected token answer ({err})"),
                })
            } else {
                Failure::Transient {
                    reason: format!("token answer is not valid JSON ({err})"),
                }
            }
        })?;
        let Some(token) = answer.access_token.filter(|t| !t.is_empty()) else {
            return Err(Failure::Fatal(Error::Token {
                url: self.url_text.clone(),
                reason: "the answer has no `access_token`".into(),
            }));
        };
        if let Some(kind) = answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(Failure::Fatal(Error::Token {
                url: self.url_text.clone(),
                reason: format!("token type `{kind}` is not `Bearer`"),
            }));
        }
        let ttl = answer
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(365.0 * 86_400.0)))
            .unwrap_or(DEFAULT_TTL);
        debug!(ttl_secs = ttl.as_secs_f64(), "Token obtained.");
        Ok((Secret::new(token), ttl))
    }

    /// The error for a 4xx answer: OAuth's `invalid_client` (or any 401) is "invalid client".
    fn refusal(&self, status: u16, body: &[u8]) -> Error {
        let oauth: Option<OAuthError> = serde_json::from_slice(body).ok();
        let code = oauth.as_ref().and_then(|e| e.error.clone());
        let description = oauth.and_then(|e| e.error_description);
        let mut detail = format!("http {status}");
        if let Some(code) = &code {
            detail.push_str(&format!(", `{code}`"));
        }
        if let Some(description) = description {
            detail.push_str(&format!(": {}", description.trim()));
        }
        if status == 401 || code.as_deref() == Some("invalid_client") {
            Error::InvalidClient {
                url: self.url_text.clone(),
                detail,
                check: self.credentials.clone(),
            }
        } else {
            // A 404 here almost always means a base URL with a path Pluvo does not have.
            let hint = match status {
                404 => "; is `pluvo.url` the organisation's base URL, e.g. https://acme.pluvo.com?",
                _ => "",
            };
            Error::Token {
                url: self.url_text.clone(),
                reason: format!("refused ({detail}){hint}"),
            }
        }
    }
}

impl Error {
    /// A copy for the callers waiting on the same failed token fetch. Only the variants a
    /// fetch or a re-auth can produce are copied exactly; others become [`Error::Token`].
    pub(crate) fn clone_for_waiters(&self) -> Error {
        match self {
            Error::InvalidClient { url, detail, check } => Error::InvalidClient {
                url: url.clone(),
                detail: detail.clone(),
                check: check.clone(),
            },
            Error::CredentialsRejected {
                op,
                token_url,
                reason,
            } => Error::CredentialsRejected {
                op,
                token_url: token_url.clone(),
                reason: reason.clone(),
            },
            Error::Unreachable { op, url, reason } => Error::Unreachable {
                op,
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::Token { url, reason } => Error::Token {
                url: url.clone(),
                reason: reason.clone(),
            },
            other => Error::Token {
                url: String::new(),
                reason: other.to_string(),
            },
        }
    }
}
