//! In-process Pluvo simulator for tests, the demo and benchmarks: OAuth token endpoint,
//! the GraphQL contract of `contract/pluvo.graphql` over a seeded organisation, and faults
//! (latency, rate limits, 5xx, truncated bodies, expiring tokens, delayed memberships).
//!
//! It imports nothing else from this crate, so it cannot quietly share the client's bugs.
//! `data` holds the organisation, `schema` the GraphQL types and resolvers, `server` the HTTP
//! endpoints and faults, `webhooks` signed deliveries of its changes to a configured URL.
//! [`Sim`] is the handle tests hold: start, read counters, tick churn.

pub mod data;
pub mod schema;
mod server;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use data::{Change, Dataset, Id, Item, ItemChange, Kind, Seed};
use schema::{ItemFilter, UserFilter};
pub use webhooks::WebhookConfig;

/// Every scope the simulated API knows (pluvo-api.md).
pub const ALL_SCOPES: [&str; 9] = [
    "users.read",
    "users.write",
    "trainings.read",
    "trainings.write",
    "events.read",
    "events.write",
    "groups.read",
    "groups.write",
    "extra_categories.write",
];

/// How an expired or unknown token is answered on `/graphql/` (the client must handle both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthErrorMode {
    /// HTTP 401.
    #[default]
    Http,
    /// HTTP 200 with an `errors[]` entry whose `extensions.code` is `AuthenticationExpired`.
    Graphql,
}

/// Faults, each switchable at run time with [`Sim::set_faults`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every answer.
    pub latency: Duration,
    /// Requests per second before answering 429 with `Retry-After`.
    pub rate_limit_rps: Option<f64>,
    /// Probability of a 500/502/503 answer; half of them after the request was executed
    /// (a mutation was applied but its answer is lost), as with a proxy timing out.
    pub fail_rate: f64,
    /// Probability of a 200 answer whose JSON body is cut in the middle (also after executing).
    pub truncate_rate: f64,
    pub auth_error: AuthErrorMode,
    /// Probability that a mutation is answered 504 by the gateway at once while the backend
    /// still applies it [`Faults::gateway_apply_after`] later: the answer is lost, the effect
    /// is not (issue #16). Queries are not affected.
    pub gateway_timeout_rate: f64,
    /// How long after the 504 such a mutation takes effect.
    pub gateway_apply_after: Duration,
    /// The token endpoint answers 503 (a bad minute of the identity service); GraphQL
    /// requests with a valid token still work.
    pub token_unavailable: bool,
    /// Every list (connection) answers with no rows and `count` 0, as when the API client's
    /// rights were narrowed and Pluvo answers empty lists instead of an error. Lookups of one
    /// object (`user(id:)`) still answer.
    pub empty_lists: bool,
    /// Deletes and inserts between pages: before each of the next `shift_pages` pages of
    /// `paginatedUsers` after the first (`offset` > 0), the first active user is deleted and
    /// a new one created at the end, so `count` stays the same while rows move into pages
    /// already read.
    pub shift_pages: u32,
    /// The page at this offset (of any offset scan) answers this much later than the others,
    /// as a real server's answers arrive out of order (one slow shard, one long GC pause).
    pub slow_page: Option<SlowPage>,
    /// Not a fault: a query answered before, with the same grant, document, operation and
    /// variables (in any order), is answered again from memory while the data has not
    /// changed since (mutations and churn ticks change it). Its GraphQL execution is what
    /// costs the simulator CPU, about 0.5 ms a page beside the tool on the same 2 cores;
    /// replayed, the simulator is as cheap as a fast server, so `bench sync --replay` shows
    /// the tool's own cost (issue 19). Every answer is kept: for benchmarks, not for serving
    /// 1M users for long.
    pub replay: bool,
}

/// See [`Faults::slow_page`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlowPage {
    pub offset: u64,
    pub delay: Duration,
}

/// Start-up settings of a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub users: usize,
    pub seed: u64,
    /// The "now" of the generated history (default: start time).
    pub anchor: Option<DateTime<Utc>>,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes this API client may be granted (default: all).
    pub scopes: Vec<String>,
    pub token_ttl: Duration,
    /// Group membership changes become visible only after this delay.
    pub membership_delay: Duration,
    pub faults: Faults,
    /// Bind address; port 0 picks a free port. Loopback by default.
    pub addr: SocketAddr,
    /// Deliver signed webhooks for every change (mutations and churn ticks) here.
    pub webhook: Option<WebhookConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            users: 200,
            seed: 42,
            anchor: None,
            client_id: "demo".into(),
            client_secret: "demo-secret".into(),
            scopes: ALL_SCOPES.iter().map(|s| s.to_string()).collect(),
            token_ttl: Duration::from_secs(86_400),
            membership_delay: Duration::ZERO,
            faults: Faults::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook: None,
        }
    }
}

/// What the simulator has seen and done, for tests that prove nothing happened twice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// HTTP answers by status code, all endpoints.
    pub responses: BTreeMap<u16, u64>,
    pub token_requests: u64,
    pub tokens_issued: u64,
    pub graphql_requests: u64,
    /// GraphQL requests being answered now, and the most at once so far (a client's
    /// concurrency limit, or several clients' shared budget, is seen here).
    pub graphql_in_flight: u64,
    pub graphql_peak_in_flight: u64,
    /// Executed GraphQL requests by `operationName` (`-` when none).
    pub operations: BTreeMap<String, u64>,
    /// Requests answered with an injected fault, by kind (`429`, `5xx-before`, `5xx-after`,
    /// `truncated`, `504-then-apply`).
    pub faults: BTreeMap<String, u64>,
    /// Mutation rows processed, by `mutation:target` (every time, applied or already in place).
    pub mutations: BTreeMap<String, u64>,
    /// Mutation rows that changed state, by `mutation:target`.
    pub applied: BTreeMap<String, u64>,
    /// Mutations sent with `sendInvite`/`sendInvites`/`sendMail` true.
    pub notifications: u64,
    /// Webhook deliveries queued (one per event, plus forced redeliveries).
    pub webhooks_queued: u64,
    /// Webhook delivery attempts by the receiver's HTTP status (0 = no answer).
    pub webhook_attempts: BTreeMap<u16, u64>,
    /// Deliveries answered 2xx.
    pub webhooks_delivered: u64,
    /// Deliveries abandoned (attempts exhausted, or the subscription disabled by a 410).
    pub webhooks_given_up: u64,
    /// GraphQL answers given from memory ([`Faults::replay`]), not executed (`operations`
    /// counts them too).
    pub replayed: u64,
}

impl Counters {
    /// Total rows processed by one mutation kind.
    pub fn mutation_rows(&self, mutation: &str) -> u64 {
        let prefix = format!("{mutation}:");
        self.mutations
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }
    /// Every queued webhook delivery has been answered 2xx or given up.
    pub fn webhooks_settled(&self) -> bool {
        self.webhooks_delivered + self.webhooks_given_up == self.webhooks_queued
    }
    /// HTTP answers with a 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.responses.range(500..600).map(|(_, v)| v).sum()
    }
}

/// Shared state behind the HTTP server and the schema.
pub struct State {
    data: RwLock<Dataset>,
    config: SimConfig,
    faults: Mutex<Faults>,
    counters: Mutex<Counters>,
    tokens: Mutex<HashMap<String, Token>>,
    pending_memberships: AtomicBool,
    cache: Mutex<HashMap<String, Cached>>,
    /// Every group's participants and managers, built in one pass over the users per
    /// dataset version: `userCount` of 2,000 groups at 1M users would otherwise scan all users
    /// once per group.
    members: Mutex<Option<(u64, Members)>>,
    changes: Mutex<Vec<(DateTime<Utc>, Change)>>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    limiter: Mutex<server::Bucket>,
    /// Queue of the webhook delivery task (set by [`Sim::start`] when webhooks are configured).
    webhook_queue: Mutex<Option<tokio::sync::mpsc::UnboundedSender<axum::body::Bytes>>>,
    /// Set when the receiver answered 410: nothing more is delivered.
    webhooks_disabled: AtomicBool,
    /// Bodies answered 2xx, in delivery order (for forced redeliveries).
    delivered: Mutex<Vec<axum::body::Bytes>>,
    /// Answers kept for [`Faults::replay`], by grant and request, all computed at the
    /// dataset version beside them.
    replies: Mutex<(u64, HashMap<String, Reply>)>,
}

/// A kept answer (see [`Faults::replay`]): status and body.
type Reply = (axum::http::StatusCode, axum::body::Bytes);

/// A filtered row list and the dataset version it was computed at.
type Cached = (u64, Arc<Vec<u64>>);

/// Per group (by index): its participants' and its managers' positions, in order.
type Members = Arc<Vec<[Arc<Vec<u64>>; 2]>>;

#[derive(Debug, Clone)]
struct Token {
    expires: Instant,
    scopes: HashSet<String>,
}

impl State {
    fn new(config: SimConfig, data: Dataset) -> State {
        use rand::SeedableRng;
        State {
            data: RwLock::new(data),
            faults: Mutex::new(config.faults.clone()),
            counters: Mutex::new(Counters::default()),
            tokens: Mutex::new(HashMap::new()),
            pending_memberships: AtomicBool::new(false),
            cache: Mutex::new(HashMap::new()),
            members: Mutex::new(None),
            changes: Mutex::new(Vec::new()),
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(config.seed ^ 0xfa17)),
            limiter: Mutex::new(server::Bucket::default()),
            webhook_queue: Mutex::new(None),
            webhooks_disabled: AtomicBool::new(false),
            delivered: Mutex::new(Vec::new()),
            replies: Mutex::new((0, HashMap::new())),
            config,
        }
    }

    /// Read access, with delayed membership changes that came due made visible first.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Dataset> {
        if self.pending_memberships.load(Ordering::Relaxed) {
            let mut data = self.write();
            data.settle(Instant::now());
            let still_pending = data.users.iter().any(|u| {
                !u.leaving.is_empty() || u.memberships.iter().any(|m| m.visible_at.is_some())
            });
            self.pending_memberships
                .store(still_pending, Ordering::Relaxed);
        }
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Dataset> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }

    /// When a membership change made now becomes visible (`None` = at once).
    pub(crate) fn membership_visible_at(&self) -> Option<Instant> {
        let delay = self.config.membership_delay;
        if delay.is_zero() {
            return None;
        }
        self.pending_memberships.store(true, Ordering::Relaxed);
        Some(Instant::now() + delay)
    }

    /// The answer kept for `key` ([`Faults::replay`]), if the data has not changed since.
    pub(super) fn replayed(&self, key: &str) -> Option<Reply> {
        let version = self.version();
        let replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        (replies.0 == version)
            .then(|| replies.1.get(key).cloned())
            .flatten()
    }

    /// The data's version now, to keep an answer computed from it ([`State::keep`]).
    pub(super) fn version(&self) -> u64 {
        self.read().version
    }

    /// Keep a query's answer computed at `version`, unless the data changed meanwhile; the
    /// answers of an older version are dropped.
    pub(super) fn keep(&self, key: String, version: u64, reply: Reply) {
        if self.version() != version {
            return;
        }
        let mut replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        if replies.0 != version {
            *replies = (version, HashMap::new());
        }
        replies.1.insert(key, reply);
    }

    fn cached(&self, key: String, build: impl FnOnce(&Dataset) -> Vec<u64>) -> Arc<Vec<u64>> {
        let data = self.read();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, list)) = cache.get(&key)
            && *version == data.version
        {
            return list.clone();
        }
        let list = Arc::new(build(&data));
        if cache.len() > 64 {
            cache.clear();
        }
        cache.insert(key, (data.version, list.clone()));
        list
    }

    /// Positions of users matching a `paginatedUsers` filter, in order.
    pub(crate) fn users_matching(&self, filter: &UserFilter) -> Arc<Vec<u64>> {
        self.cached(format!("users:{filter:?}"), |data| {
            let now = Instant::now();
            (0..data.users.len() as u32)
                .filter(|&p| filter.matches(data, p, now))
                .map(u64::from)
                .collect()
        })
    }

    /// `(position << 16) | item index` of portfolio items matching a filter, in order.
    pub(crate) fn items_matching(&self, filter: &ItemFilter) -> Arc<Vec<u64>> {
        self.cached(format!("items:{filter:?}"), |data| {
            let now = Instant::now();
            let mut out = Vec::new();
            for (p, u) in data.users.iter().enumerate() {
                if !filter.user_matches(data, p as u32, now) {
                    continue;
                }
                for (i, item) in u.items.iter().enumerate() {
                    if filter.item_matches(item) {
                        out.push(((p as u64) << 16) | i as u64);
                    }
                }
            }
            out
        })
    }

    /// Positions of a group's members (participants or managers), in order.
    pub(crate) fn group_members(&self, group: u32, managers: bool) -> Arc<Vec<u64>> {
        let data = self.read();
        let mut index = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let lists = match &*index {
            Some((version, lists)) if *version == data.version => lists.clone(),
            _ => {
                let now = Instant::now();
                let mut lists = vec![[Vec::new(), Vec::new()]; data.groups.len()];
                for (p, u) in data.users.iter().enumerate() {
                    if u.deleted {
                        continue;
                    }
                    for (g, m) in u.visible_groups(now) {
                        let list = &mut lists[g as usize][usize::from(m)];
                        // A user listed twice in a group (a membership and a pending removal
                        // of the same one) counts once, as the per-group filter did.
                        if list.last() != Some(&(p as u64)) {
                            list.push(p as u64);
                        }
                    }
                }
                let lists: Members = Arc::new(
                    lists
                        .into_iter()
                        .map(|[a, b]| [Arc::new(a), Arc::new(b)])
                        .collect(),
                );
                *index = Some((data.version, lists.clone()));
                lists
            }
        };
        lists
            .get(group as usize)
            .map(|l| l[usize::from(managers)].clone())
            .unwrap_or_default()
    }

    pub(crate) fn record_mutation(&self, mutation: &str, target: &str, applied: bool) {
        let key = format!("{mutation}:{target}");
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if applied {
            *c.applied.entry(key.clone()).or_default() += 1;
        }
        *c.mutations.entry(key).or_default() += 1;
    }

    pub(crate) fn record_notification(&self, sent: bool) {
        if sent {
            self.counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .notifications += 1;
        }
    }

    /// Log a change and queue its webhook deliveries. Call without holding the data lock.
    pub(crate) fn record_change(&self, change: Change) {
        self.queue_webhooks(&change);
        let mut log = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() > 100_000 {
            log.drain(..50_000);
        }
        log.push((Utc::now(), change));
    }

    fn queue_webhooks(&self, change: &Change) {
        let Some(config) = &self.config.webhook else {
            return;
        };
        let events = webhooks::events(&self.read(), change);
        for (name, payload) in events {
            if config.events.is_empty() || config.events.iter().any(|e| e == name) {
                self.queue_webhook(webhooks::body(name, payload));
            }
        }
    }

    /// Hand one body to the delivery task; false when webhooks are off.
    fn queue_webhook(&self, body: axum::body::Bytes) -> bool {
        let queue = self
            .webhook_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(queue) = queue else {
            return false;
        };
        self.count(|c| c.webhooks_queued += 1);
        queue.send(body).is_ok()
    }

    fn redeliver_webhooks(&self) -> usize {
        let bodies = self
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        bodies
            .into_iter()
            .filter(|b| self.queue_webhook(b.clone()))
            .count()
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The `shift_pages` fault: before a later page of users is served, delete the first
    /// active user and create one at the end (if the fault still has shifts left).
    fn shift_before_page(&self) {
        {
            let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
            if faults.shift_pages == 0 {
                return;
            }
            faults.shift_pages -= 1;
        }
        let mut data = self.write();
        if let Some(user) = data.users.iter_mut().find(|u| !u.deleted && !u.archived) {
            user.deleted = true;
        }
        let seq = data.users.len();
        data.create_user(
            format!("Shifted {seq}"),
            Some(format!("shifted{seq}@example.com")),
            Some(format!("shifted-{seq}")),
        );
        data.version += 1;
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Sim {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    webhook_task: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Generate the organisation and serve it on `config.addr` (loopback, port 0 by default).
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        let seed = Seed {
            users: config.users,
            seed: config.seed,
            anchor: config.anchor.unwrap_or_else(Utc::now),
        };
        let data = tokio::task::spawn_blocking(move || Dataset::generate(&seed))
            .await
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let webhook = config.webhook.clone();
        let state = Arc::new(State::new(config, data));
        let webhook_task = webhook.map(|webhook| {
            let (queue, rx) = tokio::sync::mpsc::unbounded_channel();
            *state
                .webhook_queue
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(queue);
            tokio::spawn(webhooks::run(state.clone(), webhook, rx))
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let app = server::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sim {
            state,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            webhook_task,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:8700` (endpoints `/oauth/token/` and `/graphql/`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn client_id(&self) -> &str {
        &self.state.config.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.state.config.client_secret
    }

    /// The API settings of a client of this simulator, with its own credentials, every scope
    /// and the default HTTP settings (the benchmarks' clients and the driver's tests).
    pub fn api_config(&self) -> crate::config::ApiConfig {
        use crate::config::{ApiConfig, DEFAULT_CREDENTIALS, DEFAULT_SCOPE, HttpSettings, Secret};
        ApiConfig {
            base_url: crate::config::parse_base_url(&self.url())
                .expect("the simulator's own URL is a base URL"),
            client_id: self.client_id().into(),
            client_secret: Secret::new(self.client_secret()),
            scope: DEFAULT_SCOPE.into(),
            http: HttpSettings::default(),
            credentials: DEFAULT_CREDENTIALS.into(),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.state.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub fn counters(&self) -> Counters {
        self.state
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn reset_counters(&self) {
        self.state.count(|c| *c = Counters::default());
    }

    /// Expire every issued token now (the next request gets the configured auth error).
    pub fn expire_tokens(&self) {
        self.state
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A copy of the current organisation, for comparisons.
    pub fn data(&self) -> Dataset {
        self.state.read().clone()
    }

    /// Run `f` over the current organisation without copying it.
    pub fn with_data<T>(&self, f: impl FnOnce(&Dataset) -> T) -> T {
        f(&self.state.read())
    }

    /// Change the organisation directly (test set-up), as an admin in Pluvo's UI would.
    pub fn edit<T>(&self, f: impl FnOnce(&mut Dataset) -> T) -> T {
        let mut data = self.state.write();
        let out = f(&mut data);
        data.version += 1;
        out
    }

    /// Serve another organisation at the same URL from now on (a new tenant, staging, a
    /// gateway routing to the wrong backend): a freshly generated dataset with its own ids.
    pub fn replace_organisation(&self, seed: Seed) {
        let mut data = Dataset::generate(&seed);
        let mut current = self.state.write();
        data.version = current.version + 1;
        *current = data;
    }

    /// Advance the organisation by `changes` random edits (a churn tick).
    pub fn tick(&self, changes: usize) -> Vec<Change> {
        let out = self.state.write().tick(changes, Utc::now());
        for c in &out {
            self.state.record_change(c.clone());
        }
        out
    }

    /// Changes made so far by ticks and mutations, with their time.
    pub fn changes(&self) -> Vec<(DateTime<Utc>, Change)> {
        self.state
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Deliver every body answered 2xx so far once more, byte for byte (with a new salt), as
    /// Pluvo does when it did not see an answer in time. Returns how many were queued.
    pub fn redeliver_webhooks(&self) -> usize {
        self.state.redeliver_webhooks()
    }

    /// Webhook bodies answered 2xx, in delivery order (redeliveries included).
    pub fn webhook_bodies(&self) -> Vec<axum::body::Bytes> {
        self.state
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until every queued webhook was delivered or given up (at most `limit`); returns the
    /// counters at that point.
    pub async fn webhooks_settled(&self, limit: Duration) -> Counters {
        let until = Instant::now() + limit;
        loop {
            let counters = self.counters();
            if counters.webhooks_settled() || Instant::now() > until {
                return counters;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop serving and wait for the server task to end.
    pub async fn stop(mut self) {
        if let Some(task) = self.webhook_task.take() {
            task.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(task) = self.webhook_task.take() {
            task.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The SDL the simulator serves (the contract file must equal it).
pub fn sdl() -> String {
    let data = Dataset::generate(&Seed {
        users: 0,
        seed: 0,
        anchor: Utc::now(),
    });
    schema::build(Arc::new(State::new(SimConfig::default(), data))).sdl()
}
