//! `users` stream: paginatedUsers (active, then archived) → tables `users` and
//! `group_members` (from each user's `participantGroups` / `managerGroups`), merged by id.
//!
//! Strategy: full scan every run. The API has no changed-since filter for users, so the scan
//! is cheap instead: offset pages in parallel, and unchanged rows cause no writes (content
//! hash). Users missing from a complete scan are soft-deleted; so are their memberships.

use serde::Deserialize;
use serde_json::json;

use super::{Batches, Drift, Extract, Part, Result, StreamSpec, timestamp};
use crate::api::queries;
use crate::store::BatchBuilder;
use crate::store::tables::{GROUP_MEMBERS, USERS};

pub const STREAM: StreamSpec = StreamSpec {
    name: "users",
    tables: &[&USERS, &GROUP_MEMBERS],
    strategy: "full scan (active + archived) each run; unchanged rows are not written; \
               missing users and memberships are soft-deleted after a complete scan",
    scope: "users.read",
    probe: &queries::USERS,
    driver: |scan| Box::pin(scan.drive(Users::default())),
};

/// Roles the contract knows; others are kept but reported as schema drift.
const KNOWN_ROLES: [&str; 5] = ["OWNER", "MANAGER", "AUTHOR", "TRAINER", "USER"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserNode {
    pub id: String,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub last_login: Option<String>,
    pub archived: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    pub language: Option<String>,
    pub extra_fields: Option<String>,
    #[serde(default)]
    pub participant_groups: Vec<GroupRef>,
    #[serde(default)]
    pub manager_groups: Vec<GroupRef>,
}

#[derive(Debug, Deserialize)]
pub struct GroupRef {
    pub id: String,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
}

#[derive(Debug, Default)]
pub struct Users {
    drift: Drift,
}

impl Extract for Users {
    type Node = UserNode;

    fn spec(&self) -> &'static StreamSpec {
        &STREAM
    }

    fn parts(&self) -> Vec<Part> {
        vec![
            Part {
                label: "active",
                op: queries::USERS,
                variables: json!({ "archived": false }),
            },
            Part {
                label: "archived",
                op: queries::USERS,
                variables: json!({ "archived": true }),
            },
        ]
    }

    fn key(node: &UserNode) -> Option<String> {
        Some(node.id.clone())
    }

    fn batches(&mut self, _part: usize, nodes: Vec<UserNode>) -> Result<Batches> {
        let store = super::store_error("users");
        let mut users = BatchBuilder::with_capacity(&USERS, nodes.len());
        let mut members = BatchBuilder::new(&GROUP_MEMBERS);
        for node in nodes {
            for role in &node.roles {
                if !KNOWN_ROLES.contains(&role.as_str()) {
                    self.drift.note(format!("unknown role `{role}`"));
                }
            }
            let extra = match node.extra_fields.as_deref().map(crate::store::Cell::json) {
                Some(Ok(cell)) => cell,
                Some(Err(_)) => {
                    self.drift.note("extraFields that are not JSON".into());
                    crate::store::Cell::Null
                }
                None => crate::store::Cell::Null,
            };
            let mut row = users.row();
            row.set("id", node.id.as_str())
                .and_then(|r| r.set("ref", node.ref_.as_deref()))
                .and_then(|r| r.set("name", node.name.as_deref()))
                .and_then(|r| r.set("email", node.email.as_deref()))
                .and_then(|r| r.set("last_login", timestamp(node.last_login.as_deref())))
                .and_then(|r| r.set("archived", node.archived))
                .and_then(|r| r.set("language", node.language.as_deref()))
                .and_then(|r| r.set("roles", node.roles.as_slice()))
                .and_then(|r| r.set("extra_fields", extra))
                .map_err(store)?;
            users.push(row).map_err(store)?;
            let groups = node
                .participant_groups
                .iter()
                .map(|g| (g, "participant"))
                .chain(node.manager_groups.iter().map(|g| (g, "manager")));
            for (group, role) in groups {
                let mut row = members.row();
                row.set("group_id", group.id.as_str())
                    .and_then(|r| r.set("user_id", node.id.as_str()))
                    .and_then(|r| r.set("role", role))
                    .and_then(|r| r.set("group_ref", group.ref_.as_deref()))
                    .and_then(|r| r.set("user_ref", node.ref_.as_deref()))
                    .map_err(store)?;
                members.push(row).map_err(store)?;
            }
        }
        Ok(vec![
            (&USERS, users.finish().map_err(store)?),
            (&GROUP_MEMBERS, members.finish().map_err(store)?),
        ])
    }

    fn drift(&self) -> Option<String> {
        self.drift.report()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(extra: serde_json::Value) -> serde_json::Value {
        let mut node = json!({
            "id": "u1", "ref": "r1", "name": "Ann", "email": "ann@example.com",
            "lastLogin": "2026-05-01T10:00:00Z", "archived": false, "roles": ["USER"],
            "language": "nl", "extraFields": "{\"dept\": \"HR\"}",
            "participantGroups": [{ "id": "g1", "ref": "G1", "name": "Sales" }],
            "managerGroups": []
        });
        for (k, v) in extra.as_object().unwrap() {
            node[k] = v.clone();
        }
        node
    }

    #[test]
    fn drift_is_reported_once_per_kind_and_does_not_stop_the_page() {
        let nodes: Vec<UserNode> = [
            // A field the contract does not know: ignored.
            node(json!({ "nickname": "annie" })),
            node(json!({ "id": "u2", "roles": ["USER", "SUPERVISOR"] })),
            node(json!({ "id": "u3", "roles": ["SUPERVISOR"], "extraFields": "not json" })),
        ]
        .into_iter()
        .map(|n| serde_json::from_value(n).unwrap())
        .collect();
        let mut users = Users::default();
        let batches = users.batches(0, nodes).unwrap();
        assert_eq!(batches[0].1.num_rows(), 3);
        assert_eq!(batches[1].1.num_rows(), 3, "one membership per user");
        assert_eq!(
            users.drift().as_deref(),
            Some("extraFields that are not JSON (1×); unknown role `SUPERVISOR` (2×)")
        );
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let mut n = node(json!({}));
        n.as_object_mut().unwrap().remove("id");
        let err = serde_json::from_value::<UserNode>(n)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "missing field `id`");
    }
}
