//! The integration suite, one binary (DuckDB links once). Each module is one feature.

mod support;

/// The Pluvo simulator: contract, pagination, mutations, churn, faults, auth.
mod sim;
