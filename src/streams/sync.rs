//! The sync driver: runs the selected streams concurrently against one API client and one
//! warehouse writer, and records the run.
//!
//! - One writer: DuckDB allows one writing connection, so the [`Warehouse`] lives on its own
//!   thread and streams send it closures ([`Writer::call`]). Fetching continues while a
//!   commit runs.
//! - Per page group (a few pages at a time), the rows are prepared on the stream's task
//!   (`store::prepare`: checked, deduplicated, hashed) and staged with the stream's checkpoint
//!   ([`Warehouse::stage_prepared`]), up to [`GROUPS_IN_FLIGHT`] groups queued behind the writer;
//!   staged rows merge with their checkpoint in one transaction every
//!   [`Warehouse::merge_rows`] rows, after `store::MERGE_AFTER`, and at the end of each part.
//!   A run killed at any moment resumes from the last merged checkpoint: offset scans at the
//!   next page, cursor-only scans (certificate templates: a handful of pages) from their start.
//!   Keys seen before the crash were committed with their pages, so the final soft-delete
//!   pass sees the whole scan.
//! - A scan the pager reports incomplete (the source moved under an offset scan) deletes
//!   nothing; its rows are merged and the next run reconciles.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Batches, Error, Extract, Progress, Result, StreamSpec};
use crate::api::{Client, Error as ApiError, read_ahead};
use crate::store::{MergeStats, Prepared, RunId, RunStatus, ScanEnd, StreamStats, Warehouse};

/// Pages handed to the writer at a time (5,000 rows), to be staged ([`Warehouse::stage`]).
/// Until issue 19 each group was merged at once, and each merge scans the target table's keys:
/// 10 pages a group took 95 s on a 100k-user sync (latency 0, 2 cores), 100 pages 45 s; the
/// merges now run on larger groups of staged rows, sized to the memory cap.
const PAGES_PER_COMMIT: usize = 100;

/// ... or once its rows pass this many Arrow bytes, whichever comes first. A page is 50
/// nodes: 50 portfolio items, or 50 users with their group memberships and extra fields.
/// In the simulated organisation 100 `users` pages are 3.1 MB of rows and 100 portfolio pages
/// 1.1–1.2 MB (the pages' batches as read; [`QUEUED_BYTES`] counts them concatenated); where users are in 50 groups each, 100 `users` pages would be about 30 MB,
/// waiting whole in memory outside DuckDB's cap. Half of [`QUEUED_BYTES`], so that a
/// stream's queue holds at least two groups.
const GROUP_BYTES: usize = QUEUED_BYTES / 2;

/// ... or whatever was read in this long, so that pages do not wait in memory for a slow
/// source (500 ms a page). A crash loses the rows staged since the last merge: at most
/// `store::MERGE_AFTER` of fetching, or [`Warehouse::merge_rows`] rows.
const COMMIT_AFTER: Duration = Duration::from_secs(2);

/// Pages fetched ahead of the stream that reads them ([`read_ahead`]): fetching goes on
/// while the stream waits for the writer, up to this many pages (50 nodes each, decoded) ...
/// Deeper is faster: 16 pages until issue 19's 24th session, when 128 within
/// [`READ_AHEAD_BYTES`] made a 100k-user full sync at 0 ms 3.35 → 3.15 s and its no-change
/// re-sync 1.95 → 1.8 s (`bench sync --replay`, medians of 4 alternated runs; peak RSS 195 →
/// 199 MiB). At 1M users the writer is the bottleneck: 33.2 → 33.0 s, peak 225 → 230 MiB.
const READ_AHEAD_PAGES: usize = 128;

/// ... and up to this many bytes of answers (their bodies, as read), since a `users` page
/// grows with its users' memberships and extra fields. In the simulated organisation a
/// portfolio page is about 11 kB and a `users` page 18 kB, so the page bound comes first.
const READ_AHEAD_BYTES: usize = 2 << 20;

/// Page groups a stream may have queued for the writer, staged or waiting ([`Staging`]): the
/// stream goes on fetching and building rows while a merge or a checkpoint runs. With one
/// group (until issue 19's last round) fetching stopped within 0.15 s of each merge, about a
/// second each at 100k users, and the writer and the rest took turns instead of running side
/// by side. Measured with `bench sync --users 100000 --latency-ms 0 --replay` (a server that
/// costs nothing, 2 cores), full sync: 1 group 10.2–12.1 s (median 11.0 of 5), peak
/// 185–195 MiB; 4 groups 9.6 / 9.9 s, 196–197 MiB; 8 groups 8.9 / 9.7 / 10.1 s, 204–207 MiB;
/// 4 groups within [`QUEUED_BYTES`] 10.2 / 10.3 s, 197–200 MiB. Since issue 19's 23rd session
/// (a faster machine, 4 runs alternated, medians), 8 groups within 8 MB against 4 within
/// 4 MB: 3.35 against 3.7 s, peak 196 MiB both; 1M users 59.6 / 59.3 against 61.3 / 58.9 s,
/// peak 217 / 219 against 219 / 212 MiB. 16 groups within 16 MB: 3.3 s at 100k, 55.2 s but
/// 233 MiB at 1M (one run). A group is at most [`PAGES_PER_COMMIT`] pages (5,000 rows), one
/// Arrow batch a table.
const GROUPS_IN_FLIGHT: usize = 8;

/// ... and at most this many bytes of Arrow batches a stream. At 1M users the writer is
/// slower than the fetching and the queues stay full: 4 groups of each stream, page batches
/// not yet concatenated, put a full sync's peak at 237 MiB (anonymous 178), against 216 (165)
/// with one group; one batch a table and a 4 MB bound, 224 (165); 8 MB, see above. A
/// portfolio group is about 0.8 MB, a `users` group (with its memberships) up to 1.5 MB.
const QUEUED_BYTES: usize = 8 << 20;

/// What `sync` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stream names; empty = all.
    pub streams: Vec<String>,
    /// Ignore checkpoints, re-read everything and reconcile.
    pub full_refresh: bool,
}

/// What one stream did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamOutcome {
    pub stream: &'static str,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub pages: u64,
    /// GraphQL requests of this stream's operations (attempts, retries included).
    pub requests: u64,
    pub retries: u64,
    pub complete: bool,
    pub resumed: bool,
    pub seconds: f64,
    pub schema_drift: Option<String>,
    pub error: Option<String>,
}

/// What a sync run did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub run_id: i64,
    pub streams: Vec<StreamOutcome>,
    pub requests: u64,
    pub retries: u64,
    pub seconds: f64,
    /// Seconds the writer thread spent on the warehouse (staging, merges, commits,
    /// checkpoints, bookkeeping) during `seconds`: close to `seconds`, the warehouse set the
    /// pace; far below it, the server and the decoding of its pages did ([`Writer::busy`]).
    pub writer_seconds: f64,
    /// Seconds the published snapshot took (views + Parquet export), when one was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_seconds: Option<f64>,
    /// The upload to object storage (`export.to`), when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<crate::export::remote::Published>,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        self.streams.iter().any(|s| s.error.is_some())
    }
}

/// A stream's checkpoint: during a scan, where it is (`part`, `next_page`) and its plan;
/// between scans, only the `state` the next scan plans from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    /// The part being scanned; `None` between scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part: Option<usize>,
    /// The first page of that part not yet committed.
    #[serde(default)]
    next_page: usize,
    /// What the scan covers ([`Extract::plan`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<Value>,
    /// Left by the last scan for the next ([`Extract::next_state`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<Value>,
}

impl Checkpoint {
    fn text(&self) -> String {
        serde_json::to_string(self).expect("checkpoint serializes")
    }
}

/// Work for the writer thread.
type Job = Box<dyn FnOnce(&mut Warehouse) + Send>;

/// A handle to the thread that owns the warehouse.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
    /// Nanoseconds the thread has spent running jobs.
    busy: Arc<AtomicU64>,
}

impl Writer {
    /// Move `warehouse` to a writer thread; the join handle gives it back when all handles drop.
    pub fn spawn(mut warehouse: Warehouse) -> (Writer, std::thread::JoinHandle<Warehouse>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let busy = Arc::new(AtomicU64::new(0));
        let spent = busy.clone();
        let handle = std::thread::Builder::new()
            .name("warehouse-writer".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    let started = Instant::now();
                    job(&mut warehouse);
                    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    spent.fetch_add(nanos, Ordering::Relaxed);
                }
                warehouse
            })
            .expect("spawning the warehouse writer thread");
        (Writer { tx, busy }, handle)
    }

    /// The time the thread has spent running jobs so far, not waiting for them. DuckDB runs
    /// the writer's statements on this thread alone (`store::DUCKDB_THREADS`), so against a
    /// fast server this is the sync's floor: what the warehouse costs, whatever the network.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy.load(Ordering::Relaxed))
    }

    /// Run `f` on the writer thread and wait for its answer.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Warehouse) -> T + Send + 'static,
    ) -> Result<T> {
        self.send(f)?.await.map_err(|_| Error::WriterGone)
    }

    /// Queue `f` on the writer thread; the receiver gets its answer. Jobs run in the order
    /// they were sent, so a stream can keep fetching while its previous page group commits.
    pub fn send<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Warehouse) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Box::new(move |w: &mut Warehouse| {
                let _ = reply.send(f(w));
            }))
            .map_err(|_| Error::WriterGone)?;
        Ok(answer)
    }
}

/// Run a sync: the selected streams, concurrently, into `warehouse`. Returns the warehouse
/// (for the caller's next step) and what happened; a failing stream does not stop the others.
pub async fn run(
    api: &Client,
    warehouse: Warehouse,
    options: &Options,
    progress: Arc<dyn Progress>,
) -> Result<(Warehouse, Outcome)> {
    let specs = super::select(&options.streams)?;
    let started = Instant::now();
    let stats_before = api.stats();
    let (writer, thread) = Writer::spawn(warehouse);
    let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    let run = writer
        .call(move |w| w.begin_run(&names))
        .await?
        .map_err(super::store_error("sync"))?;
    info!(run = run.0, streams = specs.len(), "Sync started.");

    let tasks = specs.iter().map(|spec| {
        let writer = writer.clone();
        let api = api.clone();
        let progress = progress.clone();
        let full = options.full_refresh;
        async move {
            let scan = Scan {
                api: &api,
                writer: &writer,
                run,
                full_refresh: full,
                progress: &*progress,
            };
            let outcome = (spec.driver)(scan).await;
            finish_stream(spec, outcome, &writer, run, &*progress).await
        }
    });
    let outcomes: Vec<StreamOutcome> = futures_util::future::join_all(tasks).await;

    let stats = api.stats();
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let status = if failed == 0 {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    let error = (failed > 0).then(|| format!("{failed} stream(s) failed"));
    // The run's last merges go from the WAL into the file now rather than when the file
    // closes: the sync's time counts them, the snapshot reads them compressed, and nothing
    // else runs, so DuckDB may use more threads for it.
    writer
        .call(move |w| {
            w.finish_run(run, status, error.as_deref())
                .and_then(|()| w.checkpoint_at_end())
        })
        .await?
        .map_err(super::store_error("sync"))?;
    let busy = writer.busy();
    drop(writer);
    let warehouse = thread.join().map_err(|_| Error::WriterGone)?;
    let outcome = Outcome {
        run_id: run.0,
        streams: outcomes,
        requests: stats.requests - stats_before.requests,
        retries: stats.retries - stats_before.retries,
        seconds: started.elapsed().as_secs_f64(),
        writer_seconds: busy.as_secs_f64(),
        publish_seconds: None,
        published: None,
    };
    info!(
        run = run.0,
        seconds = outcome.seconds,
        writer_seconds = outcome.writer_seconds,
        "Sync finished."
    );
    Ok((warehouse, outcome))
}

/// What the driver hands a stream's [`StreamSpec::driver`](super::StreamSpec): the run it
/// belongs to and the shared client, writer and progress sink.
pub struct Scan<'a> {
    api: &'a Client,
    writer: &'a Writer,
    run: RunId,
    full_refresh: bool,
    progress: &'a dyn Progress,
}

impl Scan<'_> {
    /// Scan `stream` to its end, committing as it goes.
    pub async fn drive<S: Extract>(self, stream: S) -> Result<StreamOutcome> {
        drive(
            stream,
            self.api,
            self.writer,
            self.run,
            self.full_refresh,
            self.progress,
        )
        .await
    }
}

/// Record a stream's outcome in `_run_streams` and tell the progress display.
async fn finish_stream(
    spec: &'static StreamSpec,
    outcome: Result<StreamOutcome>,
    writer: &Writer,
    run: RunId,
    progress: &dyn Progress,
) -> StreamOutcome {
    let name = spec.name;
    if outcome.is_err() {
        // Rows staged before the failure are good: merge them with their checkpoint, so the
        // next run resumes after them (a failed append has discarded them already: see
        // `Warehouse::stage`).
        if let Ok(Err(e)) = writer.call(move |w| w.flush(name)).await {
            warn!(stream = name, error = %e, "Could not merge the rows read before the failure.");
        }
    }
    let outcome = outcome.unwrap_or_else(|e| {
        warn!(stream = spec.name, error = %e, "Stream failed.");
        StreamOutcome {
            stream: spec.name,
            error: Some(e.to_string()),
            ..StreamOutcome::default()
        }
    });
    let stats = StreamStats {
        rows: MergeStats {
            new: outcome.new,
            changed: outcome.changed,
            unchanged: outcome.unchanged,
            duplicates: 0,
        },
        rows_deleted: outcome.deleted,
        requests: outcome.requests,
        retries: outcome.retries,
        schema_drift: outcome.schema_drift.clone(),
        error: outcome.error.clone(),
    };
    if let Ok(Err(e)) = writer
        .call(move |w| w.record_stream(run, name, &stats))
        .await
    {
        warn!(stream = name, error = %e, "Could not record the stream's outcome.");
    }
    progress.finished(spec.name, &outcome);
    outcome
}

/// Scan one stream to its end, committing as it goes.
async fn drive<S: Extract>(
    mut stream: S,
    api: &Client,
    writer: &Writer,
    run: RunId,
    full_refresh: bool,
    progress: &dyn Progress,
) -> Result<StreamOutcome> {
    let spec = stream.spec();
    let name = spec.name;
    let started = Instant::now();
    let store = super::store_error(name);
    writer
        .call(move |w| w.begin_stream(run, name))
        .await?
        .map_err(store)?;

    let saved = if full_refresh {
        None
    } else {
        writer
            .call(move |w| w.checkpoint(name))
            .await?
            .map_err(store)?
    };
    let saved: Checkpoint = saved
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let resumed = saved.part.is_some();
    if !resumed {
        writer
            .call(move |w| w.reset_scan(name))
            .await?
            .map_err(store)?;
    }
    let mut plan = if resumed {
        stream.plan(None, saved.plan.clone())
    } else {
        stream.plan(saved.state.clone(), None)
    };
    let mut ops: Vec<&'static str> = stream.parts().iter().map(|p| p.op.name).collect();
    ops.sort_unstable();
    ops.dedup();
    let ops_before = api.op_stats(&ops);
    if !resumed
        && let Some(check) = stream.check()
        && !check_holds(api, writer, name, check).await?
    {
        plan = stream.widen();
    }
    let (stream, prepared) = writer
        .call(move |w| {
            let r = stream.prepare(w, resumed);
            (stream, r)
        })
        .await?;
    let mut stream = stream;
    prepared?;
    let promised = stream.new_keys();
    let first_loads = writer
        .call(move |w| w.start_scan(name, spec.tables, promised))
        .await?
        .map_err(store)?;
    if !first_loads.is_empty() {
        debug!(
            stream = name,
            tables = first_loads.join(", "),
            "First load: no seen keys to record."
        );
    }
    if let Some(spec) = promised.filter(|spec| first_loads.contains(&spec.table)) {
        debug!(
            stream = name,
            table = spec.table,
            "First load: merging without the diff."
        );
    }
    let (start_part, start_page) = (saved.part.unwrap_or(0), saved.next_page);
    if resumed {
        info!(
            stream = name,
            part = start_part,
            page = start_page,
            "Resuming from checkpoint."
        );
    }
    let at = |part: usize, next_page: usize| {
        Checkpoint {
            part: Some(part),
            next_page,
            plan: plan.clone(),
            state: None,
        }
        .text()
    };

    let mut outcome = StreamOutcome {
        stream: name,
        complete: true,
        resumed,
        ..StreamOutcome::default()
    };
    let parts = stream.parts();
    for (index, part) in parts.iter().enumerate().skip(start_part) {
        let first_page = if index == start_part { start_page } else { 0 };
        let pages = if part.op.offset {
            api.offset_pages_from(&part.op, part.variables.clone(), S::key, first_page)
                .boxed()
        } else {
            api.pages::<S::Node>(&part.op, part.variables.clone())
                .boxed()
        };
        let mut pages = std::pin::pin!(read_ahead(pages, READ_AHEAD_PAGES, READ_AHEAD_BYTES));
        let mut buffer: Batches = Vec::new();
        let mut buffered = 0usize;
        let mut buffered_bytes = 0usize;
        let mut last_commit = Instant::now();
        let mut announced = false;
        let mut last_page = first_page;
        let mut staging = Staging::new(spec);
        loop {
            let next = pages.next().await;
            let page = match next {
                Some(Ok(page)) => Some(page),
                Some(Err(ApiError::Incomplete { problem, .. })) => {
                    warn!(stream = name, part = part.label, %problem, "Scan incomplete; nothing will be deleted this run.");
                    outcome.complete = false;
                    None
                }
                Some(Err(source)) => {
                    return Err(Error::Api {
                        stream: name,
                        cause: Box::new(source),
                    });
                }
                None => None,
            };
            let done = page.is_none();
            if let Some(page) = page {
                if !announced {
                    progress.part(name, part.label, Some(page.count));
                    stream.expect(index, page.count);
                    announced = true;
                }
                last_page = page.index + 1;
                outcome.pages += 1;
                let rows = page.nodes.len() as u64;
                let batches = stream.batches(index, page.nodes)?;
                buffered_bytes += batches
                    .iter()
                    .map(|(_, b)| b.get_array_memory_size())
                    .sum::<usize>();
                buffer.extend(batches);
                buffered += 1;
                progress.rows(name, rows);
            }
            let due = group_due(buffered, buffered_bytes, last_commit.elapsed());
            if buffered > 0 && (done || due) {
                last_commit = Instant::now();
                buffered_bytes = 0;
                // One compact batch a table, deduplicated and hashed here rather than on the
                // writer thread (`store::prepare`).
                let prepared = crate::store::prepare(std::mem::take(&mut buffer)).map_err(store)?;
                buffered = 0;
                let text = at(index, if part.op.offset { last_page } else { 0 });
                staging
                    .queue(writer, (name, run), text, prepared, &mut outcome)
                    .await?;
            }
            if done {
                break;
            }
        }
        staging.settle(&mut outcome).await?;
        // The end of a part merges what is staged. Moving to the next part: checkpoint its
        // start so a crash does not redo this part.
        let text = if index + 1 < parts.len() {
            at(index + 1, 0)
        } else {
            at(index, if part.op.offset { last_page } else { 0 })
        };
        let merged = writer
            .call(move |w| {
                w.stage(name, run, &text, Vec::new())
                    .and_then(|mut merged| {
                        for (table, stats) in w.flush(name)? {
                            *merged.entry(table).or_default() += stats;
                        }
                        Ok(merged)
                    })
            })
            .await?;
        count_merge(&mut outcome, spec, merged)?;
    }

    let complete = outcome.complete;
    // A resumed scan trusts pages a killed process read, maybe long ago: rows deleted and
    // inserted since may have moved across them. It merges what it read and deletes nothing.
    let deletes = complete && !resumed;
    if complete && resumed {
        info!(
            stream = name,
            "Resumed scan: nothing will be deleted this run."
        );
    }
    let scopes = stream.scopes();
    let next = stream.next_state(complete).map(|state| {
        Checkpoint {
            state: Some(state),
            ..Checkpoint::default()
        }
        .text()
    });
    let deleted = writer
        .call(move |w| {
            w.finish_scan(
                name,
                run,
                ScanEnd {
                    complete: deletes,
                    tables: scopes,
                    next_checkpoint: next.as_deref(),
                },
            )
        })
        .await?;
    match deleted {
        Ok(deleted) => outcome.deleted = deleted,
        // The scan ended and its rows are merged; the deletions wait for a person.
        Err(refused @ crate::store::StoreError::DeletesRefused { .. }) => {
            warn!(stream = name, %refused, "Deletions refused.");
            outcome.error = Some(store(refused).to_string());
        }
        Err(e) => return Err(store(e)),
    }
    let ops_after = api.op_stats(&ops);
    outcome.requests = ops_after.requests - ops_before.requests;
    outcome.retries = ops_after.retries - ops_before.retries;
    outcome.schema_drift = stream.drift();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Does the part of the source a windowed plan skips still match the warehouse?
async fn check_holds(
    api: &Client,
    writer: &Writer,
    name: &'static str,
    check: super::Check,
) -> Result<bool> {
    #[derive(Deserialize)]
    struct Counted {
        count: u64,
    }
    let mut variables = check.variables;
    variables["first"] = serde_json::json!(1);
    let api_count = api
        .query_at::<Counted>(&check.op, &variables, check.op.connection)
        .await
        .map_err(|source| Error::Api {
            stream: name,
            cause: Box::new(source),
        })?
        .count;
    let sql = check.sql;
    let stored = writer
        .call(move |w| {
            w.connection()
                .query_row(&sql, [], |r| r.get::<_, i64>(0))
                .map_err(|source| crate::store::StoreError::Db {
                    doing: "counting rows outside a window",
                    cause: source,
                })
        })
        .await?
        .map_err(super::store_error(name))?;
    let holds = stored == api_count as i64;
    if !holds {
        info!(
            stream = name,
            api = api_count,
            warehouse = stored,
            "Rows outside the window changed; scanning everything."
        );
    }
    Ok(holds)
}

/// Whether the pages read since the last group (`pages` of them, `bytes` of Arrow rows,
/// read over `since`) make a group for the writer: [`PAGES_PER_COMMIT`], [`GROUP_BYTES`] or
/// [`COMMIT_AFTER`], whichever comes first.
fn group_due(pages: usize, bytes: usize, since: Duration) -> bool {
    pages >= PAGES_PER_COMMIT || bytes >= GROUP_BYTES || since >= COMMIT_AFTER
}

/// The answer of one page-group commit.
type CommitResult = crate::store::Result<std::collections::BTreeMap<&'static str, MergeStats>>;

/// A part's page groups queued for the writer (at most [`GROUPS_IN_FLIGHT`] and
/// [`QUEUED_BYTES`]), oldest first.
struct Staging {
    spec: &'static StreamSpec,
    /// Each group's answer and its Arrow bytes.
    queued: VecDeque<(oneshot::Receiver<Option<CommitResult>>, usize)>,
    /// The Arrow bytes of the queued groups.
    bytes: usize,
    /// Set by the first group that fails to stage. The groups queued behind it then do
    /// nothing: staged and merged, they would store a checkpoint past the failed group's
    /// rows, and a resumed scan would never read those rows again.
    failed: Arc<AtomicBool>,
}

impl Staging {
    fn new(spec: &'static StreamSpec) -> Staging {
        Staging {
            spec,
            queued: VecDeque::new(),
            bytes: 0,
            failed: Arc::default(),
        }
    }

    /// Queue a group's rows and the checkpoint that covers them for the writer, once fewer
    /// than [`GROUPS_IN_FLIGHT`] groups and at most [`QUEUED_BYTES`] with it wait (the oldest
    /// are counted into `outcome` first). A group alone is queued whatever its size.
    async fn queue(
        &mut self,
        writer: &Writer,
        (stream, run): (&'static str, RunId),
        checkpoint: String,
        prepared: Vec<Prepared<'static>>,
        outcome: &mut StreamOutcome,
    ) -> Result<()> {
        let bytes: usize = prepared.iter().map(Prepared::bytes).sum();
        while !self.queued.is_empty()
            && (self.queued.len() >= GROUPS_IN_FLIGHT || self.bytes + bytes > QUEUED_BYTES)
        {
            self.settle_oldest(outcome).await?;
        }
        let failed = self.failed.clone();
        let answer = writer.send(move |w| {
            if failed.load(Ordering::Acquire) {
                return None;
            }
            let staged = w.stage_prepared(stream, run, &checkpoint, prepared, Duration::ZERO);
            if staged.is_err() {
                failed.store(true, Ordering::Release);
            }
            Some(staged)
        })?;
        self.queued.push_back((answer, bytes));
        self.bytes += bytes;
        Ok(())
    }

    /// Wait for every queued group, counting what they merged into `outcome`.
    async fn settle(&mut self, outcome: &mut StreamOutcome) -> Result<()> {
        while !self.queued.is_empty() {
            self.settle_oldest(outcome).await?;
        }
        Ok(())
    }

    /// Wait for the oldest group and count what it merged into `outcome`. A group's error ends
    /// the scan before any later group's answer is read.
    async fn settle_oldest(&mut self, outcome: &mut StreamOutcome) -> Result<()> {
        let Some((oldest, bytes)) = self.queued.pop_front() else {
            return Ok(());
        };
        self.bytes -= bytes;
        // `None` only follows a failed group, whose error was returned first.
        let staged = oldest.await.ok().flatten().ok_or(Error::WriterGone)?;
        count_merge(outcome, self.spec, staged)
    }
}

/// Add a finished commit's counts (of the stream's main table) to the outcome.
fn count_merge(
    outcome: &mut StreamOutcome,
    spec: &'static StreamSpec,
    merged: CommitResult,
) -> Result<()> {
    let merged = merged.map_err(super::store_error(spec.name))?;
    if let Some(m) = merged.get(spec.tables[0].table) {
        outcome.new += m.new;
        outcome.changed += m.changed;
        outcome.unchanged += m.unchanged;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::api::ClientOptions;
    use crate::sim::{Sim, SimConfig};
    use crate::streams::portfolio::{ItemNode, Portfolio, STREAM};
    use crate::streams::{Batches, Part, Silent, StreamSpec};
    use arrow::record_batch::RecordBatch;

    #[derive(Debug, PartialEq)]
    enum Event {
        Expect { part: usize, count: u64 },
        Batches { part: usize, nodes: usize },
    }

    /// The portfolio's parts, recording what the driver calls; stages nothing.
    struct Recording(Arc<Mutex<Vec<Event>>>);

    impl Extract for Recording {
        type Node = ItemNode;
        fn spec(&self) -> &'static StreamSpec {
            &STREAM
        }
        fn parts(&self) -> Vec<Part> {
            Portfolio::default().parts()
        }
        fn key(_: &ItemNode) -> Option<String> {
            None
        }
        fn expect(&mut self, part: usize, count: u64) {
            self.0.lock().unwrap().push(Event::Expect { part, count });
        }
        fn batches(&mut self, part: usize, nodes: Vec<ItemNode>) -> Result<Batches> {
            let nodes = nodes.len();
            self.0.lock().unwrap().push(Event::Batches { part, nodes });
            Ok(Vec::new())
        }
    }

    /// A writer on a fresh warehouse in a temporary folder (dropped with it), with a run of
    /// `stream` begun.
    async fn writer_with_run(
        stream: &'static str,
    ) -> (
        tempfile::TempDir,
        Writer,
        std::thread::JoinHandle<Warehouse>,
        RunId,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().join("w.duckdb")).unwrap();
        let (writer, thread) = Writer::spawn(warehouse);
        let run = writer
            .call(move |w| w.begin_run(&[stream]))
            .await
            .unwrap()
            .unwrap();
        (dir, writer, thread, run)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_part_is_expected_with_its_count_before_its_first_page() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Sim::start(SimConfig {
            users: 120,
            seed: 7,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let api = Client::new(&sim.api_config(), ClientOptions::default()).unwrap();
        let (_dir, writer, thread, run) = writer_with_run("portfolio").await;
        let events = Arc::new(Mutex::new(Vec::new()));
        let outcome = drive(
            Recording(events.clone()),
            &api,
            &writer,
            run,
            false,
            &Silent,
        )
        .await
        .unwrap();
        drop(writer);
        thread.join().unwrap();
        assert!(outcome.pages > 2, "several pages: {outcome:?}");

        let events = std::mem::take(&mut *events.lock().unwrap());
        for part in 0..2 {
            let at = events
                .iter()
                .position(|e| matches!(e, Event::Batches { part: p, .. } if *p == part))
                .expect("the part has pages");
            let expected: Vec<u64> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Expect { part: p, count } if *p == part => Some(*count),
                    _ => None,
                })
                .collect();
            let read: usize = events
                .iter()
                .filter_map(|e| match e {
                    Event::Batches { part: p, nodes } if *p == part => Some(*nodes),
                    _ => None,
                })
                .sum();
            assert_eq!(
                expected,
                vec![read as u64],
                "part {part}: once, with its count"
            );
            assert!(
                matches!(events[at - 1], Event::Expect { part: p, .. } if p == part),
                "part {part}: expected right before its first page: {:?}",
                &events[at.saturating_sub(1)..=at]
            );
        }
    }

    /// A `trainings` batch of the given ids.
    fn trainings(ids: &[&str]) -> RecordBatch {
        use crate::store::BatchBuilder;
        let mut b = BatchBuilder::new(&crate::store::tables::TRAININGS);
        for id in ids {
            let mut row = b.row();
            row.set("id", *id).unwrap();
            row.set("ref", format!("ref-{id}")).unwrap();
            row.set("title", format!("Training {id}")).unwrap();
            row.set("is_active", true).unwrap();
            row.set("archived", false).unwrap();
            row.set("start_date", None::<&str>).unwrap();
            row.set("end_date", None::<&str>).unwrap();
            b.push(row).unwrap();
        }
        b.finish().unwrap()
    }

    /// A `trainings` batch prepared for staging.
    fn prepared(batch: RecordBatch) -> Prepared<'static> {
        crate::store::prepare(vec![(&crate::store::tables::TRAININGS, batch)])
            .unwrap()
            .remove(0)
    }

    /// The `trainings` stream's [`Staging`] against a writer on a fresh warehouse, with a run
    /// begun and a job that holds the writer until the `Sender` returned with it sends (or
    /// drops).
    struct Held {
        writer: Writer,
        thread: std::thread::JoinHandle<Warehouse>,
        run: RunId,
        staging: Staging,
        outcome: StreamOutcome,
        _dir: tempfile::TempDir,
    }

    impl Held {
        async fn start() -> (Held, std::sync::mpsc::Sender<()>) {
            let (dir, writer, thread, run) = writer_with_run("trainings").await;
            let (release, held) = std::sync::mpsc::channel::<()>();
            // Its answer is not awaited: the receiver is dropped, the job still runs.
            drop(writer.send(move |_| held.recv()).unwrap());
            let held = Held {
                writer,
                thread,
                run,
                staging: Staging::new(&crate::streams::trainings::STREAM),
                outcome: StreamOutcome::default(),
                _dir: dir,
            };
            (held, release)
        }

        /// Queue a group of `trainings` rows with its checkpoint.
        fn queue(
            &mut self,
            checkpoint: &str,
            batch: RecordBatch,
        ) -> impl std::future::Future<Output = Result<()>> + '_ {
            let prepared = prepared(batch);
            self.queue_prepared(checkpoint, prepared)
        }

        fn queue_prepared(
            &mut self,
            checkpoint: &str,
            prepared: Prepared<'static>,
        ) -> impl std::future::Future<Output = Result<()>> + '_ {
            self.staging.queue(
                &self.writer,
                ("trainings", self.run),
                checkpoint.to_string(),
                vec![prepared],
                &mut self.outcome,
            )
        }

        /// Merge what `trainings` staged and stop the writer: the table's rows and its
        /// stored checkpoint then.
        async fn finish(self) -> (i64, Option<String>) {
            let flushed = self
                .writer
                .call(|w| {
                    w.flush("trainings").unwrap();
                    let n: i64 = w
                        .connection()
                        .query_row("SELECT count(*) FROM trainings", [], |r| r.get(0))
                        .unwrap();
                    (n, w.checkpoint("trainings").unwrap())
                })
                .await
                .unwrap();
            drop(self.writer);
            self.thread.join().unwrap();
            flushed
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_queue_behind_a_busy_writer_up_to_the_limit() {
        use futures_util::FutureExt;
        let (mut h, release) = Held::start().await;
        let ids: Vec<String> = (0..=GROUPS_IN_FLIGHT).map(|g| format!("t{g}")).collect();
        // While the writer is busy, a stream queues this many groups without waiting...
        for (group, id) in ids.iter().enumerate().take(GROUPS_IN_FLIGHT) {
            let queued = h
                .queue(&format!("group {group}"), trainings(&[id]))
                .now_or_never();
            assert!(
                matches!(queued, Some(Ok(()))),
                "group {group} is queued at once"
            );
        }
        // ... and the next one waits for the oldest.
        let batch = trainings(&[&ids[GROUPS_IN_FLIGHT]]);
        let mut last = Box::pin(h.queue("last group", batch));
        assert!((&mut last).now_or_never().is_none(), "a full queue waits");
        release.send(()).unwrap();
        last.await.unwrap();
        h.staging.settle(&mut h.outcome).await.unwrap();
        let new = h.outcome.new;
        let (stored, checkpoint) = h.finish().await;
        assert_eq!(stored as usize, GROUPS_IN_FLIGHT + 1, "every group's row");
        assert_eq!(checkpoint.as_deref(), Some("last group"));
        assert_eq!(new as usize, 0, "nothing merged before the flush");
    }

    /// A group is cut at 100 pages, at half the queue's bytes or after 2 s: pages of users in
    /// many groups each (a megabyte a page) make groups of a few pages, not of 100 megabytes
    /// waiting outside DuckDB's cap.
    #[test]
    fn a_group_is_cut_by_pages_bytes_or_time() {
        let quick = Duration::from_millis(10);
        assert!(
            !group_due(99, 800_000, quick),
            "a simulated organisation's group"
        );
        assert!(group_due(PAGES_PER_COMMIT, 800_000, quick));
        assert!(!group_due(3, 3 << 20, quick));
        assert!(group_due(4, 4 << 20, quick), "four pages of a megabyte");
        assert_eq!(GROUP_BYTES * 2, QUEUED_BYTES);
        assert!(group_due(1, 1_000, COMMIT_AFTER));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_group_waits_for_the_queue_to_shrink_below_its_bytes() {
        use futures_util::FutureExt;
        let (mut h, release) = Held::start().await;
        // Groups of more than half the byte budget each (9,000 rows for every 4 MB of it).
        let rows = QUEUED_BYTES / (4 << 20) * 9_000;
        let group = |n: usize| {
            let ids: Vec<String> = (0..rows).map(|i| format!("g{n}-{i:0>60}")).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let group = prepared(trainings(&ids));
            assert!(group.bytes() > QUEUED_BYTES / 2);
            assert!(group.bytes() < QUEUED_BYTES);
            group
        };
        let first = h.queue_prepared("first", group(1)).now_or_never();
        assert!(matches!(first, Some(Ok(()))), "one group is queued at once");
        let mut second = Box::pin(h.queue_prepared("second", group(2)));
        assert!(
            (&mut second).now_or_never().is_none(),
            "two would pass the byte budget: the second waits, though fewer than {GROUPS_IN_FLIGHT} groups wait"
        );
        release.send(()).unwrap();
        second.await.unwrap();
        h.staging.settle(&mut h.outcome).await.unwrap();
        let (stored, _) = h.finish().await;
        assert_eq!(stored as usize, 2 * rows);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_group_stops_the_groups_queued_behind_it() {
        let (mut h, release) = Held::start().await;
        // Rows of `trainings` offered as `users`: the append to a `users` staging table fails.
        let wrong = Prepared {
            spec: &crate::store::tables::USERS,
            ..prepared(trainings(&["t1"]))
        };
        h.queue_prepared("first", wrong).await.unwrap();
        h.queue("second", trainings(&["t2"])).await.unwrap();
        release.send(()).unwrap();
        let failed = h.staging.settle(&mut h.outcome).await.unwrap_err();
        assert!(failed.to_string().contains("users"), "{failed}");
        assert_eq!(
            h.finish().await,
            (0, None),
            "the group behind the failed one staged nothing and stored no checkpoint past it"
        );
    }
}
