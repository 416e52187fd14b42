//! The guard in front of user SQL: `query` and push selections run exactly one read-only
//! statement, and the connection they run on cannot be reconfigured by it.
//!
//! Input: the user's SQL text and the connection it will run on. Output: `Ok` or a
//! [`Refusal`] saying why, before any of the SQL has run.
//!
//! DuckDB's own parser decides, not a keyword list: `json_serialize_sql` parses the whole text
//! with the connection's parser and serialises it only if every statement is a SELECT, so it
//! gives both "how many statements" and "are they all SELECTs". That matters because the first
//! keyword says nothing about the rest: duckdb-rs's `prepare` *executes* every statement of a
//! multi-statement text but the last, so `SELECT 1; COPY users TO 'x.csv'; SELECT 1` wrote a
//! file while being "prepared". DESCRIBE, SHOW, SUMMARIZE, PIVOT (with an IN list), FROM-first
//! and VALUES are SELECTs to DuckDB and pass; EXPLAIN, PRAGMA, CALL, SET, COPY, ATTACH, INSTALL,
//! LOAD, EXPORT and every DDL/DML statement do not.
//!
//! A SELECT can still call the few table functions that change state (`enable_logging` writes
//! a log file, `enable_profiling` an output file): [`lock`] sets `lock_configuration`, which
//! DuckDB checks in each of them, after the tool's own settings are in place.

use duckdb::Connection;

/// Why SQL was refused. Each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the SQL has no statement; write one SELECT")]
    Empty,
    #[error(
        "the SQL has {count} statements; exactly one SELECT is run (nothing was run). Send \
         them one at a time, or join them into one SELECT with WITH or UNION ALL"
    )]
    Several { count: usize },
    #[error("{message}")]
    Syntax { message: String },
    #[error(
        "{what} is not run: only one read-only SELECT is (nothing was run). Write a SELECT \
         (`sync` fills the tables, `push` writes back to Pluvo)"
    )]
    NotSelect { what: String },
}

/// How [`check`] failed: the SQL is refused, or DuckDB could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("checking the SQL with DuckDB's parser: {0}")]
    Db(#[from] duckdb::Error),
}

/// Query nodes a read-only statement is made of; any other (`DELETE_QUERY_NODE` of a
/// `WITH d AS (DELETE ... RETURNING *) SELECT ...`, `INSERT_`, `UPDATE_`, `MERGE_`,
/// `COPY_QUERY_NODE`, `STATEMENT_NODE`) writes. DuckDB runs such a data-modifying CTE even
/// though the statement as a whole is a SELECT (tried: it deletes).
const READ_NODES: &[&str] = &[
    "SELECT_NODE",
    "SET_OPERATION_NODE",
    "RECURSIVE_CTE_NODE",
    "CTE_NODE",
];

/// Table functions whose argument is SQL text, parsed only when the query runs, so the
/// check above cannot see into it.
const SQL_TEXT_FUNCTIONS: &[&str] = &["query", "query_table"];

/// Refuse anything but exactly one read-only SELECT statement, by DuckDB's parser. Nothing
/// of `sql` runs here: it is a parameter of `json_serialize_sql`.
pub fn check(conn: &Connection, sql: &str) -> Result<(), GuardError> {
    let json: String = match conn.query_row(
        "SELECT json_serialize_sql(?::VARCHAR)::VARCHAR",
        [sql],
        |r| r.get(0),
    ) {
        Ok(json) => json,
        Err(e) if e.to_string().contains("Side-effecting CTEs") => {
            return Err(Refusal::NotSelect {
                what: cte_writer(sql),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let tree: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    if tree["error"].as_bool() != Some(false) {
        let message = tree["error_message"].as_str().unwrap_or("unknown error");
        if message.contains("Side-effecting CTEs") {
            // The warehouse's older storage format (v1.0.0, for 1.x readers) cannot serialise
            // a data-modifying WITH; it is a writer all the same.
            return Err(Refusal::NotSelect {
                what: cte_writer(sql),
            }
            .into());
        }
        if message.contains("Only SELECT statements") {
            return Err(Refusal::NotSelect {
                what: describe_statement(sql),
            }
            .into());
        }
        return Err(Refusal::Syntax {
            message: message.to_string(),
        }
        .into());
    }
    let statements = tree["statements"].as_array().map_or(&[][..], Vec::as_slice);
    match statements.len() {
        0 => return Err(Refusal::Empty.into()),
        1 => {}
        count => return Err(Refusal::Several { count }.into()),
    }
    if let Some(what) = find_writer(&statements[0]) {
        return Err(Refusal::NotSelect { what }.into());
    }
    Ok(())
}

/// "a `DELETE` inside a WITH": the first writing keyword of `sql`, for a data-modifying WITH
/// that DuckDB would not serialise.
fn cte_writer(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    let word = upper
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| ["INSERT", "UPDATE", "DELETE", "MERGE"].contains(w))
        .unwrap_or("writing statement");
    format!("a `{word}` inside a WITH")
}

/// The first part of a serialised SELECT that writes or hides SQL text, described.
fn find_writer(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(kind) = map.get("type").and_then(|t| t.as_str())
                && kind.ends_with("_NODE")
                && !READ_NODES.contains(&kind)
            {
                let word = kind
                    .trim_end_matches("_NODE")
                    .trim_end_matches("_QUERY")
                    .to_string();
                return Some(format!("a `{word}` inside a WITH"));
            }
            if map.get("type").and_then(|t| t.as_str()) == Some("TABLE_FUNCTION")
                && let Some(name) = function_name(map.get("function"))
                && SQL_TEXT_FUNCTIONS.contains(&name.as_str())
            {
                return Some(format!(
                    "`{name}(...)`, which runs SQL text that cannot be checked,"
                ));
            }
            map.values().find_map(find_writer)
        }
        serde_json::Value::Array(items) => items.iter().find_map(find_writer),
        _ => None,
    }
}

/// The lower-case name of a serialised function call.
fn function_name(function: Option<&serde_json::Value>) -> Option<String> {
    let name = function?.get("function_name")?.as_str()?;
    Some(name.to_ascii_lowercase())
}

/// Statement kinds that DuckDB parses as a SELECT.
const SELECT_WORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "PIVOT",
    "UNPIVOT",
    "SUMMARIZE",
    "DESCRIBE",
    "SHOW",
];

/// For the message only (DuckDB has already decided): "a `COPY` statement", naming the first
/// statement that does not start like a SELECT, found by splitting at semicolons.
fn describe_statement(sql: &str) -> String {
    for part in sql.split(';') {
        let word = first_word(part);
        if !word.is_empty() && !SELECT_WORDS.contains(&word.as_str()) {
            return format!("a `{word}` statement");
        }
    }
    "one of its statements".into()
}

/// The first word of `sql` after comments and opening parentheses, upper-cased.
fn first_word(sql: &str) -> String {
    let mut rest = sql.trim_start();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Lock `conn`'s database configuration, after the tool's own settings: nothing the user's
/// SQL calls can change a setting any more (`SET`, `enable_logging(...)`, re-enabling external
/// access), except the `still_settable` ones (the writer's `memory_limit` and `threads`).
/// With `external_access` false, DuckDB reads and writes no file but the database's own and
/// those under `allowed_directories` (a snapshot, the private folder of an answer).
pub fn lock(
    conn: &Connection,
    external_access: bool,
    allowed_directories: &[&std::path::Path],
    still_settable: &[&str],
) -> duckdb::Result<()> {
    if !external_access {
        let dirs: Vec<String> = allowed_directories
            .iter()
            .map(|d| {
                let mut text = d.display().to_string();
                if !text.ends_with('/') {
                    text.push('/');
                }
                format!("'{}'", text.replace('\'', "''"))
            })
            .collect();
        if !dirs.is_empty() {
            conn.execute_batch(&format!("SET allowed_directories = [{}]", dirs.join(", ")))?;
        }
        conn.execute_batch("SET enable_external_access = false")?;
    }
    if !still_settable.is_empty() {
        let names: Vec<String> = still_settable.iter().map(|n| format!("'{n}'")).collect();
        conn.execute_batch(&format!("SET allowed_configs = [{}]", names.join(", ")))?;
    }
    conn.execute_batch("SET lock_configuration = true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(conn: &Connection, sql: &str) -> Option<String> {
        match check(conn, sql) {
            Ok(()) => None,
            Err(GuardError::Refused(r)) => Some(r.to_string()),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    #[test]
    fn one_read_only_select_passes_and_nothing_else_does() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE users AS SELECT 'EMP1' AS ref")
            .unwrap();
        for sql in [
            "SELECT 1",
            "SELECT ref FROM users;",
            "FROM users",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT 1 UNION ALL SELECT 2",
            "DESCRIBE users",
            "SUMMARIZE users",
            "PIVOT users ON ref IN ('EMP1')",
            "SELECT * FROM read_csv('people.csv')",
        ] {
            assert_eq!(refusal(&conn, sql), None, "{sql}");
        }
        for (sql, says) in [
            (
                "SELECT 1; COPY users TO 'x.csv'; SELECT 1",
                "a `COPY` statement",
            ),
            ("SELECT 1; SELECT 2", "has 2 statements"),
            ("ATTACH 'w.duckdb' AS w", "a `ATTACH` statement"),
            ("INSTALL httpfs", "a `INSTALL` statement"),
            ("LOAD httpfs", "a `LOAD` statement"),
            ("SET threads = 1", "a `SET` statement"),
            ("PRAGMA enable_profiling", "a `PRAGMA` statement"),
            ("EXPORT DATABASE 'x'", "a `EXPORT` statement"),
            ("CALL checkpoint()", "a `CALL` statement"),
            (
                "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
                "a `DELETE` inside a WITH",
            ),
            ("SELECT * FROM query('DELETE FROM users')", "`query(...)`"),
            ("-- only a comment", "no statement"),
            (
                "SELECT 1) q; DELETE FROM users; SELECT * FROM (SELECT 1",
                "syntax error",
            ),
        ] {
            let err = refusal(&conn, sql).unwrap_or_else(|| panic!("{sql} passed"));
            assert!(err.contains(says), "{sql}: {err}");
        }
        // The check ran none of it.
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert!(!std::path::Path::new("x.csv").exists());
    }

    #[test]
    fn a_locked_connection_keeps_its_settings_and_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        let conn = Connection::open_in_memory().unwrap();
        lock(&conn, false, &[&inside], &["memory_limit"]).unwrap();
        conn.execute_batch("SET memory_limit = '64MB'").unwrap();
        conn.execute_batch("SET VARIABLE days = 3").unwrap();
        for sql in [
            "SET enable_external_access = true".to_string(),
            "SET threads = 1".to_string(),
            format!(
                "SELECT * FROM enable_logging(storage_path := '{}')",
                dir.path().join("log").display()
            ),
        ] {
            let err = conn.execute_batch(&sql).unwrap_err().to_string();
            assert!(
                err.contains("the configuration has been locked"),
                "{sql}: {err}"
            );
        }
        let outside = dir.path().join("out.csv");
        let err = conn
            .execute_batch(&format!("COPY (SELECT 1) TO '{}'", outside.display()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("disabled by configuration"), "{err}");
        assert!(!outside.exists());
        conn.execute_batch(&format!(
            "COPY (SELECT 1) TO '{}'",
            inside.join("a.csv").display()
        ))
        .unwrap();
    }
}
