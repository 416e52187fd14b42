//! Write-back: SQL-selected users → a stored, validated plan → batched Pluvo mutations, applied
//! exactly once. Data flow `sql → push → api`:
//!
//! - `actions.rs`: the action table — required columns → mutation + variables, and how each
//!   answer is read back into one outcome per row.
//! - `plan.rs`: run the SQL in the warehouse, validate columns/types/keys, drop no-ops by
//!   diffing against the warehouse, store the plan (`_push_plans`, `_push_ledger`).
//! - `ledger.rs`: the exactly-once bookkeeping (`pending → sent → succeeded | already | failed`).
//! - `apply.rs`: batching, concurrency, resume, the certificate portfolio check, and the
//!   warehouse update after apply.
//!
//! A plan is `apply` with nothing sent: without `--apply` the plan is stored and printed, and
//! no request is made. Not here: HTTP (`api`), the warehouse's own tables (`store`).

pub mod actions;
pub mod apply;
pub mod ledger;
pub mod plan;

pub use actions::Action;
pub use apply::{Options, Outcome, apply};
pub use plan::{Planned, Selection, plan};

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that stops a push. Messages name the column, key or plan in backticks and say
/// what to do; none of them means a mutation was sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the selection failed in DuckDB: {message}")]
    Sql { message: String },
    #[error("the selection only reads the warehouse; {reason}")]
    NotReadOnly { reason: String },
    #[error(
        "`{action}` needs a column `{column}` in the selection, which has: {}; rename a column with `AS {column}`",
        found.join(", ")
    )]
    MissingColumn {
        action: &'static str,
        column: &'static str,
        found: Vec<String>,
    },
    #[error("column `{column}` is {found}; it must be {expected} (cast it in the SQL)")]
    ColumnType {
        column: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "column `{column}` is null or empty in {count} rows (first rows: {}); filter them out in the SQL",
        first_rows.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    NullValues {
        column: &'static str,
        count: u64,
        first_rows: Vec<i64>,
    },
    #[error(
        "{count} refs appear more than once in the selection (e.g. {}); each user may appear once",
        examples.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
    )]
    DuplicateKeys { count: u64, examples: Vec<String> },
    #[error(
        "{what} `{value}` is not in the warehouse table `{table}`; check it, or run `pluvo-warehouse sync` if it is new"
    )]
    UnknownTarget {
        what: &'static str,
        value: String,
        table: &'static str,
    },
    #[error(
        "plan {plan_id} has {rows} rows to send, more than --max-rows {max}; nothing was sent. \
         Check the selection, then pass --max-rows {rows} (or more) to apply it"
    )]
    TooManyRows { plan_id: i64, rows: u64, max: u64 },
    #[error("nothing to do: the selection returned no rows; no plan was stored")]
    EmptySelection,
    #[error("there is no push plan {plan_id} in this warehouse; `push status` lists the plans")]
    NoPlan { plan_id: i64 },
    #[error(
        "plan {other} has {rows} rows whose outcome is unknown for users of plan {plan_id} (Pluvo \
         may still have applied them); plan {plan_id} was not sent, so that nothing is applied \
         twice. Run `pluvo-warehouse push resume {other}` first: once its grace period \
         (`push.settle_after_secs`) has passed, it looks those rows up"
    )]
    UnknownElsewhere { plan_id: i64, other: i64, rows: u64 },
    #[error("push plan {plan_id} is unreadable ({problem})")]
    Corrupt { plan_id: i64, problem: String },
    #[error("{doing}: {cause}")]
    Ledger {
        doing: &'static str,
        cause: duckdb::Error,
    },
    #[error(transparent)]
    Api(#[from] crate::api::Error),
}

impl Error {
    /// Bad input (exit code 2) rather than a failure of the network or the database.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            Error::Ledger { .. }
                | Error::Api(_)
                | Error::Corrupt { .. }
                | Error::UnknownElsewhere { .. }
        )
    }
}
