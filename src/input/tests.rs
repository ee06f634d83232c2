//! Unit tests of `input`.

use super::*;

fn source(bytes: &'static [u8]) -> Result<CsvSource, InputError> {
    CsvSource::from_reader(Path::new("test.csv"), Box::new(bytes))
}

fn rows(bytes: &'static [u8]) -> Vec<SourceRow> {
    source(bytes).unwrap().map(|r| r.unwrap()).collect()
}

#[test]
fn numbers_rows_from_one_and_tracks_lines_across_multiline_cells() {
    let rows = rows(b"a,b\n1,\"x\ny\"\n2,z\n");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].number, rows[0].line), (1, 2));
    assert_eq!((rows[1].number, rows[1].line), (2, 4));
    assert_eq!(&rows[0].record[1], b"x\ny");
}

#[test]
fn strips_a_bom_and_reads_crlf_and_quotes() {
    let src = source(b"\xEF\xBB\xBFRelatedProspectId,Note\r\nabc,\"a, \"\"quoted\"\" note\"\r\n")
        .unwrap();
    assert_eq!(&src.headers()[0], b"RelatedProspectId");
    let rows: Vec<_> = src.map(|r| r.unwrap()).collect();
    assert_eq!(&rows[0].record[1], b"a, \"quoted\" note");
}

#[test]
fn ragged_rows_are_passed_on_not_refused() {
    let rows = rows(b"a,b\n1\n1,2,3\n");
    assert_eq!(rows[0].record.len(), 1);
    assert_eq!(rows[1].record.len(), 3);
}

#[test]
fn invalid_utf8_is_kept_as_bytes() {
    let rows = rows(b"a\n\xE9t\xE9\n");
    assert_eq!(&rows[0].record[0], b"\xE9t\xE9");
}

#[test]
fn an_empty_file_is_a_file_level_error_naming_the_file() {
    let err = source(b"").err().unwrap().to_string();
    assert!(err.contains("test.csv") && err.contains("empty"), "{err}");
}

fn limited(bytes: Vec<u8>, limits: InputLimits) -> Vec<Result<SourceRow, InputError>> {
    match CsvSource::from_reader_limited(
        Path::new("test.csv"),
        Box::new(io::Cursor::new(bytes)),
        limits,
    ) {
        Ok(source) => source.collect(),
        Err(e) => vec![Err(e)],
    }
}

#[test]
fn a_quote_never_closed_is_an_error_naming_the_line_it_opened_on() {
    let results = limited(
        b"a,b\n1,ok\n2,\"open\n3,lost\n".to_vec(),
        InputLimits::default(),
    );
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    let err = results[1].as_ref().err().unwrap().to_string();
    assert!(
        err.starts_with("test.csv: a quote opened in the row starting at line 3"),
        "{err}"
    );

    let err = source(b"a,\"b\n").err().unwrap().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn the_end_mark_is_never_a_row_and_a_closed_quote_at_the_end_is_fine() {
    assert_eq!(rows(b"a,b\n1,\"x\"").len(), 1);
    assert_eq!(rows(b"a,b\n1,2").len(), 1);
    assert_eq!(rows(b"a,b\r\n1,2\r\n\r\n").len(), 1);
    assert!(rows(b"a,b\n").is_empty());
    let err = source(b"\n\n").err().unwrap().to_string();
    assert!(err.contains("empty"), "{err}");
    // The mark's text inside the file is data.
    let rows = rows(b"a\n\"\x00lsq-sync:end-of-input\x00\"\nb\n");
    assert_eq!(rows.len(), 2);
}

#[test]
fn a_row_over_the_limit_stops_the_file_while_it_is_read() {
    let limits = InputLimits {
        max_row_bytes: 64 * 1024,
        ..InputLimits::default()
    };
    let mut bytes = b"a,b\n1,2\n3,\"".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 1 << 20));
    bytes.extend(b"\"\n5,6\n");
    let results = limited(bytes, limits);
    assert_eq!(
        results.len(),
        2,
        "the good row, then the error; nothing after"
    );
    let err = results[1].as_ref().err().unwrap().to_string();
    assert!(
        err.starts_with("test.csv: the row starting at line 3 is longer than 65536 bytes"),
        "{err}"
    );
}

#[test]
fn a_header_too_wide_or_in_utf16_is_a_file_error() {
    let limits = InputLimits {
        max_columns: 3,
        ..InputLimits::default()
    };
    let err = limited(b"a,b,c,d\n1,2,3,4\n".to_vec(), limits)
        .remove(0)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("line 1: the header has 4 columns, more than the limit of 3"),
        "{err}"
    );
    let err = source(b"\xFF\xFEa\x00,\x00b\x00\n\x00")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("UTF-16"), "{err}");
}

#[test]
fn a_missing_file_names_the_path() {
    let err = CsvSource::open(Path::new("/nonexistent/dir/in.csv"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/dir/in.csv"), "{err}");
}

proptest::proptest! {
    /// A row's text as written is offered only when a strict reader gets its cells from
    /// it; then it is exactly those cells.
    #[test]
    fn a_row_as_written_holds_exactly_its_cells(
        text in proptest::collection::vec(
            proptest::sample::select(b"ab,\"\"\r\n\n".to_vec()), 0..60),
    ) {
        let mut file = b"h1,h2\n".to_vec();
        file.extend_from_slice(&text);
        let Ok(mut source) = CsvSource::from_reader(Path::new("t.csv"), Box::new(io::Cursor::new(file))) else {
            return Ok(());
        };
        let mut row = SourceRow { number: 0, line: 0, record: ByteRecord::new() };
        while let Ok(true) = source.read_into(&mut row) {
            let Some(raw) = source.raw_row() else { continue };
            proptest::prop_assert!(strictly_quoted(raw));
            let mut again = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(raw);
            let records: Vec<ByteRecord> = again.byte_records().map(|r| r.unwrap()).collect();
            proptest::prop_assert_eq!(records, vec![row.record.clone()]);
        }
    }
}

#[test]
fn a_row_is_strictly_quoted_only_when_each_quote_opens_closes_or_is_doubled() {
    for strict in [
        &b"a,b,c"[..],
        b"\"a\",b",
        b"\"a, \"\"b\"\"\",c",
        b"a,\"\"",
        b"\"x\ny\"",
        b"",
    ] {
        assert!(
            strictly_quoted(strict),
            "{:?}",
            String::from_utf8_lossy(strict)
        );
    }
    for loose in [&b"a\"b"[..], b"\"a\"b,c", b"a,\"b", b"\"a\" ,c"] {
        assert!(
            !strictly_quoted(loose),
            "{:?}",
            String::from_utf8_lossy(loose)
        );
    }
}

#[test]
fn rows_written_canonically_are_offered_as_written_without_their_line_breaks() {
    let mut source = source(b"h1,h2\r\na,\"b, c\"\r\n\r\nd,e").unwrap();
    let mut row = SourceRow {
        number: 0,
        line: 0,
        record: ByteRecord::new(),
    };
    assert!(source.read_into(&mut row).unwrap());
    assert_eq!(source.raw_row(), Some(&b"a,\"b, c\""[..]));
    assert!(source.read_into(&mut row).unwrap());
    assert_eq!((row.number, row.line), (2, 4));
    assert_eq!(source.raw_row(), Some(&b"d,e"[..]));
    assert!(!source.read_into(&mut row).unwrap());
}
