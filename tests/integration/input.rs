//! Spreadsheets as they come, end to end: an .xlsx with its own column names, `--map`/`--set`,
//! `--timezone`, `--match-by EmailAddress`, and the errors that must stop a run before it sends.

use std::path::Path;

use lsq_sync::simulator::{
    DEMO_OWNERS, RunningSimulator, SimConfig, StoredActivity, demo_lead_email, demo_lead_id,
};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};

use crate::support::*;

/// How the binary reads an .xlsx: streamed (the default), or loaded whole as before issue 26
/// (`LSQ_XLSX_READER=whole`). The spreadsheet tests run under both.
#[derive(Debug, Clone, Copy)]
enum XlsxReader {
    Stream,
    Whole,
}

impl XlsxReader {
    fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            XlsxReader::Stream => vec![],
            XlsxReader::Whole => vec![("LSQ_XLSX_READER", "whole")],
        }
    }
}

/// Runs `lsq-sync import INPUT --out report.csv --host SIM [extra...]` in `dir`.
async fn import_file(
    sim: &RunningSimulator,
    dir: &Path,
    input: &str,
    extra: &[&str],
    reader: XlsxReader,
) -> std::process::Output {
    let url = sim.base_url();
    let mut args = vec!["import", input, "--out", "report.csv", "--host", &url];
    args.extend(extra);
    run_cli(dir, &args, &reader.env()).await
}

/// The posted activity a report row names.
fn activity_of<'a>(posted: &'a [StoredActivity], row: &ReportRow) -> &'a StoredActivity {
    posted
        .iter()
        .find(|a| a.id == row["ProspectActivityId"])
        .unwrap_or_else(|| panic!("no activity for {row:?}"))
}

/// A workbook whose first sheet is a distraction and whose "Calls" sheet holds three calls in
/// the sheet's own words: local Kolkata times as Excel date cells, scores as number cells, and
/// formatted but empty rows below the data, as spreadsheets keep them.
fn write_calls_workbook(path: &Path) {
    let mut workbook = Workbook::new();
    let other = workbook.add_worksheet();
    other.set_name("Notes").expect("sheet name");
    other.write_string(0, 0, "not the data").expect("cell");

    let sheet = workbook.add_worksheet();
    sheet.set_name("Calls").expect("sheet name");
    let date_format = Format::new().set_num_format("dd/mm/yyyy hh:mm");
    for (col, header) in ["Lead ID", "Called at", "Notes", "Score", "Owner"]
        .into_iter()
        .enumerate()
    {
        sheet.write_string(0, col as u16, header).expect("header");
    }
    let calls = [
        (1, "2024-03-10 09:30:00", "first call", 42.0),
        (2, "2024-03-10 23:15:00", "second call", 7.0),
        (3, "2024-11-03 01:30:00", "third call", 1234567.0),
    ];
    for (row, (lead, when, note, score)) in calls.into_iter().enumerate() {
        let row = row as u32 + 1;
        sheet
            .write_string(row, 0, demo_lead_id(lead))
            .expect("lead");
        let when = ExcelDateTime::parse_from_str(when).expect("date");
        sheet
            .write_datetime_with_format(row, 1, &when, &date_format)
            .expect("date cell");
        sheet.write_string(row, 2, note).expect("note");
        sheet.write_number(row, 3, score).expect("score");
        sheet
            .write_string(row, 4, DEMO_OWNERS[lead])
            .expect("owner");
    }
    for row in 4..8 {
        sheet.write_blank(row, 1, &date_format).expect("blank");
    }
    workbook.save(path).expect("save workbook");
}

const CALLS_FLAGS: [&str; 12] = [
    "--sheet",
    "Calls",
    "--map",
    "Lead ID=RelatedProspectId",
    "--map",
    "Called at=ActivityDateTime",
    "--map",
    "Notes=ActivityNote",
    "--map",
    "Score=mx_Custom_1",
    "--map",
    "Owner=ActivityOwnerEmail",
];

#[tokio::test(flavor = "multi_thread")]
async fn an_xlsx_with_its_own_columns_imports_with_utc_dates_and_retries_from_its_report() {
    xlsx_with_its_own_columns(XlsxReader::Stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_xlsx_loaded_whole_imports_the_same() {
    xlsx_with_its_own_columns(XlsxReader::Whole).await;
}

async fn xlsx_with_its_own_columns(reader: XlsxReader) {
    let sim = simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_calls_workbook(&dir.path().join("calls.xlsx"));

    let mut extra = CALLS_FLAGS.to_vec();
    extra.extend(["--set", "ActivityEvent=201", "--timezone", "Asia/Kolkata"]);
    let out = import_file(&sim, dir.path(), "calls.xlsx", &extra, reader).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 3, "the empty formatted rows are not data");
    let posted = posted_activities(&sim);
    assert_eq!(posted.len(), 3);
    let expected = [
        (1, "2024-03-10 04:00:00", "first call", "42"),
        (2, "2024-03-10 17:45:00", "second call", "7"),
        (3, "2024-11-02 20:00:00", "third call", "1234567"),
    ];
    for (row, (lead, utc, note, score)) in rows.iter().zip(expected) {
        assert_eq!(row["Status"], "created", "{row:?}");
        // Sheet row numbers: the header is row 1.
        assert_eq!(row["RowNumber"], (lead + 1).to_string());
        // The report keeps the sheet's own columns and shows the UTC value sent.
        assert_eq!(row["Lead ID"], demo_lead_id(lead));
        assert_eq!(row["Called at"], format!("{}Z", utc.replace(' ', "T")));
        assert_eq!(row["Score"], score);
        let activity = activity_of(&posted, row);
        assert_eq!(activity.lead_id, demo_lead_id(lead));
        assert_eq!(activity.event_code, 201);
        assert_eq!(activity.date_time, utc);
        assert_eq!(activity.note.as_deref(), Some(note));
        assert_eq!(activity.owner_email.as_deref(), Some(DEMO_OWNERS[lead]));
        assert_eq!(
            activity.fields.get("mx_Custom_1").map(String::as_str),
            Some(score)
        );
    }

    // The report is a retry input under the same flags (minus the sheet): the UTC values read
    // back as the same instants, so every row is carried over and nothing is sent again.
    let url = sim.base_url();
    let mut args = vec![
        "retry",
        "report.csv",
        "--out",
        "report-2.csv",
        "--host",
        &url,
    ];
    args.extend(&CALLS_FLAGS[2..]);
    args.extend(["--set", "ActivityEvent=201", "--timezone", "Asia/Kolkata"]);
    let out = run_cli(dir.path(), &args, &reader.env()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = read_report(&dir.path().join("report-2.csv"));
    assert!(again.iter().all(|r| r["Status"] == "created"), "{again:?}");
    assert_eq!(posted_activities(&sim).len(), 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn match_by_email_creates_known_leads_and_fails_unknown_ones_per_row() {
    let sim = simulator(SimConfig::default()).await;
    let input = write_input(&format!(
        "EmailAddress,ActivityEvent,ActivityNote,ActivityDateTime\n\
         {},201,known,2024-05-01 10:00:00\n\
         nobody@example.com,201,unknown,2024-05-01 10:00:00\n\
         {},202,known upper,2024-05-01 11:00:00\n\
         not-an-address,201,broken,2024-05-01 10:00:00\n",
        demo_lead_email(1),
        demo_lead_email(2).to_uppercase(),
    ));
    let out = import_into(&sim, &input, &[], &["--match-by", "EmailAddress"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let rows = read_report(&input.report_path());
    let statuses: Vec<&str> = rows.iter().map(|r| r["Status"].as_str()).collect();
    assert_eq!(statuses, ["created", "failed", "created", "invalid"]);
    assert_eq!(
        rows[1]["Error"],
        "Lead not found with EmailAddress = 'nobody@example.com'"
    );
    assert!(
        rows[3]["Error"].starts_with("EmailAddress: \"not-an-address\" is not an e-mail"),
        "{}",
        rows[3]["Error"]
    );
    let posted = posted_activities(&sim);
    assert_eq!(activity_of(&posted, &rows[0]).lead_id, demo_lead_id(1));
    let second = activity_of(&posted, &rows[2]);
    assert_eq!(
        (second.lead_id.as_str(), second.event_code),
        (demo_lead_id(2).as_str(), 202)
    );
    let paths: Vec<String> = sim.sim.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().all(|p| p.ends_with("/Add/ByLeadField")),
        "{paths:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_the_zone_skips_is_an_invalid_row_with_a_clear_message() {
    let sim = simulator(SimConfig::default()).await;
    let lead = demo_lead_id(4);
    let input = write_input(&format!(
        "RelatedProspectId,ActivityEvent,When\n\
         {lead},201,03/10/2024 02:30\n\
         {lead},201,03/10/2024 03:30\n\
         {lead},201,11/03/2024 01:30\n"
    ));
    let extra = [
        "--map",
        "When=ActivityDateTime",
        "--timezone",
        "America/New_York",
        "--date-format",
        "MM/dd/yyyy HH:mm",
    ];
    let out = import_into(&sim, &input, &[], &extra, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = read_report(&input.report_path());
    assert_eq!(rows[0]["Status"], "invalid");
    assert!(
        rows[0]["Error"]
            .starts_with("When: \"03/10/2024 02:30\" (row 1) does not exist in America/New_York"),
        "{}",
        rows[0]["Error"]
    );
    assert_eq!(
        rows[0]["When"], "03/10/2024 02:30",
        "invalid rows are shown as read"
    );
    assert_eq!(rows[1]["Status"], "created");
    assert_eq!(rows[1]["When"], "2024-03-10T07:30:00Z");
    assert_eq!(rows[2]["Status"], "invalid");
    assert!(
        rows[2]["Error"].contains("happens twice in America/New_York"),
        "{}",
        rows[2]["Error"]
    );
    let posted = posted_activities(&sim);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].date_time, "2024-03-10 07:30:00");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_mapping_target_or_missing_mapped_column_stops_before_anything_is_sent() {
    let sim = simulator(SimConfig::default()).await;
    let input = write_input(&format!("Lead,ActivityEvent\n{},201\n", demo_lead_id(1)));
    let out = import_into(&sim, &input, &[], &["--map", "Lead=LeadGuid"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--map: \"LeadGuid\" is not an API field")
            && err.contains("RelatedProspectId")
            && err.contains("mx_Custom_1..mx_Custom_50"),
        "{err}"
    );
    assert!(!input.report_path().exists());

    let out = import_into(
        &sim,
        &input,
        &[],
        &["--map", "Lead ID=RelatedProspectId"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("input.csv") && err.contains("mapped column \"Lead ID\""),
        "{err}"
    );
    assert!(sim.sim.requests().is_empty(), "nothing may be sent");
    sim.shutdown().await;
}
