//! Getting started: `init` writes a configuration that loads and holds no secret; shell
//! completions come from the real command definitions.

use pluvo_warehouse::config::{Config, DEFAULT_SCOPE, Flags};

use crate::support::run_bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_loadable_file_without_the_secret_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-from-the-environment";
    let env = [("PLUVO_CLIENT_SECRET", secret)];
    let run = run_bin(
        dir.path(),
        &[
            "--url",
            "https://acme.pluvo.com",
            "init",
            "--client-id",
            "warehouse",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("export PLUVO_CLIENT_SECRET=..."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| {
            l.trim_start().starts_with("trainings.read ")
                && l.ends_with(" sync portfolio, certificates, trainings")
        }),
        "{}",
        run.stdout
    );
    let path = dir.path().join("pluvo-warehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(secret) && !run.stdout.contains(secret));
    assert!(
        !text.lines().any(|l| l.starts_with("client_secret")),
        "{text}"
    );

    let flags = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    let config = Config::load_with(&flags, |name| {
        (name == "PLUVO_CLIENT_SECRET").then(|| "x".to_string())
    })
    .expect("the written file loads");
    let api = config
        .api(pluvo_warehouse::config::Access::Write)
        .expect("url and client id were written");
    assert_eq!(api.base_url.as_str(), "https://acme.pluvo.com/");
    assert_eq!(api.client_id, "warehouse");
    assert_eq!(
        api.scope,
        DEFAULT_SCOPE
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Relative to the file's folder (issue 22).
    assert_eq!(config.db, dir.path().join("pluvo.duckdb"));
    assert_eq!(api.http.max_attempts, 8);

    std::fs::write(&path, "# edited by hand\n").unwrap();
    let again = run_bin(dir.path(), &["init"], &[]).await;
    assert_eq!(again.code, Some(2), "{again:?}");
    assert!(
        again.stderr.contains("already exists; pass --force"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# edited by hand\n",
        "nothing overwritten"
    );
    let forced = run_bin(dir.path(), &["init", "--force"], &[]).await;
    assert_eq!(forced.code, Some(0), "{forced:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# url = \"https://acme.pluvo.com\""),
        "{text}"
    );
    Config::load_with(&flags, |_| None).expect("the placeholder file loads too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_completions_know_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_bin(dir.path(), &["completions", "bash"], &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("complete -F _pluvo__warehouse"),
        "{}",
        run.stdout
    );
    for command in ["sync", "status", "doctor", "init"] {
        let mut words = run.stdout.split(|c: char| !c.is_alphanumeric() && c != '-');
        assert!(words.any(|w| w == command), "bash script lacks `{command}`");
    }
    let unknown = run_bin(dir.path(), &["completions", "tcsh"], &[]).await;
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
}

/// The number in a demo answer line `TITLE: N rows; ...`.
fn answered(stdout: &str, title: &str) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(title))
        .unwrap_or_else(|| panic!("no answer `{title}` in:\n{stdout}"));
    line.split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_to_the_end_and_its_answers_match_the_simulator() {
    use chrono::{Days, Utc};
    use pluvo_warehouse::sim::{Kind, SimConfig};

    let dir = tempfile::tempdir().unwrap();
    let run = run_bin(
        dir.path(),
        &["demo", "--dir", "demo", "--users", "400"],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(dir.path().join("demo/pluvo.duckdb").exists());
    assert!(
        dir.path()
            .join("demo/pluvo-export/current/manifest.json")
            .exists()
    );
    // The demo ends with the report, and prints its path.
    assert_eq!(
        run.stdout.lines().last(),
        Some("demo/report.html"),
        "{run:?}"
    );
    let report = std::fs::read_to_string(dir.path().join("demo/report.html")).unwrap();
    assert!(report.starts_with("<!DOCTYPE html>") && report.contains("id=\"report-data\""));
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("plan 1: archive-users"),
        "a dry-run plan: {all}"
    );

    // The same organisation (seed 42, 400 users), generated again for an independent answer.
    let sim = crate::support::sim_with(SimConfig {
        users: 400,
        seed: 42,
        ..SimConfig::default()
    })
    .await;
    let now = Utc::now();
    let today = now.date_naive();
    let (inactive, groups, expiring) = sim.with_data(|d| {
        let active = || d.users.iter().filter(|u| !u.archived && !u.deleted);
        let cutoff = now - chrono::Duration::days(180);
        let inactive = active()
            .filter(|u| u.last_login.is_none_or(|t| t < cutoff))
            .count();
        let soon = today + Days::new(90);
        let expiring = active()
            .flat_map(|u| &u.items)
            .filter(|i| i.kind == Kind::Certificate)
            .filter(|i| i.end_date.is_some_and(|e| e >= today && e <= soon))
            .count();
        (inactive, d.groups.len(), expiring)
    });
    assert_eq!(answered(&run.stdout, "Inactive users"), inactive);
    assert_eq!(answered(&run.stdout, "Completion per group"), groups);
    assert_eq!(answered(&run.stdout, "Certificates expiring"), expiring);
    assert!(
        run.stdout.contains(&format!("selected {inactive} rows")),
        "{}",
        run.stdout
    );
    // A dry run: every row of the plan is still pending, nothing was sent.
    assert_eq!(
        crate::support::rows(
            &dir.path().join("demo/pluvo.duckdb"),
            "SELECT status, count(*) FROM _push_ledger GROUP BY ALL"
        ),
        vec![format!("pending | {inactive}")]
    );
}
