//! `status`: open the warehouse read-only, collect [`crate::status::Status`], print it as a
//! table or JSON. While a sync or receiver holds the file (DuckDB's lock refuses readers),
//! `status` answers from the published snapshot and says so (`busy`, `source`), exit 0; with no
//! snapshot to read it names the PID holding the file and exits 1. With `[orgs]`: one
//! organisation's (`--org NAME`), or every organisation's when only `[orgs]` is configured.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use clap::Args;

use super::output::{Format, Table};
use crate::config::Config;
use crate::error::Exit;
use crate::export::snapshot::Reader;
use crate::export::{Manifest, current_snapshot};
use crate::status::{Status, collect, collect_snapshot};
use crate::store::{StoreError, Warehouse};

/// Arguments of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Output: a table for people or JSON for monitoring (stable keys, see docs/operations.md)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The organisation of `[orgs]` whose warehouse to show. A configuration of only `[orgs]`
    /// shows every organisation's without it
    #[arg(long, value_name = "NAME")]
    pub org: Option<String>,
}

/// `status`: open read-only, collect, print. A missing file is an error (exit 1); a locked
/// one is answered from the published snapshot. With only `[orgs]` configured (and no
/// `--org`, `--db` or `PLUVO_DB`), every organisation in turn: exit 1 when any could not be
/// read, the others still shown.
pub fn run(config: &Config, args: &StatusArgs) -> Result<Exit> {
    if let Some(name) = &args.org {
        let org = config.org_files(name)?;
        print(&collect_status(&org)?, args.format)?;
        return Ok(Exit::Ok);
    }
    if !config.orgs_only() {
        print(&collect_status(config)?, args.format)?;
        return Ok(Exit::Ok);
    }
    let mut failed = Vec::new();
    let mut orgs = Vec::new();
    for name in config.org_names() {
        let answer = config
            .org_files(&name)
            .map_err(anyhow::Error::new)
            .and_then(|org| collect_status(&org));
        match answer {
            Ok(status) => {
                if args.format == Format::Table {
                    println!("organisation {name}");
                    println!("{}", render(&status));
                }
                orgs.push(serde_json::json!({ "org": name, "status": status }));
            }
            Err(err) => {
                let error = format!("{err:#}");
                if args.format == Format::Table {
                    println!("organisation {name}\nerror: {error}\n");
                }
                orgs.push(serde_json::json!({ "org": name, "error": error }));
                failed.push(name);
            }
        }
    }
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "orgs": orgs }))?
        );
    }
    if failed.is_empty() {
        Ok(Exit::Ok)
    } else {
        Err(anyhow::anyhow!(
            "the status of {} could not be read (see above); the others are shown",
            failed.join(", ")
        ))
    }
}

fn print(status: &Status, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(status)?),
        Format::Table => print!("{}", render(status)),
    }
    Ok(())
}

/// One warehouse's status: from the file, or from its published snapshot while a writer holds
/// the file (with a note on stderr).
fn collect_status(config: &Config) -> Result<Status> {
    Ok(match Warehouse::open_read_only(&config.db) {
        Ok(warehouse) => collect(&warehouse).context("reading the warehouse status")?,
        Err(StoreError::Locked { pid, .. }) if current_snapshot(&config.export_dir).is_some() => {
            let reason = format!(
                "`{}` is being written by another process{}",
                config.db.display(),
                pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
            );
            let reader = Reader::snapshot(&config.export_dir, reason)
                .context("reading the published snapshot")?;
            let version = Manifest::read(&current_snapshot(&config.export_dir).unwrap_or_default())
                .map(|m| m.schema_version)
                .unwrap_or_default();
            if let Some(note) = reader.source.note() {
                eprintln!("{note}");
            }
            collect_snapshot(&config.db, &reader, version)
                .context("reading the status from the published snapshot")?
        }
        Err(err) => {
            let hint = match &err {
                StoreError::Locked { .. } => {
                    "another process writes the warehouse and no snapshot is published yet"
                }
                _ => "reading the warehouse status",
            };
            return Err(anyhow::Error::new(err).context(hint));
        }
    })
}

fn secs(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into())
}

/// The table format: one block per section.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "warehouse {} (schema version {})",
        status.db, status.schema_version
    );
    if status.busy {
        let _ = writeln!(
            w,
            "busy: another process writes it; showing its published snapshot (no checkpoints or push plans)"
        );
    }
    match &status.last_run {
        None => {
            let _ = writeln!(w, "no sync has run yet: run `pluvo-warehouse sync`");
        }
        Some(r) => {
            let _ = writeln!(
                w,
                "last run {}: {}, started {}, {}s{}",
                r.run_id,
                r.status,
                r.started_at,
                secs(r.seconds),
                r.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    if !status.streams.is_empty() {
        let mut table = Table::new(&[
            "stream",
            ">run",
            "status",
            "started",
            ">seconds",
            ">new",
            ">changed",
            ">deleted",
            ">requests",
            ">retries",
            "note",
        ]);
        for s in &status.streams {
            let note = [
                s.error.as_ref().map(|e| format!("error: {e}")),
                s.schema_drift.as_ref().map(|d| format!("drift: {d}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
            table.row([
                s.stream.clone(),
                s.run_id.to_string(),
                s.status.clone(),
                s.started_at.clone(),
                secs(s.seconds),
                s.rows_new.to_string(),
                s.rows_changed.to_string(),
                s.rows_deleted.to_string(),
                s.requests.to_string(),
                s.retries.to_string(),
                note,
            ]);
        }
        let _ = write!(w, "\n{table}");
    }
    if !status.checkpoints.is_empty() {
        let mut table = Table::new(&["stream", "updated", "checkpoint"]);
        for c in &status.checkpoints {
            let what = match (c.part, &c.state) {
                (Some(part), _) => format!(
                    "scan in progress: part {part}, next page {}",
                    c.next_page.unwrap_or(0)
                ),
                (None, Some(state)) => format!("between runs, state {state}"),
                (None, None) => "between runs".into(),
            };
            table.row([c.stream.clone(), c.updated_at.clone(), what]);
        }
        let _ = write!(w, "\n{table}");
    }
    let mut table = Table::new(&["table", ">live", ">deleted"]);
    for t in &status.tables {
        table.row([t.table.clone(), t.live.to_string(), t.deleted.to_string()]);
    }
    let _ = write!(w, "\n{table}");
    if let Some(plans) = &status.push_plans {
        if plans.is_empty() {
            let _ = writeln!(w, "\npush plans: none pending or failed");
        } else {
            let mut table = Table::new(&[
                ">plan", "action", "status", "created", ">planned", ">pending", ">failed",
            ]);
            for p in plans {
                table.row([
                    p.plan_id.to_string(),
                    p.action.clone(),
                    p.status.clone(),
                    p.created_at.clone(),
                    p.rows_planned.to_string(),
                    p.rows_pending.to_string(),
                    p.rows_failed.to_string(),
                ]);
            }
            let _ = write!(w, "\n{table}");
        }
    }
    out
}
