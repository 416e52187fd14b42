//! Schema versions: the ordered migrations in `sql/schema/NNN_*.sql`, the `_schema` table that
//! records which were applied, and the checks run when a file is opened.
//!
//! A writer migrates an older file in place, one migration per transaction (a migration
//! killed halfway leaves the previous version intact). Any opener refuses a file whose
//! version is newer than this build knows, and a non-empty file without `_schema`.

use std::path::Path;

use chrono::{DateTime, Utc};
use duckdb::{Connection, params};

use super::{Result, StoreError};

/// One step of the schema. Versions start at 1 and have no gaps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub sql: &'static str,
    /// Whether `sql` runs on this file; where it does not, the version is recorded without
    /// it. For a migration that only changes how rows are stored ([`new_v1_file`]).
    pub applies: fn(&Connection) -> duckdb::Result<bool>,
}

/// Every migration, oldest first. Add a file and a line here; never edit a released one.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../sql/schema/001_init.sql"),
        applies: always,
    },
    Migration {
        version: 2,
        sql: include_str!("../../sql/schema/002_push.sql"),
        applies: always,
    },
    Migration {
        version: 3,
        sql: include_str!("../../sql/schema/003_webhooks.sql"),
        applies: always,
    },
    Migration {
        version: 4,
        sql: include_str!("../../sql/schema/004_utc_timestamps.sql"),
        applies: always,
    },
    Migration {
        version: 5,
        sql: include_str!("../../sql/schema/005_safety.sql"),
        applies: always,
    },
    Migration {
        version: 6,
        sql: include_str!("../../sql/schema/006_no_index.sql"),
        applies: always,
    },
    Migration {
        version: 7,
        sql: include_str!("../../sql/schema/007_compression.sql"),
        applies: new_v1_file,
    },
    Migration {
        version: 8,
        sql: include_str!("../../sql/schema/008_open_versions.sql"),
        applies: always,
    },
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// _schema: the migrations applied to this file (`sql/schema/NNN_*.sql`), one row each, and
/// the pluvo-warehouse version that applied it. Created before the first migration.
const CREATE_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS _schema (
    version      BIGINT NOT NULL PRIMARY KEY, -- migration number (sql/schema/NNN_*.sql)
    applied_at   TIMESTAMPTZ NOT NULL,
    tool_version VARCHAR NOT NULL             -- pluvo-warehouse version that applied it
)";

/// The file's schema version: `None` for an empty database (nothing created yet).
pub(crate) fn version(conn: &Connection, path: &Path) -> Result<Option<i64>> {
    let db = |source| StoreError::Db {
        doing: "reading the schema version",
        cause: source,
    };
    let (has_schema, others): (bool, i64) = conn
        .query_row(
            "SELECT count(*) FILTER (table_name = '_schema') > 0,
                    count(*) FILTER (table_name <> '_schema')
             FROM (SELECT table_name FROM duckdb_tables()
                   WHERE NOT temporary AND database_name = current_database()
                   UNION ALL
                   SELECT view_name FROM duckdb_views()
                   WHERE NOT internal AND NOT temporary AND database_name = current_database())",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    if !has_schema {
        if others == 0 {
            return Ok(None);
        }
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: format!("it has {others} tables but no `_schema` table"),
        });
    }
    let version: Option<i64> = conn
        .query_row("SELECT max(version) FROM _schema", [], |r| r.get(0))
        .map_err(db)?;
    Ok(Some(version.unwrap_or(0)))
}

/// Refuse a file written by a newer pluvo-warehouse.
pub(crate) fn check_not_newer(path: &Path, found: i64, known: i64) -> Result<()> {
    if found > known {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    Ok(())
}

/// Bring the file up to the newest of `migrations`; returns the version it ends at.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
    now: DateTime<Utc>,
) -> Result<i64> {
    let known = migrations.last().map_or(0, |m| m.version);
    let found = version(conn, path)?.unwrap_or(0);
    check_not_newer(path, found, known)?;
    for migration in migrations.iter().filter(|m| m.version > found) {
        let failed = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            version: migration.version,
            cause: source,
        };
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(CREATE_SCHEMA_TABLE).map_err(failed)?;
        if (migration.applies)(&tx).map_err(failed)? {
            run_sql(&tx, migration.sql).map_err(failed)?;
        }
        tx.execute(
            "INSERT INTO _schema VALUES (?, ?::TIMESTAMPTZ, ?)",
            params![
                migration.version,
                now.to_rfc3339(),
                env!("CARGO_PKG_VERSION")
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    if found > 0 && known > found {
        // What a migration wrote stays in DuckDB's memory until a checkpoint: migration 8's
        // two new columns of a 1M-user `portfolio_items` (6M rows) took all of the default
        // cap, and the sync that followed ran out of memory in the end of its first scan.
        conn.execute_batch("CHECKPOINT")
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                version: known,
                cause: source,
            })?;
    }
    Ok(known.max(found))
}

/// A migration's SQL, statement by statement in order, except that a run of
/// `ALTER TABLE t ADD COLUMN ...` statements on one table rebuilds the table with the new
/// columns ([`add_columns`]).
fn run_sql(tx: &Connection, sql: &str) -> duckdb::Result<()> {
    let mut plain = String::new();
    let mut adding: Option<(String, Vec<String>)> = None;
    for statement in statements(sql) {
        match added_column(statement) {
            Some((table, column)) => {
                tx.execute_batch(&std::mem::take(&mut plain))?;
                match &mut adding {
                    Some((t, columns)) if *t == table => columns.push(column),
                    _ => {
                        if let Some((t, columns)) = adding.replace((table, vec![column])) {
                            add_columns(tx, &t, &columns)?;
                        }
                    }
                }
            }
            None => {
                if let Some((t, columns)) = adding.take() {
                    add_columns(tx, &t, &columns)?;
                }
                plain.push_str(statement);
                plain.push('\n');
            }
        }
    }
    if let Some((t, columns)) = adding {
        add_columns(tx, &t, &columns)?;
    }
    tx.execute_batch(&plain)
}

/// The statements of `sql`, each with the comment lines above it: a statement ends on a line
/// whose code (before a `--` comment) ends with `;`.
fn statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in sql.split_inclusive('\n') {
        at += line.len();
        let code = line.split_once("--").map_or(line, |(code, _)| code);
        if code.trim_end().ends_with(';') {
            out.push(&sql[start..at]);
            start = at;
        }
    }
    if !sql[start..].trim().is_empty() {
        out.push(&sql[start..]);
    }
    out
}

/// `(table, column definition)` of an `ALTER TABLE table ADD COLUMN definition;` statement.
fn added_column(statement: &str) -> Option<(String, String)> {
    let code: Vec<&str> = statement
        .lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code).trim())
        .filter(|l| !l.is_empty())
        .collect();
    let code = code.join(" ");
    let rest = code.strip_prefix("ALTER TABLE ")?;
    let (table, rest) = rest.split_once(' ')?;
    let column = rest
        .strip_prefix("ADD COLUMN ")?
        .trim_end_matches(';')
        .trim();
    Some((table.to_string(), column.to_string()))
}

/// Add `columns` (definitions, NULL in every row) to `table` by rebuilding it: a table of
/// DuckDB's own definition of it (types, constraints, compression) plus the columns, filled
/// by one `INSERT ... SELECT`, then renamed over it. DuckDB's `ADD COLUMN` holds the new
/// column of every row in memory, beyond what it can spill: one `TIMESTAMP` column of 10M rows
/// did not fit a 20 MB cap, and two of 29M rows (5M users) not the default 80 MB. The insert
/// writes full row groups into the file as it goes, so a rebuild fits any cap: 10M rows at
/// 20 MB took 4.6 s. It costs the table's size in the file once (blocks DuckDB reuses later).
/// The table must have no index (no table of the warehouse has one: 006_no_index.sql).
fn add_columns(tx: &Connection, table: &str, columns: &[String]) -> duckdb::Result<()> {
    let name = table.trim_matches('"');
    let definition: String = tx.query_row(
        "SELECT sql FROM duckdb_tables()
         WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        [name],
        |r| r.get(0),
    )?;
    let (Some(open), Some(close)) = (definition.find('('), definition.rfind(')')) else {
        return Err(duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error::new(1),
            Some(format!(
                "cannot read the definition of `{name}`: {definition}"
            )),
        ));
    };
    let rebuilt = format!("_rebuilt_{name}");
    let nulls = vec!["NULL"; columns.len()].join(", ");
    tx.execute_batch(&format!(
        "CREATE TABLE \"{rebuilt}\" ({}, {});
         INSERT INTO \"{rebuilt}\" SELECT *, {nulls} FROM \"{name}\";
         DROP TABLE \"{name}\";
         ALTER TABLE \"{rebuilt}\" RENAME TO \"{name}\";",
        &definition[open + 1..close],
        columns.join(", "),
    ))
}

/// The tables migration 7 rebuilds with their text columns' compression named.
const COMPRESSION_NAMED: [&str; 4] = [
    "users",
    "portfolio_items",
    "portfolio_item_history",
    "group_members",
];

/// Every migration but 007 runs on every file.
fn always(_: &Connection) -> duckdb::Result<bool> {
    Ok(true)
}

/// Migration 7 runs on a new warehouse in storage format v1.0.0, the one this tool creates
/// (`STORAGE_VERSION`): it names FSST and dictionary compression, which newer formats
/// replaced by DICT_FSST (DuckDB refuses them there), and it rebuilds the large tables,
/// which only costs nothing while they are empty. Other files keep DuckDB's own choice.
fn new_v1_file(conn: &Connection) -> duckdb::Result<bool> {
    let format: Option<String> = conn.query_row(
        "SELECT tags['storage_version'] FROM duckdb_databases()
         WHERE database_name = current_database()",
        [],
        |r| r.get(0),
    )?;
    if !format.is_some_and(|f| f.starts_with(super::duckdb::STORAGE_VERSION)) {
        return Ok(false);
    }
    for table in COMPRESSION_NAMED {
        let any: bool = conn.query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM main.{table})"),
            [],
            |r| r.get(0),
        )?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 31, 10, 0, 0).unwrap()
    }

    const V2: Migration = Migration {
        version: 2,
        sql: "ALTER TABLE users ADD COLUMN department VARCHAR;",
        applies: always,
    };

    #[test]
    fn older_file_is_migrated_in_place_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(
            migrate(&mut conn, &path, &MIGRATIONS[..1], now()).unwrap(),
            1
        );
        conn.execute_batch(
            "INSERT INTO users (id, _hash, _first_seen_at, _updated_at, _run_id)
             VALUES ('u1', 1, now(), now(), 1)",
        )
        .unwrap();
        drop(conn);

        let mut conn = Connection::open(&path).unwrap();
        let migrations = [MIGRATIONS[0], V2];
        assert_eq!(migrate(&mut conn, &path, &migrations, now()).unwrap(), 2);
        let (n, dept): (i64, Option<String>) = conn
            .query_row(
                "SELECT count(*), any_value(department) FROM users",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, dept), (1, None));
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM _schema ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(versions, [1, 2]);
        // Opening again is a no-op.
        assert_eq!(migrate(&mut conn, &path, &migrations, now()).unwrap(), 2);
    }

    #[test]
    fn a_version_1_file_opens_as_the_current_schema_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &MIGRATIONS[..1], now()).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, ref, _hash, _first_seen_at, _updated_at, _run_id)
             VALUES ('u1', 'R1', 1, now(), now(), 1)",
        )
        .unwrap();
        drop(conn);

        // What a newer tool does on open: every later migration, in place.
        let w = crate::store::Warehouse::open(&path).unwrap();
        assert_eq!(w.schema_version(), SCHEMA_VERSION);
        let conn = w.connection();
        let kept: String = conn
            .query_row("SELECT ref FROM users WHERE id = 'u1'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, "R1");
        for table in ["_push_plans", "_push_ledger", "webhook_events"] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table} exists and is empty");
        }
    }

    /// Migration 4: a version-3 file's TIMESTAMPTZ values become the same instants as UTC
    /// wall-clock TIMESTAMPs (and no index is left on `users`: migration 6).
    #[test]
    fn a_version_3_file_keeps_its_instants_as_utc_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &MIGRATIONS[..3], now()).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, ref, last_login, _hash, _first_seen_at, _updated_at, _run_id)
             VALUES ('u1', 'R1', TIMESTAMPTZ '2026-01-02 03:04:05.123456+00', 1,
                     TIMESTAMPTZ '2025-12-31 23:30:00+00', now(), 1);
             INSERT INTO _runs (run_id, status, streams, started_at)
             VALUES (1, 'succeeded', '[]', TIMESTAMPTZ '2026-01-02 00:00:00+00')",
        )
        .unwrap();
        drop(conn);

        let w = crate::store::Warehouse::open(&path).unwrap();
        let row: (String, String, String, String) = w
            .connection()
            .query_row(
                "SELECT typeof(last_login), last_login::VARCHAR, _first_seen_at::DATE::VARCHAR,
                        (SELECT started_at::VARCHAR FROM _runs)
                 FROM users",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "TIMESTAMP".to_string(),
                "2026-01-02 03:04:05.123456".to_string(),
                "2025-12-31".to_string(),
                "2026-01-02 00:00:00".to_string()
            )
        );
        let indexes: i64 = w
            .connection()
            .query_row(
                "SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'users_ref'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0);
    }

    /// Rows like a sync's in the four large tables: three repeated names in `users`, which
    /// DuckDB's own choice stores as a dictionary.
    const LARGE_TABLE_ROWS: &str = "
        INSERT INTO users (id, ref, name, roles, _hash, _first_seen_at, _updated_at, _run_id)
        SELECT 'u' || i, CASE WHEN i % 7 <> 0 THEN 'R' || i END, 'Name ' || (i % 3),
               ['USER'], i, TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-02', 1
        FROM range(3000) t(i);
        INSERT INTO portfolio_items (item_key, user_id, related_object_type, title,
            occurrence, progress, _hash, _first_seen_at, _updated_at, _run_id)
        SELECT 'k' || i, 'u' || (i // 5), 'TRAINING', 'T' || (i % 4), 1,
               CASE WHEN i % 2 = 0 THEN i END, i, TIMESTAMP '2026-01-01',
               TIMESTAMP '2026-01-01', 1
        FROM range(5000) t(i);
        INSERT INTO portfolio_item_history (item_key, progress, valid_from, _run_id)
        SELECT item_key, progress, _first_seen_at, 1 FROM portfolio_items;
        INSERT INTO group_members (group_id, user_id, role, _hash, _first_seen_at,
            _updated_at, _run_id)
        SELECT 'g' || (i % 2), 'u' || i, 'participant', i, TIMESTAMP '2026-01-01',
               TIMESTAMP '2026-01-01', 1
        FROM range(3000) t(i);
        CHECKPOINT;";

    /// How the checkpointed `users.name` is compressed, and how many tables name a
    /// compression in their definition.
    fn compression(conn: &Connection) -> (String, i64) {
        conn.query_row(
            "SELECT (SELECT string_agg(DISTINCT compression, ',')
                     FROM pragma_storage_info('users')
                     WHERE column_name = 'name' AND segment_type = 'VARCHAR'),
                    (SELECT count(*) FROM duckdb_tables()
                     WHERE sql LIKE '%USING COMPRESSION%')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// A file in the storage format the tool creates (v1.0.0).
    fn open_as_the_tool(path: &Path) -> Connection {
        let config = crate::store::duckdb::duckdb_config(duckdb::AccessMode::ReadWrite).unwrap();
        Connection::open_with_flags(path, config).unwrap()
    }

    /// Migration 7 names the text columns' compression of a new warehouse's large tables;
    /// their checkpoints then use it.
    #[test]
    fn a_new_file_compresses_its_text_as_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = open_as_the_tool(&path);
        assert_eq!(
            migrate(&mut conn, &path, &MIGRATIONS[..7], now()).unwrap(),
            7
        );
        conn.execute_batch(LARGE_TABLE_ROWS).unwrap();
        assert_eq!(compression(&conn), ("FSST".to_string(), 4));
    }

    /// ... and leaves a synced file's tables as they are (rebuilt, its file would double):
    /// every row, value and NULL in place, DuckDB's own compression, version 7 recorded.
    #[test]
    fn a_synced_version_6_file_keeps_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = open_as_the_tool(&path);
        migrate(&mut conn, &path, &MIGRATIONS[..6], now()).unwrap();
        conn.execute_batch(LARGE_TABLE_ROWS).unwrap();
        // Every row and its position: a hash of the rows in storage order, per table.
        let fingerprint = |conn: &Connection| -> Vec<String> {
            COMPRESSION_NAMED
                .iter()
                .map(|t| {
                    conn.query_row(
                        &format!(
                            "SELECT count(*) || ' ' || sum(hash(r) * (rowid + 1))::VARCHAR
                             FROM {t} r"
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .unwrap()
                })
                .collect()
        };
        let before = fingerprint(&conn);
        assert_eq!(compression(&conn), ("Dictionary".to_string(), 0));
        // Not rewritten: the rows stay in the blocks they were in.
        let blocks = |conn: &Connection| -> String {
            conn.query_row(
                "SELECT string_agg(block_id::VARCHAR, ',' ORDER BY block_id)
                 FROM pragma_storage_info('portfolio_items') WHERE persistent",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let blocks_before = blocks(&conn);

        assert_eq!(
            migrate(&mut conn, &path, &MIGRATIONS[..7], now()).unwrap(),
            7
        );
        conn.execute_batch("CHECKPOINT").unwrap();
        assert_eq!(fingerprint(&conn), before);
        assert_eq!(compression(&conn), ("Dictionary".to_string(), 0));
        assert_eq!(blocks(&conn), blocks_before);
    }

    /// ... and a new file in DuckDB's newer storage format (made by another client, or by this
    /// tool before it pinned the format) opens too: DuckDB refuses FSST and dictionary there.
    #[test]
    fn a_new_file_in_a_newer_format_keeps_duckdbs_compression() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(
            migrate(&mut conn, &path, &MIGRATIONS[..7], now()).unwrap(),
            7
        );
        conn.execute_batch(LARGE_TABLE_ROWS).unwrap();
        assert_eq!(compression(&conn), ("DICT_FSST".to_string(), 0));
    }

    /// Migration 8: a synced version-7 file's history reads the same through the view, its
    /// versions (open ones too) kept in `portfolio_item_versions`, and no row holds one.
    #[test]
    fn a_synced_version_7_file_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = open_as_the_tool(&path);
        migrate(&mut conn, &path, &MIGRATIONS[..7], now()).unwrap();
        conn.execute_batch(LARGE_TABLE_ROWS).unwrap();
        // A closed version before each open one of the even items.
        conn.execute_batch(
            "INSERT INTO portfolio_item_history (item_key, progress, valid_from, valid_to, _run_id)
             SELECT item_key, 1, TIMESTAMP '2025-12-01', _first_seen_at, 1
             FROM portfolio_items WHERE progress IS NOT NULL",
        )
        .unwrap();
        let history = |conn: &Connection| -> (i64, i64, String) {
            conn.query_row(
                "SELECT count(*), count(valid_to), sum(hash(h))::VARCHAR
                 FROM portfolio_item_history h",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        let before = history(&conn);
        assert_eq!((before.0, before.1), (7500, 2500));

        assert_eq!(migrate(&mut conn, &path, MIGRATIONS, now()).unwrap(), 8);
        assert_eq!(history(&conn), before);
        // Checkpointed: nothing the migration wrote is left in DuckDB's memory.
        let in_memory: i64 = conn
            .query_row(
                "SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()
                 WHERE tag = 'IN_MEMORY_TABLE'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_memory, 0);
        let (stored, held): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM portfolio_item_versions),
                        (SELECT count(_version_from) FROM portfolio_items)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((stored, held), (7500, 0));
    }

    /// Migration 8 adds two columns to `portfolio_items` by rebuilding it: DuckDB's own
    /// `ADD COLUMN` held them for every row in memory, and ran out of a small cap on a large
    /// table (10M rows and 20 MB here; 29M rows and the default 80 MB in a 5M-user warehouse).
    #[test]
    fn a_large_version_7_file_migrates_under_a_small_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let mut conn = open_as_the_tool(&path);
        migrate(&mut conn, &path, &MIGRATIONS[..7], now()).unwrap();
        conn.execute_batch(
            "INSERT INTO portfolio_items (item_key, user_id, related_object_type, title,
                 occurrence, progress, _hash, _first_seen_at, _updated_at, _run_id)
             SELECT 'k' || i, 'u' || (i // 5), 'TRAINING', 'T' || (i % 4), 1, i % 100, i,
                    TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01', 1
             FROM range(10000000) t(i);
             CHECKPOINT;
             SET memory_limit = '20MB'; SET threads = 1;",
        )
        .unwrap();
        let definition = |conn: &Connection| -> String {
            conn.query_row(
                "SELECT sql FROM duckdb_tables() WHERE table_name = 'portfolio_items'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let before = definition(&conn);
        assert_eq!(migrate(&mut conn, &path, MIGRATIONS, now()).unwrap(), 8);
        let (items, held, progress): (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), count(_version_from), sum(progress)::BIGINT FROM portfolio_items",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((items, held, progress), (10_000_000, 0, 495_000_000));
        // The same definition (types, NOT NULL, compression), two columns longer.
        assert_eq!(
            definition(&conn),
            before.replace(");", ", _version_from TIMESTAMP, _version_run_id BIGINT);")
        );
    }

    #[test]
    fn a_migration_is_read_statement_by_statement() {
        let sql = "-- a comment; not an end\nCREATE TABLE t (a INT); -- one\n\n\
                   ALTER TABLE \"t\" ADD COLUMN b TIMESTAMP; -- why\nCREATE VIEW v AS\n  SELECT 1;\n";
        let statements = statements(sql);
        assert_eq!(statements.len(), 3, "{statements:?}");
        assert_eq!(added_column(statements[0]), None);
        assert_eq!(
            added_column(statements[1]),
            Some(("\"t\"".to_string(), "b TIMESTAMP".to_string()))
        );
        assert!(statements[2].contains("SELECT 1;"));
    }

    #[test]
    fn newer_file_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pluvo.duckdb");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &[MIGRATIONS[0], V2], now()).unwrap();
        let err = migrate(&mut conn, &path, &MIGRATIONS[..1], now()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("`") && text.contains("pluvo.duckdb` has schema version 2, this pluvo-warehouse knows up to 1; upgrade the tool"),
            "{text}"
        );
    }

    #[test]
    fn foreign_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.duckdb");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let err = migrate(&mut conn, &path, MIGRATIONS, now())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is not a pluvo-warehouse database (it has 1 tables"),
            "{err}"
        );
    }
}
