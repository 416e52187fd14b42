//! Extract streams: Pluvo connections → rows → warehouse tables. One file per stream, each the
//! same shape: its operation(s), its node type, the tables it fills, and how a page of nodes
//! becomes Arrow batches. `sync.rs` drives them: concurrently, one writer, page rows and
//! checkpoint committed together, resumable after a crash.
//!
//! Streams never print; they report through [`Progress`]. They never build HTTP requests
//! (that is `api`) nor SQL (that is `store`).

pub mod certificates;
pub mod groups;
pub mod identity;
pub mod portfolio;
pub mod refresh;
mod sync;
pub mod trainings;
pub mod users;

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::api::Operation;
use crate::store::tables::TableSpec;
use crate::store::{Scope, StoreError, Warehouse};

pub use sync::{Options, Outcome, Scan, StreamOutcome, run};

/// What a stream is: the one place that knows it. Everything else is derived from the specs
/// in [`ALL`]: the sync driver, `--streams` and its help, `doctor`'s scope probes, the scopes
/// `init` lists, `status`'s order.
pub struct StreamSpec {
    /// The stream's name: CLI argument (`sync --streams users`) and progress label.
    pub name: &'static str,
    /// The tables it fills; the first is the one its run summary counts.
    pub tables: &'static [&'static TableSpec],
    /// Its incremental strategy in one sentence (`sync --help`, docs/sync.md).
    pub strategy: &'static str,
    /// The OAuth scope its queries need (pluvo-api.md; the simulator's `require` calls).
    pub scope: &'static str,
    /// The query `doctor` sends with `first: 1` to tell whether that scope is granted.
    pub probe: &'static Operation,
    /// Scan the stream to its end: [`Scan::drive`] with the stream's [`Extract`].
    pub driver: Driver,
}

impl std::fmt::Debug for StreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSpec")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// How the driver runs one stream (see [`StreamSpec::driver`]).
pub type Driver = for<'a> fn(Scan<'a>) -> BoxFuture<'a, Result<StreamOutcome>>;

/// Every stream, in the order they are listed and run. Adding a stream: a new file with its
/// `STREAM` spec and [`Extract`] implementation, and one line here.
pub const ALL: &[&StreamSpec] = &[
    &users::STREAM,
    &portfolio::STREAM,
    &certificates::STREAM,
    &groups::STREAM,
    &trainings::STREAM,
];

/// One scan of a stream: an operation with its filter variables. A stream with several parts
/// (users: active then archived; portfolio: trainings then certificates) scans them in order.
#[derive(Debug, Clone)]
pub struct Part {
    pub label: &'static str,
    pub op: Operation,
    pub variables: Value,
}

/// See [`Extract::check`]: `op` with `variables` (its `count`) must equal the warehouse's
/// answer to `sql` (one BIGINT).
#[derive(Debug, Clone)]
pub struct Check {
    pub op: Operation,
    pub variables: Value,
    pub sql: String,
}

/// Batches for the warehouse, by table.
pub type Batches = Vec<(&'static TableSpec, RecordBatch)>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stream `{stream}`: {cause}")]
    Api {
        stream: &'static str,
        cause: Box<crate::api::Error>,
    },
    #[error("stream `{stream}`: {cause}")]
    Store {
        stream: &'static str,
        cause: Box<StoreError>,
    },
    #[error(
        "stream `{stream}`: the answer has no `{field}` for a node ({context}); the API may have changed"
    )]
    MissingField {
        stream: &'static str,
        field: &'static str,
        context: String,
    },
    #[error("unknown stream `{name}`; streams are: {}", ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))]
    UnknownStream { name: String },
    #[error("the warehouse writer stopped unexpectedly")]
    WriterGone,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` adapter: a store error of `stream`.
pub(crate) fn store_error(stream: &'static str) -> impl Fn(StoreError) -> Error + Copy {
    move |source| Error::Store {
        stream,
        cause: Box::new(source),
    }
}

/// The behaviour of one stream, used by the driver in `sync.rs`.
pub trait Extract: Send + 'static {
    /// The API node of the stream's connection.
    type Node: serde::de::DeserializeOwned + Send + 'static;

    fn spec(&self) -> &'static StreamSpec;

    /// The scans to run, in order.
    fn parts(&self) -> Vec<Part>;

    /// A node's identity within one part, for the pager's duplicate check; `None` when nodes
    /// have no identity (portfolio items: two identical items are legitimate), leaving the
    /// completeness check to `count`.
    fn key(node: &Self::Node) -> Option<String>;

    /// Decide what this scan covers, before [`Extract::parts`]: from `state`, what the last
    /// complete scan left (`None` on the first run and with `--full-refresh`), or, when a
    /// scan resumes, from `resumed`, the plan it stored. Returns the plan to store with
    /// every checkpoint of the scan. Streams that always scan everything keep the default.
    fn plan(&mut self, _state: Option<Value>, _resumed: Option<Value>) -> Option<Value> {
        None
    }

    /// For a plan that skips part of the source (a window): what the skipped part should hold,
    /// checked before the scan. The driver compares the API's `count` for the check's filter
    /// with the warehouse's count; when they differ (a deletion or a back-dated item outside
    /// the window), it calls [`Extract::widen`] and the scan reads everything.
    fn check(&self) -> Option<Check> {
        None
    }

    /// Give up the window: plan a full scan; returns the new plan.
    fn widen(&mut self) -> Option<Value> {
        None
    }

    /// State for the next scan's [`Extract::plan`], stored when this scan ends (`complete`:
    /// every page was read).
    fn next_state(&self, _complete: bool) -> Option<Value> {
        None
    }

    /// The table into which this stream's scan merges each key at most once, whatever the
    /// API answers (the portfolio numbers its items' occurrences): on a first load its rows
    /// skip the diff ([`Warehouse::start_scan`]). `None` for the others: a page that
    /// shifts under a scan repeats a user or a group.
    fn new_keys(&self) -> Option<&'static TableSpec> {
        None
    }

    /// Called once before the first page, with the warehouse, when the scan resumes from a
    /// checkpoint (`resumed`) or starts anew; streams with per-scan state rebuild it here.
    fn prepare(&mut self, _warehouse: &Warehouse, _resumed: bool) -> Result<()> {
        Ok(())
    }

    /// The first page of part `part` says the part holds `count` rows (the API's `count`, not
    /// trusted with more than a bounded reservation): a stream that remembers the part's rows
    /// reserves room for them here, before [`Extract::batches`] of that page.
    fn expect(&mut self, _part: usize, _count: u64) {}

    /// One page of nodes of part `part` → batches for the warehouse.
    fn batches(&mut self, part: usize, nodes: Vec<Self::Node>) -> Result<Batches>;

    /// Unknown enum values and other drift seen in this run's answers, if any.
    fn drift(&self) -> Option<String> {
        None
    }

    /// The part of each table a complete scan covers (rows outside are never soft-deleted).
    fn scopes(&self) -> Vec<(&'static TableSpec, Scope<'static>)> {
        self.spec()
            .tables
            .iter()
            .map(|t| (*t, Scope::All))
            .collect()
    }
}

/// How streams report progress; only `cli` draws it.
pub trait Progress: Send + Sync {
    /// A part of `stream` started; `total` is the API's `count` when known.
    fn part(&self, stream: &'static str, label: &'static str, total: Option<u64>);
    /// `rows` more rows of `stream` were committed.
    fn rows(&self, stream: &'static str, rows: u64);
    /// The stream finished (or failed).
    fn finished(&self, stream: &'static str, outcome: &StreamOutcome);
}

/// A [`Progress`] that shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn part(&self, _: &'static str, _: &'static str, _: Option<u64>) {}
    fn rows(&self, _: &'static str, _: u64) {}
    fn finished(&self, _: &'static str, _: &StreamOutcome) {}
}

/// Resolve `--streams a,b` to specs (all when empty), in registry order.
pub fn select(names: &[String]) -> Result<Vec<&'static StreamSpec>> {
    for name in names {
        if !ALL.iter().any(|s| s.name == name) {
            return Err(Error::UnknownStream { name: name.clone() });
        }
    }
    Ok(ALL
        .iter()
        .copied()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
        .collect())
}

/// The `--streams` help: every stream with its strategy.
pub fn help() -> String {
    let mut text = String::from("Streams to sync, comma-separated [default: all]:\n");
    for spec in ALL {
        text.push_str(&format!("  {}: {}\n", spec.name, spec.strategy));
    }
    text
}

/// Unknown enum values and similar drift seen in answers, reported once per run and stream.
#[derive(Debug, Default, Clone)]
pub struct Drift(BTreeMap<String, u64>);

impl Drift {
    pub fn note(&mut self, what: String) {
        *self.0.entry(what).or_default() += 1;
    }
    pub fn report(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, n)| format!("{k} ({n}×)"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Parse an API `DateTime` (ISO 8601) for a timestamp column (stored as UTC).
pub(crate) fn timestamp(text: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Parse an API `Date` (`YYYY-MM-DD`) for a DATE column. The usual 10-character form is read
/// directly: chrono's format parser was 2% of a sync's CPU (two dates per portfolio item);
/// anything else goes to it, so what is accepted does not change.
pub(crate) fn date(text: Option<&str>) -> Option<chrono::NaiveDate> {
    let text = text?;
    if let &[y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = text.as_bytes() {
        let digits = [y1, y2, y3, y4, m1, m2, d1, d2];
        if digits.iter().all(u8::is_ascii_digit) {
            let n = |ds: &[u8]| ds.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            let year = n(&digits[..4]) as i32;
            return chrono::NaiveDate::from_ymd_opt(year, n(&digits[4..6]), n(&digits[6..]));
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_reads_what_chronos_parser_reads() {
        for text in [
            "2026-03-01",
            "1999-12-31",
            "2024-02-29",
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-01-32",
            "0000-01-01",
            "9999-12-31",
            "2026-3-1",
            "2026-03-01T00:00:00Z",
            "+2026-03-01",
            "2026/03/01",
            "20260301",
            "",
            "abcd-ef-gh",
            "2026-03-0x",
        ] {
            assert_eq!(
                date(Some(text)),
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok(),
                "{text:?}"
            );
        }
        assert_eq!(date(None), None);
    }

    #[test]
    fn default_scopes_cover_every_stream() {
        for spec in ALL {
            for (name, scope) in [
                ("DEFAULT_SCOPE", crate::config::DEFAULT_SCOPE),
                ("READ_SCOPE", crate::config::READ_SCOPE),
            ] {
                assert!(
                    scope.split_whitespace().any(|s| s == spec.scope),
                    "stream `{}` needs `{}`, missing from {name}",
                    spec.name,
                    spec.scope
                );
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
