//! `export compliance`: a dated, reproducible roster of who holds which certificate (since
//! when, until when) and who is missing it, from the `compliance_roster` view, written as CSV
//! or Parquet with the source run id, the as-of date and the export time in every row.
//!
//! Reproducible: the same warehouse (run) and the same `--as-of` give the same rows in the
//! same order; only `exported_at` differs. Reads through [`Reader`], so it works while a sync
//! runs (from the published snapshot, and says so).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{NaiveDate, Utc};
use clap::Args;

use super::snapshot::Reader;
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::query::{QueryFormat, write_file};

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
}

/// `export compliance`.
pub fn run(config: &Config, args: &ComplianceArgs) -> Result<Exit> {
    let format = match args.format {
        Some(ComplianceFormat::Csv) => QueryFormat::Csv,
        Some(ComplianceFormat::Parquet) => QueryFormat::Parquet,
        None => match args.out.extension().and_then(|e| e.to_str()) {
            Some("csv") => QueryFormat::Csv,
            Some("parquet") => QueryFormat::Parquet,
            _ => bail!(UsageError::new(format!(
                "cannot tell the format of `{}`; name it .csv or .parquet, or pass --format",
                args.out.display()
            ))),
        },
    };
    let reader = Reader::open(&config.db, &config.export_dir)?;
    if let Some(note) = reader.source.note() {
        eprintln!("{note}");
    }
    let conn = reader.connection();

    let mut stmt = conn
        .prepare("SELECT DISTINCT title FROM certificates WHERE _deleted_at IS NULL AND title IS NOT NULL ORDER BY title")
        .context("reading the certificate titles")?;
    let known: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()
        .context("reading the certificate titles")?;
    let unknown: Vec<&String> = args
        .certificates
        .iter()
        .filter(|c| !known.contains(c))
        .collect();
    if !unknown.is_empty() {
        bail!(UsageError::new(format!(
            "no certificate titled {}; known titles: {}",
            unknown
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        )));
    }

    let as_of = args.as_of.unwrap_or_else(|| Utc::now().date_naive());
    let now = Utc::now();
    let titles: Vec<String> = args
        .certificates
        .iter()
        .map(|c| format!("'{}'", c.replace('\'', "''")))
        .collect();
    conn.execute_batch(&format!(
        "SET VARIABLE certificates = [{}]::VARCHAR[];
         SET VARIABLE as_of = DATE '{as_of}';
         SET VARIABLE days = {};",
        titles.join(", "),
        args.days
    ))
    .context("setting the roster's parameters")?;
    let run_id: Option<i64> = conn
        .query_row(
            "SELECT max(run_id) FROM _runs WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .context("reading the last run")?;
    let roster = crate::views::find("compliance_roster")
        .expect("compliance_roster is a view")
        .body();
    let sql = format!(
        "SELECT DATE '{as_of}' AS as_of, r.*, {run} AS run_id,
                TIMESTAMPTZ '{now}' AS exported_at
         FROM ({roster}\n) r
         ORDER BY r.user_ref, r.user_id, r.certificate",
        run = run_id.map_or("NULL::BIGINT".to_string(), |r| r.to_string()),
        now = now.format("%Y-%m-%d %H:%M:%S%.6f+00"),
    );
    let rows = write_file(conn, &sql, format, &args.out)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT status, count(*) FROM ({roster}\n) GROUP BY status ORDER BY status"
    ))?;
    let counts: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{} {}",
                r.get::<_, i64>(1)?,
                r.get::<_, String>(0)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    eprintln!(
        "{rows} rows (users × {} certificates) as of {as_of}, run {}: {}; written to {}",
        args.certificates.len(),
        run_id.map_or("none".into(), |r| r.to_string()),
        counts.join(", "),
        args.out.display()
    );
    Ok(Exit::Ok)
}
