//! Property tests (proptest) over the library stages an import chains: raw CSV bytes ->
//! `check_csv` -> `Batcher` -> `ReportWriter`, with batches finishing in any order. Invariants:
//! every input row appears in the report exactly once, in order, under its own RowNumber with
//! its own cells; no batch carries more valid rows than the batch size; the excel-safe prefix
//! is undone exactly. The dry run, which copies rows to its report as written where it can, is
//! held to the same: any file text, quoted strictly or loosely, comes back as the same cells.
//! Case counts are modest so `cargo test` stays fast.

use std::path::Path;

use csv::ByteRecord;
use lsq_sync::config::Settings;
use lsq_sync::import::batch::{Batch, BatchRow, Batcher, RowWork};
use lsq_sync::import::dry_run::validate_file;
use lsq_sync::import::validate::check_csv;
use lsq_sync::input::rows::InputLimits;
use lsq_sync::report::{
    BatchOutcome, CellFormat, ReportWriter, ReportedRow, RowOutcome, excel_safe_cell,
    strip_excel_safe,
};
use proptest::prelude::*;

const LEAD: &str = "3aee22bd-8419-422a-8242-c510df9af021";

/// One generated input row: whether its lead and event are valid, and a note full of the
/// characters CSV and spreadsheets care about.
fn row_strategy() -> impl Strategy<Value = (bool, bool, String)> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.8),
        "[a-z =+@,\"'\r\n\t-]{0,16}",
    )
}

/// The input file: a header and one line per row, the last column a unique tag.
fn input_csv(rows: &[(bool, bool, String)]) -> (Vec<u8>, Vec<ByteRecord>) {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut records = Vec::new();
    out.write_record(["RelatedProspectId", "ActivityEvent", "ActivityNote", "Tag"])
        .expect("header");
    for (i, (lead_ok, event_ok, note)) in rows.iter().enumerate() {
        let lead = if *lead_ok { LEAD } else { "not-a-lead" };
        let event = if *event_ok { "201" } else { "2O1" };
        let tag = format!("row{}", i + 1);
        let record = ByteRecord::from(vec![lead, event, note.as_str(), tag.as_str()]);
        out.write_byte_record(&record).expect("row");
        records.push(record);
    }
    (out.into_inner().expect("flush"), records)
}

/// Reads a report back: `(RowNumber, Status, ProspectActivityId, input cells)` per line.
fn read_back(bytes: &[u8], format: CellFormat) -> Vec<(String, String, String, ByteRecord)> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    reader
        .byte_records()
        .map(|r| {
            let r = r.expect("report line");
            let text = |i: usize| String::from_utf8_lossy(&r[i]).into_owned();
            let cells = r
                .iter()
                .skip(4)
                .map(|cell| match format {
                    CellFormat::ExcelSafe => strip_excel_safe(cell),
                    CellFormat::AsRead => cell,
                })
                .collect();
            (text(0), text(1), text(2), cells)
        })
        .collect()
}

/// Parses CSV text strictly by RFC 4180, refusing what lenient readers (the csv crate among
/// them) accept: a quote inside an unquoted cell, text after a closing quote. Spreadsheets and
/// other tools read such text each their own way, so a report must never contain it.
fn strict_csv(text: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut cell = Vec::new();
        if text[at] == b'"' {
            at += 1;
            loop {
                match (text.get(at), text.get(at + 1)) {
                    (Some(b'"'), Some(b'"')) => {
                        cell.push(b'"');
                        at += 2;
                    }
                    (Some(b'"'), _) => {
                        at += 1;
                        break;
                    }
                    (Some(b), _) => {
                        cell.push(*b);
                        at += 1;
                    }
                    (None, _) => return Err(format!("quote never closed at byte {at}")),
                }
            }
        } else {
            while let Some(b) = text.get(at).filter(|b| !matches!(b, b',' | b'\n' | b'\r')) {
                if *b == b'"' {
                    return Err(format!("a quote inside an unquoted cell at byte {at}"));
                }
                cell.push(*b);
                at += 1;
            }
        }
        line.push(cell);
        match text.get(at) {
            Some(b',') => at += 1,
            Some(b'\n') => {
                lines.push(std::mem::take(&mut line));
                at += 1;
            }
            Some(b'\r') if text.get(at + 1) == Some(&b'\n') => {
                lines.push(std::mem::take(&mut line));
                at += 2;
            }
            None => lines.push(std::mem::take(&mut line)),
            Some(b) => {
                return Err(format!(
                    "{:?} after a closing quote at byte {at}",
                    *b as char
                ));
            }
        }
    }
    Ok(lines)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_row_is_reported_once_in_order_and_batches_stay_within_the_size(
        rows in prop::collection::vec(row_strategy(), 0..120),
        batch_size in 1usize..=25,
        finish_order in prop::collection::vec(any::<u32>(), 120),
        excel_safe in any::<bool>(),
    ) {
        let (bytes, records) = input_csv(&rows);
        let checked = check_csv(Path::new("p.csv"), &bytes, InputLimits::default())
            .expect("a well-formed file");
        prop_assert_eq!(checked.len(), rows.len());

        let mut batcher = Batcher::new(batch_size);
        let mut batches: Vec<Batch> = Vec::new();
        for (i, row) in checked.into_iter().enumerate() {
            prop_assert_eq!(row.source.number, i as u64 + 1);
            prop_assert_eq!(&row.source.record, &records[i], "cells read back as written");
            prop_assert_eq!(row.result.is_ok(), rows[i].0 && rows[i].1);
            let work = match row.result {
                Ok(item) => RowWork::Send { item, filled_date: None },
                Err(problem) => RowWork::Done(RowOutcome::invalid(problem.to_string())),
            };
            batches.extend(batcher.push(BatchRow { source: row.source, work }));
        }
        batches.extend(batcher.finish());
        for (seq, batch) in batches.iter().enumerate() {
            prop_assert_eq!(batch.seq, seq as u64);
            prop_assert!(batch.valid_count() <= batch_size);
            prop_assert!(batch.items().len() <= 25);
        }

        // Batches finish in an arbitrary order; the report must still come out in input order.
        let mut outcomes: Vec<(u32, BatchOutcome)> = batches
            .into_iter()
            .enumerate()
            .map(|(i, batch)| {
                let rows = batch
                    .rows
                    .into_iter()
                    .map(|row| ReportedRow {
                        outcome: match row.work {
                            RowWork::Send { .. } | RowWork::Update { .. } => {
                                RowOutcome::created(format!("id-{}", row.source.number))
                            }
                            RowWork::Done(outcome) => outcome,
                        },
                        source: row.source,
                    })
                    .collect();
                (finish_order[i % finish_order.len()], BatchOutcome { seq: batch.seq, rows })
            })
            .collect();
        outcomes.sort_by_key(|(key, _)| *key);

        let format = if excel_safe { CellFormat::ExcelSafe } else { CellFormat::AsRead };
        let headers = ByteRecord::from(vec!["RelatedProspectId", "ActivityEvent", "ActivityNote", "Tag"]);
        let mut report = Vec::new();
        let mut writer = ReportWriter::with_format(Path::new("r.csv"), &mut report, &headers, format)
            .expect("header");
        for (_, outcome) in outcomes {
            writer.accept(outcome).expect("write");
        }
        let counts = writer.finish().expect("complete");
        prop_assert_eq!(counts.total(), rows.len() as u64);

        let lines = read_back(&report, format);
        prop_assert_eq!(lines.len(), rows.len());
        for (i, (number, status, id, cells)) in lines.iter().enumerate() {
            let n = i + 1;
            prop_assert_eq!(number, &n.to_string());
            prop_assert_eq!(cells, &records[i], "RowNumber {} carries row {}'s cells", n, n);
            if rows[i].0 && rows[i].1 {
                prop_assert_eq!(status.as_str(), "created");
                prop_assert_eq!(id, &format!("id-{n}"));
            } else {
                prop_assert_eq!(status.as_str(), "invalid");
            }
        }
    }

    #[test]
    fn a_dry_run_reports_every_row_with_the_cells_read_however_the_file_quotes_them(
        lines in prop::collection::vec(
            prop::collection::vec(prop::sample::select(b"ab ,\"\"\r\n\n\xE9\x00".to_vec()), 0..14),
            0..12),
        excel_safe in any::<bool>(),
    ) {
        // A valid lead and event lead each line, so some rows are valid; what follows is any
        // text, quotes and line breaks included, strict or loose.
        let mut text = b"RelatedProspectId,ActivityEvent,ActivityNote,Tag\r\n".to_vec();
        for line in &lines {
            text.extend_from_slice(format!("{LEAD},201,").as_bytes());
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (input, report) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
        std::fs::write(&input, &text).expect("input");

        let expected: Result<Vec<ByteRecord>, _> = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(&text[..])
            .byte_records()
            .collect();
        let settings = Settings { excel_safe, ..Settings::default() };
        let validated = validate_file(&input, &report, &settings);
        let (expected, validation) = match (expected, validated) {
            (Ok(expected), Ok(validation)) => (expected, validation),
            // A quote left open runs to the end of the file: the file is refused, not guessed.
            (_, Err(e)) => {
                prop_assert!(e.to_string().contains("never closed"), "{}", e);
                return Ok(());
            }
            (Err(e), Ok(_)) => return Err(TestCaseError::fail(format!("csv refused it: {e}"))),
        };
        prop_assert_eq!(validation.counts.total(), expected.len() as u64);
        let format = if excel_safe { CellFormat::ExcelSafe } else { CellFormat::AsRead };
        let report = std::fs::read(&report).expect("report");
        let strict = strict_csv(&report).map_err(TestCaseError::fail)?;
        let written = read_back(&report, format);
        prop_assert_eq!(written.len(), expected.len(), "one line per row");
        prop_assert_eq!(strict.len(), expected.len() + 1, "a strict reader sees the same lines");
        for (i, ((number, status, _, cells), record)) in written.iter().zip(&expected).enumerate() {
            prop_assert_eq!(number, &(i + 1).to_string());
            prop_assert!(status == "valid" || status == "invalid", "{}", status);
            prop_assert_eq!(cells, record, "row {}", i + 1);
            let strict_cells: Vec<&[u8]> = strict[i + 1]
                .iter()
                .skip(4)
                .map(|cell| match format {
                    CellFormat::ExcelSafe => strip_excel_safe(cell),
                    CellFormat::AsRead => cell.as_slice(),
                })
                .collect();
            let cells: Vec<&[u8]> = cells.iter().collect();
            prop_assert_eq!(strict_cells, cells, "row {} read strictly", i + 1);
        }
    }

    #[test]
    fn the_excel_safe_prefix_is_undone_exactly_and_leaves_no_formula(
        cell in prop::collection::vec(
            prop::sample::select(b"=+-@\t\r'0123456789.eE a\xFF".to_vec()), 0..8),
    ) {
        let safe = excel_safe_cell(&cell);
        prop_assert_eq!(strip_excel_safe(&safe), &cell[..]);
        if let Some(first) = safe.first() {
            let plain_number = std::str::from_utf8(&safe).ok().and_then(|t| t.parse::<f64>().ok()).is_some();
            prop_assert!(!b"=+-@\t\r".contains(first) || plain_number || *first == b'\'', "{:?}", safe);
        }
    }
}
