//! `portfolio` stream: portfolioReport (trainings, then certificates) → table
//! `portfolio_items`, with every change of progress, score or completion versioned in
//! `portfolio_item_history` (by the store).
//!
//! The node has no id (pluvo-api.md), so a row's key is (user id, related object type,
//! title, occurrence): `occurrence` numbers the rare repeats of one title for one user (a
//! re-taken certificate) in the order the API lists them, which is stable between runs. The
//! numbering is kept for the whole scan and rebuilt from the scan's seen keys on resume.
//!
//! Strategy: full scan each run, one scan per `relatedObjectTypes` (the node does not say its
//! type). The API has no changed-since filter, and in-progress trainings have no completion
//! date to window on, so only a full scan sees progress; unchanged rows are not written.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Deserialize;
use serde_json::json;

use super::{Batches, Extract, Part, Result, StreamSpec, date};
use crate::api::queries;
use crate::store::BatchBuilder;
use crate::store::Warehouse;
use crate::store::tables::{PORTFOLIO_ITEMS, portfolio_item_key};

pub const STREAM: StreamSpec = StreamSpec {
    name: "portfolio",
    tables: &[&PORTFOLIO_ITEMS],
    strategy: "full scan per type (TRAINING, CERTIFICATE) each run; unchanged rows are not \
               written; changes versioned in portfolio_item_history; missing items \
               soft-deleted after a complete scan",
};

/// The two scans, in order; the index is the part number.
const TYPES: [&str; 2] = ["TRAINING", "CERTIFICATE"];

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
    /// Items seen so far in this scan per (user id, type, title) hash.
    occurrences: HashMap<u64, u32>,
}

fn pair_hash(user_id: &str, kind: &str, title: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (user_id, kind, title).hash(&mut h);
    h.finish()
}

impl Extract for Portfolio {
    type Node = ItemNode;

    fn spec(&self) -> &'static StreamSpec {
        &STREAM
    }

    fn parts(&self) -> Vec<Part> {
        TYPES
            .iter()
            .map(|t| Part {
                label: if *t == "TRAINING" {
                    "trainings"
                } else {
                    "certificates"
                },
                op: queries::PORTFOLIO,
                variables: json!({ "relatedObjectTypes": [t] }),
            })
            .collect()
    }

    fn key(_node: &ItemNode) -> Option<String> {
        None
    }

    fn prepare(&mut self, warehouse: &Warehouse, resumed: bool) -> Result<()> {
        self.occurrences.clear();
        if !resumed {
            return Ok(());
        }
        let db = |source| {
            super::store_error("portfolio")(crate::store::StoreError::Db {
                doing: "rebuilding portfolio occurrences",
                source,
            })
        };
        let mut stmt = warehouse
            .connection()
            .prepare(
                "SELECT p.user_id, p.related_object_type, p.title, max(p.occurrence)
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
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (user, kind, title, n) = row.map_err(db)?;
            self.occurrences
                .insert(pair_hash(&user, &kind, &title), n as u32);
        }
        Ok(())
    }

    fn batches(&mut self, part: usize, nodes: Vec<ItemNode>) -> Result<Batches> {
        let store = super::store_error("portfolio");
        let kind = TYPES[part];
        let mut batch = BatchBuilder::with_capacity(&PORTFOLIO_ITEMS, nodes.len());
        for node in nodes {
            let n = self
                .occurrences
                .entry(pair_hash(&node.user.id, kind, &node.title))
                .or_default();
            *n += 1;
            let key = portfolio_item_key(&node.user.id, kind, &node.title, *n);
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
                .and_then(|r| r.set("occurrence", *n as i64))
                .and_then(|r| r.set("progress", node.progress))
                .and_then(|r| r.set("score", node.score))
                .and_then(|r| r.set("completion_date", date(node.completion_date.as_deref())))
                .and_then(|r| r.set("end_date", date(node.end_date.as_deref())))
                .and_then(|r| r.set("time_spent_seconds", spent))
                .map_err(store)?;
            batch.push(row).map_err(store)?;
        }
        Ok(vec![(&PORTFOLIO_ITEMS, batch.finish().map_err(store)?)])
    }
}
