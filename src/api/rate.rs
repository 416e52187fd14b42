//! Adaptive slow-down on HTTP 429: AIMD on the permitted request rate.
//!
//! Pluvo publishes "standard rate limits per API client" without numbers (pluvo-api.md), so
//! the limit is learnt: until the first 429 requests are paced only by the concurrency limit.
//! A 429 cuts the permitted rate to 70% of what got through (the successful answers of the
//! last second; of what was sent, when that is less or nothing got through: multiplicative
//! decrease) and holds every send until its `Retry-After` has passed (the server's window
//! must drain, or each paced send would be refused again and cut the rate to nothing). Every success while
//! the rate is binding adds about one request/s per second — 2% of the rate per second at
//! higher rates, so a 500 rps limit is regained in seconds, not minutes (additive increase).
//! A long job therefore oscillates just under the server's limit instead of hammering it,
//! like TCP's congestion window.
//!
//! One cut per congestion episode: every cut starts a new *epoch*, a request carries the epoch
//! it was admitted in, and a 429 for a request of an older epoch does not cut again. A request
//! that waited for its slot while a cut happened is not sent on the old schedule: it asks for
//! a new slot ([`RateGate::admit`] says no).
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

/// A reserved send slot: send at `at` if [`RateGate::admit`] agrees then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub at: Instant,
    pub epoch: u64,
}

#[derive(Debug)]
struct State {
    /// Permitted requests/s; `None` until the first 429.
    rate: Option<f64>,
    /// Earliest instant of the next send slot when paced.
    next: Instant,
    /// No send before this (the last `Retry-After`).
    hold: Instant,
    /// Number of cuts so far.
    epoch: u64,
    /// Admitted send instants within the last `WINDOW`, to measure the actual rate.
    recent: VecDeque<Instant>,
    /// Successful answers within the last `WINDOW`: the rate that got through.
    delivered: VecDeque<Instant>,
    created: Instant,
}

impl RateGate {
    pub(crate) fn new(now: Instant) -> RateGate {
        RateGate {
            state: Mutex::new(State {
                rate: None,
                next: now,
                hold: now,
                epoch: 0,
                recent: VecDeque::new(),
                delivered: VecDeque::new(),
                created: now,
            }),
        }
    }

    /// Reserve a send slot (at `now` when unpaced and not held).
    pub(crate) fn reserve(&self, now: Instant) -> Slot {
        let mut s = self.lock();
        let earliest = now.max(s.hold);
        let at = match s.rate {
            None => earliest,
            Some(rate) => {
                let at = s.next.max(earliest);
                s.next = at + Duration::from_secs_f64(1.0 / rate);
                at
            }
        };
        Slot { at, epoch: s.epoch }
    }

    /// At the slot's time: may the caller send? No if the rate was cut or a hold began while
    /// it waited (then it reserves again). Counts the send when yes.
    pub(crate) fn admit(&self, slot: Slot, now: Instant) -> bool {
        let mut s = self.lock();
        if slot.epoch != s.epoch || now < s.hold {
            return false;
        }
        s.forget_before(now);
        s.recent.push_back(now);
        true
    }

    /// A request succeeded: grow the permitted rate if it is what limits us.
    pub(crate) fn on_success(&self, now: Instant) {
        let mut s = self.lock();
        s.forget_before(now);
        s.delivered.push_back(now);
        if let Some(rate) = s.rate
            && s.measured(now) >= BINDING * rate
        {
            // Per success; at `rate` successes per second this adds the step per second.
            let step = INCREASE_PER_SEC.max(rate * INCREASE_SHARE);
            s.rate = Some(rate + step / rate);
        }
    }

    /// A request admitted in `epoch` got a 429 (with `Retry-After` when given). Holds all
    /// sends until then; cuts the rate once per epoch and returns the new rate when it did.
    pub(crate) fn on_throttle(
        &self,
        epoch: u64,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> Option<f64> {
        let mut s = self.lock();
        if let Some(after) = retry_after {
            s.hold = s.hold.max(now + after);
        }
        if epoch != s.epoch {
            return None; // already slowed down for this episode
        }
        s.forget_before(now);
        // What got through is the server's limit as this client sees it; what was sent may be
        // far above it (a first 429 comes after the concurrency grew unpaced: at 20 ms, 330
        // requests/s were sent against a limit of 100, and a cut to 70% of that took two more
        // rounds of refusals to come under it). Counted over a whole window even when the
        // client is younger: a server's burst allowance (a token bucket's capacity) lets
        // through far more than its rate at first.
        let delivered = s.delivered.len() as f64 / WINDOW.as_secs_f64();
        let sent = s.measured(now);
        let measured = if delivered > 0.0 {
            sent.min(delivered)
        } else {
            sent
        };
        let base = match s.rate {
            Some(rate) if measured > 0.0 => rate.min(measured),
            Some(rate) => rate,
            None => measured,
        };
        let rate = (base * DECREASE).max(MIN_RATE);
        s.rate = Some(rate);
        s.epoch += 1;
        s.next = now;
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
    /// Forget the sends and successes older than the window.
    fn forget_before(&mut self, now: Instant) {
        for events in [&mut self.recent, &mut self.delivered] {
            while events
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
            {
                events.pop_front();
            }
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

    /// Reserve, wait for the slot, send: returns when it was sent and its epoch.
    fn send(gate: &RateGate, now: Instant) -> Slot {
        loop {
            let slot = gate.reserve(now);
            if gate.admit(slot, slot.at) {
                return slot;
            }
        }
    }

    #[test]
    fn unpaced_until_the_first_429() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        for i in 0..100 {
            assert_eq!(send(&gate, t0 + ms(i)).at, t0 + ms(i));
        }
        assert_eq!(gate.rate(), None);
    }

    #[test]
    fn retry_after_holds_every_send_even_one_already_reserved() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        let first = send(&gate, t0);
        let waiting = gate.reserve(t0 + ms(5));
        gate.on_throttle(first.epoch, t0 + ms(10), Some(Duration::from_secs(1)));
        assert!(
            !gate.admit(waiting, waiting.at),
            "reserved before the 429: ask again"
        );
        assert!(gate.reserve(t0 + ms(20)).at >= t0 + ms(1010));
    }

    #[test]
    fn a_429_cuts_to_seventy_percent_of_the_measured_rate_once_per_epoch() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        // 100 requests in the first second = 100 rps.
        let mut slots = Vec::new();
        for i in 0..100 {
            slots.push(send(&gate, t0 + ms(i * 10)));
        }
        let now = t0 + ms(999);
        let cut = gate.on_throttle(slots[99].epoch, now, None).unwrap();
        assert!((cut - 70.0).abs() < 1.0, "{cut}");
        // Another 429 for a request of the same epoch: no second cut.
        assert_eq!(gate.on_throttle(slots[98].epoch, now + ms(5), None), None);
        // A 429 for a request admitted after the cut: cut again.
        let after = send(&gate, now + ms(10));
        let again = gate.on_throttle(after.epoch, now + ms(20), None).unwrap();
        assert!(again < cut, "{again} < {cut}");
        let last = send(&gate, now + ms(30));
        assert!(gate.on_throttle(last.epoch, now + ms(40), None).unwrap() >= MIN_RATE);
    }

    /// The first 429 comes after the client sent unpaced, far above the limit: the cut is
    /// from what got through, not from what was sent (which took two more rounds of refusals
    /// to come under a limit of 100 requests/s at 20 ms).
    #[test]
    fn a_429_cuts_to_seventy_percent_of_what_got_through() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        // 300 requests sent in the first second, 100 of them answered with success.
        let mut last = send(&gate, t0);
        for i in 1..300 {
            last = send(&gate, t0 + ms(i * 10 / 3));
            if i % 3 == 0 {
                gate.on_success(t0 + ms(i * 10 / 3 + 1));
            }
        }
        let cut = gate.on_throttle(last.epoch, t0 + ms(999), None).unwrap();
        assert!((cut - 70.0).abs() < 1.5, "cut to {cut} requests/s");
    }

    /// A young client's first 429 after a burst the server allowed (100 answered in its
    /// first 0.3 s against a limit of 100 requests/s): the rate is what got through in a
    /// second, not in the 0.3 s.
    #[test]
    fn a_burst_allowance_does_not_count_as_the_rate() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        let mut last = send(&gate, t0);
        for i in 1..150 {
            last = send(&gate, t0 + ms(i * 2));
            if i <= 100 {
                gate.on_success(t0 + ms(i * 2 + 1));
            }
        }
        let cut = gate.on_throttle(last.epoch, t0 + ms(300), None).unwrap();
        assert!((cut - 70.0).abs() < 1.5, "cut to {cut} requests/s");
    }

    #[test]
    fn paced_slots_are_spaced_by_the_rate() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        let mut last = send(&gate, t0);
        for i in 1..20 {
            last = send(&gate, t0 + ms(i * 50)); // 20 rps measured
        }
        let rate = gate.on_throttle(last.epoch, t0 + ms(1000), None).unwrap();
        assert!((rate - 14.0).abs() < 0.5, "{rate}");
        let now = t0 + ms(1000);
        let a = gate.reserve(now);
        let b = gate.reserve(now);
        let c = gate.reserve(now);
        assert_eq!(a.at, now);
        let gap = Duration::from_secs_f64(1.0 / rate);
        assert_eq!(b.at - a.at, gap);
        assert_eq!(c.at - b.at, gap);
    }

    #[test]
    fn additive_increase_only_while_the_rate_binds() {
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        let mut last = send(&gate, t0);
        for i in 1..10 {
            last = send(&gate, t0 + ms(i * 100));
        }
        let start = gate.on_throttle(last.epoch, t0 + ms(1000), None).unwrap(); // 7 rps
        // Send at the permitted rate for 5 s: the rate climbs by about 1 rps per second.
        let mut now = t0 + ms(1000);
        let end = now + Duration::from_secs(5);
        while now < end {
            let slot = send(&gate, now);
            gate.on_success(slot.at);
            now = slot.at;
        }
        let grown = gate.rate().unwrap();
        assert!(
            grown > start + 3.0 && grown < start + 7.0,
            "{start} → {grown}"
        );
        // Idle (app-limited): successes far apart do not raise the rate.
        let later = now + Duration::from_secs(10);
        send(&gate, later);
        gate.on_success(later);
        assert_eq!(gate.rate().unwrap(), grown);
    }

    /// Eight concurrent senders against a token bucket like the simulator's (capacity and
    /// refill = the limit; `Retry-After` rounded up to whole seconds, at least 1).
    #[test]
    fn aimd_settles_near_a_token_bucket_limit() {
        let limit = 40.0;
        let t0 = Instant::now();
        let gate = RateGate::new(t0);
        let (mut tokens, mut last) = (limit, t0);
        let mut take = |now: Instant| {
            tokens = (tokens + now.duration_since(last).as_secs_f64() * limit).min(limit);
            last = now;
            if tokens >= 1.0 {
                tokens -= 1.0;
                None
            } else {
                let wait = (1.0 - tokens) / limit;
                Some(Duration::from_secs(wait.ceil().max(1.0) as u64))
            }
        };
        // Each sender: reserve, wait, send; a 429 waits Retry-After before trying again.
        let mut ready: Vec<Instant> = vec![t0; 8];
        let mut pending: Vec<Option<Slot>> = vec![None; 8];
        let (mut sent, mut throttled, mut rates) = (0u32, 0u32, Vec::new());
        let end = t0 + Duration::from_secs(60);
        loop {
            let i = (0..8)
                .min_by_key(|&i| pending[i].map_or(ready[i], |s| s.at))
                .unwrap();
            let now = pending[i].map_or(ready[i], |s| s.at);
            if now >= end {
                break;
            }
            let Some(slot) = pending[i].take() else {
                pending[i] = Some(gate.reserve(now));
                continue;
            };
            if !gate.admit(slot, now) {
                ready[i] = now;
                continue;
            }
            sent += 1;
            let answered = now + ms(2);
            match take(now) {
                None => {
                    gate.on_success(answered);
                    ready[i] = answered;
                }
                Some(after) => {
                    throttled += 1;
                    gate.on_throttle(slot.epoch, answered, Some(after));
                    ready[i] = answered + after;
                }
            }
            if now > t0 + Duration::from_secs(20) {
                rates.push(gate.rate().unwrap());
            }
        }
        let avg = rates.iter().sum::<f64>() / rates.len() as f64;
        let achieved = f64::from(sent - throttled) / 60.0;
        eprintln!("permitted {avg:.1} rps on average, achieved {achieved:.1}, {throttled} 429s");
        assert!((25.0..=45.0).contains(&avg), "average permitted rate {avg}");
        assert!(achieved > 28.0, "achieved {achieved} rps of 40");
        assert!(throttled < 60, "{throttled} throttled of {sent}");
    }
}
