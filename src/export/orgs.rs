//! The organisations of `[orgs]` side by side: one snapshot whose every table has an `org`
//! partition, so that one external table (`LOCATION …/users`) covers them all. Inputs: each
//! organisation's name and export folder (its own warehouse publishes its own snapshot there);
//! output, in the combined export folder, the same layout as a single warehouse's:
//!
//! ```text
//! orgs-export/
//!   current -> snapshots/20261201T160000.000Z-orgs
//!   snapshots/20261201T160000.000Z-orgs/
//!     manifest.json                       (tables summed, `orgs`: each one's snapshot and run)
//!     users/org=acme/data_0.parquet
//!     users/org=globex/data_0.parquet
//!     portfolio_items/org=acme/related_object_type=TRAINING/completion_year=2024/data_0.parquet
//! ```
//!
//! Each organisation's part is its *current* snapshot, hard-linked (no copy): an organisation
//! whose sync failed keeps its last published data, complete, and the others are not held
//! back by it. The combined snapshot is published like any other (a temporary folder, the
//! manifest last, then an atomic switch of `current`), so a reader sees every organisation
//! at one consistent state; uploaded with [`super::remote::publish`] the same holds in object
//! storage (its pointer is written last).
//!
//! Never opens a warehouse and never calls HTTP.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ExportError, MANIFEST, MANIFEST_FORMAT, Manifest, ManifestTable, Report, Result, SNAPSHOTS,
    TABLES, current_snapshot, durable, io, link_tree, lock, point_current, prune, remove_leftovers,
    restrict, tree_size, write_atomically,
};

/// The partition column naming the organisation.
pub const ORG_COLUMN: &str = "org";

/// One organisation's part of a combined snapshot (the manifest's `orgs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgPart {
    pub org: String,
    /// The organisation's own snapshot the part was taken from.
    pub snapshot: String,
    pub run_id: Option<i64>,
    pub exported_at: DateTime<Utc>,
}

/// What [`combine`] published, and which organisations had no snapshot to include.
#[derive(Debug, Clone, Serialize)]
pub struct Combined {
    #[serde(flatten)]
    pub report: Report,
    /// Organisations left out: none of their syncs has published a snapshot yet.
    pub missing: Vec<String>,
}

/// Publish the current snapshots of `orgs` (name, export folder) side by side in `out`.
pub fn combine(
    orgs: &[(String, PathBuf)],
    out: &Path,
    now: DateTime<Utc>,
    group_readable: bool,
) -> Result<Combined> {
    let started = Instant::now();
    let snapshots = out.join(SNAPSHOTS);
    fs::create_dir_all(&snapshots).map_err(|source| ExportError::Folder {
        path: snapshots.clone(),
        cause: source,
    })?;
    let _lock = lock(out)?;
    let previous = super::check_same_kind(out, true)?;
    remove_leftovers(&snapshots)?;
    let id = combined_id(&snapshots, now);
    let tmp = snapshots.join(format!(".tmp-{id}"));
    fs::create_dir_all(&tmp).map_err(io("creating the snapshot folder", &tmp))?;
    let parts = match link_parts(orgs, &tmp) {
        Ok(parts) => parts,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let (parts, tables, missing, schema_version) = parts;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        snapshot: id.clone(),
        exported_at: now,
        run_id: None,
        run_ended_at: None,
        schema_version,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        tables,
        orgs: parts,
    };
    write_atomically(
        &tmp.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)
            .expect("manifest serialises")
            .as_bytes(),
    )?;
    restrict(&tmp, group_readable)?;
    durable::sync_tree(&tmp).map_err(io("syncing the snapshot to disk", &tmp))?;
    let dir = snapshots.join(&id);
    fs::rename(&tmp, &dir).map_err(io("publishing the snapshot", &dir))?;
    durable::sync_dir(&snapshots).map_err(io("syncing", &snapshots))?;
    point_current(out, &id)?;
    durable::sync_dir(out).map_err(io("syncing", out))?;
    prune(&snapshots, &id, previous.as_deref())?;
    let written = manifest.tables.iter().map(|t| t.name.clone()).collect();
    Ok(Combined {
        report: Report {
            dir,
            manifest,
            written,
            seconds: started.elapsed().as_secs_f64(),
        },
        missing,
    })
}

type Parts = (Vec<OrgPart>, Vec<ManifestTable>, Vec<String>, i64);

/// Hard-link every organisation's current snapshot into `tmp/<table>/org=<name>/`.
fn link_parts(orgs: &[(String, PathBuf)], tmp: &Path) -> Result<Parts> {
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    let mut tables: Vec<ManifestTable> = Vec::new();
    let mut schema_version = 0;
    for (org, export_dir) in orgs {
        let Some(current) = current_snapshot(export_dir) else {
            missing.push(org.clone());
            continue;
        };
        let manifest = Manifest::read(&current)?;
        schema_version = schema_version.max(manifest.schema_version);
        for entry in &manifest.tables {
            // Folder names from the tool's own list, never from the manifest's text.
            let Some(table) = TABLES.iter().find(|t| t.name == entry.name) else {
                return Err(ExportError::ForgedManifest {
                    path: current.join(MANIFEST),
                    name: entry.name.clone(),
                });
            };
            let from = current.join(table.name);
            let to = tmp.join(table.name).join(format!("{ORG_COLUMN}={org}"));
            if from.is_dir() {
                link_tree(&from, &to)?;
            }
            let (files, bytes) = tree_size(&to)?;
            match tables.iter_mut().find(|t| t.name == table.name) {
                Some(t) => {
                    t.rows += entry.rows;
                    t.files += files;
                    t.bytes += bytes;
                }
                None => tables.push(ManifestTable {
                    name: table.name.to_string(),
                    rows: entry.rows,
                    files,
                    bytes,
                    partition_by: std::iter::once(ORG_COLUMN)
                        .chain(table.partition_by.iter().copied())
                        .map(str::to_string)
                        .collect(),
                    glob: format!("{}/**/*.parquet", table.name),
                    // Linked from each organisation's own snapshot, never written here.
                    fingerprint: None,
                }),
            }
        }
        parts.push(OrgPart {
            org: org.clone(),
            snapshot: manifest.snapshot.clone(),
            run_id: manifest.run_id,
            exported_at: manifest.exported_at,
        });
    }
    // In the tool's table order, as a single warehouse's manifest.
    tables.sort_by_key(|t| TABLES.iter().position(|e| e.name == t.name));
    Ok((parts, tables, missing, schema_version))
}

/// A new combined snapshot name: its time and `-orgs`, unique in `snapshots`.
fn combined_id(snapshots: &Path, now: DateTime<Utc>) -> String {
    let base = format!("{}-orgs", now.format("%Y%m%dT%H%M%S%.3fZ"));
    let mut id = base.clone();
    let mut n = 1;
    while snapshots.join(&id).exists() || snapshots.join(format!(".tmp-{id}")).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}
