//! The node types the queries return, built from the dataset.

use super::*;

#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct UserNode {
    pub(in crate::sim) id: Uuid,
    #[graphql(name = "ref")]
    pub(in crate::sim) ref_: Option<String>,
    pub(in crate::sim) name: String,
    pub(in crate::sim) email: Option<String>,
    pub(in crate::sim) last_login: Option<Timestamp>,
    pub(in crate::sim) archived: bool,
    pub(in crate::sim) roles: Vec<Role>,
    pub(in crate::sim) language: Option<String>,
    pub(in crate::sim) extra_fields: Option<JsonString>,
    pub(in crate::sim) participant_groups: Vec<GroupNode>,
    pub(in crate::sim) manager_groups: Vec<GroupNode>,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex, name = "Group")]
pub struct GroupNode {
    #[graphql(skip)]
    pub(in crate::sim) index: u32,
    pub(in crate::sim) id: Uuid,
    #[graphql(name = "ref")]
    pub(in crate::sim) ref_: Option<String>,
    pub(in crate::sim) name: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Training")]
pub struct TrainingNode {
    pub(in crate::sim) id: Uuid,
    #[graphql(name = "ref")]
    pub(in crate::sim) ref_: Option<String>,
    pub(in crate::sim) title: String,
    pub(in crate::sim) is_active: bool,
    pub(in crate::sim) archived: bool,
    pub(in crate::sim) start_date: Option<Timestamp>,
    pub(in crate::sim) end_date: Option<Timestamp>,
}

#[derive(SimpleObject, Clone)]
pub struct TimeSpent {
    pub(in crate::sim) days: i32,
    pub(in crate::sim) seconds: i32,
}

#[derive(SimpleObject, Clone)]
pub struct PortfolioReportItem {
    pub(in crate::sim) user: UserNode,
    pub(in crate::sim) title: String,
    pub(in crate::sim) progress: f64,
    pub(in crate::sim) score: Option<f64>,
    pub(in crate::sim) completion_date: Option<Date>,
    pub(in crate::sim) end_date: Option<Date>,
    pub(in crate::sim) time_spent: TimeSpent,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Certificate")]
pub struct CertificateNode {
    pub(in crate::sim) id: Uuid,
    pub(in crate::sim) name: String,
    pub(in crate::sim) title: Option<String>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "OfferEvent")]
pub struct OfferEventNode {
    pub(in crate::sim) id: Uuid,
    #[graphql(name = "ref")]
    pub(in crate::sim) ref_: Option<String>,
    pub(in crate::sim) title: String,
    #[graphql(name = "type")]
    pub(in crate::sim) kind: String,
    pub(in crate::sim) enrolled_count: i32,
    pub(in crate::sim) spots_available: Option<i32>,
}

pub(in crate::sim) fn group_node(data: &Dataset, index: u32) -> GroupNode {
    let g = &data.groups[index as usize];
    GroupNode {
        index,
        id: Uuid(g.id),
        ref_: Some(g.ref_.clone()),
        name: g.name.clone(),
    }
}

pub(in crate::sim) fn user_node(data: &Dataset, pos: u32, now: Instant) -> UserNode {
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

pub(in crate::sim) fn training_node(data: &Dataset, index: u32) -> TrainingNode {
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

pub(in crate::sim) fn item_node(
    data: &Dataset,
    pos: u32,
    item: &Item,
    now: Instant,
) -> PortfolioReportItem {
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

pub(in crate::sim) fn offer_event_node(data: &Dataset, index: usize) -> OfferEventNode {
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
    pub(in crate::sim) async fn user_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let st = state(ctx);
        Ok(st.group_members(self.index, false).len() as i32)
    }

    pub(in crate::sim) async fn users(
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

    pub(in crate::sim) async fn managers(
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
    pub(in crate::sim) fn members(
        &self,
        ctx: &Context<'_>,
        managers: bool,
        args: PageArgs,
    ) -> Result<UserConnection> {
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
