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
use crate::export::remote;
use crate::export::snapshot::Reader;
use crate::export::{MAX_FILE_BYTES, Options, ROW_GROUP_SIZE, Report, compliance, export, select};
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
    /// Also publish the snapshot to object storage: s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix or file:///folder (credentials from the environment)
    /// [default: `export.to` of the configuration, if set]
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// A table's next Parquet file starts once one passes this many MB (engines like 100-1000)
    #[arg(long, value_name = "MB", default_value_t = MAX_FILE_BYTES / 1_048_576)]
    pub max_file_mb: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ExportCommand {
    /// Who holds which certificate, since and until when, and who is missing it (CSV, Parquet
    /// or an Excel workbook)
    Compliance(ComplianceArgs),
}

/// `export`: every table as Parquet, published as the new snapshot.
pub async fn run(config: &Config, args: &ExportArgs) -> Result<Exit> {
    if let Some(ExportCommand::Compliance(args)) = &args.command {
        return run_compliance(config, args);
    }
    select(&args.tables).map_err(|e| UsageError::new(e.to_string()))?;
    if args.row_group_size == 0 {
        return Err(UsageError::new("`--row-group-size` must be at least 1").into());
    }
    if args.max_file_mb == 0 {
        return Err(UsageError::new("`--max-file-mb` must be at least 1").into());
    }
    // The URL is checked before any work, so that a typo costs nothing. Without `--to`,
    // `export.to` of the configuration, as `sync` publishes.
    let target = match args.to.as_deref() {
        Some(url) => Some(remote::Target::open(url).map_err(remote_usage)?),
        None => crate::pipeline::export_target(config)?,
    };
    super::one_warehouse(config, "export")?;
    let mut warehouse = Warehouse::open_read_only(&config.db).with_context(|| {
        format!(
            "opening the warehouse `{}` (a running sync publishes its own snapshot when it ends)",
            config.db.display()
        )
    })?;
    // The same cap and row groups as a sync's publish: without them DuckDB took up to 80% of
    // the machine's memory (757 MB re-exporting 1M users, against 237 MB for a whole sync).
    warehouse
        .set_memory_limit(&config.memory_limit)
        .context("applying `warehouse.memory_limit`")?;
    let options = Options {
        out: args
            .out
            .clone()
            .unwrap_or_else(|| config.export_dir.clone()),
        tables: args.tables.clone(),
        row_group_size: args.row_group_size,
        row_group_bytes: warehouse.memory_limit().map(crate::export::row_group_bytes),
        max_file_bytes: args.max_file_mb * 1_048_576,
        group_readable: config.export_group_readable,
    };
    let report = export(warehouse.connection(), &options, Utc::now())
        .with_context(|| format!("exporting to `{}`", options.out.display()))?;
    // The warehouse is not needed for the upload: a sync may start meanwhile.
    drop(warehouse);
    if args.format == Format::Table {
        print_report(&report);
    }
    let published = match target {
        Some(target) => Some(
            remote::publish(
                &target,
                &report.dir,
                &report.manifest,
                remote::GRACE,
                Utc::now(),
            )
            .await
            .with_context(|| format!("publishing to `{}`", target.display()))?,
        ),
        None => None,
    };
    match (args.format, &published) {
        (Format::Table, Some(published)) => print_published(published),
        (Format::Table, None) => {}
        (Format::Json, _) => {
            let mut json = serde_json::to_value(&report)?;
            json["published"] = serde_json::to_value(&published)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(Exit::Ok)
}

/// A bad `--to`/`--from` URL is a usage error (exit 2); other errors of opening a target
/// (credentials, settings) are errors.
pub fn remote_usage(e: remote::RemoteError) -> anyhow::Error {
    match e {
        e @ remote::RemoteError::Unsupported { .. } => UsageError::new(e.to_string()).into(),
        e => e.into(),
    }
}

/// One line for a publish to object storage.
pub fn print_published(p: &remote::Published) {
    let pruned = if p.pruned.is_empty() {
        String::new()
    } else {
        format!(", {} old snapshots pruned", p.pruned.len())
    };
    println!(
        "uploaded {} to {} ({} files, {:.1} MB) in {:.1}s, {:.1} MB/s{pruned}",
        p.snapshot,
        p.url,
        p.files,
        p.bytes as f64 / 1_048_576.0,
        p.seconds,
        p.bytes as f64 / 1_048_576.0 / p.seconds.max(1e-9)
    );
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
