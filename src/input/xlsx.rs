//! Read stage for spreadsheets: an `.xlsx`, `.xlsm`, `.xlsb`, `.xls` or `.ods` file in, the same
//! [`SourceRow`]s as a CSV file out, so everything downstream (validation, ledger, resume by file
//! hash, report) works unchanged.
//!
//! `.xlsx` and `.xlsm` are streamed ([`stream`]): the sheet is decompressed and parsed as its rows
//! are read, and its shared-strings table is kept in bounded memory ([`strings`]), so memory stays
//! flat up to Excel's limit of 1,048,576 rows. `.xls`, `.xlsb` and `.ods` are loaded whole by
//! calamine (it has no streaming reader for them): memory grows with the sheet, and a large one is
//! said so in the log. `LSQ_XLSX_READER=whole` loads `.xlsx`/`.xlsm` whole too, the way they were
//! read before they were streamed: the tests run both paths over the same workbooks, and it is a
//! way round a file the stream refuses (below).
//!
//! Both paths give the same rows. Cells become the text a person sees in the sheet ([`push_cell_text`]):
//! date cells `yyyy-MM-dd HH:mm:ss` (to the nearest second), whole numbers without `.0` (ids and
//! codes typed into a number cell come back as `201`, not `201.0`), other numbers in their
//! shortest exact form. The first non-empty row is the header; rows with no value at all are
//! skipped (spreadsheets keep formatted but empty rows at the end). Row numbers are the sheet's
//! own, so the report and messages point at the row a person sees in the spreadsheet program.
//!
//! Where the paths can differ: the whole path's table starts at the leftmost column holding a
//! value anywhere in the sheet; the stream cannot look ahead, so it starts at the left edge of
//! the used range the sheet declares (`<dimension>`, written by every spreadsheet program), or,
//! when none is declared, at the header's first cell. Formatted but empty cells left of every
//! value make that edge further left: the report then has empty columns the whole path leaves
//! out. A value left of the edge, a row before the one above it, or a cell written twice (only a
//! damaged or hand-made file holds them) stops the stream with an error naming the sheet row.

mod package;
mod stream;
mod strings;

use std::path::{Path, PathBuf};

use calamine::{Data, DataRef, DataType, Range, Reader, open_workbook_auto};
use csv::ByteRecord;

use crate::input::rows::{InputError, InputLimits, SourceRow};
use crate::input::xlsx::package::{Package, ReadError};
use crate::input::xlsx::stream::CellStream;
use crate::lsq::api::DATE_TIME_FORMAT;

/// File name endings read as spreadsheets; everything else is CSV.
pub(crate) const SPREADSHEET_EXTENSIONS: [&str; 5] = ["xlsx", "xlsm", "xlsb", "xls", "ods"];

/// File name endings read as a stream.
const STREAMED_EXTENSIONS: [&str; 2] = ["xlsx", "xlsm"];

/// The environment variable that makes `.xlsx`/`.xlsm` load whole (`whole`).
pub(crate) const READER_ENV: &str = "LSQ_XLSX_READER";

/// A file loaded whole over this size is said in the log to cost memory as it grows.
const LARGE_WHOLE_FILE: u64 = 10 << 20;

/// Whether `path` is read as a spreadsheet, by its extension.
pub(crate) fn is_spreadsheet(path: &Path) -> bool {
    has_extension(path, &SPREADSHEET_EXTENSIONS)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|s| s.eq_ignore_ascii_case(e)))
}

/// How a sheet is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SheetReader {
    /// `.xlsx`/`.xlsm` as a stream, anything else whole.
    Auto,
    /// Every format whole, by calamine.
    Whole,
}

impl SheetReader {
    /// [`SheetReader::Whole`] when [`READER_ENV`] says `whole`.
    pub(crate) fn from_env() -> SheetReader {
        match std::env::var(READER_ENV) {
            Ok(v) if v.eq_ignore_ascii_case("whole") => SheetReader::Whole,
            _ => SheetReader::Auto,
        }
    }
}

/// One worksheet, iterated row by row.
pub(crate) struct SheetSource {
    path: PathBuf,
    rows: SheetRows,
    headers: ByteRecord,
    limits: InputLimits,
}

/// Where a sheet's rows come from.
enum SheetRows {
    /// Loaded whole by calamine.
    Whole {
        range: Range<Data>,
        /// Sheet row number (1-based) of the range's first row.
        first_row: u64,
        /// Index in `range` of the next row to read.
        next: usize,
    },
    /// Read from the file as it goes; boxed, being the larger by its buffers.
    Stream(Box<StreamRows>),
}

/// Cells of a streamed sheet gathered into rows.
struct StreamRows {
    cells: CellStream,
    /// Column (0-based) of the table's first column, once known: see the module comment.
    origin: Option<u32>,
    /// The first cell of the next row, read to find where the row before ends, and its text.
    pending: Option<(u32, u32)>,
    pending_text: String,
    text: String,
    /// Row (0-based) of the last row handed out.
    last_row: Option<u32>,
    finished: bool,
}

impl SheetSource {
    /// Opens `path` and reads the header of the chosen sheet: by name, else by position from 1;
    /// the first sheet when `sheet` is `None`. `.xlsx`/`.xlsm` are streamed unless `reader`
    /// says [`SheetReader::Whole`].
    pub(crate) fn open(
        path: &Path,
        sheet: Option<&str>,
        limits: InputLimits,
        reader: SheetReader,
    ) -> Result<SheetSource, InputError> {
        if reader == SheetReader::Auto && has_extension(path, &STREAMED_EXTENSIONS) {
            return SheetSource::open_stream(path, sheet, limits, strings::IN_MEMORY);
        }
        SheetSource::open_whole(path, sheet, limits)
    }

    /// Opens `path` whole with calamine.
    fn open_whole(
        path: &Path,
        sheet: Option<&str>,
        limits: InputLimits,
    ) -> Result<SheetSource, InputError> {
        let fail = |message: String| InputError::Sheet {
            path: path.to_path_buf(),
            message,
        };
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > LARGE_WHOLE_FILE
        {
            tracing::warn!(
                "{}: {} MB, loaded whole ({}): memory grows with the sheet, about 0.9 KB a row \
                 of 13 columns (1 GB at Excel's row limit); saved as .xlsx or CSV it is read \
                 in flat memory",
                path.display(),
                meta.len() >> 20,
                if has_extension(path, &STREAMED_EXTENSIONS) {
                    "LSQ_XLSX_READER=whole"
                } else {
                    "this format has no streaming reader"
                }
            );
        }
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
        SheetSource::from_range(path, range, limits)
    }

    /// Opens `path` as a stream, keeping up to `in_memory` bytes of shared strings in memory.
    fn open_stream(
        path: &Path,
        sheet: Option<&str>,
        limits: InputLimits,
        in_memory: usize,
    ) -> Result<SheetSource, InputError> {
        let fail = |message: String| InputError::Sheet {
            path: path.to_path_buf(),
            message,
        };
        let package = Package::open(path).map_err(|e| match e {
            ReadError::Io(source) => InputError::Open {
                path: path.to_path_buf(),
                source,
            },
            other => fail(format!("cannot read the spreadsheet: {other}")),
        })?;
        let names: Vec<String> = package.sheets.iter().map(|(n, _)| n.clone()).collect();
        let name = choose_sheet(&names, sheet).map_err(fail)?;
        let part = package
            .sheets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, part)| part.clone())
            .unwrap_or_default();
        let cells = CellStream::open(package, &part, in_memory)
            .map_err(|e| fail(format!("cannot read sheet {name:?}: {e}")))?;
        let Some(cells) = cells else {
            return Err(InputError::Empty {
                path: path.to_path_buf(),
            });
        };
        let origin = cells.declared_start.map(|(_, col)| col);
        let rows = SheetRows::Stream(Box::new(StreamRows {
            cells,
            origin,
            pending: None,
            pending_text: String::new(),
            text: String::new(),
            last_row: None,
            finished: false,
        }));
        SheetSource::start(path, rows, limits)
    }

    /// Reads from a loaded sheet; `name` is used in messages as the file's name.
    pub(crate) fn from_range(
        name: &Path,
        range: Range<Data>,
        limits: InputLimits,
    ) -> Result<SheetSource, InputError> {
        let first_row = range.start().map_or(1, |(row, _)| u64::from(row) + 1);
        let rows = SheetRows::Whole {
            range,
            first_row,
            next: 0,
        };
        SheetSource::start(name, rows, limits)
    }

    /// Finds the header: the first row with a value.
    fn start(path: &Path, rows: SheetRows, limits: InputLimits) -> Result<SheetSource, InputError> {
        let mut source = SheetSource {
            path: path.to_path_buf(),
            rows,
            headers: ByteRecord::new(),
            limits,
        };
        let mut header = ByteRecord::new();
        let line = loop {
            match source.next_row(&mut header)? {
                None => {
                    return Err(InputError::Empty {
                        path: path.to_path_buf(),
                    });
                }
                Some(line) if !is_blank(&header) => break line,
                Some(_) => {}
            }
        };
        if let SheetRows::Stream(stream) = &mut source.rows
            && stream.origin.is_none()
        {
            // No declared range: the table starts at the header's first cell.
            let first = header.iter().position(|f| !f.is_empty()).unwrap_or(0);
            stream.origin = Some(first as u32);
            header = header.iter().skip(first).collect();
        }
        let used = last_used(&header);
        header.truncate(used);
        limits.check_header(path, line, header.len())?;
        source.headers = header;
        Ok(source)
    }

    /// The header row.
    pub(crate) fn headers(&self) -> &ByteRecord {
        &self.headers
    }

    /// Reads the next row with a value into `row`, reusing its memory; `Ok(false)` at the end.
    pub(crate) fn read_into(&mut self, row: &mut SourceRow) -> Result<bool, InputError> {
        loop {
            let Some(number) = self.next_row(&mut row.record)? else {
                return Ok(false);
            };
            if is_blank(&row.record) {
                continue;
            }
            // Cells beyond the header that hold nothing are the sheet's shape, not the row's
            // data; a row the stream ended early is as wide as the header, as a loaded one is.
            let width = last_used(&row.record).max(self.headers.len());
            row.record.truncate(width);
            while row.record.len() < width {
                row.record.push_field(b"");
            }
            row.number = number;
            row.line = number;
            return Ok(true);
        }
    }

    /// The next row of the sheet, blank or not, into `record` (cleared first), and its sheet
    /// row number.
    fn next_row(&mut self, record: &mut ByteRecord) -> Result<Option<u64>, InputError> {
        record.clear();
        match &mut self.rows {
            SheetRows::Whole {
                range,
                first_row,
                next,
            } => {
                if *next >= range.height() {
                    return Ok(None);
                }
                let index = *next;
                *next += 1;
                let mut text = String::new();
                for col in 0..range.width() {
                    text.clear();
                    if let Some(cell) = range.get((index, col)) {
                        push_cell_text(&data_ref(cell), &mut text);
                    }
                    record.push_field(text.as_bytes());
                }
                Ok(Some(*first_row + index as u64))
            }
            SheetRows::Stream(stream) => {
                stream
                    .next_row(record, &self.limits)
                    .map_err(|message| InputError::Sheet {
                        path: self.path.clone(),
                        message,
                    })
            }
        }
    }
}

impl StreamRows {
    /// The cells of the next row that holds any cell, placed from the table's first column
    /// (or the sheet's first, before it is known); empty cells are left out, so the row ends
    /// at its last value.
    fn next_row(
        &mut self,
        record: &mut ByteRecord,
        limits: &InputLimits,
    ) -> Result<Option<u64>, String> {
        let first = match self.pending.take() {
            Some(first) => first,
            None if self.finished => return Ok(None),
            None => match self
                .cells
                .next_cell(&mut self.pending_text)
                .map_err(|e| e.to_string())?
            {
                Some(first) => first,
                None => {
                    self.finished = true;
                    return Ok(None);
                }
            },
        };
        let row = first.0;
        let number = u64::from(row) + 1;
        if self.last_row.is_some_and(|last| row <= last) {
            return Err(format!(
                "sheet row {number} comes after row {} in the file; the file is damaged \
                 (saving it again in a spreadsheet program rewrites it in order)",
                self.last_row.map_or(0, |last| u64::from(last) + 1)
            ));
        }
        self.last_row = Some(row);
        let text = std::mem::take(&mut self.pending_text);
        self.place(record, first.1, &text, number, limits)?;
        self.pending_text = text;
        loop {
            match self
                .cells
                .next_cell(&mut self.text)
                .map_err(|e| e.to_string())?
            {
                None => {
                    self.finished = true;
                    break;
                }
                Some((r, col)) if r == row => {
                    let text = std::mem::take(&mut self.text);
                    let placed = self.place(record, col, &text, number, limits);
                    self.text = text;
                    placed?;
                }
                Some(next) => {
                    self.pending = Some(next);
                    std::mem::swap(&mut self.text, &mut self.pending_text);
                    break;
                }
            }
        }
        Ok(Some(number))
    }

    /// Puts a cell's text at its column, after empty cells for the columns before it.
    fn place(
        &self,
        record: &mut ByteRecord,
        col: u32,
        text: &str,
        number: u64,
        limits: &InputLimits,
    ) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        let origin = self.origin.unwrap_or(0);
        let Some(index) = col.checked_sub(origin).map(|i| i as usize) else {
            return Err(format!(
                "sheet row {number} has a value in column {}, left of the table's first column \
                 {} (where the sheet's used range starts); the file is damaged or was written \
                 by a program that misstates the range: saving it again in a spreadsheet \
                 program mends it, or set {READER_ENV}=whole to load it whole",
                column_name(col),
                column_name(origin)
            ));
        };
        if index < record.len() {
            return Err(format!(
                "sheet row {number} holds column {} twice, or out of order; the file is damaged",
                column_name(col)
            ));
        }
        if index >= limits.max_columns {
            return Err(format!(
                "sheet row {number} has a value in column {}, past the limit of {} columns \
                 ([input] max_columns)",
                column_name(col),
                limits.max_columns
            ));
        }
        while record.len() < index {
            record.push_field(b"");
        }
        record.push_field(text.as_bytes());
        if record.as_slice().len() > limits.max_row_bytes {
            return Err(format!(
                "sheet row {number} is longer than {} bytes (the limit, [input] max_row_bytes)",
                limits.max_row_bytes
            ));
        }
        Ok(())
    }
}

impl Iterator for SheetSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut row = SourceRow {
            number: 0,
            line: 0,
            record: ByteRecord::new(),
        };
        match self.read_into(&mut row) {
            Ok(true) => Some(Ok(row)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// A row whose every cell is empty or white space.
fn is_blank(record: &ByteRecord) -> bool {
    let bytes = record.as_slice();
    if bytes.is_ascii() {
        // As `str::trim` sees white space: the ASCII kinds and the vertical tab.
        return bytes.iter().all(|b| b.is_ascii_whitespace() || *b == 0x0B);
    }
    record
        .iter()
        .all(|f| std::str::from_utf8(f).is_ok_and(|s| s.trim().is_empty()))
}

/// How many fields up to and including the last that is not empty.
fn last_used(record: &ByteRecord) -> usize {
    record
        .iter()
        .rposition(|f| !f.is_empty())
        .map_or(0, |last| last + 1)
}

/// A column's letters (`0` -> `A`, `27` -> `AB`).
fn column_name(col: u32) -> String {
    let mut name = Vec::new();
    let mut n = col + 1;
    while n > 0 {
        name.push(b'A' + ((n - 1) % 26) as u8);
        n = (n - 1) / 26;
    }
    name.reverse();
    String::from_utf8_lossy(&name).into_owned()
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

/// A loaded cell as the cell the stream reads: the same value, borrowed.
fn data_ref(cell: &Data) -> DataRef<'_> {
    match cell {
        Data::Empty => DataRef::Empty,
        Data::String(s) => DataRef::SharedString(s),
        Data::Int(i) => DataRef::Int(*i),
        Data::Float(f) => DataRef::Float(*f),
        Data::Bool(b) => DataRef::Bool(*b),
        Data::DateTime(dt) => DataRef::DateTime(*dt),
        Data::DateTimeIso(text) => DataRef::DateTimeIso(text.clone()),
        Data::DurationIso(text) => DataRef::DurationIso(text.clone()),
        Data::Error(e) => DataRef::Error(e.clone()),
    }
}

/// A cell as the text a person sees (see the module comment), added to `out`.
pub(crate) fn push_cell_text(cell: &DataRef<'_>, out: &mut String) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = match cell {
        DataRef::Empty => Ok(()),
        DataRef::String(s) => write!(out, "{s}"),
        DataRef::SharedString(s) => write!(out, "{s}"),
        DataRef::Int(i) => write!(out, "{i}"),
        DataRef::Float(f) => write_number(*f, out),
        DataRef::Bool(b) => write!(out, "{}", if *b { "TRUE" } else { "FALSE" }),
        DataRef::DateTime(dt) if dt.is_datetime() => match dt.as_datetime() {
            // calamine rounds to the millisecond; a time typed to the second can come back a
            // millisecond short of it.
            Some(when) => write!(
                out,
                "{}",
                (when + chrono::Duration::milliseconds(500)).format(DATE_TIME_FORMAT)
            ),
            None => write_number(dt.as_f64(), out),
        },
        DataRef::DateTime(dt) => write_number(dt.as_f64(), out),
        DataRef::DateTimeIso(text) => match cell.as_datetime() {
            Some(when) => write!(out, "{}", when.format(DATE_TIME_FORMAT)),
            None => write!(out, "{text}"),
        },
        DataRef::DurationIso(text) => write!(out, "{text}"),
        DataRef::Error(e) => write!(out, "#{e:?}"),
    };
}

/// Whole numbers as integers (`201.0` -> `201`); others in Rust's shortest round-trip form.
fn write_number(f: f64, out: &mut String) -> std::fmt::Result {
    use std::fmt::Write;
    // Below 2^53 every whole f64 is exact, so the integer is what was typed.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        write!(out, "{}", f as i64)
    } else {
        write!(out, "{f}")
    }
}

#[cfg(test)]
mod tests;
