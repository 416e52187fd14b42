//! Exit codes, and the mapping from module errors to them.
//!
//! 0 ok, 1 error, 2 usage or configuration error, 3 finished but some rows failed (push).
//! `main` prints the error chain ([`message`]); this module picks the code. Plain
//! `std::error::Error` chains: `anyhow` stays in `cli/`.

use std::process::ExitCode;

/// The documented exit codes (docs/operations.md, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Usage = 2,
    RowsFailed = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error that carries its own exit code (configuration and usage errors are 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
        }
    }
}

/// The causes of an error, outermost first.
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// The exit code for an error chain: 2 when any cause is a usage or configuration error.
pub fn exit_code(err: &(dyn std::error::Error + 'static)) -> Exit {
    // Rejected credentials are configuration too: retrying will not help, fixing the secret will.
    let usage = chain(err).any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<crate::config::ConfigError>()
            || cause
                .downcast_ref::<crate::api::Error>()
                .is_some_and(crate::api::Error::is_auth)
            || cause
                .downcast_ref::<crate::pipeline::Error>()
                .is_some_and(crate::pipeline::Error::is_usage)
            || cause
                .downcast_ref::<crate::orgs::Error>()
                .is_some_and(crate::orgs::Error::is_usage)
            || cause
                .downcast_ref::<crate::export::compliance::Error>()
                .is_some_and(|e| matches!(e, crate::export::compliance::Error::Usage(_)))
            || cause
                .downcast_ref::<crate::report::Error>()
                .is_some_and(|e| matches!(e, crate::report::Error::Usage(_)))
    });
    if usage { Exit::Usage } else { Exit::Error }
}

/// The error chain as one line for `main` to print, causes joined by `: `. Each cause is
/// printed once by construction: an error either names its source in its own message or
/// exposes it as `source()`, never both. DuckDB ends its chain with a content-free
/// "Error code 1: Unknown error code", which is dropped.
pub fn message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for cause in chain(err) {
        let text = cause.to_string();
        let text = text.trim();
        let empty = text.is_empty()
            || (text.starts_with("Error code ") && text.ends_with("Unknown error code"));
        if empty {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("exporting `x`")]
    struct Exporting(#[source] std::io::Error);

    #[test]
    fn message_joins_the_chain_and_drops_duckdbs_empty_cause() {
        let io = std::io::Error::other("Operation not permitted (os error 1)");
        let err = anyhow::Error::new(Exporting(io)).context("publishing");
        assert_eq!(
            message(err.as_ref()),
            "publishing: exporting `x`: Operation not permitted (os error 1)"
        );
        let empty = std::io::Error::other("Error code 1: Unknown error code");
        let err = anyhow::Error::new(Exporting(empty));
        assert_eq!(message(err.as_ref()), "exporting `x`");
    }

    #[test]
    fn rejected_credentials_are_a_usage_error() {
        let auth = crate::api::Error::InvalidClient {
            url: "u".into(),
            detail: "http 401".into(),
            check: crate::config::DEFAULT_CREDENTIALS.into(),
        };
        assert_eq!(
            exit_code(anyhow::Error::new(auth).context("sync").as_ref()),
            Exit::Usage
        );
    }
}
