//! Certainty at scale: calls that fail after the server applied them, over many leads, are
//! settled by reading each activity code's recent activities account-wide (far fewer reads than
//! leads in doubt), with nothing lost and nothing doubled; and when the server lists no notes,
//! by reading the leads as before.

use std::collections::HashMap;

use lsq_sync::simulator::{ByEventNote, DEMO_OWNERS, FaultConfig, RunningSimulator, SimConfig};

use crate::support::*;

/// `rows` rows spread over `leads` leads the simulator accepts (`accept_any_lead`), the five
/// demo codes in turn, each row with a unique note, all dated in 2024 (so any of them can serve
/// as a canary).
fn rows_over_many_leads(rows: usize, leads: usize) -> Input {
    let mut text = String::from(
        "RelatedProspectId,ActivityEvent,ActivityNote,ActivityOwnerEmail,ActivityDateTime\n",
    );
    for n in 1..=rows {
        text.push_str(&format!(
            "00000000-0000-4000-8000-{:012},{},note {n},{},2024-05-{:02} 10:{:02}:00\n",
            (n * 7919) % leads,
            201 + n % 5,
            DEMO_OWNERS[n % DEMO_OWNERS.len()],
            1 + n % 28,
            n % 60,
        ));
    }
    write_input(&text)
}

fn fast_retries(input: &Input) -> String {
    let path = input.dir.path().join("fast.toml");
    std::fs::write(
        &path,
        "[retry]\nmax_attempts = 30\nbackoff_base = \"10ms\"\nbackoff_max = \"100ms\"\n[ledger]\ndurability = \"normal\"\n",
    )
    .expect("write config");
    path.display().to_string()
}

/// Server activities per note: exactly one for each of `rows` rows, and every report id one of
/// them with the row's note.
fn assert_each_row_once(sim: &RunningSimulator, input: &Input, rows: usize) {
    let mut per_note: HashMap<String, usize> = HashMap::new();
    let mut note_of: HashMap<String, String> = HashMap::new();
    for a in posted_activities(sim) {
        let note = a.note.unwrap_or_default();
        *per_note.entry(note.clone()).or_default() += 1;
        note_of.insert(a.id, note);
    }
    assert_eq!(per_note.len(), rows, "nothing lost");
    let doubled: Vec<_> = per_note.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "duplicates: {doubled:?}");
    let report = read_report(&input.report_path());
    assert_eq!(report.len(), rows);
    for row in &report {
        assert_eq!(row["Status"], "created", "row {}", row["RowNumber"]);
        assert_eq!(
            note_of.get(&row["ProspectActivityId"]),
            Some(&row["ActivityNote"]),
            "row {}",
            row["RowNumber"]
        );
    }
}

async fn import_with_summary(sim: &RunningSimulator, input: &Input) -> serde_json::Value {
    let config = fast_retries(input);
    let out = import_into(
        sim,
        input,
        &["--config", &config],
        &["--rate", "1000/1s", "--summary-json", "summary.json"],
        &[("RUST_LOG", "lsq_sync=info")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(input.dir.path().join("summary.json")).expect("summary");
    let mut summary: serde_json::Value = serde_json::from_str(&text).expect("summary json");
    summary["stderr"] = stderr(&out).into();
    summary
}

fn figure(summary: &serde_json::Value, name: &str) -> u64 {
    summary[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {summary}"))
}

/// A simulator accepting any lead, where a share `applied_then_failed` of bulk calls is
/// applied, then answered 500, and as many applied, then cut.
async fn failing_after_applying(
    applied_then_failed: f64,
    seed: u64,
    config: SimConfig,
) -> RunningSimulator {
    simulator(SimConfig {
        rate: None,
        accept_any_lead: true,
        faults: FaultConfig {
            commit_then_500: applied_then_failed,
            commit_then_drop: applied_then_failed,
            seed,
            ..FaultConfig::default()
        },
        ..config
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_applied_then_failed_over_many_leads_are_settled_by_account_wide_reads() {
    let sim = failing_after_applying(
        0.03,
        25,
        SimConfig {
            // A server that serves the 1000 rows per page asked for (the vendor documents no
            // cap).
            by_event_page_cap: 1000,
            ..SimConfig::default()
        },
    )
    .await;
    let input = rows_over_many_leads(3000, 600);
    let summary = import_with_summary(&sim, &input).await;
    assert_each_row_once(&sim, &input, 3000);

    let in_doubt = figure(&summary, "rows_found_created");
    let reads = figure(&summary, "lookup_calls");
    let by_code = figure(&summary, "lookup_reads_by_code");
    assert!(figure(&summary, "unknown_outcome_calls") >= 3, "{summary}");
    // Every call in doubt had been applied: its rows were all found, on roughly as many leads.
    assert!(in_doubt >= 75, "{summary}");
    // Reading lead by lead would have cost about one read per row in doubt. The code's reads
    // cost a page or so each; rows of the run's very first calls, sent before anything of
    // their code existed to verify a read against, are still read lead by lead.
    assert!(by_code > 0 && by_code <= 15, "{summary}");
    assert!(
        reads * 2 <= in_doubt,
        "{reads} reads for {in_doubt} rows: {summary}"
    );
    let log = summary["stderr"].as_str().unwrap_or_default();
    assert!(
        log.contains("read the code's activities modified since"),
        "{log}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_listing_no_notes_is_checked_lead_by_lead_and_nothing_doubles() {
    let sim = failing_after_applying(
        0.05,
        7,
        SimConfig {
            by_event_note: ByEventNote::Absent,
            ..SimConfig::default()
        },
    )
    .await;
    let input = rows_over_many_leads(1000, 400);
    let summary = import_with_summary(&sim, &input).await;
    assert_each_row_once(&sim, &input, 1000);
    assert!(figure(&summary, "unknown_outcome_calls") >= 2, "{summary}");
    // At most one first page per code, then the leads for the rest of the run.
    assert!(figure(&summary, "lookup_reads_by_code") <= 5, "{summary}");
    let log = summary["stderr"].as_str().unwrap_or_default();
    assert!(log.contains("without their notes"), "{log}");
    sim.shutdown().await;
}
