//! pluvo-warehouse: a Pluvo learning platform (GraphQL) as a local DuckDB warehouse and back.
//!
//! The data flow is visible in the modules: `api → streams → store → export` for sync,
//! `sql → push → api` for write-back. `sim` is an in-process Pluvo simulator that the demo,
//! the tests and the benchmarks run against; it imports nothing else from this crate.

pub mod api;
pub mod bench;
pub mod cli;
pub mod completions;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod export;
pub mod init;
pub mod push;
pub mod query;
pub mod sim;
pub mod status;
pub mod store;
pub mod streams;
pub mod views;
pub mod webhook;
