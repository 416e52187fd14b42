//! The Relay pager: an [`Operation`] with `$first`/`$after` (and maybe `$offset`) plus the path
//! to its connection → a stream of [`Page`]s.
//!
//! - Cursor mode ([`Client::pages`]): one page after another, `after: endCursor` until
//!   `hasNextPage` is false. `count` is for progress, never for stopping (pluvo-api.md). A
//!   server that hands out a cursor twice gets an error, not an endless loop.
//! - Offset mode ([`Client::offset_pages`]): page 0 tells `count`; the other pages are fetched
//!   in parallel (`offset = k × page size`, within the client's concurrency limit, a slow
//!   page not holding up the others) and come out in order. At the end the scan is checked:
//!   rows == `count`, every page saw the same `count`, no key twice. A failed check ends the
//!   stream with [`Error::Incomplete`] (data changed during the scan, or a server that ignores
//!   `offset`); [`Client::fetch_all`] then pages again by cursor.
//!
//! Pages carry nodes only; what a node means is the caller's type.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::stream::{self, BoxStream, FuturesUnordered, Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::warn;

use super::{Client, Error, Operation, Result};

/// The API's maximum `first` (pluvo-api.md: "Maximum `first` is 50").
pub const MAX_PAGE_SIZE: u32 = 50;

/// Pages an offset scan may fetch past the oldest page not yet yielded, per request allowed
/// in flight (see [`Client::remaining_offset_pages`]).
const WINDOW_PER_REQUEST: u64 = 4;

/// The pages of an offset scan in flight and those finished early, waiting for their turn.
struct Window<F, T> {
    next_start: u64,
    next_yield: u64,
    running: FuturesUnordered<F>,
    done: BTreeMap<u64, Result<Page<T>>>,
}

/// One page of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Position in the scan, from 0 (in offset mode: `offset / page size`).
    pub index: usize,
    pub nodes: Vec<T>,
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
    /// Total matching rows as the server counted them for this page.
    pub count: u64,
    /// The size of the answer's body, in bytes: what [`read_ahead`] bounds.
    pub bytes: usize,
}

#[derive(Deserialize)]
struct Connection<T> {
    edges: Vec<Edge<T>>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
    count: u64,
}

#[derive(Deserialize)]
struct Edge<T> {
    node: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq)]
enum Start {
    First,
    After(String),
    Offset(u64),
}

/// Refuses a cursor the server already gave: following it would loop forever.
#[derive(Debug, Default)]
pub(crate) struct CursorGuard {
    seen: HashSet<String>,
}

impl CursorGuard {
    /// The cursor to continue after, `None` at the end of the connection.
    pub(crate) fn next(
        &mut self,
        op: &'static str,
        has_next_page: bool,
        end_cursor: Option<&str>,
    ) -> Result<Option<String>> {
        if !has_next_page {
            return Ok(None);
        }
        let Some(cursor) = end_cursor else {
            return Err(Error::Decode {
                op,
                reason: "`hasNextPage` is true but `endCursor` is null".into(),
            });
        };
        if !self.seen.insert(cursor.to_string()) {
            return Err(Error::CursorRepeated {
                op,
                cursor: cursor.to_string(),
            });
        }
        Ok(Some(cursor.to_string()))
    }
}

/// The most keys [`Completeness`] reserves room for from a page's `count` (32 MiB): a
/// server's number is not trusted with an allocation of any size.
const MAX_RESERVED_KEYS: u64 = 4_000_000;

/// The completeness check of an offset scan.
#[derive(Debug)]
pub(crate) struct Completeness<K> {
    /// Rows before the first page read (a scan resumed at a later page).
    skipped: u64,
    expected: Option<u64>,
    count_changed: Option<u64>,
    rows: u64,
    /// 64-bit hashes of the keys seen, not the keys: 8 bytes a row however long the key, and
    /// a false "duplicate" needs a hash collision (about 1 in 10^8 at a million rows). A list
    /// sorted once at the end, not a hash set: a set of 920k keys took 18 MiB (buckets are a
    /// power of two, each 9 bytes) and 27 MiB while it grew, at the moment a 1M-user sync
    /// peaked; the list takes 7.4 MiB, reserved from `count`.
    keys: Vec<u64>,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K: Hash + Eq> Completeness<K> {
    /// A check of a scan that starts after `skipped` rows (resumed from a checkpoint).
    pub(crate) fn skipping(skipped: u64) -> Self {
        Completeness {
            skipped,
            expected: None,
            count_changed: None,
            rows: 0,
            keys: Vec::new(),
            _key: std::marker::PhantomData,
        }
    }

    /// A page said the connection has `count` rows.
    pub(crate) fn count(&mut self, count: u64) {
        match self.expected {
            None => {
                self.expected = Some(count);
                // One allocation for the whole scan; a server's `count` reserves no more than
                // a few million keys (the list grows past them if the rows really come).
                let rows = count.saturating_sub(self.skipped).min(MAX_RESERVED_KEYS);
                self.keys.reserve_exact(rows as usize);
            }
            Some(expected) if expected != count && self.count_changed.is_none() => {
                self.count_changed = Some(count);
            }
            Some(_) => {}
        }
    }

    /// A row arrived, with its key; `None` for a node without one (counted, and not checked
    /// for duplicates, which it cannot be).
    pub(crate) fn row(&mut self, key: Option<K>) {
        self.rows += 1;
        let Some(key) = key else {
            return;
        };
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        self.keys.push(hasher.finish());
    }

    /// `Err(problem)` unless every row came exactly once.
    pub(crate) fn check(&mut self) -> std::result::Result<(), String> {
        self.keys.sort_unstable();
        let duplicates = self.keys.windows(2).filter(|w| w[0] == w[1]).count();
        let expected = self.expected.unwrap_or(0);
        let mut problems = Vec::new();
        if let Some(changed) = self.count_changed {
            problems.push(format!(
                "`count` changed from {expected} to {changed} during the scan"
            ));
        }
        if self.rows + self.skipped.min(expected) != expected {
            problems.push(format!(
                "{} rows for `count` {expected}",
                self.rows + self.skipped.min(expected)
            ));
        }
        if duplicates > 0 {
            problems.push(format!("{duplicates} duplicate keys"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join(", "))
        }
    }
}

fn variables_object(op: &Operation, variables: Value) -> Result<Map<String, Value>> {
    match variables {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(Error::Decode {
            op: op.name,
            reason: format!("variables must be a JSON object, not `{other}`"),
        }),
    }
}

struct CursorScan {
    client: Client,
    op: Operation,
    vars: Result<Map<String, Value>>,
    next: Option<Start>,
    guard: CursorGuard,
    index: usize,
}

struct OffsetScan<T, K, F> {
    client: Client,
    first_page: u64,
    op: Operation,
    vars: Result<Map<String, Value>>,
    key: F,
    check: Completeness<K>,
    rest: Option<BoxStream<'static, Result<Page<T>>>>,
}

impl Client {
    /// All pages of `op`'s connection by cursor, in order. `variables` are the operation's
    /// own (filters); the pager sets `first` and `after`.
    pub fn pages<T>(
        &self,
        op: &Operation,
        variables: Value,
    ) -> impl Stream<Item = Result<Page<T>>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
    {
        let scan = CursorScan {
            client: self.clone(),
            op: *op,
            vars: variables_object(op, variables),
            next: Some(Start::First),
            guard: CursorGuard::default(),
            index: 0,
        };
        stream::try_unfold(scan, |mut scan| async move {
            let Some(start) = scan.next.take() else {
                return Ok::<_, Error>(None);
            };
            let vars = scan.vars.as_ref().map_err(clone_setup_error)?;
            let page = scan
                .client
                .fetch_page::<T>(&scan.op, vars, start, scan.index)
                .await?;
            scan.next = scan
                .guard
                .next(scan.op.name, page.has_next_page, page.end_cursor.as_deref())?
                .map(Start::After);
            scan.index += 1;
            Ok(Some((page, scan)))
        })
    }

    /// All pages of `op`'s connection by offset, fetched in parallel and yielded in order;
    /// ends with [`Error::Incomplete`] if the rows are not exactly `count` distinct `key`s.
    /// Only for operations that take `$offset` ([`Operation::offset`]).
    pub fn offset_pages<T, K, F>(
        &self,
        op: &Operation,
        variables: Value,
        key: F,
    ) -> impl Stream<Item = Result<Page<T>>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
        K: Hash + Eq + Send + 'static,
        F: Fn(&T) -> Option<K> + Send + 'static,
    {
        self.offset_pages_from(op, variables, key, 0)
    }

    /// As [`Client::offset_pages`], starting at page `first_page` (a scan resumed from a
    /// checkpoint); the completeness check counts the skipped pages as read.
    pub fn offset_pages_from<T, K, F>(
        &self,
        op: &Operation,
        variables: Value,
        key: F,
        first_page: usize,
    ) -> impl Stream<Item = Result<Page<T>>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
        K: Hash + Eq + Send + 'static,
        F: Fn(&T) -> Option<K> + Send + 'static,
    {
        let first_page = first_page as u64;
        let skipped = first_page * u64::from(self.options().page_size);
        let vars = if op.offset {
            variables_object(op, variables)
        } else {
            Err(Error::NoOffset { op: op.name })
        };
        let scan = OffsetScan {
            client: self.clone(),
            first_page,
            op: *op,
            vars,
            key,
            check: Completeness::skipping(skipped),
            rest: None,
        };
        stream::try_unfold(scan, |mut scan| async move {
            let page = match scan.rest.as_mut() {
                None => {
                    let vars = scan.vars.as_ref().map_err(clone_setup_error)?;
                    let size = u64::from(scan.client.options().page_size);
                    let first = scan.first_page;
                    let page = scan
                        .client
                        .fetch_page::<T>(
                            &scan.op,
                            vars,
                            Start::Offset(first * size),
                            first as usize,
                        )
                        .await?;
                    scan.rest = Some(scan.client.remaining_offset_pages(
                        scan.op,
                        vars.clone(),
                        page.count,
                        first + 1,
                    ));
                    page
                }
                Some(rest) => match rest.next().await {
                    Some(page) => page?,
                    None => {
                        scan.check.check().map_err(|problem| Error::Incomplete {
                            op: scan.op.name,
                            problem,
                        })?;
                        return Ok::<_, Error>(None);
                    }
                },
            };
            scan.check.count(page.count);
            for node in &page.nodes {
                scan.check.row((scan.key)(node));
            }
            Ok(Some((page, scan)))
        })
    }

    /// Every node of `op`'s connection. Offset mode when the operation takes `$offset`,
    /// falling back to cursor mode if the offset scan is incomplete; cursor mode otherwise.
    /// Holds all nodes in memory: for a stream into the store use the page streams.
    pub async fn fetch_all<T, K, F>(
        &self,
        op: &Operation,
        variables: Value,
        key: F,
    ) -> Result<Vec<T>>
    where
        T: DeserializeOwned + Send + 'static,
        K: Hash + Eq + Send + 'static,
        F: Fn(&T) -> Option<K> + Send + 'static,
    {
        let collect = |mut all: Vec<T>, page: Page<T>| {
            all.extend(page.nodes);
            std::future::ready(Ok::<_, Error>(all))
        };
        if op.offset {
            match self
                .offset_pages(op, variables.clone(), key)
                .try_fold(Vec::new(), collect)
                .await
            {
                Err(Error::Incomplete { problem, .. }) => {
                    warn!(op = op.name, %problem, "Offset paging incomplete; paging again by cursor.");
                }
                done => return done,
            }
        }
        self.pages(op, variables)
            .try_fold(Vec::new(), collect)
            .await
    }

    /// Pages `from_page..` of an offset scan whose page 0 said `count`, yielded in order.
    /// Requests start in page order, at most `concurrency` at once, and at most
    /// [`WINDOW_PER_REQUEST`] × `concurrency` pages past the oldest one not yet yielded. Unlike
    /// `buffered(concurrency)`, a slow page does not idle the other slots: there its finished
    /// successors counted against the limit until it came. (With the reader's stalls that
    /// [`read_ahead`] removes, a 100k-user sync at 20 ms ran at 128 requests/s where a plain
    /// loop did 154.) The window bounds what waits in memory for a slow page.
    fn remaining_offset_pages<T>(
        &self,
        op: Operation,
        vars: Map<String, Value>,
        count: u64,
        from_page: u64,
    ) -> BoxStream<'static, Result<Page<T>>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let size = u64::from(self.options().page_size);
        let pages = count.div_ceil(size).max(1);
        let client = self.clone();
        let concurrency = self.options().concurrency.max(1);
        let window = WINDOW_PER_REQUEST * concurrency as u64;
        let fetch = move |k: u64| {
            let client = client.clone();
            let vars = vars.clone();
            async move {
                let page = client
                    .fetch_page::<T>(&op, &vars, Start::Offset(k * size), k as usize)
                    .await;
                (k, page)
            }
        };
        let window_state = Window {
            next_start: from_page,
            next_yield: from_page,
            running: FuturesUnordered::new(),
            done: BTreeMap::new(),
        };
        stream::unfold(window_state, move |mut w| {
            let fetch = fetch.clone();
            async move {
                loop {
                    if let Some(page) = w.done.remove(&w.next_yield) {
                        w.next_yield += 1;
                        return Some((page, w));
                    }
                    while w.running.len() < concurrency
                        && w.next_start < pages
                        && w.next_start < w.next_yield + window
                    {
                        w.running.push(fetch(w.next_start));
                        w.next_start += 1;
                    }
                    let (k, page) = w.running.next().await?;
                    w.done.insert(k, page);
                }
            }
        })
        .boxed()
    }

    async fn fetch_page<T: DeserializeOwned>(
        &self,
        op: &Operation,
        vars: &Map<String, Value>,
        start: Start,
        index: usize,
    ) -> Result<Page<T>> {
        if op.connection.is_empty() {
            return Err(Error::NotPaged { op: op.name });
        }
        let mut vars = vars.clone();
        vars.insert("first".into(), self.options().page_size.into());
        match start {
            Start::First => {}
            Start::After(cursor) => {
                vars.insert("after".into(), cursor.into());
            }
            Start::Offset(offset) => {
                vars.insert("offset".into(), offset.into());
            }
        }
        let (conn, bytes): (Connection<T>, usize) = self
            .query_at_sized(op, &Value::Object(vars), op.connection)
            .await?;
        let counters = self.counters();
        counters.pages.inc();
        counters.rows.add(conn.edges.len() as u64);
        Ok(Page {
            index,
            nodes: conn.edges.into_iter().map(|e| e.node).collect(),
            end_cursor: conn.page_info.end_cursor,
            has_next_page: conn.page_info.has_next_page,
            count: conn.count,
            bytes,
        })
    }
}

/// `pages` read in a task of their own, up to `ahead` pages and `ahead_bytes` of answers
/// (their bodies' size, [`Page::bytes`]) before the reader asks for them. A page stream moves
/// only while it is polled: read by a stream that was waiting for the warehouse (a merge, a
/// checkpoint) or building rows, its requests stalled, and so did every other stream's,
/// waiting for the permits those held. Read ahead, the requests go on while the reader is
/// busy, and pages are decoded on another thread than the reader's. A page larger than
/// `ahead_bytes` is read ahead alone. A task that stops before the end (a panic) ends the
/// stream with an error, never quietly: a quiet end would look like a complete scan.
pub fn read_ahead<T: Send + 'static>(
    pages: impl Stream<Item = Result<Page<T>>> + Send + 'static,
    ahead: usize,
    ahead_bytes: usize,
) -> impl Stream<Item = Result<Page<T>>> + Send + 'static {
    // Permits are KiB of answers; each page holds its own until the reader takes it.
    let budget = (ahead_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let bytes = Arc::new(tokio::sync::Semaphore::new(budget));
    let (tx, rx) = tokio::sync::mpsc::channel(ahead.max(1));
    let task = tokio::spawn(async move {
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.next().await {
            let kib = page
                .as_ref()
                .map_or(0, |p| p.bytes.div_ceil(1024).clamp(1, budget));
            let held = bytes
                .clone()
                .acquire_many_owned(kib as u32)
                .await
                .expect("the semaphore is never closed");
            if tx.send((page, held)).await.is_err() {
                return;
            }
        }
    });
    stream::unfold(
        (rx, Some(AbortOnDrop(task))),
        |(mut rx, mut task)| async move {
            if let Some((page, _held)) = rx.recv().await {
                return Some((page, (rx, task)));
            }
            let mut task = task.take()?;
            match (&mut task.0).await {
                Ok(()) => None,
                Err(stopped) => Some((
                    Err(Error::Decode {
                        op: "pager",
                        reason: format!("the task reading pages stopped before the end: {stopped}"),
                    }),
                    (rx, None),
                )),
            }
        },
    )
}

/// A task that is stopped when its handle is dropped (the reader of its pages went away).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Setup errors are kept in the scan state and reported on the first poll.
fn clone_setup_error(err: &Error) -> Error {
    match err {
        Error::NoOffset { op } => Error::NoOffset { op },
        Error::Decode { op, reason } => Error::Decode {
            op,
            reason: reason.clone(),
        },
        other => Error::Decode {
            op: "pager",
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cursor_guard_stops_at_the_end_and_on_a_repeated_cursor() {
        let mut g = CursorGuard::default();
        assert_eq!(
            g.next("Users", true, Some("a")).unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(
            g.next("Users", true, Some("b")).unwrap().as_deref(),
            Some("b")
        );
        let err = g.next("Users", true, Some("a")).unwrap_err();
        assert!(matches!(err, Error::CursorRepeated { .. }), "{err}");
        assert!(err.to_string().contains("repeated cursor `a`"), "{err}");
        assert_eq!(g.next("Users", false, Some("a")).unwrap(), None, "end wins");
        assert_eq!(g.next("Users", false, None).unwrap(), None);
        let err = g.next("Users", true, None).unwrap_err();
        assert!(err.to_string().contains("endCursor"), "{err}");
    }

    #[test]
    fn completeness_accepts_exactly_count_distinct_rows() {
        let mut c = Completeness::skipping(0);
        c.count(3);
        for k in [1, 2, 3] {
            c.row(Some(k));
        }
        c.count(3);
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn completeness_reports_missing_duplicate_and_changed_count() {
        let mut c = Completeness::skipping(0);
        c.count(4);
        for k in [1, 2, 2] {
            c.row(Some(k));
        }
        c.count(5);
        let problem = c.check().unwrap_err();
        assert!(problem.contains("changed from 4 to 5"), "{problem}");
        assert!(problem.contains("3 rows for `count` 4"), "{problem}");
        assert!(problem.contains("1 duplicate keys"), "{problem}");
        // A shifted window: the right number of rows, but one seen twice and one missed.
        let mut c = Completeness::skipping(0);
        c.count(2);
        c.row(Some("a"));
        c.row(Some("a"));
        assert_eq!(c.check().unwrap_err(), "1 duplicate keys");
    }

    /// Room for the keys is reserved from the server's `count`, within a bound: a hostile or
    /// broken `count` is reported as a failed check, not a failed allocation.
    #[test]
    fn completeness_reserves_room_for_a_bounded_count() {
        let mut c = Completeness::skipping(0);
        c.count(u64::MAX);
        assert!(
            c.keys.capacity() >= MAX_RESERVED_KEYS as usize
                && c.keys.capacity() < 2 * MAX_RESERVED_KEYS as usize
        );
        c.row(Some("a"));
        let problem = c.check().unwrap_err();
        assert!(
            problem.contains(&format!("1 rows for `count` {}", u64::MAX)),
            "{problem}"
        );
        let mut resumed = Completeness::skipping(100);
        resumed.count(150);
        assert!(
            (50..100).contains(&resumed.keys.capacity()),
            "the skipped rows need no room"
        );
        for k in 0..50 {
            resumed.row(Some(k));
        }
        assert_eq!(resumed.check(), Ok(()));
    }

    #[test]
    fn connection_pages_decode() {
        let body = br#"{"data":{"paginatedUsers":{"count":2,
            "pageInfo":{"hasNextPage":true,"hasPreviousPage":false,"startCursor":"x","endCursor":"y"},
            "edges":[{"node":{"id":"1"},"cursor":"x"},{"node":{"id":"2"},"cursor":"y"}]}}}"#;
        #[derive(Deserialize)]
        struct Node {
            id: String,
        }
        let env =
            super::super::envelope::parse_envelope::<Connection<Node>>(body, &["paginatedUsers"])
                .unwrap();
        let conn = env.data.unwrap();
        assert_eq!(conn.count, 2);
        assert!(conn.page_info.has_next_page);
        assert_eq!(conn.page_info.end_cursor.as_deref(), Some("y"));
        let ids: Vec<_> = conn.edges.iter().map(|e| e.node.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
    }

    fn page(index: usize) -> Page<u32> {
        Page {
            index,
            nodes: vec![index as u32],
            end_cursor: None,
            has_next_page: true,
            count: 10,
            bytes: 1000,
        }
    }

    /// Ten pages of `bytes(index)` bytes each, and how many of them were produced so far.
    fn counted(
        bytes: impl Fn(usize) -> usize + Send + 'static,
    ) -> (
        Arc<AtomicUsize>,
        impl Stream<Item = Result<Page<u32>>> + Send + 'static,
    ) {
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let source = stream::iter(0..10).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Page {
                bytes: bytes(i),
                ..page(i)
            })
        });
        (produced, source)
    }

    /// The pages are fetched while nobody reads them, up to the read-ahead, and no further.
    #[tokio::test]
    async fn pages_are_read_ahead_while_the_reader_is_busy() {
        let (produced, source) = counted(|_| 1000);
        let mut pages = std::pin::pin!(read_ahead(source, 3, 1 << 20));
        // Nobody reads: three pages wait in the channel and a fourth waits to be sent.
        let waited = std::time::Instant::now();
        while produced.load(Ordering::SeqCst) < 4 && waited.elapsed().as_secs() < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            produced.load(Ordering::SeqCst),
            4,
            "read ahead, within bound"
        );
        let mut indices = Vec::new();
        while let Some(page) = pages.next().await {
            indices.push(page.unwrap().index);
        }
        assert_eq!(indices, (0..10).collect::<Vec<_>>(), "all pages, in order");
    }

    /// ... and no more bytes of answers than its byte bound, however many pages it allows;
    /// a page larger than the bound is read ahead alone.
    #[tokio::test]
    async fn read_ahead_stops_at_its_byte_bound() {
        // Pages of 1,000 bytes (1 KiB each), but page 5 of 10 KiB.
        let (produced, source) = counted(|i| if i == 5 { 10 << 10 } else { 1000 });
        let mut pages = std::pin::pin!(read_ahead(source, 100, 3 << 10));
        let settle = || async {
            let mut last = usize::MAX;
            while produced.load(Ordering::SeqCst) != last {
                last = produced.load(Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            last
        };
        // Three pages hold the 3 KiB; a fourth waits for room.
        assert_eq!(settle().await, 4, "read ahead, within the byte bound");
        let mut indices = Vec::new();
        for _ in 0..3 {
            indices.push(pages.next().await.unwrap().unwrap().index);
        }
        // Pages 3 and 4 (1 KiB each) are in; page 5 (10 KiB) waits for the whole bound.
        assert_eq!(settle().await, 6);
        indices.push(pages.next().await.unwrap().unwrap().index);
        indices.push(pages.next().await.unwrap().unwrap().index);
        assert_eq!(
            settle().await,
            7,
            "the large page alone, then the next waits"
        );
        while let Some(page) = pages.next().await {
            indices.push(page.unwrap().index);
        }
        assert_eq!(indices, (0..10).collect::<Vec<_>>(), "all pages, in order");
    }

    /// A reading task that dies (a panic) ends the pages with an error, not quietly: a quiet
    /// end would pass for a complete scan and let its deletions through.
    #[tokio::test]
    async fn a_read_ahead_task_that_dies_ends_the_pages_with_an_error() {
        let source = stream::iter(0..5).map(|i| {
            assert!(i != 2, "the reader dies at page 2");
            Ok(page(i))
        });
        let got: Vec<Result<Page<u32>>> = read_ahead(source, 1, 1 << 20).collect().await;
        assert_eq!(got.len(), 3, "two pages, then the error");
        assert_eq!(got[1].as_ref().unwrap().index, 1);
        let err = got[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("stopped before the end"), "{err}");
    }
}
