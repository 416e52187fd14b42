//! The simulated organisation: deterministic seeded generation, the primitive changes
//! (add/remove a user, an item, a membership) and churn ticks that move it forward. No HTTP
//! and no GraphQL here: `schema/` reads this state and applies each mutation's effect with
//! these primitives (`schema/mutation.rs`), `mod.rs` serves it.
//!
//! Order is creation order everywhere (users by `seq`, items in the order they were added),
//! and cursors are offsets into it, as graphene's array connections are: a row inserted or
//! deleted while a client pages shifts later rows, exactly like the real thing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A UUID kept as its 128 bits; formatted as RFC 4122 text on output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub u128);

impl Id {
    /// A random version-4 UUID from `rng`.
    pub fn random(rng: &mut impl Rng) -> Id {
        let bits: u128 = rng.random();
        Id((bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62))
    }

    /// Parse `8-4-4-4-12` hex text (dashes optional).
    pub fn parse(text: &str) -> Option<Id> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(Id)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Training,
    Certificate,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Training => "TRAINING",
            Kind::Certificate => "CERTIFICATE",
        }
    }
}

pub const ROLES: [&str; 5] = ["OWNER", "MANAGER", "AUTHOR", "TRAINER", "USER"];
pub const LANGUAGES: [&str; 4] = ["nl", "en", "de", "fr"];

/// One portfolio item of a user (a training or an issued certificate).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: Kind,
    pub title: Arc<str>,
    /// The training it belongs to (TRAINING items), index into `Dataset::trainings`.
    pub training: Option<u32>,
    pub progress: f64,
    pub score: Option<f64>,
    pub completion_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub time_spent_secs: u32,
}

/// Membership of a user in a group; `visible_at` models Pluvo's delayed membership updates.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub group: u32,
    pub manager: bool,
    pub visible_at: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub seq: u32,
    pub id: Id,
    pub ref_: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub last_login: Option<DateTime<Utc>>,
    pub archived: bool,
    pub deleted: bool,
    /// Bit i set = `ROLES[i]`.
    pub roles: u8,
    pub language: Option<&'static str>,
    pub extra: BTreeMap<String, serde_json::Value>,
    pub memberships: Vec<Membership>,
    /// Memberships removed but still visible until the instant (delayed removal).
    pub leaving: Vec<Membership>,
    pub items: Vec<Item>,
}

impl User {
    pub fn role_names(&self) -> Vec<&'static str> {
        ROLES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.roles & (1 << i) != 0)
            .map(|(_, r)| *r)
            .collect()
    }

    /// Group memberships as a query sees them at `now` (delays applied).
    pub fn visible_groups(&self, now: Instant) -> impl Iterator<Item = (u32, bool)> + '_ {
        let shown = move |m: &&Membership| m.visible_at.is_none_or(|t| t <= now);
        let hidden = move |m: &&Membership| m.visible_at.is_some_and(|t| t > now);
        self.memberships
            .iter()
            .filter(shown)
            .chain(self.leaving.iter().filter(hidden))
            .map(|m| (m.group, m.manager))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: Id,
    pub ref_: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    pub id: Id,
    pub ref_: String,
    pub title: Arc<str>,
    pub is_active: bool,
    pub archived: bool,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// (user seq, role) pairs added through `addUsersToTraining` or generation.
    pub members: HashSet<(u32, &'static str)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertificateTemplate {
    pub id: Id,
    pub name: String,
    pub title: Arc<str>,
    /// Validity of an issued certificate, in days (expiry = issue + validity).
    pub validity_days: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OfferEvent {
    pub id: Id,
    pub ref_: String,
    pub title: String,
    pub kind: &'static str,
    pub spots: Option<u32>,
    /// Enrollment id and status per user seq.
    pub enrollments: BTreeMap<u32, (Id, &'static str)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExtraCategory {
    pub id: Id,
    pub ref_: String,
    pub name: String,
}

/// Shape of a generated organisation.
#[derive(Debug, Clone)]
pub struct Seed {
    pub users: usize,
    pub seed: u64,
    /// "Now" of the generated history: last logins and completions lie before it.
    pub anchor: DateTime<Utc>,
}

/// The whole simulated organisation.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub anchor: DateTime<Utc>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub trainings: Vec<Training>,
    pub certificates: Vec<CertificateTemplate>,
    pub offer_events: Vec<OfferEvent>,
    pub categories: Vec<ExtraCategory>,
    by_ref: HashMap<String, u32>,
    by_id: HashMap<Id, u32>,
    by_email: HashMap<String, u32>,
    /// Bumped on every change; filter caches key on it.
    pub version: u64,
    rng: ChaCha8Rng,
    ticks: u64,
}

const FIRST: [&str; 24] = [
    "Anna", "Bram", "Chloe", "Daan", "Emma", "Finn", "Gwen", "Hugo", "Iris", "Jesse", "Kim",
    "Lars", "Mila", "Noah", "Olga", "Pieter", "Quinn", "Ruben", "Sara", "Tim", "Uma", "Vera",
    "Wout", "Yara",
];
const LAST: [&str; 20] = [
    "de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "de Boer", "Bos", "Vos",
    "Peters", "Hendriks", "Dekker", "Brouwer", "Dijkstra", "Smits", "Schouten", "Koster", "Prins",
    "Kok",
];
const TOPICS: [&str; 16] = [
    "Safety Basics",
    "Data Privacy",
    "Onboarding",
    "Leadership",
    "First Aid",
    "Customer Care",
    "Fire Safety",
    "Code of Conduct",
    "Excel Essentials",
    "Project Management",
    "Diversity & Inclusion",
    "Information Security",
    "Forklift Operation",
    "Time Management",
    "Negotiation",
    "Hygiene",
];
const CERTS: [(&str, i64); 8] = [
    ("VCA Basic", 3650),
    ("BHV", 365),
    ("First Aid Certificate", 730),
    ("GDPR Awareness", 365),
    ("Forklift License", 1825),
    ("Food Safety", 730),
    ("ISO 27001 Awareness", 365),
    ("Leadership Programme", 3650),
];
const DEPARTMENTS: [&str; 6] = [
    "Sales",
    "Support",
    "Engineering",
    "Finance",
    "HR",
    "Logistics",
];

fn email_for(name: &str, seq: u32) -> String {
    let local: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
        .collect();
    format!("{local}.{seq}@example.com")
}

impl Dataset {
    /// Generate an organisation; the same `Seed` always gives the same data.
    pub fn generate(seed: &Seed) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.seed);
        let n = seed.users;
        let n_groups = (n / 150).clamp(4, 2000);
        let n_trainings = (n / 500).clamp(10, 400);

        let groups = (0..n_groups)
            .map(|i| Group {
                id: Id::random(&mut rng),
                ref_: format!("G{:04}", i + 1),
                name: format!(
                    "{} {}",
                    DEPARTMENTS[i % DEPARTMENTS.len()],
                    i / DEPARTMENTS.len() + 1
                ),
            })
            .collect();
        let trainings: Vec<Training> = (0..n_trainings)
            .map(|i| {
                let start = seed.anchor - Days::days(rng.random_range(30..900));
                Training {
                    id: Id::random(&mut rng),
                    ref_: format!("T{:04}", i + 1),
                    title: format!("{} {}", TOPICS[i % TOPICS.len()], i / TOPICS.len() + 1).into(),
                    is_active: i % 7 != 6,
                    archived: i % 11 == 10,
                    start_date: Some(start),
                    end_date: (i % 3 == 0).then(|| start + Days::days(365)),
                    members: HashSet::new(),
                }
            })
            .collect();
        let certificates = CERTS
            .iter()
            .map(|(title, validity)| CertificateTemplate {
                id: Id::random(&mut rng),
                name: format!("cert-{}", title.to_lowercase().replace(' ', "-")),
                title: (*title).into(),
                validity_days: *validity,
            })
            .collect();
        let offer_events = (0..20)
            .map(|i| OfferEvent {
                id: Id::random(&mut rng),
                ref_: format!("OE{:03}", i + 1),
                title: format!("{} session {}", TOPICS[i % TOPICS.len()], i + 1),
                kind: ["TRAINING", "MEETING", "WEBINAR"][i % 3],
                spots: (i % 4 != 0).then_some(25 + 5 * i as u32),
                enrollments: BTreeMap::new(),
            })
            .collect();
        let categories = [
            ("department", "Department"),
            ("cost_center", "Cost center"),
            ("hire_date", "Hire date"),
        ]
        .iter()
        .map(|(r, name)| ExtraCategory {
            id: Id::random(&mut rng),
            ref_: (*r).into(),
            name: (*name).into(),
        })
        .collect();

        let mut data = Dataset {
            anchor: seed.anchor,
            users: Vec::with_capacity(n),
            groups,
            trainings,
            certificates,
            offer_events,
            categories,
            by_ref: HashMap::with_capacity(n),
            by_id: HashMap::with_capacity(n),
            by_email: HashMap::with_capacity(n),
            version: 0,
            rng: ChaCha8Rng::seed_from_u64(seed.seed ^ 0x5eed),
            ticks: 0,
        };
        // Each user has its own rng (seeded by seed and seq), so users generate in parallel
        // and the result does not depend on the number of threads.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = n.div_ceil(threads).max(1);
        let users: Vec<User> = std::thread::scope(|scope| {
            let data = &data;
            let parts: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        (start..(start + chunk).min(n))
                            .map(|seq| {
                                let mut urng = ChaCha8Rng::seed_from_u64(
                                    seed.seed.wrapping_mul(0x9E37_79B9).wrapping_add(seq as u64),
                                );
                                data.new_user(seq as u32, &mut urng)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("user generation thread"))
                .collect()
        });
        for user in users {
            data.push_user(user);
        }
        data
    }

    fn new_user(&self, seq: u32, rng: &mut ChaCha8Rng) -> User {
        let name = format!(
            "{} {}",
            FIRST[rng.random_range(0..FIRST.len())],
            LAST[rng.random_range(0..LAST.len())]
        );
        let anchor = self.anchor;
        let last_login = (!rng.random_bool(0.05)).then(|| {
            // Skewed towards recent logins, spread over two years.
            let u: f64 = rng.random();
            anchor - Days::seconds((u * u * 730.0 * 86_400.0) as i64)
        });
        let mut roles = 1 << 4; // USER
        if rng.random_bool(0.05) {
            roles |= 1 << 1;
        }
        if rng.random_bool(0.02) {
            roles |= 1 << 3;
        }
        if rng.random_bool(0.01) {
            roles |= 1 << 2;
        }
        if seq == 0 {
            roles |= 1;
        }
        let mut extra = BTreeMap::new();
        if rng.random_bool(0.7) {
            extra.insert(
                "department".to_string(),
                serde_json::Value::from(DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())]),
            );
        }
        let n_groups = self.groups.len() as u32;
        let mut memberships = vec![Membership {
            group: rng.random_range(0..n_groups),
            manager: false,
            visible_at: None,
        }];
        if rng.random_bool(0.3) {
            let g = rng.random_range(0..n_groups);
            if g != memberships[0].group {
                memberships.push(Membership {
                    group: g,
                    manager: rng.random_bool(0.1),
                    visible_at: None,
                });
            }
        }
        let mut user = User {
            seq,
            id: Id::random(rng),
            ref_: Some(format!("EMP{:07}", seq + 1)),
            email: Some(email_for(&name, seq + 1)),
            name,
            last_login,
            archived: rng.random_bool(0.08),
            deleted: false,
            roles,
            language: Some(LANGUAGES[rng.random_range(0..LANGUAGES.len())]),
            extra,
            memberships,
            leaving: Vec::new(),
            items: Vec::new(),
        };
        let n_items = rng.random_range(2..=8);
        for _ in 0..n_items {
            user.items.push(self.random_item(rng));
        }
        // A re-taken certificate: the same title twice for one user (rare, but it happens).
        if rng.random_bool(0.01)
            && let Some(cert) = user
                .items
                .iter()
                .find(|i| i.kind == Kind::Certificate)
                .cloned()
        {
            let mut again = cert;
            again.completion_date = again.completion_date.map(|d| d + Days::days(30));
            again.end_date = again.end_date.map(|d| d + Days::days(30));
            user.items.push(again);
        }
        user
    }

    fn random_item(&self, rng: &mut impl Rng) -> Item {
        let today = self.anchor.date_naive();
        if rng.random_bool(0.7) {
            let t = rng.random_range(0..self.trainings.len()) as u32;
            let completed = rng.random_bool(0.45);
            let progress = if completed {
                100.0
            } else {
                (rng.random_range(0..100) as f64).min(99.0)
            };
            Item {
                kind: Kind::Training,
                title: self.trainings[t as usize].title.clone(),
                training: Some(t),
                progress,
                score: (completed && rng.random_bool(0.8))
                    .then(|| rng.random_range(40..=100) as f64),
                completion_date: completed.then(|| today - Days::days(rng.random_range(0..730))),
                end_date: None,
                time_spent_secs: rng.random_range(0..20_000),
            }
        } else {
            let c = &self.certificates[rng.random_range(0..self.certificates.len())];
            let issued = today - Days::days(rng.random_range(0..c.validity_days.min(1200)));
            Item {
                kind: Kind::Certificate,
                title: c.title.clone(),
                training: None,
                progress: 100.0,
                score: None,
                completion_date: Some(issued),
                end_date: Some(issued + Days::days(c.validity_days)),
                time_spent_secs: 0,
            }
        }
    }

    fn push_user(&mut self, user: User) {
        let pos = self.users.len() as u32;
        for t in user.items.iter().filter_map(|i| i.training) {
            self.trainings[t as usize]
                .members
                .insert((user.seq, "PARTICIPANT"));
        }
        if let Some(r) = &user.ref_ {
            self.by_ref.insert(r.clone(), pos);
        }
        if let Some(e) = &user.email {
            self.by_email.insert(e.to_lowercase(), pos);
        }
        self.by_id.insert(user.id, pos);
        self.users.push(user);
        self.version += 1;
    }

    /// A live (not deleted) user by ref.
    pub fn user_by_ref(&self, r: &str) -> Option<u32> {
        self.by_ref
            .get(r)
            .copied()
            .filter(|&p| !self.users[p as usize].deleted)
    }
    pub fn user_by_id(&self, id: Id) -> Option<u32> {
        self.by_id
            .get(&id)
            .copied()
            .filter(|&p| !self.users[p as usize].deleted)
    }
    pub fn user_by_email(&self, email: &str) -> Option<u32> {
        self.by_email
            .get(&email.to_lowercase())
            .copied()
            .filter(|&p| !self.users[p as usize].deleted)
    }
    pub fn group_by(&self, id: Option<Id>, r: Option<&str>) -> Option<u32> {
        self.groups
            .iter()
            .position(|g| Some(g.id) == id || Some(g.ref_.as_str()) == r)
            .map(|p| p as u32)
    }
    pub fn training_by(&self, id: Option<Id>, r: Option<&str>) -> Option<u32> {
        self.trainings
            .iter()
            .position(|t| Some(t.id) == id || Some(t.ref_.as_str()) == r)
            .map(|p| p as u32)
    }

    /// Move a user's ref/email index entries after an update.
    pub fn reindex(&mut self, pos: u32, old_ref: Option<String>, old_email: Option<String>) {
        if let Some(r) = old_ref {
            self.by_ref.remove(&r);
        }
        if let Some(e) = old_email {
            self.by_email.remove(&e.to_lowercase());
        }
        let user = &self.users[pos as usize];
        if let Some(r) = &user.ref_ {
            self.by_ref.insert(r.clone(), pos);
        }
        if let Some(e) = &user.email {
            self.by_email.insert(e.to_lowercase(), pos);
        }
        self.version += 1;
    }

    /// Create a user from an upsert; returns its position.
    pub fn create_user(
        &mut self,
        name: String,
        email: Option<String>,
        ref_: Option<String>,
    ) -> u32 {
        let seq = self.users.len() as u32;
        let id = Id::random(&mut self.rng);
        let user = User {
            seq,
            id,
            ref_,
            name,
            email,
            last_login: None,
            archived: false,
            deleted: false,
            roles: 1 << 4,
            language: None,
            extra: BTreeMap::new(),
            memberships: Vec::new(),
            leaving: Vec::new(),
            items: Vec::new(),
        };
        self.push_user(user);
        seq
    }

    pub fn new_id(&mut self) -> Id {
        Id::random(&mut self.rng)
    }

    /// Make delayed membership changes whose time has come permanent.
    pub fn settle(&mut self, now: Instant) {
        let mut changed = false;
        for user in &mut self.users {
            if user.leaving.is_empty() && user.memberships.iter().all(|m| m.visible_at.is_none()) {
                continue;
            }
            let before = user.leaving.len();
            user.leaving
                .retain(|m| m.visible_at.is_some_and(|t| t > now));
            changed |= before != user.leaving.len();
            for m in &mut user.memberships {
                if m.visible_at.is_some_and(|t| t <= now) {
                    m.visible_at = None;
                    changed = true;
                }
            }
        }
        if changed {
            self.version += 1;
        }
    }

    /// Advance the organisation by `changes` random edits: new, changed, archived and deleted
    /// users; progress, completions, new and deleted portfolio items; membership changes.
    /// Returns a description of each change (for logs and webhook deliveries).
    pub fn tick(&mut self, changes: usize, now: DateTime<Utc>) -> Vec<Change> {
        self.ticks += 1;
        let mut out = Vec::with_capacity(changes);
        let today = now.date_naive();
        for _ in 0..changes {
            let live: u32 = self.users.len() as u32;
            if live == 0 {
                break;
            }
            let pos = self.rng.random_range(0..live);
            if self.users[pos as usize].deleted {
                continue;
            }
            let roll = self.rng.random_range(0..100);
            let change = match roll {
                0..=7 => {
                    let seq = self.users.len() as u32;
                    let mut urng = ChaCha8Rng::seed_from_u64(self.rng.random());
                    let mut user = self.new_user(seq, &mut urng);
                    user.last_login = Some(now);
                    user.archived = false;
                    let r = user.ref_.clone();
                    self.push_user(user);
                    Change::UserCreated(seq, r)
                }
                8..=27 => {
                    self.users[pos as usize].last_login = Some(now);
                    Change::UserUpdated(pos)
                }
                28..=31 => {
                    let u = &mut self.users[pos as usize];
                    u.archived = !u.archived;
                    Change::UserUpdated(pos)
                }
                32..=33 => {
                    self.users[pos as usize].deleted = true;
                    Change::UserDeleted(pos)
                }
                34..=35 => {
                    let u = &mut self.users[pos as usize];
                    u.name = format!("{} (renamed)", u.name.trim_end_matches(" (renamed)"));
                    Change::UserUpdated(pos)
                }
                36..=75 => {
                    let rng = &mut self.rng;
                    let u = &mut self.users[pos as usize];
                    let Some(index) = u
                        .items
                        .iter()
                        .position(|i| i.kind == Kind::Training && i.progress < 100.0)
                    else {
                        continue;
                    };
                    let item = &mut u.items[index];
                    item.progress = (item.progress + rng.random_range(10..60) as f64).min(100.0);
                    item.time_spent_secs += rng.random_range(60..3600);
                    if item.progress >= 100.0 {
                        item.completion_date = Some(today);
                        item.score = Some(rng.random_range(50..=100) as f64);
                    }
                    Change::ItemChanged(pos, ItemChange::Updated(index))
                }
                76..=87 => {
                    let mut item = self.random_item(&mut self.rng.clone());
                    let _ = self.rng.random::<u64>();
                    if item.completion_date.is_some() {
                        item.completion_date = Some(today);
                        if item.kind == Kind::Certificate {
                            let validity =
                                item.end_date.zip(item.completion_date).map(|(e, c)| e - c);
                            item.end_date = validity.map(|v| today + v);
                        }
                    }
                    if let Some(t) = item.training {
                        self.trainings[t as usize]
                            .members
                            .insert((self.users[pos as usize].seq, "PARTICIPANT"));
                    }
                    let items = &mut self.users[pos as usize].items;
                    items.push(item);
                    Change::ItemChanged(pos, ItemChange::Created(items.len() - 1))
                }
                88..=91 => {
                    let u = &mut self.users[pos as usize];
                    if u.items.is_empty() {
                        continue;
                    }
                    let i = self.rng.random_range(0..u.items.len());
                    Change::ItemChanged(pos, ItemChange::Deleted(u.items.remove(i)))
                }
                _ => {
                    let g = self.rng.random_range(0..self.groups.len() as u32);
                    let u = &mut self.users[pos as usize];
                    if let Some(i) = u.memberships.iter().position(|m| m.group == g) {
                        u.memberships.remove(i);
                    } else {
                        u.memberships.push(Membership {
                            group: g,
                            manager: false,
                            visible_at: None,
                        });
                    }
                    Change::MembershipChanged(pos, g)
                }
            };
            out.push(change);
            self.version += 1;
        }
        out
    }
}

/// One change made by a tick or a mutation (positions into `Dataset::users`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    UserCreated(u32, Option<String>),
    UserUpdated(u32),
    UserDeleted(u32),
    ItemChanged(u32, ItemChange),
    MembershipChanged(u32, u32),
    /// A user (position) was enrolled in an offer event (index into `offer_events`).
    Enrolled(u32, u32),
}

/// What happened to one portfolio item; indexes point into the user's `items` at the time.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemChange {
    Created(usize),
    Updated(usize),
    /// The item as it was before it was removed.
    Deleted(Item),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(users: usize) -> Seed {
        Seed {
            users,
            seed: 42,
            anchor: "2026-06-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn generation_is_deterministic_and_shaped() {
        let a = Dataset::generate(&seed(500));
        let b = Dataset::generate(&seed(500));
        assert_eq!(a.users, b.users);
        let items: usize = a.users.iter().map(|u| u.items.len()).sum();
        assert!(
            (2000..=3000).contains(&items),
            "about 5 items per user, got {items}"
        );
        let archived = a.users.iter().filter(|u| u.archived).count();
        assert!(
            (10..=80).contains(&archived),
            "some archived users, got {archived}"
        );
        let refs: HashSet<_> = a.users.iter().map(|u| u.ref_.clone()).collect();
        assert_eq!(refs.len(), 500);
    }

    #[test]
    fn ids_round_trip_as_uuid_text() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let id = Id::random(&mut rng);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_eq!(Id::parse(&text), Some(id));
        assert_eq!(Id::parse("nope"), None);
    }

    #[test]
    fn ticks_change_the_data() {
        let mut a = Dataset::generate(&seed(200));
        let before = a.users.clone();
        let changes = a.tick(50, a.anchor);
        assert!(changes.len() >= 40);
        assert_ne!(before, a.users);
    }
}
