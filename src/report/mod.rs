//! The shareable report: one self-contained HTML file for the people who would rather look
//! than write SQL (training coordinators, compliance officers, HR). Warehouse (or its
//! published snapshot) → [`data::collect`] (SQL over the analyst views of `sql/views/`) →
//! [`charts`] (inline SVG drawn by `plotters`) → [`html::render`] → the file, written
//! atomically. `cli/report.rs` picks the source and prints the path.
//!
//! The numbers come from the analyst views, not from rules re-written in Rust: completion from
//! `completion_by_group`, inactivity from `inactive_users`, the expiry timeline and the roster
//! from `compliance_roster`. The page carries them twice: drawn (SVG with value labels, so a
//! printout reads without colour) and as JSON (`<script id="report-data">`), which the tests
//! read back and check against SQL over the same warehouse.
//!
//! The file has no network reference (no CDN, no web font, no image URL): it opens offline
//! and can be e-mailed. To stay small at 100k+ users the roster lists at most
//! [`Request::roster_limit`] rows per certificate, the ones most at risk first, with the full
//! counts beside it; `export compliance` writes every row.

pub mod charts;
pub mod data;
pub mod html;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use duckdb::Connection;

use crate::error::UsageError;

/// Why the report was not written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad option (an unknown group or certificate); exit code 2.
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error("{doing}")]
    Db {
        doing: &'static str,
        #[source]
        source: duckdb::Error,
    },
    #[error("drawing the chart `{chart}`: {cause}")]
    Chart { chart: &'static str, cause: String },
    #[error("writing `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn db(doing: &'static str) -> impl Fn(duckdb::Error) -> Error {
    move |source| Error::Db { doing, source }
}

/// Rows per certificate in the roster table when not told otherwise: at 8 certificates that is
/// 800 rows, about 200 KB of HTML, whatever the size of the organisation.
pub const ROSTER_LIMIT: usize = 100;

/// Groups drawn in the completion chart when not told otherwise (the ones lagging most); every
/// group is listed in the table under it.
pub const CHART_GROUPS: usize = 25;

/// What to report on.
#[derive(Debug, Clone)]
pub struct Request {
    /// The day the roster, the expiry timeline and inactivity are computed for.
    pub as_of: NaiveDate,
    /// Only the participants of these groups (by `ref`), and only these groups in the
    /// completion chart; empty = everyone.
    pub groups: Vec<String>,
    /// Required certificate titles for the roster; empty = every certificate template.
    pub certificates: Vec<String>,
    /// Certificates expiring within this many days are `expiring` (as in `compliance_roster`).
    pub days: u32,
    /// No login for this many days = inactive (as in `inactive_users`).
    pub inactive_days: u32,
    /// Roster rows shown per certificate (expired first, then expiring, missing, valid).
    pub roster_limit: usize,
    /// Groups drawn in the completion chart.
    pub chart_groups: usize,
    /// Where the data was read from, for the header (e.g. "warehouse `pluvo.duckdb`").
    pub source: String,
}

impl Request {
    /// The defaults of `report`, as of `as_of`.
    pub fn new(as_of: NaiveDate) -> Request {
        Request {
            as_of,
            groups: Vec::new(),
            certificates: Vec::new(),
            days: 90,
            inactive_days: 180,
            roster_limit: ROSTER_LIMIT,
            chart_groups: CHART_GROUPS,
            source: String::new(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    /// Users in scope (not archived, in the groups asked for).
    pub users: i64,
    /// Roster rows in the table / in the whole roster.
    pub roster_shown: usize,
    pub roster_total: i64,
}

/// Collect, draw and write the report of `request` from `conn` to `out`, atomically (a
/// private scratch folder beside `out`, then a rename), so a reader never sees half a file.
pub fn write(conn: &Connection, request: &Request, out: &Path) -> Result<Written, Error> {
    let data = data::collect(conn, request)?;
    let page = html::render(&data)?;
    let write_err = |source| Error::Write {
        path: out.to_path_buf(),
        source,
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".pluvo-report-")
        .tempdir_in(parent)
        .map_err(write_err)?;
    let tmp = scratch.path().join("report.html");
    std::fs::write(&tmp, page.as_bytes()).map_err(write_err)?;
    std::fs::rename(&tmp, out).map_err(write_err)?;
    Ok(Written {
        path: out.to_path_buf(),
        bytes: page.len() as u64,
        users: data.users,
        roster_shown: data.roster.rows.len(),
        roster_total: data.roster.certificates.iter().map(|c| c.total()).sum(),
    })
}
