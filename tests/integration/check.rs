//! `lsq-sync check` through the binary against the simulator: keys, host advice, and the
//! input's activity codes and custom fields.

use std::process::Output;

use lsq_sync::simulator::{RunningSimulator, SimConfig, demo_lead_id};

use crate::support::{Input, run_cli, simulator, stderr, write_input};

/// A simulator that names itself as the account's host, as the real API names the right one.
fn own_host() -> SimConfig {
    SimConfig {
        account_host: String::new(),
        ..SimConfig::default()
    }
}

/// `lsq-sync check --host SIM --input input.csv` in the input's folder.
async fn check_input(sim: &RunningSimulator, input: &Input) -> Output {
    let url = sim.base_url();
    let args = ["check", "--host", &url, "--input", "input.csv"];
    run_cli(input.dir.path(), &args, &[]).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn good_keys_on_the_right_host_pass() {
    let sim = simulator(own_host()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sim.base_url();
    let output = run_cli(dir.path(), &["check", "--host", &url], &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("OK   keys: accepted"), "{text}");
    assert!(text.contains("OK   host:"), "{text}");
    assert!(text.contains("all 2 checks passed"), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_key_exits_3_without_showing_it() {
    let sim = simulator(own_host()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sim.base_url();
    let wrong = "wrong-access-key-Q9X7";
    let output = run_cli(
        dir.path(),
        &["check", "--host", &url],
        &[("LSQ_ACCESS_KEY", wrong)],
    )
    .await;
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("FAIL keys: HTTP 401"), "{text}");
    assert!(text.contains("LSQ_ACCESS_KEY"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_host_of_another_region_is_named_with_the_right_one() {
    let sim = simulator(SimConfig {
        account_host: "api-us11.leadsquared.com".into(),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = sim.base_url();
    let output = run_cli(dir.path(), &["check", "--host", &url], &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL host: the account belongs to https://api-us11.leadsquared.com")
            && text.contains("use --host https://api-us11.leadsquared.com"),
        "{text}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_codes_and_fields_of_the_input_are_named() {
    let sim = simulator(own_host()).await;
    let input = write_input(&format!(
        "RelatedProspectId,ActivityEvent,mx_Custom_1,mx_Custom_9\n\
         {a},201,one,\n\
         {b},299,two,\n\
         {c},202,,nine\n\
         {c},203,three,\n",
        a = demo_lead_id(1),
        b = demo_lead_id(2),
        c = demo_lead_id(3),
    ));
    let output = check_input(&sim, &input).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    assert!(text.contains("OK   activity code 201"), "{text}");
    assert!(text.contains("OK   activity code 203"), "{text}");
    assert!(
        text.contains("FAIL activity code 299: not an activity type of this account"),
        "{text}"
    );
    assert!(
        text.contains("FAIL activity code 202: Product Demo: mx_Custom_9 is not a field"),
        "{text}"
    );
    assert!(text.contains("2 of 7 checks failed"), "{text}");
    // Nothing but the two read-only calls.
    let paths: Vec<String> = sim.sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_input_without_a_required_column_is_a_usage_error() {
    let sim = simulator(own_host()).await;
    let input = write_input("ActivityEvent\n201\n");
    let output = check_input(&sim, &input).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("RelatedProspectId"),
        "{}",
        stderr(&output)
    );
    assert!(sim.sim.requests().is_empty());
    sim.shutdown().await;
}
