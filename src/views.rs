//! Analyst views: the SQL files in `sql/views/`, compiled in, installed into a DuckDB
//! catalog as `CREATE OR REPLACE VIEW <file stem> AS <file>`.
//!
//! `sync` installs them into the warehouse after every successful run (so notebooks and BI
//! tools that open the file see them), `pluvo-warehouse views` does it on demand, and `query`
//! installs them over the published Parquet snapshot when it reads that instead. Parameters are
//! DuckDB variables read with `getvariable(name)` at query time (`SET VARIABLE days = 30`, or
//! `query --param days=30`); every view has defaults, so `SELECT * FROM inactive_users` works.

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
