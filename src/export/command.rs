//! The `export` command and the publish step at the end of `sync`: clap arguments, opening
//! the warehouse, and the printed summary. The work is in the parent module.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};

use super::compliance::{self, ComplianceArgs};
use super::{Options, ROW_GROUP_SIZE, Report, export};
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::store::Warehouse;

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub command: Option<ExportCommand>,
    /// Export folder [default: warehouse.export_dir, `<db name>-export` beside the database]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tables to re-export, comma-separated [default: all]; the others are kept as they are
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Rows per Parquet row group
    #[arg(long, default_value_t = ROW_GROUP_SIZE)]
    pub row_group_size: usize,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ExportCommand {
    /// Who holds which certificate, since and until when, and who is missing it (CSV or Parquet)
    Compliance(ComplianceArgs),
}

/// `export`: every table as Parquet, published as the new snapshot.
pub fn run(config: &Config, args: &ExportArgs) -> Result<Exit> {
    if let Some(ExportCommand::Compliance(args)) = &args.command {
        return compliance::run(config, args);
    }
    super::select(&args.tables).map_err(|e| UsageError::new(e.to_string()))?;
    if args.row_group_size == 0 {
        return Err(UsageError::new("`--row-group-size` must be at least 1").into());
    }
    let warehouse = Warehouse::open_read_only(&config.db).with_context(|| {
        format!(
            "opening the warehouse `{}` (a running sync publishes its own snapshot when it ends)",
            config.db.display()
        )
    })?;
    let options = Options {
        out: args
            .out
            .clone()
            .unwrap_or_else(|| config.export_dir.clone()),
        tables: args.tables.clone(),
        row_group_size: args.row_group_size,
    };
    let report = export(warehouse.connection(), &options, Utc::now())
        .with_context(|| format!("exporting to `{}`", options.out.display()))?;
    print_report(&report);
    Ok(Exit::Ok)
}

/// The end of a successful `sync`: install the analyst views, then publish the snapshot
/// that readers use while the next sync holds the file.
pub fn after_sync(warehouse: &Warehouse, config: &Config) -> Result<Report> {
    crate::views::install(warehouse.connection()).context("installing the analyst views")?;
    export(
        warehouse.connection(),
        &Options::new(&config.export_dir),
        Utc::now(),
    )
    .with_context(|| {
        format!(
            "the sync succeeded, but publishing its Parquet snapshot to `{}` failed",
            config.export_dir.display()
        )
    })
}

/// The export summary: one line per table, then the snapshot.
pub fn print_report(report: &Report) {
    println!("{:<24} {:>10} {:>6} {:>9}", "table", "rows", "files", "MB");
    for t in &report.manifest.tables {
        let carried = if report.written.contains(&t.name) {
            ""
        } else {
            "  (kept from the previous snapshot)"
        };
        println!(
            "{:<24} {:>10} {:>6} {:>9.2}{carried}",
            t.name,
            t.rows,
            t.files,
            t.bytes as f64 / 1_048_576.0
        );
    }
    println!(
        "published {} (run {}) in {:.1}s, {:.1} MB",
        report.dir.display(),
        report
            .manifest
            .run_id
            .map_or("none".to_string(), |r| r.to_string()),
        report.seconds,
        report.manifest.bytes() as f64 / 1_048_576.0
    );
}
