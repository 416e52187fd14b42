//! Which Pluvo organisation the warehouse holds, checked before a sync reads a page: a URL
//! that now points at another organisation (staging, a new tenant, a typo, a gateway routing
//! to the wrong backend) would otherwise merge strangers into the tables and mark everyone
//! deleted.
//!
//! Pluvo's API exposes no organisation id (pluvo-api.md: no `organisation`/`viewer` field in
//! the contract). Assumed instead, as one switch here: user ids are UUIDs, unique across
//! organisations, so the organisation is identified by the base URL plus a few **anchor**
//! users the warehouse holds (the oldest it has seen). The API serves the same organisation
//! when one of the anchors still exists there (`user(id:)`, one request each, at most
//! [`ANCHORS`]), or when its first page of users shares an id with the warehouse. Its
//! **fingerprint** is a short hash of the anchor ids, shown to the person who must decide.
//!
//! Inputs: the API client and the warehouse's `users` and `_organisation` tables. Output: the
//! verdict; [`record`] stores the identity after a successful sync. Never prints.

use std::sync::Mutex;

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{Client, queries};
use crate::store::{StoreError, Warehouse};

/// Anchor users kept and looked up per check.
pub const ANCHORS: usize = 3;

/// An organisation as a person can recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub base_url: String,
    pub fingerprint: String,
    /// Refs (or ids, for users without a ref) of its anchor users.
    pub users: Vec<String>,
}

impl std::fmt::Display for Organisation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<String> = self.users.iter().map(|u| format!("`{u}`")).collect();
        write!(
            f,
            "`{}`, fingerprint {} (users {})",
            self.base_url,
            self.fingerprint,
            if users.is_empty() {
                "none listed".to_string()
            } else {
                users.join(", ")
            }
        )
    }
}

/// The API serves another organisation than the warehouse holds.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{url}` serves another organisation than the one this warehouse holds ({why}); nothing was read or changed.\n  \
     this warehouse: {held}\n  \
     the API now:    {served}\n\
     If the change is intended (a new tenant), run `pluvo-warehouse sync --accept-organisation` \
     (rows of the old organisation are then marked deleted), or sync into another --db; \
     otherwise correct `pluvo.url`",
    url = served.base_url
)]
pub struct OtherOrganisation {
    pub held: Organisation,
    pub served: Organisation,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Other(Box<OtherOrganisation>),
    #[error("checking which organisation `{url}` serves: {cause}")]
    Api {
        url: String,
        cause: crate::api::Error,
    },
    #[error("reading which organisation the warehouse holds: {cause}")]
    Store { cause: StoreError },
}

fn fingerprint(ids: &[String]) -> String {
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let digest = Sha256::digest(sorted.join("\u{1f}").as_bytes());
    hex::encode(&digest[..4])
}

/// The stored identity: base URL, anchor ids and refs.
struct Held {
    base_url: String,
    ids: Vec<String>,
    names: Vec<String>,
}

fn db(cause: duckdb::Error) -> Error {
    Error::Store {
        cause: StoreError::Db {
            doing: "reading `_organisation`",
            cause,
        },
    }
}

fn held(warehouse: &Warehouse) -> Result<Option<Held>, Error> {
    let conn = warehouse.connection();
    let recorded = conn.query_row(
        "SELECT base_url, to_json(anchor_ids)::VARCHAR, to_json(anchor_refs)::VARCHAR
         FROM _organisation LIMIT 1",
        [],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        },
    );
    match recorded {
        Ok((base_url, ids, names)) => Ok(Some(Held {
            base_url,
            ids: serde_json::from_str(&ids).unwrap_or_default(),
            names: serde_json::from_str(&names).unwrap_or_default(),
        })),
        Err(duckdb::Error::QueryReturnedNoRows) => {
            // Not recorded yet (a warehouse from before this check): its oldest users.
            let (ids, names) = anchors(warehouse).map_err(db)?;
            Ok((!ids.is_empty()).then(|| Held {
                base_url: String::new(),
                ids,
                names,
            }))
        }
        Err(e) => Err(db(e)),
    }
}

/// The warehouse's anchor users: the oldest it holds that are not deleted (ids, names).
fn anchors(warehouse: &Warehouse) -> duckdb::Result<(Vec<String>, Vec<String>)> {
    let mut stmt = warehouse.connection().prepare(
        "SELECT id, coalesce(ref, id) FROM users WHERE _deleted_at IS NULL
         ORDER BY _first_seen_at, id LIMIT ?",
    )?;
    let rows = stmt.query_map([ANCHORS as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = (Vec::new(), Vec::new());
    for row in rows {
        let (id, name) = row?;
        out.0.push(id);
        out.1.push(name);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct OneUser {
    user: Option<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(rename = "ref")]
    ref_: Option<String>,
}

/// Check that `client` serves the organisation the warehouse holds. `Ok` when it does, when
/// the warehouse holds none yet, or when `accept` (a person said the change is intended).
/// The warehouse is behind a mutex only so that this future can move between threads; it is
/// locked for the two reads, never across a request.
pub async fn check(
    client: &Client,
    warehouse: &Mutex<Warehouse>,
    base_url: &str,
    accept: bool,
) -> Result<(), Error> {
    let lock = || warehouse.lock().unwrap_or_else(|e| e.into_inner());
    let held = held(&lock())?;
    let Some(held) = held else {
        return Ok(());
    };
    if accept {
        return Ok(());
    }
    let api = |cause| Error::Api {
        url: base_url.to_string(),
        cause,
    };
    let held_org = Organisation {
        base_url: if held.base_url.is_empty() {
            base_url.to_string()
        } else {
            held.base_url.clone()
        },
        fingerprint: fingerprint(&held.ids),
        users: held.names.clone(),
    };
    let mut why = Vec::new();
    if !held.base_url.is_empty() && held.base_url != base_url {
        why.push(format!("`pluvo.url` was `{}`", held.base_url));
    }
    // Does any anchor still exist there?
    let mut found = false;
    for id in &held.ids {
        let one: OneUser = match client.query(&queries::USER, json!({ "id": id })).await {
            Ok(one) => one,
            // Without `users.read` the users cannot be compared; the URL check still holds.
            Err(e) if e.to_string().to_lowercase().contains("permission") => {
                return url_only(why, held_org, base_url);
            }
            Err(e) => return Err(api(e)),
        };
        if one.user.is_some_and(|u| &u.id == id) {
            found = true;
            break;
        }
    }
    if found && why.is_empty() {
        return Ok(());
    }
    // Name what the API serves: its first users, and whether the warehouse knows any.
    let page: serde_json::Value = client
        .query(&queries::USERS, json!({ "first": 50 }))
        .await
        .map_err(api)?;
    let nodes: Vec<Node> = page
        .pointer("/paginatedUsers/edges")
        .and_then(|e| e.as_array())
        .map(|edges| {
            edges
                .iter()
                .filter_map(|e| serde_json::from_value(e["node"].clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    if !found && !nodes.is_empty() {
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let known: i64 = lock()
            .connection()
            .query_row(
                "SELECT count(*) FROM users
                 WHERE id IN (SELECT unnest(CAST(CAST(? AS JSON) AS VARCHAR[])))",
                [serde_json::to_string(&ids).unwrap_or_default()],
                |r| r.get(0),
            )
            .map_err(db)?;
        found = known > 0;
    }
    if !found && (!held.ids.is_empty()) {
        why.push("none of the warehouse's users exists there".into());
    }
    if why.is_empty() {
        return Ok(());
    }
    let mut served: Vec<&Node> = nodes.iter().collect();
    served.sort_by(|a, b| a.id.cmp(&b.id));
    served.truncate(ANCHORS);
    let served_ids: Vec<String> = served.iter().map(|n| n.id.clone()).collect();
    Err(Error::Other(Box::new(OtherOrganisation {
        held: held_org,
        served: Organisation {
            base_url: base_url.to_string(),
            fingerprint: fingerprint(&served_ids),
            users: served
                .iter()
                .map(|n| n.ref_.clone().unwrap_or_else(|| n.id.clone()))
                .collect(),
        },
        why: why.join("; "),
    })))
}

fn url_only(why: Vec<String>, held: Organisation, base_url: &str) -> Result<(), Error> {
    if why.is_empty() {
        return Ok(());
    }
    Err(Error::Other(Box::new(OtherOrganisation {
        held,
        served: Organisation {
            base_url: base_url.to_string(),
            fingerprint: "unknown".into(),
            users: Vec::new(),
        },
        why: why.join("; "),
    })))
}

/// Record that the warehouse holds the organisation at `base_url`, with its oldest users
/// still present as anchors (after a successful sync; replaces what was recorded).
pub fn record(warehouse: &Warehouse, base_url: &str) -> Result<(), StoreError> {
    let db = |cause| StoreError::Db {
        doing: "recording the organisation",
        cause,
    };
    let (ids, names) = anchors(warehouse).map_err(db)?;
    if ids.is_empty() {
        return Ok(());
    }
    let conn = warehouse.connection();
    conn.execute_batch("BEGIN TRANSACTION; DELETE FROM _organisation;")
        .map_err(db)?;
    let inserted = conn.execute(
        "INSERT INTO _organisation VALUES (?, ?, CAST(CAST(? AS JSON) AS VARCHAR[]),
             CAST(CAST(? AS JSON) AS VARCHAR[]), now())",
        duckdb::params![
            base_url,
            fingerprint(&ids),
            serde_json::to_string(&ids).unwrap_or_default(),
            serde_json::to_string(&names).unwrap_or_default()
        ],
    );
    match inserted {
        Ok(_) => conn.execute_batch("COMMIT").map_err(db),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(db(e))
        }
    }
}
