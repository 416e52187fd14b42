//! Issue 17: each opening a close reading found, tried against the real binary or the real
//! receiver, and shown closed: `query` and push selections run one read-only statement; files
//! are private and no answer goes through a predictable temp name; the receiver sheds slow
//! and idle clients and stops on time; API answers are capped after decoding; `127.evil.example`
//! is not loopback; reading commands request read scopes only; a forged snapshot manifest is
//! refused; an old `sentDate` is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pluvo_warehouse::config::Secret;
use pluvo_warehouse::sim::webhooks::sign;
use pluvo_warehouse::sim::{Sim, SimConfig};
use pluvo_warehouse::store::Warehouse;
use pluvo_warehouse::webhook::{Limits, Options, Receiver};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::support::{self, Run};

const KEY: &str = "security-webhook-key";

/// A synced warehouse (and its published snapshot) in a fresh folder, with a config file.
struct Synced {
    dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
    secret: String,
}

async fn synced(sim: &Sim) -> Synced {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pluvo.duckdb");
    support::sync(sim, &db, false).await;
    let config = support::config_file(sim, dir.path());
    Synced {
        db,
        config,
        secret: sim.client_secret().to_string(),
        dir,
    }
}

impl Synced {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--db",
            self.db.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        support::run_bin(self.path(), &all, &[("PLUVO_CLIENT_SECRET", &self.secret)]).await
    }

    fn forged_runs(&self) -> String {
        support::rows(
            &self.db,
            "SELECT count(*) FROM _runs WHERE status = 'forged'",
        )[0]
        .clone()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

// ------------------------------------------------------------------ 1. one read-only statement

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_query_and_push_selections_run_one_read_only_statement() {
    let sim = support::sim(20).await;
    let w = synced(&sim).await;
    let leak = w.path().join("leak.csv");
    let leak_sql = format!("SELECT 1; COPY users TO '{}'; SELECT 1", leak.display());
    let db = w.db.display().to_string();
    let attach = format!("ATTACH '{db}' AS w; UPDATE w._runs SET status = 'forged'; SELECT 1");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["query", &leak_sql], "a `COPY` statement is not run"),
        (
            vec!["query", "--snapshot", &attach],
            "a `ATTACH` statement is not run",
        ),
        (
            vec!["query", "SELECT 1; SELECT 2"],
            "the SQL has 2 statements",
        ),
        (
            vec![
                "query",
                "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
            ],
            "a `DELETE` inside a WITH",
        ),
        (vec!["query", "INSTALL httpfs"], "a `INSTALL` statement"),
        (vec!["query", "SET threads = 1"], "a `SET` statement"),
        (
            vec![
                "push",
                "archive-users",
                "--query",
                "SELECT ref FROM users LIMIT 1) q; UPDATE _runs SET status = 'forged'; \
                 SELECT * FROM (SELECT ref FROM users LIMIT 1",
            ],
            "syntax error",
        ),
        (
            vec![
                "push",
                "archive-users",
                "--query",
                "WITH d AS (UPDATE _runs SET status = 'forged' RETURNING 'EMP1' AS ref) \
                 SELECT ref FROM d",
            ],
            "a `UPDATE` inside a WITH",
        ),
    ];
    for (args, says) in cases {
        let run = w.run(&args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("nothing was run") || says == "syntax error",
            "{}",
            run.stderr
        );
        assert!(!leak.exists(), "{args:?} wrote {}", leak.display());
        assert_eq!(w.forged_runs(), "0", "{args:?} changed `_runs`");
    }
    // Reading a local file is still a documented feature...
    let people = w.path().join("people.csv");
    std::fs::write(&people, "ref\nEMP1\n").unwrap();
    let read = format!("SELECT ref FROM '{}'", people.display());
    let run = w.run(&["query", &read]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "ref\nEMP1\n"),
        "{run:?}"
    );
    // ...that a shared deployment turns off.
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        format!("{text}[warehouse]\nexternal_access = false\n"),
    )
    .unwrap();
    let run = w.run(&["query", &read]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("disabled by configuration"),
        "{}",
        run.stderr
    );
    let run = w
        .run(&["query", "--snapshot", "SELECT count(*) AS n FROM users"])
        .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "n\n20\n"),
        "{run:?}"
    );
}

// ------------------------------------------------------------------ 2. private files

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_files_are_private_and_answers_use_no_predictable_temp_name() {
    let sim = support::sim(20).await;
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_file(&sim, dir.path());
    let secret = sim.client_secret().to_string();
    let run = |args: Vec<String>, tmp: Option<PathBuf>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"));
        cmd.current_dir(dir.path())
            .arg("--config")
            .arg(&config)
            .args(&args)
            .env("PLUVO_CLIENT_SECRET", &secret)
            .env("NO_COLOR", "1");
        for var in pluvo_warehouse::config::ENV_VARS {
            if var.name != "PLUVO_CLIENT_SECRET" {
                cmd.env_remove(var.name);
            }
        }
        if let Some(tmp) = &tmp {
            cmd.env("TMPDIR", tmp);
        }
        cmd
    };
    let out = tokio::task::spawn_blocking({
        let mut cmd = run(vec!["sync".into()], None);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.path().join("pluvo.duckdb");
    let export = dir.path().join("pluvo-export");
    assert_eq!(mode(&db), 0o600, "the warehouse file");
    assert_eq!(mode(&export), 0o700, "the export folder");
    let current = pluvo_warehouse::export::current_snapshot(&export).unwrap();
    assert_eq!(mode(&current), 0o700);
    assert_eq!(mode(&current.join("manifest.json")), 0o600);
    assert_eq!(mode(&current.join("users/data_0.parquet")), 0o600);

    // `query` to a pipe: the old fixed `$TMPDIR/pluvo-query-<pid>.out` could be planted as a
    // symlink by another user; the child plants one at its own PID before it runs.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me\n").unwrap();
    let mut cmd = run(
        vec!["query".into(), "SELECT count(*) AS n FROM users".into()],
        Some(tmp.clone()),
    );
    plant_symlink_at_own_pid(&mut cmd, &tmp, &victim);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "n\n20\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "keep me\n",
        "written through the symlink"
    );

    // --out: private, and nothing left beside it.
    let answer = dir.path().join("answer.csv");
    let out = run(
        vec![
            "query".into(),
            "SELECT ref FROM users".into(),
            "--out".into(),
            answer.display().to_string(),
        ],
        None,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&answer), 0o600);
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".pluvo-query-") || n.contains(".tmp-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // A group-readable export folder on request (a BI service account in the group).
    let shared = dir.path().join("shared-export");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}[warehouse]\nexport_dir = \"{}\"\nexport_group_readable = true\n",
            shared.display()
        ),
    )
    .unwrap();
    let out = run(vec!["export".into()], None).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let current = pluvo_warehouse::export::current_snapshot(&shared).unwrap();
    assert_eq!(mode(&shared), 0o750);
    assert_eq!(mode(&current), 0o750);
    assert_eq!(mode(&current.join("users")), 0o750);
    assert_eq!(mode(&current.join("users/data_0.parquet")), 0o640);
}

/// Make the child, between fork and exec, create `<tmp>/pluvo-query-<its pid>.out` as a
/// symlink to `victim`. Only async-signal-safe calls (getpid, symlink) on memory allocated
/// before the fork.
fn plant_symlink_at_own_pid(cmd: &mut std::process::Command, tmp: &Path, victim: &Path) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let prefix = [tmp.as_os_str().as_bytes(), b"/pluvo-query-"].concat();
    let target = std::ffi::CString::new(victim.as_os_str().as_bytes()).unwrap();
    // SAFETY: the closure uses only getpid(2) and symlink(2) on buffers owned by it.
    unsafe {
        cmd.pre_exec(move || {
            let mut path = [0u8; 4096];
            let mut n = prefix.len();
            path[..n].copy_from_slice(&prefix);
            let mut pid = libc::getpid() as u32;
            let mut digits = [0u8; 10];
            let mut d = 0;
            loop {
                digits[d] = b'0' + (pid % 10) as u8;
                d += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for i in (0..d).rev() {
                path[n] = digits[i];
                n += 1;
            }
            for &b in b".out" {
                path[n] = b;
                n += 1;
            }
            path[n] = 0;
            libc::symlink(target.as_ptr(), path.as_ptr() as *const libc::c_char);
            Ok(())
        });
    }
}

// ------------------------------------------------------------------ 3. slow clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_slow_loris_does_not_block_a_signed_delivery_and_idle_ones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"))
        .current_dir(dir.path())
        .args([
            "--db",
            "pluvo.duckdb",
            "webhook",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--header-timeout-secs",
            "3",
            "--body-timeout-secs",
            "3",
            "--shutdown-timeout-secs",
            "2",
        ])
        .env("PLUVO_WEBHOOK_KEY", KEY)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the receiver prints its URL")
        .unwrap()
        .unwrap();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();

    // 600 connections that send half a request line and stop, one idle connection that
    // sends nothing, one that sends its headers and then a body byte by byte.
    let mut slow = Vec::new();
    for _ in 0..600 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /pluvo/webhook HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut dribble = tokio::net::TcpStream::connect(&addr).await.unwrap();
    dribble
        .write_all(b"POST /pluvo/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();

    // A signed delivery is answered at once all the same.
    let body = format!(
        r#"{{"event":"USER_UPDATED","id":"u1","ref":"EMP1","sentDate":"{}"}}"#,
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
    let started = Instant::now();
    let answer = support::http()
        .post(&url)
        .header("X-Signature-Salt", "s1")
        .header("X-Signature", sign(KEY, "s1", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // After the header timeout, every slow and idle connection has been closed by the
    // receiver (a read sees end of file or a reset), and the dribbled body got 408.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let closed = |mut s: tokio::net::TcpStream| async move {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
            .await
            .is_ok()
    };
    // All at once (2 s at most each), so a failing run stays short.
    let open = futures_util::future::join_all(slow.into_iter().map(closed))
        .await
        .into_iter()
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open, 0,
        "slow connections still open after the header timeout"
    );
    assert!(closed(idle).await, "an idle connection is dropped");
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), dribble.read_to_string(&mut text)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // A connection left half-way does not hold the shutdown past its deadline.
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stuck
        .write_all(b"POST /pluvo/webhook HTTP/1.1\r\n")
        .await
        .unwrap();
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child's PID; it has not been waited for.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the receiver stops within its shutdown deadline")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopping.elapsed()
    );
    drop(stuck);
    let stored = support::rows(
        &dir.path().join("pluvo.duckdb"),
        "SELECT count(*) FROM webhook_events",
    );
    assert_eq!(stored, ["1"]);
}

// ------------------------------------------------------------------ 4. reply size

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_a_gzip_bomb_is_refused_with_bounded_memory() {
    use axum::routing::post;
    use std::io::Write;
    // 1 GiB of JSON whitespace after `{"data":`, gzipped to about 1 MB.
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"data\":").unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..1024 {
            gz.write_all(&spaces).unwrap();
        }
        gz.finish().unwrap()
    };
    let bomb = bytes::Bytes::from(bomb);
    let app = axum::Router::new()
        .route(
            "/oauth/token/",
            post(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "t", "token_type": "Bearer", "expires_in": 86400
                }))
            }),
        )
        .route(
            "/graphql/",
            post(move || {
                let bomb = bomb.clone();
                async move {
                    (
                        [
                            ("content-type", "application/json"),
                            ("content-encoding", "gzip"),
                        ],
                        bomb,
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pluvo-warehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[pluvo]\nurl = \"http://{addr}\"\nclient_id = \"c\"\n[http]\nmax_attempts = 1\nmax_reply_mb = 8\n"
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        // Reaped below by wait4(2), which clippy does not see.
        #[allow(clippy::zombie_processes)]
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"))
            .current_dir(dir.path())
            .args([
                "--config",
                config.to_str().unwrap(),
                "sync",
                "--streams",
                "users",
            ])
            .env("PLUVO_CLIENT_SECRET", "s")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        // wait4(2) for this child's own peak RSS (RUSAGE_CHILDREN would mix in other tests').
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: our own child, not yet waited for; out-pointers to locals.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        assert_eq!(pid, child.id() as i32);
        (
            libc::WEXITSTATUS(status),
            stderr,
            usage.ru_maxrss as u64 / 1024,
        )
    })
    .await
    .unwrap();
    let (code, stderr, peak_mb) = out;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is larger than 8 MB after decompression")
            && stderr.contains("http.max_reply_mb"),
        "{stderr}"
    );
    assert!(
        peak_mb < 400,
        "peak RSS {peak_mb} MB while refusing a 1 GiB answer"
    );
}

// ------------------------------------------------------------------ 6. scopes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_sync_requests_read_scopes_only() {
    // A client that was granted only the read scopes: requesting any write scope is
    // `invalid_scope`, as on Pluvo.
    let sim = support::sim_with(SimConfig {
        users: 20,
        seed: 7,
        anchor: Some("2026-06-01T12:00:00Z".parse().unwrap()),
        scopes: ["users.read", "trainings.read", "groups.read"]
            .map(String::from)
            .to_vec(),
        ..SimConfig::default()
    })
    .await;
    let w = synced(&sim).await; // panics unless every stream succeeded
    assert_eq!(support::rows(&w.db, "SELECT count(*) FROM users"), ["20"]);
    // push asks for the write scopes, which this client does not have: refused up front.
    let run = w
        .run(&[
            "push",
            "archive-users",
            "--query",
            "SELECT ref FROM users LIMIT 1",
            "--apply",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("invalid_scope"), "{}", run.stderr);
    // doctor says which command requests what.
    let run = w.run(&["doctor"]).await;
    assert!(
        run.stdout.lines().any(|l| {
            l.trim()
                .strip_prefix("sync, doctor, webhook serve --refresh ")
                .is_some_and(|scopes| scopes.trim() == "users.read trainings.read groups.read")
        }),
        "{}",
        run.stdout
    );
}

// ------------------------------------------------------------------ 7. forged manifest

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_a_forged_manifest_table_name_is_refused() {
    let sim = support::sim(20).await;
    let w = synced(&sim).await;
    let export = w.path().join("pluvo-export");
    let current = pluvo_warehouse::export::current_snapshot(&export).unwrap();
    let manifest = current.join("manifest.json");
    let pwned = w.path().join("pwned.csv");
    let forged_name = format!(
        "users\" AS SELECT 1; COPY (SELECT 42 AS x) TO '{}'; CREATE VIEW \"x",
        pwned.display()
    );
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for table in json["tables"].as_array_mut().unwrap() {
        if table["name"] == "users" {
            table["name"] = forged_name.clone().into();
        }
    }
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&manifest, json.to_string()).unwrap();
    let run = w.run(&["query", "--snapshot", "SELECT 1 AS one"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("names a table") && run.stderr.contains("refusing to read it"),
        "{}",
        run.stderr
    );
    assert!(!pwned.exists(), "the manifest's SQL ran");
}

// ------------------------------------------------------------------ 8. replays

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_a_delivery_with_an_old_sent_date_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pluvo.duckdb");
    let receiver = Receiver::start(
        Warehouse::open(&db).unwrap(),
        Options {
            bind: "127.0.0.1:0".parse().unwrap(),
            path: "/pluvo/webhook".into(),
            key: Secret::new(KEY),
            max_body: 1 << 20,
            refresh: None,
            limits: Limits {
                max_age: Some(Duration::from_secs(3600)),
                ..Limits::default()
            },
        },
    )
    .await
    .unwrap();
    let post = |sent: String| {
        let url = receiver.url();
        async move {
            let body =
                format!(r#"{{"event":"USER_UPDATED","id":"u1","ref":"EMP1","sentDate":"{sent}"}}"#);
            let answer = support::http()
                .post(url)
                .header("X-Signature-Salt", "s1")
                .header("X-Signature", sign(KEY, "s1", body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let old = (chrono::Utc::now() - chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let (status, text) = post(old.to_string()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("older than 1 hours"), "{text}");
    let fresh = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    assert_eq!(post(fresh.to_string()).await.0, 200);
    let stats = receiver.stop().await.unwrap();
    assert_eq!((stats.stored, stats.stale), (1, 1));
    assert_eq!(
        support::rows(&db, "SELECT count(*) FROM webhook_events"),
        ["1"]
    );
}
