//! Issue 22: the scheduled example runs as cron runs it — `/bin/sh -c` with an empty
//! environment and only the env file — against the simulator, and publishes its outputs.

use crate::support::sim;

#[tokio::test(flavor = "multi_thread")]
async fn issue_22_the_crontab_line_syncs_with_only_the_env_file() {
    let sim = sim(50).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("var-lib");
    std::fs::create_dir(&work).unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(
        &env_file,
        format!(
            "PLUVO_URL={}\nPLUVO_CLIENT_ID={}\nPLUVO_CLIENT_SECRET={}\nPLUVO_DB=pluvo.duckdb\n\
             CERTIFICATES=VCA Basic\nPLUVO_WAREHOUSE={}\n",
            sim.url(),
            sim.client_id(),
            sim.client_secret(),
            env!("CARGO_BIN_EXE_pluvo-warehouse"),
        ),
    )
    .unwrap();
    let crontab = include_str!("../examples/scheduled/crontab");
    let line = crontab
        .lines()
        .find(|l| l.starts_with("15 2 * * *"))
        .expect("the crontab has its job line");
    let command = line
        .trim_start_matches("15 2 * * * ")
        .replace("/etc/pluvo-warehouse/env", env_file.to_str().unwrap())
        .replace("/var/lib/pluvo-warehouse", work.to_str().unwrap())
        .replace(
            "/opt/pluvo-warehouse/examples",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        );
    let out = std::process::Command::new("/usr/bin/env")
        .args(["-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", &command])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(work.join("sync.log")).unwrap_or_default();
    assert!(out.status.success(), "cron job failed: {log}");
    let sync: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("last-sync.json")).unwrap())
            .unwrap();
    let users = sync["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "users")
        .unwrap();
    assert_eq!(users["new"], 50, "{sync}");
    let today = chrono::Utc::now().date_naive();
    let roster = std::fs::read_to_string(
        work.join("compliance")
            .join(format!("compliance-{today}.csv")),
    )
    .unwrap();
    // A header and one row per active user for the one certificate of the env file.
    let active = crate::support::rows(
        &work.join("pluvo.duckdb"),
        "SELECT count(*) FROM users WHERE NOT archived AND _deleted_at IS NULL",
    );
    assert_eq!(
        (roster.lines().count() - 1).to_string(),
        active[0],
        "{roster}"
    );
    assert!(
        roster.lines().skip(1).all(|l| l.contains(",VCA Basic,")),
        "{roster}"
    );
    assert!(
        work.join("pluvo-export/current/manifest.json").exists(),
        "{log}"
    );
}

/// dbt-duckdb and the DuckDB it pulls in, pinned. dbt-core is pinned below 1.12 because 1.12
/// builds a parser wheel by downloading it from outside PyPI at install time.
const DBT: &[&str] = &["dbt-duckdb==1.11.1", "dbt-core==1.11.16", "duckdb==2.0.1"];

/// Dagster, pinned.
const DAGSTER: &[&str] = &["dagster==1.13.29"];

/// A copy of `examples/<name>` in `to` (so that dbt's target/, logs/ and database stay out of
/// the repository).
fn copy_example(name: &str, to: &std::path::Path) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        to,
    );
}

/// Issue 22: `dbt build` of examples/dbt passes its data tests on a synced warehouse's
/// snapshot, and its `certificate_status` counts what `compliance_roster` says on the same day
/// and window: a certificate expiring on the window's last day is `expiring`, one without an
/// expiry date is `valid` and counted in `no_expiry`. The DuckDB that dbt-duckdb pulls in
/// opens the warehouse file too.
#[tokio::test(flavor = "multi_thread")]
async fn issue_22_dbt_build_passes_and_agrees_with_the_compliance_roster() {
    use pluvo_warehouse::sim::data::Kind;
    let sim = sim(150).await;
    // One certificate that never expires.
    let no_expiry = sim.edit(|d| {
        let user = d
            .users
            .iter_mut()
            .find(|u| !u.archived && u.items.iter().any(|i| i.kind == Kind::Certificate))
            .unwrap();
        let item = user
            .items
            .iter_mut()
            .find(|i| i.kind == Kind::Certificate)
            .unwrap();
        item.end_date = None;
        item.title.to_string()
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    crate::support::sync(&sim, &db, false).await;
    let config = crate::support::config_file(&sim, dir.path());

    // The day 90 days before the median expiry: some certificates expired by then, some expire
    // within the window (one on its last day), some later.
    let median = crate::support::rows(
        &db,
        "SELECT (quantile_disc(end_date, 0.5) - 90)::VARCHAR FROM portfolio_items
         WHERE related_object_type = 'CERTIFICATE' AND end_date IS NOT NULL",
    );
    let as_of = &median[0];
    let roster = |sql: &str| -> String {
        let out = crate::support::command(
            &config,
            &db,
            sim.client_secret(),
            &[
                "query",
                "--format",
                "csv",
                "--param",
                &format!("as_of={as_of}"),
                sql,
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let on_the_last_day = roster(
        "SELECT count(*) FROM compliance_roster WHERE days_left = 90 AND status = 'expiring'",
    );
    assert_ne!(on_the_last_day.lines().nth(1), Some("0"), "{as_of}");
    let expected = roster(
        "SELECT certificate AS title,
                count(*) FILTER (status = 'valid') AS valid,
                count(*) FILTER (status = 'expiring') AS expiring,
                count(*) FILTER (status = 'expired') AS expired,
                count(*) FILTER (status = 'missing') AS missing,
                count(*) FILTER (status = 'valid' AND expires_on IS NULL) AS no_expiry,
                count(*) AS users
         FROM compliance_roster GROUP BY 1 ORDER BY 1",
    );
    let expected: Vec<&str> = expected.lines().skip(1).collect();
    let row = expected
        .iter()
        .find(|l| l.starts_with(&format!("{no_expiry},")))
        .unwrap_or_else(|| panic!("{no_expiry}: {expected:?}"));
    assert_eq!(row.split(',').nth(5), Some("1"), "no_expiry of {row}");

    let project = dir.path().join("dbt");
    copy_example("dbt", &project);
    let vars = format!(
        "{{pluvo_export: '{}', as_of: '{as_of}'}}",
        dir.path().join("w-export").display()
    );
    let out = crate::support::python_with(DBT)
        .args(["-m", "dbt.cli.main", "build", "--profiles-dir", "."])
        .args(["--vars", &vars])
        .current_dir(&project)
        .env("DO_NOT_TRACK", "1")
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dbt build failed:\n{log}");
    assert!(log.contains(" ERROR=0 ") && log.contains("PASS="), "{log}");

    let read = r#"
import sys, duckdb
marts = duckdb.connect("dbt.duckdb", read_only=True)
for row in marts.execute("select * from certificate_status order by title").fetchall():
    print(",".join(str(v) for v in row))
warehouse = duckdb.connect(sys.argv[1], read_only=True)
print("duckdb", duckdb.__version__, "users", warehouse.execute("select count(*) from users").fetchone()[0])
"#;
    let out = crate::support::python_with(DBT)
        .args(["-c", read])
        .arg(&db)
        .current_dir(&project)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines[..lines.len() - 1],
        expected[..],
        "dbt's certificate_status vs compliance_roster on {as_of}"
    );
    let users = crate::support::rows(&db, "SELECT count(*) FROM users");
    assert_eq!(
        lines.last().copied(),
        Some(format!("duckdb 2.0.1 users {}", users[0]).as_str())
    );
}

/// Issue 22: the Dagster example runs `sync` then `export` against the simulator; with a wrong
/// secret the job fails at `sync` (exit 2 named) and `export` never runs.
#[tokio::test(flavor = "multi_thread")]
async fn issue_22_the_dagster_job_syncs_then_exports_and_stops_on_a_failed_sync() {
    let sim = sim(80).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dagster/pluvo_job.py");
    let dir = tempfile::tempdir().unwrap();
    let job = |folder: &str, secret: &str| {
        let cwd = dir.path().join(folder);
        std::fs::create_dir(&cwd).unwrap();
        let out = crate::support::python_with(DAGSTER)
            .arg(script)
            .current_dir(&cwd)
            .env("HOME", dir.path())
            .env("DAGSTER_HOME", dir.path())
            .env("PLUVO_WAREHOUSE", env!("CARGO_BIN_EXE_pluvo-warehouse"))
            .env("PLUVO_URL", sim.url())
            .env("PLUVO_CLIENT_ID", sim.client_id())
            .env("PLUVO_CLIENT_SECRET", secret)
            .env_remove("PLUVO_DB")
            .env_remove("PLUVO_CONFIG")
            .output()
            .unwrap();
        (cwd, out)
    };

    let (cwd, out) = job("ok", sim.client_secret());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The export op's output: the table of what was published, users first.
    let users = stdout
        .lines()
        .find(|l| l.starts_with("users "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(users.split_whitespace().nth(1), Some("80"), "{stdout}");
    assert!(
        stdout.contains("published pluvo-export/snapshots/"),
        "{stdout}"
    );
    assert_eq!(
        crate::support::rows(&cwd.join("pluvo.duckdb"), "SELECT count(*) FROM users"),
        ["80"]
    );
    let manifest = std::fs::read_to_string(cwd.join("pluvo-export/current/manifest.json")).unwrap();
    assert!(manifest.contains("\"users\""), "{manifest}");

    let (cwd, out) = job("wrong-secret", "wrong");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`pluvo-warehouse sync --format json` exited 2")
            && stderr.contains("invalid_client")
            && !stderr.contains(sim.client_secret()),
        "{stderr}"
    );
    assert!(
        !cwd.join("pluvo-export").exists(),
        "export ran after a failed sync"
    );
}
