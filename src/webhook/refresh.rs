//! `webhook serve --refresh`: events that name a user or a certificate keep those warehouse
//! rows current between syncs. The writer hands the targets of every newly stored event here;
//! this task collects them for `debounce` after the first one (a burst of events becomes one
//! refresh), re-reads them from the API (`streams::refresh::fetch`, no database), and sends
//! the answers back to the writer, which merges them: the warehouse keeps one writer.
//!
//! Targets: USER_*, enrollment and certificate events name a user (`users`, `group_members`);
//! EVENT_CERTIFICATE_ACHIEVED and PORTFOLIO_ITEM_* of a CERTIFICATE name an issue day
//! (`portfolio_items`). Training progress is only seen by `sync` (the API cannot read one
//! user's portfolio).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::event::Event;
use super::server::Counts;
use super::writer::Work;
use crate::api::Client;
use crate::streams::refresh::{Targets, fetch};

/// How `--refresh` reaches the API.
#[derive(Clone)]
pub struct Refresh {
    pub client: Client,
    /// Wait after the first event of a burst before refreshing.
    pub debounce: Duration,
}

/// The rows an event says may have changed.
pub(super) fn targets_of(event: &Event) -> Targets {
    let mut targets = Targets::default();
    let names_user = event.event.starts_with("USER_")
        || event.event.starts_with("OFFER_EVENT_")
        || event.event.starts_with("EVENT_CERTIFICATE_")
        || event.event.starts_with("PORTFOLIO_ITEM_");
    if names_user && let Some(user) = &event.user_ref {
        targets.users.insert(user.clone());
    }
    if let Some((kind, day)) = &event.completed
        && kind == "CERTIFICATE"
    {
        targets.certificate_days.insert(*day);
    }
    targets
}

fn merge(into: &mut Targets, from: Targets) {
    into.users.extend(from.users);
    into.certificate_days.extend(from.certificate_days);
}

/// Refresh batches of targets until `stop` turns true; then refresh what is still pending.
pub(super) async fn run(
    refresh: Refresh,
    mut targets: mpsc::UnboundedReceiver<Targets>,
    writer: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let mut stopping = false;
    while !stopping {
        let mut pending = Targets::default();
        tokio::select! {
            first = targets.recv() => match first {
                Some(t) => merge(&mut pending, t),
                None => break,
            },
            _ = stop.wait_for(|s| *s) => stopping = true,
        }
        if !stopping {
            let window = tokio::time::sleep(refresh.debounce);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    more = targets.recv() => match more {
                        Some(t) => merge(&mut pending, t),
                        None => break,
                    },
                    _ = &mut window => break,
                    _ = stop.wait_for(|s| *s) => { stopping = true; break }
                }
            }
        }
        if stopping {
            while let Ok(t) = targets.try_recv() {
                merge(&mut pending, t);
            }
        }
        if !pending.is_empty() {
            refresh_once(&refresh.client, &pending, &writer, &counts).await;
        }
    }
}

async fn refresh_once(
    client: &Client,
    targets: &Targets,
    writer: &mpsc::Sender<Work>,
    counts: &Counts,
) {
    let users = targets.users.len();
    let days = targets.certificate_days.len();
    let result = match fetch(client, targets).await {
        Ok(fetched) => {
            let (done, answer) = oneshot::channel();
            if writer
                .send(Work::Refresh(Box::new(fetched), done))
                .await
                .is_err()
            {
                Err("the writer has stopped".to_string())
            } else {
                answer
                    .await
                    .unwrap_or_else(|_| Err("the writer has stopped".into()))
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(r) => {
            counts.refreshes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                users,
                days,
                run = r.run_id,
                users_changed = r.users.new + r.users.changed,
                items_changed = r.portfolio_items.new + r.portfolio_items.changed,
                deleted = r.deleted,
                "Refreshed rows named by webhooks."
            );
        }
        Err(error) => {
            counts.refresh_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(users, days, %error, "Refresh after webhooks failed; the next sync catches up.");
        }
    }
}
