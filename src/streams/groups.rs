//! `groups` stream: paginatedGroups → table `groups`.
//!
//! Strategy: full scan each run (offset pages in parallel). Memberships come with the users
//! stream (each user lists its groups), which costs no extra requests.

use serde::Deserialize;
use serde_json::json;

use super::{Batches, Extract, Part, Result, StreamSpec};
use crate::api::queries;
use crate::store::BatchBuilder;
use crate::store::tables::GROUPS;

pub const STREAM: StreamSpec = StreamSpec {
    name: "groups",
    tables: &[&GROUPS],
    strategy: "full scan each run; memberships come with the users stream",
    scope: "groups.read",
    probe: &queries::GROUPS,
    driver: |scan| Box::pin(scan.drive(Groups)),
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupNode {
    pub id: String,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub name: Option<String>,
    pub user_count: Option<i64>,
}

pub struct Groups;

impl Extract for Groups {
    type Node = GroupNode;

    fn spec(&self) -> &'static StreamSpec {
        &STREAM
    }

    fn parts(&self) -> Vec<Part> {
        vec![Part {
            label: "groups",
            op: queries::GROUPS,
            variables: json!({}),
        }]
    }

    fn key(node: &GroupNode) -> Option<String> {
        Some(node.id.clone())
    }

    fn batches(&mut self, _part: usize, nodes: Vec<GroupNode>) -> Result<Batches> {
        let store = super::store_error("groups");
        let mut batch = BatchBuilder::with_capacity(&GROUPS, nodes.len());
        for node in nodes {
            let mut row = batch.row();
            row.set("id", node.id.as_str())
                .and_then(|r| r.set("ref", node.ref_.as_deref()))
                .and_then(|r| r.set("name", node.name.as_deref()))
                .and_then(|r| r.set("user_count", node.user_count))
                .map_err(store)?;
            batch.push(row).map_err(store)?;
        }
        Ok(vec![(&GROUPS, batch.finish().map_err(store)?)])
    }
}
