//! Mutations and their effects on the dataset: each records a [`Change`] (for `_sim/changes` and webhooks) and answers as the contract says.

use super::*;

#[derive(InputObject)]
pub struct UserInput {
    pub(in crate::sim) name: Option<String>,
    pub(in crate::sim) email: Option<String>,
    #[graphql(name = "ref")]
    pub(in crate::sim) ref_: Option<String>,
    pub(in crate::sim) roles: Option<Vec<Role>>,
    pub(in crate::sim) language: Option<String>,
    pub(in crate::sim) archived: Option<bool>,
}

#[derive(SimpleObject)]
pub struct UpdateOrCreateUserPayload {
    pub(in crate::sim) created: bool,
    pub(in crate::sim) user: UserNode,
}

#[derive(InputObject)]
pub struct ExtraCategoryValueInput {
    pub(in crate::sim) category_ref: Option<String>,
    pub(in crate::sim) category_id: Option<Uuid>,
    pub(in crate::sim) string_value: Option<String>,
    pub(in crate::sim) boolean_value: Option<bool>,
    pub(in crate::sim) datetime_value: Option<Timestamp>,
    pub(in crate::sim) choice_values: Option<Vec<String>>,
}

#[derive(SimpleObject, Clone)]
pub struct ExtraCategory {
    pub(in crate::sim) id: Uuid,
    #[graphql(name = "ref")]
    pub(in crate::sim) ref_: Option<String>,
    pub(in crate::sim) name: String,
}

#[derive(SimpleObject)]
pub struct ExtraCategoryStringValue {
    pub(in crate::sim) category: ExtraCategory,
    pub(in crate::sim) string_value: Option<String>,
}
#[derive(SimpleObject)]
pub struct ExtraCategoryBooleanValue {
    pub(in crate::sim) category: ExtraCategory,
    pub(in crate::sim) boolean_value: Option<bool>,
}
#[derive(SimpleObject)]
pub struct ExtraCategoryDatetimeValue {
    pub(in crate::sim) category: ExtraCategory,
    pub(in crate::sim) datetime_value: Option<Timestamp>,
}
#[derive(SimpleObject)]
pub struct ExtraCategoryChoiceValue {
    pub(in crate::sim) category: ExtraCategory,
    pub(in crate::sim) choice_values: Vec<String>,
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
    pub(in crate::sim) extra_category_values: Vec<ExtraCategoryValue>,
}

/// Group membership answer. Newer docs name `...Ids`, older ones `...Refs`: both are given;
/// an unknown ref can only be reported in `failedRefs`.
#[derive(SimpleObject, Default)]
pub struct GroupMembershipPayload {
    pub(in crate::sim) added_ids: Vec<Uuid>,
    pub(in crate::sim) already_added_ids: Vec<Uuid>,
    pub(in crate::sim) failed_ids: Vec<Uuid>,
    pub(in crate::sim) added_refs: Vec<String>,
    pub(in crate::sim) already_added_refs: Vec<String>,
    pub(in crate::sim) failed_refs: Vec<String>,
}

#[derive(SimpleObject, Default)]
pub struct GroupRemovalPayload {
    pub(in crate::sim) removed_ids: Vec<Uuid>,
    pub(in crate::sim) already_removed_ids: Vec<Uuid>,
    pub(in crate::sim) failed_ids: Vec<Uuid>,
    pub(in crate::sim) failed_refs: Vec<String>,
}

#[derive(SimpleObject, Default)]
pub struct AddUsersToTrainingPayload {
    pub(in crate::sim) added_refs: Vec<String>,
    pub(in crate::sim) already_added_refs: Vec<String>,
    pub(in crate::sim) failed_refs: Vec<String>,
}

#[derive(SimpleObject)]
pub struct OfferEventEnrollment {
    pub(in crate::sim) id: Uuid,
    pub(in crate::sim) user: UserNode,
    pub(in crate::sim) status: String,
}

#[derive(SimpleObject, Default)]
pub struct BulkGenerate {
    pub(in crate::sim) succeeded_ids: Vec<Uuid>,
    pub(in crate::sim) failed_ids: Vec<Uuid>,
}

#[derive(SimpleObject)]
pub struct GenerateCertificatePayload {
    pub(in crate::sim) bulk_generate: BulkGenerate,
}

pub(in crate::sim) fn not_found(what: &str) -> Error {
    Error::new(format!("{what} matching query does not exist."))
        .extend_with(|_, e| e.set("code", "NotFound"))
}

/// Users named by refs or ids: `(pos, key as given)` for known ones, keys of unknown ones.
pub(in crate::sim) fn resolve_users(
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
pub(in crate::sim) struct GroupTargets {
    pub(in crate::sim) group: u32,
    pub(in crate::sim) group_key: String,
    pub(in crate::sim) known: Vec<(u32, String)>,
    pub(in crate::sim) failed_refs: Vec<String>,
    pub(in crate::sim) failed_ids: Vec<Uuid>,
}

pub(in crate::sim) fn group_targets(
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

pub(in crate::sim) fn user_key(data: &Dataset, pos: u32) -> String {
    let u = &data.users[pos as usize];
    u.ref_.clone().unwrap_or_else(|| u.id.to_string())
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Create or update a user by ref (or email). Safe to repeat.
    pub(in crate::sim) async fn update_or_create_user(
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
        let snapshot = |u: &crate::sim::data::User| {
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
                u.language = crate::sim::data::LANGUAGES
                    .iter()
                    .copied()
                    .find(|x| *x == l);
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
    pub(in crate::sim) async fn update_extra_category_values(
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
    pub(in crate::sim) async fn add_users_to_group(
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
    pub(in crate::sim) async fn remove_users_from_group(
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
    pub(in crate::sim) async fn add_users_to_training(
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
    pub(in crate::sim) async fn create_offer_event_enrollments(
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
    pub(in crate::sim) async fn generate_certificate(
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
