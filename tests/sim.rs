//! The simulator keeps the contract: served schema = `contract/pluvo.graphql`, connections page
//! to exactly the generated set, mutations have their documented semantics, churn moves the
//! data, and each fault flag produces its fault.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use pluvo_warehouse::sim::{self, AuthErrorMode, Faults, Kind, SimConfig};
use serde_json::{Value, json};

use crate::support::{gql, http, page_all, post_gql, sim, sim_with, token};

const USERS: &str = "query Users($first: Int, $after: String, $archived: Boolean) {
  paginatedUsers(first: $first, after: $after, archived: $archived) {
    count pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id ref name email lastLogin archived roles language extraFields
      participantGroups { id ref name } managerGroups { id ref } } } } }";

const ITEMS: &str = "query Items($first: Int, $after: String, $types: [RelatedObjectType!], $from: Date, $to: Date) {
  portfolioReport(first: $first, after: $after, relatedObjectTypes: $types, completionDateFrom: $from, completionDateTo: $to) {
    count pageInfo { hasNextPage endCursor }
    edges { node { user { id ref } title progress score completionDate endDate timeSpent { days seconds } } } } }";

fn strip_comments(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.starts_with('#') || l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn served_schema_equals_the_contract_file() {
    let contract = include_str!("../contract/pluvo.graphql");
    let served = sim::sdl();
    assert_eq!(
        strip_comments(contract).trim(),
        served.trim(),
        "contract/pluvo.graphql differs from the served schema; if the change is intended, \
         regenerate it with `cargo run --release -- sim sdl` (keep the header comment)"
    );
}

#[tokio::test]
async fn users_page_to_exactly_the_generated_set() {
    let sim = sim(230).await;
    let token = token(&sim).await;
    let mut seen = HashSet::new();
    for archived in [false, true] {
        let nodes = page_all(
            &sim,
            &token,
            USERS,
            "paginatedUsers",
            json!({ "archived": archived }),
        )
        .await;
        for n in &nodes {
            assert_eq!(n["archived"], json!(archived));
            assert!(
                seen.insert(n["ref"].as_str().unwrap().to_string()),
                "duplicate {n}"
            );
        }
    }
    let expected: HashSet<String> =
        sim.with_data(|d| d.users.iter().map(|u| u.ref_.clone().unwrap()).collect());
    assert_eq!(seen, expected);

    // The first page's `count` is the number of non-archived users when `archived` is omitted.
    let data = gql(&sim, &token, USERS, json!({ "first": 50 })).await;
    let active = sim.with_data(|d| d.users.iter().filter(|u| !u.archived).count());
    assert_eq!(data["paginatedUsers"]["count"], json!(active));
    assert_eq!(
        data["paginatedUsers"]["edges"].as_array().unwrap().len(),
        50
    );
}

#[tokio::test]
async fn user_fields_match_the_generated_data() {
    let sim = sim(40).await;
    let token = token(&sim).await;
    let d = sim.data();
    let u = d
        .users
        .iter()
        .find(|u| !u.archived && u.last_login.is_some())
        .unwrap();
    let data = gql(
        &sim,
        &token,
        "query($ref: String) { user(ref: $ref) { id ref name email lastLogin archived roles language extraFields participantGroups { ref } } }",
        json!({ "ref": u.ref_ }),
    )
    .await;
    let node = &data["user"];
    assert_eq!(node["id"], json!(u.id.to_string()));
    assert_eq!(node["name"], json!(u.name));
    assert_eq!(node["email"], json!(u.email));
    assert_eq!(
        node["lastLogin"],
        json!(
            u.last_login
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    );
    assert_eq!(node["roles"], json!(u.role_names()));
    let extra: Value = serde_json::from_str(node["extraFields"].as_str().unwrap()).unwrap();
    assert_eq!(extra, serde_json::to_value(&u.extra).unwrap());
    let groups: Vec<&str> = node["participantGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["ref"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = u
        .memberships
        .iter()
        .filter(|m| !m.manager)
        .map(|m| d.groups[m.group as usize].ref_.as_str())
        .collect();
    assert_eq!(groups, expected);
}

#[tokio::test]
async fn portfolio_report_pages_to_every_item_and_filters_by_day() {
    let sim = sim(120).await;
    let token = token(&sim).await;
    let nodes = page_all(&sim, &token, ITEMS, "portfolioReport", json!({})).await;
    let d = sim.data();
    let expected: usize = d.users.iter().map(|u| u.items.len()).sum();
    assert_eq!(nodes.len(), expected);
    // Same multiset of (user, title, completion) as generated.
    let mut got: Vec<(String, String, Value)> = nodes
        .iter()
        .map(|n| {
            (
                n["user"]["ref"].as_str().unwrap().into(),
                n["title"].as_str().unwrap().into(),
                n["completionDate"].clone(),
            )
        })
        .collect();
    let mut want: Vec<(String, String, Value)> = d
        .users
        .iter()
        .flat_map(|u| {
            u.items.iter().map(|i| {
                (
                    u.ref_.clone().unwrap(),
                    i.title.to_string(),
                    json!(i.completion_date.map(|c| c.format("%Y-%m-%d").to_string())),
                )
            })
        })
        .collect();
    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(got, want);

    // Day-granular windows are inclusive at both ends.
    let day = d
        .users
        .iter()
        .flat_map(|u| &u.items)
        .find_map(|i| i.completion_date)
        .unwrap();
    let on_day = d
        .users
        .iter()
        .flat_map(|u| &u.items)
        .filter(|i| i.completion_date == Some(day))
        .count();
    let day_text = day.format("%Y-%m-%d").to_string();
    let window = page_all(
        &sim,
        &token,
        ITEMS,
        "portfolioReport",
        json!({ "from": day_text, "to": day_text }),
    )
    .await;
    assert_eq!(window.len(), on_day);
    let certs = page_all(
        &sim,
        &token,
        ITEMS,
        "portfolioReport",
        json!({ "types": ["CERTIFICATE"] }),
    )
    .await;
    let want_certs = d
        .users
        .iter()
        .flat_map(|u| &u.items)
        .filter(|i| i.kind == Kind::Certificate)
        .count();
    assert_eq!(certs.len(), want_certs);
}

#[tokio::test]
async fn certificates_groups_members_and_trainings_page_completely() {
    let sim = sim(700).await;
    let token = token(&sim).await;
    let d = sim.data();
    let certs = page_all(&sim, &token, "query($first: Int, $after: String) { certificates(first: $first, after: $after) { count pageInfo { hasNextPage endCursor } edges { node { id name title } } } }", "certificates", json!({})).await;
    assert_eq!(certs.len(), d.certificates.len());
    // last/before paging backwards.
    let tail = gql(
        &sim,
        &token,
        "{ certificates(last: 3) { edges { node { name } } pageInfo { hasPreviousPage } } }",
        json!({}),
    )
    .await;
    let names: Vec<&str> = tail["certificates"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = d.certificates[d.certificates.len() - 3..]
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, want);

    let groups = page_all(&sim, &token, "query($first: Int, $after: String) { paginatedGroups(first: $first, after: $after) { count pageInfo { hasNextPage endCursor } edges { node { id ref name userCount } } } }", "paginatedGroups", json!({})).await;
    assert_eq!(groups.len(), d.groups.len());
    let g = &groups[0];
    let members = {
        let mut nodes = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data = gql(&sim, &token, "query($id: UUID, $after: String) { group(id: $id) { users(first: 50, after: $after) { count pageInfo { hasNextPage endCursor } edges { node { ref } } } } }", json!({ "id": g["id"], "after": after })).await;
            let conn = &data["group"]["users"];
            nodes.extend(
                conn["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["node"]["ref"].as_str().unwrap().to_string()),
            );
            if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break nodes;
            }
            after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
        }
    };
    let want: BTreeSet<String> = d
        .users
        .iter()
        .filter(|u| u.memberships.iter().any(|m| m.group == 0 && !m.manager))
        .map(|u| u.ref_.clone().unwrap())
        .collect();
    assert_eq!(members.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(members.len(), want.len(), "no duplicates");
    assert_eq!(g["userCount"], json!(want.len()));

    let trainings = page_all(&sim, &token, "query($first: Int, $after: String) { paginatedTrainings(first: $first, after: $after) { count pageInfo { hasNextPage endCursor } edges { node { id ref title isActive archived startDate endDate } } } }", "paginatedTrainings", json!({})).await;
    assert_eq!(trainings.len(), d.trainings.len());
}

#[tokio::test]
async fn offset_pages_equal_cursor_pages() {
    let sim = sim(300).await;
    let token = token(&sim).await;
    let cursor_refs: Vec<Value> = page_all(&sim, &token, USERS, "paginatedUsers", json!({}))
        .await
        .iter()
        .map(|n| n["ref"].clone())
        .collect();
    let mut offset_refs = Vec::new();
    for k in 0..(cursor_refs.len().div_ceil(50)) {
        let data = gql(
            &sim,
            &token,
            "query($o: Int) { paginatedUsers(first: 50, offset: $o) { edges { node { ref } } } }",
            json!({ "o": k * 50 }),
        )
        .await;
        offset_refs.extend(
            data["paginatedUsers"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["ref"].clone()),
        );
    }
    assert_eq!(offset_refs, cursor_refs);
}

#[tokio::test]
async fn first_above_fifty_and_unknown_fields_are_graphql_errors() {
    let sim = sim(60).await;
    let token = token(&sim).await;
    let (status, body) = post_gql(
        &sim,
        &token,
        "{ paginatedUsers(first: 51) { count } }",
        json!({}),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeds the `first` limit of 50"),
        "{message}"
    );
    assert_eq!(body["errors"][0]["path"], json!(["paginatedUsers"]));

    let (status, body) = post_gql(
        &sim,
        &token,
        "{ paginatedUsers(first: 5) { edges { node { nickname } } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nickname"),
        "{body}"
    );
    assert!(body["errors"][0]["locations"].is_array());

    let (status, _) = post_gql(
        &sim,
        &token,
        "{ paginatedUsers(first: 5 { count } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "syntax errors are refused");
}

#[tokio::test]
async fn mutations_have_their_documented_semantics() {
    let sim = sim(80).await;
    let token = token(&sim).await;
    let d = sim.data();
    let refs: Vec<String> = d
        .users
        .iter()
        .take(5)
        .map(|u| u.ref_.clone().unwrap())
        .collect();
    let group = d
        .groups
        .iter()
        .enumerate()
        .find(|(g, _)| !d.users[0].memberships.iter().any(|m| m.group == *g as u32))
        .unwrap();
    let add = "mutation($g: String, $refs: [String!]) { addUsersToGroup(groupRef: $g, userRefs: $refs) { addedIds alreadyAddedIds failedIds addedRefs alreadyAddedRefs failedRefs } }";

    let first = gql(
        &sim,
        &token,
        add,
        json!({ "g": group.1.ref_, "refs": [refs[0], "NOPE-1"] }),
    )
    .await;
    assert_eq!(first["addUsersToGroup"]["addedRefs"], json!([refs[0]]));
    assert_eq!(
        first["addUsersToGroup"]["addedIds"],
        json!([d.users[0].id.to_string()])
    );
    assert_eq!(first["addUsersToGroup"]["failedRefs"], json!(["NOPE-1"]));
    let again = gql(
        &sim,
        &token,
        add,
        json!({ "g": group.1.ref_, "refs": [refs[0]] }),
    )
    .await;
    assert_eq!(again["addUsersToGroup"]["addedRefs"], json!([]));
    assert_eq!(
        again["addUsersToGroup"]["alreadyAddedRefs"],
        json!([refs[0]])
    );
    let key = format!("addUsersToGroup:{}:{}", group.1.ref_, refs[0]);
    let c = sim.counters();
    assert_eq!(c.applied[&key], 1, "applied once");
    assert_eq!(c.mutations[&key], 2, "processed twice");

    // addUsersToTraining: unknown refs fail, repeats are "already added", a portfolio item appears.
    let training = &d
        .trainings
        .iter()
        .find(|t| !t.members.contains(&(d.users[1].seq, "PARTICIPANT")))
        .unwrap();
    let to_training = "mutation($t: String!, $refs: [String!]!) { addUsersToTraining(trainingRef: $t, userRefs: $refs) { addedRefs alreadyAddedRefs failedRefs } }";
    let r = gql(
        &sim,
        &token,
        to_training,
        json!({ "t": training.ref_, "refs": [refs[1], "GHOST"] }),
    )
    .await;
    assert_eq!(
        r["addUsersToTraining"],
        json!({ "addedRefs": [refs[1]], "alreadyAddedRefs": [], "failedRefs": ["GHOST"] })
    );
    let r = gql(
        &sim,
        &token,
        to_training,
        json!({ "t": training.ref_, "refs": [refs[1]] }),
    )
    .await;
    assert_eq!(
        r["addUsersToTraining"]["alreadyAddedRefs"],
        json!([refs[1]])
    );
    let items_after = sim.with_data(|d| {
        d.users[1]
            .items
            .iter()
            .filter(|i| *i.title == *training.title && i.progress == 0.0)
            .count()
    });
    assert_eq!(items_after, 1);

    // updateOrCreateUser: archive by ref, repeatable; create new by ref.
    let upsert = "mutation($ref: String, $user: UserInput!) { updateOrCreateUser(ref: $ref, sendInvite: false, user: $user) { created user { id ref archived } } }";
    for _ in 0..2 {
        let r = gql(
            &sim,
            &token,
            upsert,
            json!({ "ref": refs[2], "user": { "archived": true } }),
        )
        .await;
        assert_eq!(r["updateOrCreateUser"]["created"], json!(false));
        assert_eq!(r["updateOrCreateUser"]["user"]["archived"], json!(true));
    }
    let r = gql(&sim, &token, upsert, json!({ "ref": "NEW-1", "user": { "ref": "NEW-1", "name": "New Person", "email": "new.person@example.com" } })).await;
    assert_eq!(r["updateOrCreateUser"]["created"], json!(true));
    let found = gql(
        &sim,
        &token,
        "{ user(ref: \"NEW-1\") { email archived } }",
        json!({}),
    )
    .await;
    assert_eq!(found["user"]["email"], json!("new.person@example.com"));
    // The archived user left the default user listing.
    let listed = page_all(&sim, &token, USERS, "paginatedUsers", json!({})).await;
    assert!(!listed.iter().any(|n| n["ref"] == json!(refs[2])));
    assert!(listed.iter().any(|n| n["ref"] == json!("NEW-1")));

    // updateExtraCategoryValues shows in extraFields.
    let r = gql(&sim, &token, "mutation($ref: String) { updateExtraCategoryValues(contentType: USER, modelRef: $ref, values: [{ categoryRef: \"cost_center\", stringValue: \"CC-9\" }]) { extraCategoryValues { ... on ExtraCategoryStringValue { stringValue category { ref } } } } }", json!({ "ref": refs[3] })).await;
    assert_eq!(
        r["updateExtraCategoryValues"]["extraCategoryValues"][0]["stringValue"],
        json!("CC-9")
    );
    let u = gql(
        &sim,
        &token,
        "query($ref: String) { user(ref: $ref) { extraFields } }",
        json!({ "ref": refs[3] }),
    )
    .await;
    let extra: Value = serde_json::from_str(u["user"]["extraFields"].as_str().unwrap()).unwrap();
    assert_eq!(extra["cost_center"], json!("CC-9"));

    // createOfferEventEnrollments: no duplicates.
    let enroll = "mutation($e: String!, $refs: [String!]!) { createOfferEventEnrollments(offerEventRef: $e, userRefs: $refs, sendMail: false) { id user { ref } status } }";
    let a = gql(
        &sim,
        &token,
        enroll,
        json!({ "e": "OE001", "refs": [refs[4]] }),
    )
    .await;
    let b = gql(
        &sim,
        &token,
        enroll,
        json!({ "e": "OE001", "refs": [refs[4]] }),
    )
    .await;
    assert_eq!(
        a["createOfferEventEnrollments"][0]["id"],
        b["createOfferEventEnrollments"][0]["id"]
    );
    let ev = gql(
        &sim,
        &token,
        "{ offerEvent(ref: \"OE001\") { enrolledCount } }",
        json!({}),
    )
    .await;
    assert_eq!(ev["offerEvent"]["enrolledCount"], json!(1));

    // generateCertificate: succeededIds/failedIds, and an item appears; a repeat issues again.
    let cert = &d.certificates[0];
    let gen_ = "mutation($id: UUID!, $users: [UUID!]!) { generateCertificate(id: $id, userIds: $users, issueDate: \"2026-05-01T00:00:00Z\") { bulkGenerate { succeededIds failedIds } } }";
    let ghost = "00000000-0000-4000-8000-000000000000";
    let r = gql(
        &sim,
        &token,
        gen_,
        json!({ "id": cert.id.to_string(), "users": [d.users[0].id.to_string(), ghost] }),
    )
    .await;
    assert_eq!(
        r["generateCertificate"]["bulkGenerate"]["succeededIds"],
        json!([d.users[0].id.to_string()])
    );
    assert_eq!(
        r["generateCertificate"]["bulkGenerate"]["failedIds"],
        json!([ghost])
    );
    let issued = sim.with_data(|d| {
        d.users[0]
            .items
            .iter()
            .filter(|i| {
                i.kind == Kind::Certificate
                    && i.completion_date == Some("2026-05-01".parse().unwrap())
            })
            .count()
    });
    assert_eq!(issued, 1);
    assert_eq!(
        sim.counters().notifications,
        0,
        "no notification was asked for"
    );

    // Unknown group: a GraphQL error with a path, other aliases in the request still answer.
    let (_, body) = post_gql(&sim, &token, "mutation { a: addUsersToGroup(groupRef: \"NOPE\", userRefs: []) { addedIds } b: addUsersToGroup(groupRef: \"G0001\", userRefs: []) { addedIds } }", json!({})).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errors"][0]["path"], json!(["a"]));
    assert_eq!(body["data"]["b"]["addedIds"], json!([]));
}

#[tokio::test]
async fn membership_delay_hides_changes_until_due() {
    let sim = sim_with(SimConfig {
        users: 30,
        membership_delay: Duration::from_millis(600),
        ..SimConfig::default()
    })
    .await;
    let token = token(&sim).await;
    let d = sim.data();
    let g = d
        .groups
        .iter()
        .enumerate()
        .find(|(g, _)| !d.users[0].memberships.iter().any(|m| m.group == *g as u32))
        .unwrap()
        .1;
    let r = gql(&sim, &token, "mutation($g: String, $r: [String!]) { addUsersToGroup(groupRef: $g, userRefs: $r) { addedRefs } }", json!({ "g": g.ref_, "r": [d.users[0].ref_] })).await;
    assert_eq!(
        r["addUsersToGroup"]["addedRefs"].as_array().unwrap().len(),
        1
    );
    let q = "query($r: String) { user(ref: $r) { participantGroups { ref } } }";
    let groups = |v: &Value| {
        v["user"]["participantGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["ref"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let now = gql(&sim, &token, q, json!({ "r": d.users[0].ref_ })).await;
    assert!(!groups(&now).contains(&g.ref_), "not visible yet");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = gql(&sim, &token, q, json!({ "r": d.users[0].ref_ })).await;
    assert!(groups(&later).contains(&g.ref_), "visible after the delay");
}

#[tokio::test]
async fn a_churn_tick_changes_what_queries_return() {
    let sim = sim(150).await;
    let token = token(&sim).await;
    let before = page_all(&sim, &token, ITEMS, "portfolioReport", json!({})).await;
    let users_before = page_all(&sim, &token, USERS, "paginatedUsers", json!({})).await;
    let changes = sim.tick(60);
    assert!(changes.len() >= 40, "{}", changes.len());
    let after = page_all(&sim, &token, ITEMS, "portfolioReport", json!({})).await;
    let users_after = page_all(&sim, &token, USERS, "paginatedUsers", json!({})).await;
    assert!(before != after || users_before != users_after);
    let expected: usize = sim.with_data(|d| {
        d.users
            .iter()
            .filter(|u| !u.deleted)
            .map(|u| u.items.len())
            .sum()
    });
    assert_eq!(after.len(), expected);
}

#[tokio::test]
async fn wrong_secret_and_expired_tokens_get_401() {
    let sim = sim_with(SimConfig {
        users: 10,
        token_ttl: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let bad = http()
        .post(format!("{}/oauth/token/", sim.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"],
        json!("invalid_client")
    );

    let token = token(&sim).await;
    let q = "{ paginatedUsers(first: 1) { count } }";
    assert_eq!(post_gql(&sim, &token, q, json!({})).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(post_gql(&sim, &token, q, json!({})).await.0, 401, "expired");
    assert_eq!(
        post_gql(&sim, "made-up", q, json!({})).await.0,
        401,
        "unknown"
    );

    sim.set_faults(Faults {
        auth_error: AuthErrorMode::Graphql,
        ..Faults::default()
    });
    let (status, body) = post_gql(&sim, &token, q, json!({})).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap()
            .contains("Auth")
    );
}

#[tokio::test]
async fn scopes_limit_what_a_token_may_do() {
    let sim = sim_with(SimConfig {
        users: 10,
        scopes: vec!["users.read".into()],
        ..SimConfig::default()
    })
    .await;
    let token = token(&sim).await;
    let users = gql(
        &sim,
        &token,
        "{ paginatedUsers(first: 1) { count } }",
        json!({}),
    )
    .await;
    let active = sim.with_data(|d| d.users.iter().filter(|u| !u.archived).count());
    assert_eq!(users["paginatedUsers"]["count"], json!(active));
    let (_, body) = post_gql(
        &sim,
        &token,
        "{ portfolioReport(first: 1) { count } }",
        json!({}),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("PermissionDenied")
    );
    let asked = http()
        .post(format!("{}/oauth/token/", sim.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo"),
            ("client_secret", "demo-secret"),
            ("scope", "users.read groups.write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 400);
    assert_eq!(
        asked.json::<Value>().await.unwrap()["error"],
        json!("invalid_scope")
    );
}

#[tokio::test]
async fn each_fault_flag_produces_its_fault() {
    let sim = sim(20).await;
    let token = token(&sim).await;
    let q = "{ paginatedUsers(first: 5) { count } }";

    sim.set_faults(Faults {
        rate_limit_rps: Some(5.0),
        ..Faults::default()
    });
    let mut limited = None;
    for _ in 0..20 {
        let r = http()
            .post(format!("{}/graphql/", sim.url()))
            .bearer_auth(&token)
            .json(&json!({ "query": q }))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            break;
        }
    }
    assert_eq!(limited.as_deref(), Some("1"), "429 with Retry-After");

    sim.set_faults(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    });
    let (status, _) = post_gql(&sim, &token, q, json!({})).await;
    assert!([500, 502, 503].contains(&status), "{status}");

    sim.set_faults(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    });
    let (status, body) = post_gql(&sim, &token, q, json!({})).await;
    assert_eq!(status, 200);
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "truncated body must not parse: {body}"
    );

    sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let (status, _) = post_gql(&sim, &token, q, json!({})).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let c = sim.counters();
    assert!(c.faults["429"] >= 1);
    assert_eq!(c.faults.get("truncated"), Some(&1));
    assert_eq!(
        c.faults.get("5xx-before").unwrap_or(&0) + c.faults.get("5xx-after").unwrap_or(&0),
        1
    );

    // Trailing slash is required: POST /graphql is redirected, not served.
    let _ = http();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/graphql", sim.url()))
        .bearer_auth(&token)
        .json(&json!({ "query": q }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
}

#[tokio::test]
async fn replay_answers_a_repeated_query_from_memory_until_the_data_changes() {
    let sim = sim(60).await;
    sim.set_faults(Faults {
        replay: true,
        ..Faults::default()
    });
    let token = token(&sim).await;
    let page = |vars: Value| post_gql(&sim, &token, USERS, vars);
    let first = page(json!({ "first": 50, "archived": false })).await;
    // The same request, its variables in another order: answered from memory, byte for byte.
    let again = page(json!({ "archived": false, "first": 50 })).await;
    assert_eq!(again, first);
    assert_eq!(sim.counters().replayed, 1);
    // Other variables are another request.
    let archived = page(json!({ "first": 50, "archived": true })).await;
    assert_ne!(archived, first);
    assert_eq!(sim.counters().replayed, 1);
    // A mutation changes the data: the kept answers are not given again.
    let upsert = "mutation($ref: String, $user: UserInput!) { updateOrCreateUser(ref: $ref, sendInvite: false, user: $user) { created user { ref } } }";
    let listed: Value = serde_json::from_str(&first.1).unwrap();
    let who = listed["data"]["paginatedUsers"]["edges"][0]["node"]["ref"].clone();
    assert!(who.is_string(), "{listed}");
    let rename = |name: &str| json!({ "ref": who, "user": { "name": name } });
    let renamed = gql(&sim, &token, upsert, rename("Replayed Not")).await;
    assert_eq!(renamed["updateOrCreateUser"]["created"], json!(false));
    let after = page(json!({ "first": 50, "archived": false })).await;
    assert_eq!(sim.counters().replayed, 1, "executed, not replayed");
    assert!(after.1.contains("Replayed Not"), "the change shows");
    // A mutation is never replayed: sent twice, it runs twice.
    let ops = |c: &sim::Counters| c.operations.values().sum::<u64>();
    let before = ops(&sim.counters());
    for _ in 0..2 {
        gql(&sim, &token, upsert, rename("Twice")).await;
    }
    let counters = sim.counters();
    assert_eq!(ops(&counters) - before, 2);
    assert_eq!(counters.replayed, 1);
    // A churn tick changes the data too.
    page(json!({ "first": 50, "archived": false })).await;
    page(json!({ "first": 50, "archived": false })).await;
    assert_eq!(sim.counters().replayed, 2);
    sim.tick(5);
    page(json!({ "first": 50, "archived": false })).await;
    assert_eq!(sim.counters().replayed, 2);
}
