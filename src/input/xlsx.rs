//! Read stage for spreadsheets: an `.xlsx`, `.xlsm`, `.xlsb`, `.xls` or `.ods` file in (through
//! calamine), the same [`SourceRow`]s as a CSV file out, so everything downstream (validation,
//! ledger, resume by file hash, report) works unchanged.
//!
//! calamine loads the whole worksheet, so unlike CSV this is not streamed: memory grows with the
//! sheet (a few hundred bytes per row). Cells become the text a person sees in the sheet: date
//! cells `yyyy-MM-dd HH:mm:ss` (to the nearest second), whole numbers without `.0` (ids and
//! codes typed into a number cell come back as `201`, not `201.0`), other numbers in their
//! shortest exact form. The first non-empty row is the header; rows with no value at all are
//! skipped (spreadsheets keep formatted but empty rows at the end). Row numbers are the sheet's
//! own, so the report and messages point at the row a person sees in the spreadsheet program.

use std::path::Path;

use calamine::{Data, DataType, Range, Reader, open_workbook_auto};
use csv::ByteRecord;

use crate::input::rows::{InputError, SourceRow};
use crate::lsq::api::DATE_TIME_FORMAT;

/// File name endings read as spreadsheets; everything else is CSV.
pub(crate) const SPREADSHEET_EXTENSIONS: [&str; 5] = ["xlsx", "xlsm", "xlsb", "xls", "ods"];

/// Whether `path` is read as a spreadsheet, by its extension.
pub(crate) fn is_spreadsheet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        SPREADSHEET_EXTENSIONS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(e))
    })
}

/// One worksheet, iterated row by row.
pub(crate) struct SheetSource {
    range: Range<Data>,
    headers: ByteRecord,
    /// Sheet row number (1-based) of the range's first row.
    first_row: u64,
    /// Index in `range` of the next row to read.
    next: usize,
}

impl SheetSource {
    /// Opens `path` and reads the header of the chosen sheet: by name, else by position from 1;
    /// the first sheet when `sheet` is `None`.
    pub(crate) fn open(path: &Path, sheet: Option<&str>) -> Result<SheetSource, InputError> {
        let fail = |message: String| InputError::Sheet {
            path: path.to_path_buf(),
            message,
        };
        let mut workbook = open_workbook_auto(path).map_err(|e| match e {
            calamine::Error::Io(source) => InputError::Open {
                path: path.to_path_buf(),
                source,
            },
            other => fail(format!("cannot read the spreadsheet: {other}")),
        })?;
        let names = workbook.sheet_names();
        let name = choose_sheet(&names, sheet).map_err(fail)?;
        let range = workbook
            .worksheet_range(&name)
            .map_err(|e| fail(format!("cannot read sheet {name:?}: {e}")))?;
        SheetSource::from_range(path, range)
    }

    /// Reads from a loaded sheet; `name` is used in messages as the file's name.
    pub(crate) fn from_range(name: &Path, range: Range<Data>) -> Result<SheetSource, InputError> {
        let first_row = range.start().map_or(1, |(row, _)| u64::from(row) + 1);
        let mut source = SheetSource {
            range,
            headers: ByteRecord::new(),
            first_row,
            next: 0,
        };
        let Some((_, header)) = source.next_non_empty() else {
            return Err(InputError::Empty {
                path: name.to_path_buf(),
            });
        };
        let mut cells: Vec<String> = header.iter().map(cell_text).collect();
        while cells.last().is_some_and(String::is_empty) {
            cells.pop();
        }
        source.headers = cells.iter().map(String::as_bytes).collect();
        Ok(source)
    }

    /// The header row.
    pub(crate) fn headers(&self) -> &ByteRecord {
        &self.headers
    }

    /// The next row with any value, and its sheet row number.
    fn next_non_empty(&mut self) -> Option<(u64, Vec<Data>)> {
        let height = self.range.height();
        while self.next < height {
            let index = self.next;
            self.next += 1;
            let cells: Vec<Data> = (0..self.range.width())
                .map(|col| self.range.get((index, col)).cloned().unwrap_or(Data::Empty))
                .collect();
            if cells.iter().any(|c| !cell_text(c).trim().is_empty()) {
                return Some((self.first_row + index as u64, cells));
            }
        }
        None
    }
}

impl Iterator for SheetSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (number, cells) = self.next_non_empty()?;
        let mut fields: Vec<String> = cells.iter().map(cell_text).collect();
        // Cells beyond the header that hold nothing are the sheet's shape, not the row's data.
        while fields.len() > self.headers.len() && fields.last().is_some_and(String::is_empty) {
            fields.pop();
        }
        Some(Ok(SourceRow {
            number,
            line: number,
            record: fields.iter().map(String::as_bytes).collect(),
        }))
    }
}

/// The sheet to read: `wanted` by name (exact, then ignoring case), else by position from 1.
fn choose_sheet(names: &[String], wanted: Option<&str>) -> Result<String, String> {
    let Some(wanted) = wanted else {
        return names
            .first()
            .cloned()
            .ok_or_else(|| "the workbook has no sheets".to_string());
    };
    let by_name = names
        .iter()
        .find(|n| n.as_str() == wanted)
        .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(wanted)));
    let by_index = || {
        wanted
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=names.len()).contains(n))
            .map(|n| &names[n - 1])
    };
    by_name.or_else(by_index).cloned().ok_or_else(|| {
        format!(
            "no sheet {wanted:?} (--sheet takes a name or a position from 1; sheets: {})",
            names.join(", ")
        )
    })
}

/// A cell as the text a person sees: see the module comment.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::DateTime(dt) if dt.is_datetime() => match dt.as_datetime() {
            // calamine rounds to the millisecond; a time typed to the second can come back a
            // millisecond short of it.
            Some(when) => (when + chrono::Duration::milliseconds(500))
                .format(DATE_TIME_FORMAT)
                .to_string(),
            None => number_text(dt.as_f64()),
        },
        Data::DateTime(dt) => number_text(dt.as_f64()),
        Data::DateTimeIso(text) => cell.as_datetime().map_or_else(
            || text.clone(),
            |when| when.format(DATE_TIME_FORMAT).to_string(),
        ),
        Data::DurationIso(text) => text.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// Whole numbers as integers (`201.0` -> `201`); others in Rust's shortest round-trip form.
fn number_text(f: f64) -> String {
    // Below 2^53 every whole f64 is exact, so the integer is what was typed.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

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

    #[test]
    fn cells_read_as_a_person_sees_them() {
        assert_eq!(cell_text(&Data::Float(201.0)), "201");
        assert_eq!(cell_text(&Data::Float(-3.0)), "-3");
        assert_eq!(cell_text(&Data::Float(2.5)), "2.5");
        assert_eq!(cell_text(&Data::Float(0.1)), "0.1");
        assert_eq!(cell_text(&Data::Int(42)), "42");
        assert_eq!(cell_text(&Data::Bool(true)), "TRUE");
        // 2024-03-10 09:30:00 is serial 45361.395833...; a hair under rounds to the second.
        let serial = 45361.0 + (9.5 / 24.0) - 0.000_000_1;
        let date = Data::DateTime(ExcelDateTime::new(
            serial,
            ExcelDateTimeType::DateTime,
            false,
        ));
        assert_eq!(cell_text(&date), "2024-03-10 09:30:00");
        assert_eq!(
            cell_text(&Data::DateTimeIso("2024-03-10T09:30:00".into())),
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
        let source = SheetSource::from_range(Path::new("in.xlsx"), range(rows, (2, 1))).unwrap();
        assert_eq!(source.headers(), &ByteRecord::from(vec!["Lead", "Code"]));
        let read: Vec<SourceRow> = source.map(|r| r.unwrap()).collect();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].number, read[0].line), (4, 4));
        assert_eq!(read[0].record, ByteRecord::from(vec!["a", "201"]));
        assert_eq!(read[1].number, 6);
    }

    #[test]
    fn an_empty_sheet_is_a_file_level_error() {
        let rows: &[&[Data]] = &[&[Data::Empty]];
        let err = SheetSource::from_range(Path::new("in.xlsx"), range(rows, (0, 0)))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("in.xlsx") && err.contains("empty"), "{err}");
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
    }

    #[test]
    fn spreadsheets_are_told_by_extension() {
        assert!(is_spreadsheet(Path::new("a/b.XLSX")));
        assert!(is_spreadsheet(Path::new("b.ods")));
        assert!(!is_spreadsheet(Path::new("b.csv")));
        assert!(!is_spreadsheet(Path::new("xlsx")));
    }
}
