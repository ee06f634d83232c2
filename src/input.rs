//! Read stage: a CSV file in, [`SourceRow`]s out, in file order, with their 1-based data-row
//! number and line, and the raw bytes of every field (so the report can carry them back exactly
//! as read, even when a cell is not valid UTF-8).
//!
//! This is the one place that builds CSV readers: header required, a UTF-8 BOM tolerated,
//! CRLF or LF, RFC 4180 quoting, and ragged rows passed on (validation reports them) rather than
//! aborting the file.
//!
//! [`InputSource::open`] picks the reader by file extension: spreadsheets go to `xlsx`, which
//! yields the same [`SourceRow`]s; everything else is read as CSV.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

/// One data row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// 1-based data-row number (the header is not counted): the report's `RowNumber`.
    pub number: u64,
    /// 1-based line of the file where the row starts, for messages a person can find.
    pub line: u64,
    /// The fields as read.
    pub record: ByteRecord,
}

/// A problem with the file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: the file is empty; expected a header row first")]
    Empty { path: PathBuf },
    #[error("{path}: cannot read line {line}: {message}")]
    Read {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Sheet { path: PathBuf, message: String },
}

/// An input file of either kind, iterated row by row.
pub enum InputSource {
    Csv(CsvSource),
    Sheet(crate::xlsx::SheetSource),
}

impl InputSource {
    /// Opens `path` as a spreadsheet when its extension says so (`sheet` chooses the worksheet),
    /// else as CSV, where naming a sheet is a mistake worth saying.
    pub fn open(path: &Path, sheet: Option<&str>) -> Result<InputSource, InputError> {
        if crate::xlsx::is_spreadsheet(path) {
            return crate::xlsx::SheetSource::open(path, sheet).map(InputSource::Sheet);
        }
        if let Some(sheet) = sheet {
            return Err(InputError::Sheet {
                path: path.to_path_buf(),
                message: format!(
                    "--sheet {sheet:?} applies to spreadsheets ({}); this file is read as CSV",
                    crate::xlsx::SPREADSHEET_EXTENSIONS.join(", ")
                ),
            });
        }
        CsvSource::open(path).map(InputSource::Csv)
    }

    /// The header row.
    pub fn headers(&self) -> &ByteRecord {
        match self {
            InputSource::Csv(csv) => csv.headers(),
            InputSource::Sheet(sheet) => sheet.headers(),
        }
    }
}

impl Iterator for InputSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            InputSource::Csv(csv) => csv.next(),
            InputSource::Sheet(sheet) => sheet.next(),
        }
    }
}

/// An open CSV file, iterated row by row.
pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read + Send>>,
    headers: ByteRecord,
    rows_read: u64,
    record: ByteRecord,
}

impl CsvSource {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<CsvSource, InputError> {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let file = io::BufReader::with_capacity(256 * 1024, file);
        CsvSource::from_reader(path, Box::new(file))
    }

    /// Reads CSV from any reader; `name` is used in messages as the file's name.
    pub fn from_reader(name: &Path, read: Box<dyn Read + Send>) -> Result<CsvSource, InputError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(read);
        let headers = reader
            .byte_headers()
            .map_err(|e| read_error(name, 1, &e))?
            .clone();
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(InputError::Empty {
                path: name.to_path_buf(),
            });
        }
        Ok(CsvSource {
            path: name.to_path_buf(),
            reader,
            headers: strip_bom(headers),
            rows_read: 0,
            record: ByteRecord::new(),
        })
    }

    /// The header row, BOM removed.
    pub fn headers(&self) -> &ByteRecord {
        &self.headers
    }

    /// The name the file is reported under.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for CsvSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.rows_read += 1;
                let line = self.record.position().map(|p| p.line()).unwrap_or(0);
                Some(Ok(SourceRow {
                    number: self.rows_read,
                    line,
                    record: self.record.clone(),
                }))
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                Some(Err(read_error(&self.path, line, &e)))
            }
        }
    }
}

fn read_error(path: &Path, line: u64, e: &csv::Error) -> InputError {
    InputError::Read {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    }
}

/// Spreadsheet programs write a UTF-8 BOM; it must not become part of the first column's name.
fn strip_bom(headers: ByteRecord) -> ByteRecord {
    match headers.get(0) {
        Some(first) if first.starts_with(b"\xEF\xBB\xBF") => {
            let mut fixed = ByteRecord::new();
            fixed.push_field(&first[3..]);
            for field in headers.iter().skip(1) {
                fixed.push_field(field);
            }
            fixed
        }
        _ => headers,
    }
}

#[cfg(test)]
mod tests {
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
        let src =
            source(b"\xEF\xBB\xBFRelatedProspectId,Note\r\nabc,\"a, \"\"quoted\"\" note\"\r\n")
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

    #[test]
    fn a_missing_file_names_the_path() {
        let err = CsvSource::open(Path::new("/nonexistent/dir/in.csv"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/dir/in.csv"), "{err}");
    }
}
