//! `sync`: parse the options, run [`crate::pipeline::sync`] with progress bars, print the run
//! summary (table or JSON). A failed stream still prints the summary, then the error.

use anyhow::{Result, anyhow};
use clap::Args;

use super::output::{Format, Table};
use super::progress::Bars;
use crate::api::Concurrency;
use crate::error::{Exit, UsageError};
use crate::pipeline::{self, SyncOptions};
use crate::streams;

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Streams to sync, comma-separated [default: all]
    #[arg(long, value_delimiter = ',', long_help = streams::help())]
    pub streams: Vec<String>,
    /// Ignore checkpoints: re-read everything and reconcile
    #[arg(long)]
    pub full_refresh: bool,
    /// Requests in flight at once (1-32), or `auto`: learnt from the server's answer times,
    /// 429s and server errors, from 4 up to 32
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    pub concurrency: Concurrency,
    /// Output of the run summary
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Accept that `pluvo.url` now serves another organisation than the warehouse holds (its
    /// rows replace the old organisation's, which are marked deleted)
    #[arg(long)]
    pub accept_organisation: bool,
    /// Record the deletions a sync refused (more than `warehouse.max_delete_share` of a
    /// table, or a table the API returned empty), once you have checked they are real
    #[arg(long)]
    pub accept_deletes: bool,
    /// Sync these organisations of `[orgs]` (comma-separated), each into its own warehouse,
    /// then publish all organisations side by side
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NAME",
        conflicts_with = "all_orgs"
    )]
    pub org: Vec<String>,
    /// Sync every organisation of `[orgs]` at once, within one `--concurrency` budget
    #[arg(long)]
    pub all_orgs: bool,
}

impl SyncArgs {
    pub fn options(&self) -> SyncOptions {
        SyncOptions {
            streams: self.streams.clone(),
            full_refresh: self.full_refresh,
            concurrency: self.concurrency,
            accept_organisation: self.accept_organisation,
            accept_deletes: self.accept_deletes,
            budget: None,
        }
    }
}

/// `sync`: run the pipeline and print its summary.
pub async fn run(config: &crate::config::Config, args: &SyncArgs, quiet: bool) -> Result<Exit> {
    if args.all_orgs || !args.org.is_empty() {
        return run_orgs(config, args).await;
    }
    if !config.orgs.is_empty() && !config.has_url() {
        return Err(UsageError::new(format!(
            "`{}` names organisations ({}) and no `pluvo.url`: sync them with \
             `sync --all-orgs` or `sync --org NAME`",
            config.file.display(),
            config.org_names().join(", ")
        ))
        .into());
    }
    let outcome = pipeline::sync(config, &args.options(), Bars::new(quiet)).await;
    match outcome {
        Ok(outcome) => {
            print_sync(&outcome, args.format)?;
            Ok(Exit::Ok)
        }
        Err(err) => {
            // Also on stderr (by `main`): with --quiet or --format json the table is all
            // there is otherwise.
            if let Some(outcome) = err.outcome() {
                print_sync(outcome, args.format)?;
            }
            Err(err.into())
        }
    }
}

/// Print a sync summary as a table (terminal) or JSON (monitoring).
pub fn print_sync(outcome: &streams::Outcome, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(outcome)?),
        Format::Table => {
            let mut table = Table::new(&[
                "stream",
                ">new",
                ">changed",
                ">unchanged",
                ">deleted",
                ">pages",
                ">seconds",
                "note",
            ]);
            for s in &outcome.streams {
                let note = match (&s.error, s.complete, s.resumed) {
                    (Some(e), _, _) => format!("FAILED: {e}"),
                    (None, false, _) => "incomplete scan: no deletes this run".into(),
                    (None, true, true) => "resumed from checkpoint: no deletes this run".into(),
                    _ => String::new(),
                };
                table.row([
                    s.stream.to_string(),
                    s.new.to_string(),
                    s.changed.to_string(),
                    s.unchanged.to_string(),
                    s.deleted.to_string(),
                    s.pages.to_string(),
                    format!("{:.1}", s.seconds),
                    note,
                ]);
            }
            print!("{table}");
            println!(
                "run {}: {} requests, {} retries, {:.1}s",
                outcome.run_id, outcome.requests, outcome.retries, outcome.seconds
            );
            if let Some(published) = &outcome.published {
                super::export::print_published(published);
            }
        }
    }
    Ok(())
}

/// `sync --org NAME` / `sync --all-orgs`: the organisations at once, one line each, then
/// the combined snapshot. Exit 1 when any organisation (or the publish) failed.
async fn run_orgs(config: &crate::config::Config, args: &SyncArgs) -> Result<Exit> {
    if config.orgs.is_empty() {
        return Err(UsageError::new(format!(
            "`{}` names no organisations; add `[orgs.NAME]` tables (docs/configuration.md, \
             \"Several organisations\") or sync without --org/--all-orgs",
            config.file.display()
        ))
        .into());
    }
    let outcome = crate::orgs::sync(config, &args.org, &args.options()).await?;
    print_orgs(&outcome, args.format)?;
    let failed = outcome.failed();
    if !failed.is_empty() {
        let errors: Vec<String> = outcome
            .orgs
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("`{}`: {e}", o.org)))
            .collect();
        return Err(anyhow!(
            "{} of {} organisations failed ({}); the others were synced and published. {}",
            failed.len(),
            outcome.orgs.len(),
            failed.join(", "),
            errors.join("; ")
        ));
    }
    if let Some(error) = &outcome.publish_error {
        return Err(anyhow!(
            "every organisation was synced, but publishing them side by side failed: {error}"
        ));
    }
    Ok(Exit::Ok)
}

/// One row per organisation, then the combined snapshot and its upload.
fn print_orgs(outcome: &crate::orgs::OrgsOutcome, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(outcome)?);
        return Ok(());
    }
    let mut table = Table::new(&[
        "org",
        "status",
        ">new",
        ">changed",
        ">deleted",
        ">requests",
        ">seconds",
        "warehouse",
    ]);
    for o in &outcome.orgs {
        let sum = |f: fn(&streams::StreamOutcome) -> u64| {
            o.outcome
                .as_ref()
                .map_or(0, |out| out.streams.iter().map(f).sum::<u64>())
        };
        table.row([
            o.org.clone(),
            if o.ok { "ok" } else { "FAILED" }.to_string(),
            sum(|s| s.new).to_string(),
            sum(|s| s.changed).to_string(),
            sum(|s| s.deleted).to_string(),
            o.outcome.as_ref().map_or(0, |out| out.requests).to_string(),
            format!("{:.1}", o.seconds),
            o.db.display().to_string(),
        ]);
    }
    print!("{table}");
    for o in &outcome.orgs {
        if let Some(error) = &o.error {
            println!("{}: {error}", o.org);
        }
    }
    if let Some(dataset) = &outcome.dataset {
        let parts: Vec<String> = dataset
            .report
            .manifest
            .orgs
            .iter()
            .map(|p| {
                format!(
                    "{} (run {})",
                    p.org,
                    p.run_id.map_or("none".to_string(), |r| r.to_string())
                )
            })
            .collect();
        let missing = if dataset.missing.is_empty() {
            String::new()
        } else {
            format!("; not yet synced: {}", dataset.missing.join(", "))
        };
        println!(
            "published side by side (partition `org`): {} — {}{missing}",
            dataset.report.dir.display(),
            parts.join(", ")
        );
    }
    if let Some(published) = &outcome.published {
        super::export::print_published(published);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use crate::api::Concurrency;

    /// `sync` learns its requests in flight unless told a number (docs/sync.md), and the
    /// library's default options say the same.
    #[test]
    fn sync_learns_its_concurrency_by_default() {
        let cli = Cli::try_parse_from(["pluvo-warehouse", "sync"]).unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("not sync");
        };
        assert_eq!(args.options().concurrency, Concurrency::Auto);
        assert_eq!(
            crate::pipeline::SyncOptions::default().concurrency,
            Concurrency::Auto
        );
        let cli = Cli::try_parse_from(["pluvo-warehouse", "sync", "--concurrency", "4"]).unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("not sync");
        };
        assert_eq!(args.options().concurrency, Concurrency::Fixed(4));
    }
}
