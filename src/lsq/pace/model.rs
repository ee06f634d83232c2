//! A model of a run against the server's sliding window, on a simulated clock: the budget and
//! a GCRA ceiling on our side; the window (counting refused calls or not), another client
//! (steady, bursts, for part of the run) and latency on the server's. Fast enough to check every
//! kind of limiter in a unit test; the benchmark checks the real thing.

use super::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
pub(super) enum Other {
    None,
    Steady(f64),
    Bursts(u32, Duration),
}

#[derive(Clone, Copy)]
pub(super) struct Scenario {
    pub(super) quota: (u32, Duration),
    /// The server's limit, if lower than the quota configured.
    pub(super) real: Option<(u32, Duration)>,
    pub(super) counts_refused: bool,
    pub(super) other: Other,
    pub(super) other_until: Option<Duration>,
    pub(super) latency: Duration,
    pub(super) calls: u32,
    pub(super) senders: u32,
    /// How long the other client has been at it when the run starts.
    pub(super) head_start: Duration,
}

#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) took: Duration,
    pub(super) sent: u32,
    pub(super) refused: u32,
    pub(super) other_refused: u32,
    pub(super) changes: Vec<(Duration, BudgetChange)>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Event {
    /// A sender wants a slot.
    Ready(u32),
    /// A sender's slot has come (reserved under this generation).
    Slot(u32, u64),
    /// The answer to a call sent at this offset (ns) came back.
    Answer(u32, u64, bool),
    Other,
}

pub(super) fn run(sc: Scenario) -> Outcome {
    let t0 = Instant::now();
    let ns = |t: Instant| (t - t0).as_nanos() as u64;
    let at = |n: u64| t0 + Duration::from_nanos(n);
    let (calls, window) = sc.quota;
    let (real_calls, real_window) = sc.real.unwrap_or(sc.quota);
    let mut budget = Budget::new(calls, window, 0.02);
    let mut ceiling_calls = calls;
    let mut ceiling_window = window;
    let mut next_ceiling = t0;
    let mut server: VecDeque<Instant> = VecDeque::new();
    let mut events = BinaryHeap::new();
    let start = sc.head_start.as_nanos() as u64;
    for s in 0..sc.senders {
        events.push(Reverse((start, Event::Ready(s))));
    }
    if !matches!(sc.other, Other::None) {
        events.push(Reverse((0, Event::Other)));
    }
    let mut out = Outcome {
        took: Duration::ZERO,
        sent: 0,
        refused: 0,
        other_refused: 0,
        changes: Vec::new(),
    };
    let mut done = 0;
    let mut started = 0;
    let admit = |server: &mut VecDeque<Instant>, now: Instant| {
        while server.front().is_some_and(|t| *t + real_window <= now) {
            server.pop_front();
        }
        let ok = server.len() < real_calls as usize;
        if ok || sc.counts_refused {
            server.push_back(now);
        }
        ok
    };
    while let Some(Reverse((time, event))) = events.pop() {
        let now = at(time);
        match event {
            Event::Ready(s) => {
                if started >= sc.calls {
                    continue;
                }
                let (slot, change) = budget.reserve(now);
                out.changes.extend(change.map(|c| (now - at(start), c)));
                let slot = slot.unwrap_or(now);
                events.push(Reverse((ns(slot), Event::Slot(s, budget.generation()))));
            }
            Event::Slot(s, generation) => {
                if generation != budget.generation() {
                    events.push(Reverse((time, Event::Ready(s))));
                    continue;
                }
                if now < next_ceiling {
                    events.push(Reverse((ns(next_ceiling), Event::Slot(s, generation))));
                    continue;
                }
                next_ceiling = now + ceiling_window.mul_f64(1.02 / f64::from(ceiling_calls));
                // A real permit leaves a little after its slot (the task wakes, takes the
                // ceiling's permit, records the attempt): the pacer must not take its own slot
                // for an earlier call.
                let now = now + DISPATCH;
                let time = ns(now);
                started += 1;
                out.sent += 1;
                let ok = admit(&mut server, now);
                events.push(Reverse((ns(now + sc.latency), Event::Answer(s, time, ok))));
            }
            Event::Answer(s, sent, ok) => {
                budget.answered(at(sent), now);
                if ok {
                    done += 1;
                    if done == sc.calls {
                        out.took = now - at(start);
                        break;
                    }
                    events.push(Reverse((time, Event::Ready(s))));
                    continue;
                }
                out.refused += 1;
                started -= 1;
                if sc.real.is_some() && (ceiling_calls, ceiling_window) != (real_calls, real_window)
                {
                    ceiling_calls = real_calls;
                    ceiling_window = real_window;
                    let change = budget.set_ceiling(real_calls, real_window, now);
                    out.changes.push((now - at(start), change));
                } else if let Some(change) = budget.rate_limited(at(sent), now) {
                    out.changes.push((now - at(start), change));
                }
                // No backoff of the sender's own after a 429 (`RetryPolicy::after_rate_limit`):
                // it queues for a permit again at once.
                events.push(Reverse((time, Event::Ready(s))));
            }
            Event::Other => {
                if sc.other_until.is_some_and(|until| now - at(start) >= until) {
                    continue;
                }
                let (n, every) = match sc.other {
                    Other::None => continue,
                    Other::Steady(rate) => (1, Duration::from_secs_f64(1.0 / rate)),
                    Other::Bursts(n, every) => (n, every),
                };
                for _ in 0..n {
                    if !admit(&mut server, now) {
                        out.other_refused += 1;
                    }
                }
                events.push(Reverse((ns(now + every), Event::Other)));
            }
        }
    }
    out
}

/// Time from a slot to the request's arrival at the server.
const DISPATCH: Duration = Duration::from_micros(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn scenario(other: Other, counts_refused: bool) -> Scenario {
    Scenario {
        quota: (25, Duration::from_secs(1)),
        real: None,
        counts_refused,
        other,
        other_until: None,
        latency: ms(100),
        calls: 200,
        senders: 64,
        head_start: Duration::from_secs(2),
    }
}

fn report(name: &str, sc: Scenario, ideal: f64) -> (f64, f64) {
    let out = run(sc);
    let traced = std::env::var("LSQ_MODEL_TRACE")
        .is_ok_and(|only| only.is_empty() || name.contains(only.as_str()));
    let ratio = ideal / out.took.as_secs_f64();
    let share = f64::from(out.refused) / f64::from(out.sent);
    println!(
        "{name:<32} took {:>6.2} s ideal {ideal:>6.2} ratio {ratio:.3} sent {} refused {} ({:.1}%) other refused {} changes {}",
        out.took.as_secs_f64(),
        out.sent,
        out.refused,
        share * 100.0,
        out.other_refused,
        out.changes.len()
    );
    if traced {
        for (t, c) in &out.changes {
            println!(
                "    {:>7.3} {} -> {} {:?} {}",
                t.as_secs_f64(),
                c.from,
                c.to,
                c.hold,
                c.why
            );
        }
    }
    (ratio, share)
}

#[test]
fn every_kind_of_limiter_and_other_client() {
    let mut failures = Vec::new();
    for (counts, head_start) in [(false, 2000), (true, 2000), (false, 200), (true, 200)] {
        let mode = if counts { "counted" } else { "not counted" };
        let mode = format!("{mode}, other {head_start} ms ahead");
        let scenario = |other, counts| Scenario {
            head_start: ms(head_start),
            ..scenario(other, counts)
        };
        let mut check = |name: &str, sc: Scenario, ideal: f64, ratio_bar: f64, share_bar: f64| {
            let (ratio, share) = report(&format!("{name} ({mode})"), sc, ideal);
            if ratio < ratio_bar || share > share_bar {
                failures.push(format!(
                    "{name} ({mode}): ratio {ratio:.3} refused {:.1}%",
                    share * 100.0
                ));
            }
        };
        check(
            "1 steady 10/s",
            scenario(Other::Steady(10.0), counts),
            200.0 / 15.0 + 0.1,
            0.90,
            0.03,
        );
        check(
            "2 bursts 10/1s",
            scenario(Other::Bursts(10, ms(1000)), counts),
            200.0 / 15.0 + 0.1,
            0.85,
            0.05,
        );
        // Bursts that fill a whole window every few seconds: short of the bar, and
        // it cannot be met without taking the bursts' places (leaving them room, at most 25
        // calls fit in each 2.5 s, 10/s: a ratio of 0.67). Each burst costs a refusal and
        // the calls already on their way; a first cut misread from a burst is slow to undo
        // (0.23 when the run starts just after one). No storm, no stop.
        check(
            "2 bursts 25/2.5s",
            scenario(Other::Bursts(25, ms(2500)), counts),
            200.0 / 15.0 + 0.1,
            0.20,
            0.20,
        );
        // Bursts of 20 every 2 s: where refused calls count, short of the bar for the
        // same reason (0.68, 12% refused); leaving them room caps the run at 5/s (0.33). A
        // burst read as a cut used to collapse the pace to that (0.28 in real runs).
        check(
            "2 bursts 20/2s",
            scenario(Other::Bursts(20, ms(2000)), counts),
            200.0 / 15.0 + 0.1,
            0.60,
            0.15,
        );
        // Another integration taking most of the quota: 7/s left. Where refused calls
        // count, sending into a full window keeps it full; cuts must go on down to it.
        check(
            "heavy steady 18/s",
            scenario(Other::Steady(18.0), counts),
            200.0 / 7.0 + 0.1,
            0.80,
            0.05,
        );
        // The other leaves after 5 s: 75 calls at 15/s, 125 at 25/s.
        let half = Scenario {
            other_until: Some(Duration::from_secs(5)),
            ..scenario(Other::Steady(10.0), counts)
        };
        check(
            "3 steady 10/s for 5 s",
            half,
            5.0 + 125.0 / 25.0 + 0.1,
            0.85,
            1.0,
        );
        let lower = Scenario {
            real: Some((10, Duration::from_secs(1))),
            ..scenario(Other::None, counts)
        };
        check("4 real limit 10/1s", lower, 20.0 + 0.1, 0.90, 0.03);
        for latency in [300, 2000] {
            let alone = Scenario {
                latency: ms(latency),
                ..scenario(Other::None, counts)
            };
            check(
                &format!("5 alone, {latency} ms"),
                alone,
                8.0 + latency as f64 / 1000.0,
                0.95,
                0.0,
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
