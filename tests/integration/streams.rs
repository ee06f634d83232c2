//! Inputs that are streamed: a JSON Lines file piped through `import -`, and a resume of a
//! stdin run from its snapshot without reading standard input again.

use std::process::Stdio;

use lsq_sync::simulator::{SimConfig, demo_lead_id};
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// Runs `lsq-sync ARGS` in `dir` with `stdin` piped in.
async fn run_with_stdin(
    dir: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) -> std::process::Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lsq-sync"))
        .args(args)
        .current_dir(dir)
        .env("LSQ_ACCESS_KEY", ACCESS_KEY)
        .env("LSQ_SECRET_KEY", SECRET_KEY)
        .env_remove("LSQ_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin).await.expect("write stdin");
    drop(pipe);
    child.wait_with_output().await.expect("wait")
}

/// `rows` JSON Lines over the demo leads: numbers, a boolean, a null and a missing key.
fn jsonl(rows: usize) -> String {
    (1..=rows)
        .map(|n| {
            let extra = if n % 2 == 0 {
                ",\"Flag\":true,\"mx_Custom_2\":null"
            } else {
                ""
            };
            format!(
                "{{\"RelatedProspectId\":\"{}\",\"ActivityEvent\":201,\"ActivityNote\":\"json {n}, \\\"quoted\\\"\",\"ActivityDateTime\":\"2024-05-01 10:{:02}:00\",\"mx_Custom_1\":{:?}{extra}}}\n",
                demo_lead_id(n % 50),
                n % 60,
                n as f64 / 2.0
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_lines_file_piped_through_import_dash_is_imported_and_resumable() {
    let sim = simulator(SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = sim.base_url();
    let input = jsonl(120);
    let args = [
        "import",
        "-",
        "--format",
        "jsonl",
        "--out",
        "report.csv",
        "--host",
        &host,
        "--rate",
        "1000/1s",
    ];
    let out = run_with_stdin(dir.path(), &args, input.as_bytes()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "stdout stays for data");

    let created = posted_activities(&sim);
    assert_eq!(created.len(), 120);
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 120);
    assert!(rows.iter().all(|r| r["Status"] == "created"));
    assert_eq!(rows[0]["ActivityNote"], "json 1, \"quoted\"");
    assert_eq!(rows[0]["mx_Custom_1"], "0.5");
    assert_eq!(
        rows[1]["mx_Custom_1"], "1.0",
        "a fraction stays as JSON wrote it"
    );
    assert_eq!(
        (rows[0]["Flag"].as_str(), rows[1]["Flag"].as_str()),
        ("", "true")
    );
    let snapshot = dir.path().join("report.csv.ledger.stdin.jsonl");
    assert_eq!(
        std::fs::read_to_string(&snapshot).expect("snapshot"),
        input,
        "the snapshot is what was read"
    );

    // The same command again after the run finished: a new snapshot of the same rows, nothing
    // sent twice.
    let out = run_with_stdin(dir.path(), &args, input.as_bytes()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(posted_activities(&sim).len(), 120, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_json_line_stops_the_run_naming_the_line_and_column_and_nothing_is_sent() {
    let sim = simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = sim.base_url();
    let mut input = jsonl(3);
    input.push_str("{\"RelatedProspectId\":{\"id\":1},\"ActivityEvent\":201}\n");
    let args = [
        "import",
        "-",
        "--format",
        "jsonl",
        "--out",
        "report.csv",
        "--host",
        &host,
    ];
    let out = run_with_stdin(dir.path(), &args, input.as_bytes()).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("stdin.jsonl: cannot read line 4: column \"RelatedProspectId\""),
        "{err}"
    );

    let out = run_with_stdin(dir.path(), &args, b"{\"a\":1}\nnot json\n").await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2: not a JSON object"), "{err}");
    assert!(sim.sim.requests().is_empty(), "nothing was sent");
}
