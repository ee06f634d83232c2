//! Wrong answers from the bulk endpoint, end to end: the simulator handles the rows, then
//! spoils its answer (`SimConfig::bulk_answer`). Whatever the answer, no row is reported created
//! without the id the server really gave it, nothing is created twice, and every row ends with
//! a clear status: created (found on the server after the doubt) or failed with a reason.

use std::collections::HashSet;

use lsq_sync::simulator::{BulkAnswer, SimConfig};

use crate::support::*;

const ROWS: usize = 3;
const RATE: &str = "1000/1s";

/// Imports [`ROWS`] good rows into a simulator answering as `answer`; returns the exit code,
/// the report and the activities the server holds.
async fn import_with(
    answer: BulkAnswer,
) -> (
    Option<i32>,
    Vec<ReportRow>,
    Vec<lsq_sync::simulator::StoredActivity>,
) {
    let sim = simulator(SimConfig {
        rate: Some(RATE.parse().expect("quota")),
        bulk_answer: answer,
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(ROWS, 0);
    let output = import_into(&sim, &input, &[], &["--rate", RATE], &[]).await;
    let report = read_report(&input.report_path());
    assert_eq!(report.len(), ROWS, "{answer:?}: {}", stderr(&output));
    (output.status.code(), report, posted_activities(&sim))
}

/// Every `created` row carries an id the server really holds, and no id twice.
fn assert_created_rows_are_real(
    answer: BulkAnswer,
    report: &[ReportRow],
    server: &[lsq_sync::simulator::StoredActivity],
) {
    let on_server: HashSet<&str> = server.iter().map(|a| a.id.as_str()).collect();
    let mut seen = HashSet::new();
    for row in report.iter().filter(|r| r["Status"] == "created") {
        let id = row["ProspectActivityId"].as_str();
        assert!(
            on_server.contains(id),
            "{answer:?}: {row:?} not on the server"
        );
        assert!(seen.insert(id), "{answer:?}: {id} reported twice");
    }
}

/// Answers after which the rows exist on the server although the answer does not say so
/// clearly (or at all), with what each stands for: the client must find them, not post them
/// again nor call them failed.
const CREATED_BUT_GARBLED: [(BulkAnswer, &str); 7] = [
    (BulkAnswer::NotJson, "a 200 whose body is not JSON"),
    (BulkAnswer::Truncated, "a 200 whose JSON is cut off"),
    (BulkAnswer::FewerItems, "fewer results than rows sent"),
    (BulkAnswer::MoreItems, "a result for a row not sent"),
    (
        BulkAnswer::DuplicateRowNumbers,
        "two results for one RowNumber",
    ),
    (BulkAnswer::MissingRowNumbers, "results without RowNumber"),
    (
        BulkAnswer::CreatedWithoutId,
        "created without a ProspectActivityId",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn rows_left_in_doubt_are_found_on_the_server_not_assumed() {
    for (answer, case) in CREATED_BUT_GARBLED {
        let (code, report, server) = import_with(answer).await;
        assert_created_rows_are_real(answer, &report, &server);
        assert_eq!(server.len(), ROWS, "{case}: each row created once");
        for row in &report {
            assert_eq!(row["Status"], "created", "{case}: {row:?}");
        }
        assert_eq!(code, Some(0), "{case}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_200_with_status_error_fails_the_rows_with_the_message() {
    let answer = BulkAnswer::StatusError200;
    let (code, report, server) = import_with(answer).await;
    assert!(server.is_empty());
    assert_eq!(code, Some(1));
    for row in &report {
        assert_eq!(row["Status"], "failed", "{row:?}");
        assert_eq!(row["ProspectActivityId"], "", "{row:?}");
        assert!(
            row["Error"].contains("The request could not be processed"),
            "{row:?}"
        );
    }
}
