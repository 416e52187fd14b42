//! `demo`: the five-minute tour. Starts the simulator in-process, syncs it into a warehouse in
//! a named folder, answers a few analyst questions from `sql/views/`, writes the HTML report,
//! prints its path and says what to try next. Everything it shows is computed by the same code
//! paths as the real commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use clap::{Args, Parser};

use super::output::Format;
use super::progress::Bars;
use super::sync::print_sync;
use super::{Cli, Command};
use crate::config::{Config, Flags};
use crate::error::Exit;
use crate::export::snapshot::Source;
use crate::pipeline::{self, SyncOptions};
use crate::sim::{Sim, SimConfig};
use crate::store::Warehouse;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Folder for the demo's warehouse (kept afterwards)
    #[arg(long, default_value = "pluvo-demo")]
    pub dir: PathBuf,
    /// Users in the simulated organisation
    #[arg(long, default_value_t = 3_000)]
    pub users: usize,
}

/// An analyst question answered in the demo.
pub struct Question {
    pub title: &'static str,
    pub sql: &'static str,
    /// The SQL's parameter (`getvariable(name)`) and the value the demo uses.
    pub param: Option<(&'static str, i64)>,
}

pub const QUESTIONS: &[Question] = &[
    Question {
        title: "Inactive users (no login for 180 days, not archived)",
        sql: include_str!("../../sql/views/inactive_users.sql"),
        param: Some(("days", 180)),
    },
    Question {
        title: "Completion per group",
        sql: include_str!("../../sql/views/completion_by_group.sql"),
        param: None,
    },
    Question {
        title: "Certificates expiring within 90 days",
        sql: include_str!("../../sql/views/expiring_certificates.sql"),
        param: Some(("days", 90)),
    },
];

/// Run a question: (total rows, the first `limit` rows as Arrow batches).
pub fn answer(
    warehouse: &Warehouse,
    sql: &str,
    param: Option<(&str, i64)>,
    limit: usize,
) -> Result<(i64, Vec<RecordBatch>)> {
    let conn = warehouse.connection();
    if let Some((name, value)) = param {
        conn.execute_batch(&format!("SET VARIABLE {name} = {value}"))?;
    }
    let body = sql.trim().trim_end_matches(';');
    let total: i64 = conn.query_row(&format!("SELECT count(*) FROM ({body})"), [], |r| r.get(0))?;
    let mut stmt = conn.prepare(&format!("SELECT * FROM ({body}) LIMIT {limit}"))?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([])?.collect();
    Ok((total, batches))
}

/// Write `file` (a configuration for the in-process `sim`, warehouse `db`) and load it, with
/// the simulator's secret in place of the environment. Used by the demo and the benchmarks.
pub fn config_for_sim(sim: &Sim, file: &Path, db: &Path, by: &str) -> Result<Config> {
    // Paths in the file are relative to the file: name the warehouse from its folder.
    let folder = file.parent().unwrap_or(Path::new(""));
    let db = db.strip_prefix(folder).unwrap_or(db);
    std::fs::write(
        file,
        format!(
            "# Written by `pluvo-warehouse {by}`: the in-process simulator it ran against.\n\
             [pluvo]\nurl = \"{}\"\nclient_id = \"{}\"\n\n[warehouse]\ndb = \"{}\"\n",
            sim.url(),
            sim.client_id(),
            db.display()
        ),
    )
    .with_context(|| format!("writing `{}`", file.display()))?;
    let secret = sim.client_secret().to_string();
    Ok(Config::load_with(
        &Flags {
            config: Some(file.to_path_buf()),
            ..Flags::default()
        },
        |name| (name == "PLUVO_CLIENT_SECRET").then(|| secret.clone()),
    )?)
}

pub async fn run(args: &DemoArgs, quiet: bool) -> Result<Exit> {
    let (dir, users) = (args.dir.as_path(), args.users);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the demo folder `{}`", dir.display()))?;
    let db = dir.join("pluvo.duckdb");
    for stale in [db.clone(), dir.join("pluvo.duckdb.wal")] {
        if stale.exists() {
            std::fs::remove_file(&stale).with_context(|| {
                format!("removing the previous demo warehouse `{}`", stale.display())
            })?;
        }
    }

    let sim = Sim::start(SimConfig {
        users,
        seed: 42,
        ..SimConfig::default()
    })
    .await
    .context("starting the simulator")?;
    let config = config_for_sim(&sim, &dir.join("pluvo-warehouse.toml"), &db, "demo")?;

    eprintln!(
        "1. Started a simulated Pluvo organisation: {users} users at {} (seed 42).",
        sim.url()
    );
    eprintln!("2. Syncing it into {} ...", db.display());
    let outcome = match pipeline::sync(&config, &SyncOptions::default(), Bars::new(quiet)).await {
        Ok(outcome) => outcome,
        Err(err) => {
            if let Some(outcome) = err.outcome() {
                print_sync(outcome, Format::Table)?;
            }
            return Err(anyhow::Error::new(err).context("the demo sync failed"));
        }
    };
    print_sync(&outcome, Format::Table)?;

    eprintln!("\n3. Asking the warehouse a few questions (SQL in sql/views/):");
    let warehouse = Warehouse::open_read_only(&db)?;
    for q in QUESTIONS {
        let (total, rows) = answer(&warehouse, q.sql, q.param, 5)?;
        println!("\n{}: {total} rows; the first {}:", q.title, total.min(5));
        println!("{}", arrow::util::pretty::pretty_format_batches(&rows)?);
    }
    drop(warehouse);

    eprintln!(
        "\n4. Planning a write-back: archive the inactive users (a dry run: nothing is sent):"
    );
    let plan = Cli::try_parse_from([
        "pluvo-warehouse",
        "push",
        "archive-users",
        // `=`: the SQL starts with a `--` comment, which would otherwise read as a flag.
        &format!("--query={}", QUESTIONS[0].sql),
        "--param",
        "days=180",
    ])?;
    if let Command::Push(args) = plan.command {
        super::push::run(&config, &args, quiet).await?;
    }
    sim.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;

    eprintln!(
        "\n5. Writing the report: charts and the compliance roster in one HTML file that opens \
         offline (pluvo-warehouse report):"
    );
    let report = dir.join("report.html");
    let cli = Cli::try_parse_from(
        ["pluvo-warehouse", "report", "--out"]
            .map(std::ffi::OsStr::new)
            .into_iter()
            .chain([report.as_os_str()]),
    )?;
    if let Command::Report(args) = cli.command {
        let warehouse = Warehouse::open_read_only(&db)?;
        super::report::write(
            warehouse.connection(),
            &Source::Warehouse { path: db.clone() },
            &args,
        )?;
    }
    println!("{}", report.display());

    eprintln!(
        "\nDone. The warehouse is in {dir}/ (DuckDB file {db}; Parquet snapshot in {export}/current/).\n\
         Next:\n  \
         duckdb {db} \"SELECT * FROM users LIMIT 5\"      # or any DuckDB client\n  \
         cargo run --release -- --db {db} query \"SELECT * FROM compliance_roster LIMIT 5\"\n  \
         cargo run --release -- --db {db} status\n  \
         cargo run --release -- sim serve                 # a simulator to point PLUVO_URL at\n  \
         export PLUVO_URL=https://<org>.pluvo.com PLUVO_CLIENT_ID=... PLUVO_CLIENT_SECRET=...\n  \
         cargo run --release -- sync                      # your own organisation",
        dir = dir.display(),
        db = db.display(),
        export = config.export_dir.display()
    );
    Ok(Exit::Ok)
}
