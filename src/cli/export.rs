//! `export` (every table as Parquet, published as the new snapshot) and `export compliance`
//! (the compliance roster as CSV, Parquet or an Excel workbook): clap arguments, opening the warehouse, and the
//! printed summary. The work is in [`crate::export`].

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{NaiveDate, Utc};
use clap::{Args, Subcommand};

use super::output::{Format, Table};
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::export::snapshot::Reader;
use crate::export::{Options, ROW_GROUP_SIZE, Report, compliance, export, select};
use crate::query::QueryFormat;
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
    /// What to print: a table per exported table, or the report as JSON (for scripts)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ExportCommand {
    /// Who holds which certificate, since and until when, and who is missing it (CSV, Parquet
    /// or an Excel workbook)
    Compliance(ComplianceArgs),
}

/// `export`: every table as Parquet, published as the new snapshot.
pub fn run(config: &Config, args: &ExportArgs) -> Result<Exit> {
    if let Some(ExportCommand::Compliance(args)) = &args.command {
        return run_compliance(config, args);
    }
    select(&args.tables).map_err(|e| UsageError::new(e.to_string()))?;
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
        row_group_bytes: None,
        group_readable: config.export_group_readable,
    };
    let report = export(warehouse.connection(), &options, Utc::now())
        .with_context(|| format!("exporting to `{}`", options.out.display()))?;
    match args.format {
        Format::Table => print_report(&report),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(Exit::Ok)
}

/// The export summary: one line per table, then the snapshot.
pub fn print_report(report: &Report) {
    let mut table = Table::new(&["table", ">rows", ">files", ">MB", "note"]);
    for t in &report.manifest.tables {
        let carried = if report.written.contains(&t.name) {
            ""
        } else {
            "kept from the previous snapshot"
        };
        table.row([
            t.name.clone(),
            t.rows.to_string(),
            t.files.to_string(),
            format!("{:.2}", t.bytes as f64 / 1_048_576.0),
            carried.to_string(),
        ]);
    }
    print!("{table}");
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

#[derive(Debug, Clone, Args)]
pub struct ComplianceArgs {
    /// Required certificate title (repeatable), as in the `certificates` table
    #[arg(long = "certificate", value_name = "TITLE", required = true)]
    pub certificates: Vec<String>,
    /// File format [default: from --out's extension]
    #[arg(long, value_enum)]
    pub format: Option<ComplianceFormat>,
    /// The file to write (atomically)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The date the roster is valid for [default: today, UTC]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Certificates expiring within this many days are `expiring`, not `valid`
    #[arg(long, default_value_t = 90)]
    pub days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComplianceFormat {
    Csv,
    Parquet,
    /// An Excel workbook: a summary sheet and one sheet per certificate
    Xlsx,
}

/// `export compliance`: read through [`Reader`], so it works while a sync runs (from the
/// published snapshot, and says so).
fn run_compliance(config: &Config, args: &ComplianceArgs) -> Result<Exit> {
    let format = match args.format {
        Some(ComplianceFormat::Csv) => compliance::Format::Query(QueryFormat::Csv),
        Some(ComplianceFormat::Parquet) => compliance::Format::Query(QueryFormat::Parquet),
        Some(ComplianceFormat::Xlsx) => compliance::Format::Xlsx,
        None => match args.out.extension().and_then(|e| e.to_str()) {
            Some("csv") => compliance::Format::Query(QueryFormat::Csv),
            Some("parquet") => compliance::Format::Query(QueryFormat::Parquet),
            Some("xlsx") => compliance::Format::Xlsx,
            _ => bail!(UsageError::new(format!(
                "cannot tell the format of `{}`; name it .csv, .parquet or .xlsx, or pass --format",
                args.out.display()
            ))),
        },
    };
    let reader = Reader::open(&config.db, &config.export_dir)?;
    if let Some(note) = reader.source.note() {
        eprintln!("{note}");
    }
    let as_of = args.as_of.unwrap_or_else(|| Utc::now().date_naive());
    let written = compliance::write(
        reader.connection(),
        &compliance::Request {
            certificates: &args.certificates,
            as_of,
            days: args.days,
            format,
            out: &args.out,
        },
    )?;
    let counts: Vec<String> = written
        .counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    eprintln!(
        "{} rows (users × {} certificates) as of {as_of}, run {}: {}; written to {}",
        written.rows,
        args.certificates.len(),
        written.run_id.map_or("none".into(), |r| r.to_string()),
        counts.join(", "),
        args.out.display()
    );
    Ok(Exit::Ok)
}
