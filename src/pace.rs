//! Pace stage: every request, first attempt or retry, waits here for a permit, so that no
//! window of the quota's length ever holds more than its CALLS requests.
//!
//! governor implements GCRA. A quota of "N per W" with a burst of N admits up to 2N-1 requests
//! in some window of length W (a full burst, then steady refill), which LeadSquared's sliding
//! window would reject. With a burst of 1 and a period of W/N, any window of length W admits at
//! most `1 + ceil(W / T) - 1 = N` requests: the full rate, never more. The period is stretched by
//! a small margin because the server counts arrival times, and network jitter can bring two
//! requests closer together than they were sent.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::NoOpMiddleware, state::InMemoryState,
    state::NotKeyed,
};

use crate::quota::RateQuota;

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

/// Hands out permits to send, shared by every sender task.
pub struct Pacer {
    limiter: RateLimiter<NotKeyed, InMemoryState, governor::clock::DefaultClock, NoOpMiddleware>,
    quota: RateQuota,
    spacing: Duration,
}

impl Pacer {
    pub fn new(quota: RateQuota, margin: f64) -> Pacer {
        Pacer {
            limiter: RateLimiter::direct(gcra_quota(quota, margin)),
            quota,
            spacing: spacing(quota, margin),
        }
    }

    /// Waits until one more request may leave.
    pub async fn acquire(&self) {
        self.limiter.until_ready().await;
    }

    /// The quota being respected.
    pub fn quota(&self) -> RateQuota {
        self.quota
    }

    /// The time between two permits.
    pub fn spacing(&self) -> Duration {
        self.spacing
    }
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
