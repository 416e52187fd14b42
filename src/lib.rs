//! pluvo-warehouse: a Pluvo learning platform (GraphQL) as a local DuckDB warehouse and back.
//!
//! The data flow is visible in the modules: `api → streams → store → export` for sync,
//! `sql → push → api` for write-back, `webhook → store` for events. `pipeline` is the sync the
//! commands share; `cli` is the command layer on top (the only place that prints). `sim` is an
//! in-process Pluvo simulator that the demo, the tests and the benchmarks run against; it
//! imports nothing else from this crate.
//!
//! Dependencies point one way: `cli → pipeline/push/query → streams → api + store`.

pub mod api;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod error;
pub mod export;
pub mod orgs;
pub mod pipeline;
pub mod push;
pub mod query;
pub mod report;
pub mod sim;
pub mod status;
pub mod store;
pub mod streams;
pub mod views;
pub mod webhook;
