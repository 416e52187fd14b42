//! `views`: install the analyst views of `sql/views/` into the warehouse and list them, as text
//! for people or as JSON (name, what it answers, columns and types) for scripts and BI set-up.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::output::Format;
use crate::config::Config;
use crate::error::Exit;
use crate::store::{Warehouse, query_all};
use crate::views::{VIEWS, install};

/// Arguments of `views`.
#[derive(Debug, Clone, Args)]
pub struct ViewsArgs {
    /// Output: the list for people, or JSON with each view's columns and their types
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One installed view, as `views --format json` prints it.
#[derive(Debug, Serialize)]
struct ViewInfo {
    name: &'static str,
    about: String,
    columns: Vec<Column>,
}

/// A column of a view: its name and DuckDB type.
#[derive(Debug, Serialize)]
struct Column {
    name: String,
    r#type: String,
}

/// `views`: install the views into the warehouse and list them with what they answer.
pub fn run(config: &Config, args: &ViewsArgs) -> Result<Exit> {
    super::one_warehouse(config, "views")?;
    let warehouse = Warehouse::open(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))?;
    install(warehouse.connection()).context("installing the analyst views")?;
    let views = match args.format {
        Format::Table => Vec::new(),
        Format::Json => VIEWS
            .iter()
            .map(|view| {
                let columns = query_all(
                    warehouse.connection(),
                    &format!(
                        "SELECT column_name, column_type FROM (DESCRIBE {})",
                        view.name
                    ),
                    |e| e,
                    |r| {
                        Ok(Column {
                            name: r.get(0)?,
                            r#type: r.get(1)?,
                        })
                    },
                )
                .with_context(|| format!("describing the view `{}`", view.name))?;
                Ok(ViewInfo {
                    name: view.name,
                    about: view.about(),
                    columns,
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    warehouse.close()?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        Format::Table => {
            for view in VIEWS {
                println!("{}\n    {}", view.name, view.about());
            }
        }
    }
    eprintln!(
        "{} views installed in `{}`; e.g. SET VARIABLE days = 30; SELECT * FROM inactive_users;",
        VIEWS.len(),
        config.db.display()
    );
    Ok(Exit::Ok)
}
