//! Test harness: starts the in-process simulator on 127.0.0.1:0, and talks raw HTTP to it
//! (independent of the crate's API client, so simulator tests don't share its bugs).

#![allow(dead_code)]

use pluvo_warehouse::sim::{Sim, SimConfig};
use serde_json::{Value, json};

/// A simulator with `users` users and the default (fault-free) settings.
pub async fn sim(users: usize) -> Sim {
    sim_with(SimConfig {
        users,
        seed: 7,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        ..SimConfig::default()
    })
    .await
}

pub async fn sim_with(config: SimConfig) -> Sim {
    Sim::start(config)
        .await
        .expect("simulator starts on loopback")
}

/// A raw HTTP client with a generous timeout.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Fetch a token with the simulator's own credentials.
pub async fn token(sim: &Sim) -> String {
    let response = http()
        .post(format!("{}/oauth/token/", sim.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// POST a GraphQL document; returns (HTTP status, body text).
pub async fn post_gql(sim: &Sim, token: &str, query: &str, variables: Value) -> (u16, String) {
    let response = http()
        .post(format!("{}/graphql/", sim.url()))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// POST a GraphQL document that must succeed; returns `data`.
pub async fn gql(sim: &Sim, token: &str, query: &str, variables: Value) -> Value {
    let (status, body) = post_gql(sim, token, query, variables).await;
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

/// Page a connection to its end with `first: 50` and `after`; returns every node.
pub async fn page_all(
    sim: &Sim,
    token: &str,
    query: &str,
    field: &str,
    mut variables: Value,
) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        variables["first"] = json!(50);
        variables["after"] = json!(after);
        let data = gql(sim, token, query, variables.clone()).await;
        let conn = &data[field];
        for edge in conn["edges"].as_array().unwrap() {
            nodes.push(edge["node"].clone());
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return nodes;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
}

/// A configuration pointing at `sim`, with the warehouse at `db`.
pub fn config_for(sim: &Sim, db: &std::path::Path) -> pluvo_warehouse::config::Config {
    let url = sim.url();
    let id = sim.client_id().to_string();
    let secret = sim.client_secret().to_string();
    let db = db.display().to_string();
    pluvo_warehouse::config::Config::load_with(
        &pluvo_warehouse::config::Flags {
            config: None,
            ..Default::default()
        },
        move |name| match name {
            "PLUVO_URL" => Some(url.clone()),
            "PLUVO_CLIENT_ID" => Some(id.clone()),
            "PLUVO_CLIENT_SECRET" => Some(secret.clone()),
            "PLUVO_DB" => Some(db.clone()),
            _ => None,
        },
    )
    .expect("test configuration is valid")
}

/// Run `sync` (all streams unless named) against `sim` into `db`.
pub async fn sync(
    sim: &Sim,
    db: &std::path::Path,
    full_refresh: bool,
) -> pluvo_warehouse::streams::Outcome {
    let config = config_for(sim, db);
    let options = pluvo_warehouse::pipeline::SyncOptions {
        full_refresh,
        ..Default::default()
    };
    let silent = std::sync::Arc::new(pluvo_warehouse::streams::Silent);
    pluvo_warehouse::pipeline::sync(&config, &options, silent)
        .await
        .expect("sync runs, every stream succeeds")
}

/// Rows of `sql` against the warehouse file, each row rendered as one string (sorted by the
/// query's own ORDER BY).
pub fn rows(db: &std::path::Path, sql: &str) -> Vec<String> {
    let conn = duckdb::Connection::open_with_flags(
        db,
        pluvo_warehouse::store::duckdb_config(duckdb::AccessMode::ReadOnly).unwrap(),
    )
    .expect("open warehouse read-only");
    let mut stmt = conn.prepare(sql).expect("valid test SQL");
    let mut out = Vec::new();
    let mut result = stmt.query([]).expect("query runs");
    while let Some(row) = result.next().unwrap() {
        let n = row.as_ref().column_count();
        let cells: Vec<String> = (0..n)
            .map(|i| render(row.get_ref(i).unwrap().to_owned()))
            .collect();
        out.push(cells.join(" | "));
    }
    out
}

/// One cell as an analyst would read it: text as is, numbers plain, NULL as `∅`.
fn render(value: duckdb::types::Value) -> String {
    use duckdb::types::Value as V;
    match value {
        V::Null => "∅".into(),
        V::Text(t) => t,
        V::Boolean(b) => b.to_string(),
        V::TinyInt(n) => n.to_string(),
        V::SmallInt(n) => n.to_string(),
        V::Int(n) => n.to_string(),
        V::BigInt(n) => n.to_string(),
        V::HugeInt(n) => n.to_string(),
        V::UBigInt(n) => n.to_string(),
        V::Double(n) => n.to_string(),
        V::Float(n) => n.to_string(),
        V::List(items) => format!(
            "[{}]",
            items.into_iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        other => format!("{other:?}"),
    }
}

/// `pluvo-warehouse --quiet --config CONFIG --db DB` (add the command), with only the secret
/// from the environment (PLUVO_* variables of the caller's environment removed).
pub fn cli(config: &std::path::Path, db: &std::path::Path, secret: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"));
    cmd.args(["--quiet", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db)
        .env("PLUVO_CLIENT_SECRET", secret);
    for var in [
        "PLUVO_URL",
        "PLUVO_CLIENT_ID",
        "PLUVO_SCOPE",
        "PLUVO_DB",
        "PLUVO_CONFIG",
        "PLUVO_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// [`cli`] with the command and its arguments.
pub fn command(
    config: &std::path::Path,
    db: &std::path::Path,
    secret: &str,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = cli(config, db, secret);
    cmd.args(args);
    cmd
}

/// A `pluvo-warehouse.toml` in `dir` pointing at `sim` (the secret comes from the environment).
pub fn config_file(sim: &Sim, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("pluvo-warehouse.toml");
    std::fs::write(
        &path,
        format!(
            "[pluvo]\nurl = \"{}\"\nclient_id = \"{}\"\n",
            sim.url(),
            sim.client_id()
        ),
    )
    .unwrap();
    path
}

/// What a run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `pluvo-warehouse ARGS` in `dir` with only the `env` given of the PLUVO_* variables
/// (the caller's are removed), `NO_COLOR` set, and wait for it without blocking the runtime.
pub async fn run_bin(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"));
    cmd.current_dir(dir).args(args).env("NO_COLOR", "1");
    for var in pluvo_warehouse::config::ENV_VARS {
        cmd.env_remove(var.name);
    }
    cmd.env_remove("PLUVO_LOG");
    cmd.env_remove("PLUVO_LOG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("the binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A pseudo-terminal of 40 rows × 120 columns: (controller, terminal side).
pub fn pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut controller, mut terminal) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors we then own; the other pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are open and owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(controller),
            std::os::fd::OwnedFd::from_raw_fd(terminal),
        )
    }
}

/// Everything written to the terminal of `controller`, read on a thread until the last
/// holder of the terminal side closes it (reading then fails with EIO).
pub fn read_terminal(controller: std::os::fd::OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::Read;
    std::thread::spawn(move || {
        let mut screen = Vec::new();
        let mut file = std::fs::File::from(controller);
        let mut buf = [0u8; 8192];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            screen.extend_from_slice(&buf[..n]);
        }
        screen
    })
}

/// `python3` with the pinned PyPI packages `pins` importable, installed on first use into a
/// folder under the target dir (kept between runs), so that a test needs nothing installed by
/// hand. Used to read the warehouse with other clients (stock DuckDB with ICU, …).
pub fn python_with(pins: &[&str]) -> std::process::Command {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("python")
        .join(pins.join("+").replace(['=', '<', '>'], "_"));
    let done = dir.join(".installed");
    if !done.exists() {
        let out = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .args(pins)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "pip install {pins:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&done, "").unwrap();
    }
    let mut cmd = std::process::Command::new("python3");
    cmd.env("PYTHONPATH", &dir);
    cmd
}

/// Samples the size of DuckDB's spill files (`*.tmp`, `*.block`) in its temp folder every
/// millisecond, from another thread; [`SpillWatch::stop`] gives the largest total seen.
/// DuckDB removes the files (and the folder) when they are freed, so only a watch sees them.
pub struct SpillWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl SpillWatch {
    pub fn start(folder: std::path::PathBuf) -> SpillWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut most = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let bytes: u64 = std::fs::read_dir(&folder)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.ends_with(".tmp") || name.ends_with(".block")
                    })
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                most = most.max(bytes);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            most
        });
        SpillWatch { stop, thread }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
