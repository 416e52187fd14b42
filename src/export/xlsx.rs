//! The compliance roster as an Excel workbook (`export compliance --format xlsx`): a
//! `Summary` sheet (counts per certificate and status, the as-of date, the run) and one sheet
//! per certificate with its users, dates as real Excel dates, a frozen header and filters.
//!
//! The rows come from the same SQL as the CSV and Parquet roster ([`super::compliance`]);
//! this module only lays them out. Certificate sheets are written in `rust_xlsxwriter`'s
//! constant-memory mode: each row goes to a temporary file in the private scratch folder as
//! it is read, so a 1M-user roster does not sit in memory.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use duckdb::Connection;
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::compliance::Error;
use crate::error::UsageError;

/// Data rows an Excel sheet holds (1,048,576 rows, one of them the header).
pub const MAX_ROWS: u64 = 1_048_575;

/// The name of the summary sheet.
pub const SUMMARY: &str = "Summary";

/// One certificate's counts by status.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    pub certificate: String,
    pub valid: i64,
    pub expiring: i64,
    pub expired: i64,
    pub missing: i64,
}

impl Counts {
    pub fn total(&self) -> i64 {
        self.valid + self.expiring + self.expired + self.missing
    }
}

/// What goes into the workbook besides the rows.
#[derive(Debug, Clone)]
pub struct Meta {
    pub as_of: NaiveDate,
    pub days: u32,
    pub run_id: Option<i64>,
    pub exported_at: NaiveDateTime,
}

fn xlsx(path: &Path) -> impl Fn(XlsxError) -> Error + '_ {
    move |source| Error::Xlsx {
        path: path.to_path_buf(),
        source,
    }
}

/// A valid, unique sheet name for `title`: Excel allows 31 characters and none of `[]:*?/\`,
/// and compares names without case.
pub fn sheet_name(title: &str, taken: &[String]) -> String {
    let clean: String = title
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
        .collect();
    let clean = clean.trim_matches('\'').trim();
    let clean = if clean.is_empty() {
        "Certificate"
    } else {
        clean
    };
    let is_taken = |name: &str| taken.iter().any(|t| t.eq_ignore_ascii_case(name));
    let base: String = clean.chars().take(31).collect();
    if !is_taken(&base) {
        return base;
    }
    (2..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let head: String = clean.chars().take(31 - suffix.len()).collect();
            format!("{head}{suffix}")
        })
        .find(|name| !is_taken(name))
        .unwrap_or(base)
}

/// Write the workbook to `path`. `roster` is the roster SELECT (the `compliance_roster` view
/// with its variables set); `counts` its counts per certificate, in sheet order; temporary
/// files go to `scratch`. A certificate with more users than a sheet holds (`max_rows`) is
/// refused before anything is written.
pub fn write(
    conn: &Connection,
    roster: &str,
    counts: &[Counts],
    meta: &Meta,
    path: &Path,
    scratch: &Path,
    max_rows: u64,
) -> Result<(), Error> {
    if let Some(big) = counts.iter().find(|c| c.total() as u64 > max_rows) {
        return Err(UsageError::new(format!(
            "certificate `{}` has {} users, more than an Excel sheet holds ({max_rows} rows); \
             export it as csv or parquet instead (--format csv)",
            big.certificate,
            big.total()
        ))
        .into());
    }
    let err = xlsx(path);
    let bold = Format::new().set_bold();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let datetime = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");

    let mut workbook = Workbook::new();
    workbook.set_tempdir(scratch).map_err(&err)?;
    let mut taken = vec![SUMMARY.to_string()];

    let summary = workbook.add_worksheet();
    summary.set_name(SUMMARY).map_err(&err)?;
    let header = [
        "certificate",
        "sheet",
        "valid",
        "expiring",
        "expired",
        "missing",
        "users",
    ];
    summary
        .write_row_with_format(0, 0, header, &bold)
        .map_err(&err)?;
    let mut sheets = Vec::with_capacity(counts.len());
    for (i, c) in counts.iter().enumerate() {
        let row = i as u32 + 1;
        let name = sheet_name(&c.certificate, &taken);
        taken.push(name.clone());
        summary.write_string(row, 0, &c.certificate).map_err(&err)?;
        summary.write_string(row, 1, &name).map_err(&err)?;
        for (col, n) in [c.valid, c.expiring, c.expired, c.missing, c.total()]
            .into_iter()
            .enumerate()
        {
            summary
                .write_number(row, col as u16 + 2, n as f64)
                .map_err(&err)?;
        }
        sheets.push(name);
    }
    let last = counts.len() as u32;
    summary.set_freeze_panes(1, 0).map_err(&err)?;
    summary.autofilter(0, 0, last.max(1), 6).map_err(&err)?;
    summary.set_column_width(0, 28).map_err(&err)?;
    summary.set_column_width(1, 28).map_err(&err)?;
    let notes = last + 2;
    summary
        .write_string_with_format(notes, 0, "as of", &bold)
        .map_err(&err)?;
    summary
        .write_date_with_format(notes, 1, meta.as_of, &date)
        .map_err(&err)?;
    summary
        .write_string_with_format(notes + 1, 0, "expiring = expires within (days)", &bold)
        .map_err(&err)?;
    summary
        .write_number(notes + 1, 1, meta.days as f64)
        .map_err(&err)?;
    summary
        .write_string_with_format(notes + 2, 0, "sync run", &bold)
        .map_err(&err)?;
    if let Some(run) = meta.run_id {
        summary
            .write_number(notes + 2, 1, run as f64)
            .map_err(&err)?;
    }
    summary
        .write_string_with_format(notes + 3, 0, "exported at (UTC)", &bold)
        .map_err(&err)?;
    summary
        .write_datetime_with_format(notes + 3, 1, meta.exported_at, &datetime)
        .map_err(&err)?;

    let doing = "reading the roster for the workbook";
    let db = |source| Error::Db { doing, source };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT user_ref, user_id, name, email, status, issued_on, expires_on, days_left
             FROM ({roster}\n) r WHERE r.certificate = ? ORDER BY r.user_ref, r.user_id"
        ))
        .map_err(db)?;
    for (c, name) in counts.iter().zip(&sheets) {
        let sheet = workbook
            .add_worksheet_with_constant_memory()
            .map_err(&err)?;
        sheet.set_name(name).map_err(&err)?;
        let columns = [
            ("user_ref", 14),
            ("user_id", 38),
            ("name", 24),
            ("email", 34),
            ("status", 10),
            ("issued_on", 12),
            ("expires_on", 12),
            ("days_left", 10),
        ];
        for (col, (_, width)) in columns.iter().enumerate() {
            sheet.set_column_width(col as u16, *width).map_err(&err)?;
        }
        sheet
            .write_row_with_format(0, 0, columns.map(|(h, _)| h), &bold)
            .map_err(&err)?;
        let mut rows = stmt.query([&c.certificate]).map_err(db)?;
        let mut n: u32 = 0;
        while let Some(r) = rows.next().map_err(db)? {
            n += 1;
            write_row(sheet, n, r, &date).map_err(|e| match e {
                RowError::Db(source) => db(source),
                RowError::Xlsx(source) => err(source),
            })?;
        }
        sheet.set_freeze_panes(1, 0).map_err(&err)?;
        sheet.autofilter(0, 0, n.max(1), 7).map_err(&err)?;
    }
    workbook.save(path).map_err(&err)?;
    Ok(())
}

enum RowError {
    Db(duckdb::Error),
    Xlsx(XlsxError),
}

impl From<duckdb::Error> for RowError {
    fn from(e: duckdb::Error) -> Self {
        RowError::Db(e)
    }
}

impl From<XlsxError> for RowError {
    fn from(e: XlsxError) -> Self {
        RowError::Xlsx(e)
    }
}

/// One roster row; empty cells stay blank (not an empty string), so Excel's filters show
/// "(Blanks)" for a missing certificate's dates.
fn write_row(
    sheet: &mut Worksheet,
    row: u32,
    r: &duckdb::Row<'_>,
    date: &Format,
) -> Result<(), RowError> {
    for col in 0..5 {
        if let Some(text) = r.get::<_, Option<String>>(col)? {
            sheet.write_string(row, col as u16, text)?;
        }
    }
    for col in 5..7 {
        if let Some(d) = r.get::<_, Option<NaiveDate>>(col)? {
            sheet.write_date_with_format(row, col as u16, d, date)?;
        }
    }
    if let Some(days) = r.get::<_, Option<i64>>(7)? {
        sheet.write_number(row, 7, days as f64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROSTER: &str = "SELECT * FROM (VALUES
        ('E1', 'u1', 'Anna', 'a@x', 'BHV', 'valid', DATE '2026-01-02', DATE '2027-01-02', 215::BIGINT),
        ('E2', 'u2', 'Bram', NULL, 'BHV', 'missing', NULL, NULL, NULL),
        ('E3', 'u3', 'Chloe', 'c@x', 'BHV', 'expired', DATE '2024-01-02', DATE '2025-01-02', -515::BIGINT))
        t(user_ref, user_id, name, email, certificate, status, issued_on, expires_on, days_left)";

    fn counts() -> Vec<Counts> {
        vec![Counts {
            certificate: "BHV".into(),
            valid: 1,
            expiring: 0,
            expired: 1,
            missing: 1,
        }]
    }

    fn meta() -> Meta {
        Meta {
            as_of: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            days: 90,
            run_id: Some(3),
            exported_at: NaiveDate::from_ymd_opt(2026, 6, 1)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap(),
        }
    }

    #[test]
    fn a_certificate_with_more_users_than_a_sheet_holds_is_refused_before_writing() {
        let conn = Connection::open_in_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.xlsx");
        let err = write(&conn, ROSTER, &counts(), &meta(), &out, dir.path(), 2).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(
            err.to_string()
                .contains("certificate `BHV` has 3 users, more than an Excel sheet holds (2 rows)"),
            "{err}"
        );
        assert!(!out.exists());
        write(&conn, ROSTER, &counts(), &meta(), &out, dir.path(), 3).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"PK"), "a zip container");
    }

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let mut taken = vec![SUMMARY.to_string()];
        let mut add = |title: &str| {
            let name = sheet_name(title, &taken);
            taken.push(name.clone());
            name
        };
        assert_eq!(add("BHV"), "BHV");
        assert_eq!(add("bhv"), "bhv (2)");
        assert_eq!(add("summary"), "summary (2)");
        assert_eq!(add("Safety: level 1/2 [new]?"), "Safety_ level 1_2 _new__");
        let long = add("A very long certificate title that Excel would refuse");
        assert_eq!(long.chars().count(), 31);
        let again = add("A very long certificate title that Excel would refuse");
        assert_eq!(again.chars().count(), 31);
        assert!(again.ends_with(" (2)"), "{again}");
        assert_eq!(add("''"), "Certificate");
    }
}
