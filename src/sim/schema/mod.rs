//! The simulator's GraphQL schema (async-graphql): queries and mutations over [`Dataset`],
//! with the semantics of `../shared/pluvo-api.md`. `contract/pluvo.graphql` is this schema's
//! SDL; a test keeps the two equal. One file per part of the schema: `scalars.rs`,
//! `connection.rs`, `nodes.rs`, `query.rs`, `mutation.rs` (with the mutations' effects).
//!
//! Connections use graphene-style array cursors (`base64("arrayconnection:N")`), `first`/`last`
//! above 50 is an error (the documented maximum), and `offset` adds to `after` as in
//! graphene-django. Every top-level field checks the OAuth scope it needs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::{
    ComplexObject, Context, EmptySubscription, Enum, Error, ErrorExtensions, InputObject,
    InputValueError, InputValueResult, Object, Result, Scalar, ScalarType, Schema, SimpleObject,
    Union, Value,
};
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};

use super::State;
use super::data::{Change, Dataset, Id, Item, ItemChange, Kind, Membership, ROLES};

/// The API's page-size maximum (pluvo-api.md: "Maximum `first` is 50").
pub const MAX_PAGE: usize = 50;

pub type PluvoSchema = Schema<Query, Mutation, EmptySubscription>;

/// Build the schema over shared state (or over a throwaway dataset for SDL export).
pub fn build(state: Arc<State>) -> PluvoSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .data(state)
        .limit_depth(12)
        .finish()
}

/// OAuth scopes granted to the request's token.
#[derive(Debug, Clone)]
pub struct Grant(pub HashSet<String>);

fn require(ctx: &Context<'_>, scope: &str) -> Result<()> {
    let granted = ctx
        .data::<Grant>()
        .map(|g| g.0.contains(scope))
        .unwrap_or(false);
    if granted {
        Ok(())
    } else {
        Err(
            Error::new("You do not have permission to perform this action")
                .extend_with(|_, e| e.set("code", "PermissionDenied")),
        )
    }
}

fn state<'a>(ctx: &Context<'a>) -> &'a Arc<State> {
    ctx.data_unchecked::<Arc<State>>()
}

mod connection;
mod mutation;
mod nodes;
mod query;
mod scalars;
#[cfg(test)]
mod tests;

pub use connection::*;
pub use mutation::*;
pub use nodes::*;
pub use query::*;
pub use scalars::*;
