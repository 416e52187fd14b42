//! Rows → Arrow: typed cells, a row builder checked against a [`TableSpec`], and the
//! Arrow-level work the merge needs before a batch reaches DuckDB (shape check, content hash,
//! deduplication by key: [`prepare`]), which runs on any thread.
//!
//! A stream turns one page of its rows into a batch like this:
//! ```ignore
//! let mut batch = BatchBuilder::new(&tables::USERS);
//! for user in page {
//!     let mut row = batch.row();
//!     row.set("id", &user.id)?.set("ref", user.ref_.as_deref())?.set("roles", user.roles.as_slice())?;
//!     // ... every column of the spec, by name, in any order
//!     batch.push(row)?;
//! }
//! warehouse.commit_page(&tables::USERS, batch.finish()?, "users", &checkpoint, run)?;
//! ```
//! Nothing here touches DuckDB.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, Float64Array,
    Float64Builder, Int64Array, Int64Builder, ListArray, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder, UInt32Array, UInt64Array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::tables::{Column, ColumnType, TableSpec};
use super::{Result, StoreError};

/// One value of a row, typed as its column will be stored. Text is borrowed when it can be:
/// a row goes into its batch while the page it was built from is still alive, and copying
/// every string of every row into an owned cell first was a third of the portfolio's row
/// building in a profile of a 100k-user sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Varchar(Cow<'a, str>),
    Boolean(bool),
    Double(f64),
    BigInt(i64),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    VarcharList(Cow<'a, [String]>),
    /// Canonical JSON text (object keys sorted, no insignificant whitespace); build with
    /// [`Cell::json`] or from a `serde_json::Value`.
    Json(String),
}

impl Cell<'_> {
    /// JSON text → canonical JSON cell, so that the same document always hashes the same.
    /// Errors name nothing; [`Row::set`] adds the column.
    pub fn json(text: &str) -> std::result::Result<Cell<'static>, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(Cell::from(value))
    }

    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Varchar(_) => "text",
            Cell::Boolean(_) => "a boolean",
            Cell::Double(_) => "a float",
            Cell::BigInt(_) => "an integer",
            Cell::Date(_) => "a date",
            Cell::Timestamp(_) => "a timestamp",
            Cell::VarcharList(_) => "a list of text",
            Cell::Json(_) => "JSON",
        }
    }
}

fn expected(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Varchar => "text",
        ColumnType::Boolean => "a boolean",
        ColumnType::Double => "a float",
        ColumnType::BigInt => "an integer",
        ColumnType::Date => "a date",
        ColumnType::Timestamp => "a timestamp",
        ColumnType::VarcharList => "a list of text",
        ColumnType::Json => "JSON",
    }
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(v: &'a str) -> Cell<'a> {
        Cell::Varchar(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a String> for Cell<'a> {
    fn from(v: &'a String) -> Cell<'a> {
        Cell::Varchar(Cow::Borrowed(v))
    }
}
impl From<String> for Cell<'_> {
    fn from(v: String) -> Self {
        Cell::Varchar(Cow::Owned(v))
    }
}
impl From<bool> for Cell<'_> {
    fn from(v: bool) -> Self {
        Cell::Boolean(v)
    }
}
impl From<f64> for Cell<'_> {
    fn from(v: f64) -> Self {
        Cell::Double(v)
    }
}
impl From<i64> for Cell<'_> {
    fn from(v: i64) -> Self {
        Cell::BigInt(v)
    }
}
impl From<i32> for Cell<'_> {
    fn from(v: i32) -> Self {
        Cell::BigInt(v.into())
    }
}
impl From<u32> for Cell<'_> {
    fn from(v: u32) -> Self {
        Cell::BigInt(v.into())
    }
}
impl From<NaiveDate> for Cell<'_> {
    fn from(v: NaiveDate) -> Self {
        Cell::Date(v)
    }
}
impl From<DateTime<Utc>> for Cell<'_> {
    fn from(v: DateTime<Utc>) -> Self {
        Cell::Timestamp(v)
    }
}
impl From<Vec<String>> for Cell<'_> {
    fn from(v: Vec<String>) -> Self {
        Cell::VarcharList(Cow::Owned(v))
    }
}
impl<'a> From<&'a [String]> for Cell<'a> {
    fn from(v: &'a [String]) -> Cell<'a> {
        Cell::VarcharList(Cow::Borrowed(v))
    }
}
impl From<serde_json::Value> for Cell<'_> {
    fn from(v: serde_json::Value) -> Self {
        let mut out = String::new();
        write_canonical_json(&v, &mut out);
        Cell::Json(out)
    }
}
impl<'a, T: Into<Cell<'a>>> From<Option<T>> for Cell<'a> {
    fn from(v: Option<T>) -> Cell<'a> {
        v.map_or(Cell::Null, Into::into)
    }
}

/// JSON with object keys sorted at every level (whatever serde_json's `preserve_order`
/// feature says), so that key order in the API's answer never looks like a change.
fn write_canonical_json(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical_json(value, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One row being filled by column name; hand it to [`BatchBuilder::push`]. It may borrow
/// its text for as long as `'a`.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    spec: &'a TableSpec,
    cells: Vec<Option<Cell<'a>>>,
    /// The column after the one set last.
    next: usize,
}

impl<'a> Row<'a> {
    /// Set a column. The value must have the column's type (an integer is accepted for a
    /// float column, text for a JSON column); `None` becomes NULL.
    pub fn set(&mut self, column: &str, value: impl Into<Cell<'a>>) -> Result<&mut Self> {
        let table = self.spec.table;
        // Streams set the columns in the spec's order: the one after the last set is
        // tried first, then all of them.
        let (index, col) = self
            .spec
            .columns()
            .enumerate()
            .nth(self.next)
            .filter(|(_, c)| c.name == column)
            .or_else(|| {
                self.spec
                    .columns()
                    .enumerate()
                    .find(|(_, c)| c.name == column)
            })
            .ok_or_else(|| StoreError::UnknownColumn {
                table,
                column: column.to_owned(),
            })?;
        self.next = index + 1;
        let cell = coerce(col, value.into()).map_err(|cell| match cell {
            Coerce::Json(problem) => StoreError::InvalidJson {
                table,
                column: col.name,
                problem,
            },
            Coerce::Type(got) => StoreError::CellType {
                table,
                column: col.name,
                expected: expected(col.ty),
                got,
            },
        })?;
        self.cells[index] = Some(cell);
        Ok(self)
    }
}

enum Coerce {
    Type(&'static str),
    Json(String),
}

fn coerce<'a>(col: &Column, cell: Cell<'a>) -> std::result::Result<Cell<'a>, Coerce> {
    use ColumnType as T;
    Ok(match (col.ty, cell) {
        (_, Cell::Null) => Cell::Null,
        (T::Varchar, c @ Cell::Varchar(_))
        | (T::Boolean, c @ Cell::Boolean(_))
        | (T::Double, c @ Cell::Double(_))
        | (T::BigInt, c @ Cell::BigInt(_))
        | (T::Date, c @ Cell::Date(_))
        | (T::Timestamp, c @ Cell::Timestamp(_))
        | (T::VarcharList, c @ Cell::VarcharList(_))
        | (T::Json, c @ Cell::Json(_)) => c,
        (T::Double, Cell::BigInt(v)) => Cell::Double(v as f64),
        (T::Json, Cell::Varchar(text)) => Cell::json(&text).map_err(Coerce::Json)?,
        (_, other) => return Err(Coerce::Type(other.kind())),
    })
}

enum ColumnBuilder {
    Varchar(StringBuilder),
    Boolean(BooleanBuilder),
    Double(Float64Builder),
    BigInt(Int64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    VarcharList(ListBuilder<StringBuilder>),
}

impl ColumnBuilder {
    fn new(ty: ColumnType, capacity: usize) -> ColumnBuilder {
        match ty {
            ColumnType::Varchar | ColumnType::Json => {
                ColumnBuilder::Varchar(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Double => ColumnBuilder::Double(Float64Builder::with_capacity(capacity)),
            ColumnType::BigInt => ColumnBuilder::BigInt(Int64Builder::with_capacity(capacity)),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            ColumnType::VarcharList => {
                ColumnBuilder::VarcharList(ListBuilder::new(StringBuilder::new()))
            }
        }
    }

    /// Append a cell already coerced to this column's type by [`Row::set`].
    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Varchar(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Varchar(b), Cell::Varchar(v)) => b.append_value(v),
            (ColumnBuilder::Varchar(b), Cell::Json(v)) => b.append_value(v),
            (ColumnBuilder::Boolean(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
            (ColumnBuilder::Double(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Double(b), Cell::Double(v)) => b.append_value(v),
            (ColumnBuilder::BigInt(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::BigInt(b), Cell::BigInt(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Cell::Date(v)) => b.append_value(days_since_epoch(v)),
            (ColumnBuilder::Timestamp(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Cell::Timestamp(v)) => {
                b.append_value(v.timestamp_micros())
            }
            (ColumnBuilder::VarcharList(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::VarcharList(b), Cell::VarcharList(items)) => {
                for item in items.iter() {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            (_, cell) => unreachable!("cell {cell:?} was coerced to its column's type"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Varchar(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::BigInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::VarcharList(b) => Arc::new(b.finish()),
        }
    }
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    // Dates the API can send fit easily: i32 days span ±5.8 million years.
    (date - epoch).num_days() as i32
}

/// Builds one Arrow batch for a table, row by row.
pub struct BatchBuilder<'a> {
    spec: &'a TableSpec,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl<'a> BatchBuilder<'a> {
    pub fn new(spec: &'a TableSpec) -> Self {
        Self::with_capacity(spec, 64)
    }

    pub fn with_capacity(spec: &'a TableSpec, rows: usize) -> Self {
        BatchBuilder {
            spec,
            columns: spec
                .columns()
                .map(|c| ColumnBuilder::new(c.ty, rows))
                .collect(),
            rows: 0,
        }
    }

    /// An empty row for this table, for text that lives at least `'r`.
    pub fn row<'r>(&self) -> Row<'r>
    where
        'a: 'r,
    {
        Row {
            spec: self.spec,
            cells: vec![None; self.columns.len()],
            next: 0,
        }
    }

    /// Append a row; every column must have been set and key columns must not be null.
    pub fn push(&mut self, row: Row<'_>) -> Result<()> {
        let table = self.spec.table;
        for ((index, col), cell) in self.spec.columns().enumerate().zip(&row.cells) {
            match cell {
                None => {
                    return Err(StoreError::MissingCell {
                        table,
                        column: col.name,
                    });
                }
                Some(Cell::Null) if index < self.spec.key.len() => {
                    return Err(StoreError::NullKey {
                        table,
                        column: col.name,
                    });
                }
                Some(_) => {}
            }
        }
        for (builder, cell) in self.columns.iter_mut().zip(row.cells) {
            builder.append(cell.expect("checked above"));
        }
        self.rows += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The batch, with the schema of [`TableSpec::arrow_schema`].
    pub fn finish(mut self) -> Result<RecordBatch> {
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        RecordBatch::try_new(self.spec.arrow_schema(), arrays).map_err(|source| StoreError::Arrow {
            table: self.spec.table,
            cause: source,
        })
    }
}

/// Check each batch against its table and concatenate the batches of each table, in order
/// (one append and one merge per table, not per page).
fn by_table(batches: Vec<(&TableSpec, RecordBatch)>) -> Result<Vec<(&TableSpec, RecordBatch)>> {
    let mut by_table: Vec<(&TableSpec, Vec<RecordBatch>)> = Vec::new();
    for (spec, batch) in batches {
        check_shape(spec, &batch)?;
        match by_table.iter_mut().find(|(s, _)| s.table == spec.table) {
            Some((_, list)) => list.push(batch),
            None => by_table.push((spec, vec![batch])),
        }
    }
    by_table
        .into_iter()
        .map(|(spec, list)| {
            let batch = if list.len() == 1 {
                list.into_iter().next().expect("one batch")
            } else {
                concat_batches(&spec.arrow_schema(), &list).map_err(|source| StoreError::Arrow {
                    table: spec.table,
                    cause: source,
                })?
            };
            Ok((spec, batch))
        })
        .collect()
}

/// One table's rows as a merge stages them ([`prepare`]).
pub struct Prepared<'a> {
    pub(crate) spec: &'a TableSpec,
    /// The rows, deduplicated by key, with their [`row_hashes`] as a last `_hash` column.
    pub(crate) staged: RecordBatch,
    /// Rows deduplication dropped (an earlier row of the same key).
    pub(crate) duplicates: u64,
    /// The [`key_hashes`] of the rows kept.
    pub(crate) keys: Vec<u64>,
}

impl Prepared<'_> {
    /// The Arrow bytes it holds.
    pub fn bytes(&self) -> usize {
        self.staged.get_array_memory_size() + self.keys.len() * std::mem::size_of::<u64>()
    }
}

/// Batches ready for [`Warehouse::stage_prepared`]: checked and concatenated per table
/// ([`by_table`]), deduplicated by key ([`dedupe_by_key`]) and hashed ([`row_hashes`]), all
/// the per-row work of staging but DuckDB's append. It touches no database, so a sync runs it
/// on the stream's task, beside the writer thread, which is the tool's bottleneck against a
/// fast server: on a 100k-user full sync at 0 ms it was about 7% of the writer's time.
///
/// [`Warehouse::stage_prepared`]: super::Warehouse::stage_prepared
pub fn prepare(batches: Vec<(&TableSpec, RecordBatch)>) -> Result<Vec<Prepared<'_>>> {
    by_table(batches)?
        .into_iter()
        .map(|(spec, batch)| {
            let (batch, duplicates, keys) = dedupe_by_key(spec, batch)?;
            let staged = with_row_hashes(spec, batch)?;
            Ok(Prepared {
                spec,
                staged,
                duplicates: duplicates as u64,
                keys,
            })
        })
        .collect()
}

/// The batch plus a last column, `_hash`, of its [`row_hashes`]: the shape of a staging table.
fn with_row_hashes(spec: &TableSpec, batch: RecordBatch) -> Result<RecordBatch> {
    let hashes: ArrayRef = Arc::new(UInt64Array::from(row_hashes(spec, &batch)));
    with_columns(
        spec,
        batch,
        [(Field::new("_hash", DataType::UInt64, false), hashes)],
    )
}

/// `batch` (of `spec`'s table) with `extra` columns after its own.
pub(crate) fn with_columns(
    spec: &TableSpec,
    batch: RecordBatch,
    extra: impl IntoIterator<Item = (Field, ArrayRef)>,
) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays = batch.columns().to_vec();
    for (field, array) in extra {
        fields.push(field);
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|source| {
        StoreError::Arrow {
            table: spec.table,
            cause: source,
        }
    })
}

/// Check that a batch has exactly the spec's columns, in order, with their Arrow types, and
/// no null key.
pub(crate) fn check_shape(spec: &TableSpec, batch: &RecordBatch) -> Result<()> {
    let table = spec.table;
    let shape = |problem: String| StoreError::BatchShape { table, problem };
    let schema = batch.schema();
    let got: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let want: Vec<&str> = spec.columns().map(|c| c.name).collect();
    if got != want {
        return Err(shape(format!("columns are {got:?}, expected {want:?}")));
    }
    for (field, col) in schema.fields().iter().zip(spec.columns()) {
        if field.data_type() != &col.ty.arrow() {
            return Err(shape(format!(
                "column `{}` is {}, expected {}",
                col.name,
                field.data_type(),
                col.ty.arrow()
            )));
        }
    }
    for (i, col) in spec.key.iter().enumerate() {
        if batch.column(i).null_count() > 0 {
            return Err(StoreError::NullKey {
                table,
                column: col.name,
            });
        }
    }
    Ok(())
}

/// Appends the canonical, type-tagged encoding of one cell to `out`. The encoding (and with it
/// every stored `_hash`) must never change: a change would make every row look changed once.
fn encode_cell(array: &dyn Array, ty: ColumnType, row: usize, out: &mut Vec<u8>) {
    out.push(ty as u8);
    if array.is_null(row) {
        out.push(0);
        return;
    }
    out.push(1);
    let any = array.as_any();
    match ty {
        ColumnType::Varchar | ColumnType::Json => {
            let v = downcast::<StringArray>(any).value(row);
            encode_str(v, out);
        }
        ColumnType::Boolean => out.push(downcast::<BooleanArray>(any).value(row) as u8),
        ColumnType::Double => {
            let v = downcast::<Float64Array>(any).value(row);
            // -0.0 == 0.0 and all NaNs are one value, as an analyst would compare them.
            let v = if v == 0.0 {
                0.0
            } else if v.is_nan() {
                f64::NAN
            } else {
                v
            };
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        ColumnType::BigInt => {
            out.extend_from_slice(&downcast::<Int64Array>(any).value(row).to_le_bytes())
        }
        ColumnType::Date => {
            out.extend_from_slice(&downcast::<Date32Array>(any).value(row).to_le_bytes())
        }
        ColumnType::Timestamp => out.extend_from_slice(
            &downcast::<TimestampMicrosecondArray>(any)
                .value(row)
                .to_le_bytes(),
        ),
        ColumnType::VarcharList => {
            let list = downcast::<ListArray>(any).value(row);
            let items = downcast::<StringArray>(list.as_any());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in 0..items.len() {
                if items.is_null(i) {
                    out.push(0);
                } else {
                    out.push(1);
                    encode_str(items.value(i), out);
                }
            }
        }
    }
}

fn encode_str(v: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    out.extend_from_slice(v.as_bytes());
}

fn downcast<T: 'static>(any: &dyn std::any::Any) -> &T {
    any.downcast_ref::<T>()
        .expect("check_shape verified the column's Arrow type")
}

/// Content hash of each row's value columns: the first 64 bits of SHA-256 over the canonical
/// encoding. Computed here rather than with DuckDB's `hash()`/`md5()` over a text cast, whose
/// output may change between DuckDB versions (float formatting, hash function).
pub(crate) fn row_hashes(spec: &TableSpec, batch: &RecordBatch) -> Vec<u64> {
    let offset = spec.key.len();
    let mut buf = Vec::with_capacity(256);
    (0..batch.num_rows())
        .map(|row| {
            buf.clear();
            for (i, col) in spec.values.iter().enumerate() {
                encode_cell(batch.column(offset + i).as_ref(), col.ty, row, &mut buf);
            }
            let digest = Sha256::digest(&buf);
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        })
        .collect()
}

/// A 64-bit hash of each row's key, in row order: [`Warehouse::stage`] uses it to notice a key
/// staged twice (two rows of the same key must never reach one merge). A collision only
/// makes it merge earlier than needed.
///
/// [`Warehouse::stage`]: super::Warehouse::stage
pub(crate) fn key_hashes(spec: &TableSpec, batch: &RecordBatch) -> Vec<u64> {
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::FixedState::default();
    let mut key = Vec::with_capacity(64);
    (0..batch.num_rows())
        .map(|row| {
            key.clear();
            for (i, col) in spec.key.iter().enumerate() {
                encode_cell(batch.column(i).as_ref(), col.ty, row, &mut key);
            }
            hasher.hash_one(&key)
        })
        .collect()
}

/// Keep only the last row of each key, in batch order: "last wins" for duplicate keys inside
/// one page. Returns the batch (unchanged when it has no duplicates), how many rows went, and
/// the [`key_hashes`] of the rows kept.
///
/// Pages almost never repeat a key, so the hashes decide first: all distinct means no
/// duplicate, and the batch is returned as it is (a 100k-user sync spent 0.6 s of its writer's
/// time building a byte key per row for the exact check, which now runs only on a repeat).
pub(crate) fn dedupe_by_key(
    spec: &TableSpec,
    batch: RecordBatch,
) -> Result<(RecordBatch, usize, Vec<u64>)> {
    let hashes = key_hashes(spec, &batch);
    let mut distinct: HashSet<u64, foldhash::fast::FixedState> =
        HashSet::with_capacity_and_hasher(hashes.len(), Default::default());
    if hashes.iter().all(|h| distinct.insert(*h)) {
        return Ok((batch, 0, hashes));
    }
    let (batch, dropped) = dedupe_exactly(spec, batch)?;
    let hashes = key_hashes(spec, &batch);
    Ok((batch, dropped, hashes))
}

/// [`dedupe_by_key`] by the keys' bytes.
fn dedupe_exactly(spec: &TableSpec, batch: RecordBatch) -> Result<(RecordBatch, usize)> {
    let mut last: HashMap<Vec<u8>, u32> = HashMap::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut key = Vec::with_capacity(48);
        for (i, col) in spec.key.iter().enumerate() {
            encode_cell(batch.column(i).as_ref(), col.ty, row, &mut key);
        }
        last.insert(key, row as u32);
    }
    let dropped = batch.num_rows() - last.len();
    if dropped == 0 {
        return Ok((batch, 0));
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    let indices = UInt32Array::from(keep);
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .and_then(|columns| RecordBatch::try_new(batch.schema(), columns))
        .map_err(|source| StoreError::Arrow {
            table: spec.table,
            cause: source,
        })?;
    Ok((columns, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tables::{GROUP_MEMBERS, USERS};

    fn user<'a>(b: &BatchBuilder<'a>, id: &'a str, email: Option<&'a str>) -> Row<'a> {
        let mut row = b.row();
        row.set("id", id)
            .unwrap()
            .set("ref", Some(format!("ref-{id}")))
            .unwrap()
            .set("name", "Ann")
            .unwrap()
            .set("email", email)
            .unwrap()
            .set("last_login", None::<DateTime<Utc>>)
            .unwrap()
            .set("archived", false)
            .unwrap()
            .set("language", "nl")
            .unwrap()
            .set("roles", vec!["USER".to_string()])
            .unwrap()
            .set("extra_fields", r#"{"b": 1, "a": {"y": 2, "x": [1, 2]}}"#)
            .unwrap();
        row
    }

    #[test]
    fn builder_makes_the_spec_schema_and_canonical_json() {
        let mut b = BatchBuilder::new(&USERS);
        let row = user(&b, "u1", Some("a@x.nl"));
        b.push(row).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.schema(), USERS.arrow_schema());
        check_shape(&USERS, &batch).unwrap();
        let json = downcast::<StringArray>(batch.column(8).as_any()).value(0);
        assert_eq!(json, r#"{"a":{"x":[1,2],"y":2},"b":1}"#);
    }

    #[test]
    fn builder_rejects_wrong_type_unknown_missing_and_null_key() {
        let mut b = BatchBuilder::new(&USERS);
        let mut row = b.row();
        let err = row.set("archived", "yes").unwrap_err().to_string();
        assert_eq!(err, "column `archived` of `users` is a boolean, got text");
        let err = row.set("nope", 1).unwrap_err().to_string();
        assert_eq!(err, "`users` has no column `nope`");
        let err = row.set("extra_fields", "{oops").unwrap_err().to_string();
        assert!(
            err.starts_with("column `extra_fields` of `users` is not valid JSON"),
            "{err}"
        );
        row.set("id", "u1").unwrap();
        let err = b.push(row).unwrap_err().to_string();
        assert_eq!(err, "a row for `users` has no value for column `ref`");
        let mut row = user(&b, "u1", None);
        row.set("id", None::<String>).unwrap();
        let err = b.push(row).unwrap_err().to_string();
        assert_eq!(err, "key column `id` of `users` is null");
        assert!(b.is_empty());
    }

    #[test]
    fn hash_depends_on_values_only_and_distinguishes_null_from_empty() {
        let mut b = BatchBuilder::new(&USERS);
        for (id, email) in [
            ("u1", Some("a")),
            ("u2", Some("a")),
            ("u3", Some("")),
            ("u4", None),
        ] {
            let mut row = user(&b, id, email);
            row.set("ref", "same-ref").unwrap();
            b.push(row).unwrap();
        }
        let h = row_hashes(&USERS, &b.finish().unwrap());
        assert_eq!(h[0], h[1], "the key is not part of the content hash");
        assert_ne!(h[1], h[2]);
        assert_ne!(h[2], h[3], "empty text and null must differ");
    }

    #[test]
    fn hash_is_stable_across_builds_and_versions() {
        // A fixed vector: if this changes, every stored row looks changed once after upgrade.
        let mut b = BatchBuilder::new(&USERS);
        let row = user(&b, "u1", Some("a@x.nl"));
        b.push(row).unwrap();
        let h = row_hashes(&USERS, &b.finish().unwrap());
        // Computed independently in Python from the documented encoding.
        assert_eq!(format!("{:016x}", h[0]), "9f85cbd6375dd08e");
    }

    #[test]
    fn dedupe_keeps_the_last_row_of_each_key_in_order() {
        let mut b = BatchBuilder::new(&GROUP_MEMBERS);
        for (g, u, role, uref) in [
            ("g1", "u1", "participant", "a"),
            ("g1", "u1", "manager", "b"),
            ("g1", "u1", "participant", "c"),
            ("g2", "u1", "participant", "d"),
        ] {
            let mut row = b.row();
            row.set("group_id", g).unwrap().set("user_id", u).unwrap();
            row.set("role", role)
                .unwrap()
                .set("group_ref", None::<String>)
                .unwrap();
            row.set("user_ref", uref).unwrap();
            b.push(row).unwrap();
        }
        let (batch, dropped, hashes) = dedupe_by_key(&GROUP_MEMBERS, b.finish().unwrap()).unwrap();
        assert_eq!(hashes, key_hashes(&GROUP_MEMBERS, &batch));
        assert_eq!(dropped, 1);
        let refs = downcast::<StringArray>(batch.column(4).as_any());
        let refs: Vec<_> = (0..refs.len()).map(|i| refs.value(i)).collect();
        assert_eq!(refs, ["b", "c", "d"]);
    }

    #[test]
    fn dedupe_returns_a_batch_without_repeated_keys_as_it_is() {
        let mut b = BatchBuilder::new(&USERS);
        for id in ["u3", "u1", "u2"] {
            let row = user(&b, id, None);
            b.push(row).unwrap();
        }
        let batch = b.finish().unwrap();
        let (kept, dropped, hashes) = dedupe_by_key(&USERS, batch.clone()).unwrap();
        assert_eq!((kept, dropped), (batch.clone(), 0));
        assert_eq!(hashes, key_hashes(&USERS, &batch));
    }

    #[test]
    fn columns_set_in_any_order_or_twice_fill_the_same_row() {
        let mut in_order = BatchBuilder::new(&USERS);
        let row = user(&in_order, "u1", Some("a@x"));
        in_order.push(row).unwrap();
        let mut shuffled = BatchBuilder::new(&USERS);
        let mut row = shuffled.row();
        let roles = ["USER".to_string()];
        row.set("extra_fields", r#"{"a": {"x": [1, 2], "y": 2}, "b": 1}"#)
            .unwrap()
            .set("roles", roles.as_slice())
            .unwrap()
            .set("language", "nl")
            .unwrap()
            .set("id", "u0")
            .unwrap()
            .set("archived", false)
            .unwrap()
            .set("ref", "ref-u1")
            .unwrap()
            .set("name", "Ann")
            .unwrap()
            .set("email", "a@x")
            .unwrap()
            .set("last_login", None::<DateTime<Utc>>)
            .unwrap()
            .set("id", "u1")
            .unwrap();
        shuffled.push(row).unwrap();
        assert_eq!(shuffled.finish().unwrap(), in_order.finish().unwrap());
    }

    #[test]
    fn prepare_concatenates_per_table_dedupes_and_appends_each_rows_hash() {
        let page = |ids: &[&str]| {
            let mut b = BatchBuilder::new(&USERS);
            for id in ids {
                let row = user(&b, id, None);
                b.push(row).unwrap();
            }
            b.finish().unwrap()
        };
        let prepared = prepare(vec![
            (&USERS, page(&["u1", "u2"])),
            (&USERS, page(&["u3", "u1"])),
        ])
        .unwrap();
        assert_eq!(prepared.len(), 1, "one batch a table");
        let p = &prepared[0];
        let (expected, dropped, keys) = dedupe_by_key(
            &USERS,
            concat_batches(
                &USERS.arrow_schema(),
                &[page(&["u1", "u2"]), page(&["u3", "u1"])],
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!((p.duplicates, &p.keys), (dropped as u64, &keys));
        assert_eq!(p.duplicates, 1);
        let width = USERS.columns().count();
        assert_eq!(p.staged.num_columns(), width + 1);
        assert_eq!(
            p.staged.project(&(0..width).collect::<Vec<_>>()).unwrap(),
            expected
        );
        let hashes = downcast::<UInt64Array>(p.staged.column(width).as_any());
        assert_eq!(hashes.values().to_vec(), row_hashes(&USERS, &expected));
        assert_eq!(p.staged.schema().field(width).name(), "_hash");

        let wrong = prepare(vec![
            (&USERS, page(&["u1"])),
            (&GROUP_MEMBERS, page(&["u2"])),
        ]);
        assert!(
            matches!(
                wrong,
                Err(StoreError::BatchShape {
                    table: "group_members",
                    ..
                })
            ),
            "a batch is checked against its table"
        );
    }
}
