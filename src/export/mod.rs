//! `export`: the warehouse's tables as Parquet, published as one immutable, always-readable
//! snapshot with a manifest. Inputs: a DuckDB connection to the warehouse (the writer's at
//! the end of `sync`, or a read-only one). Outputs, in the export folder:
//!
//! ```text
//! pluvo-export/
//!   current -> snapshots/20261123T125501.123Z-run3      (symlink, swapped atomically)
//!   snapshots/20261123T125501.123Z-run3/
//!     manifest.json                                     (tables, rows, run id, export time)
//!     users/data_0.parquet
//!     portfolio_items/related_object_type=TRAINING/completion_year=2024/data_0.parquet
//!   .lock                                               (one exporter at a time)
//! ```
//!
//! Publishing: every file is written by DuckDB's `COPY ... (FORMAT parquet)` into
//! `snapshots/.tmp-<id>/`; the manifest is written last; the folder is renamed to its final
//! name, then a new symlink replaces `current` by `rename(2)`, which is atomic. A reader that
//! resolves `current` therefore sees either the previous snapshot or the new one, complete,
//! never a mix and never a half-written file; a killed export leaves only a `.tmp-*` folder,
//! removed by the next export. The previous snapshot is kept (readers pinned to it, like
//! `query`, keep working through one more export); older ones are deleted. A table whose
//! rows have not changed since the previous snapshot is hard-linked from it instead of
//! written again ([`fingerprint`]): a sync that changed nothing publishes in a fraction of
//! the time.
//!
//! Does not open the warehouse itself and never calls HTTP; `query` and `export compliance`
//! read snapshots through [`snapshot`].

pub mod compliance;
mod durable;
pub mod orgs;
pub mod remote;
pub mod snapshot;
pub mod xlsx;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use duckdb::Connection;
use serde::{Deserialize, Serialize};

/// The symlink to the published snapshot, in the export folder.
pub const CURRENT: &str = "current";
/// The folder holding the snapshots, in the export folder.
pub const SNAPSHOTS: &str = "snapshots";
/// The manifest's file name, inside each snapshot.
pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest's layout; bumped when a field changes meaning.
pub const MANIFEST_FORMAT: u32 = 1;
/// Rows per Parquet row group. A row group is the unit readers skip by its min/max
/// statistics and read in parallel: ~100k rows keeps a users group near 10 MB uncompressed,
/// small enough to prune, large enough for good compression (DuckDB's default is 122,880).
pub const ROW_GROUP_SIZE: usize = 100_000;
/// How every Parquet file is compressed: zstd at level 1. Measured on a 20k-user warehouse
/// (one thread): `portfolio_items` took 0.116 CPU-s at level 1 against 0.184 s at DuckDB's
/// default level 3, and its file was 2% smaller (3.86 MB against 3.93 MB); snappy and lz4
/// were no faster and 50% larger. Readers decode every level alike.
pub const PARQUET_COMPRESSION: &str = "COMPRESSION zstd, COMPRESSION_LEVEL 1";

/// A Parquet file ends, and the next one starts, once it passes about this many bytes
/// (compressed). Engines read files of 100 MB to 1 GB best: one file per task, few enough
/// to list fast; a 1M-user `users` table then is a handful of files instead of one that a
/// single task must read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// How one table is exported.
#[derive(Debug, Clone, Copy)]
pub struct TableExport {
    pub name: &'static str,
    /// Extra columns computed for partitioning (`expr AS name`), empty for none.
    pub derived: &'static str,
    /// Hive partition columns (`col=value/` folders); their values live in the folder names,
    /// not in the files, as Spark, DuckDB, polars and pyarrow expect.
    pub partition_by: &'static [&'static str],
}

/// Every exported table. Bookkeeping tables (`_seen_*`, `_checkpoints`, `_schema`) stay in the
/// warehouse; `_runs` and `_run_streams` are exported so a snapshot says where it came from.
pub const TABLES: &[TableExport] = &[
    TableExport {
        name: "users",
        derived: "",
        partition_by: &[],
    },
    // The big one (about 5 per user): readers filter by type and by completion year, so each
    // (type, year) is one folder they can skip without opening it. Items without a completion
    // date land in `completion_year=__HIVE_DEFAULT_PARTITION__`, which readers see as NULL.
    TableExport {
        name: "portfolio_items",
        derived: "year(completion_date) AS completion_year",
        partition_by: &["related_object_type", "completion_year"],
    },
    TableExport {
        name: "portfolio_item_history",
        derived: "",
        partition_by: &[],
    },
    TableExport {
        name: "certificates",
        derived: "",
        partition_by: &[],
    },
    TableExport {
        name: "groups",
        derived: "",
        partition_by: &[],
    },
    TableExport {
        name: "group_members",
        derived: "",
        partition_by: &[],
    },
    TableExport {
        name: "trainings",
        derived: "",
        partition_by: &[],
    },
    TableExport {
        name: "_runs",
        derived: "",
        partition_by: &[],
    },
    TableExport {
        name: "_run_streams",
        derived: "",
        partition_by: &[],
    },
];

/// The `JSON` columns of exported tables, (table, column): written as text (see
/// [`engine_columns`]) and read back as `JSON` by [`snapshot`]. A unit test checks the list
/// against the warehouse schema.
pub(crate) const JSON_COLUMNS: &[(&str, &str)] = &[("users", "extra_fields")];

/// Columns of exported tables that are not written, (table, column): where an item's open
/// history version starts, and the run that opened it, which `portfolio_item_history` shows
/// (`sql/schema/008_open_versions.sql`).
pub const UNEXPORTED_COLUMNS: &[(&str, &str)] = &[
    ("portfolio_items", "_version_from"),
    ("portfolio_items", "_version_run_id"),
];

/// Errors of export and snapshot reading. Messages name the path or table in backticks.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{doing} `{}`: {cause}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "cannot create the export folder `{}`: {cause}; make it writable, or set \
         `warehouse.export_dir` in the configuration to a writable folder",
        path.display()
    )]
    Folder {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{doing}: {cause}")]
    Db { doing: String, cause: duckdb::Error },
    #[error(
        "another export is writing `{}`; wait for it to finish (exports take seconds)",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error("unknown table `{name}`; exported tables: {known}")]
    UnknownTable { name: String, known: String },
    #[error(
        "no published snapshot in `{}`; run `pluvo-warehouse sync` (it publishes one) or `pluvo-warehouse export`",
        dir.display()
    )]
    NoSnapshot { dir: PathBuf },
    #[error(
        "no published snapshot in `{}` to read instead; let the running sync finish (it publishes one) or run `pluvo-warehouse export`",
        dir.display()
    )]
    NoFallback {
        dir: PathBuf,
        #[source]
        source: Box<crate::store::StoreError>,
    },
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    #[error(
        "the manifest `{}` names a table `{name}` that pluvo-warehouse does not export; the \
         snapshot was not written by this tool or was changed since: refusing to read it. \
         Check who can write the export folder, then publish a new snapshot with \
         `pluvo-warehouse export`",
        path.display()
    )]
    ForgedManifest { path: PathBuf, name: String },
    #[error("reading the manifest `{}`: {cause}", path.display())]
    Manifest {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(
        "`{}` holds the organisations' side-by-side dataset ({orgs}); publishing one \
         warehouse's snapshot there would replace it for every reader. Export this warehouse \
         to another folder (`export --out DIR`, or `warehouse.export_dir` for a `[pluvo]` \
         warehouse), or make it one of `[orgs]` so that it is published side by side",
        dir.display()
    )]
    HoldsOrganisations { dir: PathBuf, orgs: String },
    #[error(
        "`{}` holds the snapshots of one warehouse (`{snapshot}`); publishing the organisations \
         side by side there would replace it for every reader. Give the side-by-side dataset \
         its own folder (`warehouse.export_dir`), or make that warehouse one of `[orgs]`",
        dir.display()
    )]
    HoldsOneWarehouse { dir: PathBuf, snapshot: String },
}

/// Refuse to publish into `out` a snapshot of the other kind than its current one: one
/// warehouse's over the organisations' side-by-side dataset (`combined`: false), or the
/// reverse. Readers of the folder would silently see other data (or none). Returns the
/// current snapshot (the one the new snapshot replaces), if any.
pub(crate) fn check_same_kind(out: &Path, combined: bool) -> Result<Option<PathBuf>> {
    let Some(current) = current_snapshot(out) else {
        return Ok(None);
    };
    let Ok(manifest) = Manifest::read(&current) else {
        return Ok(Some(current));
    };
    match (combined, manifest.orgs.is_empty()) {
        (false, false) => Err(ExportError::HoldsOrganisations {
            dir: out.to_path_buf(),
            orgs: manifest
                .orgs
                .iter()
                .map(|o| o.org.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        (true, true) => Err(ExportError::HoldsOneWarehouse {
            dir: out.to_path_buf(),
            snapshot: manifest.snapshot,
        }),
        _ => Ok(Some(current)),
    }
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

impl From<crate::store::StoreError> for ExportError {
    fn from(e: crate::store::StoreError) -> Self {
        ExportError::Store(Box::new(e))
    }
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Io {
        doing,
        path,
        cause: source,
    }
}

fn db(doing: impl Into<String>) -> impl FnOnce(duckdb::Error) -> ExportError {
    let doing = doing.into();
    move |source| ExportError::Db {
        doing,
        cause: source,
    }
}

/// What a snapshot holds; `manifest.json` beside the table folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The snapshot's folder name under `snapshots/`.
    pub snapshot: String,
    pub exported_at: DateTime<Utc>,
    /// The last `sync` run that succeeded before the export (`_runs.run_id`), if any.
    pub run_id: Option<i64>,
    /// When that run ended.
    pub run_ended_at: Option<DateTime<Utc>>,
    pub schema_version: i64,
    pub tool_version: String,
    pub tables: Vec<ManifestTable>,
    /// A snapshot of several organisations side by side ([`orgs::combine`]): each one's
    /// part; empty for a single warehouse's snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<orgs::OrgPart>,
}

/// One table of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTable {
    pub name: String,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    /// Hive partition columns, in folder order.
    pub partition_by: Vec<String>,
    /// Glob of the table's files, relative to the snapshot folder (for `read_parquet`).
    pub glob: String,
    /// What the files were written from ([`fingerprint`]): the next export of everything
    /// links them instead of writing them again when it is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl Manifest {
    /// Read `manifest.json` from a snapshot folder.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(io("reading the manifest", &path))?;
        serde_json::from_str(&text).map_err(|source| ExportError::Manifest {
            path,
            cause: source,
        })
    }

    pub fn table(&self, name: &str) -> Option<&ManifestTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Bytes of all files of the snapshot.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The export folder (`current`, `snapshots/` inside).
    pub out: PathBuf,
    /// Tables to re-export (written even when unchanged); empty = all, where a table
    /// unchanged since the current snapshot is linked, not written again ([`fingerprint`]).
    /// Tables not named are carried over from the current snapshot (hard links, no copy).
    pub tables: Vec<String>,
    pub row_group_size: usize,
    /// A row group also ends at about this many bytes (uncompressed), when set: DuckDB holds
    /// a row group per thread in memory and cannot spill it. See [`row_group_bytes`].
    pub row_group_bytes: Option<u64>,
    /// A file ends and the next starts once it passes this many bytes ([`MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// Folders 0750 and files 0640 (a BI service account in the group reads them) instead
    /// of 0700 and 0600 (`warehouse.export_group_readable`).
    pub group_readable: bool,
}

impl Options {
    pub fn new(out: impl Into<PathBuf>) -> Options {
        Options {
            out: out.into(),
            tables: Vec::new(),
            row_group_size: ROW_GROUP_SIZE,
            row_group_bytes: None,
            max_file_bytes: MAX_FILE_BYTES,
            group_readable: false,
        }
    }
}

/// The row-group size in bytes for a DuckDB memory cap of `memory_limit` bytes: the row
/// groups in flight, one per export connection ([`EXPORT_WORKERS`]), take an eighth of it
/// together (each at least 1 MB), leaving room for the scans feeding them. Measured with
/// DuckDB 2.0, 600k items: 100k-row groups fail at a 16 MB cap, 2 MB groups pass at 16 MB
/// and 1 MB groups at 8 MB. At 1M users (`bench sync --full-only`), two connections with
/// an eighth each peaked at 227–240 MiB, a sixteenth each at 224–228 MiB (one connection
/// with an eighth: 220–226 MiB); the Parquet files were the same size.
pub fn row_group_bytes(memory_limit: u64) -> u64 {
    (memory_limit / (8 * EXPORT_WORKERS as u64)).max(1_000_000)
}

/// Modes of what an export creates: (folders, files). Personal data: the owner only, unless
/// the folder is shared with a group on purpose.
fn modes(group_readable: bool) -> (u32, u32) {
    if group_readable {
        (0o750, 0o640)
    } else {
        (0o700, 0o600)
    }
}

/// Set `dir` and everything under it to the export's modes, before it is published: the
/// files DuckDB wrote got whatever the umask gave them.
#[cfg(unix)]
fn restrict(dir: &Path, group_readable: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (dirs, files) = modes(group_readable);
    let mode = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io("setting the permissions of", path))
    };
    mode(dir, dirs)?;
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("listing", dir))?;
        if kind.is_dir() {
            restrict(&path, group_readable)?;
        } else if kind.is_file() {
            mode(&path, files)?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_dir: &Path, _group_readable: bool) -> Result<()> {
    Ok(())
}

/// What an export did (`export --format json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The published snapshot folder.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Tables written by this export (the others were carried over).
    pub written: Vec<String>,
    pub seconds: f64,
}

/// The tables named in `names` (all when empty), or an error naming the unknown one.
pub fn select(names: &[String]) -> Result<Vec<&'static TableExport>> {
    if names.is_empty() {
        return Ok(TABLES.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            TABLES
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| ExportError::UnknownTable {
                    name: name.clone(),
                    known: TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
                })
        })
        .collect()
}

/// Export the tables of `conn` to `options.out` and publish them as the new `current`
/// snapshot. `now` is the export time written into the manifest.
pub fn export(conn: &Connection, options: &Options, now: DateTime<Utc>) -> Result<Report> {
    let started = Instant::now();
    let selected = select(&options.tables)?;
    let snapshots = options.out.join(SNAPSHOTS);
    let created = !options.out.exists();
    fs::create_dir_all(&snapshots).map_err(|source| ExportError::Folder {
        path: snapshots.clone(),
        cause: source,
    })?;
    // The export folder itself only when this export made it (an existing one is the
    // owner's choice); `snapshots/` always, so a snapshot is never more open than set.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let (dirs, _) = modes(options.group_readable);
        let folders = if created {
            vec![options.out.as_path(), snapshots.as_path()]
        } else {
            vec![snapshots.as_path()]
        };
        for folder in folders {
            fs::set_permissions(folder, fs::Permissions::from_mode(dirs))
                .map_err(io("setting the permissions of", folder))?;
        }
    }
    let _lock = lock(&options.out)?;
    let previous = check_same_kind(&options.out, false)?;
    remove_leftovers(&snapshots)?;

    let (run_id, run_ended_at) = last_run(conn)?;
    let schema_version: i64 = conn
        .query_row("SELECT max(version) FROM _schema", [], |r| r.get(0))
        .map_err(db("reading the schema version"))?;
    let id = snapshot_id(&snapshots, now, run_id);
    let tmp = snapshots.join(format!(".tmp-{id}"));
    fs::create_dir_all(&tmp).map_err(io("creating the snapshot folder", &tmp))?;

    let written = write_snapshot(conn, options, &selected, &tmp, previous.as_deref());
    let (tables, written) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp); // a killed export leaves it to the next one
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        snapshot: id.clone(),
        exported_at: now,
        run_id,
        run_ended_at,
        schema_version,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        tables,
        orgs: Vec::new(),
    };
    write_atomically(
        &tmp.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)
            .expect("manifest serialises")
            .as_bytes(),
    )?;
    // Data first, then names (see `durable`): a power cut never leaves `current` naming files
    // whose contents were not on disk.
    restrict(&tmp, options.group_readable)?;
    durable::sync_tree(&tmp).map_err(io("syncing the snapshot to disk", &tmp))?;
    let dir = snapshots.join(&id);
    fs::rename(&tmp, &dir).map_err(io("publishing the snapshot", &dir))?;
    durable::sync_dir(&snapshots).map_err(io("syncing", &snapshots))?;
    point_current(&options.out, &id)?;
    durable::sync_dir(&options.out).map_err(io("syncing", &options.out))?;
    prune(&snapshots, &id, previous.as_deref())?;
    Ok(Report {
        dir,
        manifest,
        written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Connections writing at once. DuckDB runs a statement of the writer on one thread
/// (`DUCKDB_THREADS` in the store), so one `COPY` at a time left a core idle for the whole
/// export; two connections use both. Their row groups share the memory one connection's had
/// ([`row_group_bytes`]).
pub const EXPORT_WORKERS: usize = 2;

/// Write the selected tables into `tmp` and carry the others over from `previous`: the
/// manifest entries, and the names of the tables written. Two rounds, each shared out to
/// [`EXPORT_WORKERS`] connections ([`share`]): each selected table's fingerprint, which
/// links it from `previous` or plans the `COPY`s that write it ([`plan`]); then every
/// planned `COPY`, the largest first. A partition is a `COPY` of its own, so the largest
/// table does not keep one connection busy after the other has written everything else
/// (`portfolio_items` took as long as all the other tables together).
fn write_snapshot(
    conn: &Connection,
    options: &Options,
    selected: &[&TableExport],
    tmp: &Path,
    previous: Option<&Path>,
) -> Result<(Vec<ManifestTable>, Vec<String>)> {
    let previous_manifest = previous.and_then(|p| Manifest::read(p).ok());
    let previous_entry =
        |name: &str| previous.zip(previous_manifest.as_ref().and_then(|m| m.table(name)));
    let mut queue: Vec<&TableExport> = TABLES
        .iter()
        .filter(|t| selected.iter().any(|s| s.name == t.name))
        .collect();
    let sizes = table_sizes(conn)?;
    let size = |name: &str| sizes.get(name).copied().unwrap_or(0);
    queue.sort_by_key(|t| std::cmp::Reverse(size(t.name)));
    let mut helpers = (1..EXPORT_WORKERS)
        .map(|_| conn.try_clone())
        .collect::<duckdb::Result<Vec<_>>>()
        .map_err(db("opening a second connection for the export"))?;
    let plans = share(conn, &mut helpers, &queue, |conn, table| {
        plan(
            conn,
            table,
            options,
            tmp,
            previous_entry(table.name),
            size(table.name),
        )
    })?;
    let mut parts: Vec<&Part> = plans
        .iter()
        .filter_map(|plan| match plan {
            Plan::Write { parts, .. } => Some(parts),
            Plan::Linked(_) => None,
        })
        .flatten()
        .collect();
    parts.sort_by_key(|part| std::cmp::Reverse(part.rows));
    let copied = share(conn, &mut helpers, &parts, |conn, part| {
        copy_part(conn, part, options)
    })?;
    let mut tables = Vec::new();
    let mut written = Vec::new();
    for table in TABLES {
        if let Some(i) = queue.iter().position(|t| t.name == table.name) {
            match &plans[i] {
                Plan::Linked(entry) => tables.push(entry.clone()),
                Plan::Write { fingerprint, .. } => {
                    let rows = parts
                        .iter()
                        .zip(&copied)
                        .filter(|(part, _)| part.table == table.name)
                        .map(|(_, rows)| rows)
                        .sum();
                    let (files, bytes) = tree_size(&tmp.join(table.name))?;
                    let glob = if table.partition_by.is_empty() {
                        format!("{}/*.parquet", table.name)
                    } else {
                        format!("{}/**/*.parquet", table.name)
                    };
                    tables.push(ManifestTable {
                        name: table.name.to_string(),
                        rows,
                        files,
                        bytes,
                        partition_by: table.partition_by.iter().map(|c| c.to_string()).collect(),
                        glob,
                        fingerprint: Some(fingerprint.clone()),
                    });
                    written.push(table.name.to_string());
                }
            }
        } else if !selected.iter().any(|t| t.name == table.name)
            && let Some((prev, entry)) = previous_entry(table.name)
        {
            link_tree(&prev.join(table.name), &tmp.join(table.name))?;
            tables.push(entry.clone());
        }
    }
    Ok((tables, written))
}

/// `work` on every item, shared out to `conn` (on this thread) and the `helpers` (one thread
/// each): each takes the next item not taken yet. The results in the items' order, or the
/// first error, after which no connection starts another item.
fn share<T: Sync, R: Send>(
    conn: &Connection,
    helpers: &mut [Connection],
    items: &[T],
    work: impl Fn(&Connection, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, Result<R>)>> = Mutex::new(Vec::new());
    let run = |conn: &Connection| {
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                break;
            };
            let result = work(conn, item);
            failed.fetch_or(result.is_err(), Ordering::Relaxed);
            done.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((i, result));
        }
    };
    let busy = helpers.len().min(items.len().saturating_sub(1));
    std::thread::scope(|scope| {
        for helper in &mut helpers[..busy] {
            scope.spawn(move || run(helper));
        }
        run(conn);
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = done.iter().position(|(_, r)| r.is_err())
        && let (_, Err(e)) = done.swap_remove(i)
    {
        return Err(e);
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done
        .into_iter()
        .map(|(_, r)| r.unwrap_or_else(|_| unreachable!("errors were returned above")))
        .collect())
}

/// A selected table after its fingerprint ([`plan`]).
enum Plan {
    /// Hard-linked from the previous snapshot: its entry there.
    Linked(ManifestTable),
    /// Written: the fingerprint its entry records, and the `COPY`s that write it.
    Write {
        fingerprint: String,
        parts: Vec<Part>,
    },
}

/// One `COPY` of an export: a whole table, or one of its partitions.
#[derive(Debug, PartialEq)]
struct Part {
    table: &'static str,
    /// The folder its files go into (empty until written: DuckDB names them `data_<i>`).
    folder: PathBuf,
    select: String,
    /// Its rows (DuckDB's estimate for a whole table), to start the largest first.
    rows: i64,
}

/// A selected table: hard-linked from the previous snapshot when its fingerprint is the one
/// that snapshot was written from (and the export is of everything, as every sync ends;
/// `--tables` rewrites what it names), else the `COPY`s that write it ([`parts`]); `rows`
/// is DuckDB's estimate of its rows.
fn plan(
    conn: &Connection,
    table: &'static TableExport,
    options: &Options,
    tmp: &Path,
    previous: Option<(&Path, &ManifestTable)>,
    rows: i64,
) -> Result<Plan> {
    let print = fingerprint(conn, table, options)?;
    if options.tables.is_empty()
        && let Some((prev, entry)) = previous
        && entry.fingerprint.as_deref() == Some(print.as_str())
    {
        let folder = tmp.join(table.name);
        match link_tree(&prev.join(table.name), &folder) {
            Ok(()) => return Ok(Plan::Linked(entry.clone())),
            // Files missing from the previous snapshot: write them anew.
            Err(_) => {
                let _ = fs::remove_dir_all(&folder);
            }
        }
    }
    Ok(Plan::Write {
        fingerprint: print,
        parts: parts(conn, table, tmp, rows)?,
    })
}

/// DuckDB's estimate of each table's rows, to start the largest first. A view (the history)
/// counts as the tables its SQL names, added up: counting its rows read 5M items and 5M
/// stored versions at 1M users (0.17 s of every publish), for an order.
fn table_sizes(conn: &Connection) -> Result<std::collections::HashMap<String, i64>> {
    let doing = "reading the table sizes";
    let mut stmt = conn
        .prepare(
            "SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = 'main'
             UNION ALL
             SELECT v.view_name, sum(t.estimated_size)::BIGINT
             FROM duckdb_views() v JOIN duckdb_tables() t
               ON t.schema_name = 'main' AND contains(v.sql, t.table_name)
             WHERE v.schema_name = 'main' AND NOT v.internal
             GROUP BY v.view_name",
        )
        .map_err(db(doing))?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db(doing))?
        .collect::<duckdb::Result<_>>()
        .map_err(db(doing))
}

/// The `COPY`s that write `table` into `<dir>/<table>/`: one of the whole table (`rows`, its
/// estimated rows), or one per partition, into its Hive folder.
fn parts(
    conn: &Connection,
    table: &'static TableExport,
    dir: &Path,
    rows: i64,
) -> Result<Vec<Part>> {
    let folder = dir.join(table.name);
    let columns = engine_columns(conn, table.name)?;
    let select = if table.derived.is_empty() {
        format!("SELECT {columns} FROM \"{}\"", table.name)
    } else {
        format!(
            "SELECT {columns}, {} FROM \"{}\"",
            table.derived, table.name
        )
    };
    if table.partition_by.is_empty() {
        return Ok(vec![Part {
            table: table.name,
            folder,
            select,
            rows,
        }]);
    }
    Ok(partitions(conn, table, &select)?
        .into_iter()
        .map(|partition| {
            let mut path = folder.clone();
            for (column, value) in table.partition_by.iter().zip(&partition.values) {
                path.push(format!("{column}={}", hive_value(value.as_deref())));
            }
            Part {
                table: table.name,
                folder: path,
                select: format!(
                    "SELECT * EXCLUDE ({}) FROM ({select}) WHERE {}",
                    table.partition_by.join(", "),
                    partition.filter
                ),
                rows: partition.rows,
            }
        })
        .collect())
}

/// One `COPY` by DuckDB's Parquet writer ([`PARQUET_COMPRESSION`]): the rows written.
fn copy_part(conn: &Connection, part: &Part, options: &Options) -> Result<u64> {
    let row_group_size = options.row_group_size;
    let row_group_bytes = options
        .row_group_bytes
        .map(|b| format!(", ROW_GROUP_SIZE_BYTES {b}"))
        .unwrap_or_default();
    let max_file_bytes = options.max_file_bytes;
    let folder = &part.folder;
    fs::create_dir_all(folder).map_err(io("creating the table folder", folder))?;
    // Into the (empty) folder: DuckDB starts `data_1.parquet` once `data_0` passes the size
    // cap (checked after each row group).
    conn.execute(
        &format!(
            "COPY ({}) TO '{}' (FORMAT parquet, {PARQUET_COMPRESSION}, \
             ROW_GROUP_SIZE {row_group_size}{row_group_bytes}, \
             FILE_SIZE_BYTES {max_file_bytes}, FILENAME_PATTERN 'data_{{i}}')",
            part.select,
            sql_path(folder)
        ),
        [],
    )
    .map(|rows| rows as u64)
    .map_err(db(format!("exporting `{}` to Parquet", part.table)))
}

/// What `table`'s files would be written from: its row count and a hash of every row (all
/// columns, as DuckDB hashes them), with the tool version (which fixes DuckDB's hash, the
/// schema and the column types written) and the file size cap. Reading the table for this
/// costs a fraction of writing it: compressing Parquet is most of an export.
fn fingerprint(conn: &Connection, table: &TableExport, options: &Options) -> Result<String> {
    // A sum, not a xor: two equal rows must not cancel out. The table's alias stands for the
    // whole row (a name no column has).
    let (rows, hash): (u64, String) = conn
        .query_row(
            &format!(
                "SELECT count(*), CAST(coalesce(sum(hash(whole_row)), 0) AS VARCHAR) \
                 FROM \"{}\" whole_row",
                table.name
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db(format!("reading `{}` for its fingerprint", table.name)))?;
    // Row-group sizes are left out: they bound the writer's memory, readers do not see them,
    // so `export` reuses what the end of `sync` wrote under its memory cap.
    Ok(format!(
        "{} rows {rows} hash {hash} tool {} file {}",
        table.name,
        env!("CARGO_PKG_VERSION"),
        options.max_file_bytes
    ))
}

/// The select list that writes `table` in types every mainstream engine reads (Spark, Trino
/// and Athena, Databricks, Snowflake, BigQuery, Power BI, polars, pyarrow, DuckDB):
///
/// * no unsigned integers (Spark and Trino refuse or widen them): `UBIGINT` is written as
///   `BIGINT` with the same 64 bits (`_hash`: equality, which is all it is for, is kept;
///   [`snapshot`] turns it back), narrower unsigned types widen to the next signed one;
/// * times as `TIMESTAMP` in microseconds holding UTC wall-clock time, as stored (Parquet
///   `TIMESTAMP(isAdjustedToUTC=false, MICROS)`): no nanoseconds, no INT96, and the same
///   answer whatever the reader's time zone (issue 18); `TIMESTAMPTZ` would make `::DATE`
///   and `date_trunc` depend on the reader's session zone;
/// * `JSON` as plain text (the Parquet JSON annotation is an extension type to pyarrow and
///   unknown to older Hive readers); [`snapshot`] turns it back;
/// * `DATE` stays `DATE`, lists stay lists, everything else as it is.
fn engine_columns(conn: &Connection, table: &str) -> Result<String> {
    let doing = || format!("reading the columns of `{table}`");
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        )
        .map_err(db(doing()))?;
    let columns: Vec<(String, String)> = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db(doing()))?
        .collect::<duckdb::Result<_>>()
        .map_err(db(doing()))?;
    Ok(columns
        .iter()
        .filter(|(name, _)| !UNEXPORTED_COLUMNS.contains(&(table, name.as_str())))
        .map(|(name, ty)| engine_column(name, ty))
        .collect::<Vec<_>>()
        .join(", "))
}

/// One column of [`engine_columns`]: `"name"` or `<expression> AS "name"`.
fn engine_column(name: &str, ty: &str) -> String {
    let c = format!("\"{}\"", name.replace('"', "\"\""));
    match ty {
        // The same 64 bits, read as two's complement: values >= 2^63 become negative.
        "UBIGINT" => format!(
            "CAST(CASE WHEN {c} >= 9223372036854775808 THEN {c}::HUGEINT - 18446744073709551616 \
             ELSE {c}::HUGEINT END AS BIGINT) AS {c}"
        ),
        "UINTEGER" => format!("CAST({c} AS BIGINT) AS {c}"),
        "USMALLINT" => format!("CAST({c} AS INTEGER) AS {c}"),
        "UTINYINT" => format!("CAST({c} AS SMALLINT) AS {c}"),
        "TIMESTAMP_NS" | "TIMESTAMP_MS" | "TIMESTAMP_S" | "TIMESTAMP WITH TIME ZONE" => {
            format!("CAST({c} AS TIMESTAMP) AS {c}")
        }
        "JSON" => format!("CAST({c} AS VARCHAR) AS {c}"),
        _ => c,
    }
}

/// One partition of a table ([`partitions`]).
struct Partition {
    /// The partition columns' values, as text (`None` for NULL).
    values: Vec<Option<String>>,
    /// The SQL filter selecting its rows.
    filter: String,
    rows: i64,
}

/// The partitions of a table, with their rows. One `COPY` per partition, rather than DuckDB's
/// `PARTITION_BY`, which buffers every open partition at once and needs far more than the
/// writer's memory limit for a 500k-item table.
fn partitions(conn: &Connection, table: &TableExport, select: &str) -> Result<Vec<Partition>> {
    let columns: Vec<String> = table
        .partition_by
        .iter()
        .map(|c| format!("CAST({c} AS VARCHAR)"))
        .collect();
    let doing = || format!("listing the partitions of `{}`", table.name);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {cols}, count(*) FROM ({select}) GROUP BY ALL ORDER BY ALL",
            cols = columns.join(", ")
        ))
        .map_err(db(doing()))?;
    let values: Vec<(Vec<Option<String>>, i64)> = stmt
        .query_map([], |r| {
            let values = (0..columns.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect::<duckdb::Result<_>>()?;
            Ok((values, r.get(columns.len())?))
        })
        .map_err(db(doing()))?
        .collect::<duckdb::Result<_>>()
        .map_err(db(doing()))?;
    Ok(values
        .into_iter()
        .map(|(values, rows)| {
            let filter = columns
                .iter()
                .zip(&values)
                .map(|(column, value)| match value {
                    Some(v) => format!("{column} = '{}'", v.replace('\'', "''")),
                    None => format!("{column} IS NULL"),
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            Partition {
                values,
                filter,
                rows,
            }
        })
        .collect())
}

/// A partition value as a Hive folder name: NULL is `__HIVE_DEFAULT_PARTITION__` (what Hive,
/// Spark, DuckDB and pyarrow read back as NULL); characters that are not safe in a path are
/// percent-encoded, as Hive does.
fn hive_value(value: Option<&str>) -> String {
    let Some(value) = value else {
        return "__HIVE_DEFAULT_PARTITION__".into();
    };
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A path as the body of a SQL string literal.
pub(crate) fn sql_path(path: &Path) -> String {
    path.display().to_string().replace('\'', "''")
}

/// The last successful run: (id, end time).
fn last_run(conn: &Connection) -> Result<(Option<i64>, Option<DateTime<Utc>>)> {
    conn.query_row(
        "SELECT max(run_id), max(ended_at)::TIMESTAMP::VARCHAR FROM _runs
         WHERE run_id = (SELECT max(run_id) FROM _runs WHERE status = 'succeeded')",
        [],
        |r| {
            let ended: Option<String> = r.get(1)?;
            Ok((
                r.get(0)?,
                ended.and_then(|t| {
                    chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
                        .ok()
                        .map(|n| n.and_utc())
                }),
            ))
        },
    )
    .map_err(db("reading the last run"))
}

/// A new snapshot name: export time (ms) and source run, unique in `snapshots`.
fn snapshot_id(snapshots: &Path, now: DateTime<Utc>, run: Option<i64>) -> String {
    let base = format!(
        "{}-run{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        run.map_or("none".to_string(), |r| r.to_string())
    );
    let mut id = base.clone();
    let mut n = 1;
    while snapshots.join(&id).exists() || snapshots.join(format!(".tmp-{id}")).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

/// The folder `current` points to, if there is one.
pub fn current_snapshot(out: &Path) -> Option<PathBuf> {
    let target = fs::read_link(out.join(CURRENT)).ok()?;
    let dir = out.join(target);
    dir.is_dir().then_some(dir)
}

/// Point `current` at `snapshots/<id>`: a new symlink under a temporary name, renamed over
/// the old one (rename replaces a symlink atomically; readers never see `current` missing).
fn point_current(out: &Path, id: &str) -> Result<()> {
    let link = out.join(CURRENT);
    let tmp = out.join(format!(".{CURRENT}.tmp"));
    let _ = fs::remove_file(&tmp);
    let target = Path::new(SNAPSHOTS).join(id);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &tmp).map_err(io("linking the snapshot", &tmp))?;
    #[cfg(not(unix))]
    return Err(io("linking the snapshot", &tmp)(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!(
            "snapshots are published through a symlink, only on Unix; read `{}`",
            target.display()
        ),
    )));
    #[cfg(unix)]
    fs::rename(&tmp, &link).map_err(io("publishing the snapshot as", &link))?;
    durable::switched(&link);
    Ok(())
}

/// Take the export folder's lock (released when the file is dropped).
fn lock(out: &Path) -> Result<fs::File> {
    let path = out.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("opening the export lock", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(ExportError::Busy {
            path: out.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io("locking the export folder", &path)(e)),
    }
}

/// Remove `.tmp-*` folders of killed exports (we hold the lock: no export is running).
fn remove_leftovers(snapshots: &Path) -> Result<()> {
    for entry in fs::read_dir(snapshots).map_err(io("listing", snapshots))? {
        let entry = entry.map_err(io("listing", snapshots))?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io("removing an interrupted export", &path))?;
        }
    }
    Ok(())
}

/// Keep the new snapshot and the one it replaced; delete older ones.
fn prune(snapshots: &Path, keep: &str, previous: Option<&Path>) -> Result<()> {
    let previous = previous.and_then(|p| p.file_name().map(|n| n.to_os_string()));
    for entry in fs::read_dir(snapshots).map_err(io("listing", snapshots))? {
        let entry = entry.map_err(io("listing", snapshots))?;
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        if hidden || name == keep || Some(&name) == previous.as_ref() {
            continue;
        }
        let path = entry.path();
        fs::remove_dir_all(&path).map_err(io("removing an old snapshot", &path))?;
    }
    Ok(())
}

/// Hard-link every file of `from` into `to` (same tree), for tables carried over unchanged.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io("creating", to))?;
    for entry in fs::read_dir(from).map_err(io("listing", from))? {
        let entry = entry.map_err(io("listing", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io("reading", &src))?.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            // A hard link costs nothing; a file system without them gets a copy.
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).map_err(io("copying", &dst))?;
            }
        }
    }
    Ok(())
}

/// (files, bytes) under `dir`.
pub(crate) fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let mut total = (0, 0);
    if !dir.exists() {
        return Ok(total);
    }
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let meta = entry.metadata().map_err(io("reading", &entry.path()))?;
        if meta.is_dir() {
            let (f, b) = tree_size(&entry.path())?;
            total = (total.0 + f, total.1 + b);
        } else {
            total = (total.0 + 1, total.1 + meta.len());
        }
    }
    Ok(total)
}

/// Write `bytes` to `path` through a temporary file and a rename, synced to disk.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io("writing", &tmp))?;
    file.write_all(bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming into place", path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh warehouse in a temporary folder (dropped with it) holding one portfolio item:
    /// the snapshot reader cannot define the view of a partitioned table that has no file at
    /// all.
    pub(crate) fn seeded_warehouse() -> (tempfile::TempDir, crate::store::Warehouse) {
        let tmp = tempfile::tempdir().unwrap();
        let warehouse = crate::store::Warehouse::open(tmp.path().join("w.duckdb")).unwrap();
        warehouse
            .connection()
            .execute_batch(
                "INSERT INTO portfolio_items (item_key, user_id, related_object_type, title,
                 occurrence, _hash, _first_seen_at, _updated_at, _run_id)
             VALUES ('k1', 'u1', 'TRAINING', 'Safety', 1, 1, TIMESTAMP '2026-01-01',
                     TIMESTAMP '2026-01-01', 1)",
            )
            .unwrap();
        (tmp, warehouse)
    }

    /// The row groups the export connections hold at once stay within an eighth of the cap
    /// (the share one connection had before there were two), down to the 1 MB floor.
    #[test]
    fn row_groups_in_flight_take_an_eighth_of_the_cap() {
        for cap in [20_000_000, 96_000_000, 1_000_000_000] {
            let each = row_group_bytes(cap);
            assert!(each * EXPORT_WORKERS as u64 <= cap / 8, "{cap}: {each}");
            assert!(each >= 1_000_000);
        }
        assert_eq!(row_group_bytes(96_000_000), 6_000_000);
    }

    /// The tables are written by two connections, the largest first, yet the manifest and
    /// the report list them in [`TABLES`] order; a table that fails stops the export with
    /// its name, and nothing is published.
    #[test]
    fn tables_written_at_once_are_listed_in_order_and_a_failure_publishes_nothing() {
        let (tmp, warehouse) = seeded_warehouse();
        let conn = warehouse.connection();
        // `group_members` the largest: started first, listed sixth.
        conn.execute_batch(
            "INSERT INTO group_members (group_id, user_id, role, _hash, _first_seen_at,
                 _updated_at, _run_id)
             SELECT 'g', 'u' || i, 'MEMBER', i, TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01', 1
             FROM range(5000) t(i)",
        )
        .unwrap();
        let out = tmp.path().join("export");
        let report = export(conn, &Options::new(&out), Utc::now()).unwrap();
        let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        let listed: Vec<&str> = report
            .manifest
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(listed, names);
        assert_eq!(report.written, names);
        assert_eq!(report.manifest.table("group_members").unwrap().rows, 5000);

        conn.execute_batch("DROP TABLE trainings").unwrap();
        let err = export(conn, &Options::new(&out), Utc::now()).unwrap_err();
        assert!(err.to_string().contains("`trainings`"), "{err}");
        assert_eq!(
            current_snapshot(&out).unwrap(),
            report.dir,
            "still the first snapshot"
        );
        let left: Vec<_> = fs::read_dir(out.join(SNAPSHOTS))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(left.iter().all(|n| !n.starts_with(".tmp")), "{left:?}");
    }

    /// An export of everything links the tables that have not changed since the current
    /// snapshot (same files) and writes the one that has; `--tables` rewrites what it names
    /// even when unchanged; a different file size cap writes everything again.
    #[test]
    fn unchanged_tables_are_linked_and_a_changed_one_written() {
        use std::os::unix::fs::MetadataExt;
        let (tmp, warehouse) = seeded_warehouse();
        let conn = warehouse.connection();
        conn.execute_batch(
            "INSERT INTO users (id, ref, name, _hash, _first_seen_at, _updated_at, _run_id)
             VALUES ('u1', 'r1', 'Ann', 1, TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01', 1)",
        )
        .unwrap();
        let out = tmp.path().join("export");
        let inode = |dir: &Path, table: &str| {
            fs::metadata(dir.join(table).join("data_0.parquet"))
                .unwrap()
                .ino()
        };
        let all = Options::new(&out);
        let first = export(conn, &all, Utc::now()).unwrap();
        assert_eq!(first.written.len(), TABLES.len(), "{:?}", first.written);

        let second = export(conn, &all, Utc::now()).unwrap();
        assert!(second.written.is_empty(), "{:?}", second.written);
        assert_ne!(second.dir, first.dir, "a new snapshot all the same");
        assert_eq!(inode(&second.dir, "users"), inode(&first.dir, "users"));
        assert_eq!(second.manifest.tables, first.manifest.tables);

        // The same row count, one value changed: `users` is written, the rest linked.
        conn.execute_batch("UPDATE users SET name = 'Bob'").unwrap();
        let third = export(conn, &all, Utc::now()).unwrap();
        assert_eq!(third.written, ["users"]);
        assert_ne!(inode(&third.dir, "users"), inode(&second.dir, "users"));
        assert_eq!(inode(&third.dir, "groups"), inode(&second.dir, "groups"));
        let reader = snapshot::Reader::snapshot(&out, String::new()).unwrap();
        let name: String = reader
            .connection()
            .query_row("SELECT name FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "Bob");

        // Named tables are written even when unchanged.
        let named = Options {
            tables: vec!["groups".into()],
            ..Options::new(&out)
        };
        assert_eq!(
            export(conn, &named, Utc::now()).unwrap().written,
            ["groups"]
        );

        // Another file size cap: the files would differ, so everything is written.
        let smaller = Options {
            max_file_bytes: 1_000_000,
            ..Options::new(&out)
        };
        let resized = export(conn, &smaller, Utc::now()).unwrap();
        assert_eq!(resized.written.len(), TABLES.len(), "{:?}", resized.written);
    }

    /// `JSON_COLUMNS` names every JSON column of the exported tables, and nothing else.
    #[test]
    fn json_columns_match_the_warehouse_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let warehouse = crate::store::Warehouse::open(tmp.path().join("w.duckdb")).unwrap();
        let mut stmt = warehouse
            .connection()
            .prepare(
                "SELECT table_name, column_name FROM information_schema.columns
                 WHERE table_schema = 'main' AND data_type = 'JSON' ORDER BY ALL",
            )
            .unwrap();
        let json: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap();
        let exported: Vec<(String, String)> = json
            .into_iter()
            .filter(|(t, _)| TABLES.iter().any(|e| e.name == t))
            .collect();
        let listed: Vec<(String, String)> = JSON_COLUMNS
            .iter()
            .map(|(t, c)| (t.to_string(), c.to_string()))
            .collect();
        assert_eq!(exported, listed);
    }

    /// A `_hash` with the top bit set is written as the negative `BIGINT` with the same bits
    /// (read here by the parquet crate, not DuckDB) and read back by the snapshot reader as
    /// the same `UBIGINT`; `extra_fields` is text in the file and `JSON` in the reader; every
    /// column is zstd-compressed.
    #[test]
    fn unsigned_hash_is_written_signed_and_read_back_unsigned() {
        let (tmp, warehouse) = seeded_warehouse();
        let big: u64 = 0xF000_0000_0000_0001;
        warehouse
            .connection()
            .execute_batch(&format!(
                "INSERT INTO users (id, ref, extra_fields, _hash, _first_seen_at, _updated_at, _run_id)
                 VALUES ('u1', 'r1', '{{\"a\": 1}}', {big}, TIMESTAMP '2026-01-02 03:04:05.123456',
                         TIMESTAMP '2026-01-02 03:04:05', 1),
                        ('u2', 'r2', NULL, 7, TIMESTAMP '2026-01-02 03:04:05',
                         TIMESTAMP '2026-01-02 03:04:05', 1)"
            ))
            .unwrap();
        let out = tmp.path().join("export");
        let report = export(warehouse.connection(), &Options::new(&out), Utc::now()).unwrap();

        let file = report.dir.join("users").join("data_0.parquet");
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            fs::File::open(&file).unwrap(),
        )
        .unwrap();
        // Every column chunk zstd ([`PARQUET_COMPRESSION`]; DuckDB's default is snappy).
        for group in builder.metadata().row_groups() {
            for column in group.columns() {
                assert!(
                    matches!(column.compression(), parquet::basic::Compression::ZSTD(_)),
                    "{:?}",
                    column.compression()
                );
            }
        }
        let reader = builder.build().unwrap();
        let mut hashes = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            for field in schema.fields() {
                assert!(
                    !field.data_type().is_unsigned_integer(),
                    "`{}` is {:?}",
                    field.name(),
                    field.data_type()
                );
            }
            assert_eq!(
                schema.field_with_name("extra_fields").unwrap().data_type(),
                &arrow::datatypes::DataType::Utf8
            );
            assert_eq!(
                schema
                    .field_with_name("_first_seen_at")
                    .unwrap()
                    .data_type(),
                &arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Microsecond,
                    None
                )
            );
            let column = batch
                .column_by_name("_hash")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("_hash is Int64");
            hashes.extend(column.values().iter().copied());
        }
        hashes.sort();
        assert_eq!(hashes, [big as i64, 7]);

        let conn = snapshot::open_snapshot(&report.dir, &report.manifest).unwrap();
        let read: Vec<(u64, String, Option<String>)> = conn
            .prepare(
                "SELECT _hash, typeof(_hash) || ' ' || typeof(extra_fields),
                        extra_fields->>'a' FROM users ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<duckdb::Result<_>>()
            .unwrap();
        assert_eq!(
            read,
            [
                (big, "UBIGINT JSON".to_string(), Some("1".to_string())),
                (7, "UBIGINT JSON".to_string(), None)
            ]
        );
    }

    /// Each partition of a partitioned table is a `COPY` of its own, with its rows, so that
    /// both connections share the largest table; the manifest adds them up.
    #[test]
    fn each_partition_is_written_by_a_copy_of_its_own() {
        let (tmp, warehouse) = seeded_warehouse();
        let conn = warehouse.connection();
        conn.execute_batch(
            "INSERT INTO portfolio_items (item_key, user_id, related_object_type, title,
                 occurrence, completion_date, _hash, _first_seen_at, _updated_at, _run_id)
             SELECT 'k' || i, 'u', CASE WHEN i < 3 THEN 'CERTIFICATE' ELSE 'TRAINING' END, 't',
                    1, CASE WHEN i < 8 THEN DATE '2025-03-01' END, i, TIMESTAMP '2026-01-01',
                    TIMESTAMP '2026-01-01', 1
             FROM range(2, 12) t(i)",
        )
        .unwrap();
        let portfolio = TABLES.iter().find(|t| t.name == "portfolio_items").unwrap();
        let dir = tmp.path().join("parts");
        let planned: Vec<(String, i64)> = parts(conn, portfolio, &dir, 0)
            .unwrap()
            .into_iter()
            .map(|p| {
                let folder = p.folder.strip_prefix(&dir).unwrap().display().to_string();
                (folder, p.rows)
            })
            .collect();
        let folder = |ty: &str, year: &str| {
            format!("portfolio_items/related_object_type={ty}/completion_year={year}")
        };
        assert_eq!(
            planned,
            [
                (folder("CERTIFICATE", "2025"), 1),
                (folder("TRAINING", "2025"), 5),
                (folder("TRAINING", "__HIVE_DEFAULT_PARTITION__"), 5),
            ]
        );

        let report = export(conn, &Options::new(tmp.path().join("export")), Utc::now()).unwrap();
        let items = report.manifest.table("portfolio_items").unwrap();
        assert_eq!((items.rows, items.files), (11, 3), "{items:?}");
    }

    /// [`share`] gives every item's result in the items' order, whichever connection ran it.
    #[test]
    fn shared_work_comes_back_in_order() {
        let (_tmp, warehouse) = seeded_warehouse();
        let conn = warehouse.connection();
        let mut helpers = vec![conn.try_clone().unwrap()];
        let items: Vec<i64> = (0..50).collect();
        let doubled = share(conn, &mut helpers, &items, |conn, i| {
            conn.query_row("SELECT ? * 2", [i], |r| r.get::<_, i64>(0))
                .map_err(db("doubling"))
        })
        .unwrap();
        assert_eq!(doubled, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    }

    /// With a small size cap a table is written as several files, each read by the snapshot
    /// reader: the same rows as the warehouse.
    #[test]
    fn a_table_over_the_size_cap_is_split_into_several_files() {
        let (tmp, warehouse) = seeded_warehouse();
        warehouse
            .connection()
            .execute_batch(
                "INSERT INTO users (id, name, _hash, _first_seen_at, _updated_at, _run_id)
                 SELECT 'u' || i, md5(i::VARCHAR) || md5((i * 7)::VARCHAR), i, TIMESTAMP '2026-01-01',
                        TIMESTAMP '2026-01-01', 1
                 FROM range(20000) t(i)",
            )
            .unwrap();
        let out = tmp.path().join("export");
        let options = Options {
            row_group_size: 2_000,
            max_file_bytes: 100_000,
            ..Options::new(&out)
        };
        let report = export(warehouse.connection(), &options, Utc::now()).unwrap();
        let users = report.manifest.table("users").unwrap();
        assert_eq!(users.rows, 20_000);
        assert!(users.files >= 3, "{users:?}");
        // Each file stays near the cap: at most the cap plus one row group.
        for entry in fs::read_dir(report.dir.join("users")).unwrap() {
            let len = entry.unwrap().metadata().unwrap().len();
            assert!(len < 100_000 + users.bytes / users.files * 2, "{len}");
        }
        let conn = snapshot::open_snapshot(&report.dir, &report.manifest).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(DISTINCT id) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20_000);
    }
}
