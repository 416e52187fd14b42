//! `trainings` stream: paginatedTrainings → table `trainings` (titles, dates, active/archived),
//! the dimension analysts join portfolio items to.
//!
//! Strategy: full scan each run (offset pages in parallel); a few hundred rows at most.

use serde::Deserialize;
use serde_json::json;

use super::{Batches, Extract, Part, Result, StreamSpec, timestamp};
use crate::api::queries;
use crate::store::BatchBuilder;
use crate::store::tables::TRAININGS;

pub const STREAM: StreamSpec = StreamSpec {
    name: "trainings",
    tables: &[&TRAININGS],
    strategy: "full scan each run",
    scope: "trainings.read",
    probe: &queries::TRAININGS,
    driver: |scan| Box::pin(scan.drive(Trainings)),
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingNode {
    pub id: String,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub title: Option<String>,
    pub is_active: Option<bool>,
    pub archived: Option<bool>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

pub struct Trainings;

impl Extract for Trainings {
    type Node = TrainingNode;

    fn spec(&self) -> &'static StreamSpec {
        &STREAM
    }

    fn parts(&self) -> Vec<Part> {
        vec![Part {
            label: "trainings",
            op: queries::TRAININGS,
            variables: json!({}),
        }]
    }

    fn key(node: &TrainingNode) -> Option<String> {
        Some(node.id.clone())
    }

    fn batches(&mut self, _part: usize, nodes: Vec<TrainingNode>) -> Result<Batches> {
        let store = super::store_error("trainings");
        let mut batch = BatchBuilder::with_capacity(&TRAININGS, nodes.len());
        for node in nodes {
            let mut row = batch.row();
            row.set("id", node.id.as_str())
                .and_then(|r| r.set("ref", node.ref_.as_deref()))
                .and_then(|r| r.set("title", node.title.as_deref()))
                .and_then(|r| r.set("is_active", node.is_active))
                .and_then(|r| r.set("archived", node.archived))
                .and_then(|r| r.set("start_date", timestamp(node.start_date.as_deref())))
                .and_then(|r| r.set("end_date", timestamp(node.end_date.as_deref())))
                .map_err(store)?;
            batch.push(row).map_err(store)?;
        }
        Ok(vec![(&TRAININGS, batch.finish().map_err(store)?)])
    }
}
