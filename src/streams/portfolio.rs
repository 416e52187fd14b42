//! `portfolio` stream: portfolioReport (trainings, then certificates) → table
//! `portfolio_items`, with every change of progress, score or completion versioned in
//! `portfolio_item_history` (by the store).
//!
//! The node has no id (pluvo-api.md), so a row's key is (user id, related object type,
//! title, occurrence): `occurrence` numbers the rare repeats of one title for one user (a
//! re-taken certificate) in the order the API lists them, which is stable between runs. The
//! numbering is kept for the whole scan and rebuilt from the scan's seen keys on resume.
//!
//! Strategy, one scan per `relatedObjectTypes` (the node does not say its type):
//! - TRAINING: full scan each run. The API has no changed-since filter, and in-progress
//!   trainings have no completion date to window on, so only a full scan sees progress.
//! - CERTIFICATE: a certificate item appears when it is issued and its `completionDate` (the
//!   issue date) does not change, so the scan is a `completionDateFrom` window starting
//!   [`LOOKBACK_DAYS`] before the latest issue date seen (capped at today); every
//!   [`FULL_EVERY_DAYS`] days, on the first run and with `--full-refresh` it is a full scan,
//!   which also catches deleted or back-dated certificates older than the window.
//!
//! Unchanged rows are not written either way, and a complete scan soft-deletes only within
//! what it covered (all trainings; the certificates of the window).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::LazyLock;

use chrono::{Days, NaiveDate, Utc};
use foldhash::fast::FixedState;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Batches, Check, Extract, Part, Result, StreamSpec, date};
use crate::api::queries;
use crate::store::tables::{PORTFOLIO_ITEMS, TableSpec, portfolio_item_key};
use crate::store::{BatchBuilder, Scope, Warehouse};

pub const STREAM: StreamSpec = StreamSpec {
    name: "portfolio",
    tables: &[&PORTFOLIO_ITEMS],
    strategy: "trainings: full scan each run; certificates: completionDateFrom window from 7 \
               days before the latest issue date seen, full scan weekly and with \
               --full-refresh; unchanged rows are not written; changes versioned in \
               portfolio_item_history; missing items soft-deleted within what a complete scan \
               covered",
    // Not documented by Pluvo: assumed (pluvo-api.md).
    scope: "trainings.read",
    probe: &queries::PORTFOLIO,
    driver: |scan| Box::pin(scan.drive(Portfolio::default())),
};

/// Days a certificate window reaches back before the latest issue date seen, for
/// certificates issued late or with a slightly earlier issue date.
pub const LOOKBACK_DAYS: u64 = 7;

/// A full certificate scan at least this often (days), for deletions and back-dated issues.
pub const FULL_EVERY_DAYS: u64 = 7;

/// What a certificate scan covers; stored with each checkpoint, so a resumed scan keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Plan {
    /// Window start (inclusive); `None` = full scan.
    certificates_from: Option<NaiveDate>,
    /// The day (UTC) the scan was planned.
    day: Option<NaiveDate>,
    /// Day of the last complete full certificate scan before this one.
    last_full: Option<NaiveDate>,
    /// Latest issue date known before this scan.
    watermark: Option<NaiveDate>,
}

/// What a complete scan leaves for the next one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct State {
    last_full: Option<NaiveDate>,
    watermark: Option<NaiveDate>,
}

/// The end of an open window (a date DuckDB and every reader accept).
const OPEN_END: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid date");

static TRAINING: LazyLock<Vec<String>> = LazyLock::new(|| vec!["TRAINING".into()]);
static CERTIFICATE: LazyLock<Vec<String>> = LazyLock::new(|| vec!["CERTIFICATE".into()]);

/// Certificate items issued in `from..=to` (what a certificate window covers).
pub(crate) fn certificates_between(from: NaiveDate, to: NaiveDate) -> Scope<'static> {
    Scope::And(vec![
        Scope::In {
            column: "related_object_type",
            values: &CERTIFICATE,
        },
        Scope::Between {
            column: "completion_date",
            from,
            to,
        },
    ])
}

/// The two scans, in order; the index is the part number.
const TYPES: [&str; 2] = ["TRAINING", "CERTIFICATE"];

/// The part number of the certificate scan.
pub(crate) const CERTIFICATE_PART: usize = 1;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemNode {
    pub user: ItemUser,
    pub title: String,
    pub progress: Option<f64>,
    pub score: Option<f64>,
    pub completion_date: Option<String>,
    pub end_date: Option<String>,
    pub time_spent: Option<TimeSpent>,
}

#[derive(Debug, Deserialize)]
pub struct ItemUser {
    pub id: String,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TimeSpent {
    pub days: i64,
    pub seconds: i64,
}

#[derive(Debug, Default)]
pub struct Portfolio {
    /// Items seen so far in this part of the scan per (user id, type, title, issue date).
    occurrences: Occurrences,
    /// The type of the part being read; the occurrences are per part (types never share a key).
    kind: Option<&'static str>,
    plan: Plan,
    /// Latest certificate issue date seen in this scan.
    latest: Option<NaiveDate>,
}

/// How many times each (user id, type, title, issue date) hash came so far in a part.
///
/// The API's order is not documented (a user's items need not come together), so the
/// numbering remembers every item of the part: 8 bytes an item, in a sorted list reserved
/// from the part's `count` ([`Occurrences::expect`]). Until issue 19 it was a hash set: 9
/// bytes a bucket, buckets a power of two (by that arithmetic, 3.5M trainings of 1M users
/// took 38 MB, and 57 MB while the set grew past 1.8M items; a few more items than 3.67M
/// would take 75 MB, 113 MB while growing). New hashes wait in a small set and are merged
/// into the list [`RECENT`] at a time; only repeats (a re-taken certificate) get a counter.
#[derive(Debug, Default)]
struct Occurrences {
    /// Hashes merged from `recent`, sorted.
    sorted: Vec<u64>,
    /// Where each range of hashes by their top [`INDEX_BITS`] bits starts in `sorted` (one
    /// entry more than ranges, empty until the first merge): a lookup searches a few dozen
    /// hashes instead of the whole list (3.5M lookups took 3.0 s without it, 0.9–1.2 s with
    /// it, 0.3–0.7 s in a hash set). `u32`: a part of 4G items would need a 32 GB list.
    starts: Vec<u32>,
    /// Hashes that came once since the last merge.
    recent: HashSet<u64, FixedState>,
    /// Hashes that came more than once, with their count.
    more: HashMap<u64, u32, FixedState>,
}

/// New hashes held in [`Occurrences::recent`] before they are merged into the sorted list:
/// 1.2 MB (a set of 110k fits 131,072 buckets); a merge moves the whole list, so 3.5M items
/// cost 32 merges.
const RECENT: usize = 110_000;

/// The top bits of a hash that choose its range in [`Occurrences::starts`]: 65,536 ranges,
/// 256 KB of index, about 53 hashes a range at 3.5M items.
const INDEX_BITS: u32 = 16;

/// The most items [`Occurrences::expect`] reserves room for from a server's `count` (256
/// MB of address space, touched only as items come); beyond it the list grows by doubling.
const MAX_RESERVED_ITEMS: u64 = 32_000_000;

impl Occurrences {
    /// Count one more item with this hash; returns its occurrence number (1, 2, ...).
    fn next(&mut self, hash: u64) -> u32 {
        if !self.contains(hash) {
            self.insert(hash);
            return 1;
        }
        let n = self.more.entry(hash).or_insert(1);
        *n += 1;
        *n
    }

    /// Resuming: `count` items with this hash were already read.
    fn set(&mut self, hash: u64, count: u32) {
        if !self.contains(hash) {
            self.insert(hash);
        }
        if count > 1 {
            self.more.insert(hash, count);
        }
    }

    /// The part holds `count` items in all (its pages' `count`): room for them in one piece,
    /// so the list never holds an old and a new copy of itself while it grows.
    fn expect(&mut self, count: u64) {
        let items = self.sorted.len() + self.recent.len();
        let more = count.min(MAX_RESERVED_ITEMS).saturating_sub(items as u64);
        self.sorted.reserve_exact(more as usize);
    }

    fn contains(&self, hash: u64) -> bool {
        if self.recent.contains(&hash) {
            return true;
        }
        let range = match self.starts.as_slice() {
            [] => &self.sorted[..],
            starts => {
                let at = (hash >> (64 - INDEX_BITS)) as usize;
                &self.sorted[starts[at] as usize..starts[at + 1] as usize]
            }
        };
        range.binary_search(&hash).is_ok()
    }

    fn insert(&mut self, hash: u64) {
        self.recent.insert(hash);
        if self.recent.len() >= RECENT {
            self.merge_recent();
        }
    }

    /// Merge `recent` into `sorted`, in place from the back (no second list).
    fn merge_recent(&mut self) {
        let mut new: Vec<u64> = self.recent.drain().collect();
        new.sort_unstable();
        let old = self.sorted.len();
        self.sorted.resize(old + new.len(), 0);
        let (mut i, mut j) = (old, new.len());
        for k in (0..self.sorted.len()).rev() {
            if j == 0 {
                break;
            }
            if i > 0 && self.sorted[i - 1] > new[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.index();
    }

    /// Rebuild `starts` from `sorted`.
    fn index(&mut self) {
        let ranges = 1usize << INDEX_BITS;
        self.starts.clear();
        self.starts.reserve_exact(ranges + 1);
        let mut at = 0;
        for range in 0..ranges {
            while at < self.sorted.len()
                && ((self.sorted[at] >> (64 - INDEX_BITS)) as usize) < range
            {
                at += 1;
            }
            self.starts.push(at as u32);
        }
        self.starts.push(self.sorted.len() as u32);
    }

    fn clear(&mut self) {
        *self = Occurrences::default();
    }
}

/// The issue date that is part of a certificate's key (`None` for trainings).
fn issued(kind: &str, completion: Option<NaiveDate>) -> Option<NaiveDate> {
    if kind == "CERTIFICATE" {
        completion
    } else {
        None
    }
}

/// A 64-bit hash of an item's (user id, type, title, issue date), the same for the same item
/// within a process (only in memory: a resumed scan rebuilds its occurrences from the
/// warehouse). foldhash, not std's SipHash: no untrusted party chooses these to collide.
fn occurrence_hash(user_id: &str, kind: &str, title: &str, issued: Option<NaiveDate>) -> u64 {
    FixedState::default().hash_one((user_id, kind, title, issued))
}

impl Portfolio {
    /// The type of part `part`, forgetting the previous part's items when it is another:
    /// they can never match (the type is in the hash). A scan resumed in this part keeps
    /// the items rebuilt by `prepare`.
    fn enter(&mut self, part: usize) -> &'static str {
        let kind = TYPES[part];
        if self.kind.is_some_and(|k| k != kind) {
            self.occurrences.clear();
        }
        self.kind = Some(kind);
        kind
    }
}

impl Extract for Portfolio {
    type Node = ItemNode;

    fn spec(&self) -> &'static StreamSpec {
        &STREAM
    }

    fn plan(&mut self, state: Option<Value>, resumed: Option<Value>) -> Option<Value> {
        let today = Utc::now().date_naive();
        self.plan = match resumed.and_then(|p| serde_json::from_value(p).ok()) {
            Some(plan) => plan,
            None => {
                let state: Option<State> = state.and_then(|s| serde_json::from_value(s).ok());
                let (last_full, watermark) =
                    state.map_or((None, None), |s| (s.last_full, s.watermark));
                let full_due = last_full
                    .and_then(|day| day.checked_add_days(Days::new(FULL_EVERY_DAYS)))
                    .is_none_or(|due| due <= today);
                Plan {
                    certificates_from: watermark
                        .filter(|_| !full_due)
                        .and_then(|mark| mark.checked_sub_days(Days::new(LOOKBACK_DAYS))),
                    day: Some(today),
                    last_full,
                    watermark,
                }
            }
        };
        Some(serde_json::to_value(&self.plan).expect("plan serializes"))
    }

    fn check(&self) -> Option<Check> {
        let from = self.plan.certificates_from?;
        let before = from.pred_opt()?;
        Some(Check {
            op: queries::PORTFOLIO,
            variables: json!({
                "relatedObjectTypes": ["CERTIFICATE"],
                "completionDateTo": before.to_string(),
            }),
            sql: format!(
                "SELECT count(*) FROM portfolio_items WHERE _deleted_at IS NULL \
                 AND related_object_type = 'CERTIFICATE' AND completion_date <= DATE '{before}'"
            ),
        })
    }

    fn widen(&mut self) -> Option<Value> {
        self.plan.certificates_from = None;
        Some(serde_json::to_value(&self.plan).expect("plan serializes"))
    }

    fn next_state(&self, complete: bool) -> Option<Value> {
        let plan = &self.plan;
        let full = plan.certificates_from.is_none();
        let today = Utc::now().date_naive();
        let state = State {
            last_full: if complete && full {
                plan.day
            } else {
                plan.last_full
            },
            watermark: if complete {
                plan.watermark.max(self.latest.map(|d| d.min(today)))
            } else {
                plan.watermark
            },
        };
        Some(serde_json::to_value(state).expect("state serializes"))
    }

    fn parts(&self) -> Vec<Part> {
        TYPES
            .iter()
            .map(|t| {
                let mut variables = json!({ "relatedObjectTypes": [t] });
                if *t == "CERTIFICATE"
                    && let Some(from) = self.plan.certificates_from
                {
                    variables["completionDateFrom"] = json!(from.to_string());
                }
                Part {
                    label: if *t == "TRAINING" {
                        "trainings"
                    } else {
                        "certificates"
                    },
                    op: queries::PORTFOLIO,
                    variables,
                }
            })
            .collect()
    }

    fn scopes(&self) -> Vec<(&'static TableSpec, Scope<'static>)> {
        match self.plan.certificates_from {
            None => vec![(&PORTFOLIO_ITEMS, Scope::All)],
            Some(from) => vec![
                (
                    &PORTFOLIO_ITEMS,
                    Scope::In {
                        column: "related_object_type",
                        values: &TRAINING,
                    },
                ),
                (&PORTFOLIO_ITEMS, certificates_between(from, OPEN_END)),
            ],
        }
    }

    fn key(_node: &ItemNode) -> Option<String> {
        None
    }

    /// Every item key of a scan is distinct: its occurrence number counts the items with the
    /// same user, type, title and issue date read before it in the scan.
    fn new_keys(&self) -> Option<&'static TableSpec> {
        Some(&PORTFOLIO_ITEMS)
    }

    fn prepare(&mut self, warehouse: &Warehouse, resumed: bool) -> Result<()> {
        self.occurrences.clear();
        self.kind = None;
        if !resumed {
            return Ok(());
        }
        let db = |source| {
            super::store_error("portfolio")(crate::store::StoreError::Db {
                doing: "rebuilding portfolio occurrences",
                cause: source,
            })
        };
        let mut stmt = warehouse
            .connection()
            .prepare(
                "SELECT p.user_id, p.related_object_type, p.title,
                        CASE WHEN p.related_object_type = 'CERTIFICATE'
                             THEN p.completion_date END,
                        max(p.occurrence)
                 FROM portfolio_items p JOIN _seen_portfolio_items s USING (item_key)
                 WHERE s.stream = 'portfolio' GROUP BY ALL",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<NaiveDate>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (user, kind, title, day, n) = row.map_err(db)?;
            self.occurrences
                .set(occurrence_hash(&user, &kind, &title, day), n as u32);
        }
        Ok(())
    }

    fn expect(&mut self, part: usize, count: u64) {
        self.enter(part);
        self.occurrences.expect(count);
    }

    fn batches(&mut self, part: usize, nodes: Vec<ItemNode>) -> Result<Batches> {
        let store = super::store_error("portfolio");
        let kind = self.enter(part);
        let mut batch = BatchBuilder::with_capacity(&PORTFOLIO_ITEMS, nodes.len());
        for node in nodes {
            let completion = date(node.completion_date.as_deref());
            let issued = issued(kind, completion);
            if issued.is_some() {
                self.latest = self.latest.max(issued);
            }
            let n =
                self.occurrences
                    .next(occurrence_hash(&node.user.id, kind, &node.title, issued));
            let key = portfolio_item_key(&node.user.id, kind, &node.title, issued, n);
            let spent = node
                .time_spent
                .as_ref()
                .map(|t| t.days * 86_400 + t.seconds);
            let mut row = batch.row();
            row.set("item_key", key)
                .and_then(|r| r.set("user_id", node.user.id.as_str()))
                .and_then(|r| r.set("user_ref", node.user.ref_.as_deref()))
                .and_then(|r| r.set("related_object_type", kind))
                .and_then(|r| r.set("title", node.title.as_str()))
                .and_then(|r| r.set("occurrence", n as i64))
                .and_then(|r| r.set("progress", node.progress))
                .and_then(|r| r.set("score", node.score))
                .and_then(|r| r.set("completion_date", completion))
                .and_then(|r| r.set("end_date", date(node.end_date.as_deref())))
                .and_then(|r| r.set("time_spent_seconds", spent))
                .map_err(store)?;
            batch.push(row).map_err(store)?;
        }
        Ok(vec![(&PORTFOLIO_ITEMS, batch.finish().map_err(store)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of hashes with repeats near and far (across many merges).
    fn hashes(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| {
            let k = if i % 97 == 0 { i / 7 } else { i };
            k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        })
    }

    #[test]
    fn occurrences_number_repeats_as_a_counter_would_across_merges() {
        let n = 3 * RECENT as u64 + 12_345;
        let mut occurrences = Occurrences::default();
        let mut counter: HashMap<u64, u32> = HashMap::new();
        let mut repeats = 0;
        for hash in hashes(n) {
            let want = counter.entry(hash).and_modify(|c| *c += 1).or_insert(1);
            repeats += u32::from(*want > 1);
            assert_eq!(occurrences.next(hash), *want, "hash {hash:x}");
        }
        assert!(repeats > 1_000, "the sequence repeats items: {repeats}");
        assert!(
            occurrences.sorted.len() >= 3 * RECENT,
            "merged into the list"
        );
        assert!(occurrences.sorted.is_sorted());
    }

    #[test]
    fn occurrences_resume_from_what_was_read() {
        let mut occurrences = Occurrences::default();
        occurrences.set(1, 1);
        occurrences.set(2, 3);
        for hash in 10..(RECENT as u64 + 10) {
            occurrences.set(hash, 1);
        }
        assert_eq!(occurrences.next(1), 2);
        assert_eq!(occurrences.next(2), 4);
        assert_eq!(
            occurrences.next(10),
            2,
            "merged into the sorted list, still known"
        );
        assert_eq!(occurrences.next(5), 1);
    }

    #[test]
    fn occurrences_take_room_for_the_part_once() {
        let mut occurrences = Occurrences::default();
        occurrences.expect(200_000);
        let room = occurrences.sorted.capacity();
        assert!(room >= 200_000);
        let at = occurrences.sorted.as_ptr();
        for hash in hashes(200_000) {
            occurrences.next(hash);
        }
        occurrences.merge_recent();
        // Without the reservation the list doubles as it grows, and while it does it holds an
        // old and a new copy of itself.
        assert_eq!(occurrences.sorted.as_ptr(), at, "never moved");
        assert_eq!(occurrences.sorted.capacity(), room);
        // A server's count is not trusted with an allocation of any size.
        let mut hostile = Occurrences::default();
        hostile.expect(u64::MAX);
        assert_eq!(hostile.sorted.capacity(), MAX_RESERVED_ITEMS as usize);
    }

    fn node(user: &str, title: &str) -> ItemNode {
        ItemNode {
            user: ItemUser {
                id: user.into(),
                ref_: None,
            },
            title: title.into(),
            progress: Some(50.0),
            score: None,
            completion_date: None,
            end_date: None,
            time_spent: None,
        }
    }

    #[test]
    fn a_part_reserves_its_items_and_the_next_part_starts_over() {
        let mut portfolio = Portfolio::default();
        portfolio.expect(0, 1_000);
        assert!(portfolio.occurrences.sorted.capacity() >= 1_000);
        let page = || vec![node("u1", "First aid"), node("u1", "First aid")];
        portfolio.batches(0, page()).unwrap();
        assert_eq!(
            portfolio
                .occurrences
                .next(occurrence_hash("u1", "TRAINING", "First aid", None)),
            3
        );
        // The certificate part: the trainings are forgotten.
        portfolio.expect(1, 10);
        assert_eq!(
            portfolio.occurrences.sorted.len() + portfolio.occurrences.recent.len(),
            0
        );
        // A scan resumed inside a part keeps what `prepare` rebuilt.
        let mut resumed = Portfolio::default();
        resumed.occurrences.set(7, 2);
        resumed.expect(1, 10);
        assert_eq!(resumed.occurrences.next(7), 3);
    }
}
