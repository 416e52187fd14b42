//! Every operation the tool sends, one `.graphql` file each under `queries/`.
//!
//! An [`Operation`] is the document plus what the client must know to send it: the operation
//! name, the path from `data` to the Relay connection (paged queries), whether the connection
//! takes `$offset`, and whether a resend is safe. The tests below check every document
//! against `contract/pluvo.graphql` (fields, arguments, variable types), so a typo fails in CI;
//! `tests/client.rs` runs each against the simulator.

/// A GraphQL operation and how to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The `operationName`; also the label in logs, errors and stats.
    pub name: &'static str,
    pub document: &'static str,
    /// Path from `data` to the connection, e.g. `["group", "users"]`; empty if not paged.
    pub connection: &'static [&'static str],
    /// The connection accepts `$offset` (pages can be fetched in parallel).
    pub offset: bool,
    /// Safe to resend when an attempt's outcome is unknown (timeout, 5xx, cut-off answer).
    pub idempotent: bool,
}

impl Operation {
    /// A query or an idempotent mutation, not paged.
    pub const fn new(name: &'static str, document: &'static str) -> Operation {
        Operation {
            name,
            document,
            connection: &[],
            offset: false,
            idempotent: true,
        }
    }

    /// Paged by cursor, connection at `path`.
    pub const fn paged(mut self, path: &'static [&'static str]) -> Operation {
        self.connection = path;
        self
    }

    /// The connection also takes `$offset`.
    pub const fn with_offset(mut self) -> Operation {
        self.offset = true;
        self
    }

    /// Never resent once it may have reached the server.
    pub const fn not_idempotent(mut self) -> Operation {
        self.idempotent = false;
        self
    }
}

/// All users of one archived state (`$archived`; omitted = non-archived only).
pub const USERS: Operation = Operation::new("Users", include_str!("queries/users.graphql"))
    .paged(&["paginatedUsers"])
    .with_offset();
/// One user by `$id`, `$ref` or `$email`.
pub const USER: Operation = Operation::new("User", include_str!("queries/user.graphql"));
/// Portfolio items (trainings and issued certificates), filterable by type, date and group.
pub const PORTFOLIO: Operation =
    Operation::new("PortfolioReport", include_str!("queries/portfolio.graphql"))
        .paged(&["portfolioReport"])
        .with_offset();
/// Certificate templates (cursor only: `certificates` takes no `offset`).
pub const CERTIFICATES: Operation =
    Operation::new("Certificates", include_str!("queries/certificates.graphql"))
        .paged(&["certificates"]);
pub const GROUPS: Operation = Operation::new("Groups", include_str!("queries/groups.graphql"))
    .paged(&["paginatedGroups"])
    .with_offset();
/// Members of the group `$id` (cursor only).
pub const GROUP_MEMBERS: Operation = Operation::new(
    "GroupMembers",
    include_str!("queries/group_members.graphql"),
)
.paged(&["group", "users"]);
pub const TRAININGS: Operation =
    Operation::new("Trainings", include_str!("queries/trainings.graphql"))
        .paged(&["paginatedTrainings"])
        .with_offset();
pub const OFFER_EVENT: Operation =
    Operation::new("OfferEvent", include_str!("queries/offer_event.graphql"));

pub const UPDATE_OR_CREATE_USER: Operation = Operation::new(
    "UpdateOrCreateUser",
    include_str!("queries/update_or_create_user.graphql"),
);
pub const UPDATE_EXTRA_CATEGORY_VALUES: Operation = Operation::new(
    "UpdateExtraCategoryValues",
    include_str!("queries/update_extra_category_values.graphql"),
);
pub const ADD_USERS_TO_GROUP: Operation = Operation::new(
    "AddUsersToGroup",
    include_str!("queries/add_users_to_group.graphql"),
);
pub const REMOVE_USERS_FROM_GROUP: Operation = Operation::new(
    "RemoveUsersFromGroup",
    include_str!("queries/remove_users_from_group.graphql"),
);
pub const ADD_USERS_TO_TRAINING: Operation = Operation::new(
    "AddUsersToTraining",
    include_str!("queries/add_users_to_training.graphql"),
);
pub const CREATE_OFFER_EVENT_ENROLLMENTS: Operation = Operation::new(
    "CreateOfferEventEnrollments",
    include_str!("queries/create_offer_event_enrollments.graphql"),
);
/// Not safe to repeat (pluvo-api.md): a resend may issue a second certificate.
pub const GENERATE_CERTIFICATE: Operation = Operation::new(
    "GenerateCertificate",
    include_str!("queries/generate_certificate.graphql"),
)
.not_idempotent();

/// Every operation, for checks and docs.
pub const ALL: &[Operation] = &[
    USERS,
    USER,
    PORTFOLIO,
    CERTIFICATES,
    GROUPS,
    GROUP_MEMBERS,
    TRAININGS,
    OFFER_EVENT,
    UPDATE_OR_CREATE_USER,
    UPDATE_EXTRA_CATEGORY_VALUES,
    ADD_USERS_TO_GROUP,
    REMOVE_USERS_FROM_GROUP,
    ADD_USERS_TO_TRAINING,
    CREATE_OFFER_EVENT_ENROLLMENTS,
    GENERATE_CERTIFICATE,
];

/// Checks documents against the SDL contract: a small validator for the subset of GraphQL the
/// queries use (fields, arguments, variables, inline fragments on unions).
#[cfg(test)]
pub(crate) mod contract {
    use std::collections::{HashMap, HashSet};

    use async_graphql::parser::types::{
        BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
        Type, TypeKind, TypeSystemDefinition,
    };
    use async_graphql::parser::{parse_query, parse_schema};

    pub const SDL: &str = include_str!("../../contract/pluvo.graphql");

    pub struct Field {
        pub args: HashMap<String, (Type, bool)>, // type, has default
        pub ty: Type,
    }

    pub enum Kind {
        Scalar,
        Enum,
        Input,
        Object(HashMap<String, Field>),
        Union(HashSet<String>),
    }

    pub struct Schema {
        pub types: HashMap<String, Kind>,
    }

    impl Schema {
        pub fn load() -> Schema {
            let doc = parse_schema(SDL).expect("the contract parses");
            let mut types: HashMap<String, Kind> = ["Int", "Float", "String", "Boolean", "ID"]
                .into_iter()
                .map(|n| (n.to_string(), Kind::Scalar))
                .collect();
            for def in doc.definitions {
                let TypeSystemDefinition::Type(def) = def else {
                    continue;
                };
                let def = def.node;
                let kind = match def.kind {
                    TypeKind::Scalar => Kind::Scalar,
                    TypeKind::Enum(_) => Kind::Enum,
                    TypeKind::InputObject(_) => Kind::Input,
                    TypeKind::Union(u) => {
                        Kind::Union(u.members.iter().map(|m| m.node.to_string()).collect())
                    }
                    TypeKind::Object(o) => Kind::Object(
                        o.fields
                            .into_iter()
                            .map(|f| {
                                let f = f.node;
                                let args = f
                                    .arguments
                                    .into_iter()
                                    .map(|a| {
                                        let a = a.node;
                                        (
                                            a.name.node.to_string(),
                                            (a.ty.node, a.default_value.is_some()),
                                        )
                                    })
                                    .collect();
                                (
                                    f.name.node.to_string(),
                                    Field {
                                        args,
                                        ty: f.ty.node,
                                    },
                                )
                            })
                            .collect(),
                    ),
                    TypeKind::Interface(_) => panic!("interfaces are not in the contract"),
                };
                types.insert(def.name.node.to_string(), kind);
            }
            Schema { types }
        }
    }

    pub fn base_name(ty: &Type) -> &str {
        match &ty.base {
            BaseType::Named(name) => name.as_str(),
            BaseType::List(inner) => base_name(inner),
        }
    }

    /// Can a variable of type `var` be passed where `arg` is expected?
    fn compatible(var: &Type, arg: &Type) -> bool {
        if !arg.nullable && var.nullable {
            return false;
        }
        match (&var.base, &arg.base) {
            (BaseType::Named(a), BaseType::Named(b)) => a == b,
            (BaseType::List(a), BaseType::List(b)) => compatible(a, b),
            _ => false,
        }
    }

    struct Checker<'a> {
        schema: &'a Schema,
        doc: &'a ExecutableDocument,
        vars: HashMap<String, Type>,
        used: HashSet<String>,
        problems: Vec<String>,
    }

    impl Checker<'_> {
        fn selection_set(&mut self, parent: &str, set: &SelectionSet, at: &str) {
            let (schema, doc) = (self.schema, self.doc);
            for item in &set.items {
                match &item.node {
                    Selection::Field(field) => {
                        let field = &field.node;
                        let name = field.name.node.as_str();
                        let here = format!("{at}.{name}");
                        if name == "__typename" {
                            continue;
                        }
                        let Some(Kind::Object(fields)) = schema.types.get(parent) else {
                            self.problems
                                .push(format!("`{here}`: `{parent}` has no fields to select"));
                            continue;
                        };
                        let Some(def) = fields.get(name) else {
                            self.problems
                                .push(format!("`{here}`: no field `{name}` on `{parent}`"));
                            continue;
                        };
                        let mut given = HashSet::new();
                        for (arg, value) in &field.arguments {
                            let arg = arg.node.as_str();
                            given.insert(arg.to_string());
                            let Some((arg_ty, _)) = def.args.get(arg) else {
                                self.problems.push(format!(
                                    "`{here}`: no argument `{arg}` on `{parent}.{name}`"
                                ));
                                continue;
                            };
                            // The variables inside the value (the parser's non-const
                            // `Value` is not nameable from here; walk it by substitution).
                            let mut vars = Vec::new();
                            let _ = value.node.clone().into_const_with(|name| {
                                vars.push(name.to_string());
                                Ok::<_, std::convert::Infallible>(async_graphql::Value::Null)
                            });
                            for var in vars {
                                self.used.insert(var.clone());
                                match self.vars.get(&var) {
                                    None => self
                                        .problems
                                        .push(format!("`{here}`: `${var}` is not declared")),
                                    Some(var_ty) if !compatible(var_ty, arg_ty) => {
                                        self.problems.push(format!(
                                            "`{here}`: `${var}: {var_ty}` does not fit `{arg}: {arg_ty}`"
                                        ))
                                    }
                                    Some(_) => {}
                                }
                            }
                        }
                        for (arg, (ty, has_default)) in &def.args {
                            if !ty.nullable && !has_default && !given.contains(arg) {
                                self.problems
                                    .push(format!("`{here}`: required argument `{arg}` missing"));
                            }
                        }
                        let child = base_name(&def.ty).to_string();
                        let composite = matches!(
                            schema.types.get(&child),
                            Some(Kind::Object(_) | Kind::Union(_))
                        );
                        let empty = field.selection_set.node.items.is_empty();
                        if composite && empty {
                            self.problems
                                .push(format!("`{here}`: `{child}` needs a selection"));
                        } else if !composite && !empty {
                            self.problems
                                .push(format!("`{here}`: `{child}` is a leaf, no selection"));
                        } else if composite {
                            self.selection_set(&child, &field.selection_set.node, &here);
                        }
                    }
                    Selection::InlineFragment(fragment) => {
                        let fragment = &fragment.node;
                        let target = match &fragment.type_condition {
                            Some(cond) => cond.node.on.node.to_string(),
                            None => parent.to_string(),
                        };
                        self.check_condition(parent, &target, at);
                        self.selection_set(&target, &fragment.selection_set.node, at);
                    }
                    Selection::FragmentSpread(spread) => {
                        let name = spread.node.fragment_name.node.as_str();
                        match doc.fragments.get(name) {
                            None => self.problems.push(format!("`{at}`: no fragment `{name}`")),
                            Some(fragment) => {
                                let target = fragment.node.type_condition.node.on.node.to_string();
                                self.check_condition(parent, &target, at);
                                self.selection_set(&target, &fragment.node.selection_set.node, at);
                            }
                        }
                    }
                }
            }
        }

        fn check_condition(&mut self, parent: &str, target: &str, at: &str) {
            let fits = target == parent
                || matches!(self.schema.types.get(parent), Some(Kind::Union(m)) if m.contains(target));
            if !fits {
                self.problems.push(format!(
                    "`{at}`: `... on {target}` cannot apply to `{parent}`"
                ));
            }
        }
    }

    /// Problems of one document, or an empty list.
    pub fn check(schema: &Schema, name: &str, document: &str) -> Vec<String> {
        let doc = match parse_query(document) {
            Ok(doc) => doc,
            Err(err) => return vec![format!("does not parse: {err}")],
        };
        let ops: Vec<_> = match &doc.operations {
            DocumentOperations::Single(_) => return vec!["the operation has no name".into()],
            DocumentOperations::Multiple(ops) => ops.iter().collect(),
        };
        if ops.len() != 1 || ops[0].0.as_str() != name {
            return vec![format!("expected exactly one operation named `{name}`")];
        }
        let op = &ops[0].1.node;
        let root = match op.ty {
            OperationType::Query => "Query",
            OperationType::Mutation => "Mutation",
            OperationType::Subscription => return vec!["subscriptions are not used".into()],
        };
        let mut checker = Checker {
            schema,
            doc: &doc,
            vars: HashMap::new(),
            used: HashSet::new(),
            problems: Vec::new(),
        };
        for var in &op.variable_definitions {
            let var = &var.node;
            let ty = var.var_type.node.clone();
            match schema.types.get(base_name(&ty)) {
                Some(Kind::Scalar | Kind::Enum | Kind::Input) => {}
                _ => checker
                    .problems
                    .push(format!("`${}`: `{ty}` is not an input type", var.name.node)),
            }
            checker.vars.insert(var.name.node.to_string(), ty);
        }
        checker.selection_set(root, &op.selection_set.node, name);
        let mut unused: Vec<_> = checker
            .vars
            .keys()
            .filter(|v| !checker.used.contains(*v))
            .cloned()
            .collect();
        unused.sort();
        for var in unused {
            checker
                .problems
                .push(format!("`${var}` is declared but never used"));
        }
        checker.problems
    }

    /// The field names selected below `path` (the connection of a paged query).
    pub fn selected_below(document: &str, path: &[&str]) -> Option<Vec<String>> {
        let doc = parse_query(document).ok()?;
        let op = doc.operations.iter().next()?.1;
        let mut set = &op.node.selection_set.node;
        for step in path {
            set = set.items.iter().find_map(|item| match &item.node {
                Selection::Field(f) if f.node.name.node.as_str() == *step => {
                    Some(&f.node.selection_set.node)
                }
                _ => None,
            })?;
        }
        let mut names = Vec::new();
        fn walk(set: &SelectionSet, prefix: &str, names: &mut Vec<String>) {
            for item in &set.items {
                if let Selection::Field(f) = &item.node {
                    let name = format!("{prefix}{}", f.node.name.node);
                    walk(&f.node.selection_set.node, &format!("{name}."), names);
                    names.push(name);
                }
            }
        }
        walk(set, "", &mut names);
        Some(names)
    }

    /// Declared variable names of a document.
    pub fn variables(document: &str) -> Vec<String> {
        let doc = parse_query(document).expect("parses");
        let op = doc.operations.iter().next().expect("one operation").1;
        op.node
            .variable_definitions
            .iter()
            .map(|v| v.node.name.node.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::contract::{Schema, check, selected_below, variables};
    use super::*;

    #[test]
    fn every_operation_matches_the_contract() {
        let schema = Schema::load();
        let mut problems = Vec::new();
        for op in ALL {
            for problem in check(&schema, op.name, op.document) {
                problems.push(format!("{}: {problem}", op.name));
            }
        }
        assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    }

    #[test]
    fn the_checker_catches_typos() {
        let schema = Schema::load();
        let bad = "query Users($first: Int!, $x: String) {
            paginatedUsers(first: $first, frist: 3) { count edges { node { id emial } } }
        }";
        let problems = check(&schema, "Users", bad).join("\n");
        assert!(problems.contains("no argument `frist`"), "{problems}");
        assert!(
            problems.contains("no field `emial` on `User`"),
            "{problems}"
        );
        assert!(
            problems.contains("`$x` is declared but never used"),
            "{problems}"
        );
        let bad = "query Users($first: String) { paginatedUsers(first: $first) { count } }";
        let problems = check(&schema, "Users", bad).join("\n");
        assert!(problems.contains("does not fit `first: Int`"), "{problems}");
        let bad = "query Users { user { participantGroups } }";
        let problems = check(&schema, "Users", bad).join("\n");
        assert!(problems.contains("`Group` needs a selection"), "{problems}");
        assert!(!check(&schema, "Other", USERS.document).is_empty());
    }

    #[test]
    fn paged_operations_select_what_the_pager_reads() {
        for op in ALL.iter().filter(|op| !op.connection.is_empty()) {
            let fields = selected_below(op.document, op.connection)
                .unwrap_or_else(|| panic!("{}: no connection at {:?}", op.name, op.connection));
            for needed in [
                "count",
                "pageInfo.hasNextPage",
                "pageInfo.endCursor",
                "edges.node",
            ] {
                assert!(
                    fields.iter().any(|f| f == needed),
                    "{}: selects no `{needed}`",
                    op.name
                );
            }
            let vars = variables(op.document);
            for needed in ["first", "after"] {
                assert!(
                    vars.iter().any(|v| v == needed),
                    "{}: no `${needed}`",
                    op.name
                );
            }
            assert_eq!(
                vars.iter().any(|v| v == "offset"),
                op.offset,
                "{}: `$offset` declared iff offset mode",
                op.name
            );
        }
    }

    #[test]
    fn only_generate_certificate_is_unsafe_to_resend() {
        let unsafe_ops: Vec<_> = ALL
            .iter()
            .filter(|op| !op.idempotent)
            .map(|op| op.name)
            .collect();
        assert_eq!(unsafe_ops, ["GenerateCertificate"]);
    }

    #[test]
    fn users_select_every_field_of_user() {
        let schema = Schema::load();
        let Some(contract::Kind::Object(fields)) = schema.types.get("User") else {
            panic!("no User type");
        };
        let selected =
            selected_below(USERS.document, &["paginatedUsers", "edges", "node"]).unwrap();
        for field in fields.keys() {
            assert!(selected.contains(field), "Users does not select `{field}`");
        }
        for nested in ["participantGroups.ref", "managerGroups.id"] {
            assert!(selected.iter().any(|f| f == nested), "{nested}");
        }
    }

    /// Pages carry only what the tables keep: a membership is a group's id and ref (its name
    /// comes with the groups stream), a portfolio item's user is an id and a ref (name and
    /// email come with the users stream; asking for them made every portfolio page a fifth
    /// larger, personal data fetched to be dropped).
    #[test]
    fn nested_objects_select_only_what_is_kept() {
        let nested = |document, path: &[&str], object: &str| -> Vec<String> {
            let mut fields: Vec<String> = selected_below(document, path)
                .unwrap()
                .into_iter()
                .filter_map(|f| f.strip_prefix(&format!("{object}.")).map(str::to_owned))
                .collect();
            fields.sort();
            fields
        };
        let node = ["paginatedUsers", "edges", "node"];
        for groups in ["participantGroups", "managerGroups"] {
            assert_eq!(
                nested(USERS.document, &node, groups),
                ["id", "ref"],
                "{groups}"
            );
        }
        let node = ["portfolioReport", "edges", "node"];
        assert_eq!(nested(PORTFOLIO.document, &node, "user"), ["id", "ref"]);
    }
}
