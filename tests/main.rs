//! The integration suite, one binary (DuckDB links once). Each module is one feature.

mod support;

/// The Pluvo simulator: contract, pagination, mutations, churn, faults, auth.
mod sim;

/// The API client against the simulator: faults, auth, rate limits, every query, secrets in logs.
mod client;

/// `sync`: full, incremental, no-change, churn, faults, history, soft deletes.
mod sync;

/// A `sync` process killed with SIGKILL at several moments resumes to the same tables; the WAL
/// it leaves replays under the memory cap.
mod resume;

/// `webhook serve`: signed simulator events stored once, refusals, retries, graceful shutdown.
mod webhook;

/// Publishing: Parquet export (types, partitions, atomic), analyst views vs the simulator's
/// data, `query` formats and errors, readers during a sync, compliance export.
mod publish;

/// Issue 21, beyond one machine: engine-portable Parquet types, object storage, several orgs.
mod cloud;

/// `push`: plans send nothing, each action, validation, exactly once under kills and faults.
mod push;

/// Dates and times as analysts write them (issue 18): `now()`, `current_date`, intervals,
/// `date_trunc`, casts, in `query`, the snapshot, the views and push selections.
mod dates;

/// Issue 20: the HTML report's numbers vs SQL, offline in Chromium; the compliance workbook
/// read back with openpyxl.
mod report;

/// Other clients read the warehouse: DuckDB 1.1 to 1.4 open a file the tool created.
mod readers;

/// The examples as users run them: the crontab line with only its env file.
mod examples;

/// `status`: runs, checkpoints, counts, push plans; read-only, a locked or missing file named.
mod status;

/// One output style: `--format json` on every command with a result, JSON log lines, quiet
/// end on a closed pipe.
mod output;

/// `doctor`: wrong secret, unreachable URL, missing scope, locked database; each with its fix.
mod doctor;

/// The docs are tested: each command shown runs (or is run elsewhere), links resolve, the
/// settings file loads, `docs/tables.md` matches the DDL.
mod docs;

/// Getting started: `init` (a loadable file, no secret), shell completions.
mod setup;

/// Progress bars on a pseudo-terminal; plain lines without control characters in a pipe.
mod progress;

/// Issue 17: each security opening tried and shown closed (SQL, file modes, slow clients,
/// reply size, scopes, forged manifests, replays).
mod security;

/// The bad-input catalogue: each bad input names problem and fix, exits right, changes nothing.
mod badinput;

/// Safe to leave unattended (issue #16): lost answers never double an effect, another
/// organisation or an empty answer never wipes the warehouse, deletions are confirmed.
mod safety;
