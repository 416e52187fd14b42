//! Exit codes, and the mapping from module errors to them.
//!
//! 0 ok, 1 error, 2 usage or configuration error, 3 finished but some rows failed (push).
//! `main` prints the whole error chain with `{:#}`; this module only picks the code.

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
    let usage = err
        .chain()
        .any(|cause| cause.is::<UsageError>() || cause.is::<crate::config::ConfigError>());
    if usage { Exit::Usage } else { Exit::Error }
}
