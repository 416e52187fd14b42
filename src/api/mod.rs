//! Talking to Pluvo: OAuth token cache, GraphQL requests with retries and rate awareness, and
//! the Relay pager. Knows nothing of DuckDB; extractors and write-back never build HTTP
//! requests themselves.
//!
//! Inputs: an [`ApiConfig`](crate::config::ApiConfig) and an [`Operation`] from [`queries`]
//! with its variables. Outputs: typed `data` ([`Client::query`]) or pages of nodes
//! ([`Client::pages`], [`Client::offset_pages`], [`Client::fetch_all`]), plus [`Stats`] for the
//! run summary.
//!
//! - `client.rs`: the [`Client`] — one request = semaphore permit → rate gate → token → POST.
//! - `auth.rs`: the token cache (single flight, renewal before expiry, re-auth on 401).
//! - `retry.rs`: what is retryable, `Retry-After`, backoff (via `backon`).
//! - `rate.rs`: AIMD on the permitted request rate, so a big job settles near the server limit.
//! - `limit.rs`: requests in flight, fixed or learnt from answer times (`--concurrency auto`).
//! - `page.rs`: the Relay pager (cursor stream; offset mode with a completeness check).
//! - `queries.rs` + `queries/*.graphql`: every operation the tool sends.
//!
//! Not here: what the rows mean (`streams`), batching of write-back (`push`).

mod auth;
mod client;
mod envelope;
mod limit;
mod page;
pub mod queries;
mod rate;
mod retry;
#[cfg(test)]
mod scripted;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

pub use client::{Client, ClientOptions, OpStats, Partial, Stats};
pub use limit::{AUTO_CEILING, AUTO_START, Concurrency};
pub use page::{MAX_PAGE_SIZE, Page, read_ahead};
pub use queries::Operation;

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to Pluvo. Messages name the URL or operation and
/// never contain the client secret or an access token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the http client: {reason}")]
    Build { reason: String },
    #[error("token request to `{url}` refused: invalid client ({detail}); check {check}")]
    InvalidClient {
        url: String,
        detail: String,
        /// The settings that hold the client id and secret.
        check: String,
    },
    #[error("token request to `{url}` failed: {reason}")]
    Token { url: String, reason: String },
    #[error(
        "credentials rejected: `{op}` was refused with a freshly issued token from `{token_url}` ({reason})"
    )]
    CredentialsRejected {
        op: &'static str,
        token_url: String,
        reason: String,
    },
    #[error("graphql errors from `{op}`: {}{}", GraphQlError::join(.errors), GraphQlError::hint(.errors))]
    GraphQl {
        op: &'static str,
        errors: Vec<GraphQlError>,
    },
    #[error("`{op}` failed with http {status} from `{url}`: {body}")]
    Http {
        op: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "cannot reach `{url}` for `{op}`: {reason}; check `pluvo.url` (PLUVO_URL, --url), the network and any proxy"
    )]
    Unreachable {
        op: &'static str,
        url: String,
        reason: String,
    },
    #[error("rate limited on `{op}`, retry after {after:?}; gave up after {attempts} attempts")]
    RateLimited {
        op: &'static str,
        after: Duration,
        attempts: u32,
    },
    #[error("`{op}` failed after {attempts} attempts in {elapsed:.1?}: {last}")]
    GaveUp {
        op: &'static str,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
    #[error(
        "`{op}` may or may not have been applied ({reason}); it is not safe to resend, check the result first"
    )]
    OutcomeUnknown { op: &'static str, reason: String },
    #[error(
        "the answer to `{op}` from `{url}` is larger than {limit_mb} MB after decompression, \
         so it was not read (a runaway server or a compression bomb); raise \
         `http.max_reply_mb` only if Pluvo's answers really are this large"
    )]
    TooLarge {
        op: &'static str,
        url: String,
        limit_mb: usize,
    },
    #[error("unexpected response to `{op}`: {reason}")]
    Decode { op: &'static str, reason: String },
    #[error("page size {size} is not between 1 and {max} (the API maximum)", max = MAX_PAGE_SIZE)]
    PageSize { size: u32 },
    #[error("`{op}` is not a paged operation (no connection path)")]
    NotPaged { op: &'static str },
    #[error("`{op}` does not take `offset`; page it by cursor")]
    NoOffset { op: &'static str },
    #[error("server repeated cursor `{cursor}` while paging `{op}`; stopping instead of looping")]
    CursorRepeated { op: &'static str, cursor: String },
    #[error("offset paging of `{op}` is incomplete: {problem}")]
    Incomplete { op: &'static str, problem: String },
}

impl Error {
    /// True when the error means the credentials are wrong (not a transient failure).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::InvalidClient { .. } | Error::CredentialsRejected { .. }
        )
    }
}

/// One entry of a GraphQL `errors[]` array.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct GraphQlError {
    pub message: String,
    /// Response path of the failing field, e.g. `paginatedUsers.edges.3.node.email`.
    #[serde(default)]
    pub path: Vec<serde_json::Value>,
    #[serde(default)]
    pub locations: Vec<Location>,
    #[serde(default)]
    pub extensions: Option<serde_json::Value>,
}

/// Where in the query document an error points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl GraphQlError {
    /// `extensions.code`, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.extensions.as_ref()?.get("code")?.as_str()
    }

    /// Pluvo's authentication codes contain `Auth` (pluvo-api.md); case-insensitive here.
    pub fn is_auth(&self) -> bool {
        self.code()
            .is_some_and(|code| code.to_ascii_lowercase().contains("auth"))
    }

    /// What to do about a refusal for lack of permission: the client probably lacks a scope.
    fn hint(errors: &[GraphQlError]) -> &'static str {
        let denied = errors.iter().any(|e| {
            e.code().is_some_and(|code| {
                let code = code.to_ascii_lowercase();
                code.contains("permission") || code.contains("forbidden")
            })
        });
        match denied {
            true => {
                "; the API client may lack a scope: `pluvo-warehouse doctor` names the missing ones (PLUVO_SCOPE, `pluvo.scope`)"
            }
            false => "",
        }
    }

    fn join(errors: &[GraphQlError]) -> String {
        let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        parts.join("; ")
    }
}

impl fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.trim_end_matches('.'))?;
        if !self.path.is_empty() {
            let path: Vec<String> = self
                .path
                .iter()
                .map(|seg| match seg {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            write!(f, " at path `{}`", path.join("."))?;
        }
        if let Some(loc) = self.locations.first() {
            write!(f, " (line {}, column {})", loc.line, loc.column)?;
        }
        if let Some(code) = self.code() {
            write!(f, " [{code}]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_error_shows_message_path_location_and_code() {
        let err: GraphQlError = serde_json::from_str(
            r#"{"message":"Unknown field.","path":["paginatedUsers","edges",3],
                "locations":[{"line":2,"column":7}],"extensions":{"code":"BAD_REQUEST"}}"#,
        )
        .unwrap();
        assert_eq!(
            err.to_string(),
            "Unknown field at path `paginatedUsers.edges.3` (line 2, column 7) [BAD_REQUEST]"
        );
        assert!(!err.is_auth());
        let auth: GraphQlError = serde_json::from_str(
            r#"{"message":"expired","extensions":{"code":"NotAuthenticated"}}"#,
        )
        .unwrap();
        assert!(auth.is_auth());
        let e = Error::GraphQl {
            op: "Users",
            errors: vec![err, auth],
        };
        assert!(
            e.to_string()
                .starts_with("graphql errors from `Users`: Unknown field at")
        );
    }
}
