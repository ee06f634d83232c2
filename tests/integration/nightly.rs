//! Unattended runs through the binary against the simulator: the summary JSON, the
//! `--max-invalid` gate, the HTML report, and what cron mail sees on stderr.

use std::collections::HashMap;

use lsq_sync::simulator::{SimConfig, demo_lead_id};

use crate::support::*;

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn status_counts(rows: &[ReportRow]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for row in rows {
        *counts.entry(row["Status"].clone()).or_insert(0) += 1;
    }
    counts
}

fn fast() -> SimConfig {
    SimConfig {
        rate: Some("100/1s".parse().expect("quota")),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_summary_json_matches_the_report_and_stderr_ends_with_one_status_line() {
    let sim = simulator(fast()).await;
    let (input, _) = generated_input(120, 9);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--rate", "100/1s", "--summary-json", "summary.json"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let rows = read_report(&input.report_path());
    let counts = status_counts(&rows);
    let json = read_json(&input.dir.path().join("summary.json"));
    assert_eq!(json["version"], 1);
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["status"], "done_with_errors");
    assert_eq!(json["rows_total"], rows.len() as u64);
    for status in ["created", "failed", "invalid", "skipped"] {
        assert_eq!(
            json["counts"][status].as_u64(),
            Some(counts.get(status).copied().unwrap_or(0)),
            "{status}: {json}"
        );
    }
    assert_eq!(json["counts"]["invalid"], 13);
    assert_eq!(
        json["calls"].as_u64(),
        Some(sim.sim.requests().len() as u64)
    );
    assert_eq!(json["quota_configured"], "100/1s");
    assert_eq!(json["report"], "report.csv");
    assert_eq!(json["ledger"], "report.csv.ledger");
    assert!(
        json["started_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(json["finished_at"].as_str() >= json["started_at"].as_str());

    // No terminal: no progress bar, no colour, and the last line is the whole verdict.
    let text = stderr(&out);
    assert!(!text.contains('\u{1b}') && !text.contains("ETA"), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("DONE WITH ERRORS: ") && last.contains("13 invalid"),
        "{last}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_by_refused_keys_still_writes_its_summary() {
    let sim = simulator(fast()).await;
    let (input, _) = generated_input(30, 0);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--summary-json", "summary.json"],
        &[("LSQ_SECRET_KEY", "not-the-secret")],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json = read_json(&input.dir.path().join("summary.json"));
    assert_eq!(
        (json["exit_code"].as_u64(), json["status"].as_str()),
        (Some(3), Some("aborted"))
    );
    assert!(
        json["stop_reason"]
            .as_str()
            .is_some_and(|r| r.contains("401")),
        "{json}"
    );
    assert_eq!(json["counts"]["failed"], 30);
    assert!(
        !std::fs::read_to_string(input.dir.path().join("summary.json"))
            .unwrap_or_default()
            .contains("not-the-secret")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_invalid_stops_before_sending_and_reports_every_row() {
    let sim = simulator(fast()).await;
    // 100 rows, every 10th invalid: 10%.
    let (input, valid) = generated_input(100, 10);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--max-invalid", "9.5", "--summary-json", "summary.json"],
        &[],
    )
    .await;
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("10 of 100 rows (10.0%) are invalid, more than --max-invalid 9.5%"),
        "{text}"
    );
    assert!(sim.sim.requests().is_empty(), "nothing may be sent");

    let rows = read_report(&input.report_path());
    assert_eq!(rows.len(), 100);
    for (row, valid) in rows.iter().zip(&valid) {
        if *valid {
            assert_eq!(row["Status"], "failed", "{row:?}");
            assert!(row["Error"].starts_with("not sent"), "{row:?}");
        } else {
            assert_eq!(row["Status"], "invalid", "{row:?}");
        }
    }
    let json = read_json(&input.dir.path().join("summary.json"));
    assert_eq!(json["exit_code"], 2);
    assert_eq!(json["status"], "too_many_invalid");
    assert_eq!(json["calls"], 0);

    // At or under the limit (also from the config file) the run goes ahead.
    std::fs::write(
        input.dir.path().join("nightly.toml"),
        "[nightly]\nmax_invalid = 10\n",
    )
    .expect("write config");
    let out = import_into(
        &sim,
        &input,
        &["--config", "nightly.toml"],
        &["--rate", "100/1s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(posted_activities(&sim).len(), 90);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_report_has_counts_chart_and_error_groups_and_escapes_the_data() {
    let sim = simulator(fast()).await;
    let mut text = String::from("RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n");
    for n in 0..40 {
        text.push_str(&format!(
            "{},201,note {n},2024-05-01 10:{:02}:00\n",
            demo_lead_id(n % 50),
            n
        ));
    }
    text.push_str(&format!(
        "{},201,x,<script>alert('pwned')</script>\n",
        demo_lead_id(1)
    ));
    text.push_str("not-a-guid,201,y,2024-05-01 10:00:00\n");
    text.push_str("not-a-guid,201,z,2024-05-01 10:00:00\n");
    let input = write_input(&text);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--rate", "100/1s", "--html-report", "report.html"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let html = std::fs::read_to_string(input.dir.path().join("report.html")).expect("html");

    assert!(html.contains("id=\"count-rows\"><b>43</b>"), "{html}");
    assert!(html.contains("id=\"count-created\"><b>40</b>"), "{html}");
    assert!(html.contains("id=\"count-invalid\"><b>3</b>"), "{html}");
    assert!(html.contains("<svg id=\"throughput\""), "{html}");
    let charted: u64 = html
        .split("data-rows=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(charted, 40, "every created row is in the chart");
    // The two bad GUIDs share a message: one group of 2 with both row numbers.
    let guid_group = html
        .lines()
        .find(|l| l.contains("class=\"error-group\"") && l.contains("RelatedProspectId"))
        .unwrap_or_else(|| panic!("{html}"));
    assert!(
        guid_group.contains("<td class=\"n\">2</td>") && guid_group.contains("42, 43"),
        "{guid_group}"
    );
    // The hostile cell is shown, escaped, never as markup.
    assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;pwned&#39;)"),
        "{html}"
    );
    assert!(!html.contains(ACCESS_KEY) && !html.contains(SECRET_KEY));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_and_dry_run_write_a_summary_json_of_valid_and_invalid_rows() {
    // 40 rows, every 8th invalid: 5 invalid, 35 valid.
    let (input, valid) = generated_input(40, 8);
    let invalid = valid.iter().filter(|v| !**v).count() as u64;
    let command_lines: [&[&str]; 2] = [
        &["validate", "input.csv", "--out", "checked.csv"],
        &["import", "input.csv", "--out", "checked.csv", "--dry-run"],
    ];
    for words in command_lines {
        let mut args = words.to_vec();
        args.extend(["--summary-json", "summary.json"]);
        let out = run_cli(input.dir.path(), &args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{words:?}: {}", stderr(&out));
        let json = read_json(&input.dir.path().join("summary.json"));
        assert_eq!(json["command"], "validate", "{words:?}");
        assert_eq!(json["status"], "invalid_rows");
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["rows_total"], 40);
        assert_eq!(json["counts"]["valid"], 40 - invalid);
        assert_eq!(json["counts"]["invalid"], invalid);
        assert!(json["duration_seconds"].as_f64().is_some(), "{json}");
        // The status line of the summary is the last line on stderr.
        assert_eq!(
            json["status_line"].as_str(),
            stderr(&out).lines().last(),
            "{words:?}"
        );
        std::fs::remove_file(input.dir.path().join("summary.json")).expect("remove");
    }
    assert_eq!(invalid, 5);
    // The page charts calls; a dry run makes none, so asking for one is a usage error.
    let with_page = [
        "import",
        "input.csv",
        "--out",
        "checked.csv",
        "--dry-run",
        "--html-report",
        "page.html",
    ];
    let out = run_cli(input.dir.path(), &with_page, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--html-report"), "{}", stderr(&out));
    assert!(!input.dir.path().join("page.html").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_reports_every_row_valid_or_invalid_and_writes_no_ledger() {
    let (input, valid) = generated_input(30, 7);
    let out = run_cli(
        input.dir.path(),
        &["validate", "input.csv", "--out", "checked.csv"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = read_report(&input.dir.path().join("checked.csv"));
    assert_eq!(rows.len(), valid.len(), "one line per input row");
    for (i, (row, valid)) in rows.iter().zip(&valid).enumerate() {
        assert_eq!(row["RowNumber"], (i + 1).to_string());
        if *valid {
            assert_eq!(row["Status"], "valid", "row {}", i + 1);
            assert_eq!(row["Error"], "");
        } else {
            assert_eq!(row["Status"], "invalid", "row {}", i + 1);
            assert!(!row["Error"].is_empty(), "row {} says why", i + 1);
        }
    }
    // Nothing was sent (no host was even given) and nothing was recorded.
    assert!(!input.dir.path().join("checked.csv.ledger").exists());
}
