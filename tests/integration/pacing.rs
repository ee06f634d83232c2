//! Pacing against limiters that count refused calls too (issue 12), through the real binary and
//! the simulator's request log: a quota shared with a steady other integration, and a real
//! limit lower than the one configured, named in a 429 or in an HTTP 200.

use std::collections::HashMap;
use std::time::Duration;

use lsq_sync::lsq::quota::RateQuota;
use lsq_sync::simulator::{
    OtherClient, OtherLoad, RateLimitStyle, RefusedCalls, RequestOutcome, RunningSimulator,
    SimConfig,
};

use crate::support::*;

const LATENCY: Duration = Duration::from_millis(50);

/// Arrivals (ours and the other integration's, refused ones included: they hold places in a
/// counting limiter) in the busiest window that starts once the client has seen the first
/// refusal; and how many of ours the server refused.
fn busiest_window_after_first_refusal(sim: &RunningSimulator, window: Duration) -> (usize, u64) {
    let requests = sim.sim.requests();
    let refused: Vec<Duration> = requests
        .iter()
        .filter(|r| r.outcome == RequestOutcome::RateLimited)
        .map(|r| r.at)
        .collect();
    let Some(first) = refused.first() else {
        return (0, 0);
    };
    let seen = *first + LATENCY;
    let mut arrivals: Vec<Duration> = requests.iter().map(|r| r.at).collect();
    arrivals.extend(sim.sim.other_arrivals().into_iter().map(|(at, _)| at));
    arrivals.retain(|at| *at >= seen);
    arrivals.sort();
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..arrivals.len() {
        while arrivals[end] - arrivals[start] >= window {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    (busiest, refused.len() as u64)
}

/// A quota of 25/1s whose limiter counts refused calls, shared with another integration that
/// steadily sends `per_second` calls.
fn shared_with_steady_client(per_second: f64) -> SimConfig {
    SimConfig {
        rate: Some(RateQuota::new(
            25.try_into().expect("25"),
            Duration::from_secs(1),
        )),
        refused_calls: RefusedCalls::Counted,
        other_client: Some(OtherClient {
            load: OtherLoad::Steady { per_second },
            from: Duration::ZERO,
            until: None,
        }),
        latency: LATENCY,
        ..SimConfig::default()
    }
}

fn assert_every_row_created_once(sim: &RunningSimulator, rows: usize) {
    let mut per_note: HashMap<String, usize> = HashMap::new();
    for a in posted_activities(sim) {
        *per_note.entry(a.note.unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(per_note.len(), rows, "every row created");
    assert!(per_note.values().all(|&n| n == 1), "no row created twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_shared_with_a_steady_client_is_not_overrun_once_a_refusal_is_seen() {
    let sim = simulator(shared_with_steady_client(10.0)).await;
    let (input, _) = generated_input(1000, 0);
    let out = import_into(&sim, &input, &[], &["--rate", "25/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_every_row_created_once(&sim, 1000);
    let (busiest, refused) = busiest_window_after_first_refusal(&sim, Duration::from_secs(1));
    assert!(
        refused > 0,
        "the other client must make the run meet the limit"
    );
    assert!(
        busiest <= 25,
        "{busiest} arrivals in one window after the first refusal was seen: {}",
        stderr(&out)
    );
    // Not starved either: 40 calls at the 15/s left take under 3 s of the 1 s windows, so a
    // window after the first refusal holds at least 12 of ours and the other's 10.
    assert!(busiest >= 20, "the quota left should be used: {busiest}");
    let err = stderr(&out);
    assert!(
        err.contains("pace: 25 -> "),
        "one log line per change: {err}"
    );
}

async fn a_lower_real_limit_is_adopted(style: RateLimitStyle) {
    let sim = simulator(SimConfig {
        rate: Some(RateQuota::new(
            10.try_into().expect("10"),
            Duration::from_secs(1),
        )),
        rate_limit_style: style,
        refused_calls: RefusedCalls::Counted,
        latency: LATENCY,
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(600, 0);
    let out = import_into(&sim, &input, &[], &["--rate", "25/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_every_row_created_once(&sim, 600);
    let (busiest, refused) = busiest_window_after_first_refusal(&sim, Duration::from_secs(1));
    assert!(refused > 0, "the configured 25/1s must meet the real 10/1s");
    assert!(
        busiest <= 10,
        "{busiest} arrivals in one window after the lower limit was seen"
    );
    let err = stderr(&out);
    assert!(err.contains("the account's limit is 10/1s"), "{err}");
    // Refused calls: the first and those already on their way when it was answered, no more.
    assert!(refused <= 4, "{refused} refused calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lower_limit_named_in_a_429_is_not_overrun_when_refusals_count() {
    a_lower_real_limit_is_adopted(RateLimitStyle::Http429).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lower_limit_named_in_an_http_200_is_not_overrun_when_refusals_count() {
    a_lower_real_limit_is_adopted(RateLimitStyle::Http200).await;
}

/// A refusal for the rate is the account's congestion, not the batch's fault: with one attempt
/// per batch allowed and another integration taking most of the quota, every row still goes in.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_for_the_rate_do_not_use_up_a_batchs_attempts() {
    let sim = simulator(shared_with_steady_client(18.0)).await;
    let (input, _) = generated_input(500, 0);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--rate", "25/1s", "--max-attempts", "1"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_every_row_created_once(&sim, 500);
    let (_, refused) = busiest_window_after_first_refusal(&sim, Duration::from_secs(1));
    assert!(
        refused > 0,
        "the other client must make the run meet the limit"
    );
}
