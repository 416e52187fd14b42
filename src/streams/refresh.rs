//! Targeted refresh: re-read a few users and certificate days between syncs (after a
//! `push`, or when a webhook names them) instead of scanning everything.
//!
//! - Users are read one by one with `user(ref:)`; their `users` row and `group_members` rows
//!   are merged, and a ref the API no longer knows is soft-deleted with its memberships.
//! - The API cannot filter the portfolio by user, only by completion date, so portfolio
//!   items are refreshed by certificate issue day: `portfolioReport(CERTIFICATE, from = to =
//!   day)`. Certificates are keyed by issue date (see `portfolio_item_key`), so a day's items
//!   get the same keys as in a full scan. Training progress is only seen by `sync`.
//!
//! Fetching ([`fetch`]) is async and touches no database; writing ([`Fetched::write`]) is
//! one short transaction per table group, recorded as a run of stream `refresh` in `_runs`.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use super::portfolio::{CERTIFICATE_PART, ItemNode, Portfolio, certificates_between};
use super::users::{UserNode, Users};
use super::{Batches, Error, Extract, Result, store_error};
use crate::api::{Client, Error as ApiError, queries};
use crate::store::tables::{GROUP_MEMBERS, PORTFOLIO_ITEMS, USERS};
use crate::store::{MergeStats, RunStatus, ScanEnd, Scope, StreamStats, Warehouse};

/// The stream name refreshes are recorded under (`_runs`, `_run_streams`, seen keys).
pub const STREAM: &str = "refresh";

/// Users fetched at once.
const PARALLEL: usize = 8;

/// What to re-read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Users to re-read by ref: their `users` row and `group_members` rows are replaced; a
    /// ref the API no longer knows is soft-deleted (`_deleted_at`).
    pub users: BTreeSet<String>,
    /// Certificate issue days to re-read: every CERTIFICATE portfolio item issued that day.
    pub certificate_days: BTreeSet<NaiveDate>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.certificate_days.is_empty()
    }
}

/// What a refresh changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub run_id: i64,
    pub users: MergeStats,
    pub group_members: MergeStats,
    pub portfolio_items: MergeStats,
    /// Rows soft-deleted (users gone from the API, memberships ended, certificates removed).
    pub deleted: u64,
    /// GraphQL requests used.
    pub requests: u64,
}

/// Answers of a refresh, not yet written.
#[derive(Debug)]
pub struct Fetched {
    targets: Targets,
    users: Vec<UserNode>,
    items: Vec<ItemNode>,
    /// False when a day's scan was incomplete (the set moved under it): nothing is deleted.
    complete: bool,
    requests: u64,
}

/// Re-read `targets` from the API.
pub async fn fetch(api: &Client, targets: &Targets) -> Result<Fetched> {
    #[derive(Deserialize)]
    struct One {
        user: Option<UserNode>,
    }
    let api_error = |source: ApiError| Error::Api {
        stream: STREAM,
        cause: Box::new(source),
    };
    let before = api.stats().requests;
    let users: Vec<UserNode> = futures_util::stream::iter(targets.users.iter().cloned())
        .map(|r| api.query::<One>(&queries::USER, json!({ "ref": r })))
        .buffer_unordered(PARALLEL)
        .map_ok(|one| one.user)
        .try_collect::<Vec<_>>()
        .await
        .map_err(api_error)?
        .into_iter()
        .flatten()
        .collect();
    let mut items = Vec::new();
    let mut complete = true;
    for day in &targets.certificate_days {
        let variables = json!({
            "relatedObjectTypes": ["CERTIFICATE"],
            "completionDateFrom": day.to_string(),
            "completionDateTo": day.to_string(),
        });
        let mut pages = api
            .offset_pages_from::<ItemNode, String, _>(
                &queries::PORTFOLIO,
                variables,
                Portfolio::key,
                0,
            )
            .boxed();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => items.extend(page.nodes),
                Err(ApiError::Incomplete { .. }) => complete = false,
                Err(e) => return Err(api_error(e)),
            }
        }
    }
    Ok(Fetched {
        targets: targets.clone(),
        users,
        items,
        complete,
        requests: api.stats().requests - before,
    })
}

impl Fetched {
    /// Merge the answers into the warehouse and soft-delete what the targets no longer hold,
    /// as one run of stream `refresh`.
    pub fn write(self, warehouse: &mut Warehouse) -> Result<Refreshed> {
        let store = store_error(STREAM);
        let run = warehouse.begin_run(&[STREAM]).map_err(store)?;
        let result = self.merge(warehouse, run);
        let (status, error) = match &result {
            Ok(_) => (RunStatus::Succeeded, None),
            Err(e) => (RunStatus::Failed, Some(e.to_string())),
        };
        if let Ok(refreshed) = &result {
            let stats = StreamStats {
                rows: {
                    let mut all = refreshed.users;
                    all += refreshed.portfolio_items;
                    all
                },
                rows_deleted: refreshed.deleted,
                requests: refreshed.requests,
                ..StreamStats::default()
            };
            warehouse
                .record_stream(run, STREAM, &stats)
                .map_err(store)?;
        }
        warehouse
            .finish_run(run, status, error.as_deref())
            .map_err(store)?;
        result
    }

    fn merge(self, warehouse: &mut Warehouse, run: crate::store::RunId) -> Result<Refreshed> {
        let store = store_error(STREAM);
        warehouse.begin_stream(run, STREAM).map_err(store)?;
        warehouse.reset_scan(STREAM).map_err(store)?;
        let mut batches: Batches = Users::default().batches(0, self.users)?;
        batches.extend(Portfolio::default().batches(CERTIFICATE_PART, self.items)?);
        let merged = warehouse
            .commit(STREAM, run, "{}", batches)
            .map_err(store)?;
        let refs: Vec<String> = self.targets.users.into_iter().collect();
        let mut tables = Vec::new();
        if !refs.is_empty() {
            tables.push((
                &USERS,
                Scope::In {
                    column: "ref",
                    values: &refs,
                },
            ));
            tables.push((
                &GROUP_MEMBERS,
                Scope::In {
                    column: "user_ref",
                    values: &refs,
                },
            ));
        }
        for day in &self.targets.certificate_days {
            tables.push((&PORTFOLIO_ITEMS, certificates_between(*day, *day)));
        }
        let deleted = warehouse
            .finish_scan(
                STREAM,
                run,
                ScanEnd {
                    complete: self.complete,
                    tables,
                    next_checkpoint: None,
                },
            )
            .map_err(store)?;
        let of = |table: &str| merged.get(table).copied().unwrap_or_default();
        Ok(Refreshed {
            run_id: run.0,
            users: of(USERS.table),
            group_members: of(GROUP_MEMBERS.table),
            portfolio_items: of(PORTFOLIO_ITEMS.table),
            deleted,
            requests: self.requests,
        })
    }
}

/// [`fetch`] then [`Fetched::write`].
pub async fn refresh(
    api: &Client,
    warehouse: &mut Warehouse,
    targets: &Targets,
) -> Result<Refreshed> {
    fetch(api, targets).await?.write(warehouse)
}
