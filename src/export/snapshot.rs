//! Reading the warehouse without ever being locked out: [`Reader::open`] opens the DuckDB file
//! read-only, and when a writer (a running `sync`) holds it, or it is missing, answers from
//! the published Parquet snapshot instead: an in-memory DuckDB with one view per table over
//! `read_parquet`, plus the analyst views. `query`, `export compliance` (and later `status`)
//! read through it.
//!
//! The snapshot is pinned when it is opened: the views name the snapshot's own folder (the
//! target of `current`), not `current`, so an export that publishes a newer snapshot meanwhile
//! does not change what an open reader sees (the previous snapshot is kept one export longer).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use duckdb::{AccessMode, Connection};

use super::{
    ExportError, JSON_COLUMNS, MANIFEST, Manifest, Result, TABLES, current_snapshot, db, sql_path,
};
use crate::store::{StoreError, Warehouse, duckdb_config};

/// Where a reader's answers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The warehouse file itself (the newest data).
    Warehouse { path: PathBuf },
    /// A published snapshot, because the warehouse was locked by a writer or missing.
    Snapshot {
        dir: PathBuf,
        run_id: Option<i64>,
        exported_at: DateTime<Utc>,
        /// Why the warehouse was not read (the lock or missing-file error).
        reason: String,
    },
}

impl Source {
    /// A one-line note for stderr when the answer comes from a snapshot.
    pub fn note(&self) -> Option<String> {
        match self {
            Source::Warehouse { .. } => None,
            Source::Snapshot {
                dir,
                run_id,
                exported_at,
                reason,
            } => Some(format!(
                "note: {reason}; answering from the published snapshot `{}` (run {}, exported {})",
                dir.display(),
                run_id.map_or("none".to_string(), |r| r.to_string()),
                exported_at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
        }
    }
}

enum Handle {
    /// Boxed: a warehouse carries its writer's state, a snapshot only its connection.
    Warehouse(Box<Warehouse>),
    Snapshot(Connection),
}

/// A read-only view of the warehouse: the file, or its published snapshot.
pub struct Reader {
    handle: Handle,
    pub source: Source,
}

impl Reader {
    /// Open `db` read-only; when it is locked by a writer or missing, open the snapshot
    /// published in `export_dir`. Other errors (a damaged or newer file) are returned as is.
    pub fn open(db: &Path, export_dir: &Path) -> Result<Reader> {
        let err = match Warehouse::open_read_only(db) {
            Ok(warehouse) => {
                return Ok(Reader {
                    handle: Handle::Warehouse(Box::new(warehouse)),
                    source: Source::Warehouse {
                        path: db.to_path_buf(),
                    },
                });
            }
            Err(err @ (StoreError::Locked { .. } | StoreError::Missing { .. })) => err,
            Err(err) => return Err(err.into()),
        };
        let reason = match &err {
            StoreError::Locked { pid, .. } => format!(
                "`{}` is being written by another process{}",
                db.display(),
                pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
            ),
            _ => format!("`{}` does not exist", db.display()),
        };
        match Reader::snapshot(export_dir, reason) {
            Err(ExportError::NoSnapshot { dir }) => Err(ExportError::NoFallback {
                dir,
                source: Box::new(err),
            }),
            other => other,
        }
    }

    /// Open the snapshot `current` points to in `export_dir`.
    pub fn snapshot(export_dir: &Path, reason: String) -> Result<Reader> {
        let dir = current_snapshot(export_dir).ok_or_else(|| ExportError::NoSnapshot {
            dir: export_dir.to_path_buf(),
        })?;
        Reader::snapshot_at(dir, reason)
    }

    /// Open the snapshot in the folder `dir` (one of `snapshots/`, or one downloaded from
    /// object storage by [`super::remote::download_current`]).
    pub fn snapshot_at(dir: PathBuf, reason: String) -> Result<Reader> {
        let manifest = Manifest::read(&dir)?;
        let conn = open_snapshot(&dir, &manifest)?;
        Ok(Reader {
            handle: Handle::Snapshot(conn),
            source: Source::Snapshot {
                dir,
                run_id: manifest.run_id,
                exported_at: manifest.exported_at,
                reason,
            },
        })
    }

    pub fn connection(&self) -> &Connection {
        match &self.handle {
            Handle::Warehouse(w) => w.connection(),
            Handle::Snapshot(c) => c,
        }
    }
}

/// An in-memory DuckDB with a view per table of the snapshot in `dir` and the analyst views.
pub fn open_snapshot(dir: &Path, manifest: &Manifest) -> Result<Connection> {
    let config = duckdb_config(AccessMode::ReadWrite).map_err(db("configuring DuckDB"))?;
    let conn = Connection::open_in_memory_with_flags(config).map_err(db("opening DuckDB"))?;
    crate::store::sqltime::install(&conn).map_err(db("defining the time functions"))?;
    // Names and globs come from the tool's own list, never from the manifest's text: whoever
    // can write a shared export folder could otherwise put SQL into every reader's session.
    let mut known = Vec::with_capacity(manifest.tables.len());
    for table in &manifest.tables {
        let export = TABLES
            .iter()
            .find(|t| t.name == table.name)
            .ok_or_else(|| ExportError::ForgedManifest {
                path: dir.join(MANIFEST),
                name: table.name.clone(),
            })?;
        known.push(export);
    }
    // Several organisations side by side: every table has an `org` folder level first,
    // read as text whatever the names look like.
    let by_org = !manifest.orgs.is_empty();
    for table in known {
        let hive = by_org || !table.partition_by.is_empty();
        let glob = if hive {
            format!("{}/**/*.parquet", table.name)
        } else {
            format!("{}/*.parquet", table.name)
        };
        let types = if by_org {
            format!(", hive_types = {{'{}': VARCHAR}}", super::orgs::ORG_COLUMN)
        } else {
            String::new()
        };
        let read = format!(
            "read_parquet('{glob}', hive_partitioning = {hive}{types})",
            glob = sql_path(&dir.join(glob)),
        );
        let doing = || format!("reading `{}` from the snapshot", table.name);
        // A table without files (an empty partitioned one) cannot be described; its view
        // fails only when read, as before.
        let restore = restore_types(&conn, table.name, &read).unwrap_or_default();
        conn.execute_batch(&format!(
            "CREATE VIEW \"{name}\" AS SELECT *{restore} FROM {read}",
            name = table.name,
        ))
        .map_err(db(doing()))?;
    }
    crate::views::install(&conn).map_err(db("installing the analyst views on the snapshot"))?;
    Ok(conn)
}

/// ` REPLACE (...)` turning the engine-friendly types of a snapshot's `table` back into the
/// warehouse's (see `export::engine_columns`), so that `query` gives the same answers from
/// the snapshot as from the file: `_hash` from `BIGINT` to the `UBIGINT` with the same bits,
/// the JSON columns from text to `JSON`. Empty when nothing is to be turned back (snapshots
/// written before the engine types had them already).
fn restore_types(conn: &Connection, table: &str, read: &str) -> duckdb::Result<String> {
    let mut stmt = conn.prepare(&format!(
        "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {read})"
    ))?;
    let columns: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<duckdb::Result<_>>()?;
    let mut replace = Vec::new();
    for (name, ty) in columns {
        if name == "_hash" && ty == "BIGINT" {
            replace.push(
                "CAST(CASE WHEN _hash < 0 THEN _hash::HUGEINT + 18446744073709551616 \
                 ELSE _hash::HUGEINT END AS UBIGINT) AS _hash"
                    .to_string(),
            );
        } else if ty == "VARCHAR" && JSON_COLUMNS.contains(&(table, name.as_str())) {
            replace.push(format!("CAST(\"{name}\" AS JSON) AS \"{name}\""));
        }
    }
    Ok(if replace.is_empty() {
        String::new()
    } else {
        format!(" REPLACE ({})", replace.join(", "))
    })
}
