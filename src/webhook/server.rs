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
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::StreamExt;
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
    /// Timeouts, the connection cap and the replay window.
    pub limits: Limits,
}

/// What the receiver allows a client; the defaults hold against slow or idle clients and
/// old replays without troubling Pluvo (which waits 30 s for an answer and retries for
/// days, pluvo-api.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a request's line and headers; also the longest an idle keep-alive or
    /// half-open connection is kept before it is dropped.
    pub header_timeout: Duration,
    /// Time for a request's whole body once its headers are in (answered 408 after it).
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue until one ends
    /// (at the latest after `header_timeout`).
    pub max_connections: usize,
    /// On stop: how long requests in flight may take before their connections are cut.
    pub shutdown_timeout: Duration,
    /// Deliveries whose `sentDate` is older than this are refused (a replay of a body
    /// that is no longer in `webhook_events`); `None`: no limit.
    pub max_age: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
            // Pluvo retries a failed delivery up to 72 times with backoff: about three
            // days if the backoff stops at an hour. A week keeps every honest retry.
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
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
    /// Refused with 400: validly signed, but `sentDate` older than the replay window.
    pub stale: u64,
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
    stale: AtomicU64,
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
            stale: get(&self.stale),
            failed: get(&self.failed),
            refreshes: get(&self.refreshes),
            refresh_failures: get(&self.refresh_failures),
        }
    }
}

#[derive(Clone)]
struct App {
    key: Secret,
    max_body: usize,
    limits: Limits,
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
            max_body: options.max_body,
            limits: options.limits,
            jobs,
            counts: counts.clone(),
        };
        let limits = options.limits;
        let router = Router::new()
            .route(&options.path, post(receive))
            .with_state(app);
        let (stop, stopped) = oneshot::channel();
        let serving = tokio::spawn(serve(listener, router, limits, stopped));
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

async fn receive(State(app): State<App>, headers: HeaderMap, body: Body) -> (StatusCode, String) {
    let body = match read_body(&headers, body, app.max_body, app.limits.body_timeout).await {
        Ok(body) => body,
        Err((status, why)) => {
            // Pluvo retries: say in the log which limit to raise if its events are this large.
            tracing::warn!(
                reason = %why,
                "Webhook refused ({}): raise --max-body (or --body-timeout-secs) if Pluvo's events need it.",
                status.as_u16()
            );
            return (status, format!("{why}\n"));
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
    if let (Some(max_age), Some(sent)) = (app.limits.max_age, event.sent_date) {
        let age = chrono::Utc::now().signed_duration_since(sent);
        if age.to_std().is_ok_and(|age| age > max_age) {
            app.counts.stale.fetch_add(1, Ordering::Relaxed);
            let hours = max_age.as_secs() / 3600;
            tracing::warn!(
                event = %event.event,
                sent_date = %sent.to_rfc3339(),
                "Webhook refused (400): sentDate is older than the replay window ({hours} h, \
                 --max-age-hours); a replayed or very late delivery, not stored."
            );
            return (
                StatusCode::BAD_REQUEST,
                format!("`sentDate` is older than {hours} hours: not stored (replay window)\n"),
            );
        }
    }
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

/// The body, at most `max` bytes, all of it within `timeout` of the headers: 413 past the
/// size (by `Content-Length` before reading, or while reading), 408 past the time.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("length limit exceeded: the body is larger than {max} bytes (--max-body)"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {e}"),
                )
            })?;
            if buf.len() + chunk.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s (--body-timeout-secs)",
                timeout.as_secs_f64()
            ),
        )),
    }
}

/// Accept and serve HTTP/1.1 connections until `stop` fires, then let each finish its
/// request in flight, for at most `limits.shutdown_timeout`.
///
/// Not `axum::serve`: it has no header timeout and no connection cap, and its graceful
/// shutdown waits for every connection, so one client sending a byte a minute held the
/// receiver open for ever. Here hyper's `header_read_timeout` closes a connection whose
/// headers (or, on keep-alive, next request) do not arrive in time, which also drops idle
/// and half-open connections; a semaphore caps the connections; the deadline cuts the rest.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (stopping, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, or a connection reset before it was accepted:
                // not the receiver's end. Pause briefly so a full fd table does not spin.
                Err(err) => {
                    tracing::warn!(error = %err, "Accepting a webhook connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connections so the set does not grow with every one served.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "Connections still open at the shutdown deadline were closed."
        );
        connections.abort_all();
    }
    Ok(())
}
