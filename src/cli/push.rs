//! The `push` subcommands: clap types, and turning plans and outcomes (of [`crate::push`])
//! into output and an exit code. `push ACTION` plans (and with `--apply` applies); `push apply|resume PLAN` applies a
//! stored plan; `push status [PLAN]` reports from the ledger.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{Format, Table};
use crate::api::{Client, ClientOptions};
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::push::actions::{Action, TrainingRole};
use crate::push::{Error, Options, Outcome, Planned, Selection, ledger};
use crate::store::Warehouse;

/// `push ACTION --apply` resumes an unfinished plan with the same action and selection only
/// when it was made this recently; older ones only through `push resume PLAN`, because the
/// warehouse (who is inactive, who holds what) may have changed since.
const RESUME_WITHIN: chrono::Duration = chrono::Duration::hours(1);

/// A duration as a person reads it in a message ("45 min", "3 h").
fn minutes(d: chrono::Duration) -> String {
    match d.num_minutes() {
        m if m < 120 => format!("{} min", m.max(0)),
        m => format!("{} h", m / 60),
    }
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    #[command(subcommand)]
    pub command: PushCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PushCommand {
    /// Archive the selected users (column `ref`): updateOrCreateUser(user: {archived: true})
    ArchiveUsers(SelectArgs),
    /// Unarchive the selected users (column `ref`)
    UnarchiveUsers(SelectArgs),
    /// Add the selected users (column `ref`) to a group: addUsersToGroup
    AddToGroup {
        /// The group's ref
        #[arg(long)]
        group: String,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Add the selected users (column `ref`) to a training: addUsersToTraining
    AddToTraining {
        /// The training's ref
        #[arg(long)]
        training: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Participant)]
        role: RoleArg,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Enroll the selected users (column `ref`) in an offer event: createOfferEventEnrollments
    Enroll {
        /// The offer event's ref
        #[arg(long)]
        offer_event: String,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Issue a certificate to the selected users (column `ref`; ids from the warehouse):
    /// generateCertificate
    GenerateCertificate {
        /// The certificate template's id
        #[arg(long)]
        certificate: String,
        /// The training id to link the certificate to
        #[arg(long)]
        training: Option<String>,
        /// Issue date, YYYY-MM-DD [default: today, fixed in the plan]
        #[arg(long)]
        issue_date: Option<NaiveDate>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Set an extra field (columns `ref`, `value`): updateExtraCategoryValues
    SetExtraField {
        /// The extra-field category's ref
        #[arg(long)]
        category: String,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Create or update users (columns `ref`, `email`, `name`, optional `language`, `roles`):
    /// updateOrCreateUser
    UpsertUsers(SelectArgs),
    /// Apply a stored plan
    Apply {
        plan: i64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Resume an interrupted apply (the same as `apply`)
    Resume {
        plan: i64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Report a plan's ledger, or list the plans
    Status {
        plan: Option<i64>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `--role` of `add-to-training`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Participant,
    Trainer,
    Mentor,
}

impl From<RoleArg> for TrainingRole {
    fn from(role: RoleArg) -> TrainingRole {
        match role {
            RoleArg::Participant => TrainingRole::Participant,
            RoleArg::Trainer => TrainingRole::Trainer,
            RoleArg::Mentor => TrainingRole::Mentor,
        }
    }
}

/// The selection and the plan/apply switches of an action.
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// The selection: a .sql file, or SQL text (e.g. "select * from 'people.csv'")
    #[arg(long, value_name = "FILE|SQL", required_unless_present = "query")]
    pub sql: Option<String>,
    /// The selection as SQL text
    #[arg(long, value_name = "SQL", conflicts_with = "sql")]
    pub query: Option<String>,
    /// A value for `getvariable('k')` in the SQL, NAME=VALUE (repeatable; a name given twice
    /// becomes a list). Values: integer, decimal, date (YYYY-MM-DD) or text
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Send the mutations (without it, nothing is sent: the plan is stored and printed)
    #[arg(long)]
    pub apply: bool,
    /// Let Pluvo notify users (sendInvite/sendMail/sendInvites); off by default
    #[arg(long)]
    pub notify: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Knobs of an apply.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Refuse to apply a plan with more rows to send than this
    #[arg(long, default_value_t = 500)]
    pub max_rows: u64,
    /// Rows per request [default: 250 for list mutations, 50 aliases for per-user ones]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_size: Option<u32>,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Output of the plan and the outcome
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl RunArgs {
    fn options(&self, config: &Config) -> Options {
        Options {
            batch_size: self.batch_size.map(|b| b as usize),
            concurrency: self.concurrency as usize,
            max_rows: self.max_rows,
            settle_after: config.settle_after,
        }
    }
}

fn usage(err: Error) -> anyhow::Error {
    if err.is_usage() {
        UsageError::new(err.to_string()).into()
    } else {
        anyhow::Error::new(err)
    }
}

fn open(config: &Config) -> Result<Warehouse> {
    // A push reads the synced tables: a missing file is a forgotten sync or a wrong --db,
    // not a new warehouse to create.
    if !config.db.exists() {
        return Err(crate::store::StoreError::Missing {
            path: config.db.clone(),
        }
        .into());
    }
    Warehouse::open(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))
}

/// A client whose credentials were accepted: checked before anything is stored or sent.
async fn client(config: &Config, run: &RunArgs) -> Result<Client> {
    let client = Client::new(
        &config.api(crate::config::Access::Write)?,
        ClientOptions {
            concurrency: run.concurrency as usize,
            ..ClientOptions::default()
        },
    )
    .context("creating the API client")?;
    client.authenticate().await?;
    Ok(client)
}

/// `push ...`: returns the exit code (0 all rows in place, 3 some failed, 1 unfinished).
pub async fn run(config: &Config, args: &PushArgs, quiet: bool) -> Result<Exit> {
    let (action, select) = match &args.command {
        PushCommand::Apply { plan, run } | PushCommand::Resume { plan, run } => {
            let client = client(config, run).await?;
            let mut warehouse = open(config)?;
            return apply_and_print(config, &client, &mut warehouse, *plan, run, quiet).await;
        }
        PushCommand::Status { plan, format } => return status(config, *plan, *format),
        PushCommand::ArchiveUsers(s) => (Action::ArchiveUsers, s),
        PushCommand::UnarchiveUsers(s) => (Action::UnarchiveUsers, s),
        PushCommand::UpsertUsers(s) => (Action::UpsertUsers, s),
        PushCommand::AddToGroup { group, select } => (
            Action::AddToGroup {
                group: group.clone(),
            },
            select,
        ),
        PushCommand::AddToTraining {
            training,
            role,
            select,
        } => (
            Action::AddToTraining {
                training: training.clone(),
                role: (*role).into(),
            },
            select,
        ),
        PushCommand::Enroll {
            offer_event,
            select,
        } => (
            Action::Enroll {
                offer_event: offer_event.clone(),
            },
            select,
        ),
        PushCommand::GenerateCertificate {
            certificate,
            training,
            issue_date,
            select,
        } => (
            Action::GenerateCertificate {
                certificate: certificate.clone(),
                title: String::new(),
                training: training.clone(),
                issue_date: issue_date.unwrap_or_else(|| chrono::Utc::now().date_naive()),
            },
            select,
        ),
        PushCommand::SetExtraField { category, select } => (
            Action::SetExtraField {
                category: category.clone(),
            },
            select,
        ),
    };
    let selection = selection(select)?;
    // Credentials are checked before anything is stored when the run will send.
    let client = if select.apply {
        Some(client(config, &select.run).await?)
    } else {
        None
    };
    let mut warehouse = open(config)?;
    let conn = warehouse.connection();
    // The selection is the user's SQL on the writer's connection: lock its settings first
    // (the writer still tunes its memory and threads).
    crate::store::guard::lock(
        conn,
        config.external_access,
        &[],
        &["memory_limit", "threads"],
    )
    .context("locking the warehouse connection's settings")?;
    let action = crate::push::plan::resolve(conn, action).map_err(usage)?;
    if let Some(client) = &client {
        let twin = ledger::unfinished_twin(
            conn,
            &action,
            select.notify,
            &selection.sql,
            &selection.stored_params(),
        )
        .map_err(usage)?;
        if let Some(twin) = twin {
            let plan_id = twin.plan_id;
            let age = chrono::Utc::now() - twin.created_at;
            if age <= RESUME_WITHIN {
                // Said even with --quiet: a resumed plan is not what the command line reads.
                eprintln!(
                    "Resuming plan {plan_id}: same action and selection, made {} ago and not finished (settled rows are not sent again).",
                    minutes(age)
                );
                return apply_and_print(
                    config,
                    client,
                    &mut warehouse,
                    plan_id,
                    &select.run,
                    quiet,
                )
                .await;
            }
            // Said even with --quiet: the person who scheduled this should learn it.
            eprintln!(
                "warning: plan {plan_id} (same action and selection, made {} UTC) is unfinished and is \
                 not resumed: it is older than {} and the warehouse may have changed since. Planning \
                 anew from the warehouse as it is now; to finish the old plan instead, run \
                 `pluvo-warehouse push resume {plan_id}`.",
                twin.created_at.format("%Y-%m-%d %H:%M"),
                minutes(RESUME_WITHIN)
            );
        }
    }
    let planned = match crate::push::plan(conn, &action, select.notify, &selection) {
        Err(Error::EmptySelection) => {
            // Not an error: "archive whoever is inactive" finding nobody is a normal day.
            eprintln!("{}.", Error::EmptySelection);
            return Ok(Exit::Ok);
        }
        planned => planned.map_err(usage)?,
    };
    print_plan(&action, &planned, &select.run);
    match &client {
        None => {
            if !quiet {
                eprintln!(
                    "Nothing was sent; run again with --apply (or `pluvo-warehouse push apply {}`).",
                    planned.plan_id
                );
            }
            Ok(Exit::Ok)
        }
        Some(client) => {
            apply_and_print(
                config,
                client,
                &mut warehouse,
                planned.plan_id,
                &select.run,
                quiet,
            )
            .await
        }
    }
}

/// The SQL text (from a file or given inline) and its parameters.
fn selection(select: &SelectArgs) -> Result<Selection> {
    let sql = match (&select.sql, &select.query) {
        (_, Some(q)) => q.clone(),
        (Some(s), None) => {
            let path = PathBuf::from(s);
            if path.is_file() {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the SQL file `{}`", path.display()))?
            } else if s.trim().contains(char::is_whitespace) {
                s.clone()
            } else {
                return Err(UsageError::new(format!(
                    "--sql `{s}` is neither a file nor SQL text; pass a .sql file or a query"
                ))
                .into());
            }
        }
        (None, None) => return Err(UsageError::new("pass --sql FILE or --query SQL").into()),
    };
    let params = crate::query::parse_params(&select.params)?;
    Ok(Selection { sql, params })
}

fn print_plan(action: &Action, planned: &Planned, run: &RunArgs) {
    let batch = run
        .batch_size
        .map(|b| b as u64)
        .unwrap_or(action.default_batch_size() as u64);
    let requests = planned.planned.div_ceil(batch);
    if run.format == Format::Json {
        let first: Vec<_> = planned
            .first
            .iter()
            .map(|r| json!({ "ref": r.key, "input": r.input }))
            .collect();
        println!(
            "{}",
            json!({
                "plan_id": planned.plan_id, "action": action.name(), "mutation": action.mutation(),
                "selected": planned.selected, "noop": planned.noop, "to_send": planned.planned,
                "unsendable": planned.unsendable, "not_in_warehouse": planned.unknown_refs,
                "requests": requests, "first_rows": first,
            })
        );
        return;
    }
    println!(
        "plan {}: {} → {} ({batch} rows per request)",
        planned.plan_id,
        action.name(),
        action.mutation()
    );
    println!(
        "  selected {} rows; {} already in place (dropped); {} to send in {requests} requests",
        planned.selected, planned.noop, planned.planned
    );
    if planned.unknown_refs > 0 {
        println!(
            "  {} refs to send are not in the warehouse's `users` (new, or the warehouse is stale)",
            planned.unknown_refs
        );
    }
    if planned.unsendable > 0 {
        println!(
            "  {} rows cannot be sent (recorded as failed; see `push status {}`)",
            planned.unsendable, planned.plan_id
        );
    }
    if !planned.first.is_empty() {
        println!("  first rows:");
        for r in &planned.first {
            if r.input.is_empty() {
                println!("    {}", r.key);
            } else {
                let input = serde_json::Value::Object(r.input.clone());
                println!("    {:<16} {input}", r.key);
            }
        }
    }
}

async fn apply_and_print(
    config: &Config,
    client: &Client,
    warehouse: &mut Warehouse,
    plan_id: i64,
    run: &RunArgs,
    quiet: bool,
) -> Result<Exit> {
    let outcome = crate::push::apply(client, warehouse, plan_id, &run.options(config))
        .await
        .map_err(usage)?;
    let failures = ledger::failures(warehouse.connection(), plan_id, 10).map_err(usage)?;
    print_outcome(&outcome, &failures, client, run.format);
    // Re-read what the outcomes alone cannot tell (new users' ids, issued certificates).
    let action = ledger::plan(warehouse.connection(), plan_id)
        .map_err(usage)?
        .action;
    let targets = crate::push::apply::refresh_targets(warehouse.connection(), plan_id, &action)
        .map_err(usage)?;
    if !targets.is_empty() {
        match crate::streams::refresh::refresh(client, warehouse, &targets).await {
            Ok(r) if !quiet => eprintln!(
                "Refreshed the warehouse: {} users, {} portfolio items re-read ({} requests).",
                targets.users.len(),
                r.portfolio_items.new + r.portfolio_items.changed + r.portfolio_items.unchanged,
                r.requests
            ),
            Ok(_) => {}
            // The push itself is done and recorded; a stale warehouse is fixed by `sync`.
            Err(e) => eprintln!(
                "warning: the push is complete, but refreshing the warehouse failed ({e:#}); run `pluvo-warehouse sync`"
            ),
        }
    }
    if let Some(from) = outcome.settle_from {
        // An error, not a note: printed even with --quiet, and the exit code is 1.
        anyhow::bail!(
            "{} rows of plan {plan_id} have an unknown outcome: Pluvo did not answer in time (a \
             timeout or a gateway error) and may still apply them. `{}` is not safe to repeat, \
             so they are not sent again by this run. Run `pluvo-warehouse push resume {plan_id}` \
             after {} UTC (`push.settle_after_secs`): it looks them up and sends only what is \
             still missing",
            outcome.unknown,
            outcome.mutation,
            from.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if outcome.unfinished > 0 {
        if !quiet {
            eprintln!(
                "error: {} rows of plan {plan_id} have an unknown outcome or were not sent; \
                 run `pluvo-warehouse push resume {plan_id}`",
                outcome.unfinished
            );
        }
        return Ok(Exit::Error);
    }
    Ok(if outcome.failed > 0 {
        Exit::RowsFailed
    } else {
        Exit::Ok
    })
}

fn print_outcome(outcome: &Outcome, failures: &[(String, String)], client: &Client, f: Format) {
    let stats = client.stats();
    if f == Format::Json {
        let mut v = serde_json::to_value(outcome).unwrap_or_default();
        v["http_requests"] = json!(stats.requests);
        v["retries"] = json!(stats.retries);
        v["failures"] = json!(failures);
        println!("{v}");
        return;
    }
    println!(
        "plan {}: sent {} rows in {} requests ({} HTTP requests with retries and checks, {} retries) in {:.1}s",
        outcome.plan_id,
        outcome.sent,
        outcome.requests,
        stats.requests,
        stats.retries,
        outcome.seconds
    );
    println!(
        "  succeeded {}, already in place {}, failed {}, unfinished {}; dropped by the plan {}; settled before this run {}",
        outcome.succeeded,
        outcome.already,
        outcome.failed,
        outcome.unfinished,
        outcome.noop,
        outcome.skipped_in_ledger
    );
    if outcome.verified_in_portfolio > 0 {
        println!(
            "  {} rows with an unknown outcome were looked up and found applied (not resent)",
            outcome.verified_in_portfolio
        );
    }
    if !failures.is_empty() {
        println!("  failed rows (first {}):", failures.len());
        for (key, error) in failures {
            println!("    {key:<16} {error}");
        }
    }
}

fn status(config: &Config, plan: Option<i64>, format: Format) -> Result<Exit> {
    let warehouse = Warehouse::open_read_only(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))?;
    let conn = warehouse.connection();
    let Some(plan_id) = plan else {
        let mut stmt = conn.prepare(
            "SELECT plan_id, action, status, rows_planned,
                    strftime(created_at::TIMESTAMP, '%Y-%m-%d %H:%M:%S')
             FROM _push_plans ORDER BY plan_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut table = Table::new(&[">plan", "action", "status", ">to send", "created (UTC)"]);
        let mut list = Vec::new();
        for r in rows {
            let (id, action, status, n, created) = r?;
            table.row([
                id.to_string(),
                action.clone(),
                status.clone(),
                n.to_string(),
                created.clone(),
            ]);
            list.push(json!({
                "plan_id": id, "action": action, "status": status, "rows_planned": n,
                "created_at": created,
            }));
        }
        match format {
            Format::Table => print!("{table}"),
            Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        }
        return Ok(Exit::Ok);
    };
    let plan = ledger::plan(conn, plan_id).map_err(usage)?;
    let counts = ledger::counts(conn, plan_id).map_err(usage)?;
    let failures = ledger::failures(conn, plan_id, 10).map_err(usage)?;
    if format == Format::Json {
        println!(
            "{}",
            json!({ "plan": plan, "ledger": counts, "failures": failures })
        );
        return Ok(Exit::Ok);
    }
    println!(
        "plan {plan_id}: {} → {} ({}), created {} UTC",
        plan.action.name(),
        plan.action.mutation(),
        plan.status,
        plan.created_at
    );
    println!(
        "  selected {}, dropped as in place {}, to send {}; notify {}",
        plan.rows_selected, plan.rows_noop, plan.rows_planned, plan.notify
    );
    let line: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("  ledger: {}", line.join(", "));
    for (key, error) in &failures {
        println!("    failed {key:<16} {error}");
    }
    Ok(Exit::Ok)
}
