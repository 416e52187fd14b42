//! What is retryable, how long to wait, and when to give up.
//!
//! One attempt ends in a [`Failure`]; [`Policy`] turns it into "retry after this long" or "stop".
//! The loop itself is `backon`'s: exponential backoff with jitter, bounded by
//! `http.max_attempts` and `http.max_retry_secs` (wall clock, attempts included).
//!
//! Rules (pluvo-api.md, "Errors and limits"):
//! - 429 is retried after `Retry-After` (seconds or an HTTP date), or the backoff when absent.
//!   Assumed: a 429 means the server did not process the request.
//! - 5xx, 408, timeouts, connection resets and truncated or invalid JSON bodies are retried
//!   with backoff — but only for idempotent operations: for the others (generateCertificate)
//!   the outcome is unknown and resending could apply it twice.
//! - Connection failures where nothing was sent are always safe to retry, but only once the
//!   server has answered at least once: a wrong host or port fails fast on first contact.
//! - 401 and GraphQL `Auth` codes re-authenticate once and resend at once (see `client.rs`).
//! - Other 4xx and GraphQL validation errors are never retried.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use backon::ExponentialBuilder;

use super::Error;
use crate::config::HttpSettings;

/// How one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request never left: connect refused or timed out. Safe to resend.
    NotSent { reason: String },
    /// The server may have processed it: 5xx, timeout after sending, reset, bad body.
    Transient { reason: String },
    /// HTTP 429, with the parsed `Retry-After` if there was one.
    RateLimited { after: Option<Duration> },
    /// HTTP 401 or an `Auth` GraphQL code: the token was dropped; resend at once.
    Unauthorized,
    /// Never retried.
    Fatal(Error),
}

impl Failure {
    /// Whether another attempt may be made. `idempotent`: safe to resend when the outcome of
    /// the attempt is unknown.
    pub(crate) fn retryable(&self, idempotent: bool) -> bool {
        match self {
            Failure::NotSent { .. } | Failure::RateLimited { .. } | Failure::Unauthorized => true,
            Failure::Transient { .. } => idempotent,
            Failure::Fatal(_) => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotSent { reason } | Failure::Transient { reason } => f.write_str(reason),
            Failure::RateLimited { after: Some(after) } => {
                write!(f, "rate limited (http 429, retry after {after:?})")
            }
            Failure::RateLimited { after: None } => f.write_str("rate limited (http 429)"),
            Failure::Unauthorized => f.write_str("token rejected (http 401)"),
            Failure::Fatal(err) => write!(f, "{err}"),
        }
    }
}

/// Whether an HTTP status is worth another attempt; 2xx, 400 (may carry GraphQL errors), 401
/// and 429 are handled by the caller before this.
pub(crate) fn transient_status(status: u16) -> bool {
    status == 408 || ((500..=599).contains(&status) && !matches!(status, 501 | 505))
}

/// Longest `Retry-After` we honour; anything above is treated as this (and the retry budget
/// decides whether to wait at all).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parse a `Retry-After` value: delay-seconds (decimals tolerated) or an HTTP date.
/// The answer's status, recorded on the current span, and its `Retry-After` delay (token and
/// GraphQL answers alike).
pub(crate) fn status_and_retry_after(response: &reqwest::Response) -> (u16, Option<Duration>) {
    let status = response.status().as_u16();
    tracing::Span::current().record("status", status);
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    (status, retry_after)
}

pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date);
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Backoff and retry budget of one client.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub max_attempts: u32,
    pub max_retry_time: Duration,
    pub base: Duration,
    pub cap: Duration,
}

impl Policy {
    pub(crate) fn new(http: &HttpSettings, base: Duration, cap: Duration) -> Policy {
        Policy {
            max_attempts: http.max_attempts.max(1),
            max_retry_time: http.max_retry_time,
            base,
            cap: cap.max(base),
        }
    }

    /// `backon`'s exponential backoff with jitter: delays base, 2·base, 4·base… (each plus up
    /// to 100% jitter), capped, at most `max_attempts - 1` of them.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_total_delay(Some(self.max_retry_time))
    }

    /// The wait before the next attempt, or `None` to stop. `next` is the backoff's proposal
    /// (`None` once attempts are used up); `started` is when the first attempt began.
    pub(crate) fn adjust(
        &self,
        failure: &Failure,
        next: Option<Duration>,
        started: Instant,
    ) -> Option<Duration> {
        let next = next?;
        let wait = match failure {
            // A fresh token is needed, not a pause.
            Failure::Unauthorized => Duration::ZERO,
            // Honour the server; a little jitter so parallel requests don't return together.
            Failure::RateLimited { after: Some(after) } => {
                *after + next.min(self.base).mul_f64(rand::random::<f64>())
            }
            _ => next,
        };
        (started.elapsed() + wait <= self.max_retry_time).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_attempts: 4,
            max_retry_time: Duration::from_secs(10),
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        }
    }

    #[test]
    fn classification_never_retries_fatal_and_guards_non_idempotent() {
        let transient = Failure::Transient {
            reason: "http 503".into(),
        };
        assert!(transient.retryable(true));
        assert!(!transient.retryable(false), "could apply a mutation twice");
        let not_sent = Failure::NotSent {
            reason: "connection refused".into(),
        };
        assert!(not_sent.retryable(false));
        assert!(Failure::RateLimited { after: None }.retryable(false));
        assert!(Failure::Unauthorized.retryable(true));
        let fatal = Failure::Fatal(Error::GraphQl {
            op: "Users",
            errors: vec![],
        });
        assert!(!fatal.retryable(true));
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 500, 502, 503, 504, 507, 599] {
            assert!(transient_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413, 422, 429, 501, 505] {
            assert!(!transient_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:27 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn adjust_honours_retry_after_reauths_at_once_and_respects_budget() {
        let p = policy();
        let now = Instant::now();
        let d = p.adjust(
            &Failure::RateLimited {
                after: Some(Duration::from_secs(1)),
            },
            Some(Duration::from_millis(150)),
            now,
        );
        let d = d.unwrap();
        assert!(
            d >= Duration::from_secs(1) && d < Duration::from_millis(1100),
            "{d:?}"
        );
        assert_eq!(
            p.adjust(
                &Failure::Unauthorized,
                Some(Duration::from_millis(400)),
                now
            ),
            Some(Duration::ZERO)
        );
        let t = Failure::Transient {
            reason: "reset".into(),
        };
        assert_eq!(
            p.adjust(&t, Some(Duration::from_millis(400)), now),
            Some(Duration::from_millis(400))
        );
        // Attempts used up.
        assert_eq!(p.adjust(&t, None, now), None);
        // Retry-After beyond the time budget: stop instead of sleeping past it.
        let long = Failure::RateLimited {
            after: Some(Duration::from_secs(60)),
        };
        assert_eq!(p.adjust(&long, Some(Duration::from_millis(100)), now), None);
    }

    #[test]
    fn backoff_is_bounded_by_attempts() {
        use backon::BackoffBuilder;
        let delays: Vec<Duration> = policy().backoff().build().collect();
        assert_eq!(delays.len(), 3, "max_attempts 4 = first try + 3 retries");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(4)),
            "{delays:?}"
        );
        assert!(delays[0] >= Duration::from_millis(100));
    }
}
