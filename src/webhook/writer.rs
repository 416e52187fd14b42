//! The single writer of `webhook_events`, with group commit. Each request hands its decoded
//! event and a reply channel to this task; the task takes everything that is waiting (up to
//! [`MAX_BATCH`]), stores it in ONE transaction, and only then answers all of them. A DuckDB
//! commit costs about the same for 1 or 500 rows, so under load the commit cost is shared,
//! and no request is answered 2xx before its event is on disk.
//!
//! Runs on its own thread (DuckDB is blocking); ends when every sender is gone, after the
//! last batch, and hands the warehouse back.

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::event::Event;
use crate::store::{StoreError, Warehouse, WebhookRow};

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 1024;

/// One event waiting to be stored; the answer says whether it was new (`false` = redelivery).
pub struct Job {
    pub event: Event,
    pub received_at: DateTime<Utc>,
    pub done: oneshot::Sender<Result<bool, String>>,
}

/// Store jobs until the channel closes; returns the warehouse for closing.
pub fn run(mut warehouse: Warehouse, mut jobs: mpsc::Receiver<Job>) -> Warehouse {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let result = store(&mut warehouse, &batch);
        tracing::debug!(events = batch.len(), took = ?started.elapsed(), "Webhook batch committed.");
        if let Err(e) = &result {
            tracing::error!(error = %e, events = batch.len(), "Storing webhook events failed; answered 500.");
        }
        for (i, job) in batch.drain(..).enumerate() {
            let answer = match &result {
                Ok(new) => Ok(new[i]),
                Err(e) => Err(e.to_string()),
            };
            let _ = job.done.send(answer);
        }
    }
    warehouse
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
