//! Unit tests of `report`.

use super::*;

#[test]
fn row_numbers_are_written_in_decimal() {
    for n in [0, 7, 10, 1_000_000, u64::MAX] {
        assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
    }
}

fn reported(number: u64, outcome: RowOutcome, fields: &[&str]) -> ReportedRow {
    ReportedRow {
        source: SourceRow {
            number,
            line: number + 1,
            record: ByteRecord::from(fields.to_vec()),
        },
        outcome,
    }
}

fn written(writer: ReportWriter<Vec<u8>>) -> String {
    let bytes = writer.out.into_inner().map_err(|_| "flush").unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn writes_in_input_order_whatever_order_batches_finish_in() {
    let headers = ByteRecord::from(vec!["RelatedProspectId", "Note"]);
    let mut w = ReportWriter::new(Path::new("r.csv"), Vec::new(), &headers).unwrap();
    let b1 = BatchOutcome {
        seq: 1,
        rows: vec![reported(
            3,
            RowOutcome::failed("Invalid lead"),
            &["l3", "n3"],
        )],
    };
    let b0 = BatchOutcome {
        seq: 0,
        rows: vec![
            reported(
                1,
                RowOutcome::created("id-1"),
                &["l1", "a, \"quoted\"\nnote"],
            ),
            reported(2, RowOutcome::invalid("ActivityEvent: required"), &["l2"]),
        ],
    };
    assert_eq!(w.accept(b1).unwrap(), 0, "held back until batch 0 arrives");
    assert_eq!(w.accept(b0).unwrap(), 3);
    assert_eq!(
        w.counts(),
        StatusCounts {
            created: 1,
            failed: 1,
            invalid: 1,
            skipped: 0,
            valid: 0,
            ..StatusCounts::default()
        }
    );
    assert_eq!(
        written(w),
        "RowNumber,Status,ProspectActivityId,Error,RelatedProspectId,Note\n\
             1,created,id-1,,l1,\"a, \"\"quoted\"\"\nnote\"\n\
             2,invalid,,ActivityEvent: required,l2\n\
             3,failed,,Invalid lead,l3,n3\n"
    );
}

#[test]
fn other_csv_files_are_written_in_the_asked_format() {
    let line = ["lead", "=HYPERLINK(\"http://x\")", "-5", "@SUM(A1)", "'+x"];
    let write = |format: CellFormat| {
        let mut out = csv::Writer::from_writer(Vec::new());
        format.write_record(&mut out, line).unwrap();
        String::from_utf8(out.into_inner().map_err(|_| "flush").unwrap()).unwrap()
    };
    assert_eq!(
        write(CellFormat::AsRead),
        "lead,\"=HYPERLINK(\"\"http://x\"\")\",-5,@SUM(A1),'+x\n"
    );
    assert_eq!(
        write(CellFormat::ExcelSafe),
        "lead,\"'=HYPERLINK(\"\"http://x\"\")\",-5,'@SUM(A1),''+x\n"
    );
}

#[test]
fn finish_reports_a_missing_batch() {
    let mut w = ReportWriter::new(Path::new("r.csv"), Vec::new(), &ByteRecord::new()).unwrap();
    w.accept(BatchOutcome {
        seq: 2,
        rows: vec![],
    })
    .unwrap();
    let err = w.finish().unwrap_err().to_string();
    assert!(err.contains("r.csv is incomplete"), "{err}");
}

fn cells_strategy() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
    use proptest::prelude::*;
    let byte = prop::sample::select(b"ab ,\"\r\n=+-'\xE9\x00".to_vec());
    prop::collection::vec(prop::collection::vec(byte, 0..20), 1..6)
}

proptest::proptest! {
    /// The report's own encoder writes what the csv crate would, byte for byte, in both
    /// formats and with any status and error text.
    #[test]
    fn report_lines_are_what_the_csv_crate_writes(
        cells in cells_strategy(),
        error in cells_strategy(),
        excel_safe in proptest::prelude::any::<bool>(),
    ) {
        let format = if excel_safe { CellFormat::ExcelSafe } else { CellFormat::AsRead };
        let record = ByteRecord::from(cells.clone());
        let error = String::from_utf8_lossy(&error.concat()).into_owned();
        let mut w = ReportWriter::with_format(Path::new("r.csv"), Vec::new(), &record, format)
            .unwrap();
        w.write_line(ReportLine {
            number: 42,
            status: RowStatus::Invalid,
            activity_id: "",
            error: &error,
            record: &record,
            scan: RowScan::of(&record),
            shown: None,
            raw: None,
        })
        .unwrap();

        let mut expected = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
        let header = REPORT_COLUMNS.iter().map(|c| c.as_bytes().to_vec()).chain(cells.clone());
        format.write_record(&mut expected, header).unwrap();
        let own = [b"42".to_vec(), b"invalid".to_vec(), Vec::new(), error.into_bytes()];
        format.write_record(&mut expected, own.into_iter().chain(cells)).unwrap();
        let expected = String::from_utf8_lossy(&expected.into_inner().unwrap()).into_owned();
        let written = w.out.into_inner().unwrap();
        proptest::prop_assert_eq!(String::from_utf8_lossy(&written), expected);
    }
}

#[test]
fn a_row_copied_as_written_follows_the_own_columns_unless_cells_must_change() {
    let record = ByteRecord::from(vec!["a", "=b", "2024-03-01 09:30:00"]);
    let line = ReportLine {
        number: 7,
        status: RowStatus::Valid,
        activity_id: "",
        error: "",
        record: &record,
        scan: RowScan::of(&record),
        shown: None,
        raw: Some(b"\"a\",=b,2024-03-01 09:30:00"),
    };
    let write = |format: CellFormat, line: ReportLine<'_>| {
        let mut w =
            ReportWriter::with_format(Path::new("r.csv"), Vec::new(), &record, format).unwrap();
        w.write_line(line).unwrap();
        assert_eq!(w.counts().valid, 1);
        let text = written(w);
        text.lines().nth(1).unwrap().to_string()
    };
    assert_eq!(
        write(CellFormat::AsRead, line),
        "7,valid,,,\"a\",=b,2024-03-01 09:30:00"
    );
    // A cell shown otherwise, or made safe for a spreadsheet, means writing cell by cell.
    assert_eq!(
        write(
            CellFormat::AsRead,
            ReportLine {
                shown: Some((2, "2024-03-01T04:00:00Z")),
                ..line
            }
        ),
        "7,valid,,,a,=b,2024-03-01T04:00:00Z"
    );
    assert_eq!(
        write(CellFormat::ExcelSafe, line),
        "7,valid,,,a,'=b,2024-03-01 09:30:00"
    );
}
