//! How many requests the client keeps in flight: a fixed number (`--concurrency N`), or one
//! learnt from the server's answer times (`--concurrency auto`).
//!
//! The adaptive limit works like TCP Vegas (and Netflix's `VegasLimit`): the shortest answer
//! time seen recently is the server's time without queueing (`base`); a round of answers (as
//! many as the limit) whose mean time is `rtt` means about `limit × (1 − base / rtt)`
//! requests were waiting at the server. Few waiting: the limit grows by one per round; many:
//! it shrinks by one. A 429 or a transient server error (a 5xx but 501/505, or a 408) halves
//! it at once (once per round), and the rate gate (`rate.rs`) paces what is left. The limit
//! stays within `1..=ceiling`, and grows only while it is what holds the client back (at
//! least half the permits in use), so an idle or slow caller does not inflate it.
//!
//! Fairness: permits come from a FIFO semaphore, so the oldest waiting page is served first
//! (the offset pager emits pages in order; a late page 1 would stall all the others).
//! Shrinking forgets permits as they are returned instead of taking them from waiters.
//!
//! Pure bookkeeping apart from the semaphore: callers pass answer times and `Instant`s, so
//! the tests need no server and no clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The limit `--concurrency auto` starts at (today's fixed default).
pub const AUTO_START: usize = 4;
/// The most requests in flight `--concurrency auto` ever allows.
pub const AUTO_CEILING: usize = 32;
/// Queued requests (estimated) below which a round grows the limit ...
const ALPHA: f64 = 2.0;
/// ... and above which it shrinks it. In between it stays: some queueing keeps the server
/// busy without making answers slower.
const BETA: f64 = 4.0;
/// `base` is the shortest answer time of the last two windows of this length, so it follows
/// a server that became slower for good (another client, a bigger organisation).
const BASE_WINDOW: Duration = Duration::from_secs(10);

/// `--concurrency`: a fixed number of requests in flight, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Fixed(usize),
    /// Learnt from answer times and 429s, from [`AUTO_START`] up to [`AUTO_CEILING`].
    Auto,
}

impl std::str::FromStr for Concurrency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Concurrency::Auto);
        }
        match text.parse::<usize>() {
            Ok(n @ 1..=AUTO_CEILING) => Ok(Concurrency::Fixed(n)),
            _ => Err(format!(
                "`{text}` is not `auto` or a number of requests from 1 to {AUTO_CEILING}"
            )),
        }
    }
}

impl std::fmt::Display for Concurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Concurrency::Fixed(n) => n.fmt(f),
            Concurrency::Auto => f.write_str("auto"),
        }
    }
}

/// The concurrency limit of one client (shared by its clones).
#[derive(Debug)]
pub(crate) struct Limiter {
    permits: Semaphore,
    adaptive: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    ceiling: usize,
    in_flight: usize,
    /// Permits to forget as they come back (the limit shrank below what is handed out).
    owed: usize,
    /// The current round: answers, summed answer time, and whether it was capacity-bound.
    round: usize,
    round_sum: Duration,
    round_busy: bool,
    round_throttled: bool,
    /// Shortest answer time of the current and the previous window.
    base_now: Option<Duration>,
    base_prev: Option<Duration>,
    window_start: Instant,
}

/// A request's slot; give it back by dropping it.
pub(crate) struct Permit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.in_flight -= 1;
        if s.owed > 0 {
            s.owed -= 1;
            if let Some(p) = self.permit.take() {
                p.forget();
            }
        }
    }
}

impl Limiter {
    /// A fixed limit of `n` requests.
    pub(crate) fn fixed(n: usize) -> Limiter {
        Limiter::new(n.max(1), n.max(1), false, Instant::now())
    }

    /// An adaptive limit from `start` up to `ceiling`.
    pub(crate) fn adaptive(start: usize, ceiling: usize, now: Instant) -> Limiter {
        let ceiling = ceiling.max(1);
        Limiter::new(start.clamp(1, ceiling), ceiling, true, now)
    }

    fn new(limit: usize, ceiling: usize, adaptive: bool, now: Instant) -> Limiter {
        Limiter {
            permits: Semaphore::new(limit),
            adaptive,
            state: Mutex::new(State {
                limit,
                ceiling,
                in_flight: 0,
                owed: 0,
                round: 0,
                round_sum: Duration::ZERO,
                round_busy: false,
                round_throttled: false,
                base_now: None,
                base_prev: None,
                window_start: now,
            }),
        }
    }

    /// Wait for a slot (first come, first served).
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut s = self.lock();
        s.in_flight += 1;
        let busy = 2 * s.in_flight >= s.limit;
        s.round_busy |= busy;
        drop(s);
        Permit {
            permit: Some(permit),
            limiter: self,
        }
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.lock().limit
    }

    /// A request was answered (not 429) after `rtt` (sending to the end of the body).
    pub(crate) fn on_answer(&self, rtt: Duration, now: Instant) {
        if !self.adaptive {
            return;
        }
        let mut s = self.lock();
        if now.saturating_duration_since(s.window_start) >= BASE_WINDOW {
            s.base_prev = s.base_now.take();
            s.window_start = now;
        }
        s.base_now = Some(s.base_now.map_or(rtt, |b| b.min(rtt)));
        s.round += 1;
        s.round_sum += rtt;
        if s.round < s.limit {
            return;
        }
        // One round of answers: one step.
        let mean = s.round_sum / s.round as u32;
        let base = [s.base_now, s.base_prev]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(mean);
        let (busy, throttled) = (s.round_busy, s.round_throttled);
        s.round = 0;
        s.round_sum = Duration::ZERO;
        s.round_busy = false;
        s.round_throttled = false;
        if throttled {
            return; // already cut for this round
        }
        let queued = s.limit as f64 * (1.0 - base.as_secs_f64() / mean.as_secs_f64().max(1e-9));
        if queued < ALPHA && busy && s.limit < s.ceiling {
            self.grow(&mut s);
        } else if queued > BETA && s.limit > 1 {
            self.shrink(&mut s, 1);
        }
    }

    /// A request was refused with 429, or failed with a transient server error: halve the
    /// limit (once per round).
    pub(crate) fn on_throttle(&self) {
        if !self.adaptive {
            return;
        }
        let mut s = self.lock();
        if s.round_throttled {
            return;
        }
        s.round_throttled = true;
        let by = s.limit - (s.limit / 2).max(1);
        self.shrink(&mut s, by);
    }

    fn grow(&self, s: &mut State) {
        s.limit += 1;
        if s.owed > 0 {
            s.owed -= 1; // a permit about to be forgotten is kept instead
        } else {
            self.permits.add_permits(1);
        }
    }

    fn shrink(&self, s: &mut State, by: usize) {
        let by = by.min(s.limit - 1);
        s.limit -= by;
        // Idle permits go at once; the others as they come back.
        let idle = self.permits.forget_permits(by);
        s.owed += by - idle;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few assignments; a panicked holder leaves a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `rounds` rounds of answers taking `rtt`, with every permit in use (a busy client).
    async fn busy_rounds(l: &Limiter, rounds: usize, rtt: Duration, now: &mut Instant) {
        for _ in 0..rounds {
            let n = l.limit();
            let mut held = Vec::new();
            for _ in 0..n {
                held.push(l.acquire().await);
            }
            for _ in 0..n {
                *now += ms(1);
                l.on_answer(rtt, *now);
            }
        }
    }

    #[test]
    fn concurrency_parses_auto_and_a_range() {
        assert_eq!("auto".parse(), Ok(Concurrency::Auto));
        assert_eq!("AUTO".parse(), Ok(Concurrency::Auto));
        assert_eq!("8".parse(), Ok(Concurrency::Fixed(8)));
        for bad in ["0", "33", "-1", "lots", ""] {
            let err = bad.parse::<Concurrency>().unwrap_err();
            assert!(
                err.contains("`auto` or a number of requests from 1 to 32"),
                "{err}"
            );
        }
        assert_eq!(Concurrency::Auto.to_string(), "auto");
    }

    #[tokio::test]
    async fn grows_to_the_ceiling_while_answer_times_stay_flat() {
        let mut now = Instant::now();
        let l = Limiter::adaptive(4, 16, now);
        busy_rounds(&l, 40, ms(20), &mut now).await;
        assert_eq!(l.limit(), 16);
        // The semaphore follows: 16 permits can be held at once.
        let held: Vec<_> = futures_util::future::join_all((0..16).map(|_| l.acquire())).await;
        assert_eq!(held.len(), 16);
    }

    #[tokio::test]
    async fn a_fixed_limit_never_moves() {
        let mut now = Instant::now();
        let l = Limiter::fixed(4);
        busy_rounds(&l, 20, ms(20), &mut now).await;
        l.on_throttle();
        assert_eq!(l.limit(), 4);
    }

    #[tokio::test]
    async fn an_idle_client_does_not_grow_the_limit() {
        let mut now = Instant::now();
        let l = Limiter::adaptive(8, 32, now);
        for _ in 0..100 {
            let _one = l.acquire().await; // one request at a time: the limit does not bind
            now += ms(20);
            l.on_answer(ms(20), now);
        }
        assert_eq!(l.limit(), 8);
    }

    #[tokio::test]
    async fn rising_answer_times_shrink_the_limit() {
        let mut now = Instant::now();
        let l = Limiter::adaptive(4, 32, now);
        busy_rounds(&l, 20, ms(20), &mut now).await;
        let grown = l.limit();
        assert!(grown > 10, "{grown}");
        // The server queues: answers take twice as long, so about half the requests wait.
        busy_rounds(&l, 10, ms(40), &mut now).await;
        let shrunk = l.limit();
        assert!(shrunk < grown, "{grown} -> {shrunk}");
        // Until few wait: with the limit at n, n × (1 − 20/40) ≤ BETA, so n ≤ 8.
        busy_rounds(&l, 30, ms(40), &mut now).await;
        assert!(l.limit() <= 8, "{}", l.limit());
    }

    #[tokio::test]
    async fn a_429_halves_the_limit_once_per_round_and_permits_follow() {
        let mut now = Instant::now();
        let l = Limiter::adaptive(4, 32, now);
        busy_rounds(&l, 12, ms(20), &mut now).await;
        let before = l.limit();
        l.on_throttle();
        l.on_throttle(); // the same round: no second cut
        assert_eq!(l.limit(), before / 2);
        // Only `before / 2` permits can be held now.
        let mut held = Vec::new();
        for _ in 0..before / 2 {
            held.push(l.acquire().await);
        }
        let more = tokio::time::timeout(ms(20), l.acquire()).await;
        assert!(more.is_err(), "a permit beyond the halved limit");
    }

    #[tokio::test]
    async fn permits_in_use_when_the_limit_shrinks_are_forgotten_on_return() {
        let now = Instant::now();
        let l = Limiter::adaptive(4, 32, now);
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| l.acquire())).await;
        l.on_throttle(); // 4 -> 2 while all 4 are out
        drop(held);
        let two: Vec<_> = futures_util::future::join_all((0..2).map(|_| l.acquire())).await;
        assert_eq!(two.len(), 2);
        assert!(tokio::time::timeout(ms(20), l.acquire()).await.is_err());
    }
}
