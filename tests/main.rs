//! The integration suite, one binary (DuckDB links once). Each module is one feature.

mod support;

/// The Pluvo simulator: contract, pagination, mutations, churn, faults, auth.
mod sim;

/// The API client against the simulator: faults, auth, rate limits, every query, secrets in logs.
mod client;

/// `sync`: full, incremental, no-change, churn, faults, history, soft deletes.
mod sync;

/// A `sync` process killed with SIGKILL at several moments resumes to the same tables.
mod resume;

/// `status`: runs, checkpoints, counts, push plans; read-only, a locked or missing file named.
mod status;

/// `doctor`: wrong secret, unreachable URL, missing scope, locked database; each with its fix.
mod doctor;

/// Getting started: `init` (a loadable file, no secret), shell completions.
mod setup;
