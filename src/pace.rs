//! Pace stage: every request, first attempt or retry, waits here for a permit, so that no
//! window of the quota's length ever holds more than its CALLS requests, and so that a quota
//! shared with other integrations is used without a stream of 429s.
//!
//! Two gates, in this order:
//! 1. An adaptive rate ([`Aimd`]): at the quota's rate while the server accepts everything.
//!    When a call is rate limited, the rate drops to what actually got through in the last
//!    window (a measured decrease, so it converges in one step instead of halving blindly), then
//!    climbs back linearly over 20 windows to claim room others leave.
//! 2. A governor limiter for the quota itself, the hard ceiling. governor implements GCRA. A
//!    quota of "N per W" with a burst of N admits up to 2N-1 requests in some window of length W
//!    (a full burst, then steady refill), which LeadSquared's sliding window would reject. With a
//!    burst of 1 and a period of W/N, any window of length W admits at most
//!    `1 + ceil(W / T) - 1 = N` requests: the full rate, never more. The period is stretched by a
//!    small margin because the server counts arrival times, and network jitter can bring two
//!    requests closer together than they were sent.
//!
//! When a rate-limit message names a lower limit than configured ("limit of 10 in 5
//! second(s)"), the ceiling is rebuilt with it for the rest of the run ([`Pacer::rate_limited`]).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::NoOpMiddleware, state::InMemoryState,
    state::NotKeyed,
};
use tokio::time::Instant;

use crate::quota::RateQuota;

type Limiter = RateLimiter<NotKeyed, InMemoryState, governor::clock::DefaultClock, NoOpMiddleware>;

/// The spacing between two permits: the window divided by its calls, stretched by `margin`.
pub fn spacing(quota: RateQuota, margin: f64) -> Duration {
    let ideal = quota.window.as_secs_f64() / f64::from(quota.calls.get());
    Duration::from_secs_f64(ideal * (1.0 + margin.max(0.0))).max(Duration::from_nanos(1))
}

/// The governor quota that never exceeds `quota` in any window: burst 1, period [`spacing`].
pub fn gcra_quota(quota: RateQuota, margin: f64) -> Quota {
    Quota::with_period(spacing(quota, margin))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::MIN)
}

/// Fraction of the measured throughput the rate drops to after a rate limit: a little below
/// what got through, so the window drains and the next calls are accepted.
const DECREASE_TO: f64 = 0.9;
/// After a cut, the rate climbs back linearly to the ceiling over this many quota windows:
/// slowly enough that probing for room others left costs few 429s, fast enough that a run is not
/// held down long after others stop using the quota. Time-based, so it does not depend on how
/// many calls happen to succeed meanwhile.
const RECOVERY_WINDOWS: f64 = 20.0;
/// The rate never drops below this fraction of the ceiling.
const FLOOR: f64 = 0.02;
/// One cut never takes the rate below this fraction of what it was: the measurement can be
/// short (early in a run, or just after the ceiling changed), and halving is the classic bound.
const MAX_CUT: f64 = 0.5;

/// Additive-increase, measured-decrease control of the sending rate. Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct Aimd {
    /// Calls per second the quota allows (the ceiling gate's rate).
    ceiling: f64,
    /// Calls per second currently aimed for.
    rate: f64,
    /// The quota's window: how far back "what got through" is measured.
    window: Duration,
    /// Send times of accepted calls within the last window.
    accepted: VecDeque<Instant>,
    /// When the rate was last cut; 429s for calls sent before then are echoes of the same
    /// overload and do not cut again.
    last_cut: Option<Instant>,
    /// The next free slot while below the ceiling.
    next_slot: Option<Instant>,
    /// When the rate was last brought up to date with the recovery slope.
    updated: Option<Instant>,
}

impl Aimd {
    pub fn new(ceiling: f64, window: Duration) -> Aimd {
        Aimd {
            ceiling,
            rate: ceiling,
            window,
            accepted: VecDeque::new(),
            last_cut: None,
            next_slot: None,
            updated: None,
        }
    }

    /// Climbs back toward the ceiling for the time passed since the last update.
    fn recover(&mut self, now: Instant) {
        if let Some(updated) = self.updated {
            let elapsed = now.saturating_duration_since(updated).as_secs_f64();
            let slope = self.ceiling / (RECOVERY_WINDOWS * self.window.as_secs_f64());
            self.rate = (self.rate + slope * elapsed).min(self.ceiling);
        }
        self.updated = Some(now);
    }

    /// Calls per second currently aimed for.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Reserves a send slot: `None` when at full rate (the ceiling gate alone paces), else the
    /// instant to wait for.
    pub fn reserve(&mut self, now: Instant) -> Option<Instant> {
        self.recover(now);
        if self.rate >= self.ceiling {
            self.next_slot = None;
            return None;
        }
        let slot = self.next_slot.map_or(now, |next| next.max(now));
        self.next_slot = Some(slot + Duration::from_secs_f64(1.0 / self.rate));
        (slot > now).then_some(slot)
    }

    /// A call sent at `sent_at` was accepted.
    pub fn accepted(&mut self, sent_at: Instant, now: Instant) {
        self.accepted.push_back(sent_at);
        self.forget_before(now);
    }

    /// A call sent at `sent_at` was rate limited. Returns whether the rate was cut.
    pub fn rate_limited(&mut self, sent_at: Instant, now: Instant) -> bool {
        if self.last_cut.is_some_and(|cut| sent_at <= cut) {
            return false;
        }
        self.recover(now);
        self.forget_before(now);
        let got_through = self.accepted.len() as f64 / self.window.as_secs_f64();
        let target = (got_through * DECREASE_TO)
            .min(self.rate * DECREASE_TO)
            .max(self.rate * MAX_CUT);
        self.rate = target.max(self.ceiling * FLOOR);
        self.last_cut = Some(now);
        self.next_slot = None;
        true
    }

    /// A new ceiling (a lower limit discovered at `now`): start again at it. Calls sent before
    /// now were paced for the old limit; their 429s are echoes and must not cut the new rate.
    pub fn set_ceiling(&mut self, ceiling: f64, window: Duration, now: Instant) {
        self.ceiling = ceiling;
        self.rate = ceiling;
        self.window = window;
        self.accepted.clear();
        self.next_slot = None;
        self.last_cut = Some(now);
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.accepted.pop_front();
        }
    }
}

struct Ceiling {
    quota: RateQuota,
    limiter: Arc<Limiter>,
    /// Bumped when the limiter is replaced, so waiters on the old one queue again.
    generation: u64,
}

/// Hands out permits to send, shared by every sender task.
pub struct Pacer {
    margin: f64,
    configured: RateQuota,
    ceiling: Mutex<Ceiling>,
    aimd: Mutex<Aimd>,
    /// A lower limit the server named, once adopted.
    discovered: Mutex<Option<RateQuota>>,
}

impl Pacer {
    pub fn new(quota: RateQuota, margin: f64) -> Pacer {
        Pacer {
            margin,
            configured: quota,
            ceiling: Mutex::new(Ceiling {
                quota,
                limiter: Arc::new(RateLimiter::direct(gcra_quota(quota, margin))),
                generation: 0,
            }),
            aimd: Mutex::new(Aimd::new(ceiling_rate(quota, margin), quota.window)),
            discovered: Mutex::new(None),
        }
    }

    fn ceiling(&self) -> MutexGuard<'_, Ceiling> {
        self.ceiling.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn aimd(&self) -> MutexGuard<'_, Aimd> {
        self.aimd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more request may leave; returns the moment it may, which the caller
    /// hands back with [`Pacer::accepted`] or [`Pacer::rate_limited`].
    pub async fn acquire(&self) -> Instant {
        let slot = self.aimd().reserve(Instant::now());
        if let Some(slot) = slot {
            tokio::time::sleep_until(slot).await;
        }
        loop {
            let (limiter, generation) = {
                let ceiling = self.ceiling();
                (ceiling.limiter.clone(), ceiling.generation)
            };
            limiter.until_ready().await;
            if self.ceiling().generation == generation {
                return Instant::now();
            }
        }
    }

    /// The call that left at `sent_at` got through the rate limit.
    pub fn accepted(&self, sent_at: Instant) {
        self.aimd().accepted(sent_at, Instant::now());
    }

    /// The call that left at `sent_at` was rate limited; `limit` is the limit the server's
    /// message named, if any. Returns the new quota when a lower limit was adopted.
    pub fn rate_limited(&self, sent_at: Instant, limit: Option<RateQuota>) -> Option<RateQuota> {
        if let Some(limit) = limit
            && limit.per_second() < self.quota().per_second() * 0.999
        {
            {
                let mut ceiling = self.ceiling();
                ceiling.quota = limit;
                ceiling.limiter = Arc::new(RateLimiter::direct(gcra_quota(limit, self.margin)));
                ceiling.generation += 1;
            }
            self.aimd().set_ceiling(
                ceiling_rate(limit, self.margin),
                limit.window,
                Instant::now(),
            );
            *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(limit);
            return Some(limit);
        }
        self.aimd().rate_limited(sent_at, Instant::now());
        None
    }

    /// The quota being respected (the configured one, or a lower one the server named).
    pub fn quota(&self) -> RateQuota {
        self.ceiling().quota
    }

    /// The quota given by configuration.
    pub fn configured(&self) -> RateQuota {
        self.configured
    }

    /// A lower limit the server named during the run, if any.
    pub fn discovered(&self) -> Option<RateQuota> {
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time between two permits at the full quota.
    pub fn spacing(&self) -> Duration {
        spacing(self.quota(), self.margin)
    }
}

fn ceiling_rate(quota: RateQuota, margin: f64) -> f64 {
    1.0 / spacing(quota, margin).as_secs_f64()
}

/// Admission times of `requests` immediate-as-possible requests under the GCRA quota, on a fake
/// clock: used by tests to check the sliding-window guarantee without waiting in real time.
pub fn simulate_admissions(quota: Quota, requests: usize) -> Vec<Duration> {
    use governor::clock::FakeRelativeClock;
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
    let start = clock.now();
    let mut times = Vec::with_capacity(requests);
    while times.len() < requests {
        match limiter.check() {
            Ok(()) => times.push(Duration::from(clock.now()) - Duration::from(start)),
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(clock.now());
                clock.advance(wait.max(Duration::from_nanos(1)));
            }
        }
    }
    times
}

/// The largest number of `times` that fall in any half-open window `[t, t + window)`.
pub fn max_in_any_window(times: &[Duration], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(text: &str) -> RateQuota {
        text.parse().unwrap()
    }

    #[test]
    fn the_naive_burst_quota_breaks_the_sliding_window() {
        // Why burst 1: "25 per 5 s" with burst 25 lets 49 requests into one 5 s window.
        let naive = Quota::with_period(Duration::from_millis(200))
            .unwrap()
            .allow_burst(NonZeroU32::new(25).unwrap());
        let times = simulate_admissions(naive, 200);
        assert_eq!(max_in_any_window(&times, Duration::from_secs(5)), 49);
    }

    #[test]
    fn burst_one_never_exceeds_calls_in_any_window() {
        for text in ["25/5s", "25/1s", "10/500ms", "2/5s", "100/1s", "7/3s"] {
            let q = quota(text);
            for margin in [0.0, 0.02] {
                let times = simulate_admissions(gcra_quota(q, margin), 10 * q.calls.get() as usize);
                let max = max_in_any_window(&times, q.window);
                assert!(
                    max <= q.calls.get() as usize,
                    "{text} margin {margin}: {max} in one window"
                );
                // ...and still uses the quota: CALLS fit in a window stretched by the margin.
                let stretched = q.window.mul_f64(1.0 + margin) - Duration::from_micros(1);
                assert_eq!(
                    max_in_any_window(&times, stretched),
                    q.calls.get() as usize,
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn spacing_is_window_over_calls_plus_margin() {
        assert_eq!(spacing(quota("25/5s"), 0.0), Duration::from_millis(200));
        assert_eq!(spacing(quota("25/1s"), 0.02), Duration::from_micros(40_800));
    }

    #[test]
    fn max_in_any_window_counts_half_open_windows() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            max_in_any_window(&ms(&[0, 100, 200, 1000]), Duration::from_secs(1)),
            3
        );
        assert_eq!(
            max_in_any_window(&ms(&[0, 100, 200, 999]), Duration::from_secs(1)),
            4
        );
        assert_eq!(max_in_any_window(&[], Duration::from_secs(1)), 0);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn aimd_cuts_to_what_got_through_and_creeps_back() {
        let start = Instant::now();
        let mut aimd = Aimd::new(25.0, Duration::from_secs(1));
        assert_eq!(aimd.reserve(start), None, "full rate: only the quota paces");
        // 15 calls got through in the last second, then one was rate limited.
        for i in 0..15 {
            aimd.accepted(start + ms(i * 60), start + ms(i * 60));
        }
        assert!(aimd.rate_limited(start + ms(950), start + ms(1000)));
        assert!((aimd.rate() - 13.5).abs() < 0.01, "{}", aimd.rate());
        // Echoes of the same overload (sent before the cut) do not cut again.
        assert!(!aimd.rate_limited(start + ms(990), start + ms(1010)));
        // Below the ceiling, slots are spaced at the new rate.
        let now = start + ms(1100);
        assert_eq!(aimd.reserve(now), None, "the first slot is free at once");
        let next = aimd.reserve(now).unwrap();
        assert!(((next - now).as_secs_f64() - 1.0 / 13.625).abs() < 1e-6);
        // The rate climbs back with time: a tenth of the way after two windows...
        aimd.reserve(now + ms(2000));
        // (13.5, plus 0.1 s of recovery before the first slot, plus 2 s at 25/20 per second.)
        assert!(
            (aimd.rate() - (13.5 + 0.125 + 2.5)).abs() < 0.01,
            "{}",
            aimd.rate()
        );
        // ...and to the ceiling, no further, after twenty.
        aimd.reserve(now + ms(30_000));
        assert_eq!(aimd.rate(), 25.0);
    }

    #[test]
    fn one_cut_at_most_halves_and_the_floor_holds() {
        let start = Instant::now();
        let mut aimd = Aimd::new(10.0, Duration::from_secs(1));
        // Nothing measured yet: halve, not drop to zero.
        assert!(aimd.rate_limited(start, start + ms(1)));
        assert!((aimd.rate() - 5.0).abs() < 1e-9, "{}", aimd.rate());
        for i in 0..20 {
            assert!(aimd.rate_limited(start + ms(10 + 2 * i), start + ms(11 + 2 * i)));
        }
        assert!((aimd.rate() - 10.0 * FLOOR).abs() < 1e-9);
    }

    #[test]
    fn after_a_new_ceiling_echoes_of_the_old_pace_do_not_cut() {
        let start = Instant::now();
        let mut aimd = Aimd::new(25.0, Duration::from_secs(1));
        aimd.set_ceiling(10.0, Duration::from_secs(1), start + ms(500));
        assert!(!aimd.rate_limited(start + ms(400), start + ms(700)));
        assert_eq!(aimd.rate(), 10.0);
        assert!(aimd.rate_limited(start + ms(800), start + ms(900)));
    }

    #[tokio::test]
    async fn a_lower_limit_named_by_the_server_becomes_the_ceiling() {
        let pacer = Pacer::new(quota("25/1s"), 0.0);
        let sent = pacer.acquire().await;
        assert_eq!(
            pacer.rate_limited(sent, Some(quota("10/1s"))),
            Some(quota("10/1s"))
        );
        assert_eq!(pacer.quota(), quota("10/1s"));
        assert_eq!(pacer.discovered(), Some(quota("10/1s")));
        assert_eq!(pacer.spacing(), ms(100));
        // The same or a higher limit is not adopted.
        assert_eq!(pacer.rate_limited(sent, Some(quota("25/1s"))), None);
        assert_eq!(pacer.quota(), quota("10/1s"));
    }

    #[tokio::test]
    async fn the_real_pacer_spaces_permits() {
        let pacer = Pacer::new(quota("10/100ms"), 0.0);
        let start = std::time::Instant::now();
        for _ in 0..6 {
            pacer.acquire().await;
        }
        // 6 permits: the first at once, then 5 spacings of 10 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(49),
            "{:?}",
            start.elapsed()
        );
    }
}
