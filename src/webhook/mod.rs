//! `webhook serve`: a receiver that lands Pluvo webhook events in the warehouse as they happen.
//!
//! Flow: HTTP POST → `verify` (signature over the raw body, 401) → `event` (decode, 400) →
//! `writer` (group commit into `webhook_events`, one transaction per batch) → 200. Pluvo sends
//! no delivery id, so a redelivery is recognised by the SHA-256 of its body and stored once.
//! `server` holds the HTTP side and graceful shutdown; SQL lives in `store` (`webhooks.rs`)
//! and `sql/` (table `webhook_events`, views `*_events`).
//!
//! The receiver holds the warehouse's single writer for its whole life: a `sync` on the same
//! file fails at once with the "in use by another process" message while it runs.

pub mod event;
pub mod refresh;
pub mod server;
pub mod verify;
mod writer;

use std::net::SocketAddr;

pub use refresh::Refresh;
pub use server::{Limits, Options, Receiver, Stats};

/// Errors of the receiver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on `{addr}`: {cause}; pass another address or port with --bind")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("serving webhooks: {0}")]
    Serve(std::io::Error),
    #[error("a receiver task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
