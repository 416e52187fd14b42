//! The simulator's GraphQL schema (async-graphql): queries and mutations over [`Dataset`],
//! with the semantics of `../shared/pluvo-api.md`. `contract/pluvo.graphql` is this schema's
//! SDL; a test keeps the two equal.
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

// ---------------------------------------------------------------------------------------------
// Scalars

/// `UUID` scalar.
#[derive(Debug, Clone, Copy)]
pub struct Uuid(pub Id);

#[Scalar(name = "UUID")]
impl ScalarType for Uuid {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Id::parse(s)
                .map(Uuid)
                .ok_or_else(|| InputValueError::custom(format!("`{s}` is not a valid UUID"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// `DateTime` scalar: ISO 8601, UTC, `Z` suffix.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| Timestamp(t.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom(format!("`{s}` is not an ISO 8601 DateTime"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

/// `Date` scalar: `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("`{s}` is not a YYYY-MM-DD Date"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// `JSONString` scalar: a JSON document encoded as a string.
#[derive(Debug, Clone)]
pub struct JsonString(pub String);

#[Scalar(name = "JSONString")]
impl ScalarType for JsonString {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(JsonString(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Enums

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    Owner,
    Manager,
    Author,
    Trainer,
    User,
}

impl Role {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
    fn from_name(name: &str) -> Option<Role> {
        [
            Role::Owner,
            Role::Manager,
            Role::Author,
            Role::Trainer,
            Role::User,
        ]
        .into_iter()
        .zip(ROLES)
        .find(|(_, n)| *n == name)
        .map(|(r, _)| r)
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RelatedObjectType {
    Training,
    Certificate,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TrainingRole {
    Participant,
    Trainer,
    Mentor,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ContentType {
    User,
}

// ---------------------------------------------------------------------------------------------
// Connections

#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    has_next_page: bool,
    has_previous_page: bool,
    start_cursor: Option<String>,
    end_cursor: Option<String>,
}

/// A page before it becomes one of the concrete connection types below.
pub struct Page<T> {
    edges: Vec<(T, String)>,
    page_info: PageInfo,
    count: i32,
}

/// One `XxxEdge { node cursor }` and `XxxConnection { edges pageInfo count }` pair per node type.
macro_rules! connection_types {
    ($($node:ty => $edge:ident, $conn:ident;)*) => {$(
        #[derive(SimpleObject)]
        pub struct $edge {
            node: $node,
            cursor: String,
        }

        #[derive(SimpleObject)]
        pub struct $conn {
            edges: Vec<$edge>,
            page_info: PageInfo,
            count: i32,
        }

        impl From<Page<$node>> for $conn {
            fn from(page: Page<$node>) -> Self {
                $conn {
                    edges: page.edges.into_iter().map(|(node, cursor)| $edge { node, cursor }).collect(),
                    page_info: page.page_info,
                    count: page.count,
                }
            }
        }
    )*};
}

connection_types! {
    UserNode => UserEdge, UserConnection;
    GroupNode => GroupEdge, GroupConnection;
    TrainingNode => TrainingEdge, TrainingConnection;
    PortfolioReportItem => PortfolioReportEdge, PortfolioReportConnection;
    CertificateNode => CertificateEdge, CertificateConnection;
}

/// Paging arguments of one connection field.
#[derive(Debug, Default)]
struct PageArgs {
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    offset: Option<i32>,
}

fn cursor(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("arrayconnection:{index}"))
}

fn parse_cursor(text: &str) -> Result<usize> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix("arrayconnection:")
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| Error::new(format!("Invalid cursor `{text}`")))
}

/// The `[start, end)` window of a connection over `count` rows (graphene-django semantics).
fn window(field: &str, count: usize, args: &PageArgs) -> Result<(usize, usize)> {
    for (name, value) in [("first", args.first), ("last", args.last)] {
        match value {
            Some(n) if n < 0 => {
                return Err(Error::new(format!(
                    "Argument `{name}` on `{field}` must be non-negative"
                )));
            }
            Some(n) if n as usize > MAX_PAGE => {
                return Err(Error::new(format!(
                    "Requesting {n} records on the `{field}` connection exceeds the `{name}` limit of {MAX_PAGE} records."
                )));
            }
            _ => {}
        }
    }
    let mut start = match &args.after {
        Some(c) => parse_cursor(c)? + 1,
        None => 0,
    };
    if let Some(offset) = args.offset {
        if offset < 0 {
            return Err(Error::new(format!(
                "Argument `offset` on `{field}` must be non-negative"
            )));
        }
        start += offset as usize;
    }
    let mut end = match &args.before {
        Some(c) => parse_cursor(c)?.min(count),
        None => count,
    };
    start = start.min(count);
    end = end.max(start);
    if let Some(first) = args.first {
        end = end.min(start + first as usize);
    }
    if let Some(last) = args.last {
        start = start.max(end.saturating_sub(last as usize));
    }
    if args.first.is_none() && args.last.is_none() {
        end = end.min(start + MAX_PAGE);
    }
    Ok((start, end))
}

fn connection<T>(
    field: &str,
    count: usize,
    args: &PageArgs,
    node: impl Fn(usize) -> T,
) -> Result<Page<T>> {
    let (start, end) = window(field, count, args)?;
    let edges: Vec<(T, String)> = (start..end).map(|i| (node(i), cursor(i))).collect();
    Ok(Page {
        page_info: PageInfo {
            has_next_page: end < count,
            has_previous_page: start > 0,
            start_cursor: (start < end).then(|| cursor(start)),
            end_cursor: (start < end).then(|| cursor(end - 1)),
        },
        edges,
        count: count as i32,
    })
}

// ---------------------------------------------------------------------------------------------
// Nodes

#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct UserNode {
    id: Uuid,
    #[graphql(name = "ref")]
    ref_: Option<String>,
    name: String,
    email: Option<String>,
    last_login: Option<Timestamp>,
    archived: bool,
    roles: Vec<Role>,
    language: Option<String>,
    extra_fields: Option<JsonString>,
    participant_groups: Vec<GroupNode>,
    manager_groups: Vec<GroupNode>,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex, name = "Group")]
pub struct GroupNode {
    #[graphql(skip)]
    index: u32,
    id: Uuid,
    #[graphql(name = "ref")]
    ref_: Option<String>,
    name: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Training")]
pub struct TrainingNode {
    id: Uuid,
    #[graphql(name = "ref")]
    ref_: Option<String>,
    title: String,
    is_active: bool,
    archived: bool,
    start_date: Option<Timestamp>,
    end_date: Option<Timestamp>,
}

#[derive(SimpleObject, Clone)]
pub struct TimeSpent {
    days: i32,
    seconds: i32,
}

#[derive(SimpleObject, Clone)]
pub struct PortfolioReportItem {
    user: UserNode,
    title: String,
    progress: f64,
    score: Option<f64>,
    completion_date: Option<Date>,
    end_date: Option<Date>,
    time_spent: TimeSpent,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Certificate")]
pub struct CertificateNode {
    id: Uuid,
    name: String,
    title: Option<String>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "OfferEvent")]
pub struct OfferEventNode {
    id: Uuid,
    #[graphql(name = "ref")]
    ref_: Option<String>,
    title: String,
    #[graphql(name = "type")]
    kind: String,
    enrolled_count: i32,
    spots_available: Option<i32>,
}

fn group_node(data: &Dataset, index: u32) -> GroupNode {
    let g = &data.groups[index as usize];
    GroupNode {
        index,
        id: Uuid(g.id),
        ref_: Some(g.ref_.clone()),
        name: g.name.clone(),
    }
}

fn user_node(data: &Dataset, pos: u32, now: Instant) -> UserNode {
    let u = &data.users[pos as usize];
    let mut participant = Vec::new();
    let mut manager = Vec::new();
    for (g, is_manager) in u.visible_groups(now) {
        let node = group_node(data, g);
        if is_manager {
            manager.push(node);
        } else {
            participant.push(node);
        }
    }
    UserNode {
        id: Uuid(u.id),
        ref_: u.ref_.clone(),
        name: u.name.clone(),
        email: u.email.clone(),
        last_login: u.last_login.map(Timestamp),
        archived: u.archived,
        roles: u
            .role_names()
            .into_iter()
            .filter_map(Role::from_name)
            .collect(),
        language: u.language.map(str::to_string),
        extra_fields: Some(JsonString(
            serde_json::to_string(&u.extra).unwrap_or_default(),
        )),
        participant_groups: participant,
        manager_groups: manager,
    }
}

fn training_node(data: &Dataset, index: u32) -> TrainingNode {
    let t = &data.trainings[index as usize];
    TrainingNode {
        id: Uuid(t.id),
        ref_: Some(t.ref_.clone()),
        title: t.title.to_string(),
        is_active: t.is_active,
        archived: t.archived,
        start_date: t.start_date.map(Timestamp),
        end_date: t.end_date.map(Timestamp),
    }
}

fn item_node(data: &Dataset, pos: u32, item: &Item, now: Instant) -> PortfolioReportItem {
    PortfolioReportItem {
        user: user_node(data, pos, now),
        title: item.title.to_string(),
        progress: item.progress,
        score: item.score,
        completion_date: item.completion_date.map(Date),
        end_date: item.end_date.map(Date),
        time_spent: TimeSpent {
            days: (item.time_spent_secs / 86_400) as i32,
            seconds: (item.time_spent_secs % 86_400) as i32,
        },
    }
}

fn offer_event_node(data: &Dataset, index: usize) -> OfferEventNode {
    let e = &data.offer_events[index];
    let enrolled = e.enrollments.len() as i32;
    OfferEventNode {
        id: Uuid(e.id),
        ref_: Some(e.ref_.clone()),
        title: e.title.clone(),
        kind: e.kind.to_string(),
        enrolled_count: enrolled,
        spots_available: e.spots.map(|s| (s as i32 - enrolled).max(0)),
    }
}

#[ComplexObject]
impl GroupNode {
    async fn user_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let st = state(ctx);
        Ok(st.group_members(self.index, false).len() as i32)
    }

    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        self.members(
            ctx,
            false,
            PageArgs {
                first,
                after,
                ..PageArgs::default()
            },
        )
    }

    async fn managers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        self.members(
            ctx,
            true,
            PageArgs {
                first,
                after,
                ..PageArgs::default()
            },
        )
    }
}

impl GroupNode {
    fn members(&self, ctx: &Context<'_>, managers: bool, args: PageArgs) -> Result<UserConnection> {
        require(ctx, "users.read")?;
        let st = state(ctx);
        let list = st.group_members(self.index, managers);
        let data = st.read();
        let now = Instant::now();
        connection("users", list.len(), &args, |i| {
            user_node(&data, list[i] as u32, now)
        })
        .map(Into::into)
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

pub struct Query;

/// Filters of `paginatedUsers`, also the cache key of its result list.
#[derive(Debug, Hash, PartialEq, Eq, Clone)]
pub(crate) struct UserFilter {
    q: Option<String>,
    archived: bool,
    roles: u8,
    groups: Vec<Id>,
    trainings: Vec<Id>,
    login_gt: Option<DateTime<Utc>>,
    login_lt: Option<DateTime<Utc>>,
}

/// Filters of `portfolioReport`.
#[derive(Debug, Hash, PartialEq, Eq, Clone)]
pub(crate) struct ItemFilter {
    groups: Vec<Id>,
    kinds: Vec<Kind>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

impl UserFilter {
    pub(super) fn matches(&self, data: &Dataset, pos: u32, now: Instant) -> bool {
        let u = &data.users[pos as usize];
        if u.deleted || u.archived != self.archived {
            return false;
        }
        if let Some(q) = &self.q {
            let q = q.to_lowercase();
            let hit = u.name.to_lowercase().contains(&q)
                || u.email
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase().contains(&q))
                || u.ref_
                    .as_deref()
                    .is_some_and(|r| r.to_lowercase().contains(&q));
            if !hit {
                return false;
            }
        }
        if self.roles != 0 && u.roles & self.roles == 0 {
            return false;
        }
        if !self.groups.is_empty()
            && !u
                .visible_groups(now)
                .any(|(g, _)| self.groups.contains(&data.groups[g as usize].id))
        {
            return false;
        }
        if !self.trainings.is_empty()
            && !u.items.iter().any(|i| {
                i.training
                    .is_some_and(|t| self.trainings.contains(&data.trainings[t as usize].id))
            })
        {
            return false;
        }
        if let Some(gt) = self.login_gt
            && u.last_login.is_none_or(|l| l <= gt)
        {
            return false;
        }
        if let Some(lt) = self.login_lt
            && u.last_login.is_none_or(|l| l >= lt)
        {
            return false;
        }
        true
    }
}

impl ItemFilter {
    pub(super) fn user_matches(&self, data: &Dataset, pos: u32, now: Instant) -> bool {
        let u = &data.users[pos as usize];
        !u.deleted
            && (self.groups.is_empty()
                || u.visible_groups(now)
                    .any(|(g, _)| self.groups.contains(&data.groups[g as usize].id)))
    }
    pub(super) fn item_matches(&self, item: &Item) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&item.kind) {
            return false;
        }
        if self.from.is_some() || self.to.is_some() {
            let Some(d) = item.completion_date else {
                return false;
            };
            if self.from.is_some_and(|f| d < f) || self.to.is_some_and(|t| d > t) {
                return false;
            }
        }
        true
    }
}

#[Object]
impl Query {
    /// Users of the organisation. `archived` omitted lists non-archived users only.
    #[allow(clippy::too_many_arguments)]
    async fn paginated_users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        offset: Option<i32>,
        q: Option<String>,
        archived: Option<bool>,
        user_roles: Option<Vec<Role>>,
        group_ids: Option<Vec<Uuid>>,
        training_ids: Option<Vec<Uuid>>,
        #[graphql(name = "lastLogin_Gt")] last_login_gt: Option<Timestamp>,
        #[graphql(name = "lastLogin_Lt")] last_login_lt: Option<Timestamp>,
    ) -> Result<Option<UserConnection>> {
        require(ctx, "users.read")?;
        let st = state(ctx);
        let filter = UserFilter {
            q: q.filter(|s| !s.is_empty()),
            archived: archived.unwrap_or(false),
            roles: user_roles
                .unwrap_or_default()
                .iter()
                .fold(0, |acc, r| acc | r.bit()),
            groups: group_ids
                .unwrap_or_default()
                .into_iter()
                .map(|u| u.0)
                .collect(),
            trainings: training_ids
                .unwrap_or_default()
                .into_iter()
                .map(|u| u.0)
                .collect(),
            login_gt: last_login_gt.map(|t| t.0),
            login_lt: last_login_lt.map(|t| t.0),
        };
        let list = st.users_matching(&filter);
        let data = st.read();
        let now = Instant::now();
        let args = PageArgs {
            first,
            after,
            offset,
            ..PageArgs::default()
        };
        connection("paginatedUsers", list.len(), &args, |i| {
            user_node(&data, list[i] as u32, now)
        })
        .map(|p| Some(p.into()))
    }

    /// One user by id, ref or email (archived users included).
    async fn user(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        #[graphql(name = "ref")] ref_: Option<String>,
        email: Option<String>,
    ) -> Result<Option<UserNode>> {
        require(ctx, "users.read")?;
        let st = state(ctx);
        let data = st.read();
        let pos = id
            .and_then(|i| data.user_by_id(i.0))
            .or_else(|| ref_.as_deref().and_then(|r| data.user_by_ref(r)))
            .or_else(|| email.as_deref().and_then(|e| data.user_by_email(e)));
        Ok(pos.map(|p| user_node(&data, p, Instant::now())))
    }

    /// Trainings and certificates per user: progress, score, completion, time spent.
    #[allow(clippy::too_many_arguments)]
    async fn portfolio_report(
        &self,
        ctx: &Context<'_>,
        user_group_ids: Option<Vec<Uuid>>,
        related_object_types: Option<Vec<RelatedObjectType>>,
        completion_date_from: Option<Date>,
        completion_date_to: Option<Date>,
        first: Option<i32>,
        after: Option<String>,
        offset: Option<i32>,
    ) -> Result<Option<PortfolioReportConnection>> {
        require(ctx, "trainings.read")?;
        let st = state(ctx);
        let filter = ItemFilter {
            groups: user_group_ids
                .unwrap_or_default()
                .into_iter()
                .map(|u| u.0)
                .collect(),
            kinds: related_object_types
                .unwrap_or_default()
                .into_iter()
                .map(|k| match k {
                    RelatedObjectType::Training => Kind::Training,
                    RelatedObjectType::Certificate => Kind::Certificate,
                })
                .collect(),
            from: completion_date_from.map(|d| d.0),
            to: completion_date_to.map(|d| d.0),
        };
        let list = st.items_matching(&filter);
        let data = st.read();
        let now = Instant::now();
        let args = PageArgs {
            first,
            after,
            offset,
            ..PageArgs::default()
        };
        connection("portfolioReport", list.len(), &args, |i| {
            let (pos, idx) = (list[i] >> 16, list[i] & 0xFFFF);
            let pos = pos as u32;
            item_node(
                &data,
                pos,
                &data.users[pos as usize].items[idx as usize],
                now,
            )
        })
        .map(|p| Some(p.into()))
    }

    /// Certificate templates.
    async fn certificates(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Option<CertificateConnection>> {
        require(ctx, "trainings.read")?;
        let data = state(ctx).read();
        let args = PageArgs {
            first,
            after,
            last,
            before,
            offset: None,
        };
        connection("certificates", data.certificates.len(), &args, |i| {
            let c = &data.certificates[i];
            CertificateNode {
                id: Uuid(c.id),
                name: c.name.clone(),
                title: Some(c.title.to_string()),
            }
        })
        .map(|p| Some(p.into()))
    }

    async fn paginated_groups(
        &self,
        ctx: &Context<'_>,
        q: Option<String>,
        first: Option<i32>,
        after: Option<String>,
        offset: Option<i32>,
    ) -> Result<Option<GroupConnection>> {
        require(ctx, "groups.read")?;
        let data = state(ctx).read();
        let q = q.map(|s| s.to_lowercase());
        let list: Vec<u32> = (0..data.groups.len() as u32)
            .filter(|&g| {
                q.as_ref()
                    .is_none_or(|q| data.groups[g as usize].name.to_lowercase().contains(q))
            })
            .collect();
        let args = PageArgs {
            first,
            after,
            offset,
            ..PageArgs::default()
        };
        connection("paginatedGroups", list.len(), &args, |i| {
            group_node(&data, list[i])
        })
        .map(|p| Some(p.into()))
    }

    async fn group(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        #[graphql(name = "ref")] ref_: Option<String>,
    ) -> Result<Option<GroupNode>> {
        require(ctx, "groups.read")?;
        let data = state(ctx).read();
        Ok(data
            .group_by(id.map(|i| i.0), ref_.as_deref())
            .map(|g| group_node(&data, g)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn paginated_trainings(
        &self,
        ctx: &Context<'_>,
        q: Option<String>,
        active: Option<bool>,
        archived: Option<bool>,
        first: Option<i32>,
        after: Option<String>,
        offset: Option<i32>,
    ) -> Result<Option<TrainingConnection>> {
        require(ctx, "trainings.read")?;
        let data = state(ctx).read();
        let q = q.map(|s| s.to_lowercase());
        let list: Vec<u32> = (0..data.trainings.len() as u32)
            .filter(|&i| {
                let t = &data.trainings[i as usize];
                q.as_ref()
                    .is_none_or(|q| t.title.to_lowercase().contains(q))
                    && active.is_none_or(|a| t.is_active == a)
                    && archived.is_none_or(|a| t.archived == a)
            })
            .collect();
        let args = PageArgs {
            first,
            after,
            offset,
            ..PageArgs::default()
        };
        connection("paginatedTrainings", list.len(), &args, |i| {
            training_node(&data, list[i])
        })
        .map(|p| Some(p.into()))
    }

    async fn training(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        #[graphql(name = "ref")] ref_: Option<String>,
    ) -> Result<Option<TrainingNode>> {
        require(ctx, "trainings.read")?;
        let data = state(ctx).read();
        Ok(data
            .training_by(id.map(|i| i.0), ref_.as_deref())
            .map(|t| training_node(&data, t)))
    }

    async fn offer_event(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        #[graphql(name = "ref")] ref_: Option<String>,
    ) -> Result<Option<OfferEventNode>> {
        require(ctx, "events.read")?;
        let data = state(ctx).read();
        let index = data
            .offer_events
            .iter()
            .position(|e| Some(e.id) == id.map(|i| i.0) || Some(&e.ref_) == ref_.as_ref());
        Ok(index.map(|i| offer_event_node(&data, i)))
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

#[derive(InputObject)]
pub struct UserInput {
    name: Option<String>,
    email: Option<String>,
    #[graphql(name = "ref")]
    ref_: Option<String>,
    roles: Option<Vec<Role>>,
    language: Option<String>,
    archived: Option<bool>,
}

#[derive(SimpleObject)]
pub struct UpdateOrCreateUserPayload {
    created: bool,
    user: UserNode,
}

#[derive(InputObject)]
pub struct ExtraCategoryValueInput {
    category_ref: Option<String>,
    category_id: Option<Uuid>,
    string_value: Option<String>,
    boolean_value: Option<bool>,
    datetime_value: Option<Timestamp>,
    choice_values: Option<Vec<String>>,
}

#[derive(SimpleObject, Clone)]
pub struct ExtraCategory {
    id: Uuid,
    #[graphql(name = "ref")]
    ref_: Option<String>,
    name: String,
}

#[derive(SimpleObject)]
pub struct ExtraCategoryStringValue {
    category: ExtraCategory,
    string_value: Option<String>,
}
#[derive(SimpleObject)]
pub struct ExtraCategoryBooleanValue {
    category: ExtraCategory,
    boolean_value: Option<bool>,
}
#[derive(SimpleObject)]
pub struct ExtraCategoryDatetimeValue {
    category: ExtraCategory,
    datetime_value: Option<Timestamp>,
}
#[derive(SimpleObject)]
pub struct ExtraCategoryChoiceValue {
    category: ExtraCategory,
    choice_values: Vec<String>,
}

#[derive(Union)]
pub enum ExtraCategoryValue {
    String(ExtraCategoryStringValue),
    Boolean(ExtraCategoryBooleanValue),
    Datetime(ExtraCategoryDatetimeValue),
    Choice(ExtraCategoryChoiceValue),
}

#[derive(SimpleObject)]
pub struct UpdateExtraCategoryValuesPayload {
    extra_category_values: Vec<ExtraCategoryValue>,
}

/// Group membership answer. Newer docs name `...Ids`, older ones `...Refs`: both are given;
/// an unknown ref can only be reported in `failedRefs`.
#[derive(SimpleObject, Default)]
pub struct GroupMembershipPayload {
    added_ids: Vec<Uuid>,
    already_added_ids: Vec<Uuid>,
    failed_ids: Vec<Uuid>,
    added_refs: Vec<String>,
    already_added_refs: Vec<String>,
    failed_refs: Vec<String>,
}

#[derive(SimpleObject, Default)]
pub struct GroupRemovalPayload {
    removed_ids: Vec<Uuid>,
    already_removed_ids: Vec<Uuid>,
    failed_ids: Vec<Uuid>,
    failed_refs: Vec<String>,
}

#[derive(SimpleObject, Default)]
pub struct AddUsersToTrainingPayload {
    added_refs: Vec<String>,
    already_added_refs: Vec<String>,
    failed_refs: Vec<String>,
}

#[derive(SimpleObject)]
pub struct OfferEventEnrollment {
    id: Uuid,
    user: UserNode,
    status: String,
}

#[derive(SimpleObject, Default)]
pub struct BulkGenerate {
    succeeded_ids: Vec<Uuid>,
    failed_ids: Vec<Uuid>,
}

#[derive(SimpleObject)]
pub struct GenerateCertificatePayload {
    bulk_generate: BulkGenerate,
}

fn not_found(what: &str) -> Error {
    Error::new(format!("{what} matching query does not exist."))
        .extend_with(|_, e| e.set("code", "NotFound"))
}

/// Users named by refs or ids: `(pos, key as given)` for known ones, keys of unknown ones.
fn resolve_users(
    data: &Dataset,
    refs: &[String],
    ids: &[Uuid],
) -> (Vec<(u32, String)>, Vec<String>, Vec<Uuid>) {
    let mut known = Vec::new();
    let mut failed_refs = Vec::new();
    let mut failed_ids = Vec::new();
    for r in refs {
        match data.user_by_ref(r) {
            Some(p) => known.push((p, r.clone())),
            None => failed_refs.push(r.clone()),
        }
    }
    for id in ids {
        match data.user_by_id(id.0) {
            Some(p) => known.push((p, id.0.to_string())),
            None => failed_ids.push(*id),
        }
    }
    (known, failed_refs, failed_ids)
}

/// The group and users named by a membership mutation.
struct GroupTargets {
    group: u32,
    group_key: String,
    known: Vec<(u32, String)>,
    failed_refs: Vec<String>,
    failed_ids: Vec<Uuid>,
}

fn group_targets(
    data: &Dataset,
    group_ref: Option<String>,
    group_id: Option<Uuid>,
    user_refs: Option<Vec<String>>,
    user_ids: Option<Vec<Uuid>>,
) -> Result<GroupTargets> {
    let group = data
        .group_by(group_id.map(|i| i.0), group_ref.as_deref())
        .ok_or_else(|| not_found("Group"))?;
    let (known, failed_refs, failed_ids) = resolve_users(
        data,
        &user_refs.unwrap_or_default(),
        &user_ids.unwrap_or_default(),
    );
    Ok(GroupTargets {
        group,
        group_key: data.groups[group as usize].ref_.clone(),
        known,
        failed_refs,
        failed_ids,
    })
}

fn user_key(data: &Dataset, pos: u32) -> String {
    let u = &data.users[pos as usize];
    u.ref_.clone().unwrap_or_else(|| u.id.to_string())
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Create or update a user by ref (or email). Safe to repeat.
    async fn update_or_create_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "ref")] ref_: Option<String>,
        email: Option<String>,
        send_invite: Option<bool>,
        user: UserInput,
    ) -> Result<Option<UpdateOrCreateUserPayload>> {
        require(ctx, "users.write")?;
        let st = state(ctx);
        if let Some(e) = user.email.as_deref().or(email.as_deref())
            && (!e.contains('@') || e.starts_with('@') || e.ends_with('@'))
        {
            return Err(Error::new(format!("Enter a valid email address: `{e}`")));
        }
        let mut data = st.write();
        let key_ref = ref_.clone().or_else(|| user.ref_.clone());
        let found = key_ref
            .as_deref()
            .and_then(|r| data.user_by_ref(r))
            .or_else(|| email.as_deref().and_then(|e| data.user_by_email(e)));
        let (pos, created) = match found {
            Some(p) => (p, false),
            None => {
                let Some(name) = user.name.clone() else {
                    return Err(Error::new("`name` is required to create a user"));
                };
                let mail = user.email.clone().or(email.clone());
                if mail.is_none() {
                    return Err(Error::new("`email` is required to create a user"));
                }
                if let Some(m) = &mail
                    && data.user_by_email(m).is_some()
                {
                    return Err(Error::new(format!(
                        "A user with email `{m}` already exists"
                    )));
                }
                (data.create_user(name, mail, key_ref.clone()), true)
            }
        };
        let (old_ref, old_email) = {
            let u = &data.users[pos as usize];
            (u.ref_.clone(), u.email.clone())
        };
        // What the user looked like before: `applied` counts only real changes, so a repeated
        // upsert (safe to repeat) shows as processed twice but applied once.
        let snapshot = |u: &super::data::User| {
            (
                u.name.clone(),
                u.email.clone(),
                u.ref_.clone(),
                u.roles,
                u.language,
                u.archived,
            )
        };
        let before = snapshot(&data.users[pos as usize]);
        {
            let u = &mut data.users[pos as usize];
            if let Some(n) = user.name {
                u.name = n;
            }
            if let Some(e) = user.email {
                u.email = Some(e);
            }
            if let Some(r) = user.ref_ {
                u.ref_ = Some(r);
            }
            if let Some(roles) = user.roles {
                u.roles = roles.iter().fold(0, |acc, r| acc | r.bit());
            }
            if let Some(l) = user.language {
                u.language = super::data::LANGUAGES.iter().copied().find(|x| *x == l);
            }
            if let Some(a) = user.archived {
                u.archived = a;
            }
        }
        let changed = created || snapshot(&data.users[pos as usize]) != before;
        data.reindex(pos, old_ref, old_email);
        let key = user_key(&data, pos);
        let node = user_node(&data, pos, Instant::now());
        drop(data);
        st.record_mutation("updateOrCreateUser", &key, changed);
        st.record_notification(send_invite.unwrap_or(false));
        st.record_change(if created {
            Change::UserCreated(pos, Some(key))
        } else {
            Change::UserUpdated(pos)
        });
        Ok(Some(UpdateOrCreateUserPayload {
            created,
            user: node,
        }))
    }

    /// Set extra field values of a user. Safe to repeat.
    async fn update_extra_category_values(
        &self,
        ctx: &Context<'_>,
        content_type: ContentType,
        model_ref: Option<String>,
        model_id: Option<Uuid>,
        values: Vec<ExtraCategoryValueInput>,
    ) -> Result<Option<UpdateExtraCategoryValuesPayload>> {
        require(ctx, "extra_categories.write")?;
        let _ = content_type;
        let st = state(ctx);
        let mut data = st.write();
        let pos = model_id
            .and_then(|i| data.user_by_id(i.0))
            .or_else(|| model_ref.as_deref().and_then(|r| data.user_by_ref(r)))
            .ok_or_else(|| not_found("User"))?;
        let mut out = Vec::new();
        // `applied` counts real changes only (a repeat is processed, not applied).
        let mut changed = false;
        for v in values {
            let cat = data
                .categories
                .iter()
                .find(|c| {
                    Some(&c.ref_) == v.category_ref.as_ref()
                        || Some(c.id) == v.category_id.map(|i| i.0)
                })
                .cloned()
                .ok_or_else(|| not_found("ExtraCategory"))?;
            let category = ExtraCategory {
                id: Uuid(cat.id),
                ref_: Some(cat.ref_.clone()),
                name: cat.name.clone(),
            };
            let (json, value) = if let Some(s) = v.string_value {
                (
                    serde_json::Value::from(s.clone()),
                    ExtraCategoryValue::String(ExtraCategoryStringValue {
                        category,
                        string_value: Some(s),
                    }),
                )
            } else if let Some(b) = v.boolean_value {
                (
                    serde_json::Value::from(b),
                    ExtraCategoryValue::Boolean(ExtraCategoryBooleanValue {
                        category,
                        boolean_value: Some(b),
                    }),
                )
            } else if let Some(t) = v.datetime_value {
                (
                    serde_json::Value::from(
                        Timestamp(t.0)
                            .0
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                    ExtraCategoryValue::Datetime(ExtraCategoryDatetimeValue {
                        category,
                        datetime_value: Some(t),
                    }),
                )
            } else if let Some(c) = v.choice_values {
                (
                    serde_json::Value::from(c.clone()),
                    ExtraCategoryValue::Choice(ExtraCategoryChoiceValue {
                        category,
                        choice_values: c,
                    }),
                )
            } else {
                return Err(Error::new(format!(
                    "no value given for category `{}`",
                    cat.ref_
                )));
            };
            let previous = data.users[pos as usize]
                .extra
                .insert(cat.ref_.clone(), json.clone());
            changed |= previous.as_ref() != Some(&json);
            out.push(value);
        }
        data.version += 1;
        let key = user_key(&data, pos);
        drop(data);
        st.record_mutation("updateExtraCategoryValues", &key, changed);
        st.record_change(Change::UserUpdated(pos));
        Ok(Some(UpdateExtraCategoryValuesPayload {
            extra_category_values: out,
        }))
    }

    /// Add users to a group; already-members are reported, not added twice. Safe to repeat.
    async fn add_users_to_group(
        &self,
        ctx: &Context<'_>,
        group_ref: Option<String>,
        group_id: Option<Uuid>,
        user_refs: Option<Vec<String>>,
        user_ids: Option<Vec<Uuid>>,
    ) -> Result<Option<GroupMembershipPayload>> {
        require(ctx, "groups.write")?;
        let st = state(ctx);
        let mut data = st.write();
        let GroupTargets {
            group: g,
            group_key,
            known,
            failed_refs,
            failed_ids,
        } = group_targets(&data, group_ref, group_id, user_refs, user_ids)?;
        let visible_at = st.membership_visible_at();
        let mut out = GroupMembershipPayload {
            failed_refs,
            failed_ids,
            ..Default::default()
        };
        let mut changes = Vec::new();
        for (pos, _) in known {
            let key = format!("{group_key}:{}", user_key(&data, pos));
            let u = &mut data.users[pos as usize];
            let is_member = u.memberships.iter().any(|m| m.group == g && !m.manager);
            let (id, r) = (Uuid(u.id), u.ref_.clone().unwrap_or_default());
            if is_member {
                out.already_added_ids.push(id);
                out.already_added_refs.push(r);
                st.record_mutation("addUsersToGroup", &key, false);
            } else {
                u.leaving.retain(|m| m.group != g);
                u.memberships.push(Membership {
                    group: g,
                    manager: false,
                    visible_at,
                });
                out.added_ids.push(id);
                out.added_refs.push(r);
                st.record_mutation("addUsersToGroup", &key, true);
                changes.push(Change::MembershipChanged(pos, g));
            }
        }
        data.version += 1;
        drop(data);
        changes.into_iter().for_each(|c| st.record_change(c));
        Ok(Some(out))
    }

    /// Remove users from a group. Safe to repeat.
    async fn remove_users_from_group(
        &self,
        ctx: &Context<'_>,
        group_ref: Option<String>,
        group_id: Option<Uuid>,
        user_refs: Option<Vec<String>>,
        user_ids: Option<Vec<Uuid>>,
    ) -> Result<Option<GroupRemovalPayload>> {
        require(ctx, "groups.write")?;
        let st = state(ctx);
        let mut data = st.write();
        let GroupTargets {
            group: g,
            group_key,
            known,
            failed_refs,
            failed_ids,
        } = group_targets(&data, group_ref, group_id, user_refs, user_ids)?;
        let visible_at = st.membership_visible_at();
        let mut out = GroupRemovalPayload {
            failed_refs,
            failed_ids,
            ..Default::default()
        };
        let mut changes = Vec::new();
        for (pos, _) in known {
            let key = format!("{group_key}:{}", user_key(&data, pos));
            let u = &mut data.users[pos as usize];
            match u
                .memberships
                .iter()
                .position(|m| m.group == g && !m.manager)
            {
                Some(i) => {
                    let mut m = u.memberships.remove(i);
                    if visible_at.is_some() {
                        m.visible_at = visible_at;
                        u.leaving.push(m);
                    }
                    out.removed_ids.push(Uuid(u.id));
                    st.record_mutation("removeUsersFromGroup", &key, true);
                    changes.push(Change::MembershipChanged(pos, g));
                }
                None => {
                    out.already_removed_ids.push(Uuid(u.id));
                    st.record_mutation("removeUsersFromGroup", &key, false);
                }
            }
        }
        data.version += 1;
        drop(data);
        changes.into_iter().for_each(|c| st.record_change(c));
        Ok(Some(out))
    }

    /// Add users to a training (a TRAINING portfolio item at 0% for participants). Safe to repeat.
    async fn add_users_to_training(
        &self,
        ctx: &Context<'_>,
        training_ref: String,
        user_refs: Vec<String>,
        send_invites: Option<bool>,
        role: Option<TrainingRole>,
    ) -> Result<Option<AddUsersToTrainingPayload>> {
        require(ctx, "trainings.write")?;
        let st = state(ctx);
        let mut data = st.write();
        let t = data
            .training_by(None, Some(&training_ref))
            .ok_or_else(|| not_found("Training"))?;
        let role = match role.unwrap_or(TrainingRole::Participant) {
            TrainingRole::Participant => "PARTICIPANT",
            TrainingRole::Trainer => "TRAINER",
            TrainingRole::Mentor => "MENTOR",
        };
        let (known, failed_refs, _) = resolve_users(&data, &user_refs, &[]);
        let mut out = AddUsersToTrainingPayload {
            failed_refs,
            ..Default::default()
        };
        let mut changes = Vec::new();
        for (pos, r) in known {
            let seq = data.users[pos as usize].seq;
            let key = format!("{training_ref}:{r}:{role}");
            if !data.trainings[t as usize].members.insert((seq, role)) {
                out.already_added_refs.push(r);
                st.record_mutation("addUsersToTraining", &key, false);
                continue;
            }
            if role == "PARTICIPANT" {
                let title = data.trainings[t as usize].title.clone();
                data.users[pos as usize].items.push(Item {
                    kind: Kind::Training,
                    title,
                    training: Some(t),
                    progress: 0.0,
                    score: None,
                    completion_date: None,
                    end_date: None,
                    time_spent_secs: 0,
                });
                let index = data.users[pos as usize].items.len() - 1;
                changes.push(Change::ItemChanged(pos, ItemChange::Created(index)));
            }
            out.added_refs.push(r);
            st.record_mutation("addUsersToTraining", &key, true);
        }
        data.version += 1;
        drop(data);
        st.record_notification(send_invites.unwrap_or(false));
        changes.into_iter().for_each(|c| st.record_change(c));
        Ok(Some(out))
    }

    /// Enroll users in an offer event; an enrolled user is not enrolled twice. Safe to repeat.
    async fn create_offer_event_enrollments(
        &self,
        ctx: &Context<'_>,
        offer_event_ref: String,
        user_refs: Vec<String>,
        send_mail: Option<bool>,
    ) -> Result<Option<Vec<OfferEventEnrollment>>> {
        require(ctx, "events.write")?;
        let st = state(ctx);
        let mut data = st.write();
        let e = data
            .offer_events
            .iter()
            .position(|e| e.ref_ == offer_event_ref)
            .ok_or_else(|| not_found("OfferEvent"))?;
        let (known, _, _) = resolve_users(&data, &user_refs, &[]);
        let mut out = Vec::new();
        let mut enrolled = Vec::new();
        let now = Instant::now();
        for (pos, r) in known {
            let seq = data.users[pos as usize].seq;
            let key = format!("{offer_event_ref}:{r}");
            let existing = data.offer_events[e].enrollments.get(&seq).copied();
            let (id, status) = match existing {
                Some(x) => {
                    st.record_mutation("createOfferEventEnrollments", &key, false);
                    x
                }
                None => {
                    let id = data.new_id();
                    let event = &mut data.offer_events[e];
                    let full = event
                        .spots
                        .is_some_and(|s| event.enrollments.len() as u32 >= s);
                    let status = if full { "WAITLISTED" } else { "ENROLLED" };
                    event.enrollments.insert(seq, (id, status));
                    st.record_mutation("createOfferEventEnrollments", &key, true);
                    enrolled.push(Change::Enrolled(pos, e as u32));
                    (id, status)
                }
            };
            out.push(OfferEventEnrollment {
                id: Uuid(id),
                user: user_node(&data, pos, now),
                status: status.to_string(),
            });
        }
        data.version += 1;
        drop(data);
        st.record_notification(send_mail.unwrap_or(false));
        enrolled.into_iter().for_each(|c| st.record_change(c));
        Ok(Some(out))
    }

    /// Issue a certificate to users (adds a CERTIFICATE portfolio item). NOT safe to repeat:
    /// each call issues again.
    async fn generate_certificate(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        title: Option<String>,
        user_ids: Vec<Uuid>,
        training_id: Option<Uuid>,
        issue_date: Option<Timestamp>,
    ) -> Result<Option<GenerateCertificatePayload>> {
        require(ctx, "trainings.write")?;
        let st = state(ctx);
        let mut data = st.write();
        let template = data
            .certificates
            .iter()
            .find(|c| c.id == id.0)
            .cloned()
            .ok_or_else(|| not_found("Certificate"))?;
        let training = match training_id {
            Some(t) => Some(
                data.training_by(Some(t.0), None)
                    .ok_or_else(|| not_found("Training"))?,
            ),
            None => None,
        };
        let issued = issue_date
            .map(|t| t.0)
            .unwrap_or_else(Utc::now)
            .date_naive();
        let title: Arc<str> = title.map(Into::into).unwrap_or(template.title.clone());
        let mut out = BulkGenerate::default();
        let mut changes = Vec::new();
        for uid in user_ids {
            match data.user_by_id(uid.0) {
                Some(pos) => {
                    let key = format!("{}:{}", template.title, user_key(&data, pos));
                    data.users[pos as usize].items.push(Item {
                        kind: Kind::Certificate,
                        title: title.clone(),
                        training,
                        progress: 100.0,
                        score: None,
                        completion_date: Some(issued),
                        end_date: Some(issued + chrono::Duration::days(template.validity_days)),
                        time_spent_secs: 0,
                    });
                    out.succeeded_ids.push(uid);
                    st.record_mutation("generateCertificate", &key, true);
                    let index = data.users[pos as usize].items.len() - 1;
                    changes.push(Change::ItemChanged(pos, ItemChange::Created(index)));
                }
                None => out.failed_ids.push(uid),
            }
        }
        data.version += 1;
        drop(data);
        changes.into_iter().for_each(|c| st.record_change(c));
        Ok(Some(GenerateCertificatePayload { bulk_generate: out }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(first: Option<i32>, after: Option<usize>, offset: Option<i32>) -> PageArgs {
        PageArgs {
            first,
            after: after.map(cursor),
            offset,
            ..PageArgs::default()
        }
    }

    #[test]
    fn windows_follow_graphene() {
        assert_eq!(
            window("f", 120, &args(Some(50), None, None)).unwrap(),
            (0, 50)
        );
        assert_eq!(
            window("f", 120, &args(Some(50), Some(49), None)).unwrap(),
            (50, 100)
        );
        assert_eq!(
            window("f", 120, &args(Some(50), Some(99), None)).unwrap(),
            (100, 120)
        );
        assert_eq!(
            window("f", 120, &args(Some(50), None, Some(100))).unwrap(),
            (100, 120)
        );
        assert_eq!(
            window("f", 120, &args(Some(10), Some(9), Some(10))).unwrap(),
            (20, 30)
        );
        assert_eq!(window("f", 120, &args(None, None, None)).unwrap(), (0, 50));
        assert_eq!(
            window("f", 10, &args(Some(5), None, Some(50))).unwrap(),
            (10, 10)
        );
        let err = window("paginatedUsers", 120, &args(Some(51), None, None)).unwrap_err();
        assert!(
            err.message.contains("exceeds the `first` limit of 50"),
            "{}",
            err.message
        );
        assert!(parse_cursor("garbage").is_err());
    }
}
