//! The date and time SQL an analyst types, in every connection the tool opens.
//!
//! Times are stored as `TIMESTAMP` holding UTC wall-clock time (migration 004). The bundled
//! DuckDB has no ICU extension, and since DuckDB 1.2 `current_date`, `today()` and all
//! `TIMESTAMPTZ` arithmetic live there; `now()` and `current_timestamp` exist but return
//! `TIMESTAMPTZ`, which cannot be compared with an interval or cast to a date without ICU.
//! This module defines, per connection, temporary macros that shadow them (DuckDB looks up
//! `temp.main` before the built-in functions), each returning UTC:
//!
//! | SQL | type | value |
//! |---|---|---|
//! | `now()`, `current_timestamp`, `get_current_timestamp()`, `transaction_timestamp()` | `TIMESTAMP` | the transaction's start, UTC |
//! | `current_date`, `today()` | `DATE` | its UTC date |
//!
//! Everything else (`+/- interval`, `date_diff`, `date_trunc`, `extract`, `strftime`, `age`,
//! casts to `DATE`, comparisons with `'2026-01-01'`) is DuckDB's own `TIMESTAMP` arithmetic,
//! which needs no ICU. `to_local(ts, 'Europe/Amsterdam')` gives local wall-clock time for
//! reports (the IANA time-zone database comes with `chrono-tz`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, TimeZone};
use duckdb::Connection;
use duckdb::vscalar::{ArrowFunctionSignature, VArrowScalar};

/// `make_timestamp(epoch_us(x))`: the UTC wall-clock time of an instant, whatever the
/// session's time zone (a plain `::TIMESTAMP` cast uses it where ICU is loaded).
const UTC_NOW: &str = "make_timestamp(epoch_us(system.main.get_current_timestamp()))";

/// The macros, created as `TEMP` so that they live in this connection only and never in the
/// warehouse file (where another DuckDB would find them).
fn macros() -> String {
    [
        format!("CREATE OR REPLACE TEMP MACRO now() AS {UTC_NOW};"),
        format!("CREATE OR REPLACE TEMP MACRO get_current_timestamp() AS {UTC_NOW};"),
        format!("CREATE OR REPLACE TEMP MACRO transaction_timestamp() AS {UTC_NOW};"),
        format!("CREATE OR REPLACE TEMP MACRO current_date() AS CAST({UTC_NOW} AS DATE);"),
        format!("CREATE OR REPLACE TEMP MACRO today() AS CAST({UTC_NOW} AS DATE);"),
    ]
    .concat()
}

/// Define the time functions on `conn` (see the module docs).
pub fn install(conn: &Connection) -> duckdb::Result<()> {
    conn.execute_batch(&macros())?;
    conn.register_scalar_function::<ToLocal>("to_local")?;
    Ok(())
}

/// `to_local(ts TIMESTAMP, zone VARCHAR) -> TIMESTAMP`: the local wall-clock time in `zone`
/// (an IANA name such as `Europe/Amsterdam`) of a UTC time. An unknown zone is an error that
/// names it.
struct ToLocal;

impl VArrowScalar for ToLocal {
    type State = ();

    fn invoke(
        _: &Self::State,
        input: arrow::record_batch::RecordBatch,
    ) -> Result<ArrayRef, Box<dyn std::error::Error>> {
        let times = input
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or("to_local: the first argument must be a TIMESTAMP")?;
        let zones = input
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("to_local: the second argument must be a time zone name")?;
        let mut out = Vec::with_capacity(times.len());
        for i in 0..times.len() {
            if times.is_null(i) || zones.is_null(i) {
                out.push(None);
                continue;
            }
            let name = zones.value(i);
            let zone: chrono_tz::Tz = name.parse().map_err(|_| {
                format!(
                    "to_local: unknown time zone `{name}`; use an IANA name like `Europe/Amsterdam`"
                )
            })?;
            let utc = DateTime::from_timestamp_micros(times.value(i))
                .ok_or("to_local: a timestamp out of range")?;
            let local = zone.from_utc_datetime(&utc.naive_utc()).naive_local();
            out.push(Some(local.and_utc().timestamp_micros()));
        }
        Ok(Arc::new(TimestampMicrosecondArray::from(out)))
    }

    fn signatures() -> Vec<ArrowFunctionSignature> {
        vec![ArrowFunctionSignature::exact(
            vec![
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Utf8,
            ],
            DataType::Timestamp(TimeUnit::Microsecond, None),
        )]
    }
}
