//! The HTTP receiver: one POST route that verifies (401), decodes (400), hands the event to the
//! writer and answers 200 once it is committed (500 if the write failed, so Pluvo retries).
//! Bodies over the limit are refused with 413 before they are read whole.
//!
//! [`Receiver`] is the handle: `start` binds and serves, `stop` shuts down gracefully: no new
//! connections, in-flight requests finish (their events are committed and answered), then the
//! writer drains and the warehouse is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::refresh::{self, Refresh};
use super::writer::{self, Job, Work};
use super::{Error, event, verify};
use crate::config::Secret;
use crate::store::Warehouse;

/// How the receiver listens.
#[derive(Clone)]
pub struct Options {
    pub bind: SocketAddr,
    /// URL path of the endpoint, e.g. `/pluvo/webhook`.
    pub path: String,
    pub key: Secret,
    /// Largest body accepted, in bytes.
    pub max_body: usize,
    /// Refresh the rows that events name (`--refresh`).
    pub refresh: Option<Refresh>,
}

/// What the receiver answered, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// New events stored.
    pub stored: u64,
    /// Valid deliveries whose body was stored before (redeliveries), answered 200.
    pub duplicates: u64,
    /// Refused with 401 (signature missing or wrong).
    pub unauthorized: u64,
    /// Refused with 400 (not a JSON object with an `event`).
    pub malformed: u64,
    /// Answered 500/503 (the write failed or the receiver was stopping).
    pub failed: u64,
    /// Targeted refreshes merged (`--refresh`).
    pub refreshes: u64,
    /// Targeted refreshes that failed (the next sync catches up).
    pub refresh_failures: u64,
}

#[derive(Default)]
pub(super) struct Counts {
    stored: AtomicU64,
    duplicates: AtomicU64,
    unauthorized: AtomicU64,
    malformed: AtomicU64,
    failed: AtomicU64,
    pub(super) refreshes: AtomicU64,
    pub(super) refresh_failures: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            stored: get(&self.stored),
            duplicates: get(&self.duplicates),
            unauthorized: get(&self.unauthorized),
            malformed: get(&self.malformed),
            failed: get(&self.failed),
            refreshes: get(&self.refreshes),
            refresh_failures: get(&self.refresh_failures),
        }
    }
}

#[derive(Clone)]
struct App {
    key: Secret,
    jobs: mpsc::Sender<Work>,
    counts: Arc<Counts>,
}

/// A running receiver.
pub struct Receiver {
    addr: SocketAddr,
    path: String,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_refreshing: watch::Sender<bool>,
    refreshing: Option<tokio::task::JoinHandle<()>>,
    writing: tokio::task::JoinHandle<Warehouse>,
}

impl Receiver {
    /// Install the typed views, bind `options.bind` and serve, writing into `warehouse`
    /// (held until [`Receiver::stop`]).
    pub async fn start(mut warehouse: Warehouse, options: Options) -> Result<Receiver, Error> {
        warehouse.install_webhook_views()?;
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: options.bind,
                cause: source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.bind,
            cause: source,
        })?;
        let (jobs, queue) = mpsc::channel(writer::MAX_BATCH * 4);
        let counts = Arc::new(Counts::default());
        let (stop_refreshing, stopped_refreshing) = watch::channel(false);
        let (targets, refreshing) = match options.refresh {
            Some(refresh) => {
                let (targets, queue) = mpsc::unbounded_channel();
                let task = refresh::run(
                    refresh,
                    queue,
                    jobs.clone(),
                    stopped_refreshing,
                    counts.clone(),
                );
                (Some(targets), Some(tokio::spawn(task)))
            }
            None => (None, None),
        };
        let writing = tokio::task::spawn_blocking(move || writer::run(warehouse, queue, targets));
        let app = App {
            key: options.key,
            jobs,
            counts: counts.clone(),
        };
        let router = Router::new()
            .route(&options.path, post(receive))
            .layer(DefaultBodyLimit::max(options.max_body))
            .with_state(app);
        let (stop, stopped) = oneshot::channel();
        let serving = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Receiver {
            addr,
            path: options.path,
            counts,
            stop: Some(stop),
            serving,
            stop_refreshing,
            refreshing,
            writing,
        })
    }

    /// The endpoint's URL, e.g. `http://127.0.0.1:8787/pluvo/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    pub fn stats(&self) -> Stats {
        self.counts.snapshot()
    }

    /// Stop accepting, let in-flight requests finish (committed and answered), drain the
    /// writer and close the warehouse. Returns what was answered.
    pub async fn stop(mut self) -> Result<Stats, Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.serving).await;
        // Every answered event has handed its targets over: refresh what is pending, then stop.
        let _ = self.stop_refreshing.send(true);
        if let Some(refreshing) = self.refreshing.take() {
            refreshing.await.map_err(|e| Error::Task(e.to_string()))?;
        }
        // The router and the refresh task held the last senders, so the writer finishes the
        // work already queued and returns.
        let warehouse = (&mut self.writing)
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || warehouse.close())
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        served
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(Error::Serve)?;
        Ok(self.counts.snapshot())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn receive(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, String) {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            // Pluvo retries: say in the log which limit to raise if its events are this large.
            tracing::warn!(
                reason = %rejection.body_text(),
                "Webhook refused ({}): raise --max-body if Pluvo's events are this large.",
                status.as_u16()
            );
            return (status, format!("{}\n", rejection.body_text()));
        }
    };
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
    if let Err(why) = verify::verify(
        app.key.expose().as_bytes(),
        header("x-signature-salt"),
        header("x-signature"),
        &body,
    ) {
        app.counts.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            reason = %why,
            bytes = body.len(),
            "Webhook refused (401): check that PLUVO_WEBHOOK_KEY is the key in Pluvo's webhook settings."
        );
        return (
            StatusCode::UNAUTHORIZED,
            format!("invalid signature: {why}\n"),
        );
    }
    let event = match event::decode(&body) {
        Ok(e) => e,
        Err(why) => {
            app.counts.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "Webhook refused (400): not a Pluvo event; nothing was stored, the sender must fix it.");
            return (StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    };
    let (done, answer) = oneshot::channel();
    let job = Job {
        event,
        received_at: chrono::Utc::now(),
        done,
    };
    if app.jobs.send(Work::Store(job)).await.is_err() {
        app.counts.failed.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiver is stopping\n".into(),
        );
    }
    match answer.await {
        Ok(Ok(true)) => {
            app.counts.stored.fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, "stored\n".into())
        }
        Ok(Ok(false)) => {
            app.counts.duplicates.fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, "already stored\n".into())
        }
        Ok(Err(_)) | Err(_) => {
            app.counts.failed.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "storing the event failed; retry\n".into(),
            )
        }
    }
}
