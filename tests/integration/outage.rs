//! Outage mode against the simulator's staged outages: the run pauses as a whole, probes one
//! call at a time, continues by itself, creates every row exactly once, and stops cleanly
//! (resumable) when the outage outlasts `--outage-patience`.

use std::collections::HashMap;
use std::time::Duration;

use lsq_sync::lsq::outage::OUTAGE_AFTER;
use lsq_sync::simulator::{
    OutageKind, OutageSchedule, RequestOutcome, RequestRecord, RunningSimulator, SimConfig,
};

use crate::support::*;

/// Paced at 40 calls/s: 600 rows take 24 calls, about 0.6 s, so an outage 300 ms in catches the
/// run in the middle.
const RATE: &str = "40/1s";
const ROWS: usize = 600;

fn outage_sim(kind: OutageKind, lasts: Duration) -> SimConfig {
    SimConfig {
        rate: Some(RATE.parse().expect("quota")),
        latency: Duration::from_millis(20),
        outage: Some(OutageSchedule {
            kind,
            after: Duration::from_millis(300),
            lasts,
        }),
        ..SimConfig::default()
    }
}

/// Fast backoff (so probes come every 50-200 ms) and a ledger that does not fsync every commit.
fn fast_config(dir: &std::path::Path) -> String {
    let path = dir.join("fast.toml");
    std::fs::write(
        &path,
        "[retry]\nbackoff_base = \"50ms\"\nbackoff_max = \"200ms\"\n[ledger]\ndurability = \"normal\"\n",
    )
    .expect("write config");
    path.display().to_string()
}

/// Server activities per note (every generated row has its own note).
fn per_note(sim: &RunningSimulator) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for a in posted_activities(sim) {
        *counts.entry(a.note.unwrap_or_default()).or_default() += 1;
    }
    counts
}

fn assert_each_row_created_once(sim: &RunningSimulator, rows: usize) {
    let counts = per_note(sim);
    assert_eq!(counts.len(), rows, "every row created");
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "duplicates: {doubled:?}");
}

fn summary_json(input: &Input) -> serde_json::Value {
    let text = std::fs::read_to_string(input.dir.path().join("summary.json")).expect("summary");
    serde_json::from_str(&text).expect("summary is JSON")
}

async fn import(sim: &RunningSimulator, input: &Input, extra: &[&str]) -> std::process::Output {
    let config = fast_config(input.dir.path());
    let mut args = vec!["--rate", RATE, "--summary-json", "summary.json"];
    args.extend(extra);
    import_into(sim, input, &["--config", &config], &args, &[]).await
}

fn is_probe(request: &RequestRecord) -> bool {
    request.path == lsq_sync::lsq::api::PATH_USER_BY_ACCESS_KEY
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_outage_pauses_the_run_probing_one_call_at_a_time_and_it_finishes_alone() {
    let sim = simulator(outage_sim(
        OutageKind::Plain500,
        Duration::from_millis(1500),
    ))
    .await;
    let (input, _) = generated_input(ROWS, 0);
    let out = import(&sim, &input, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_each_row_created_once(&sim, ROWS);
    assert_eq!(err.matches("the API is not answering").count(), 1, "{err}");
    assert_eq!(err.matches("the API answers again").count(), 1, "{err}");

    let failed: Vec<RequestRecord> = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.outcome == RequestOutcome::Outage)
        .collect();
    // The calls that revealed the outage (and any already on their way) fail; after that only
    // probes go, one at a time.
    let noticed = failed
        .iter()
        .rposition(|r| !is_probe(r))
        .map_or(0, |last| last + 1);
    assert!(
        noticed <= OUTAGE_AFTER as usize + 5,
        "{noticed} calls failed before only probes went: {failed:?}"
    );
    assert!(failed.len() > noticed + 2, "the run waited, probing");
    for pair in failed[noticed..].windows(2) {
        let answered = pair[0].answered.expect("answered");
        assert!(
            pair[1].at >= answered,
            "two requests in flight at once during the outage: {pair:?}"
        );
    }

    // The batches in doubt were checked after the outage, one read per lead at most.
    let summary = summary_json(&input);
    assert_eq!(summary["outages"], 1);
    let bulk_in_doubt = failed.iter().filter(|r| r.items > 0).count() as u64;
    let lookups = summary["lookup_calls"].as_u64().expect("lookup_calls");
    assert!(lookups > 0, "the batches in doubt were checked");
    assert!(
        lookups <= (25 * bulk_in_doubt).min(50),
        "{lookups} lookups for {bulk_in_doubt} batches over at most 50 leads"
    );
    let window = sim.sim.outage_window().expect("the outage happened");
    let lookups_during = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == lsq_sync::lsq::api::PATH_RETRIEVE && r.at < window.2)
        .count();
    assert_eq!(lookups_during, 0, "no lookup before the API is back");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_pause_the_run_until_the_server_listens_again() {
    let sim = simulator(outage_sim(OutageKind::Refused, Duration::from_millis(1500))).await;
    let (input, _) = generated_input(ROWS, 0);
    let out = import(&sim, &input, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_each_row_created_once(&sim, ROWS);
    assert_eq!(err.matches("the API is not answering").count(), 1, "{err}");
    assert_eq!(err.matches("the API answers again").count(), 1, "{err}");
    let (kind, start, end) = sim.sim.outage_window().expect("the outage happened");
    assert_eq!(kind, OutageKind::Refused);
    let arrived_during = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.at >= start && r.at < end && r.outcome != RequestOutcome::Outage)
        .count();
    // (A request already on an open connection when the listener closes is cut, not served.)
    assert_eq!(arrived_during, 0, "nothing gets through while refused");
    let summary = summary_json(&input);
    assert_eq!(summary["outages"], 1);
    assert!(summary["probe_calls"].as_u64().expect("probe_calls") >= 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_the_patience_stops_cleanly_and_the_resume_finishes_once() {
    let sim = simulator(outage_sim(OutageKind::Plain500, Duration::from_secs(600))).await;
    let (input, _) = generated_input(ROWS, 0);
    let out = import(&sim, &input, &["--outage-patience", "1s"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("--outage-patience"), "{err}");
    let rows = read_report(&input.report_path());
    assert_eq!(rows.len(), ROWS, "the report accounts for every row");
    let created = rows.iter().filter(|r| r["Status"] == "created").count();
    assert!(created < ROWS, "the outage stopped the run");
    assert_eq!(summary_json(&input)["status"], "aborted");

    sim.sim.end_outage();
    let out = import(&sim, &input, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming run"), "{}", stderr(&out));
    assert_each_row_created_once(&sim, ROWS);
    let rows = read_report(&input.report_path());
    assert!(rows.iter().all(|r| r["Status"] == "created"));
    sim.shutdown().await;
}
