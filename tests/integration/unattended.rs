//! What an unattended run tells the outside world: the summary posted to a webhook (a loopback
//! HTTP receiver here), a Prometheus textfile, shell completions and the man page, `-q`.

use std::collections::HashMap;

use lsq_sync::simulator::SimConfig;
use tokio::sync::mpsc;

use crate::support::*;

/// A loopback HTTP receiver: every body POSTed to `/hook` arrives on the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Parses a Prometheus text file into `name{labels}` -> value, checking every line's form.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut metrics = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        assert!(
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "{line:?}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        metrics.insert(name.to_string(), value);
    }
    metrics
}

#[tokio::test(flavor = "multi_thread")]
async fn the_summary_is_posted_and_the_metrics_file_holds_the_run() {
    let sim = simulator(SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        ..SimConfig::default()
    })
    .await;
    let (hook, mut bodies) = receiver().await;
    let (input, _) = generated_input(60, 7);
    let out = import_into(
        &sim,
        &input,
        &[],
        &[
            "--rate",
            "1000/1s",
            "--notify-url",
            &hook,
            "--metrics-file",
            "lsq.prom",
        ],
        &[],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("DONE WITH ERRORS"),
        "the status line stays last: {err}"
    );

    // A failed run is posted under the default (--notify-on change).
    let body = bodies
        .try_recv()
        .expect("the summary was posted before the run ended");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["version"], 1);
    assert_eq!(json["status"], "done_with_errors");
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["counts"]["created"], 52);
    assert_eq!(json["counts"]["invalid"], 8);
    assert!(
        json["text"]
            .as_str()
            .is_some_and(|t| t.contains("52 of 60")),
        "{json}"
    );
    assert!(!body.contains(SECRET_KEY) && !body.contains(ACCESS_KEY));

    let text = std::fs::read_to_string(input.dir.path().join("lsq.prom")).expect("metrics");
    let metrics = parse_metrics(&text);
    assert_eq!(metrics["lsq_sync_last_run_rows{status=\"created\"}"], 52.0);
    assert_eq!(metrics["lsq_sync_last_run_rows{status=\"invalid\"}"], 8.0);
    assert_eq!(metrics["lsq_sync_last_run_rows{status=\"failed\"}"], 0.0);
    assert_eq!(metrics["lsq_sync_last_run_exit_code"], 1.0);
    assert_eq!(
        metrics["lsq_sync_last_run_calls"],
        json["calls"].as_f64().expect("calls")
    );
    assert_eq!(metrics["lsq_sync_last_run_rate_limited_calls"], 0.0);
    assert_eq!(metrics["lsq_sync_last_run_retries"], 0.0);
    assert!(metrics["lsq_sync_last_run_duration_seconds"] > 0.0);
    assert!(!metrics.contains_key("lsq_sync_last_success_timestamp_seconds"));
    let completed = metrics["lsq_sync_last_completed_timestamp_seconds"];
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - completed).abs() < 120.0, "{completed} vs {now}");
    let leftovers: Vec<_> = std::fs::read_dir(input.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "written via a renamed temp file");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_is_down_is_logged_and_changes_nothing() {
    let sim = simulator(SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        ..SimConfig::default()
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let hook = format!("http://127.0.0.1:{closed}/hook");
    let (input, _) = generated_input(30, 0);
    let out = import_into(
        &sim,
        &input,
        &[],
        &[
            "--rate",
            "1000/1s",
            "--notify-url",
            &hook,
            "--notify-on",
            "always",
        ],
        &[],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("notify: posting the summary to 127.0.0.1 failed"),
        "{err}"
    );
    assert!(err.trim_end().ends_with("OK: all 30 rows created"), "{err}");

    // Not https and not loopback: refused before anything is read or sent.
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--notify-url", "http://hooks.example.com/x", "--fresh"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--notify-url:"), "{}", stderr(&out));
    assert_eq!(posted_activities(&sim).len(), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_on_change_stays_quiet_while_all_is_well_and_quiet_prints_one_line() {
    let sim = simulator(SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        ..SimConfig::default()
    })
    .await;
    let (hook, mut bodies) = receiver().await;
    let (input, _) = generated_input(20, 0);
    for round in 0..2 {
        let out = import_into(
            &sim,
            &input,
            &["-q"],
            &["--rate", "1000/1s", "--notify-url", &hook, "--fresh"],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "OK: all 20 rows created\n",
            "round {round}: -q prints only the status line"
        );
    }
    assert!(bodies.try_recv().is_err(), "ok after ok is not news");
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_parse_in_bash_and_the_man_page_is_roff() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_cli(dir.path(), &["completions", "bash"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = dir.path().join("lsq-sync.bash");
    std::fs::write(&script, &out.stdout).expect("write");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--from-postgres"));
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourcing it registers the completion function.
    let sourced = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p lsq-sync",
            script.display()
        ))
        .output()
        .expect("bash");
    assert!(
        sourced.status.success(),
        "{}",
        String::from_utf8_lossy(&sourced.stderr)
    );

    let out = run_cli(dir.path(), &["man"], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH lsq-sync 1"), "{page}");
    assert!(page.contains("import"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_cannot_start_is_posted_as_an_error_and_keeps_the_last_success() {
    let (hook, mut bodies) = receiver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("lsq.prom");
    std::fs::write(
        &metrics,
        "# TYPE lsq_sync_last_success_timestamp_seconds gauge\n\
         lsq_sync_last_success_timestamp_seconds 1700000000\n",
    )
    .expect("an earlier run's metrics");
    let out = run_cli(
        dir.path(),
        &[
            "import",
            "missing.csv",
            "--out",
            "report.csv",
            "--host",
            "http://127.0.0.1:9",
            "--notify-url",
            &hook,
            "--notify-on",
            "failure",
            "--metrics-file",
            "lsq.prom",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let body = bodies.try_recv().expect("posted");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "error");
    assert_eq!(json["exit_code"], 2);
    assert!(
        json["text"]
            .as_str()
            .is_some_and(|t| t.contains("missing.csv")),
        "{json}"
    );
    let parsed = parse_metrics(&std::fs::read_to_string(&metrics).expect("metrics"));
    assert_eq!(parsed["lsq_sync_last_run_exit_code"], 2.0);
    assert_eq!(
        parsed["lsq_sync_last_success_timestamp_seconds"],
        1_700_000_000.0
    );
    assert!(!parsed.contains_key("lsq_sync_last_run_calls"));
}
