//! Pace stage: every request, first attempt or retry, waits here for a permit, so that no
//! window of the quota's length ever holds more than its CALLS requests, and so that a quota
//! shared with other integrations is used without a stream of 429s.
//!
//! Two gates, in this order:
//! 1. An adaptive rate ([`Aimd`]): at the quota's rate while the server accepts everything.
//!    When a call is rate limited, the rate drops just below our measured share of the window
//!    (so it converges in one step instead of halving blindly), returns to that share on a
//!    cubic curve that lingers there, then probes above it to claim room others leave. A cut
//!    voids every place already queued at the old rate.
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
use tracing::debug;

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

/// Fraction of our measured share of the window that the rate drops to after a rate limit: a
/// little below what got through, so the window drains and the next calls are accepted.
const DECREASE_TO: f64 = 0.9;
/// After a cut the rate climbs back to the share it was cut from in this many quota windows,
/// on a cubic curve: quickly at first, then flat around that share (where the last 429 came
/// from, so that is where to linger), then faster again above it, to claim room others left.
const RECOVERY_WINDOWS: f64 = 5.0;
/// The rate never drops below this fraction of the ceiling.
const FLOOR: f64 = 0.02;
/// One cut never takes the rate below this fraction of what it was: the measurement can be
/// short (early in a run, or just after the ceiling changed), and halving is the classic bound.
const MAX_CUT: f64 = 0.5;

/// The state after a rate limit: where the rate was cut from and to, and when.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at: Instant,
    /// Our share of the window when the server refused a call (calls per second).
    share: f64,
    /// The rate right after the cut.
    to: f64,
}

/// Additive-increase, measured-decrease control of the sending rate, shaped like TCP CUBIC.
/// Pure: time is passed in.
///
/// The server's sliding window holds CALLS arrivals from every client of the account. When it
/// refuses one of ours, the calls we sent in the window before it (less those it refused) are our
/// share of the quota at that moment: the rest belongs to others. The rate drops just below that
/// share, returns to it on a curve that flattens there, and only then probes above it.
#[derive(Debug, Clone)]
pub struct Aimd {
    /// Calls per second the quota allows (the ceiling gate's rate).
    ceiling: f64,
    /// The quota's window: how far back our share is measured.
    window: Duration,
    /// Send times of every permit handed out within the last two windows.
    sent: VecDeque<Instant>,
    /// Send times of the calls refused for the rate within the last two windows.
    refused: VecDeque<Instant>,
    /// The last cut; `None` while the server has accepted everything.
    cut: Option<Cut>,
    /// 429s for calls sent before this are echoes of an overload already acted on.
    echoes_before: Option<Instant>,
    /// The next free slot.
    next_slot: Option<Instant>,
    /// Bumped at every cut: a slot reserved at the old rate is void, and its holder queues again.
    generation: u64,
}

impl Aimd {
    pub fn new(ceiling: f64, window: Duration) -> Aimd {
        Aimd {
            ceiling,
            window,
            sent: VecDeque::new(),
            refused: VecDeque::new(),
            cut: None,
            echoes_before: None,
            next_slot: None,
            generation: 0,
        }
    }

    /// Calls per second aimed for at `now`.
    pub fn rate_at(&self, now: Instant) -> f64 {
        let Some(cut) = self.cut else {
            return self.ceiling;
        };
        let k = RECOVERY_WINDOWS * self.window.as_secs_f64();
        let t = now.saturating_duration_since(cut.at).as_secs_f64();
        let x = (t - k) / k;
        // Probe above the share by at least what a cut takes off, even when the cut was bounded
        // by the current rate rather than the share.
        let amplitude = (cut.share - cut.to).max(cut.share * (1.0 - DECREASE_TO));
        let rate = (cut.share + amplitude * x * x * x).max(cut.to);
        rate.clamp(self.ceiling * FLOOR, self.ceiling)
    }

    /// Bumped at every cut; compare with the value seen at [`Aimd::reserve`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reserves a send slot: `None` when it is free now, else the instant to wait for. Slots are
    /// handed out in order even at full rate: callers then meet the ceiling gate one at a time
    /// instead of all polling it at once, where the order of wake-ups, not of arrival, decides
    /// who goes, and a herd of pollers lost up to half of the permits after the ceiling dropped.
    pub fn reserve(&mut self, now: Instant) -> Option<Instant> {
        let rate = self.rate_at(now);
        let slot = self.next_slot.map_or(now, |next| next.max(now));
        self.next_slot = Some(slot + Duration::from_secs_f64(1.0 / rate));
        (slot > now).then_some(slot)
    }

    /// A permit was handed out at `sent_at`.
    pub fn sent(&mut self, sent_at: Instant) {
        self.sent.push_back(sent_at);
        self.forget_before(sent_at);
    }

    /// The call sent at `sent_at` was rate limited. Returns whether the rate was cut.
    pub fn rate_limited(&mut self, sent_at: Instant, now: Instant) -> bool {
        self.refused.push_back(sent_at);
        if self.echoes_before.is_some_and(|t| sent_at <= t) {
            return false;
        }
        self.forget_before(now);
        let since = sent_at.checked_sub(self.window);
        let in_window = |t: &&Instant| since.is_none_or(|since| **t > since) && **t < sent_at;
        let ours = self.sent.iter().filter(in_window).count();
        let refused = self.refused.iter().filter(in_window).count();
        let share = ours.saturating_sub(refused) as f64 / self.window.as_secs_f64();
        let current = self.rate_at(now);
        let to = (share * DECREASE_TO)
            .min(current * DECREASE_TO)
            .max(current * MAX_CUT)
            .max(self.ceiling * FLOOR);
        self.cut = Some(Cut {
            at: now,
            share: share.max(to),
            to,
        });
        self.echoes_before = Some(now);
        self.next_slot = None;
        self.generation += 1;
        true
    }

    /// A new ceiling (a lower limit discovered at `now`): start again at it. Calls sent before
    /// now were paced for the old limit, and the server's window still holds their arrivals for
    /// one more window: 429s of calls sent until then are echoes and must not cut the new rate.
    pub fn set_ceiling(&mut self, ceiling: f64, window: Duration, now: Instant) {
        self.ceiling = ceiling;
        self.window = window;
        self.cut = None;
        self.sent.clear();
        self.refused.clear();
        self.next_slot = None;
        self.echoes_before = Some(now + window);
        self.generation += 1;
    }

    fn forget_before(&mut self, now: Instant) {
        let horizon = self.window * 2;
        for times in [&mut self.sent, &mut self.refused] {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > horizon)
            {
                times.pop_front();
            }
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
    /// hands back with [`Pacer::rate_limited`] if the server refuses the call for the rate.
    pub async fn acquire(&self) -> Instant {
        loop {
            let (slot, generation) = {
                let mut aimd = self.aimd();
                (aimd.reserve(Instant::now()), aimd.generation())
            };
            if let Some(slot) = slot {
                tokio::time::sleep_until(slot).await;
            }
            // A cut while this caller waited (here or in the ceiling's queue) voids its place:
            // a queue filled at the old rate would otherwise keep the overload going.
            if self.aimd().generation() != generation {
                continue;
            }
            self.ceiling_permit().await;
            let mut aimd = self.aimd();
            if aimd.generation() == generation {
                let now = Instant::now();
                aimd.sent(now);
                return now;
            }
        }
    }

    async fn ceiling_permit(&self) {
        loop {
            let (limiter, generation) = {
                let ceiling = self.ceiling();
                (ceiling.limiter.clone(), ceiling.generation)
            };
            limiter.until_ready().await;
            if self.ceiling().generation == generation {
                return;
            }
        }
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
        let mut aimd = self.aimd();
        let now = Instant::now();
        if aimd.rate_limited(sent_at, now) {
            debug!(
                rate = aimd.rate_at(now),
                "sending rate cut after a rate limit"
            );
        }
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
    fn aimd_cuts_below_our_share_of_the_window_and_lingers_there() {
        let start = Instant::now();
        let mut aimd = Aimd::new(25.0, Duration::from_secs(1));
        assert_eq!(aimd.reserve(start), None, "the first slot is free at once");
        // 17 calls sent in the second before a refused one; 2 of them were refused too (and
        // were echoes of nothing yet): our share of the window was 15 calls.
        for i in 0..17 {
            aimd.sent(start + ms(i * 55));
        }
        aimd.refused.extend([start + ms(880), start + ms(935)]);
        let sent_at = start + ms(950);
        aimd.sent(sent_at);
        let generation = aimd.generation();
        assert!(aimd.rate_limited(sent_at, start + ms(1000)));
        assert_ne!(
            aimd.generation(),
            generation,
            "places queued at the old rate are void"
        );
        let cut_at = start + ms(1000);
        assert!(
            (aimd.rate_at(cut_at) - 13.5).abs() < 1e-9,
            "{}",
            aimd.rate_at(cut_at)
        );
        // Echoes of the same overload (sent before the cut) do not cut again.
        assert!(!aimd.rate_limited(start + ms(990), start + ms(1010)));
        // Below the ceiling, slots are spaced at the new rate.
        assert_eq!(aimd.reserve(cut_at), None, "the first slot is free at once");
        let next = aimd.reserve(cut_at).unwrap();
        assert!(((next - cut_at).as_secs_f64() - 1.0 / 13.5).abs() < 1e-6);
        // Back near the share after a few windows, flat around it, then above it...
        let at = |s: f64| aimd.rate_at(cut_at + Duration::from_secs_f64(s));
        assert!(at(3.0) > 14.8 && at(3.0) < 15.0, "{}", at(3.0));
        assert!((at(5.0) - 15.0).abs() < 1e-9);
        assert!(at(7.0) > 15.0 && at(7.0) < 15.2, "{}", at(7.0));
        assert!((at(10.0) - 16.5).abs() < 1e-9, "{}", at(10.0));
        // ...and to the ceiling, no further, once others have left room.
        assert_eq!(at(30.0), 25.0);
    }

    #[test]
    fn one_cut_at_most_halves_and_the_floor_holds() {
        let start = Instant::now();
        let mut aimd = Aimd::new(10.0, Duration::from_secs(1));
        // Nothing measured yet: halve, not drop to zero.
        assert!(aimd.rate_limited(start, start + ms(1)));
        assert!((aimd.rate_at(start + ms(1)) - 5.0).abs() < 1e-9);
        for i in 0..20 {
            assert!(aimd.rate_limited(start + ms(10 + 2 * i), start + ms(11 + 2 * i)));
        }
        assert!((aimd.rate_at(start + ms(51)) - 10.0 * FLOOR).abs() < 1e-9);
    }

    #[test]
    fn after_a_new_ceiling_echoes_of_the_old_pace_do_not_cut() {
        let start = Instant::now();
        let mut aimd = Aimd::new(25.0, Duration::from_secs(1));
        aimd.set_ceiling(10.0, Duration::from_secs(1), start + ms(500));
        assert!(!aimd.rate_limited(start + ms(400), start + ms(700)));
        // The window still holds arrivals of the old pace for one more window.
        assert!(!aimd.rate_limited(start + ms(1400), start + ms(1700)));
        assert_eq!(aimd.rate_at(start + ms(1700)), 10.0);
        assert!(aimd.rate_limited(start + ms(1600), start + ms(1900)));
    }

    #[tokio::test]
    async fn a_cut_voids_places_queued_at_the_old_rate() {
        // 100 permits a second; a cut to a few a second must hold back callers that were
        // already queued, not only those that come later.
        let pacer = std::sync::Arc::new(Pacer::new(quota("100/1s"), 0.0));
        let first = pacer.acquire().await;
        let queued: Vec<_> = (0..20)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move { pacer.acquire().await })
            })
            .collect();
        // Only the first call was seen in the window: the share is tiny, so the cut halves.
        assert_eq!(pacer.rate_limited(first, None), None);
        let cut = Instant::now();
        let mut times = Vec::new();
        for task in queued {
            times.push(task.await.unwrap());
        }
        times.sort();
        // At 50/s, 20 permits take at least 19 spacings of 20 ms (vs 190 ms at 100/s).
        let span = times[19].saturating_duration_since(cut);
        assert!(span >= ms(360), "{span:?}");
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
