//! Command-line interface: clap types and subcommand dispatch; the only place that owns
//! progress bars and prints to the terminal.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "pluvo-warehouse", version, about)]
pub struct Cli {}

pub fn main() -> ExitCode {
    let _ = Cli::parse();
    ExitCode::SUCCESS
}
