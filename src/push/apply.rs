//! Apply: a stored plan's pending rows → batched mutations, concurrently, exactly once.
//!
//! Rounds: (1) settle rows left `sent` by an earlier run or an unknown answer; (2) send every
//! pending row in batches, up to `concurrency` requests in flight, each batch marked `sent` in
//! the ledger before it leaves and settled when its answer arrives. A round that leaves
//! unknown outcomes is followed by another (bounded); `push resume` runs the same loop.
//!
//! Settling depends on whether a resend can repeat an effect ([`Action::idempotent`]):
//! - idempotent mutations (upserts without invites, memberships, ...): back to `pending`;
//! - the others (`generateCertificate`; `updateOrCreateUser` with `sendInvite`): a gateway may
//!   answer 504 while Pluvo still applies the batch seconds later, so a row whose outcome is
//!   unknown is **never re-sent in the run that sent it**. It stays `sent` (the run ends
//!   unfinished, exit 1), and a later run settles it only once it was sent at least
//!   [`Options::settle_after`] ago (`push.settle_after_secs`): it looks the row up (the
//!   portfolio of the issue day, or the user) and re-sends only what is still missing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::actions::{Action, Row, RowOutcome, RowStatus};
use super::ledger::{self, PENDING, SENT};
use super::{Error, Result};
use crate::api::{self, Client, queries};
use crate::store::Warehouse;

/// Rounds of "settle unknown outcomes, send what is pending" before giving up for this run.
const MAX_ROUNDS: usize = 8;

/// Hidden test hook: `PLUVO_PUSH_CRASH=sent:N` aborts the process right after the N-th
/// request of this run is marked `sent` (before it leaves); `answered:N` right after its
/// answer arrived (before it is recorded). Used by the kill tests; no effect when unset.
const CRASH_ENV: &str = "PLUVO_PUSH_CRASH";

/// Knobs of one apply run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per request; `None` = the action's default.
    pub batch_size: Option<usize>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// A plan with more rows to send refuses to apply (first apply only).
    pub max_rows: u64,
    /// How long after it was sent a row of a non-idempotent mutation whose outcome is unknown
    /// may be looked up and settled (`push.settle_after_secs`): long enough for a slow backend
    /// to finish what a gateway gave up on.
    pub settle_after: Duration,
}

/// Default of [`Options::settle_after`]: a few minutes. Measured behaviour to cover: a gateway
/// answering 504 at once while the backend applies the batch 2.5 s later (issue #16); Pluvo's
/// own request timeout is not documented, so the margin is generous.
pub const SETTLE_AFTER: Duration = Duration::from_secs(300);

/// What an apply run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub plan_id: i64,
    /// The Pluvo mutation the plan sends.
    pub mutation: &'static str,
    /// Rows the plan sends (no-ops excluded).
    pub planned: u64,
    /// Rows dropped by the plan as already in place.
    pub noop: u64,
    /// Rows already settled in the ledger before this run (never sent again).
    pub skipped_in_ledger: u64,
    /// Requests this run sent (one per batch; the client's retries not counted).
    pub requests: u64,
    /// Rows this run put on the wire (a row resent after an unknown outcome counts again).
    pub sent: u64,
    /// Final ledger state of the plan.
    pub succeeded: u64,
    pub already: u64,
    pub failed: u64,
    /// Rows whose outcome is still unknown (`sent`) or not sent (`pending`): resume.
    pub unfinished: u64,
    /// Of `unfinished`, rows whose outcome is unknown (`sent`): a non-idempotent mutation's
    /// are left alone until [`Outcome::settle_from`].
    pub unknown: u64,
    /// When `push resume` may settle the unknown rows of a non-idempotent mutation by looking
    /// them up (UTC); `None` when there are none.
    pub settle_from: Option<DateTime<Utc>>,
    /// Certificate rows settled by finding the certificate in the portfolio.
    pub verified_in_portfolio: u64,
    pub seconds: f64,
}

impl Outcome {
    /// Every row succeeded or was in place.
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.unfinished == 0
    }
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    Sent(u64),
    Answered(u64),
}

fn crash_hook() -> Option<Crash> {
    let value = std::env::var(CRASH_ENV).ok()?;
    let (when, n) = value.split_once(':')?;
    let n = n.parse().ok()?;
    match when {
        "sent" => Some(Crash::Sent(n)),
        "answered" => Some(Crash::Answered(n)),
        _ => None,
    }
}

/// Apply the stored plan `plan_id` (or resume it).
pub async fn apply(
    client: &Client,
    warehouse: &Warehouse,
    plan_id: i64,
    options: &Options,
) -> Result<Outcome> {
    let started = Instant::now();
    let conn = warehouse.connection();
    let plan = ledger::plan(conn, plan_id)?;
    if plan.status == "planned" && plan.rows_planned > options.max_rows {
        return Err(Error::TooManyRows {
            plan_id,
            rows: plan.rows_planned,
            max: options.max_rows,
        });
    }
    if !plan.action.idempotent(plan.notify)
        && let Some(&(other, rows)) = ledger::unknown_elsewhere(conn, plan_id)?.first()
    {
        return Err(Error::UnknownElsewhere {
            plan_id,
            other,
            rows,
        });
    }
    let before = ledger::counts(conn, plan_id)?;
    let settled = |c: &std::collections::BTreeMap<String, u64>| {
        [ledger::SUCCEEDED, ledger::ALREADY, ledger::FAILED]
            .iter()
            .map(|s| c.get(*s).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let mut outcome = Outcome {
        plan_id,
        mutation: plan.action.mutation(),
        planned: plan.rows_planned,
        noop: plan.rows_noop,
        skipped_in_ledger: settled(&before),
        ..Outcome::default()
    };
    ledger::set_status(conn, plan_id, "applying")?;
    let action = &plan.action;
    let batch_size = options
        .batch_size
        .unwrap_or_else(|| action.default_batch_size())
        .max(1);
    let crash = crash_hook();
    let mut batch_no = ledger::next_batch(conn, plan_id)?;
    let mut run_requests = 0u64;
    let idempotent = action.idempotent(plan.notify);
    // Rows sent before this cut-off (by an earlier run) have had time to take effect.
    let settle_cutoff = Utc::now()
        .checked_sub_signed(grace(options.settle_after))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    for round in 0..MAX_ROUNDS {
        if idempotent {
            let unknown = ledger::rows(conn, plan_id, &[SENT])?;
            if !unknown.is_empty() {
                info!(
                    plan_id,
                    rows = unknown.len(),
                    "Resending rows whose outcome is unknown (idempotent)."
                );
                let keys: Vec<&str> = unknown.iter().map(|r| r.key.as_str()).collect();
                ledger::mark_pending(conn, plan_id, &keys)?;
            }
        } else if round == 0 {
            // Only rows an earlier run sent, long enough ago; rows this run sends are never
            // looked up or re-sent by it.
            let due = ledger::sent_before(conn, plan_id, settle_cutoff)?;
            if !due.is_empty() {
                info!(
                    plan_id,
                    rows = due.len(),
                    "Looking up rows whose outcome is unknown."
                );
                outcome.verified_in_portfolio +=
                    settle_unknown(client, conn, plan_id, action, &due).await?;
            }
        }
        let pending = ledger::rows(conn, plan_id, &[PENDING])?;
        if pending.is_empty() {
            break;
        }
        info!(
            plan_id,
            round,
            rows = pending.len(),
            batch_size,
            "Sending pending rows."
        );
        let mut batches = pending.chunks(batch_size);
        let mut in_flight = FuturesUnordered::new();
        let mut stop = false;
        loop {
            while !stop && in_flight.len() < options.concurrency.max(1) {
                let Some(rows) = batches.next() else { break };
                ledger::mark_sent(conn, plan_id, batch_no, rows)?;
                run_requests += 1;
                if let Some(Crash::Sent(n)) = crash
                    && run_requests == n
                {
                    std::process::abort();
                }
                outcome.requests += 1;
                outcome.sent += rows.len() as u64;
                let (op, vars) = action.request(rows, plan.notify);
                let client = client.clone();
                let n = run_requests;
                in_flight.push(async move {
                    let answer = client.query_partial::<Value>(&op, vars).await;
                    (n, rows, answer)
                });
                batch_no += 1;
            }
            let Some((n, rows, answer)) = in_flight.next().await else {
                break;
            };
            if let Some(Crash::Answered(k)) = crash
                && n == k
            {
                std::process::abort();
            }
            match answer {
                Ok(partial) => {
                    let outcomes = action.outcomes(rows, partial.data.as_ref(), &partial.errors);
                    ledger::record(conn, plan_id, &outcomes)?;
                }
                Err(err) if rejected(&err) => {
                    let outcomes = rows
                        .iter()
                        .map(|r| RowOutcome {
                            key: r.key.clone(),
                            status: RowStatus::Failed(err.to_string()),
                            answer: Value::Null,
                        })
                        .collect::<Vec<_>>();
                    ledger::record(conn, plan_id, &outcomes)?;
                }
                Err(err) if err.is_auth() => return Err(Error::Api(err)),
                Err(err) => {
                    // Unknown outcome: the rows stay `sent`; the next round settles them.
                    warn!(plan_id, rows = rows.len(), error = %err, "Outcome unknown; will settle and retry.");
                    stop = true;
                }
            }
        }
    }
    let after = ledger::counts(conn, plan_id)?;
    let get = |s: &str| after.get(s).copied().unwrap_or(0);
    outcome.succeeded = get(ledger::SUCCEEDED);
    outcome.already = get(ledger::ALREADY);
    outcome.failed = get(ledger::FAILED);
    outcome.unfinished = get(PENDING) + get(SENT);
    outcome.unknown = get(SENT);
    if outcome.unknown > 0 && !idempotent {
        outcome.settle_from = ledger::last_sent_at(conn, plan_id)?.map(|at| {
            at.checked_add_signed(grace(options.settle_after))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        });
    }
    let status = if outcome.unfinished > 0 {
        "unfinished"
    } else if outcome.failed > 0 {
        "partial"
    } else {
        "done"
    };
    ledger::set_status(conn, plan_id, status)?;
    update_from_outcomes(conn, plan_id, action)?;
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

fn grace(settle_after: Duration) -> chrono::Duration {
    chrono::Duration::from_std(settle_after).unwrap_or(chrono::Duration::MAX)
}

/// Settle rows of a non-idempotent mutation whose outcome is unknown by looking them up:
/// rows found applied are recorded as succeeded, the others go back to `pending`. Returns the
/// rows found applied.
async fn settle_unknown(
    client: &Client,
    conn: &duckdb::Connection,
    plan_id: i64,
    action: &Action,
    rows: &[Row],
) -> Result<u64> {
    match action {
        Action::GenerateCertificate { .. } => {
            settle_certificates(client, conn, plan_id, action, rows).await
        }
        _ => settle_users(client, conn, plan_id, action, rows).await,
    }
}

#[derive(Debug, Deserialize)]
struct OneUser {
    user: Option<LookedUp>,
}

#[derive(Debug, Deserialize)]
struct LookedUp {
    archived: Option<bool>,
    name: Option<String>,
    email: Option<String>,
}

/// `updateOrCreateUser` rows sent with `sendInvite` whose outcome is unknown: a resend could
/// invite the user a second time, so read each user first. A user who already shows what the
/// row asked for (archived flag, or name and e-mail of an upsert) was updated: succeeded.
async fn settle_users(
    client: &Client,
    conn: &duckdb::Connection,
    plan_id: i64,
    action: &Action,
    rows: &[Row],
) -> Result<u64> {
    let answers: Vec<(usize, api::Result<OneUser>)> =
        futures_util::stream::iter(rows.iter().enumerate())
            .map(|(i, row)| async move {
                (
                    i,
                    client
                        .query::<OneUser>(&queries::USER, json!({ "ref": row.key }))
                        .await,
                )
            })
            .buffer_unordered(client.options().concurrency.max(1))
            .collect()
            .await;
    let mut found = Vec::new();
    let mut resend = Vec::new();
    for (i, answer) in answers {
        let row = &rows[i];
        let user = answer.map_err(Error::Api)?.user;
        let text = |k: &str| row.input.get(k).and_then(Value::as_str).map(str::to_owned);
        let applied = user.is_some_and(|u| match action {
            Action::ArchiveUsers => u.archived == Some(true),
            Action::UnarchiveUsers => u.archived == Some(false),
            _ => u.name == text("name") && u.email == text("email"),
        });
        if applied {
            found.push(RowOutcome {
                key: row.key.clone(),
                status: RowStatus::Succeeded,
                answer: json!({ "verified": "user" }),
            });
        } else {
            resend.push(row.key.as_str());
        }
    }
    settle(conn, plan_id, &found, &resend, "user")
}

/// The server refused the request as a whole (nothing was applied): the rows failed.
fn rejected(err: &api::Error) -> bool {
    match err {
        api::Error::GraphQl { .. } => true,
        api::Error::Http { status, .. } => {
            (400..500).contains(status) && ![401, 408, 429].contains(status)
        }
        _ => false,
    }
}

#[derive(Debug, Deserialize)]
struct PortfolioNode {
    user: PortfolioUser,
    title: String,
}

#[derive(Debug, Deserialize)]
struct PortfolioUser {
    id: String,
}

/// `generateCertificate` rows whose outcome is unknown: a resend could issue a second
/// certificate, so read the portfolio of the issue day first. Users who hold the certificate
/// are recorded as succeeded; only the others go back to `pending`. Returns the rows found.
async fn settle_certificates(
    client: &Client,
    conn: &duckdb::Connection,
    plan_id: i64,
    action: &Action,
    rows: &[Row],
) -> Result<u64> {
    let Action::GenerateCertificate {
        title, issue_date, ..
    } = action
    else {
        return Ok(0);
    };
    let day = issue_date.to_string();
    let mut pages = std::pin::pin!(client.pages::<PortfolioNode>(
        &queries::PORTFOLIO,
        json!({
            "relatedObjectTypes": ["CERTIFICATE"],
            "completionDateFrom": day,
            "completionDateTo": day,
        }),
    ));
    let mut holders = HashSet::new();
    while let Some(page) = pages.next().await {
        for node in page.map_err(Error::Api)?.nodes {
            if &node.title == title {
                holders.insert(node.user.id);
            }
        }
    }
    let mut found = Vec::new();
    let mut resend = Vec::new();
    for row in rows {
        let id = row.input.get("user_id").and_then(Value::as_str);
        if id.is_some_and(|id| holders.contains(id)) {
            found.push(RowOutcome {
                key: row.key.clone(),
                status: RowStatus::Succeeded,
                answer: json!({ "userId": id, "verified": "portfolio" }),
            });
        } else {
            resend.push(row.key.as_str());
        }
    }
    settle(conn, plan_id, &found, &resend, "certificate")
}

/// The end of a lookup of unknown outcomes: the rows found in Pluvo are recorded as
/// succeeded, the others go back to pending to be sent again. Returns how many were found.
fn settle(
    conn: &duckdb::Connection,
    plan_id: i64,
    found: &[RowOutcome],
    resend: &[&str],
    what: &'static str,
) -> Result<u64> {
    ledger::record(conn, plan_id, found)?;
    ledger::mark_pending(conn, plan_id, resend)?;
    info!(
        plan_id,
        what,
        found = found.len(),
        resend = resend.len(),
        "Checked unknown outcomes."
    );
    Ok(found.len() as u64)
}

/// Users re-read after an upsert at most; a bigger HR sync is left to the next `sync` (a
/// targeted refresh reads users one request each).
pub const REFRESH_USERS_MAX: usize = 1000;

/// What [`crate::streams::refresh`] should re-read after an apply: the certificate's issue
/// day, or the upserted users (up to [`REFRESH_USERS_MAX`]). Other actions are brought up to
/// date from the confirmed outcomes without a request ([`update_from_outcomes`]), or show after
/// the next `sync` (training members: portfolio progress; enrollments: not in the warehouse).
pub fn refresh_targets(
    conn: &duckdb::Connection,
    plan_id: i64,
    action: &Action,
) -> Result<crate::streams::refresh::Targets> {
    let mut targets = crate::streams::refresh::Targets::default();
    match action {
        Action::GenerateCertificate { issue_date, .. } => {
            targets.certificate_days.insert(*issue_date);
        }
        Action::UpsertUsers => {
            let done = ledger::rows(conn, plan_id, &[ledger::SUCCEEDED])?;
            if done.len() <= REFRESH_USERS_MAX {
                targets.users = done.into_iter().map(|r| r.key).collect();
            }
        }
        _ => {}
    }
    Ok(targets)
}

/// Bring the warehouse in line with what the server confirmed, so the next plan sees the new
/// state: archived flags, group memberships, extra fields — no request needed. Rows written
/// here get `_hash = 0`, so the next sync rewrites them from Pluvo.
fn update_from_outcomes(conn: &duckdb::Connection, plan_id: i64, action: &Action) -> Result<()> {
    let done = "SELECT row_key FROM _push_ledger
                WHERE plan_id = ? AND status IN ('succeeded', 'already')";
    let (sql, extra): (String, Option<String>) = match action {
        Action::ArchiveUsers | Action::UnarchiveUsers => (
            format!(
                "UPDATE users SET archived = {}, _hash = 0, _updated_at = now()
                 WHERE _deleted_at IS NULL AND ref IN ({done})",
                matches!(action, Action::ArchiveUsers)
            ),
            None,
        ),
        Action::AddToGroup { group } => (
            // A membership row soft-deleted earlier comes back; otherwise a new row.
            format!(
                "MERGE INTO group_members m
                 USING (SELECT g.id AS group_id, u.id AS user_id, g.ref AS group_ref,
                               u.ref AS user_ref
                        FROM users u, groups g
                        WHERE g.ref = ? AND g._deleted_at IS NULL AND u._deleted_at IS NULL
                          AND u.ref IN ({done})) s
                 ON m.group_id = s.group_id AND m.user_id = s.user_id AND m.role = 'participant'
                 WHEN MATCHED AND m._deleted_at IS NOT NULL THEN
                     UPDATE SET _deleted_at = NULL, _hash = 0, _updated_at = now()
                 WHEN NOT MATCHED THEN
                     INSERT (group_id, user_id, role, group_ref, user_ref, _hash, _first_seen_at,
                             _updated_at, _deleted_at, _run_id)
                     VALUES (s.group_id, s.user_id, 'participant', s.group_ref, s.user_ref, 0,
                             now(), now(), NULL, 0)"
            ),
            Some(group.clone()),
        ),
        Action::SetExtraField { category } => (
            format!(
                "UPDATE users SET _hash = 0, _updated_at = now(),
                     extra_fields = json_merge_patch(coalesce(extra_fields, '{{}}'),
                         json_object(?, (SELECT l.input->'value' FROM _push_ledger l
                                         WHERE l.plan_id = ? AND l.row_key = users.ref)))
                 WHERE _deleted_at IS NULL AND ref IN ({done})"
            ),
            Some(category.clone()),
        ),
        _ => return Ok(()),
    };
    let result = match (extra, action) {
        (Some(category), Action::SetExtraField { .. }) => {
            conn.execute(&sql, duckdb::params![category, plan_id, plan_id])
        }
        (Some(group), _) => conn.execute(&sql, duckdb::params![group, plan_id]),
        (None, _) => conn.execute(&sql, duckdb::params![plan_id]),
    };
    result.map_err(|source| Error::Ledger {
        doing: "refreshing the warehouse after apply",
        cause: source,
    })?;
    Ok(())
}
