//! `doctor`: run the checks of [`crate::doctor`] and print each as `ok`, `FAIL` (with its fix)
//! or `skip`; exit 0 when all pass, 1 otherwise.

use std::fmt::Write as _;

use anyhow::Result;

use crate::config::Flags;
use crate::doctor::{Check, Verdict, check_all};
use crate::error::Exit;

/// `doctor`: run the checks, print them, exit 0 when all are ok and 1 otherwise.
pub async fn run(flags: &Flags) -> Result<Exit> {
    let checks = check_all(flags, |name| std::env::var(name).ok()).await;
    print!("{}", render(&checks));
    println!("\n{}", crate::cli::init::scopes_per_command());
    Ok(if checks.iter().all(Check::is_ok) {
        Exit::Ok
    } else {
        Exit::Error
    })
}

/// `ok`/`FAIL`/`skip` lines, a `fix:` line under each failure.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let _ = match &check.verdict {
            Verdict::Ok(detail) => writeln!(out, "ok    {:<22} {detail}", check.name),
            Verdict::Fail { problem, fix } => writeln!(
                out,
                "FAIL  {:<22} {problem}\n      {:<22} fix: {fix}",
                check.name, ""
            ),
            Verdict::Skip(why) => writeln!(out, "skip  {:<22} ({why})", check.name),
        };
    }
    let failed = checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail { .. }))
        .count();
    let _ = if failed == 0 {
        writeln!(out, "all checks passed")
    } else {
        writeln!(out, "{failed} check(s) failed")
    };
    out
}
