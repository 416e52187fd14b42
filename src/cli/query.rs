//! `query`: run SQL against the warehouse (or, while a `sync` holds it, the published
//! snapshot) and print the answer: a table on a terminal, CSV or JSON lines for pipes,
//! Parquet to a file. The SQL helpers are in [`crate::query`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::export::remote;
use crate::export::snapshot::Reader;
use crate::export::snapshot::Source;
use crate::query::{
    QueryFormat, Refused, check_read_only, copy_to, parse_params, scratch_beside, set_params,
    table_text, user_lines, write_file_in,
};
use crate::store::guard;

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The SQL to run (or --file)
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    pub sql: Option<String>,
    /// Read the SQL from a file
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A view parameter, NAME=VALUE (repeatable; a name given twice becomes a list).
    /// Values: integer, decimal, date (YYYY-MM-DD) or text
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output format [default: table on a terminal, csv otherwise; from --out's extension]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write the answer to FILE (atomically) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Always read the published snapshot, even when the warehouse is free
    #[arg(long)]
    pub snapshot: bool,
    /// Read the snapshot published to object storage at URL (s3://bucket/prefix, gs://,
    /// az://, file://), downloaded once into `<export folder>/remote/`
    #[arg(long, value_name = "URL", conflicts_with = "snapshot")]
    pub from: Option<String>,
}

/// `--format` of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Aligned columns for people
    Table,
    /// CSV with a header row
    Csv,
    /// JSON lines: one object per row
    Json,
    /// Parquet (zstd); needs --out
    Parquet,
}

impl From<FormatArg> for QueryFormat {
    fn from(f: FormatArg) -> QueryFormat {
        match f {
            FormatArg::Table => QueryFormat::Table,
            FormatArg::Csv => QueryFormat::Csv,
            FormatArg::Json => QueryFormat::Json,
            FormatArg::Parquet => QueryFormat::Parquet,
        }
    }
}

/// `query`: read the SQL, open the warehouse (or its snapshot), run, print.
pub async fn run(config: &Config, args: &QueryArgs) -> Result<Exit> {
    let sql = match (&args.sql, &args.file) {
        (Some(sql), None) => sql.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).map_err(|e| {
            UsageError::new(format!(
                "cannot read the SQL file `{}`: {e}",
                file.display()
            ))
        })?,
        _ => bail!(UsageError::new(
            "give the SQL as an argument or with --file"
        )),
    };
    let params = parse_params(&args.params)?;
    let format = match (args.format.map(QueryFormat::from), &args.out) {
        (Some(f), _) => f,
        (None, Some(out)) => QueryFormat::from_extension(out).ok_or_else(|| {
            UsageError::new(format!(
                "cannot tell the format of `{}` from its extension; pass --format csv|json|parquet|table",
                out.display()
            ))
        })?,
        (None, None) if std::io::stdout().is_terminal() => QueryFormat::Table,
        (None, None) => QueryFormat::Csv,
    };
    if format == QueryFormat::Parquet && args.out.is_none() {
        bail!(UsageError::new(
            "Parquet is a binary file format: pass --out FILE.parquet"
        ));
    }

    let reader = if let Some(url) = &args.from {
        let target = remote::Target::open(url).map_err(super::export::remote_usage)?;
        let (dir, _) = remote::download_current(&target, &config.export_dir.join("remote"))
            .await
            .with_context(|| format!("reading the snapshot in `{}`", target.display()))?;
        Reader::snapshot_at(dir, format!("--from {} was given", target.display()))?
    } else if args.snapshot {
        Reader::snapshot(&config.export_dir, "--snapshot was given".into())?
    } else {
        Reader::open(&config.db, &config.export_dir)?
    };
    if let Some(note) = reader.source.note() {
        eprintln!("{note}");
    }
    let conn = reader.connection();
    // DuckDB writes the machine formats into a file: a private folder (0700, random name)
    // beside `--out`, or in the temp folder for stdout. Never a fixed name another local
    // user could pre-plant as a symlink.
    let scratch = match &args.out {
        Some(out) => scratch_beside(out)?,
        None => tempfile::Builder::new()
            .prefix("pluvo-query-")
            .tempdir()
            .context("creating a private temporary folder for the answer")?,
    };
    let mut allowed = vec![scratch.path()];
    if let Source::Snapshot { dir, .. } = &reader.source {
        allowed.push(dir.as_path());
    }
    guard::lock(conn, config.external_access, &allowed, &[])
        .context("locking the connection's settings")?;
    match check_read_only(conn, &sql, "`query`") {
        Ok(()) => {}
        Err(Refused::Usage(e)) => bail!(e),
        Err(Refused::Sql(e)) => bail!(e),
        Err(Refused::Db(e)) => return Err(e).context("checking the SQL"),
    }
    set_params(conn, &params).context("setting the parameters")?;
    // Prepare first: DuckDB's parser and binder errors then point into the user's own text.
    // Exactly one statement (checked above), so preparing runs nothing.
    if let Err(e) = conn.prepare(&sql) {
        bail!("the query failed: {e}");
    }
    match (&args.out, format) {
        (Some(out), _) => {
            let rows = write_file_in(conn, &sql, format, out, scratch.path())?;
            if format != QueryFormat::Table {
                eprintln!("{rows} rows written to {}", out.display());
            }
        }
        (None, QueryFormat::Table) => {
            print!("{}", table_text(conn, &sql)?);
        }
        (None, _) => {
            let tmp = scratch.path().join("answer");
            let options = format.copy_options().unwrap_or_default();
            let copied = copy_to(conn, &sql, &tmp, &options)
                .map_err(|e| anyhow::anyhow!("the query failed: {}", user_lines(&e.to_string())))
                .and_then(|rows| {
                    let mut file = std::fs::File::open(&tmp).context("reading the answer")?;
                    let mut stdout = std::io::stdout().lock();
                    std::io::copy(&mut file, &mut stdout).context("writing to stdout")?;
                    stdout.flush().context("writing to stdout")?;
                    Ok(rows)
                });
            if copied? == 0 {
                // An empty CSV is just a header, and empty JSON lines nothing at all.
                eprintln!("The query returned no rows.");
            }
        }
    }
    Ok(Exit::Ok)
}
