//! `report`: the shareable HTML report (charts and the compliance roster in one file that
//! opens offline). Picks the source like `query` (the warehouse, or while a sync holds it the
//! published snapshot, and says so), then [`crate::report::write`] does the work.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use clap::Args;

use crate::config::Config;
use crate::error::Exit;
use crate::export::snapshot::{Reader, Source};
use crate::report::{self, CHART_GROUPS, ROSTER_LIMIT, Request};

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The HTML file to write (atomically)
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    pub out: PathBuf,
    /// The day the roster, expiry and inactivity are computed for [default: today, UTC]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Only the participants of this group, by ref (repeatable) [default: everyone]
    #[arg(long = "group", value_name = "REF", num_args = 1..)]
    pub groups: Vec<String>,
    /// Required certificate title for the roster (repeatable) [default: every certificate]
    #[arg(long = "certificate", value_name = "TITLE")]
    pub certificates: Vec<String>,
    /// Certificates expiring within this many days are `expiring`, not `valid`
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// No login for this many days counts as inactive
    #[arg(long, default_value_t = 180)]
    pub inactive_days: u32,
    /// Roster rows listed per certificate, the most at risk first (the counts cover everyone)
    #[arg(long, default_value_t = ROSTER_LIMIT)]
    pub roster_limit: usize,
    /// Groups drawn in the completion chart, the lowest completion first (the table lists all)
    #[arg(long, default_value_t = CHART_GROUPS)]
    pub chart_groups: usize,
    /// Always read the published snapshot, even when the warehouse is free
    #[arg(long)]
    pub snapshot: bool,
}

/// `report`: open the source, write the file, print its path (stdout) and a summary (stderr).
pub fn run(config: &Config, args: &ReportArgs) -> Result<Exit> {
    let reader = if args.snapshot {
        Reader::snapshot(&config.export_dir, "--snapshot was given".into())?
    } else {
        Reader::open(&config.db, &config.export_dir)?
    };
    if let Some(note) = reader.source.note() {
        eprintln!("{note}");
    }
    let written = write(reader.connection(), &reader.source, args)?;
    println!("{}", written.path.display());
    Ok(Exit::Ok)
}

/// Write the report of `args` from `conn`; the demo calls this too.
pub fn write(
    conn: &duckdb::Connection,
    source: &Source,
    args: &ReportArgs,
) -> Result<report::Written> {
    let as_of = args.as_of.unwrap_or_else(|| Utc::now().date_naive());
    let request = Request {
        groups: args.groups.clone(),
        certificates: args.certificates.clone(),
        days: args.days,
        inactive_days: args.inactive_days,
        roster_limit: args.roster_limit,
        chart_groups: args.chart_groups,
        source: match source {
            Source::Warehouse { path } => format!("the warehouse {}", path.display()),
            Source::Snapshot {
                dir, exported_at, ..
            } => format!(
                "the published snapshot {} (exported {})",
                dir.display(),
                exported_at.format("%Y-%m-%d %H:%M UTC")
            ),
        },
        ..Request::new(as_of)
    };
    let written = report::write(conn, &request, &args.out)
        .with_context(|| format!("writing the report `{}`", args.out.display()))?;
    eprintln!(
        "report as of {as_of}: {} users, roster {} of {} rows listed, {:.1} KB",
        written.users,
        written.roster_shown,
        written.roster_total,
        written.bytes as f64 / 1024.0
    );
    Ok(written)
}
