//! Unit tests of the pacer: the sliding-window guarantee of the governor quota on a fake clock,
//! and each rule of the budget.

use super::*;
use governor::clock::Clock;

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

/// `calls` slots of a 25/1s budget asked for every 40 ms from `t0` (its full pace): when each
/// was given.
fn at_full_pace(budget: &mut Budget, t0: Instant, calls: u32) -> Vec<Instant> {
    (0..calls)
        .map(|i| {
            let now = t0 + i * ms(40);
            budget.reserve(now).0.unwrap_or(now)
        })
        .collect()
}

#[test]
fn a_refusal_below_the_budget_cuts_to_our_share_less_one_and_waits_out_the_window() {
    let t0 = Instant::now();
    let mut budget = Budget::new(25, Duration::from_secs(1), 0.0);
    // 15 calls in 600 ms at full pace, the 16th refused: the others hold 10 places.
    let sent = at_full_pace(&mut budget, t0, 16);
    let generation = budget.generation();
    let change = budget.rate_limited(sent[15], sent[15] + ms(100)).unwrap();
    assert_eq!((change.from, change.to), (25, 14));
    assert_eq!(change.why, ChangeReason::OthersUseMore);
    assert_ne!(budget.generation(), generation, "queued places are void");
    // Echoes (sent before the cut was known) change nothing.
    assert_eq!(
        budget.rate_limited(sent[15] + ms(40), sent[15] + ms(140)),
        None
    );
    // 16 calls (the refused one too) are in the window: the next slot waits until 3 of
    // them have left, not one spacing.
    let now = sent[15] + ms(100);
    let (slot, _) = budget.reserve(now);
    let slot = slot.unwrap();
    assert!(slot >= sent[2] + Duration::from_secs(1), "{:?}", slot - t0);
}

#[test]
fn the_refused_call_is_not_counted_among_the_calls_before_it() {
    // A real permit leaves a little after its slot (the task wakes, the ceiling's permit, the
    // ledger): the refused call's own slot is then before its send time, and reading it as an
    // earlier call would measure one more of ours and one fewer of the others. Found in real
    // runs: another integration's burst of 20 read as 19, a cut where a hold was right.
    let t0 = Instant::now();
    let mut budget = Budget::new(25, Duration::from_secs(1), 0.0);
    let slots = at_full_pace(&mut budget, t0, 6);
    // The others' burst of 20 filled the window; our sixth call, sent 2 ms after its slot, is
    // refused.
    let sent = slots[5] + ms(2);
    let change = budget.rate_limited(sent, sent + ms(100)).unwrap();
    assert_eq!(change.why, ChangeReason::Burst);
    assert_eq!((change.from, change.to), (25, 25));

    // Below the budget, the cut is to the share less one as when the send is the slot.
    let mut budget = Budget::new(25, Duration::from_secs(1), 0.0);
    let sent = at_full_pace(&mut budget, t0, 16)[15] + ms(3);
    let change = budget.rate_limited(sent, sent + ms(100)).unwrap();
    assert_eq!(
        (change.from, change.to, change.why),
        (25, 14, ChangeReason::OthersUseMore)
    );
}

#[test]
fn a_second_refusal_while_a_cut_drains_reads_the_share_from_every_call_of_ours() {
    // Where refused calls hold places, the window after a cut still holds the calls refused in
    // the overload that caused it: what got in reads low by as many. Found in real runs: a
    // quota of 25 shared with a steady 10/s read as 12 for us, not 15.
    let t0 = Instant::now();
    let window = Duration::from_secs(1);
    let mut budget = Budget::new(25, window, 0.0);
    let sent = at_full_pace(&mut budget, t0, 19);
    // The 17th is refused, and the two on their way behind it: a cut to 15.
    let cut = budget.rate_limited(sent[16], sent[16] + ms(100)).unwrap();
    assert_eq!((cut.from, cut.to), (25, 15));
    for &echo in &sent[17..] {
        assert_eq!(budget.rate_limited(echo, echo + ms(100)), None);
    }
    // The next call the budget allows, within a window of the cut, is refused: 14 of ours
    // are in the window before it, 3 of them refused.
    let now = sent[16] + ms(100);
    let next = budget.reserve(now).0.unwrap_or(now);
    let change = budget.rate_limited(next, next + ms(100)).unwrap();
    assert_eq!(change.why, ChangeReason::OthersUseMore);
    // Read from what got in, this would be 11; from every call of ours less one, 13.
    assert_eq!((change.from, change.to), (15, 13));
}

#[test]
fn a_refusal_at_a_steady_budget_in_use_holds_for_a_window_and_trims_one() {
    let t0 = Instant::now();
    let mut budget = Budget::new(10, Duration::from_secs(1), 0.0);
    let mut last = t0;
    for i in 0..30 {
        let now = t0 + i * ms(100);
        last = budget.reserve(now).0.unwrap_or(now);
    }
    let change = budget.rate_limited(last, last + ms(50)).unwrap();
    // At the budget after a quiet spell: held like a burst, and one less in case the budget
    // was a little high.
    assert_eq!(change.why, ChangeReason::BurstAtBudget);
    assert_eq!((change.from, change.to), (10, 9));
    let (slot, _) = budget.reserve(last + ms(50));
    assert!(slot.unwrap() >= last + Duration::from_secs(1));
}

#[test]
fn a_refused_raise_is_undone_and_the_next_one_lingers() {
    let t0 = Instant::now();
    let window = Duration::from_secs(1);
    let mut budget = Budget::new(25, window, 0.0);
    // Steady use at 14 per window, as after a cut.
    budget.budget = 14;
    budget.plateau = Some(16);
    budget.changed_at = Some(t0);
    let mut now = t0;
    let mut raises = Vec::new();
    while raises.is_empty() && now < t0 + Duration::from_secs(3) {
        let (slot, change) = budget.reserve(now);
        raises.extend(change);
        now = slot.unwrap_or(now);
    }
    // One window later it tries 15.
    assert!(now - t0 < ms(1100), "{:?}", now - t0);
    assert_eq!((raises[0].from, raises[0].to), (14, 15));
    // A call sent under the raise is refused.
    let (slot, _) = budget.reserve(now);
    let sent = slot.unwrap_or(now);
    let change = budget.rate_limited(sent, sent + ms(100)).unwrap();
    assert_eq!(change.why, ChangeReason::ProbeRefused);
    assert_eq!(change.to, 14);
    assert_eq!(budget.plateau, Some(15));
    // A new level refused: the first linger. The same level refused again: twice that.
    assert_eq!(budget.linger, FIRST_LINGER);
    budget.budget = 15;
    budget.raised = Some((sent, 14));
    budget.echoes_before = None;
    budget.rate_limited(sent + ms(10), sent + ms(110)).unwrap();
    assert_eq!(budget.linger, FIRST_LINGER * 2);
}

#[test]
fn with_room_again_the_budget_climbs_back_in_a_few_windows() {
    let t0 = Instant::now();
    let mut budget = Budget::new(25, Duration::from_secs(1), 0.0);
    budget.budget = 14;
    budget.plateau = Some(15);
    budget.changed_at = Some(t0);
    let mut now = t0;
    while budget.budget() < 25 && now < t0 + Duration::from_secs(30) {
        now = budget.reserve(now).0.unwrap_or(now);
    }
    assert_eq!(budget.budget(), 25);
    // 14 -> 15 after 1 window, a linger of 3 at the plateau, then 1, 2, 4, 8: 8 windows.
    let took = now - t0;
    assert!(took <= Duration::from_secs(9), "{took:?}");
}

#[test]
fn a_lower_limit_restarts_at_it_and_waits_out_what_the_old_pace_sent() {
    let t0 = Instant::now();
    let mut budget = Budget::new(25, Duration::from_secs(1), 0.0);
    let mut last = t0;
    for i in 0..14 {
        let now = t0 + i * ms(40);
        last = budget.reserve(now).0.unwrap_or(now);
    }
    let change = budget.set_ceiling(10, Duration::from_secs(1), last + ms(100));
    assert_eq!((change.from, change.to), (25, 10));
    assert_eq!(budget.rate_limited(last, last + ms(120)), None, "an echo");
    // 14 calls in the window: the next one waits until 5 have left.
    let (slot, _) = budget.reserve(last + ms(120));
    assert!(slot.unwrap() >= t0 + ms(160) + Duration::from_secs(1));
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

/// Admission times of `requests` immediate-as-possible requests under the GCRA quota, on a fake
/// clock: used by tests to check the sliding-window guarantee without waiting in real time.
pub(super) fn simulate_admissions(quota: Quota, requests: usize) -> Vec<Duration> {
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
pub(super) fn max_in_any_window(times: &[Duration], window: Duration) -> usize {
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
