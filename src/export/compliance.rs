//! The compliance roster: a dated, reproducible list of who holds which certificate (since
//! when, until when) and who is missing it, from the `compliance_roster` view, written as CSV
//! or Parquet with the source run id, the as-of date and the export time in every row
//! (`export compliance` in `cli/export.rs` picks the source and prints the summary).
//!
//! As an Excel workbook ([`Format::Xlsx`]) the rows are laid out by [`super::xlsx`]: a summary
//! sheet and one sheet per certificate, with the run id and export time on the summary.
//!
//! Reproducible: the same warehouse (run) and the same `as_of` give the same rows in the
//! same order; only `exported_at` differs.

use std::path::Path;

use chrono::{NaiveDate, Utc};
use duckdb::Connection;

use super::xlsx;
use crate::error::UsageError;
use crate::query::{self, QueryFormat, write_file};

/// Why the roster was not written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error("{doing}")]
    Db {
        doing: &'static str,
        #[source]
        source: duckdb::Error,
    },
    #[error(transparent)]
    Write(#[from] query::Error),
    #[error("writing the workbook `{}`", path.display())]
    Xlsx {
        path: std::path::PathBuf,
        #[source]
        source: rust_xlsxwriter::XlsxError,
    },
}

/// The roster's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV or Parquet, written by DuckDB (one row per user and certificate).
    Query(QueryFormat),
    /// An Excel workbook: a summary sheet and one sheet per certificate.
    Xlsx,
}

fn db(doing: &'static str) -> impl Fn(duckdb::Error) -> Error {
    move |source| Error::Db { doing, source }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Required certificate titles, as in the `certificates` table.
    pub certificates: &'a [String],
    pub as_of: NaiveDate,
    /// Certificates expiring within this many days are `expiring`, not `valid`.
    pub days: u32,
    pub format: Format,
    pub out: &'a Path,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub rows: usize,
    pub run_id: Option<i64>,
    /// `(status, rows)`, by status.
    pub counts: Vec<(String, i64)>,
}

/// Write the roster of `request` from `conn` (the warehouse or its snapshot).
pub fn write(conn: &Connection, request: &Request<'_>) -> Result<Written, Error> {
    let titles_doing = "reading the certificate titles";
    let mut stmt = conn
        .prepare("SELECT DISTINCT title FROM certificates WHERE _deleted_at IS NULL AND title IS NOT NULL ORDER BY title")
        .map_err(db(titles_doing))?;
    let known: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(db(titles_doing))?
        .collect::<Result<_, _>>()
        .map_err(db(titles_doing))?;
    let unknown: Vec<&String> = request
        .certificates
        .iter()
        .filter(|c| !known.contains(c))
        .collect();
    if !unknown.is_empty() {
        return Err(UsageError::new(format!(
            "no certificate titled {}; known titles: {}",
            unknown
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        ))
        .into());
    }

    let as_of = request.as_of;
    let now = Utc::now();
    let titles: Vec<String> = request
        .certificates
        .iter()
        .map(|c| format!("'{}'", c.replace('\'', "''")))
        .collect();
    conn.execute_batch(&format!(
        "SET VARIABLE certificates = [{}]::VARCHAR[];
         SET VARIABLE as_of = DATE '{as_of}';
         SET VARIABLE days = {};",
        titles.join(", "),
        request.days
    ))
    .map_err(db("setting the roster's parameters"))?;
    let run_id: Option<i64> = conn
        .query_row(
            "SELECT max(run_id) FROM _runs WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .map_err(db("reading the last run"))?;
    // Unsorted: the file's rows are ordered below.
    let roster = crate::views::find("compliance_roster")
        .expect("compliance_roster is a view")
        .unordered_body();
    let sql = format!(
        "SELECT DATE '{as_of}' AS as_of, r.*, {run} AS run_id,
                TIMESTAMP '{now}' AS exported_at
         FROM ({roster}\n) r
         ORDER BY r.user_ref, r.user_id, r.certificate",
        run = run_id.map_or("NULL::BIGINT".to_string(), |r| r.to_string()),
        now = now.format("%Y-%m-%d %H:%M:%S%.6f"),
    );
    // The roster unsorted (the file is ordered here) and its join built as written
    // (`views::joined_as_written`): at 1M users × 8 certificates, 15.0 s and 4.7 GB → 9.0 s
    // and 2.6 GB, most of it now the file's own sort.
    let (rows, counts) = crate::views::joined_as_written(
        conn,
        || -> Result<_, Error> {
            let rows = match request.format {
                Format::Query(format) => write_file(conn, &sql, format, request.out)?,
                Format::Xlsx => write_xlsx(conn, roster, request, run_id, now.naive_utc())?,
            };
            let counting = "counting the roster by status";
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT status, count(*) FROM ({roster}\n) GROUP BY status ORDER BY status"
                ))
                .map_err(db(counting))?;
            let counts: Vec<(String, i64)> = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db(counting))?
                .collect::<Result<_, _>>()
                .map_err(db(counting))?;
            Ok((rows, counts))
        },
        db("reading the roster"),
    )?;
    Ok(Written {
        rows,
        run_id,
        counts,
    })
}

/// The workbook of `request`, through a private scratch folder beside `out` (its temporary
/// files and the half-written file), renamed into place when complete. Returns the rows.
fn write_xlsx(
    conn: &Connection,
    roster: &str,
    request: &Request<'_>,
    run_id: Option<i64>,
    now: chrono::NaiveDateTime,
) -> Result<usize, Error> {
    let counting = "counting the roster per certificate";
    let mut stmt = conn
        .prepare(&format!(
            "SELECT certificate,
                    count(*) FILTER (WHERE status = 'valid'),
                    count(*) FILTER (WHERE status = 'expiring'),
                    count(*) FILTER (WHERE status = 'expired'),
                    count(*) FILTER (WHERE status = 'missing')
             FROM ({roster}\n) GROUP BY certificate ORDER BY certificate"
        ))
        .map_err(db(counting))?;
    let counts: Vec<xlsx::Counts> = stmt
        .query_map([], |r| {
            Ok(xlsx::Counts {
                certificate: r.get(0)?,
                valid: r.get(1)?,
                expiring: r.get(2)?,
                expired: r.get(3)?,
                missing: r.get(4)?,
            })
        })
        .map_err(db(counting))?
        .collect::<Result<_, _>>()
        .map_err(db(counting))?;
    let scratch = query::scratch_beside(request.out)?;
    let name = request
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "roster.xlsx".into());
    let tmp = scratch.path().join(name);
    let meta = xlsx::Meta {
        as_of: request.as_of,
        days: request.days,
        run_id,
        exported_at: now,
    };
    xlsx::write(
        conn,
        roster,
        &counts,
        &meta,
        &tmp,
        scratch.path(),
        xlsx::MAX_ROWS,
    )?;
    std::fs::rename(&tmp, request.out).map_err(|e| query::Error::Write {
        path: request.out.to_path_buf(),
        source: e.into(),
    })?;
    Ok(counts.iter().map(|c| c.total() as usize).sum())
}
