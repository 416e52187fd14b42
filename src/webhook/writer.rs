//! The single writer of the warehouse while the receiver runs, with group commit. Each
//! request hands its decoded event and a reply channel to this task; the task takes every
//! event that is waiting (up to [`MAX_BATCH`]), stores them in ONE transaction, and only then
//! answers all of them. A DuckDB commit costs about the same for 1 or 500 rows, so under load
//! the commit is shared, and no request is answered 2xx before its event is on disk.
//!
//! With `--refresh` it also merges the answers of targeted refreshes (fetched elsewhere, see
//! `refresh.rs`) and reports the targets of newly stored events.
//!
//! Runs on its own thread (DuckDB is blocking); ends when every sender is gone, after the
//! last batch, and hands the warehouse back.

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::event::Event;
use super::refresh::targets_of;
use crate::store::{StoreError, Warehouse, WebhookRow};
use crate::streams::refresh::{Fetched, Refreshed, Targets};

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 1024;

/// One event waiting to be stored; the answer says whether it was new (`false` = redelivery).
pub struct Job {
    pub event: Event,
    pub received_at: DateTime<Utc>,
    pub done: oneshot::Sender<Result<bool, String>>,
}

/// What the writer does.
pub enum Work {
    Store(Job),
    /// Merge a targeted refresh's answers.
    Refresh(Box<Fetched>, oneshot::Sender<Result<Refreshed, String>>),
}

/// Do work until the channel closes; returns the warehouse for closing. Targets of newly
/// stored events go to `refresh` when given.
pub fn run(
    mut warehouse: Warehouse,
    mut work: mpsc::Receiver<Work>,
    refresh: Option<mpsc::UnboundedSender<Targets>>,
) -> Warehouse {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut next = work.blocking_recv();
    while let Some(item) = next.take() {
        match item {
            Work::Refresh(fetched, done) => {
                let _ = done.send(fetched.write(&mut warehouse).map_err(|e| e.to_string()));
            }
            Work::Store(job) => {
                batch.push(job);
                while batch.len() < MAX_BATCH {
                    match work.try_recv() {
                        Ok(Work::Store(job)) => batch.push(job),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                store_and_answer(&mut warehouse, &mut batch, refresh.as_ref());
            }
        }
        if next.is_none() {
            next = work.blocking_recv();
        }
    }
    warehouse
}

fn store_and_answer(
    warehouse: &mut Warehouse,
    batch: &mut Vec<Job>,
    refresh: Option<&mpsc::UnboundedSender<Targets>>,
) {
    let started = std::time::Instant::now();
    let result = store(warehouse, batch);
    tracing::debug!(events = batch.len(), took = ?started.elapsed(), "Webhook batch committed.");
    if let Err(e) = &result {
        tracing::error!(error = %e, events = batch.len(), "Storing webhook events failed; answered 500.");
    }
    for (i, job) in batch.drain(..).enumerate() {
        let answer = match &result {
            Ok(new) => Ok(new[i]),
            Err(e) => Err(e.to_string()),
        };
        if let (Ok(true), Some(refresh)) = (&answer, refresh) {
            let targets = targets_of(&job.event);
            if !targets.is_empty() {
                let _ = refresh.send(targets);
            }
        }
        let _ = job.done.send(answer);
    }
}

fn store(warehouse: &mut Warehouse, batch: &[Job]) -> Result<Vec<bool>, StoreError> {
    let rows: Vec<WebhookRow<'_>> = batch
        .iter()
        .map(|j| WebhookRow {
            body_sha256: &j.event.body_sha256,
            received_at: j.received_at,
            event: &j.event.event,
            sent_date: j.event.sent_date,
            object_id: j.event.object_id.as_deref(),
            object_ref: j.event.object_ref.as_deref(),
            user_ref: j.event.user_ref.as_deref(),
            payload: &j.event.payload,
        })
        .collect();
    warehouse.insert_webhook_events(&rows)
}
