//! The documentation is tested (issue 22): every `pluvo-warehouse …` command shown in
//! `README.md`, `examples/README.md` and `docs/*.md` parses against the real command
//! definitions, and is either run here against a simulator (ending with its expected exit code)
//! or named below with the test that runs it elsewhere. Links between the pages resolve, the
//! settings file shown loads, the environment table lists exactly the variables the tool reads,
//! the folder map names folders that exist, and `docs/tables.md` is generated from the DDL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use pluvo_warehouse::cli::Cli;

use crate::support::sim;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pages whose commands are checked: the README, the examples' README and every page of
/// `docs/` (a new page is checked without being listed anywhere).
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![
        Path::new(ROOT).join("README.md"),
        Path::new(ROOT).join("examples/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT).unwrap().display().to_string()
}

/// One command as a page shows it.
#[derive(Debug, Clone)]
struct Shown {
    /// `docs/push.md:12`
    place: String,
    /// The command line, continuation lines joined, `$ ` and `cargo run --release -- `
    /// turned into `pluvo-warehouse `, a trailing `# comment` kept (the shell ignores it).
    line: String,
}

/// Every `pluvo-warehouse` command in a ```sh or ```text block of the pages.
fn shown_commands() -> Vec<Shown> {
    let mut shown = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        // Inside a fence, and whether it is a shell or output block (not sql, toml, python).
        let mut fenced = false;
        let mut in_block = false;
        let mut pending: Option<(usize, String)> = None;
        for (n, raw) in text.lines().enumerate() {
            let trimmed = raw.trim_start();
            if let Some(lang) = trimmed.strip_prefix("```") {
                fenced = !fenced;
                in_block = fenced && matches!(lang.trim(), "sh" | "text" | "console" | "");
                continue;
            }
            if !in_block {
                continue;
            }
            let (start, mut line) = match pending.take() {
                Some((start, mut acc)) => {
                    acc.push(' ');
                    acc.push_str(trimmed);
                    (start, acc)
                }
                None => {
                    let line = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
                    let line = match line.strip_prefix("cargo run --release -- ") {
                        Some(rest) => format!("pluvo-warehouse {rest}"),
                        None => line.to_string(),
                    };
                    if !is_command(&line) {
                        continue;
                    }
                    (n + 1, line)
                }
            };
            if line.ends_with('\\') {
                line.pop();
                pending = Some((start, line.trim_end().to_string()));
                continue;
            }
            shown.push(Shown {
                place: format!("{}:{start}", relative(&page)),
                line,
            });
        }
    }
    shown
}

/// `pluvo-warehouse …`, possibly after `NAME=value` assignments.
fn is_command(line: &str) -> bool {
    let words = line.split_whitespace();
    for word in words {
        if word == "pluvo-warehouse" {
            return true;
        }
        if !(word.contains('=') && word.chars().next().is_some_and(|c| c.is_ascii_uppercase())) {
            return false;
        }
    }
    false
}

/// The arguments after `pluvo-warehouse`, up to the first shell operator (pipe, redirect,
/// background, comment).
fn arguments(line: &str) -> Vec<String> {
    let words = shlex::split(line).unwrap_or_else(|| panic!("not shell words: {line}"));
    words
        .into_iter()
        .skip_while(|w| w != "pluvo-warehouse")
        .take_while(|w| !matches!(w.as_str(), "|" | ">" | ">>" | "&" | "&&" | ";" | "2>&1"))
        .take_while(|w| !w.starts_with('#'))
        .collect()
}

/// What this test does with a shown command.
#[derive(Debug, Clone, Copy)]
enum How {
    /// Run in the synced folder; it must exit with one of these codes.
    Run(&'static [i32]),
    /// Run in a new empty folder (`init` writes `pluvo-warehouse.toml` there).
    Fresh,
    /// A server: start it with its port replaced by a free one (`--port 0`), the webhook key
    /// its page exports set, wait for its URL, stop it.
    Serve,
    /// Run by another test of the suite (this test checks that the function exists).
    Elsewhere(&'static str),
    /// Not run by any test, for the reason given (parsed only).
    NotRun(&'static str),
}

/// How commands are treated, by the start of the shown line; the first match wins and
/// anything else is `Run(&[0])`.
const RULES: &[(&str, How)] = &[
    (
        "pluvo-warehouse demo",
        How::Elsewhere("demo_runs_to_the_end_and_its_answers_match_the_simulator"),
    ),
    (
        "pluvo-warehouse webhook serve",
        How::Elsewhere("simulator_events_are_stored_once_each_even_when_redelivered"),
    ),
    ("pluvo-warehouse sim serve", How::Serve),
    // Object storage: s3:// against a moto server the test starts; the other clouds need real
    // buckets and credentials.
    (
        "pluvo-warehouse export --to s3://",
        How::Elsewhere(
            "issue_21_export_to_s3_reads_back_every_table_and_a_killed_upload_changes_nothing",
        ),
    ),
    (
        "pluvo-warehouse query --from s3://",
        How::Elsewhere(
            "issue_21_export_to_s3_reads_back_every_table_and_a_killed_upload_changes_nothing",
        ),
    ),
    // Several organisations: two simulators, their secrets and a moto server, started by
    // the test that runs them.
    (
        "pluvo-warehouse sync --all-orgs",
        How::Elsewhere(
            "issue_21_two_organisations_sync_side_by_side_and_one_failing_does_not_stop_the_other",
        ),
    ),
    (
        "pluvo-warehouse sync --org",
        How::Elsewhere(
            "issue_21_two_organisations_sync_side_by_side_and_one_failing_does_not_stop_the_other",
        ),
    ),
    (
        "pluvo-warehouse status --org",
        How::Elsewhere("status_shows_each_organisation_of_orgs"),
    ),
    (
        "pluvo-warehouse export --to gs://",
        How::NotRun(
            "needs a Google Cloud Storage bucket and credentials; the s3:// path is tested",
        ),
    ),
    (
        "pluvo-warehouse export --to az://",
        How::NotRun("needs an Azure container and credentials; the s3:// path is tested"),
    ),
    (
        "pluvo-warehouse export --to file://",
        How::NotRun(
            "writes to the folder shown; the file:// target is tested by the unit test \
             a_file_target_publishes_reads_back_and_prunes_after_the_grace_period",
        ),
    ),
    (
        "pluvo-warehouse bench",
        How::NotRun(
            "benchmarks print figures and take minutes at the sizes shown; run by hand, never \
             as a pass/fail test",
        ),
    ),
    (
        "pluvo-warehouse --url https://acme.pluvo.com init",
        How::Fresh,
    ),
    ("pluvo-warehouse init", How::Fresh),
    // A wrong secret: doctor names the failed check and exits 1.
    (
        "PLUVO_CLIENT_SECRET=wrong pluvo-warehouse doctor",
        How::Run(&[1]),
    ),
    // The page shows this refused over --max-rows; a small organisation is under it.
    ("pluvo-warehouse push apply 1", How::Run(&[0, 2])),
    // One ref of the selection is unknown to Pluvo: exit 3, as the page shows.
    (
        "pluvo-warehouse push add-to-group --group G0001 --apply",
        How::Run(&[3]),
    ),
];

fn how(line: &str) -> How {
    RULES
        .iter()
        .find(|(start, _)| line.starts_with(start))
        .map(|(_, how)| *how)
        .unwrap_or(How::Run(&[0]))
}

#[test]
fn every_command_shown_in_the_docs_parses() {
    let shown = shown_commands();
    assert!(shown.len() > 40, "too few commands found: {shown:#?}");
    let mut failures = Vec::new();
    for s in &shown {
        if let Err(e) = Cli::try_parse_from(arguments(&s.line)) {
            failures.push(format!("{}: `{}`\n{e}", s.place, s.line));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Files the shown commands read, as a user would have them beside the warehouse.
const FIXTURES: &[(&str, &str)] = &[(
    "my.sql",
    "SELECT ref, last_login FROM inactive_users ORDER BY ref",
)];

#[tokio::test(flavor = "multi_thread")]
async fn every_command_shown_in_the_docs_runs_or_is_run_elsewhere() {
    let sim = sim(300).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let home = dir.path().join("home");
    let bin = dir.path().join("bin");
    for d in [
        &work,
        &bin,
        &home.join(".local/share/bash-completion/completions"),
        &home.join(".zfunc"),
        &home.join(".config/fish/completions"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_pluvo-warehouse"),
        bin.join("pluvo-warehouse"),
    )
    .unwrap();
    std::os::unix::fs::symlink(Path::new(ROOT).join("sql"), work.join("sql")).unwrap();
    for (name, text) in FIXTURES {
        std::fs::write(work.join(name), text).unwrap();
    }
    std::fs::write(
        work.join("pluvo-warehouse.toml"),
        format!(
            "[pluvo]\nurl = \"{}\"\nclient_id = \"{}\"\n",
            sim.url(),
            sim.client_id()
        ),
    )
    .unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let shell = |cwd: &Path, line: &str| {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.args(["-c", line])
            .current_dir(cwd)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("NO_COLOR", "1")
            .env("PLUVO_CLIENT_SECRET", sim.client_secret())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    // The warehouse the commands read: one sync, as the README's path does.
    let first = shell(&work, "pluvo-warehouse --quiet sync")
        .output()
        .await
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let tests_source: String = std::fs::read_dir(Path::new(ROOT).join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut not_run = Vec::new();
    for s in shown_commands() {
        let treatment = how(&s.line);
        match treatment {
            How::Run(_) | How::Fresh => {
                let (cwd, codes): (PathBuf, &[i32]) = match treatment {
                    How::Run(codes) => (work.clone(), codes),
                    _ => {
                        let fresh = dir.path().join(format!("fresh-{ran}"));
                        std::fs::create_dir(&fresh).unwrap();
                        (fresh, &[0])
                    }
                };
                let out = shell(&cwd, &s.line).output().await.unwrap();
                ran += 1;
                let code = out.status.code().unwrap_or(-1);
                if !codes.contains(&code) {
                    failures.push(format!(
                        "{}: `{}` exited {code}, expected {codes:?}\nstdout: {}\nstderr: {}",
                        s.place,
                        s.line,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            How::Serve => {
                let line = s
                    .line
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("--port 8700", "--port 0");
                let line = if line.contains("--port") {
                    line
                } else {
                    format!("{line} --port 0")
                };
                let mut child = shell(&work, &format!("exec {line}"))
                    .env("PLUVO_WEBHOOK_KEY", "local-test-key")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let stdout = child.stdout.take().unwrap();
                let mut lines =
                    tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
                let mut seen = Vec::new();
                let started = tokio::time::timeout(std::time::Duration::from_secs(60), async {
                    while let Ok(Some(l)) = lines.next_line().await {
                        let done = l.starts_with("export PLUVO_CLIENT_SECRET=");
                        seen.push(l);
                        if done {
                            return true;
                        }
                    }
                    false
                })
                .await
                .unwrap_or(false);
                // It prints where it serves (`export PLUVO_URL=…`), and serves tokens there.
                let url = seen
                    .iter()
                    .find_map(|l| l.strip_prefix("export PLUVO_URL="))
                    .map(str::to_string);
                let token = match (&url, started) {
                    (Some(url), true) => crate::support::http()
                        .post(format!("{url}/oauth/token/"))
                        .form(&[
                            ("grant_type", "client_credentials"),
                            ("client_id", "demo"),
                            ("client_secret", "demo-secret"),
                        ])
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .ok(),
                    _ => None,
                };
                let _ = child.kill().await;
                ran += 1;
                if token != Some(200) {
                    failures.push(format!(
                        "{}: `{line}` printed {seen:?}; its token endpoint answered {token:?}",
                        s.place
                    ));
                }
            }
            How::Elsewhere(test) => {
                if !tests_source.contains(&format!("fn {test}(")) {
                    failures.push(format!(
                        "{}: `{}` is said to be run by `{test}`, which does not exist",
                        s.place, s.line
                    ));
                }
            }
            How::NotRun(reason) => not_run.push(format!("  {}: `{}`: {reason}", s.place, s.line)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 35, "only {ran} commands ran");
    // The flat file docs/export-and-readers.md writes for Power BI and Tableau keeps the
    // partition columns that the snapshot holds only in folder names.
    let flat = work.join("portfolio_items.parquet");
    assert!(
        flat.exists(),
        "{} not written; the folder has {:?}",
        flat.display(),
        std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    let columns: Vec<String> = duckdb::Connection::open_in_memory()
        .unwrap()
        .prepare(&format!(
            "SELECT column_name FROM (DESCRIBE SELECT * FROM '{}')",
            flat.display()
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        columns.iter().any(|c| c == "related_object_type")
            && columns.iter().any(|c| c == "completion_year"),
        "{columns:?}"
    );
    eprintln!("{ran} commands ran; not run:\n{}", not_run.join("\n"));
}

/// Relative links between the pages point at files that exist, and `#anchors` at headings.
#[test]
fn links_between_the_pages_resolve() {
    let mut failures = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("](") {
                rest = &rest[i + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = &rest[..end];
                rest = &rest[end..];
                if target.starts_with("http") || target.contains(' ') {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(file)
                };
                let place = format!("{}:{}", relative(&page), n + 1);
                if !file.exists() {
                    failures.push(format!("{place}: `{target}`: no such file"));
                } else if !anchor.is_empty() {
                    let anchors = anchors(&std::fs::read_to_string(&file).unwrap_or_default());
                    if !anchors.contains(anchor) {
                        failures.push(format!("{place}: `{target}`: no heading `#{anchor}`"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The anchors GitHub gives a page's headings: lower case, spaces to `-`, punctuation dropped.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_block = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                in_block = !in_block;
            }
            !in_block && l.starts_with('#')
        })
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The settings file shown in docs/configuration.md loads, and its environment table lists
/// exactly the variables the tool reads.
#[test]
fn the_configuration_page_shows_a_loadable_file_and_every_variable() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md")).unwrap();
    let toml = page
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("docs/configuration.md shows a ```toml block");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pluvo-warehouse.toml");
    std::fs::write(&file, toml).unwrap();
    let flags = pluvo_warehouse::config::Flags {
        config: Some(file),
        ..Default::default()
    };
    let config = pluvo_warehouse::config::Config::load_with(&flags, |name| {
        (name == "PLUVO_CLIENT_SECRET").then(|| "x".to_string())
    })
    .unwrap_or_else(|e| panic!("the settings file in docs/configuration.md: {e}"));
    assert_eq!(config.db, dir.path().join("pluvo.duckdb"), "{config:?}");
    // The other files shown (several organisations) load too.
    for block in page.split("```toml\n").skip(2) {
        let toml = block.split("```").next().unwrap();
        std::fs::write(dir.path().join("pluvo-warehouse.toml"), toml).unwrap();
        let config = pluvo_warehouse::config::Config::load_with(&flags, |_| None)
            .unwrap_or_else(|e| panic!("a settings file in docs/configuration.md: {e}\n{toml}"));
        for org in config.org_names() {
            assert!(
                config.org(&org).is_err(),
                "secrets come from the environment"
            );
        }
    }

    let listed: BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `PLUVO_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let known: BTreeSet<String> = pluvo_warehouse::config::ENV_VARS
        .iter()
        .map(|v| v.name.trim_start_matches("PLUVO_").to_string())
        .collect();
    assert_eq!(
        listed,
        known.iter().map(String::as_str).collect(),
        "the environment table of docs/configuration.md must list exactly config::ENV_VARS"
    );
}

/// Every path of the folder map in docs/contributing.md exists.
#[test]
fn the_folder_map_names_what_exists() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/contributing.md")).unwrap();
    let map = page
        .split("## Where things live")
        .nth(1)
        .and_then(|s| s.split("```text\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("docs/contributing.md has the folder map");
    let mut missing = Vec::new();
    for line in map.lines() {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        if line.starts_with(' ') || !(first.contains('/') || first.contains('.')) {
            continue;
        }
        let path = first.trim_end_matches(',');
        if !Path::new(ROOT).join(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/contributing.md's folder map names paths that do not exist: {missing:?}"
    );
}

/// `docs/tables.md` is generated: the tables and columns of a new warehouse (every migration
/// applied, every view installed), with the comments of their DDL in `sql/schema/` and
/// `sql/views/`. A migration or view that changes without regenerating it fails here.
#[test]
fn tables() {
    let generated = tables_page();
    let path = Path::new(ROOT).join("docs/tables.md");
    if std::env::var_os("PLUVO_BLESS_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/tables.md differs from the DDL (first at line {}: committed `{}`, generated \
             `{}`). Regenerate it with\n  PLUVO_BLESS_DOCS=1 cargo test --release --test main \
             -- docs::tables\nand commit it.",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end>"),
            generated.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

const TABLES_INTRO: &str = "\
<!-- Generated by tests/docs.rs (docs::tables) from sql/schema/, sql/views/ and a new
     warehouse; do not edit. Regenerate: PLUVO_BLESS_DOCS=1 cargo test --release --test main -- docs::tables -->
# Tables and views

Every table and view of a warehouse made by this version (schema version {version}), with the
comment of each in its DDL: the migrations in [`sql/schema/`](../sql/schema/) and the views in
[`sql/views/`](../sql/views/). Types are DuckDB's; `NOT NULL` is marked.

- Times are `TIMESTAMP` holding **UTC** wall-clock time (see
  [times and time zones](query.md#times-and-time-zones)); calendar days are `DATE`; ids are
  Pluvo UUIDs as text.
- Every data table ends with the bookkeeping columns `_hash` (content hash), `_first_seen_at`,
  `_updated_at`, `_deleted_at` (NULL = present; set after two complete scans missed the row)
  and `_run_id`. Rows are never removed: filter `_deleted_at IS NULL` for what Pluvo lists today.
- The tables `sync` fills have no index and no key constraint (an index would grow in memory
  with the organisation): their keys, named in each description, are kept by the merge (see
  [sync](sync.md)). A primary key is listed where a table has one.
- **Exported** tables are also in the Parquet snapshot ([export](export-and-readers.md));
  the others stay in the DuckDB file.
";

/// A table's or view's description and its columns' comments, read from DDL text.
#[derive(Default)]
struct Described {
    about: String,
    columns: std::collections::HashMap<String, String>,
}

/// `CREATE TABLE name (` statements of `sql` with the `--` comment block above them (which
/// also describes the statements right below the first, up to a blank line) and the
/// `-- comment` at the end of each column line.
fn described_tables(sql: &str, into: &mut Vec<(String, Described)>) {
    let mut block: Vec<String> = Vec::new();
    let mut group_about = String::new();
    let mut lines = sql.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            block.clear();
            group_about.clear();
            continue;
        }
        if let Some(comment) = trimmed
            .strip_prefix("--")
            .or_else(|| trimmed.strip_prefix("///"))
        {
            block.push(comment.trim().to_string());
            continue;
        }
        // `CREATE TABLE` starts the line in SQL files, or a string constant in Rust.
        let upper = trimmed.to_uppercase();
        if let Some(renamed) = later_ddl(trimmed, &upper, &block, into) {
            into.push(renamed);
            block.clear();
            continue;
        }
        let Some(at) = upper.find("CREATE TABLE ") else {
            block.clear();
            continue;
        };
        let rest = upper[at + "CREATE TABLE ".len()..].trim_start_matches("IF NOT EXISTS ");
        let start = trimmed.len() - rest.len();
        let name: String = trimmed[start..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '"')
            .filter(|c| *c != '"')
            .collect();
        if !block.is_empty() {
            group_about = block.join(" ");
            block.clear();
        }
        let mut described = Described {
            about: group_about.clone(),
            ..Default::default()
        };
        // Columns: this line's remainder after `(`, then lines up to `);`.
        let mut body: Vec<String> = Vec::new();
        if let Some((_, after)) = trimmed.split_once('(') {
            body.push(after.to_string());
        }
        if !trimmed.ends_with(");") {
            for next in lines.by_ref() {
                body.push(next.trim().to_string());
                if next.trim_start().starts_with(')') || next.trim_end().ends_with(");") {
                    break;
                }
            }
        }
        for column in body {
            let (def, comment) = column.split_once("--").unwrap_or((&column, ""));
            for part in def.split(',') {
                let Some(col) = part.split_whitespace().next() else {
                    continue;
                };
                let col = col.trim_matches('"');
                if col.is_empty() || col.starts_with(')') || col.eq_ignore_ascii_case("primary") {
                    continue;
                }
                if !comment.trim().is_empty() {
                    described
                        .columns
                        .insert(col.to_string(), comment.trim().to_string());
                }
            }
        }
        into.push((name, described));
    }
}

/// What a later migration says of a relation, as an entry of [`described_tables`]:
/// `ALTER TABLE a RENAME TO b` under a comment block describes `b` (with `a`'s columns);
/// `ALTER TABLE t ADD COLUMN c ...; -- comment` describes the column; `CREATE VIEW v` under a
/// comment block describes `v` (its columns' comments are those of a table it replaced).
fn later_ddl(
    line: &str,
    upper: &str,
    block: &[String],
    before: &[(String, Described)],
) -> Option<(String, Described)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let name = |word: &str| {
        word.trim_matches(|c: char| c == '"' || c == ';')
            .to_string()
    };
    let columns_of = |table: &str| {
        let mut columns = std::collections::HashMap::new();
        for (_, d) in before.iter().filter(|(n, _)| n == table) {
            columns.extend(d.columns.clone());
        }
        columns
    };
    if upper.starts_with("ALTER TABLE ") && upper.contains(" RENAME TO ") && !block.is_empty() {
        return Some((
            name(words.last()?),
            Described {
                about: block.join(" "),
                columns: columns_of(&name(words[2])),
            },
        ));
    }
    if upper.starts_with("ALTER TABLE ") && upper.contains(" ADD COLUMN ") {
        let table = name(words[2]);
        let (_, comment) = line.split_once("--")?;
        let about = before
            .iter()
            .rev()
            .find(|(n, _)| *n == table)
            .map(|(_, d)| d.about.clone())
            .unwrap_or_default();
        let column = name(words.get(5)?);
        let columns = [(column, comment.trim().to_string())].into_iter().collect();
        return Some((table, Described { about, columns }));
    }
    if upper.starts_with("CREATE VIEW ") && !block.is_empty() {
        let view = name(words[2]);
        return Some((
            view.clone(),
            Described {
                about: block.join(" "),
                columns: columns_of(&view),
            },
        ));
    }
    None
}

fn tables_page() -> String {
    use pluvo_warehouse::store::Warehouse;
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = Warehouse::open(dir.path().join("w.duckdb")).unwrap();
    warehouse.install_webhook_views().unwrap();
    pluvo_warehouse::views::install(warehouse.connection()).unwrap();
    let conn = warehouse.connection();

    let mut ddl: Vec<(String, Described)> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("sql/schema"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(Path::new(ROOT).join("src/store/schema.rs"));
    for file in files {
        described_tables(&std::fs::read_to_string(file).unwrap(), &mut ddl);
    }
    let exported: BTreeSet<&str> = pluvo_warehouse::export::TABLES
        .iter()
        .map(|t| t.name)
        .collect();

    let columns = |relation: &str| -> Vec<(String, String, bool)> {
        let mut stmt = conn
            .prepare(
                "SELECT column_name, data_type, is_nullable FROM duckdb_columns()
                 WHERE table_name = ? AND database_name = current_database()
                   AND schema_name = 'main'
                 ORDER BY column_index",
            )
            .unwrap();
        stmt.query_map([relation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let relations = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let views = relations(
        "SELECT view_name FROM duckdb_views()
         WHERE NOT internal AND NOT temporary AND database_name = current_database()
           AND schema_name = 'main'",
    );
    // The views of the schema itself (`portfolio_item_history`) are listed with the tables;
    // the section on views is for the analyst and webhook views.
    let installed: BTreeSet<&str> = pluvo_warehouse::views::VIEWS
        .iter()
        .map(|v| v.name)
        .chain(
            pluvo_warehouse::store::WEBHOOK_VIEWS
                .iter()
                .map(|(n, _)| *n),
        )
        .collect();
    let mut present = relations(
        "SELECT table_name FROM duckdb_tables()
         WHERE NOT temporary AND database_name = current_database() AND schema_name = 'main'",
    );
    for view in views.iter().filter(|v| !installed.contains(v.as_str())) {
        assert!(
            ddl.iter().any(|(n, d)| n == view && !d.about.is_empty()),
            "the view `{view}` has no SQL file in sql/views/ and no migration describes it"
        );
        present.push(view.clone());
    }
    let views: Vec<&String> = views
        .iter()
        .filter(|v| installed.contains(v.as_str()))
        .collect();

    let mut out = TABLES_INTRO.replace("{version}", &warehouse.schema_version().to_string());
    let mut order: Vec<&str> = Vec::new();
    for (name, _) in &ddl {
        if present.contains(name) && !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    let mut rest: Vec<&str> = present
        .iter()
        .map(String::as_str)
        .filter(|t| !order.contains(t))
        .collect();
    rest.sort();
    order.extend(rest);

    out.push_str("\n## Tables\n\n| table | exported | about |\n|---|---|---|\n");
    for table in &order {
        let about = ddl
            .iter()
            .rev()
            .find(|(n, _)| n == table)
            .map(|(_, d)| d.about.clone())
            .unwrap_or_default();
        out.push_str(&format!(
            "| [`{table}`](#{}) | {} | {} |\n",
            table.to_lowercase(),
            if exported.contains(table) {
                "yes"
            } else {
                "no"
            },
            first_sentence(&about).replace('|', "\\|"),
        ));
    }
    for table in &order {
        let described: Vec<&Described> = ddl
            .iter()
            .filter(|(n, _)| n == table)
            .map(|(_, d)| d)
            .collect();
        let about = described.last().map(|d| d.about.as_str()).unwrap_or("");
        out.push_str(&format!("\n### {table}\n\n"));
        if !about.is_empty() {
            out.push_str(&format!("{about}\n\n"));
        }
        let key: Vec<String> = conn
            .prepare(
                "SELECT unnest(constraint_column_names) FROM duckdb_constraints()
                 WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'
                   AND database_name = current_database()",
            )
            .unwrap()
            .query_map([table], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if !key.is_empty() {
            out.push_str(&format!(
                "Primary key: {}.\n",
                key.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push_str(&format!(
            "Exported to Parquet: {}.\n\n| column | type | about |\n|---|---|---|\n",
            if exported.contains(table) {
                "yes"
            } else {
                "no"
            }
        ));
        for (column, data_type, nullable) in columns(table) {
            let comment = described
                .iter()
                .rev()
                .find_map(|d| d.columns.get(&column))
                .cloned()
                .unwrap_or_default();
            out.push_str(&format!(
                "| `{column}` | {data_type}{} | {} |\n",
                if nullable { "" } else { " NOT NULL" },
                comment.replace('|', "\\|")
            ));
        }
    }

    out.push_str(
        "\n## Views\n\nInstalled by `sync` and `pluvo-warehouse views` (the analyst views) and by \
         `webhook serve` (the `*_events` views over `webhook_events`); `query` installs the \
         analyst views over the Parquet snapshot too. Parameters are DuckDB variables \
         (`SET VARIABLE days = 30`, or `query --param days=30`).\n",
    );
    let mut view_sql: Vec<(String, String)> = pluvo_warehouse::views::VIEWS
        .iter()
        .map(|v| (v.name.to_string(), v.sql.to_string()))
        .collect();
    view_sql.extend(
        pluvo_warehouse::store::WEBHOOK_VIEWS
            .iter()
            .map(|(n, sql)| (n.to_string(), sql.to_string())),
    );
    assert_eq!(
        view_sql.len(),
        views.len(),
        "every installed view has its SQL file: {views:?}"
    );
    for (name, sql) in view_sql {
        let about: Vec<&str> = sql
            .lines()
            .map_while(|l| l.strip_prefix("--"))
            .map(str::trim)
            .collect();
        out.push_str(&format!("\n### {name}\n\n{}\n\n", about.join(" ")));
        out.push_str("| column | type |\n|---|---|\n");
        for (column, data_type, _) in columns(&name) {
            out.push_str(&format!("| `{column}` | {data_type} |\n"));
        }
    }
    out
}

fn first_sentence(text: &str) -> &str {
    // `name: what it is` -> `what it is`
    let text = match text.split_once(": ") {
        Some((name, rest)) if !name.contains(' ') => rest,
        _ => text,
    };
    match text.find(". ") {
        Some(i) => &text[..=i],
        None => text,
    }
}

/// Output shown with a schema version shows the current one (it said 1 for two versions).
#[test]
fn the_schema_version_shown_is_the_current_one() {
    let current = pluvo_warehouse::store::SCHEMA_VERSION.to_string();
    let mut stale = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("schema version ") {
                let number: String = line[i + "schema version ".len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if !number.is_empty() && number != current {
                    stale.push(format!("{}:{}: {line}", relative(&page), n + 1));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "schema version {current} is current:\n{}",
        stale.join("\n")
    );
}
