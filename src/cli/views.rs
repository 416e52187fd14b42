//! `views`: install the analyst views of `sql/views/` into the warehouse and list them.

use anyhow::{Context, Result};

use crate::config::Config;
use crate::error::Exit;
use crate::store::Warehouse;
use crate::views::{VIEWS, install};

/// `views`: install the views into the warehouse and list them with what they answer.
pub fn run(config: &Config) -> Result<Exit> {
    let warehouse = Warehouse::open(&config.db)
        .with_context(|| format!("opening the warehouse `{}`", config.db.display()))?;
    install(warehouse.connection()).context("installing the analyst views")?;
    warehouse.close()?;
    for view in VIEWS {
        println!("{}\n    {}", view.name, view.about());
    }
    eprintln!(
        "{} views installed in `{}`; e.g. SET VARIABLE days = 30; SELECT * FROM inactive_users;",
        VIEWS.len(),
        config.db.display()
    );
    Ok(Exit::Ok)
}
