//! What the commands share for output: the `--format` switch and one table printer, so
//! every command's tables look alike and a long value never shifts the columns after it.

/// `--format`: a table for people, JSON for scripts and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}
