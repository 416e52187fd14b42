//! Top-level queries: users, groups, trainings, portfolio report, certificates, offer events; each checks its scope.

use super::*;

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
    pub(in crate::sim) fn matches(&self, data: &Dataset, pos: u32, now: Instant) -> bool {
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
    pub(in crate::sim) fn user_matches(&self, data: &Dataset, pos: u32, now: Instant) -> bool {
        let u = &data.users[pos as usize];
        !u.deleted
            && (self.groups.is_empty()
                || u.visible_groups(now)
                    .any(|(g, _)| self.groups.contains(&data.groups[g as usize].id)))
    }
    pub(in crate::sim) fn item_matches(&self, item: &Item) -> bool {
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
    pub(in crate::sim) async fn paginated_users(
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
    pub(in crate::sim) async fn user(
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
    pub(in crate::sim) async fn portfolio_report(
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
    pub(in crate::sim) async fn certificates(
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

    pub(in crate::sim) async fn paginated_groups(
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

    pub(in crate::sim) async fn group(
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
    pub(in crate::sim) async fn paginated_trainings(
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

    pub(in crate::sim) async fn training(
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

    pub(in crate::sim) async fn offer_event(
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
