use super::*;
use calamine::{ExcelDateTime as CalamineDateTime, ExcelDateTimeType};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};

fn range(rows: &[&[Data]], start: (u32, u32)) -> Range<Data> {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(1) as u32;
    let mut range = Range::new(
        start,
        (start.0 + rows.len() as u32 - 1, start.1 + width - 1),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            range.set_value((start.0 + r as u32, start.1 + c as u32), cell.clone());
        }
    }
    range
}

fn text(s: &str) -> Data {
    Data::String(s.to_string())
}

fn loaded_text(cell: &Data) -> String {
    let mut text = String::new();
    push_cell_text(&data_ref(cell), &mut text);
    text
}

/// The three ways an `.xlsx` is read: whole, streamed, and streamed with every shared string on
/// disk rather than in memory.
const READERS: [&str; 3] = ["whole", "stream", "stream, strings on disk"];

fn open_with(
    reader: &str,
    path: &Path,
    sheet: Option<&str>,
    limits: InputLimits,
) -> Result<SheetSource, InputError> {
    match reader {
        "whole" => SheetSource::open(path, sheet, limits, SheetReader::Whole),
        "stream" => SheetSource::open(path, sheet, limits, SheetReader::Auto),
        _ => SheetSource::open_stream(path, sheet, limits, 0),
    }
}

/// Reads `path` by every reader, checks they agree on the header and every row, and returns them.
fn read_all(path: &Path, sheet: Option<&str>) -> (ByteRecord, Vec<SourceRow>) {
    let mut seen: Option<(ByteRecord, Vec<SourceRow>)> = None;
    for reader in READERS {
        let source = open_with(reader, path, sheet, InputLimits::default())
            .unwrap_or_else(|e| panic!("{reader}: {e}"));
        let headers = source.headers().clone();
        let rows: Vec<SourceRow> = source
            .map(|r| r.unwrap_or_else(|e| panic!("{reader}: {e}")))
            .collect();
        match &seen {
            None => seen = Some((headers, rows)),
            Some((h, r)) => {
                assert_eq!(
                    &headers, h,
                    "{reader}: the header differs from the whole path's"
                );
                assert_eq!(&rows, r, "{reader}: the rows differ from the whole path's");
            }
        }
    }
    seen.unwrap()
}

/// The error every reader gives for `path`.
fn error_of_each(path: &Path, sheet: Option<&str>, limits: InputLimits) -> Vec<String> {
    READERS
        .iter()
        .map(|reader| match open_with(reader, path, sheet, limits) {
            Err(e) => e.to_string(),
            Ok(source) => source
                .filter_map(Result::err)
                .map(|e| e.to_string())
                .next()
                .unwrap_or_else(|| panic!("{reader}: no error")),
        })
        .collect()
}

fn fields(row: &SourceRow) -> Vec<String> {
    row.record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[test]
fn cells_read_as_a_person_sees_them() {
    assert_eq!(loaded_text(&Data::Float(201.0)), "201");
    assert_eq!(loaded_text(&Data::Float(-3.0)), "-3");
    assert_eq!(loaded_text(&Data::Float(2.5)), "2.5");
    assert_eq!(loaded_text(&Data::Float(0.1)), "0.1");
    assert_eq!(loaded_text(&Data::Int(42)), "42");
    assert_eq!(loaded_text(&Data::Bool(true)), "TRUE");
    // 2024-03-10 09:30:00 is serial 45361.395833...; a hair under rounds to the second.
    let serial = 45361.0 + (9.5 / 24.0) - 0.000_000_1;
    let date = Data::DateTime(CalamineDateTime::new(
        serial,
        ExcelDateTimeType::DateTime,
        false,
    ));
    assert_eq!(loaded_text(&date), "2024-03-10 09:30:00");
    assert_eq!(
        loaded_text(&Data::DateTimeIso("2024-03-10T09:30:00".into())),
        "2024-03-10 09:30:00"
    );
}

#[test]
fn rows_carry_sheet_row_numbers_and_empty_rows_are_skipped() {
    let rows: &[&[Data]] = &[
        &[text("Lead"), text("Code"), Data::Empty],
        &[text("a"), Data::Float(201.0), Data::Empty],
        &[Data::Empty, Data::Empty, Data::Empty],
        &[text("b"), Data::Float(202.0), Data::Empty],
        &[Data::Empty, text(" "), Data::Empty],
    ];
    // The used range starts at B3: the header is sheet row 3.
    let source = SheetSource::from_range(
        Path::new("in.xlsx"),
        range(rows, (2, 1)),
        InputLimits::default(),
    )
    .unwrap();
    assert_eq!(source.headers(), &ByteRecord::from(vec!["Lead", "Code"]));
    let read: Vec<SourceRow> = source.map(|r| r.unwrap()).collect();
    assert_eq!(read.len(), 2);
    assert_eq!((read[0].number, read[0].line), (4, 4));
    assert_eq!(read[0].record, ByteRecord::from(vec!["a", "201"]));
    assert_eq!(read[1].number, 6);

    // The same sheet as a file, through every reader.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(2, 1, "Lead").unwrap();
    sheet.write_string(2, 2, "Code").unwrap();
    sheet.write_string(3, 1, "a").unwrap();
    sheet.write_number(3, 2, 201.0).unwrap();
    sheet.write_string(5, 1, "b").unwrap();
    sheet.write_number(5, 2, 202.0).unwrap();
    sheet.write_string(6, 2, " ").unwrap();
    workbook.save(&path).unwrap();
    let (headers, read) = read_all(&path, None);
    assert_eq!(headers, ByteRecord::from(vec!["Lead", "Code"]));
    let numbers: Vec<u64> = read.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [4, 6]);
    assert_eq!(fields(&read[0]), ["a", "201"]);
}

#[test]
fn an_empty_sheet_is_a_file_level_error() {
    let rows: &[&[Data]] = &[&[Data::Empty]];
    let err = SheetSource::from_range(
        Path::new("in.xlsx"),
        range(rows, (0, 0)),
        InputLimits::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("in.xlsx") && err.contains("empty"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_blank(4, 1, &Format::new().set_bold()).unwrap();
    workbook.save(&path).unwrap();
    for err in error_of_each(&path, None, InputLimits::default()) {
        assert!(err.contains("empty.xlsx") && err.contains("empty"), "{err}");
    }
}

#[test]
fn sheets_are_chosen_by_name_then_position() {
    let names = vec!["Calls".to_string(), "2".to_string(), "Visits".to_string()];
    assert_eq!(choose_sheet(&names, None).unwrap(), "Calls");
    assert_eq!(choose_sheet(&names, Some("visits")).unwrap(), "Visits");
    assert_eq!(choose_sheet(&names, Some("2")).unwrap(), "2");
    assert_eq!(choose_sheet(&names, Some("3")).unwrap(), "Visits");
    let err = choose_sheet(&names, Some("9")).unwrap_err();
    assert!(err.contains("Calls, 2, Visits"), "{err}");

    // In a workbook, through every reader.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sheets.xlsx");
    let mut workbook = Workbook::new();
    for (name, value) in [("Calls", "first"), ("2", "second"), ("Visits", "third")] {
        let sheet = workbook.add_worksheet();
        sheet.set_name(name).unwrap();
        sheet.write_string(0, 0, "Which").unwrap();
        sheet.write_string(1, 0, value).unwrap();
    }
    workbook.save(&path).unwrap();
    for (wanted, value) in [
        (None, "first"),
        (Some("visits"), "third"),
        (Some("2"), "second"),
        (Some("3"), "third"),
    ] {
        let (_, rows) = read_all(&path, wanted);
        assert_eq!(fields(&rows[0]), [value], "{wanted:?}");
    }
    for err in error_of_each(&path, Some("9"), InputLimits::default()) {
        assert!(err.contains("Calls, 2, Visits"), "{err}");
    }
}

#[test]
fn spreadsheets_are_told_by_extension() {
    assert!(is_spreadsheet(Path::new("a/b.XLSX")));
    assert!(is_spreadsheet(Path::new("b.ods")));
    assert!(!is_spreadsheet(Path::new("b.csv")));
    assert!(!is_spreadsheet(Path::new("xlsx")));
    assert!(has_extension(Path::new("b.XLSM"), &STREAMED_EXTENSIONS));
    assert!(!has_extension(Path::new("b.xls"), &STREAMED_EXTENSIONS));
}

/// Every kind of cell a sheet holds, as both paths read it: dates by built-in and custom
/// formats, a number formatted as a date, fractions, whole numbers, booleans, errors, formulas'
/// cached text, rich text, escaped control characters, white space kept, and cells left out.
#[test]
fn every_kind_of_cell_reads_the_same_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinds.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    let headers = [
        "Date", "DateTime", "Custom", "AsDate", "Plain", "Whole", "Bool", "Error", "Formula",
        "Rich", "Odd",
    ];
    for (col, h) in headers.iter().enumerate() {
        sheet.write_string(0, col as u16, *h).unwrap();
    }
    let date = Format::new().set_num_format_index(14);
    let datetime = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let custom = Format::new().set_num_format("dd/mm/yyyy hh:mm");
    let when = ExcelDateTime::parse_from_str("2024-03-10 09:30:00").unwrap();
    sheet
        .write_datetime_with_format(1, 0, &when, &date)
        .unwrap();
    sheet
        .write_datetime_with_format(1, 1, &when, &datetime)
        .unwrap();
    sheet
        .write_datetime_with_format(1, 2, &when, &custom)
        .unwrap();
    // A plain number typed into a cell formatted as a date.
    sheet
        .write_number_with_format(1, 3, 45000.25, &Format::new().set_num_format("yyyy-mm-dd"))
        .unwrap();
    sheet.write_number(1, 4, 2.5).unwrap();
    sheet.write_number(1, 5, 201.0).unwrap();
    sheet.write_boolean(1, 6, true).unwrap();
    sheet
        .write_formula(1, 7, Formula::new("=1/0").set_result("#DIV/0!"))
        .unwrap();
    sheet
        .write_formula(1, 8, Formula::new("=\"a\"&\"b\"").set_result("a & b"))
        .unwrap();
    let bold = Format::new().set_bold();
    sheet
        .write_rich_string(1, 9, &[(&bold, "rich "), (&Format::new(), "text")])
        .unwrap();
    sheet.write_string(1, 10, "  kept \u{1} <&> ").unwrap();
    // Row 3 leaves columns out; row 4 is formatted but empty; row 5 is wider than the header.
    sheet.write_number(2, 0, 1.0).unwrap();
    sheet.write_string(2, 4, "sparse").unwrap();
    sheet.write_blank(3, 2, &bold).unwrap();
    sheet.write_string(4, 0, "wide").unwrap();
    sheet.write_string(4, 12, "beyond").unwrap();
    sheet.write_boolean(5, 6, false).unwrap();
    workbook.save(&path).unwrap();

    let (read_headers, rows) = read_all(&path, None);
    assert_eq!(read_headers, ByteRecord::from(headers.to_vec()));
    assert_eq!(
        fields(&rows[0]),
        [
            "2024-03-10 09:30:00",
            "2024-03-10 09:30:00",
            "2024-03-10 09:30:00",
            "2023-03-15 06:00:00",
            "2.5",
            "201",
            "TRUE",
            "#Div0",
            "a & b",
            "rich text",
            "  kept \u{1} <&> ",
        ]
    );
    assert_eq!(rows[1].number, 3);
    assert_eq!(
        fields(&rows[1]),
        ["1", "", "", "", "sparse", "", "", "", "", "", ""]
    );
    assert_eq!(rows[2].number, 5, "the formatted empty row is skipped");
    assert_eq!(
        rows[2].record.len(),
        13,
        "wider than the header: the width rule decides"
    );
    assert_eq!(&rows[2].record[12], b"beyond");
    assert_eq!(fields(&rows[3])[6], "FALSE");
}

/// Inline strings (`t="inlineStr"`), as some exporters and rust_xlsxwriter's constant-memory
/// mode write them, with the header below row 1 and right of column A.
#[test]
fn inline_strings_and_a_table_away_from_a1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inline.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet_with_constant_memory();
    sheet.write_string(3, 2, "Lead").unwrap();
    sheet.write_string(3, 3, "Note").unwrap();
    sheet.write_string(4, 2, "a").unwrap();
    sheet.write_string(4, 3, " spaced ").unwrap();
    sheet.write_number(6, 2, 7.0).unwrap();
    workbook.save(&path).unwrap();
    let (headers, rows) = read_all(&path, None);
    assert_eq!(headers, ByteRecord::from(vec!["Lead", "Note"]));
    assert_eq!(rows.iter().map(|r| r.number).collect::<Vec<_>>(), [5, 7]);
    assert_eq!(fields(&rows[0]), ["a", " spaced "]);
    assert_eq!(fields(&rows[1]), ["7", ""]);
}

#[test]
fn a_row_past_the_limits_stops_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "A").unwrap();
    sheet.write_string(1, 0, "x".repeat(100)).unwrap();
    sheet.write_string(2, 30, "far").unwrap();
    workbook.save(&path).unwrap();
    let tight = InputLimits {
        max_cell_bytes: 10,
        max_row_bytes: 50,
        max_columns: 20,
    };
    let source = SheetSource::open(&path, None, tight, SheetReader::Auto).unwrap();
    let errors: Vec<String> = source
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors[0].contains("sheet row 2") && errors[0].contains("max_row_bytes"),
        "{errors:?}"
    );
    let source = SheetSource::open(
        &path,
        None,
        InputLimits {
            max_row_bytes: 1000,
            ..tight
        },
        SheetReader::Auto,
    )
    .unwrap();
    let errors: Vec<String> = source
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors[0].contains("sheet row 3") && errors[0].contains("column AE"),
        "{errors:?}"
    );
}

#[test]
fn column_names_are_spreadsheet_letters() {
    assert_eq!(column_name(0), "A");
    assert_eq!(column_name(25), "Z");
    assert_eq!(column_name(27), "AB");
    assert_eq!(column_name(16383), "XFD");
    assert_eq!(stream::cell_position("AB12").unwrap(), (11, 27));
    assert_eq!(
        stream::cell_position("xfd1048576").unwrap(),
        (1_048_575, 16383)
    );
    assert!(stream::cell_position("A0").is_err());
    assert!(stream::cell_position("ZZZZZZZZ1").is_err());
}

#[test]
fn custom_formats_are_told_apart_as_calamine_tells_them() {
    use package::{NumberKind, custom_number_format};
    for (format, kind) in [
        ("dd/mm/yyyy hh:mm", NumberKind::DateTime),
        ("yyyy-mm-dd", NumberKind::DateTime),
        ("H:MM:SS;@", NumberKind::DateTime),
        ("[h]:mm:ss", NumberKind::TimeDelta),
        ("0.00", NumberKind::Other),
        ("#,##0\\ [$\\u20bd-46D]", NumberKind::Other),
        ("\"days\" 0", NumberKind::Other),
        ("0;[Red]d", NumberKind::Other),
    ] {
        assert_eq!(custom_number_format(format), kind, "{format}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Any table of text, numbers, dates, booleans and gaps, anywhere on the sheet, written with
    /// shared or inline strings: the stream reads the rows the whole path reads.
    #[test]
    fn both_paths_read_the_same_rows(
        top in 0u32..4,
        left in 0u16..4,
        inline in proptest::bool::ANY,
        width in 1usize..6,
        cells in proptest::collection::vec(
            proptest::collection::vec((0u8..7, "[a-z ,\"]{0,6}", -1.0e6f64..1.0e6), 0..8),
            0..12,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any.xlsx");
        let mut workbook = Workbook::new();
        let sheet = if inline {
            workbook.add_worksheet_with_constant_memory()
        } else {
            workbook.add_worksheet()
        };
        let date = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
        for col in 0..width {
            sheet.write_string(top, left + col as u16, format!("H{col}")).unwrap();
        }
        for (r, row) in cells.iter().enumerate() {
            let at = top + 1 + r as u32;
            for (c, (kind, s, n)) in row.iter().enumerate() {
                let col = left + c as u16;
                match kind {
                    0 => drop(sheet.write_string(at, col, s.as_str()).unwrap()),
                    1 => drop(sheet.write_number(at, col, *n).unwrap()),
                    2 => drop(sheet.write_number(at, col, n.round()).unwrap()),
                    3 => drop(sheet.write_number_with_format(at, col, n.abs() / 10.0, &date).unwrap()),
                    4 => drop(sheet.write_boolean(at, col, *n > 0.0).unwrap()),
                    _ => {}
                }
            }
        }
        workbook.save(&path).unwrap();
        read_all(&path, None);
    }
}

/// A workbook written part by part, for what the writer library does not make: the 1904 date
/// system, ISO date cells, phonetic runs, cells without a reference, a sheet without a used
/// range or with a wrong one.
fn hand_made(path: &Path, date1904: bool, dimension: Option<&str>, sheet_data: &str) {
    use std::io::Write;
    let parts = [
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/workbook.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><workbookPr{}/><sheets><sheet name="Data &amp; more" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
                if date1904 { r#" date1904="1""# } else { "" }
            ),
        ),
        (
            "xl/styles.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><numFmts count="1"><numFmt numFmtId="164" formatCode="dd/mm/yyyy hh:mm"/></numFmts><cellStyleXfs count="1"><xf numFmtId="22"/></cellStyleXfs><cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="14"/></cellXfs></styleSheet>"#.to_string(),
        ),
        (
            "xl/sharedStrings.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="4" uniqueCount="4"><si><t>Lead</t></si><si><r><t>ri</t></r><r><rPr><b/></rPr><t xml:space="preserve">ch </t></r><rPh><t>ignored</t></rPh></si><si><t>line_x000D_break</t></si><si><t>  trimmed  </t></si></sst>"#.to_string(),
        ),
        (
            "xl/worksheets/sheet1.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{}<sheetData>{sheet_data}</sheetData></worksheet>"#,
                dimension.map_or(String::new(), |d| format!(r#"<dimension ref="{d}"/>"#))
            ),
        ),
    ];
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, text) in parts {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn hand_made_cells_read_the_same_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.xlsx");
    let sheet = concat!(
        r#"<row r="1"><c r="A1" t="s"><v>0</v></c><c t="inlineStr"><is><t>B</t></is></c>"#,
        r#"<c t="inlineStr"><is><t>C</t></is></c><c t="inlineStr"><is><t>D</t></is></c>"#,
        r#"<c t="inlineStr"><is><t>E</t></is></c><c t="inlineStr"><is><t>F</t></is></c>"#,
        r#"<c t="inlineStr"><is><t>G</t></is></c><c t="inlineStr"><is><t>H</t></is></c></row>"#,
        r#"<row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" t="s"><v>2</v></c>"#,
        r#"<c r="C2" t="d"><v>2024-03-10T09:30:00</v></c>"#,
        r#"<c r="D2" t="str"><f>A1&amp;"x"</f><v>a &amp; b &#65;</v></c>"#,
        r#"<c r="E2" t="inlineStr"><is><t xml:space="preserve"> kept </t></is></c>"#,
        r#"<c r="F2" s="1"><v>0.5</v></c><c r="G2" s="2"><v>1</v></c><c r="H2"><v>1.5E3</v></c></row>"#,
        r#"<row r="4"><c t="s"><v>3</v></c><c><v>abc</v></c></row>"#,
    );
    for date1904 in [false, true] {
        hand_made(&path, date1904, Some("A1:H4"), sheet);
        let (headers, rows) = read_all(&path, Some("data & more"));
        assert_eq!(
            headers,
            ByteRecord::from(vec!["Lead", "B", "C", "D", "E", "F", "G", "H"])
        );
        let (half, one) = if date1904 {
            ("1904-01-01 12:00:00", "1904-01-02 00:00:00")
        } else {
            ("1899-12-31 12:00:00", "1900-01-01 00:00:00")
        };
        assert_eq!(
            fields(&rows[0]),
            [
                "rich ",
                "line\rbreak",
                "2024-03-10 09:30:00",
                "a & b A",
                " kept ",
                half,
                one,
                "1500"
            ],
            "1904: {date1904}"
        );
        assert_eq!(rows[1].number, 4);
        assert_eq!(fields(&rows[1])[..2], ["trimmed", "abc"]);
    }
}

#[test]
fn without_a_declared_range_the_table_starts_at_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.xlsx");
    let sheet = concat!(
        r#"<row r="2"><c r="C2" t="s"><v>0</v></c><c r="D2" t="inlineStr"><is><t>Code</t></is></c></row>"#,
        r#"<row r="3"><c r="D3"><v>201</v></c></row>"#,
    );
    hand_made(&path, false, None, sheet);
    let (headers, rows) = read_all(&path, None);
    assert_eq!(headers, ByteRecord::from(vec!["Lead", "Code"]));
    assert_eq!(fields(&rows[0]), ["", "201"]);
    // The placeholder "A1" some writers declare is no range either.
    hand_made(&path, false, Some("A1"), sheet);
    assert_eq!(read_all(&path, None).1, rows);
}

#[test]
fn a_stream_that_cannot_be_trusted_stops_naming_the_sheet_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.xlsx");
    let header = r#"<row r="1"><c r="B1" t="s"><v>0</v></c></row>"#;
    let cases = [
        // A value left of the range the sheet declares.
        (
            Some("B1:B3"),
            r#"<row r="2"><c r="A2"><v>1</v></c></row>"#,
            "column A, left of the table's first column B",
        ),
        // A row before the one above it.
        (
            Some("B1:B3"),
            r#"<row r="3"><c r="B3"><v>1</v></c></row><row r="2"><c r="B2"><v>2</v></c></row>"#,
            "sheet row 2 comes after row 3",
        ),
        // A cell written twice.
        (
            Some("B1:C3"),
            r#"<row r="2"><c r="C2"><v>1</v></c><c r="B2"><v>2</v></c></row>"#,
            "holds column B twice",
        ),
        // A shared string the table does not hold.
        (
            Some("B1:B3"),
            r#"<row r="2"><c r="B2" t="s"><v>99</v></c></row>"#,
            "string 99",
        ),
    ];
    for (dimension, rows, expected) in cases {
        hand_made(&path, false, dimension, &format!("{header}{rows}"));
        // Found while reading the rows, or at the header (the stream reads one cell ahead).
        let errors: Vec<String> =
            match SheetSource::open(&path, None, InputLimits::default(), SheetReader::Auto) {
                Ok(source) => source
                    .filter_map(Result::err)
                    .map(|e| e.to_string())
                    .collect(),
                Err(e) => vec![e.to_string()],
            };
        assert!(
            errors.len() == 1 && errors[0].contains(expected) && errors[0].contains("damaged.xlsx"),
            "{expected}: {errors:?}"
        );
    }
}

#[test]
fn a_file_that_is_no_workbook_is_a_file_level_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.xlsx");
    std::fs::write(&path, b"RelatedProspectId,ActivityEvent\n").unwrap();
    for err in error_of_each(&path, None, InputLimits::default()) {
        assert!(
            err.contains("bad.xlsx") && err.contains("cannot read the spreadsheet"),
            "{err}"
        );
    }
    let err = SheetSource::open(
        &dir.path().join("missing.xlsx"),
        None,
        InputLimits::default(),
        SheetReader::Auto,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("cannot open") && err.contains("missing.xlsx"),
        "{err}"
    );
}
