//! Running analyst SQL (for `query`, `export compliance` and push selections): the one
//! `--param` parser, the read-only check, and writing an answer as a table, CSV, JSON lines
//! or Parquet. `cli/query.rs` picks the source (the warehouse, or while a `sync` holds it the
//! published snapshot; see `export::snapshot`) and prints.
//!
//! Parameters (`--param days=30`) become DuckDB variables (`SET VARIABLE days = 30`) that the
//! analyst views read with `getvariable`. The SQL is prepared first, so a mistake reports
//! DuckDB's own message with its `LINE n:` context, positions as in the user's text. Machine
//! formats are written by DuckDB's `COPY (sql) TO` (its CSV and JSON writers handle lists,
//! dates and quoting) into a private folder (0700, random name), then renamed into place or
//! copied to stdout. User SQL passes [`check_read_only`] first: one read-only SELECT.

use std::path::{Path, PathBuf};

use duckdb::Connection;

use crate::error::UsageError;
use crate::export::sql_path;

/// Why an answer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// DuckDB refused the SQL; the message counts lines in the user's text.
    #[error("the query failed: {0}")]
    Sql(String),
    #[error("writing `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("rendering the answer as a table")]
    Table(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    fn sql(e: duckdb::Error) -> Error {
        Error::Sql(user_lines(&e.to_string()))
    }
}

/// How `query` writes its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFormat {
    /// Aligned columns for people
    Table,
    /// CSV with a header row
    Csv,
    /// JSON lines: one object per row
    Json,
    /// Parquet (zstd); needs --out
    Parquet,
}

impl QueryFormat {
    pub fn from_extension(path: &Path) -> Option<QueryFormat> {
        match path.extension()?.to_str()? {
            "csv" => Some(QueryFormat::Csv),
            "json" | "jsonl" | "ndjson" => Some(QueryFormat::Json),
            "parquet" => Some(QueryFormat::Parquet),
            "txt" => Some(QueryFormat::Table),
            _ => None,
        }
    }

    /// DuckDB `COPY` options for the machine formats.
    pub(crate) fn copy_options(self) -> Option<String> {
        match self {
            QueryFormat::Table => None,
            QueryFormat::Csv => Some("FORMAT csv, HEADER true".to_owned()),
            QueryFormat::Json => Some("FORMAT json".to_owned()),
            QueryFormat::Parquet => Some(format!(
                "FORMAT parquet, {}",
                crate::export::PARQUET_COMPRESSION
            )),
        }
    }
}

/// A parsed `--param`: the variable name and its value as a SQL literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub literal: String,
}

/// Parse `NAME=VALUE` pairs; a name given more than once becomes a list of its values.
pub fn parse_params(raw: &[String]) -> Result<Vec<Param>, UsageError> {
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    for item in raw {
        let Some((name, value)) = item.split_once('=') else {
            return Err(UsageError::new(format!(
                "`--param {item}` must be NAME=VALUE, e.g. `--param days=30`"
            )));
        };
        let name = name.trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(UsageError::new(format!(
                "`--param {item}`: `{name}` is not a variable name (letters, digits, _)"
            )));
        }
        let literal = literal(value);
        match values.iter_mut().find(|(n, _)| n == name) {
            Some((_, list)) => list.push(literal),
            None => values.push((name.to_string(), vec![literal])),
        }
    }
    Ok(values
        .into_iter()
        .map(|(name, list)| Param {
            name,
            literal: if list.len() == 1 {
                list.into_iter().next().unwrap_or_default()
            } else {
                format!("[{}]", list.join(", "))
            },
        })
        .collect())
}

/// A value as a typed SQL literal: integer, decimal, DATE, or quoted text.
fn literal(value: &str) -> String {
    let v = value.trim();
    if v.parse::<i64>().is_ok() {
        v.to_string()
    } else if v.parse::<f64>().is_ok_and(f64::is_finite) && !v.contains(['e', 'E']) {
        format!("{v}::DOUBLE")
    } else if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
        format!("DATE '{v}'")
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// `SET VARIABLE` each parameter on `conn`.
pub fn set_params(conn: &Connection, params: &[Param]) -> duckdb::Result<()> {
    for p in params {
        conn.execute_batch(&format!("SET VARIABLE {} = {}", p.name, p.literal))?;
    }
    Ok(())
}

/// The SQL without trailing semicolons, on its own lines so a trailing comment cannot
/// swallow the closing parenthesis when it is wrapped.
pub(crate) fn body(sql: &str) -> String {
    sql.trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_string()
}

/// DuckDB's message for the wrapped SQL of [`copy_to`], with its `LINE n:` counted in the
/// user's text (the wrapper puts `COPY (` on a line of its own before it).
pub fn user_lines(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("LINE ") {
        let (before, after) = rest.split_at(i + "LINE ".len());
        out.push_str(before);
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest = after;
        if let Ok(n) = after[..digits].parse::<u64>()
            && n > 1
            && after[digits..].starts_with(':')
        {
            out.push_str(&(n - 1).to_string());
            rest = &after[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// `COPY (sql) TO path (options)`; returns the rows written.
pub fn copy_to(conn: &Connection, sql: &str, path: &Path, options: &str) -> duckdb::Result<usize> {
    conn.execute(
        &format!(
            "COPY (\n{}\n) TO '{}' ({options})",
            body(sql),
            sql_path(path)
        ),
        [],
    )
}

/// Write the answer of `sql` to `out` in `format`, atomically, through a private folder
/// beside it ([`scratch_beside`]).
pub fn write_file(
    conn: &Connection,
    sql: &str,
    format: QueryFormat,
    out: &Path,
) -> Result<usize, Error> {
    let scratch = scratch_beside(out)?;
    write_file_in(conn, sql, format, out, scratch.path())
}

/// A private folder (0700, random name) beside `out`, so the final rename stays on one file
/// system and nobody else can see, replace or pre-plant the half-written answer. A fixed name
/// (`.out.csv.tmp-<pid>`) could be a symlink planted by another user of a shared folder.
pub fn scratch_beside(out: &Path) -> Result<tempfile::TempDir, Error> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".pluvo-query-")
        .tempdir_in(parent)
        .map_err(|e| Error::Write {
            path: out.to_path_buf(),
            source: e.into(),
        })
}

/// [`write_file`] with the private folder given (`query` allows it to DuckDB before it locks
/// the connection).
pub fn write_file_in(
    conn: &Connection,
    sql: &str,
    format: QueryFormat,
    out: &Path,
    scratch: &Path,
) -> Result<usize, Error> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "answer".into());
    let tmp = scratch.join(name);
    let rows = match format.copy_options() {
        Some(options) => copy_to(conn, sql, &tmp, &options).map_err(|e| Error::Write {
            path: out.to_path_buf(),
            source: e.into(),
        })?,
        None => {
            let text = table_text(conn, sql)?;
            std::fs::write(&tmp, text).map_err(|e| Error::Write {
                path: out.to_path_buf(),
                source: e.into(),
            })?;
            0
        }
    };
    std::fs::rename(&tmp, out).map_err(|e| Error::Write {
        path: out.to_path_buf(),
        source: e.into(),
    })?;
    Ok(rows)
}

/// The answer as aligned text (arrow's pretty printer).
pub fn table_text(conn: &Connection, sql: &str) -> Result<String, Error> {
    let mut stmt = conn.prepare(sql).map_err(Error::sql)?;
    let batches: Vec<_> = stmt.query_arrow([]).map_err(Error::sql)?.collect();
    let text =
        arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| Error::Table(e.into()))?;
    Ok(format!("{text}\n"))
}

/// Why user SQL is not run: refused (a usage error, exit 2) or not understood by DuckDB.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Sql(#[from] Error),
    #[error(transparent)]
    Db(#[from] duckdb::Error),
}

/// Refuse anything but one read-only SELECT ([`crate::store::guard`]) before any of it runs,
/// with `who` ("`query`") in the message. A text DuckDB cannot parse gets DuckDB's own message
/// with its `LINE n:` context, from `prepare`, which runs nothing of a text it cannot parse.
pub fn check_read_only(conn: &Connection, sql: &str, who: &str) -> Result<(), Refused> {
    use crate::store::guard::{self, GuardError, Refusal};
    match guard::check(conn, sql) {
        Ok(()) => Ok(()),
        Err(GuardError::Refused(Refusal::Syntax { message })) => Err(match conn.prepare(sql) {
            Err(e) => Error::Sql(e.to_string()).into(),
            Ok(_) => Error::Sql(message).into(),
        }),
        Err(GuardError::Refused(refusal)) => {
            Err(UsageError::new(format!("{who} only reads the warehouse; {refusal}")).into())
        }
        Err(GuardError::Db(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &[&str]) -> Vec<(String, String)> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        parse_params(&raw)
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.literal))
            .collect()
    }

    #[test]
    fn params_get_sql_types_and_repeated_names_become_lists() {
        assert_eq!(
            params(&[
                "days=30",
                "rate=0.5",
                "as_of=2026-06-01",
                "name=O'Brien",
                "certificates=BHV",
                "certificates=VCA Basic"
            ]),
            [
                ("days".into(), "30".into()),
                ("rate".into(), "0.5::DOUBLE".into()),
                ("as_of".into(), "DATE '2026-06-01'".into()),
                ("name".into(), "'O''Brien'".into()),
                ("certificates".into(), "['BHV', 'VCA Basic']".into()),
            ]
        );
        // Text that only looks numeric in another language stays text.
        assert_eq!(
            params(&["x=1e5", "y=NaN"]),
            [("x".into(), "'1e5'".into()), ("y".into(), "'NaN'".into())]
        );
    }

    #[test]
    fn bad_params_are_usage_errors_that_show_the_form() {
        for (raw, says) in [
            ("days", "must be NAME=VALUE"),
            ("1days=3", "is not a variable name"),
            ("days; DROP TABLE users=1", "is not a variable name"),
        ] {
            let err = parse_params(&[raw.to_string()]).unwrap_err().to_string();
            assert!(err.contains(says), "{raw}: {err}");
        }
    }

    #[test]
    fn line_numbers_count_in_the_users_text() {
        assert_eq!(
            user_lines("Conversion Error: x\n\nLINE 2: SELECT 'a'::INT\n               ^"),
            "Conversion Error: x\n\nLINE 1: SELECT 'a'::INT\n               ^"
        );
        assert_eq!(
            user_lines("LINE 1: x; LINE 12: y; LINE z"),
            "LINE 1: x; LINE 11: y; LINE z"
        );
    }

    #[test]
    fn write_statements_are_refused_and_reads_pass() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE users AS SELECT 1 AS ref")
            .unwrap();
        for sql in [
            "DELETE FROM users",
            "  -- tidy up\n drop table users",
            "/* x */ INSERT INTO users VALUES (1)",
            "SELECT 1; DELETE FROM users; SELECT 1",
        ] {
            let err = check_read_only(&conn, sql, "`query`").unwrap_err();
            assert!(matches!(err, Refused::Usage(_)), "{sql}: {err}");
            assert!(
                err.to_string().contains("`query` only reads the warehouse"),
                "{sql}: {err}"
            );
        }
        let err = check_read_only(&conn, "SELEC 1", "`query`").unwrap_err();
        assert!(err.to_string().contains("LINE 1"), "{err}");
        for sql in [
            "SELECT 1",
            "(SELECT 1)",
            "WITH x AS (SELECT 1) FROM x",
            "FROM users",
        ] {
            assert!(check_read_only(&conn, sql, "`query`").is_ok(), "{sql}");
        }
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn trailing_semicolons_and_comments_do_not_break_wrapping() {
        assert_eq!(body("SELECT 1;\n  ;  "), "SELECT 1");
        let conn = Connection::open_in_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.csv");
        let rows = copy_to(
            &conn,
            "SELECT 42 AS n -- the answer\n;",
            &out,
            "FORMAT csv, HEADER true",
        )
        .unwrap();
        assert_eq!(rows, 1);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "n\n42\n");
    }
}
