//! Issue 22: the warehouse opens where analysts are — DuckDB 1.1–1.4 clients (here the Python
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

/// Issue 22: `examples/polars_report.py` runs on a published snapshot, with polars and with
/// its pandas fallback, and prints the completion per group that SQL over the warehouse gives.
#[tokio::test(flavor = "multi_thread")]
async fn issue_22_the_polars_and_pandas_example_answers_match_the_warehouse() {
    let sim = sim(120).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let expected = rows(
        &db,
        "SELECT g.name || ' ' || count(*) || ' ' ||
                printf('%.1f', round(avg(CASE WHEN p.progress >= 100 OR p.completion_date IS NOT NULL
                                         THEN 1 ELSE 0 END) * 100, 1))
         FROM group_members m
         JOIN portfolio_items p ON p.user_id = m.user_id AND p.related_object_type = 'TRAINING'
                               AND p._deleted_at IS NULL
         JOIN \"groups\" g ON g.id = m.group_id AND g._deleted_at IS NULL
         WHERE m.role = 'participant' AND m._deleted_at IS NULL
         GROUP BY g.name ORDER BY 1",
    );
    assert!(expected.len() > 1, "{expected:?}");
    let issued = rows(
        &db,
        "SELECT count(*) FROM portfolio_items
         WHERE related_object_type = 'CERTIFICATE' AND _deleted_at IS NULL",
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/polars_report.py");
    let export = dir.path().join("w-export");
    for pins in [
        &["polars==2.1.0"][..],
        &["pandas==3.1.1", "pyarrow==26.0.1"][..],
    ] {
        let out = python_with(pins).arg(script).arg(&export).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{pins:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let words = |line: &str| -> String {
            line.split(|c: char| c.is_whitespace() || "│┆|".contains(c))
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let printed: Vec<String> = stdout.lines().map(words).collect();
        for group in &expected {
            assert!(
                printed.iter().any(|l| l.ends_with(group.as_str())),
                "{pins:?} does not print `{group}`:\n{stdout}"
            );
        }
        // The per-year table adds up to every certificate issued.
        let total: u64 = stdout
            .split("completion per group")
            .next()
            .unwrap()
            .lines()
            .filter_map(|l| words(l).rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total.to_string(), issued[0], "{pins:?}:\n{stdout}");
    }
}
