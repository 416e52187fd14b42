//! Analyst views: the SQL files in `sql/views/`, compiled in, installed into a DuckDB
//! catalog as `CREATE OR REPLACE VIEW <file stem> AS <file>`.
//!
//! `sync` installs them into the warehouse after every successful run (so notebooks and BI
//! tools that open the file see them), `pluvo-warehouse views` does it on demand, and `query`
//! installs them over the published Parquet snapshot when it reads that instead. Parameters are
//! DuckDB variables read with `getvariable(name)` at query time (`SET VARIABLE days = 30`, or
//! `query --param days=30`); every view has defaults, so `SELECT * FROM inactive_users` works.
//!
//! It also says how the tool's own reads of a view hold at 1M users: without the view's final
//! sort ([`View::unordered_body`]) and, for `compliance_roster`, joined as written
//! ([`joined_as_written`]); the report and `export compliance` read the roster that way.

use duckdb::Connection;

/// One view: its name (the file stem) and its SQL (one SELECT, headed by a comment that says
/// what it answers, its parameters and its readers).
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub name: &'static str,
    pub sql: &'static str,
}

impl View {
    /// The file's header comment as one paragraph (what it answers, parameters, readers).
    pub fn about(&self) -> String {
        self.sql
            .lines()
            .map_while(|l| l.strip_prefix("--"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The SELECT without a trailing semicolon, for wrapping in other statements.
    pub fn body(&self) -> &'static str {
        self.sql.trim().trim_end_matches(';')
    }

    /// [`View::body`] without its final `ORDER BY` (a line of its own at the start, as the
    /// views end), for a statement that counts the rows or orders them itself. DuckDB sorts
    /// an ordered subquery even where the order is lost: at 1M users (7.3M roster rows)
    /// counting `compliance_roster` took 4.7 s and 2.0 GB with the sort, 1.7 s and 1.2 GB
    /// without.
    pub fn unordered_body(&self) -> &'static str {
        let body = self.body();
        match body.rfind("\nORDER BY ") {
            Some(at) if !body[at..].contains(')') => &body[..at],
            _ => body,
        }
    }
}

/// Run `read` (a read of `compliance_roster`) with DuckDB's choice of a hash join's build
/// side off, so that it builds on the right side as written, and restore the choice after.
/// The roster's `LEFT JOIN held` is the users × certificates product (7.3M rows at 1M users)
/// against the certificates held (1.5M): DuckDB estimated the held ones as the larger side
/// and built its hash table on the product. Counting the roster at 1M users: 3.3 s and
/// 1.8 GB with the choice, 1.1 s and 0.3 GB without (DuckDB 1.4, one thread).
pub fn joined_as_written<T, E>(
    conn: &Connection,
    read: impl FnOnce() -> Result<T, E>,
    err: impl Fn(duckdb::Error) -> E,
) -> Result<T, E> {
    conn.execute_batch("SET disabled_optimizers = 'build_side_probe_side'")
        .map_err(&err)?;
    let result = read();
    conn.execute_batch("RESET disabled_optimizers")
        .map_err(&err)?;
    result
}

macro_rules! view {
    ($name:literal) => {
        View {
            name: $name,
            sql: include_str!(concat!("../sql/views/", $name, ".sql")),
        }
    };
}

/// Every view, in the order `views` lists them. Adding a file to `sql/views/` is one line here.
pub const VIEWS: &[View] = &[
    view!("inactive_users"),
    view!("completion_by_group"),
    view!("completion_by_training"),
    view!("overdue_trainings"),
    view!("certificates_per_period"),
    view!("expiring_certificates"),
    view!("compliance_roster"),
];

/// The view called `name`.
pub fn find(name: &str) -> Option<&'static View> {
    VIEWS.iter().find(|v| v.name == name)
}

/// Create or replace every view in `conn`'s default catalog, in one transaction.
pub fn install(conn: &Connection) -> duckdb::Result<()> {
    let mut sql = String::from("BEGIN TRANSACTION;\n");
    for view in VIEWS {
        sql.push_str(&format!(
            "CREATE OR REPLACE VIEW \"{}\" AS\n{};\n",
            view.name,
            view.body()
        ));
    }
    sql.push_str("COMMIT;");
    let result = conn.execute_batch(&sql);
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roster_reads_without_its_final_sort() {
        let roster = find("compliance_roster").unwrap();
        assert!(
            roster.body().contains("\nORDER BY u.ref"),
            "the view ends ordered"
        );
        let plain = roster.unordered_body();
        assert!(!plain.contains("\nORDER BY"), "{plain}");
        assert!(roster.body().starts_with(plain));
        // An ORDER BY inside a subquery is kept, and so is a query without one.
        let view = |sql| View { name: "v", sql };
        let inner = "SELECT * FROM (SELECT 1 AS a\nORDER BY a) x";
        assert_eq!(view(inner).unordered_body(), inner);
        assert_eq!(view("SELECT 1;").unordered_body(), "SELECT 1");
    }

    #[test]
    fn the_roster_is_joined_as_written_and_the_setting_restored() {
        let conn = Connection::open_in_memory().unwrap();
        let disabled = || -> String {
            conn.query_row("SELECT current_setting('disabled_optimizers')", [], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let inside: Result<String, duckdb::Error> =
            joined_as_written(&conn, || Ok(disabled()), |e| e);
        assert_eq!(inside.unwrap(), "build_side_probe_side");
        assert_eq!(disabled(), "");
        // Restored after a failed read too.
        let failed: Result<(), duckdb::Error> =
            joined_as_written(&conn, || Err(duckdb::Error::QueryReturnedNoRows), |e| e);
        assert!(failed.is_err());
        assert_eq!(disabled(), "");
    }

    #[test]
    fn every_view_says_what_it_answers_and_its_parameters() {
        for view in VIEWS {
            let about = view.about();
            assert!(
                about.starts_with(&format!("{}: ", view.name)),
                "`{}` must open with `-- {}: what it answers`: {about}",
                view.name,
                view.name
            );
            assert!(
                about.contains("Parameters:") || about.contains("No parameters."),
                "`{}` must name its parameters: {about}",
                view.name
            );
        }
    }

    #[test]
    fn views_install_into_an_empty_warehouse_schema() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = crate::store::Warehouse::open(dir.path().join("w.duckdb")).unwrap();
        let conn = warehouse.connection();
        install(conn).unwrap();
        install(conn).unwrap(); // idempotent
        for view in VIEWS {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {}", view.name), [], |r| {
                    r.get(0)
                })
                .unwrap_or_else(|e| panic!("`{}`: {e}", view.name));
            assert_eq!(n, 0, "`{}` on empty tables", view.name);
        }
    }
}
