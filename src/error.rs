//! Exit codes, and the mapping from module errors to them.
//!
//! 0 ok, 1 error, 2 usage or configuration error, 3 finished but some rows failed (push).
//! `main` prints the error chain ([`message`], each cause once); this module picks the code.

use std::process::ExitCode;

/// The documented exit codes (README "Exit codes").
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

/// The exit code for an error chain: 2 when any cause is a usage or configuration error.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    // Rejected credentials are configuration too: retrying will not help, fixing the secret will.
    let usage = err.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<crate::config::ConfigError>()
            || cause
                .downcast_ref::<crate::api::Error>()
                .is_some_and(crate::api::Error::is_auth)
    });
    if usage { Exit::Usage } else { Exit::Error }
}

/// The error chain as one line for `main` to print: each cause once. Our messages often embed
/// their source (`"{doing}: {source}"`), which `{:#}` would print a second time, and DuckDB
/// ends its chain with a content-free "Error code 1: Unknown error code".
pub fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        let empty = text.is_empty()
            || (text.starts_with("Error code ") && text.ends_with("Unknown error code"));
        if empty || out.contains(text) {
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

    #[test]
    fn message_prints_each_cause_once() {
        let io = std::io::Error::other("Operation not permitted (os error 1)");
        let err = anyhow::Error::new(io)
            .context("creating `x`: Operation not permitted (os error 1)")
            .context("exporting");
        assert_eq!(
            message(&err),
            "exporting: creating `x`: Operation not permitted (os error 1)"
        );
        let auth = crate::api::Error::InvalidClient {
            url: "u".into(),
            detail: "http 401".into(),
        };
        assert_eq!(
            exit_code(&anyhow::Error::new(auth).context("sync")),
            Exit::Usage
        );
    }
}
