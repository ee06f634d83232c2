//! `lsq-sync import` end to end: the binary against the simulator.

use std::collections::HashMap;
use std::time::Duration;

use lsq_sync::lsq::quota::RateQuota;
use lsq_sync::simulator::{FaultConfig, RateLimitStyle, RequestOutcome, SimConfig};

use crate::support::*;

fn quota(text: &str) -> Option<RateQuota> {
    Some(text.parse().expect("quota"))
}

/// A config file with short backoffs, so retry tests do not wait long.
fn fast_retry_config(dir: &std::path::Path) -> String {
    let path = dir.join("fast.toml");
    std::fs::write(
        &path,
        "[retry]\nmax_attempts = 12\nbackoff_base = \"20ms\"\nbackoff_max = \"300ms\"\n",
    )
    .expect("write config");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_row_is_reported_once_in_order_and_ids_match_the_server() {
    let sim = simulator(SimConfig {
        rate: quota("100/1s"),
        ..SimConfig::default()
    })
    .await;
    let (input, valid) = generated_input(300, 7);
    let report = input.report_path();
    let out = import_into(&sim, &input, &[], &["--rate", "100/1s"], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "some rows are invalid: {}",
        stderr(&out)
    );

    let rows = read_report(&report);
    assert_eq!(rows.len(), 300);
    let activities: HashMap<String, _> = posted_activities(&sim)
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let n = i + 1;
        assert_eq!(row["RowNumber"], n.to_string());
        assert_eq!(
            row["Batch"],
            format!("b{}", n / 25),
            "input columns carried over"
        );
        if valid[i] {
            assert_eq!(row["Status"], "created", "row {n}: {row:?}");
            let activity = &activities[&row["ProspectActivityId"]];
            assert_eq!(
                activity.note.as_deref(),
                Some(format!("note {n}, \"quoted\"").as_str()),
                "row {n}"
            );
            assert_eq!(
                activity.fields.get("mx_Custom_1").map(String::as_str),
                Some(format!("v{n}").as_str())
            );
            assert_eq!(activity.lead_id, row["RelatedProspectId"]);
        } else {
            assert_eq!(row["Status"], "invalid", "row {n}");
            assert!(
                row["Error"].starts_with("ActivityEvent: \"2O1\""),
                "{}",
                row["Error"]
            );
            assert!(row["ProspectActivityId"].is_empty());
        }
    }
    let valid_count = valid.iter().filter(|v| **v).count();
    assert_eq!(activities.len(), valid_count, "one activity per valid row");
    let posted: usize = sim.sim.requests().iter().map(|r| r.items).sum();
    assert_eq!(posted, valid_count, "invalid rows never reach the server");
    assert!(sim.sim.requests().iter().all(|r| r.items <= 25));

    let err = stderr(&out);
    for part in [
        "rows read 300",
        &format!("created {valid_count}"),
        "invalid 42",
        "calls made 11",
        "429s seen 0",
        "rows/s",
    ] {
        assert!(err.contains(part), "summary lacks {part:?}: {err}");
    }
}

async fn created_exactly_once_despite(style: RateLimitStyle) {
    let sim = simulator(SimConfig {
        rate: quota("20/1s"),
        rate_limit_style: style,
        faults: FaultConfig {
            plain_500: 0.2,
            drop_connection: 0.1,
            seed: 7,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(500, 0);
    let config = fast_retry_config(input.dir.path());
    // The client is told the quota is twice what the account has: it will be rate limited.
    let out = import_into(
        &sim,
        &input,
        &["--config", &config],
        &["--rate", "40/1s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_report(&input.report_path());
    assert_eq!(rows.len(), 500);
    assert!(rows.iter().all(|r| r["Status"] == "created"));

    let mut per_note: HashMap<String, usize> = HashMap::new();
    for a in posted_activities(&sim) {
        *per_note.entry(a.note.unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(per_note.len(), 500);
    assert!(per_note.values().all(|&n| n == 1), "no row created twice");
    let stats = sim.sim.stats();
    assert!(
        stats.rate_limited > 0,
        "the test must provoke rate limits: {stats:?}"
    );
    assert!(stats.faults > 0, "the test must provoke faults: {stats:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("429s seen {}", stats.rate_limited)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_429s_500s_and_drops_every_valid_row_is_created_exactly_once() {
    created_exactly_once_despite(RateLimitStyle::Http429).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_reported_as_http_200_are_retried_too() {
    created_exactly_once_despite(RateLimitStyle::Http200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_window_ever_holds_more_than_the_quota() {
    let sim = simulator(SimConfig {
        rate: quota("10/500ms"),
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(1000, 0);
    // The server counts arrival times. Tests share two cores with other tests, so allow 10% of
    // scheduling jitter (the default margin of 2% is meant for a quiet machine and a real network).
    let config = input.dir.path().join("margin.toml");
    std::fs::write(&config, "[pacing]\nmargin = 0.1\n").expect("config");
    let config = config.display().to_string();
    let out = import_into(
        &sim,
        &input,
        &["--config", &config],
        &["--rate", "10/500ms"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests = sim.sim.requests();
    assert_eq!(requests.len(), 40);
    assert!(requests.iter().all(|r| r.outcome == RequestOutcome::Ok));
    let max = sim
        .sim
        .max_requests_in_any_window(Duration::from_millis(500));
    assert!(max <= 10, "{max} requests in one 500 ms window");
    assert!(max >= 9, "the quota should be used, not wasted: max {max}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_abort_with_exit_3_and_a_full_report() {
    let sim = simulator(SimConfig {
        rate: quota("100/1s"),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(200, 0);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--rate", "100/1s"],
        &[("LSQ_SECRET_KEY", "wrong-Secret-9d8c7b")],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("HTTP 401") && err.contains("ABORTED"), "{err}");
    assert!(
        !err.contains("wrong-Secret-9d8c7b"),
        "the secret must never be printed"
    );
    let rows = read_report(&input.report_path());
    assert_eq!(rows.len(), 200, "every row accounted for");
    assert!(rows.iter().all(|r| r["Status"] == "failed"));
    assert!(posted_activities(&sim).is_empty());
    assert!(
        sim.sim.requests().len() < 8,
        "stops soon after the 401: {}",
        sim.sim.requests().len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_required_column_is_exit_2_before_any_call() {
    let sim = simulator(SimConfig::default()).await;
    let input = write_input("RelatedProspectId,Note\n3aee22bd-8419-422a-8242-c510df9af021,hi\n");
    let out = import_into(&sim, &input, &[], &[], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("input.csv") && err.contains("required column ActivityEvent is missing"),
        "{err}"
    );
    assert!(sim.sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_input_file_and_missing_host_are_exit_2() {
    let input = write_input("RelatedProspectId,ActivityEvent\n");
    let out = run_cli(
        input.dir.path(),
        &[
            "import",
            "nope.csv",
            "--out",
            "r.csv",
            "--host",
            "http://127.0.0.1:9",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot open nope.csv"),
        "{}",
        stderr(&out)
    );
    // The cause is said once, not once by the message and again by the error chain.
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );

    let out = run_cli(
        input.dir.path(),
        &["import", "input.csv", "--out", "r.csv"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no API host"), "{}", stderr(&out));

    let out = run_cli(
        input.dir.path(),
        &[
            "import",
            "input.csv",
            "--out",
            "r.csv",
            "--host",
            "http://api.leadsquared.com",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("only https://"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn all_rows_created_exits_0() {
    let sim = simulator(SimConfig {
        rate: quota("100/1s"),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(60, 0);
    let out = import_into(&sim, &input, &[], &["--rate", "100/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("OK: all 60 rows created"));
    assert_eq!(posted_activities(&sim).len(), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn simulate_imports_the_sample_and_the_report_shows_every_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/activities.csv");
    let report = dir.path().join("report.csv");
    let out = run_cli(
        dir.path(),
        &[
            "import",
            &sample.display().to_string(),
            "--out",
            "report.csv",
            "--simulate",
            "--rate",
            "100/1s",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = read_report(&report);
    let input_rows = csv::Reader::from_path(&sample)
        .expect("sample")
        .records()
        .count();
    assert_eq!(rows.len(), input_rows);
    for status in ["created", "failed", "invalid"] {
        assert!(
            rows.iter().any(|r| r["Status"] == status),
            "no {status} row"
        );
    }
    assert!(
        rows.iter()
            .filter(|r| r["Status"] == "created")
            .all(|r| r["ProspectActivityId"].len() == 36)
    );
    assert!(
        rows.iter()
            .filter(|r| r["Status"] != "created")
            .all(|r| !r["Error"].is_empty())
    );
}
