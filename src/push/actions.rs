//! The action table: for each `push` action, the columns its SQL must return, the Pluvo
//! mutation it sends, how rows are packed into one request, and how the answer is read back
//! into one outcome per row.
//!
//! Two shapes (pluvo-api.md "Mutations"):
//! - **list** mutations carry many refs per call (`addUsersToGroup`, `addUsersToTraining`,
//!   `createOfferEventEnrollments`, `generateCertificate`) and answer per ref or id;
//! - **per-user** mutations (`updateOrCreateUser`, `updateExtraCategoryValues`) are sent as
//!   GraphQL aliases `a0`, `a1`, ... in one document; each alias answers (or fails) alone.
//!
//! Not here: SQL and validation (`plan.rs`), the ledger (`ledger.rs`), sending (`apply.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::{Operation, queries};

/// What a push does to the selected users, with its arguments (stored with the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    ArchiveUsers,
    UnarchiveUsers,
    AddToGroup {
        group: String,
    },
    AddToTraining {
        training: String,
        role: TrainingRole,
    },
    Enroll {
        offer_event: String,
    },
    GenerateCertificate {
        /// Template id.
        certificate: String,
        /// Template title: what the portfolio shows for an issued certificate.
        title: String,
        training: Option<String>,
        /// Fixed when the plan is made, so a resumed apply issues (and checks) the same day.
        issue_date: NaiveDate,
    },
    SetExtraField {
        category: String,
    },
    UpsertUsers,
}

/// The role `add-to-training` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrainingRole {
    Participant,
    Trainer,
    Mentor,
}

/// The type a selected column must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// VARCHAR (integers are accepted and read as text: CSV files often type refs as numbers).
    Text,
    /// VARCHAR[] or a comma-separated VARCHAR.
    TextList,
    /// An extra-field value: VARCHAR, BOOLEAN, TIMESTAMP/DATE or VARCHAR[] (choices).
    Value,
}

/// One column an action reads from the selection.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: ColumnType,
    pub required: bool,
}

const fn col(name: &'static str, ty: ColumnType, required: bool) -> ColumnSpec {
    ColumnSpec { name, ty, required }
}

const REF_ONLY: &[ColumnSpec] = &[col("ref", ColumnType::Text, true)];
const EXTRA_FIELD: &[ColumnSpec] = &[
    col("ref", ColumnType::Text, true),
    col("value", ColumnType::Value, true),
];
const UPSERT: &[ColumnSpec] = &[
    col("ref", ColumnType::Text, true),
    col("email", ColumnType::Text, true),
    col("name", ColumnType::Text, true),
    col("language", ColumnType::Text, false),
    col("roles", ColumnType::TextList, false),
];

/// How rows are packed into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Many refs (or ids) in one mutation call.
    List,
    /// One mutation per row, as aliases of one document.
    Aliased,
}

/// What the server said about one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowStatus {
    Succeeded,
    /// Already in place (already a member, already enrolled): nothing changed.
    Already,
    Failed(String),
}

/// One row's outcome, with the part of the answer that concerns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutcome {
    pub key: String,
    pub status: RowStatus,
    pub answer: Value,
}

/// One row as the apply loop sends it: its key (ref) and its input (selected values, plus
/// `user_id` where the mutation takes ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub input: Map<String, Value>,
}

impl Action {
    /// The action's name on the command line and in `_push_plans.action`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ArchiveUsers => "archive-users",
            Action::UnarchiveUsers => "unarchive-users",
            Action::AddToGroup { .. } => "add-to-group",
            Action::AddToTraining { .. } => "add-to-training",
            Action::Enroll { .. } => "enroll",
            Action::GenerateCertificate { .. } => "generate-certificate",
            Action::SetExtraField { .. } => "set-extra-field",
            Action::UpsertUsers => "upsert-users",
        }
    }

    /// The Pluvo mutation sent.
    pub fn mutation(&self) -> &'static str {
        match self {
            Action::ArchiveUsers | Action::UnarchiveUsers | Action::UpsertUsers => {
                "updateOrCreateUser"
            }
            Action::AddToGroup { .. } => "addUsersToGroup",
            Action::AddToTraining { .. } => "addUsersToTraining",
            Action::Enroll { .. } => "createOfferEventEnrollments",
            Action::GenerateCertificate { .. } => "generateCertificate",
            Action::SetExtraField { .. } => "updateExtraCategoryValues",
        }
    }

    /// The columns the selection must (or may) have.
    pub fn columns(&self) -> &'static [ColumnSpec] {
        match self {
            Action::SetExtraField { .. } => EXTRA_FIELD,
            Action::UpsertUsers => UPSERT,
            _ => REF_ONLY,
        }
    }

    pub fn shape(&self) -> Shape {
        match self {
            Action::ArchiveUsers
            | Action::UnarchiveUsers
            | Action::UpsertUsers
            | Action::SetExtraField { .. } => Shape::Aliased,
            _ => Shape::List,
        }
    }

    /// Rows per request unless `--batch-size` says otherwise. List mutations take many refs
    /// (Pluvo documents no limit; 250 keeps a request body around 10 KB); aliased documents
    /// grow per row, so fewer.
    pub fn default_batch_size(&self) -> usize {
        match self.shape() {
            Shape::List => 250,
            Shape::Aliased => 50,
        }
    }

    /// Safe to resend when the outcome of a request is unknown (pluvo-api.md: every mutation
    /// the tool sends is "safe to repeat" except `generateCertificate`, which may issue a
    /// second certificate). An `updateOrCreateUser` with `sendInvite` (`--notify`) is not
    /// either: a resend may e-mail a second invite. Unknown outcomes of these are looked up
    /// before anything is re-sent (`apply.rs`).
    pub fn idempotent(&self, notify: bool) -> bool {
        match self {
            Action::GenerateCertificate { .. } => false,
            Action::ArchiveUsers | Action::UnarchiveUsers | Action::UpsertUsers => !notify,
            _ => true,
        }
    }

    /// The request for `rows`: the operation and its variables.
    pub fn request(&self, rows: &[Row], notify: bool) -> (Operation, Value) {
        let refs: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        match self {
            Action::AddToGroup { group } => (
                queries::ADD_USERS_TO_GROUP,
                json!({ "groupRef": group, "userRefs": refs }),
            ),
            Action::AddToTraining { training, role } => (
                queries::ADD_USERS_TO_TRAINING,
                json!({ "trainingRef": training, "userRefs": refs, "sendInvites": notify, "role": role }),
            ),
            Action::Enroll { offer_event } => (
                queries::CREATE_OFFER_EVENT_ENROLLMENTS,
                json!({ "offerEventRef": offer_event, "userRefs": refs, "sendMail": notify }),
            ),
            Action::GenerateCertificate {
                certificate,
                training,
                issue_date,
                ..
            } => {
                let ids: Vec<&Value> = rows.iter().map(|r| &r.input["user_id"]).collect();
                (
                    queries::GENERATE_CERTIFICATE,
                    json!({
                        "id": certificate,
                        "userIds": ids,
                        "trainingId": training,
                        // Noon UTC is the same calendar day in every time zone within ±11 h.
                        "issueDate": format!("{issue_date}T12:00:00Z"),
                    }),
                )
            }
            Action::ArchiveUsers | Action::UnarchiveUsers | Action::UpsertUsers => {
                let mut vars = Map::new();
                vars.insert("n".into(), json!(notify));
                for (i, row) in rows.iter().enumerate() {
                    vars.insert(format!("r{i}"), json!(row.key));
                    vars.insert(format!("u{i}"), self.user_input(row));
                }
                let op = aliased(AliasKind::User, rows.len());
                // With invites on, the client must not resend after an unknown outcome either.
                let op = if notify { op.not_idempotent() } else { op };
                (op, Value::Object(vars))
            }
            Action::SetExtraField { category } => {
                let mut vars = Map::new();
                for (i, row) in rows.iter().enumerate() {
                    vars.insert(format!("r{i}"), json!(row.key));
                    vars.insert(format!("v{i}"), json!([extra_value(category, row)]));
                }
                (aliased(AliasKind::Extra, rows.len()), Value::Object(vars))
            }
        }
    }

    /// `UserInput` of one row of an `updateOrCreateUser` action.
    fn user_input(&self, row: &Row) -> Value {
        match self {
            Action::ArchiveUsers => json!({ "archived": true }),
            Action::UnarchiveUsers => json!({ "archived": false }),
            _ => {
                let mut user = Map::new();
                user.insert("ref".into(), json!(row.key));
                for field in ["email", "name", "language", "roles"] {
                    if let Some(v) = row.input.get(field).filter(|v| !v.is_null()) {
                        user.insert(field.into(), v.clone());
                    }
                }
                Value::Object(user)
            }
        }
    }

    /// Read the answer (`data`, possibly partial, and the GraphQL errors) into one outcome per
    /// row, in the order of `rows`.
    pub fn outcomes(
        &self,
        rows: &[Row],
        data: Option<&Value>,
        errors: &[crate::api::GraphQlError],
    ) -> Vec<RowOutcome> {
        let null = Value::Null;
        let data = data.unwrap_or(&null);
        match self.shape() {
            Shape::Aliased => rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let alias = format!("a{i}");
                    let mine: Vec<String> = errors
                        .iter()
                        .filter(|e| e.path.first().and_then(Value::as_str) == Some(&alias))
                        .map(ToString::to_string)
                        .collect();
                    let answer = data.get(&alias).cloned().unwrap_or(Value::Null);
                    let status = if !mine.is_empty() {
                        RowStatus::Failed(mine.join("; "))
                    } else if answer.is_null() {
                        RowStatus::Failed(whole_request_error(errors, "no answer for this row"))
                    } else {
                        RowStatus::Succeeded
                    };
                    RowOutcome {
                        key: row.key.clone(),
                        status,
                        answer,
                    }
                })
                .collect(),
            Shape::List => self.list_outcomes(rows, data, errors),
        }
    }

    fn list_outcomes(
        &self,
        rows: &[Row],
        data: &Value,
        errors: &[crate::api::GraphQlError],
    ) -> Vec<RowOutcome> {
        let field = data.get(self.mutation()).unwrap_or(&Value::Null);
        if field.is_null() {
            let why = whole_request_error(errors, "the mutation answered null");
            return rows
                .iter()
                .map(|r| RowOutcome {
                    key: r.key.clone(),
                    status: RowStatus::Failed(why.clone()),
                    answer: Value::Null,
                })
                .collect();
        }
        let set = |v: &Value, name: &str| -> HashSet<String> {
            v.get(name)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        match self {
            Action::AddToGroup { .. } | Action::AddToTraining { .. } => {
                let (added, already, failed) = (
                    set(field, "addedRefs"),
                    set(field, "alreadyAddedRefs"),
                    set(field, "failedRefs"),
                );
                rows.iter()
                    .map(|r| {
                        let (status, list) = if failed.contains(&r.key) {
                            (
                                RowStatus::Failed("in `failedRefs` (unknown user?)".into()),
                                "failedRefs",
                            )
                        } else if already.contains(&r.key) {
                            (RowStatus::Already, "alreadyAddedRefs")
                        } else if added.contains(&r.key) {
                            (RowStatus::Succeeded, "addedRefs")
                        } else {
                            (RowStatus::Failed("not in the answer".into()), "")
                        };
                        RowOutcome {
                            key: r.key.clone(),
                            status,
                            answer: json!({ "list": list }),
                        }
                    })
                    .collect()
            }
            Action::Enroll { .. } => {
                let by_ref: HashMap<String, Value> = field
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let r = e.pointer("/user/ref")?.as_str()?.to_string();
                        Some((r, json!({ "id": e["id"], "status": e["status"] })))
                    })
                    .collect();
                rows.iter()
                    .map(|r| match by_ref.get(&r.key) {
                        Some(answer) => RowOutcome {
                            key: r.key.clone(),
                            status: RowStatus::Succeeded,
                            answer: answer.clone(),
                        },
                        None => RowOutcome {
                            key: r.key.clone(),
                            status: RowStatus::Failed(
                                "no enrollment in the answer (unknown user?)".into(),
                            ),
                            answer: Value::Null,
                        },
                    })
                    .collect()
            }
            Action::GenerateCertificate { .. } => {
                let bulk = field.get("bulkGenerate").unwrap_or(&Value::Null);
                let (ok, failed) = (set(bulk, "succeededIds"), set(bulk, "failedIds"));
                rows.iter()
                    .map(|r| {
                        let id = r.input["user_id"].as_str().unwrap_or_default();
                        let status = if failed.contains(id) {
                            RowStatus::Failed(format!("user id `{id}` in `failedIds`"))
                        } else if ok.contains(id) {
                            RowStatus::Succeeded
                        } else {
                            RowStatus::Failed("not in the answer".into())
                        };
                        RowOutcome {
                            key: r.key.clone(),
                            status,
                            answer: json!({ "userId": id }),
                        }
                    })
                    .collect()
            }
            _ => unreachable!("per-user actions are aliased"),
        }
    }
}

/// The messages of errors that belong to no alias (the whole request failed), or `fallback`.
fn whole_request_error(errors: &[crate::api::GraphQlError], fallback: &str) -> String {
    if errors.is_empty() {
        fallback.to_string()
    } else {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `ExtraCategoryValueInput` for one row: the value's JSON type picks the field.
fn extra_value(category: &str, row: &Row) -> Value {
    let value = row.input.get("value").cloned().unwrap_or(Value::Null);
    let kind = row
        .input
        .get("value_kind")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let field = match kind {
        "boolean" => "booleanValue",
        "datetime" => "datetimeValue",
        "choice" => "choiceValues",
        _ => "stringValue",
    };
    json!({ "categoryRef": category, field: value })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AliasKind {
    User,
    Extra,
}

/// The aliased document for `n` rows. Documents are built once per (kind, n) and kept for
/// the process (at most one per batch size in use), because an [`Operation`] holds
/// `&'static str`s like the checked-in documents.
fn aliased(kind: AliasKind, n: usize) -> Operation {
    static DOCS: OnceLock<Mutex<HashMap<(AliasKind, usize), &'static str>>> = OnceLock::new();
    let mut docs = DOCS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let document = *docs
        .entry((kind, n))
        .or_insert_with(|| Box::leak(alias_document(kind, n).into_boxed_str()));
    let name = match kind {
        AliasKind::User => "UpdateOrCreateUsers",
        AliasKind::Extra => "UpdateExtraCategoryValuesBatch",
    };
    // Both mutations are upserts ("safe to repeat", pluvo-api.md): the client may resend.
    Operation::new(name, document)
}

/// Text of alias `i` (its variables, or its field).
type AliasText = fn(usize) -> String;

fn alias_document(kind: AliasKind, n: usize) -> String {
    let (name, mut vars, var, field): (_, Vec<String>, AliasText, AliasText) = match kind {
        AliasKind::User => (
            "UpdateOrCreateUsers",
            vec!["$n: Boolean".to_string()],
            |i| format!("$r{i}: String, $u{i}: UserInput!"),
            |i| {
                format!(
                    "  a{i}: updateOrCreateUser(ref: $r{i}, sendInvite: $n, user: $u{i}) {{ created user {{ id ref archived }} }}"
                )
            },
        ),
        AliasKind::Extra => (
            "UpdateExtraCategoryValuesBatch",
            Vec::new(),
            |i| format!("$r{i}: String, $v{i}: [ExtraCategoryValueInput!]!"),
            |i| {
                format!(
                    "  a{i}: updateExtraCategoryValues(contentType: USER, modelRef: $r{i}, values: $v{i}) {{ extraCategoryValues {{ __typename }} }}"
                )
            },
        ),
    };
    vars.extend((0..n).map(var));
    let fields: Vec<String> = (0..n).map(field).collect();
    format!(
        "mutation {name}({}) {{\n{}\n}}",
        vars.join(", "),
        fields.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str) -> Row {
        Row {
            key: key.into(),
            input: Map::new(),
        }
    }

    /// The documents built at run time (one alias per row) keep the contract, like the
    /// static ones in `api::queries`.
    #[test]
    fn every_action_sends_a_document_that_matches_the_contract() {
        let schema = crate::api::queries::contract::Schema::load();
        let actions = [
            Action::ArchiveUsers,
            Action::UnarchiveUsers,
            Action::UpsertUsers,
            Action::SetExtraField {
                category: "team".into(),
            },
            Action::AddToGroup { group: "g".into() },
            Action::GenerateCertificate {
                certificate: "c".into(),
                title: "C".into(),
                training: None,
                issue_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            },
            Action::AddToTraining {
                training: "t".into(),
                role: TrainingRole::Trainer,
            },
            Action::Enroll {
                offer_event: "o".into(),
            },
        ];
        for action in actions {
            for rows in [1, 3] {
                let rows: Vec<Row> = (0..rows)
                    .map(|i| {
                        let mut r = row(&format!("r{i}"));
                        for (column, value) in [
                            ("user_id", json!(format!("id-{i}"))),
                            ("value", json!("blue")),
                            ("email", json!(format!("u{i}@example.org"))),
                            ("name", json!("U")),
                        ] {
                            r.input.insert(column.into(), value);
                        }
                        r
                    })
                    .collect();
                let (op, _) = action.request(&rows, false);
                let problems = crate::api::queries::contract::check(&schema, op.name, op.document);
                assert!(
                    problems.is_empty(),
                    "`{}` with {} rows: {problems:?}\n{}",
                    action.name(),
                    rows.len(),
                    op.document
                );
            }
        }
    }

    #[test]
    fn aliased_documents_have_one_field_per_row_and_are_reused() {
        let (op, vars) = Action::ArchiveUsers.request(&[row("a"), row("b")], false);
        assert_eq!(op.document.matches("updateOrCreateUser(").count(), 2);
        assert!(op.idempotent);
        assert_eq!(vars["u1"], json!({ "archived": true }));
        let (invite, _) = Action::UpsertUsers.request(&[row("a"), row("b")], true);
        assert!(!invite.idempotent, "a resent invite is a second e-mail");
        assert!(!Action::UpsertUsers.idempotent(true) && Action::UpsertUsers.idempotent(false));
        assert_eq!(vars["n"], json!(false));
        let (again, _) = Action::UnarchiveUsers.request(&[row("c"), row("d")], true);
        assert!(
            std::ptr::eq(op.document, again.document),
            "built once per size"
        );
    }

    #[test]
    fn alias_errors_fail_only_their_row() {
        let rows = [row("a"), row("b")];
        let data = json!({ "a0": { "created": false }, "a1": null });
        let err: crate::api::GraphQlError =
            serde_json::from_value(json!({ "message": "User not found", "path": ["a1"] })).unwrap();
        let out = Action::ArchiveUsers.outcomes(&rows, Some(&data), &[err]);
        assert_eq!(out[0].status, RowStatus::Succeeded);
        assert_eq!(
            out[1].status,
            RowStatus::Failed("User not found at path `a1`".into())
        );
    }

    #[test]
    fn list_answers_map_refs_to_statuses() {
        let action = Action::AddToGroup { group: "g".into() };
        let rows = [row("a"), row("b"), row("c"), row("d")];
        let data = json!({ "addUsersToGroup": {
            "addedRefs": ["a"], "alreadyAddedRefs": ["b"], "failedRefs": ["c"] } });
        let out = action.outcomes(&rows, Some(&data), &[]);
        let statuses: Vec<_> = out.iter().map(|o| o.status.clone()).collect();
        assert_eq!(statuses[0], RowStatus::Succeeded);
        assert_eq!(statuses[1], RowStatus::Already);
        assert!(matches!(&statuses[2], RowStatus::Failed(m) if m.contains("failedRefs")));
        assert!(matches!(&statuses[3], RowStatus::Failed(m) if m.contains("not in the answer")));
    }
}
