//! `certificates` stream: the certificate templates (`certificates`) → table `certificates`.
//!
//! Strategy: full scan each run by cursor (the connection has no `offset`; a handful of pages).
//! Issued certificates are portfolio items (stream `portfolio`).

use serde::Deserialize;
use serde_json::json;

use super::{Batches, Extract, Part, Result, StreamSpec};
use crate::api::queries;
use crate::store::BatchBuilder;
use crate::store::tables::CERTIFICATES;

pub const STREAM: StreamSpec = StreamSpec {
    name: "certificates",
    tables: &[&CERTIFICATES],
    strategy: "full scan by cursor each run (templates only; a few pages)",
    // Not documented by Pluvo: assumed (pluvo-api.md).
    scope: "trainings.read",
    probe: &queries::CERTIFICATES,
    driver: |scan| Box::pin(scan.drive(Certificates)),
};

#[derive(Debug, Deserialize)]
pub struct CertificateNode {
    pub id: String,
    pub name: Option<String>,
    pub title: Option<String>,
}

pub struct Certificates;

impl Extract for Certificates {
    type Node = CertificateNode;

    fn spec(&self) -> &'static StreamSpec {
        &STREAM
    }

    fn parts(&self) -> Vec<Part> {
        vec![Part {
            label: "templates",
            op: queries::CERTIFICATES,
            variables: json!({}),
        }]
    }

    fn key(node: &CertificateNode) -> Option<String> {
        Some(node.id.clone())
    }

    fn batches(&mut self, _part: usize, nodes: Vec<CertificateNode>) -> Result<Batches> {
        let store = super::store_error("certificates");
        let mut batch = BatchBuilder::with_capacity(&CERTIFICATES, nodes.len());
        for node in nodes {
            let mut row = batch.row();
            row.set("id", node.id.as_str())
                .and_then(|r| r.set("name", node.name.as_deref()))
                .and_then(|r| r.set("title", node.title.as_deref()))
                .map_err(store)?;
            batch.push(row).map_err(store)?;
        }
        Ok(vec![(&CERTIFICATES, batch.finish().map_err(store)?)])
    }
}
