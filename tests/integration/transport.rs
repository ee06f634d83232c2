//! Transport rules end to end: plain http only to loopback unless `--allow-insecure-http`,
//! webhook URLs checked before any call, an untrusted certificate named as such, servers that
//! never answer or drip bytes cannot hang a run, and the simulator listens on loopback only.

use std::time::{Duration, Instant};

use lsq_sync::simulator::{SimConfig, demo_lead_id};

use crate::stub::{drip_server, self_signed_tls_server, silent_server, url_of};
use crate::support::*;

/// Flags that keep a run against a broken server short. A server that never answers is an
/// outage to lsq-sync (every call times out), so the patience bounds the wait for it.
const IMPATIENT: [&str; 8] = [
    "--max-attempts",
    "1",
    "--connect-timeout",
    "1s",
    "--request-timeout",
    "1s",
    "--outage-patience",
    "3s",
];

/// Far above what a run with [`IMPATIENT`] needs (the post, two probes that time out, then the
/// 3 s patience with probes of 1 s timeouts), far below "hung".
const RUN_BOUND: Duration = Duration::from_secs(20);

fn one_row_input() -> Input {
    write_input(&format!(
        "RelatedProspectId,ActivityEvent,ActivityNote\n{},201,transport\n",
        demo_lead_id(2)
    ))
}

fn sim_config() -> SimConfig {
    SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_a_remote_host_is_refused_unless_allowed() {
    let sim = simulator(sim_config()).await;
    let input = one_row_input();
    // 0.0.0.0 is not a loopback address, yet on this machine a connection to it reaches the
    // simulator: the flag can be shown to work without leaving the machine.
    let remote = format!("http://0.0.0.0:{}", sim.addr.port());
    let args = [
        "import",
        "input.csv",
        "--out",
        "report.csv",
        "--host",
        &remote,
    ];

    let refused = run_cli(input.dir.path(), &args, &[]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--allow-insecure-http"),
        "{}",
        stderr(&refused)
    );
    assert!(sim.sim.requests().is_empty(), "nothing may be sent");

    let mut allowed_args = vec!["--allow-insecure-http"];
    allowed_args.extend(args);
    let allowed = run_cli(input.dir.path(), &allowed_args, &[]).await;
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert_eq!(posted_activities(&sim).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_webhook_urls_are_refused_before_any_call() {
    let sim = simulator(sim_config()).await;
    let dir = tempfile::tempdir().expect("dir");
    let lead = demo_lead_id(3);
    let url = sim.base_url();
    for (webhook, expected) in [
        ("http://hooks.example.com/lsq", "only https://"),
        (
            "https://user:hunter2@hooks.example.com/lsq",
            "user name or password",
        ),
        ("https:///lsq", "no host"),
        ("hooks.example.com/lsq", "not a URL"),
    ] {
        let line = format!(
            "delete-activities --leads {lead} --events 201 --yes --out results.csv --host {url}"
        );
        let mut args: Vec<&str> = line.split(' ').collect();
        args.extend(["--webhook", webhook]);
        let output = run_cli(dir.path(), &args, &[]).await;
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{webhook}: {text}");
        assert!(text.contains(expected), "{webhook}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert!(sim.sim.requests().is_empty(), "nothing may be sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_named_and_stops_the_run() {
    let port = self_signed_tls_server();
    let input = one_row_input();
    let host = format!("https://localhost:{port}");
    let mut args = vec![
        "import",
        "input.csv",
        "--out",
        "report.csv",
        "--host",
        &host,
    ];
    args.extend(IMPATIENT);
    let output = tokio::time::timeout(RUN_BOUND, run_cli(input.dir.path(), &args, &[]))
        .await
        .expect("the run ends");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("certificate of localhost"), "{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(
        !text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY),
        "{text}"
    );
    let report = read_report(&input.report_path());
    assert_eq!(report[0]["Status"], "failed");
    assert!(report[0]["Error"].contains("not trusted"), "{report:?}");
}

/// Imports one row into `host` and checks the run ended within [`RUN_BOUND`] with the row
/// failed as outcome-unknown.
async fn run_cannot_hang(host: &str) {
    let input = one_row_input();
    let mut args = vec!["import", "input.csv", "--out", "report.csv", "--host", host];
    args.extend(IMPATIENT);
    let started = Instant::now();
    let output = tokio::time::timeout(RUN_BOUND, run_cli(input.dir.path(), &args, &[]))
        .await
        .expect("the run ends although the server never finishes an answer");
    let text = stderr(&output);
    // Exit 3: a row whose fate could not be settled stops the run, to be resumed later.
    assert_eq!(output.status.code(), Some(3), "{text}");
    let report = read_report(&input.report_path());
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["Status"], "failed");
    assert!(
        report[0]["Error"].contains("outcome unknown"),
        "{:?}",
        report[0]
    );
    assert!(
        started.elapsed() < RUN_BOUND,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_cannot_hang_the_run() {
    run_cannot_hang(&url_of(silent_server().await)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_drips_a_byte_a_second_cannot_hang_the_run() {
    run_cannot_hang(&url_of(drip_server().await)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    for address in ["0.0.0.0", "192.0.2.1", "::", "example.com"] {
        let output = tokio::time::timeout(
            RUN_BOUND,
            run_cli(dir.path(), &["simulate", "--bind", address], &[]),
        )
        .await
        .expect("refused at once, not serving");
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{address}: {text}");
        assert!(text.contains("loopback only"), "{address}: {text}");
        assert!(text.contains(address), "{address}: {text}");
    }
}
