//! Progress on a terminal and in a pipe: `sync` draws indicatif bars (with their cursor
//! movements) on a pseudo-terminal, and prints plain log lines without a single control
//! character when stderr is a pipe.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pluvo_warehouse::sim::{Faults, Sim};

use crate::support::{config_file, pty, read_terminal, sim};

/// `pluvo-warehouse --config CONFIG --db DB sync` (not quiet), stderr to `stderr`.
fn sync_to(sim: &Sim, config: &Path, db: &Path, stderr: Stdio) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"));
    cmd.arg("--config")
        .arg(config)
        .arg("--db")
        .arg(db)
        .arg("sync")
        .env("PLUVO_CLIENT_SECRET", sim.client_secret())
        .env_remove("NO_COLOR")
        .env_remove("PLUVO_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    for var in pluvo_warehouse::config::ENV_VARS {
        if var.name != "PLUVO_CLIENT_SECRET" {
            cmd.env_remove(var.name);
        }
    }
    cmd.spawn().expect("the binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_draw_on_a_terminal_and_a_pipe_gets_plain_lines() {
    let sim = sim(400).await;
    // Slow enough that the bars redraw while the run pages.
    sim.set_faults(Faults {
        latency: Duration::from_millis(10),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&sim, dir.path());

    let (controller, terminal) = pty();
    let mut child = sync_to(
        &sim,
        &config,
        &dir.path().join("tty.duckdb"),
        terminal.into(),
    );
    let reader = read_terminal(controller);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let screen = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(
        screen.contains('\u{1b}'),
        "cursor control on a terminal: {screen:?}"
    );
    for stream in ["users", "portfolio", "certificates", "groups", "trainings"] {
        assert!(screen.contains(stream), "a bar for {stream}: {screen:?}");
    }
    assert!(
        screen.contains("400/400") || screen.contains("400/800"),
        "users bar counts rows against the API's count: {screen:?}"
    );

    let piped = sync_to(
        &sim,
        &config,
        &dir.path().join("pipe.duckdb"),
        Stdio::piped(),
    )
    .wait_with_output()
    .unwrap();
    assert!(piped.status.success());
    let log = String::from_utf8(piped.stderr).expect("plain UTF-8");
    assert!(log.contains("Scanning."), "plain log lines: {log}");
    let control: Vec<char> = log
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert_eq!(
        control,
        Vec::<char>::new(),
        "no control characters: {log:?}"
    );
}
