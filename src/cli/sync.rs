//! `sync`: parse the options, run [`crate::pipeline::sync`] with progress bars, print the run
//! summary (table or JSON). A failed stream still prints the summary, then the error.

use anyhow::Result;
use clap::Args;

use super::output::{Format, Table};
use super::progress::Bars;
use crate::api::Concurrency;
use crate::error::Exit;
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
    /// Requests in flight at once (1-32), or `auto`: learnt from the server's answer times
    /// and 429s, from 4 up to 32
    #[arg(long, default_value = "4", value_name = "N|auto")]
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
}

impl SyncArgs {
    pub fn options(&self) -> SyncOptions {
        SyncOptions {
            streams: self.streams.clone(),
            full_refresh: self.full_refresh,
            concurrency: self.concurrency,
            accept_organisation: self.accept_organisation,
            accept_deletes: self.accept_deletes,
        }
    }
}

/// `sync`: run the pipeline and print its summary.
pub async fn run(config: &crate::config::Config, args: &SyncArgs, quiet: bool) -> Result<Exit> {
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
        }
    }
    Ok(())
}
