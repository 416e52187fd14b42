//! Issue 22: the warehouse opens where analysts are — DuckDB 1.x clients (here the Python
//! package, from PyPI, pinned) read a file this tool created, with the same rows.

use crate::support::{python_with, rows, sim, sync};

const READ: &str = r#"
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(duckdb.__version__)
for table in ["users", "portfolio_items", "group_members"]:
    print(table, con.execute(f"select count(*) from {table}").fetchone()[0])
print("last_login", con.execute("select max(last_login)::VARCHAR from users").fetchone()[0])
"#;

#[tokio::test(flavor = "multi_thread")]
async fn issue_22_duckdb_1x_clients_open_the_warehouse() {
    let sim = sim(60).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let ours: Vec<String> = ["users", "portfolio_items", "group_members"]
        .iter()
        .map(|t| format!("{t} {}", rows(&db, &format!("SELECT count(*) FROM {t}"))[0]))
        .chain(rows(
            &db,
            "SELECT 'last_login ' || max(last_login)::VARCHAR FROM users",
        ))
        .collect();
    for version in ["1.1.3", "1.4.4"] {
        let out = python_with(&[&format!("duckdb=={version}")])
            .arg("-c")
            .arg(READ)
            .arg(&db)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "DuckDB {version} could not read the warehouse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], version);
        assert_eq!(lines[1..], ours, "DuckDB {version}");
    }
}
