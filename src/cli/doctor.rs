//! `doctor`: run the checks of [`crate::doctor`] and print each as `ok`, `FAIL` (with its fix)
//! or `skip`, or all of them as JSON; exit 0 when all pass, 1 otherwise.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::output::{Format, Table};
use crate::config::Flags;
use crate::doctor::{Check, Verdict, check_all};
use crate::error::Exit;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// What to print: a line per check, or JSON (for scripts and monitoring)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `doctor`: run the checks, print them, exit 0 when all are ok and 1 otherwise.
pub async fn run(flags: &Flags, args: &DoctorArgs) -> Result<Exit> {
    let checks = check_all(flags, |name| std::env::var(name).ok()).await;
    let ok = checks.iter().all(Check::is_ok);
    match args.format {
        Format::Table => {
            print!("{}", render(&checks));
            println!("\n{}", crate::cli::init::scopes_per_command());
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&checks, ok))?),
    }
    Ok(if ok { Exit::Ok } else { Exit::Error })
}

/// `{"ok": …, "checks": [{"name", "result": "ok"|"fail"|"skip", "detail" | "problem", "fix"}]}`.
fn to_json(checks: &[Check], ok: bool) -> serde_json::Value {
    let checks: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| match &c.verdict {
            Verdict::Ok(detail) => json!({ "name": c.name, "result": "ok", "detail": detail }),
            Verdict::Fail { problem, fix } => {
                json!({ "name": c.name, "result": "fail", "problem": problem, "fix": fix })
            }
            Verdict::Skip(why) => json!({ "name": c.name, "result": "skip", "detail": why }),
        })
        .collect();
    json!({ "ok": ok, "checks": checks })
}

/// `ok`/`FAIL`/`skip` lines, a `fix:` line under each failure.
pub fn render(checks: &[Check]) -> String {
    let mut table = Table::new(&["result", "check", "detail"]);
    for check in checks {
        match &check.verdict {
            Verdict::Ok(detail) => table.row(["ok", &check.name, detail]),
            Verdict::Fail { problem, fix } => {
                table
                    .row(["FAIL", &check.name, problem])
                    .row(["", "", &format!("fix: {fix}")])
            }
            Verdict::Skip(why) => table.row(["skip", &check.name, &format!("({why})")]),
        };
    }
    let failed = checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail { .. }))
        .count();
    let summary = if failed == 0 {
        "all checks passed".to_string()
    } else {
        format!("{failed} check(s) failed")
    };
    format!("{table}{summary}\n")
}
