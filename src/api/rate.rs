//! Adaptive slow-down on HTTP 429: AIMD on the permitted request rate.
//!
//! Pluvo publishes "standard rate limits per API client" without numbers (pluvo-api.md), so
//! the limit is learnt: until the first 429 requests are paced only by the concurrency limit.
//! A 429 cuts the permitted rate to 70% of what was being sent (multiplicative decrease, at
//! most once per congestion episode: 429s for requests sent before the cut are ignored) and
//! holds every send until its `Retry-After` has passed (the server's window must drain, or
//! each paced send would be refused again and cut the rate to nothing). Every success while
//! the rate is binding adds about one request/s per second — 2% of the rate per second at
//! higher rates, so a 500 rps limit is regained in seconds, not minutes (additive increase).
//! A long job therefore oscillates just under the server's limit instead of hammering it,
//! like TCP's congestion window.
//!
//! Pure bookkeeping: callers pass `Instant`s and sleep themselves, so tests need no clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fraction of the current rate kept after a 429.
const DECREASE: f64 = 0.7;
/// Requests/s gained per second of successes at the permitted rate (at least).
const INCREASE_PER_SEC: f64 = 1.0;
/// Share of the rate gained per second of successes, when that is more.
const INCREASE_SHARE: f64 = 0.02;
/// Never pace slower than this (requests/s).
const MIN_RATE: f64 = 0.2;
/// The send rate is measured over this window.
const WINDOW: Duration = Duration::from_secs(1);
/// The permitted rate only grows while sends use at least this share of it.
const BINDING: f64 = 0.8;

/// Shared by all requests of one client.
#[derive(Debug)]
pub(crate) struct RateGate {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Permitted requests/s; `None` until the first 429.
    rate: Option<f64>,
    /// Earliest instant of the next send slot when paced.
    next: Instant,
    /// When the rate was last cut.
    last_cut: Option<Instant>,
    /// Send instants within the last `WINDOW`, to measure the actual rate.
    recent: VecDeque<Instant>,
    created: Instant,
}

impl RateGate {
    pub(crate) fn new(now: Instant) -> RateGate {
        RateGate {
            state: Mutex::new(State {
                rate: None,
                next: now,
                last_cut: None,
                recent: VecDeque::new(),
                created: now,
            }),
        }
    }

    /// Reserve a send slot: the instant at which the caller may send (`now` when unpaced).
    pub(crate) fn reserve(&self, now: Instant) -> Instant {
        let mut s = self.lock();
        s.forget_before(now);
        let at = match s.rate {
            None => now,
            Some(rate) => {
                let at = s.next.max(now);
                s.next = at + Duration::from_secs_f64(1.0 / rate);
                at
            }
        };
        s.recent.push_back(at);
        at
    }

    /// A request succeeded: grow the permitted rate if it is what limits us.
    pub(crate) fn on_success(&self, now: Instant) {
        let mut s = self.lock();
        s.forget_before(now);
        if let Some(rate) = s.rate
            && s.measured(now) >= BINDING * rate
        {
            // Per success; at `rate` successes per second this adds the step per second.
            let step = INCREASE_PER_SEC.max(rate * INCREASE_SHARE);
            s.rate = Some(rate + step / rate);
        }
    }

    /// A request sent at `sent_at` got a 429 (with `Retry-After` when given). Holds all sends
    /// until then; returns the new rate when it was cut.
    pub(crate) fn on_throttle(
        &self,
        sent_at: Instant,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> Option<f64> {
        let mut s = self.lock();
        if let Some(after) = retry_after {
            s.next = s.next.max(now + after);
        }
        if s.last_cut.is_some_and(|cut| sent_at < cut) {
            return None; // already slowed down for this episode
        }
        s.forget_before(now);
        let measured = s.measured(now);
        let base = match s.rate {
            Some(rate) if measured > 0.0 => rate.min(measured),
            Some(rate) => rate,
            None => measured,
        };
        let rate = (base * DECREASE).max(MIN_RATE);
        s.rate = Some(rate);
        s.last_cut = Some(now);
        s.next = s.next.max(now);
        Some(rate)
    }

    /// The permitted rate, `None` while unlimited.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one assignment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Sends per second over the last window (or since creation, if younger).
    fn measured(&self, now: Instant) -> f64 {
        let span = now
            .saturating_duration_since(self.created)
            .clamp(Duration::from_millis(100), WINDOW);
        self.recent.len() as f64 / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unpaced_until_the_first_429() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        for i in 0..100 {
            assert_eq!(gate.reserve(t0 + ms(i)), t0 + ms(i));
        }
        assert_eq!(gate.rate(), None);
    }

    #[test]
    fn retry_after_holds_every_send() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        gate.reserve(t0);
        gate.on_throttle(t0, t0 + ms(10), Some(Duration::from_secs(1)));
        assert!(gate.reserve(t0 + ms(20)) >= t0 + ms(1010));
    }

    #[test]
    fn a_429_cuts_to_seventy_percent_of_the_measured_rate_once_per_episode() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        // 100 requests in the first second = 100 rps.
        for i in 0..100 {
            gate.reserve(t0 + ms(i * 10));
        }
        let now = t0 + ms(999);
        let cut = gate.on_throttle(t0 + ms(990), now, None).unwrap();
        assert!((cut - 70.0).abs() < 1.0, "{cut}");
        // Another 429 for a request sent before the cut: same episode, no second cut.
        assert_eq!(gate.on_throttle(t0 + ms(995), now + ms(5), None), None);
        // A 429 for a request sent after the cut: cut again.
        let again = gate.on_throttle(now + ms(10), now + ms(20), None).unwrap();
        assert!(again < cut, "{again} < {cut}");
        assert!(gate.on_throttle(now + ms(30), now + ms(40), None).unwrap() >= MIN_RATE);
    }

    #[test]
    fn paced_slots_are_spaced_by_the_rate() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        for i in 0..20 {
            gate.reserve(t0 + ms(i * 50)); // 20 rps measured
        }
        let rate = gate.on_throttle(t0 + ms(960), t0 + ms(1000), None).unwrap();
        assert!((rate - 14.0).abs() < 0.5, "{rate}");
        let now = t0 + ms(1000);
        let a = gate.reserve(now);
        let b = gate.reserve(now);
        let c = gate.reserve(now);
        assert_eq!(a, now);
        let gap = Duration::from_secs_f64(1.0 / rate);
        assert_eq!(b - a, gap);
        assert_eq!(c - b, gap);
    }

    #[test]
    fn additive_increase_only_while_the_rate_binds() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        for i in 0..10 {
            gate.reserve(t0 + ms(i * 100));
        }
        let start = gate.on_throttle(t0 + ms(950), t0 + ms(1000), None).unwrap(); // 7 rps
        // Send at the permitted rate for 5 s: the rate climbs by about 1 rps per second.
        let mut now = t0 + ms(1000);
        let end = now + Duration::from_secs(5);
        while now < end {
            let at = gate.reserve(now);
            gate.on_success(at);
            now = at;
        }
        let grown = gate.rate().unwrap();
        assert!(
            grown > start + 3.0 && grown < start + 7.0,
            "{start} → {grown}"
        );
        // Idle (app-limited): successes far apart do not raise the rate.
        let later = now + Duration::from_secs(10);
        gate.reserve(later);
        gate.on_success(later);
        assert_eq!(gate.rate().unwrap(), grown);
    }

    #[test]
    fn aimd_settles_near_a_simulated_server_limit() {
        // A server allowing 50 requests per rolling second; clients want to go as fast as
        // possible. After a warm-up the permitted rate must oscillate near the limit.
        let limit = 50usize;
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        let mut accepted: VecDeque<Instant> = VecDeque::new();
        let mut now = t0;
        let mut rates = Vec::new();
        let mut throttled = 0;
        while now < t0 + Duration::from_secs(60) {
            let at = gate.reserve(now);
            now = at.max(now + ms(1)); // a client sending at most every 1 ms
            while accepted
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                accepted.pop_front();
            }
            if accepted.len() < limit {
                accepted.push_back(now);
                gate.on_success(now);
            } else {
                throttled += 1;
                // Retry-After: when the oldest accepted request leaves the window.
                let after = Duration::from_secs(1) - now.duration_since(accepted[0]);
                gate.on_throttle(now, now, Some(after));
            }
            if now > t0 + Duration::from_secs(20) {
                rates.push(gate.rate().unwrap());
            }
        }
        let avg = rates.iter().sum::<f64>() / rates.len() as f64;
        assert!((35.0..=55.0).contains(&avg), "average permitted rate {avg}");
        let min = rates.iter().cloned().fold(f64::MAX, f64::min);
        assert!(min > 20.0, "rate collapsed to {min}");
        assert!(throttled < 100, "{throttled} throttled sends in 60 s");
    }
}
