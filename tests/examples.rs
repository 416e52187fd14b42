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
