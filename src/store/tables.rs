//! The shape of every warehouse table, as data: which columns form the key, which are values
//! (with their DuckDB type), and whether the table keeps a history of versions.
//!
//! Streams build their Arrow batches from a [`TableSpec`] (see `batch.rs`) and hand both to
//! [`Warehouse::commit_page`](super::Warehouse::commit_page); the merge in `duckdb/merge.rs` is one
//! code path driven by the spec. The DDL in `sql/schema/*.sql` must agree with these specs; a
//! test compares them column by column.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sha2::{Digest, Sha256};

/// The DuckDB type of a key or value column, and with it the Arrow type of its batch column.
///
/// The discriminants are part of every stored `_hash` (the canonical encoding tags each cell
/// with its type): never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ColumnType {
    /// `VARCHAR` ← Arrow `Utf8`.
    Varchar = 1,
    /// `BOOLEAN` ← Arrow `Boolean`.
    Boolean = 2,
    /// `DOUBLE` ← Arrow `Float64`.
    Double = 3,
    /// `BIGINT` ← Arrow `Int64`.
    BigInt = 4,
    /// `DATE` ← Arrow `Date32` (chrono `NaiveDate`).
    Date = 5,
    /// `TIMESTAMP` holding UTC wall-clock time ← Arrow `Timestamp(µs)` without a time zone
    /// (chrono `DateTime<Utc>`). Naive on purpose: see `sql/schema/004_utc_timestamps.sql`.
    /// The number is part of the row hash: a row's hash did not change with the type.
    Timestamp = 6,
    /// `VARCHAR[]` ← Arrow `List<Utf8>`.
    VarcharList = 7,
    /// `JSON` ← Arrow `Utf8` holding JSON text (canonicalised by the batch builder).
    Json = 8,
}

impl ColumnType {
    /// The type as written in DDL.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Varchar => "VARCHAR",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Double => "DOUBLE",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::VarcharList => "VARCHAR[]",
            ColumnType::Json => "JSON",
        }
    }

    /// The type of the staging column the Arrow appender writes into (JSON is staged as text
    /// and cast by the merge, so a bad document fails the page with DuckDB's message).
    pub(crate) fn staging_sql(self) -> &'static str {
        match self {
            ColumnType::Json => "VARCHAR",
            other => other.sql(),
        }
    }

    /// The Arrow type of this column in a batch.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Varchar | ColumnType::Json => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Double => DataType::Float64,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::VarcharList => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
        }
    }
}

/// One column of a table spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

/// A table that keeps one row per version of some of its values (`valid_from`, `valid_to`).
/// A row's open version lives in the row (`_version_from`, `_version_run_id`); `table`
/// stores the versions that closed (and, in a warehouse synced before schema version 8,
/// open ones: see `sql/schema/008_open_versions.sql`), and the view `view` shows both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySpec {
    pub table: &'static str,
    pub view: &'static str,
    /// Value columns whose change opens a new version. Other value changes update the row
    /// without a new version.
    pub tracked: &'static [&'static str],
}

/// A warehouse table as the merge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub table: &'static str,
    /// Columns identifying a row; never NULL in a batch.
    pub key: &'static [Column],
    /// Columns copied from the source; their hash decides whether a row changed.
    pub values: &'static [Column],
    pub history: Option<HistorySpec>,
}

impl TableSpec {
    /// Key columns, then value columns: the column order of a batch for this table.
    pub fn columns(&self) -> impl Iterator<Item = &Column> + '_ {
        self.key.iter().chain(self.values.iter())
    }

    /// The Arrow schema a batch for this table must have (key columns are not nullable).
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .key
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow(), false))
            .chain(
                self.values
                    .iter()
                    .map(|c| Field::new(c.name, c.ty.arrow(), true)),
            )
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The table holding the keys seen by the scan in progress.
    pub fn seen_table(&self) -> String {
        format!("_seen_{}", self.table)
    }

    /// The table holding the keys a complete scan missed once (not yet deleted).
    pub fn missing_table(&self) -> String {
        format!("_missing_{}", self.table)
    }

    pub(crate) fn column(&self, name: &str) -> Option<&Column> {
        self.columns().find(|c| c.name == name)
    }
}

use ColumnType::*;

/// `users`: paginatedUsers, key `id`.
pub const USERS: TableSpec = TableSpec {
    table: "users",
    key: &[col("id", Varchar)],
    values: &[
        col("ref", Varchar),
        col("name", Varchar),
        col("email", Varchar),
        col("last_login", Timestamp),
        col("archived", Boolean),
        col("language", Varchar),
        col("roles", VarcharList),
        col("extra_fields", Json),
    ],
    history: None,
};

/// `portfolio_items`: portfolioReport, key `item_key` (see [`portfolio_item_key`]).
pub const PORTFOLIO_ITEMS: TableSpec = TableSpec {
    table: "portfolio_items",
    key: &[col("item_key", Varchar)],
    values: &[
        col("user_id", Varchar),
        col("user_ref", Varchar),
        col("related_object_type", Varchar),
        col("title", Varchar),
        col("occurrence", BigInt),
        col("progress", Double),
        col("score", Double),
        col("completion_date", Date),
        col("end_date", Date),
        col("time_spent_seconds", BigInt),
    ],
    history: Some(HistorySpec {
        table: "portfolio_item_versions",
        view: "portfolio_item_history",
        tracked: &[
            "progress",
            "score",
            "completion_date",
            "end_date",
            "time_spent_seconds",
        ],
    }),
};

/// `certificates`: certificate templates, key `id`.
pub const CERTIFICATES: TableSpec = TableSpec {
    table: "certificates",
    key: &[col("id", Varchar)],
    values: &[col("name", Varchar), col("title", Varchar)],
    history: None,
};

/// `groups`: paginatedGroups, key `id`.
pub const GROUPS: TableSpec = TableSpec {
    table: "groups",
    key: &[col("id", Varchar)],
    values: &[
        col("ref", Varchar),
        col("name", Varchar),
        col("user_count", BigInt),
    ],
    history: None,
};

/// `group_members`: key (group_id, user_id, role), role `participant` or `manager`.
pub const GROUP_MEMBERS: TableSpec = TableSpec {
    table: "group_members",
    key: &[
        col("group_id", Varchar),
        col("user_id", Varchar),
        col("role", Varchar),
    ],
    values: &[col("group_ref", Varchar), col("user_ref", Varchar)],
    history: None,
};

/// `trainings`: paginatedTrainings, key `id`.
pub const TRAININGS: TableSpec = TableSpec {
    table: "trainings",
    key: &[col("id", Varchar)],
    values: &[
        col("ref", Varchar),
        col("title", Varchar),
        col("is_active", Boolean),
        col("archived", Boolean),
        col("start_date", Timestamp),
        col("end_date", Timestamp),
    ],
    history: None,
};

/// Every data table, in the order `status` and `export` list them.
pub const ALL: &[&TableSpec] = &[
    &USERS,
    &PORTFOLIO_ITEMS,
    &CERTIFICATES,
    &GROUPS,
    &GROUP_MEMBERS,
    &TRAININGS,
];

/// The stable key of a portfolio item, whose API node has no id: lower-case hex of the first
/// 128 bits of SHA-256 over `user_id`, `related_object_type`, `title`, the issue date when
/// given, and `occurrence`, joined by U+001F.
///
/// Certificates pass their issue date (`completionDate`, fixed once issued): `occurrence` then
/// numbers certificates of one title issued to one user on the same day, so every item of a
/// completion-date window gets the same key as in a full scan, and deleting one issue of a
/// certificate does not renumber the others. Trainings pass `None` (their completion date
/// changes as they are completed): `occurrence` is 1 for the first item of that user and
/// title, 2 for the next, in the order the API lists them, which is stable between runs.
pub fn portfolio_item_key(
    user_id: &str,
    related_object_type: &str,
    title: &str,
    issued: Option<chrono::NaiveDate>,
    occurrence: u32,
) -> String {
    // The text is hashed piece by piece and the hex written into a fixed buffer: one of these
    // a portfolio row, where `format!` and `hex::encode` (a `char` at a time) were a quarter of
    // the portfolio's row building in a profile of a 100k-user sync.
    let mut hasher = Sha256::new();
    for piece in [user_id, related_object_type, title] {
        hasher.update(piece.as_bytes());
        hasher.update(b"\x1f");
    }
    if let Some(day) = issued {
        hasher.update(day.to_string().as_bytes());
        hasher.update(b"\x1f");
    }
    hasher.update(occurrence.to_string().as_bytes());
    let digest = hasher.finalize();
    let mut hex = [0u8; 32];
    hex::encode_to_slice(&digest[..16], &mut hex).expect("32 hex digits for 16 bytes");
    String::from_utf8(hex.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portfolio_item_key_is_stable() {
        // A fixed vector: changing the key function would orphan every stored item.
        let key = portfolio_item_key(
            "3f1c2a9e-0000-4000-8000-000000000001",
            "TRAINING",
            "First aid",
            None,
            1,
        );
        assert_eq!(key.len(), 32);
        // printf '3f1c…0001\x1fTRAINING\x1fFirst aid\x1f1' | sha256sum | cut -c1-32
        assert_eq!(key, "cefc9c0ede47ef723924d798b2b1a09e");
        let user = "3f1c2a9e-0000-4000-8000-000000000001";
        assert_ne!(
            key,
            portfolio_item_key(user, "TRAINING", "First aid", None, 2)
        );
        let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 1);
        // printf '3f1c…0001\x1fCERTIFICATE\x1fFirst aid\x1f2026-03-01\x1f1' | sha256sum | cut -c1-32
        assert_eq!(
            portfolio_item_key(user, "CERTIFICATE", "First aid", day, 1),
            "a0d480ec4679cf59d66b7ac561f0038d"
        );
    }

    #[test]
    fn spec_columns_are_unique_and_history_tracks_values() {
        for spec in ALL {
            let mut names: Vec<_> = spec.columns().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                spec.key.len() + spec.values.len(),
                "{}",
                spec.table
            );
            if let Some(history) = spec.history {
                for tracked in history.tracked {
                    assert!(spec.values.iter().any(|c| c.name == *tracked), "{tracked}");
                }
            }
        }
    }
}
