//! `doctor`: every problem is named with its fix — wrong secret, unreachable URL, a missing
//! scope, a locked database — and a healthy setup passes (exit 0).

use pluvo_warehouse::sim::{ALL_SCOPES, Sim, SimConfig};

use crate::support::{Run, run_bin, sim, sim_with, sync};

/// `doctor` against `url` with the given secret (and scope, if any), database `db`.
async fn doctor(dir: &std::path::Path, url: &str, secret: &str, scope: Option<&str>) -> Run {
    let db = dir.join("w.duckdb");
    let mut env = vec![
        ("PLUVO_URL", url),
        ("PLUVO_CLIENT_ID", "demo"),
        ("PLUVO_CLIENT_SECRET", secret),
        ("PLUVO_DB", db.to_str().unwrap()),
    ];
    if let Some(scope) = scope {
        env.push(("PLUVO_SCOPE", scope));
    }
    run_bin(dir, &["doctor"], &env).await
}

/// The output line of check `name`, e.g. `FAIL  credentials ...`, and the line after it.
fn line<'a>(run: &'a Run, name: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| {
            l.split_once(' ')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(name))
        })
        .unwrap_or_else(|| panic!("no `{name}` check in\n{}", run.stdout));
    (lines[i], lines.get(i + 1).copied().unwrap_or(""))
}

/// Check `name` has `verdict` (`ok`, `FAIL`, `skip`).
fn verdict(run: &Run, name: &str, verdict: &str) {
    let (check, _) = line(run, name);
    assert!(
        check.starts_with(verdict),
        "`{name}` is not {verdict}:\n{}",
        run.stdout
    );
}

fn secret(sim: &Sim) -> String {
    sim.client_secret().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_setup_passes_and_a_locked_database_names_the_pid() {
    let sim = sim(40).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sim.url();
    let ok = doctor(dir.path(), &url, &secret(&sim), None).await;
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(ok.stdout.contains("all checks passed"), "{}", ok.stdout);
    assert!(
        line(&ok, "database")
            .0
            .contains("the first sync will create it"),
        "{}",
        ok.stdout
    );
    verdict(&ok, "scope for portfolio", "ok");
    assert!(!ok.stdout.contains(&secret(&sim)) && !ok.stderr.contains(&secret(&sim)));

    let db = dir.path().join("w.duckdb");
    let outcome = sync(&sim, &db, false).await;
    let after = doctor(dir.path(), &url, &secret(&sim), None).await;
    assert_eq!(after.code, Some(0), "{after:?}");
    let (database, _) = line(&after, "database");
    assert!(
        database.contains(&format!(
            "schema version {}, last run {} succeeded",
            pluvo_warehouse::store::SCHEMA_VERSION,
            outcome.run_id
        )),
        "{database}"
    );

    let writer = pluvo_warehouse::store::Warehouse::open(&db).unwrap();
    let locked = doctor(dir.path(), &url, &secret(&sim), None).await;
    writer.close().unwrap();
    assert_eq!(locked.code, Some(1), "{locked:?}");
    let (database, fix) = line(&locked, "database");
    let pid = std::process::id();
    assert!(
        database.starts_with("FAIL") && database.contains(&format!("PID {pid}")),
        "{database}"
    );
    assert!(
        fix.contains(&format!("fix: wait for process {pid}")),
        "{fix}"
    );
    verdict(&locked, "credentials", "ok"); // the API checks still run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_names_the_client_and_the_variable() {
    let sim = sim(10).await;
    let dir = tempfile::tempdir().unwrap();
    let run = doctor(dir.path(), &sim.url(), "not-the-secret", None).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    verdict(&run, "token endpoint", "ok");
    let (check, fix) = line(&run, "credentials");
    assert!(
        check.starts_with("FAIL") && check.contains("the token endpoint rejected client_id `demo`"),
        "{check}"
    );
    assert!(fix.contains("check PLUVO_CLIENT_SECRET"), "{fix}");
    assert!(!run.stdout.contains("not-the-secret") && !run.stderr.contains("not-the-secret"));
    verdict(&run, "scopes", "skip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_url_names_the_token_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let run = doctor(dir.path(), &url, "whatever", None).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let (check, fix) = line(&run, "token endpoint");
    assert!(
        check.starts_with("FAIL") && check.contains(&format!("cannot reach `{url}/oauth/token/`")),
        "{check}"
    );
    assert!(fix.contains("check pluvo.url / PLUVO_URL"), "{fix}");
    verdict(&run, "credentials", "skip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_names_the_scope_and_the_streams() {
    let granted: Vec<String> = ALL_SCOPES
        .iter()
        .filter(|s| **s != "trainings.read")
        .map(|s| s.to_string())
        .collect();
    let sim = sim_with(SimConfig {
        users: 10,
        scopes: granted.clone(),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();

    // Requesting every scope: the token endpoint refuses the request as a whole.
    let all = doctor(dir.path(), &sim.url(), &secret(&sim), None).await;
    assert_eq!(all.code, Some(1), "{all:?}");
    let (check, fix) = line(&all, "credentials");
    assert!(
        check.starts_with("FAIL")
            && check.contains("refused the requested scopes")
            && check.contains("invalid_scope"),
        "{check}"
    );
    assert!(fix.contains("pluvo.scope / PLUVO_SCOPE"), "{fix}");

    // Requesting only the granted scopes: the token is issued, the queries that need
    // `trainings.read` are refused, and each refused stream is named with the scope.
    let requested = granted.join(" ");
    let fewer = doctor(dir.path(), &sim.url(), &secret(&sim), Some(&requested)).await;
    assert_eq!(fewer.code, Some(1), "{fewer:?}");
    verdict(&fewer, "credentials", "ok");
    verdict(&fewer, "scope for users", "ok");
    for stream in ["portfolio", "certificates", "trainings"] {
        let (check, fix) = line(&fewer, &format!("scope for {stream}"));
        assert!(
            check.starts_with("FAIL")
                && check.contains(&format!(
                    "stream `{stream}` was refused: its queries need scope `trainings.read`"
                )),
            "{check}"
        );
        assert!(
            fix.contains("add `trainings.read` to pluvo.scope or PLUVO_SCOPE"),
            "{fix}"
        );
    }
}

/// A configuration of only `[orgs]`: no `[pluvo]` check fails for a URL nobody set; each
/// organisation is checked under its name, a wrong secret names that organisation's client
/// and variable, a missing secret variable is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_organisation_of_orgs_is_checked_under_its_name() {
    let sim = sim(30).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for name in ["acme", "globex", "initech"] {
        text.push_str(&format!(
            "[orgs.{name}]\nurl = \"{}\"\nclient_id = \"{}\"\nsecret_env = \"{}_SECRET\"\n\n",
            sim.url(),
            sim.client_id(),
            name.to_uppercase()
        ));
    }
    std::fs::write(dir.path().join("pluvo-warehouse.toml"), text).unwrap();
    let run = run_bin(
        dir.path(),
        &["doctor"],
        &[
            ("ACME_SECRET", sim.client_secret()),
            ("GLOBEX_SECRET", "wrong"),
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    verdict(&run, "configuration", "ok");
    assert!(!run.stdout.contains("pluvo.url"), "{}", run.stdout);
    verdict(&run, "acme: credentials", "ok");
    verdict(&run, "acme: scope for users", "ok");
    verdict(&run, "acme: database", "ok");
    verdict(&run, "globex: credentials", "FAIL");
    let (_, fix) = line(&run, "globex: credentials");
    assert!(
        fix.contains("orgs.globex.client_id") && fix.contains("GLOBEX_SECRET"),
        "{}",
        run.stdout
    );
    verdict(&run, "initech: configuration", "FAIL");
    let (problem, _) = line(&run, "initech: configuration");
    assert!(problem.contains("INITECH_SECRET"), "{}", run.stdout);
    verdict(&run, "initech: api", "skip");
}
