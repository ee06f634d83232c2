//! Read stage: a CSV file in, [`SourceRow`]s out, in file order, with their 1-based data-row
//! number and line, and the raw bytes of every field (so the report can carry them back exactly
//! as read, even when a cell is not valid UTF-8).
//!
//! This is the one place that builds CSV readers: header required, a UTF-8 BOM tolerated,
//! CRLF or LF, RFC 4180 quoting, and ragged rows passed on (validation reports them) rather than
//! aborting the file.
//!
//! [`InputSource::open_as`] picks the reader by file extension: spreadsheets go to `xlsx`, JSON
//! Lines (`.jsonl`, `.ndjson`) to `sources::jsonl`, each yielding the same [`SourceRow`]s;
//! everything else is read as CSV. `--format` can decide instead.
//!
//! Hostile files meet [`InputLimits`]: a row longer than `max_row_bytes` is refused while it is
//! being read (a [`RowGuard`] between the file and the parser), a header wider than
//! `max_columns` is refused, and a quote left open at the end of the file is an error naming the
//! row where it opened rather than a last cell that silently swallowed the rows after it.
//!
//! For readers of millions of rows: [`InputSource::read_into`] refills a row in place,
//! [`CsvSource::raw_row`] gives the text of the row just read as the file writes it (for a
//! report to copy), and [`crate::input::rows::RowScan`] looks at all of a row's bytes in one pass.

pub(crate) mod dates;
pub(crate) mod mapping;
pub mod rows;
pub(crate) mod sources;
pub(crate) mod xlsx;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use csv::ByteRecord;

use crate::input::rows::{InputError, InputLimits, SourceRow};

/// An input file of either kind, iterated row by row.
pub(crate) enum InputSource {
    /// Boxed: a CSV reader carries its parser's state, several times a sheet source's size.
    Csv(Box<CsvSource>),
    Sheet(crate::input::xlsx::SheetSource),
    Jsonl(crate::input::sources::jsonl::JsonlSource),
}

impl InputSource {
    /// Opens `path` as a spreadsheet when its extension says so (`sheet` chooses the worksheet),
    /// else as CSV, where naming a sheet is a mistake worth saying; `format` (from `--format` or
    /// `[input] format`), when given, says how a file that is not a spreadsheet is read, whatever
    /// its extension.
    pub(crate) fn open_as(
        path: &Path,
        format: Option<crate::input::sources::InputFormat>,
        sheet: Option<&str>,
        limits: InputLimits,
    ) -> Result<InputSource, InputError> {
        use crate::input::sources::{InputFormat, jsonl};
        let jsonl = match format {
            Some(format) => format == InputFormat::Jsonl,
            None => jsonl::is_jsonl(path),
        };
        if jsonl && sheet.is_none() && !crate::input::xlsx::is_spreadsheet(path) {
            return jsonl::JsonlSource::open(path, limits).map(InputSource::Jsonl);
        }
        if crate::input::xlsx::is_spreadsheet(path) {
            return crate::input::xlsx::SheetSource::open(
                path,
                sheet,
                limits,
                crate::input::xlsx::SheetReader::from_env(),
            )
            .map(InputSource::Sheet);
        }
        if let Some(sheet) = sheet {
            return Err(InputError::Sheet {
                path: path.to_path_buf(),
                message: format!(
                    "--sheet {sheet:?} applies to spreadsheets ({}); this file is read as CSV",
                    crate::input::xlsx::SPREADSHEET_EXTENSIONS.join(", ")
                ),
            });
        }
        CsvSource::open_limited(path, limits).map(|csv| InputSource::Csv(Box::new(csv)))
    }

    /// The header row.
    pub(crate) fn headers(&self) -> &ByteRecord {
        match self {
            InputSource::Csv(csv) => csv.headers(),
            InputSource::Sheet(sheet) => sheet.headers(),
            InputSource::Jsonl(jsonl) => jsonl.headers(),
        }
    }

    /// The line (or sheet row) the header is on, for messages about it.
    pub(crate) fn header_line(&self) -> u64 {
        match self {
            InputSource::Csv(csv) => csv.header_line(),
            InputSource::Sheet(_) | InputSource::Jsonl(_) => 1,
        }
    }
}

impl InputSource {
    /// See [`CsvSource::raw_row`]; `None` for a spreadsheet.
    pub(crate) fn raw_row(&self) -> Option<&[u8]> {
        match self {
            InputSource::Csv(csv) => csv.raw_row(),
            InputSource::Sheet(_) | InputSource::Jsonl(_) => None,
        }
    }

    /// Reads the next row into `row`, reusing its memory; `Ok(false)` at the end. What a reader
    /// of millions of rows uses instead of the iterator, which allocates each row anew.
    pub(crate) fn read_into(&mut self, row: &mut SourceRow) -> Result<bool, InputError> {
        match self {
            InputSource::Csv(csv) => csv.read_into(row),
            InputSource::Sheet(sheet) => sheet.read_into(row),
            InputSource::Jsonl(jsonl) => refill(jsonl, row),
        }
    }
}

impl Iterator for InputSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            InputSource::Csv(csv) => csv.next(),
            InputSource::Sheet(sheet) => sheet.next(),
            InputSource::Jsonl(jsonl) => jsonl.next(),
        }
    }
}

/// `read_into` for a reader that yields whole rows.
fn refill(
    rows: &mut impl Iterator<Item = Result<SourceRow, InputError>>,
    row: &mut SourceRow,
) -> Result<bool, InputError> {
    match rows.next() {
        Some(read) => {
            *row = read?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// An open CSV file, iterated row by row.
pub(crate) struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<RowGuard>,
    guard: Arc<GuardState>,
    headers: ByteRecord,
    header_line: u64,
    rows_read: u64,
    /// Stream offsets of the row just read, from the end of the row before (so with any blank
    /// lines and its line break).
    last_row: (u64, u64),
    /// Where the iterator reads before copying a row out.
    record: ByteRecord,
    finished: bool,
}

/// Appended after the last byte of the file. If the parser is outside quotes it reads this as a
/// record of its own (the end); if a quote was left open, it lands inside that cell instead,
/// which is how an unclosed quote is told from a cell that legitimately spans lines.
const END_MARK: &[u8] = b"\n\x00lsq-sync:end-of-input\x00\n";
/// The end mark as the record it parses to.
const END_MARK_FIELD: &[u8] = b"\x00lsq-sync:end-of-input\x00";

/// What the reader and its [`RowGuard`] share.
struct GuardState {
    /// Byte offset where the row being read starts.
    row_start: AtomicU64,
    /// Byte offset of the end of the file, once reached (`u64::MAX` before).
    end_of_file: AtomicU64,
    /// Set when the guard refused to read on because a row passed `max_row_bytes`.
    tripped: AtomicBool,
}

/// Sits between the file and the CSV parser. The parser reads only once it has consumed what it
/// was given, so at each read the bytes delivered since the row started are the row's length so
/// far: a row longer than the limit is refused before more than one read buffer
/// ([`PARSE_BUFFER`]) past the limit is in memory.
struct RowGuard {
    inner: Box<dyn Read + Send>,
    state: Arc<GuardState>,
    max_row_bytes: u64,
    delivered: u64,
    /// How much of [`END_MARK`] has been delivered after the file's end.
    mark_sent: Option<usize>,
    /// The bytes delivered from stream offset `kept_from` on, so the text of the row just read
    /// can be had as written ([`CsvSource::raw_row`]). Bounded: rows are at most
    /// `max_row_bytes`, and what lies before the row being read is dropped now and then.
    kept: Vec<u8>,
    kept_from: u64,
}

/// Bytes before the current row that may pile up in [`RowGuard::kept`] before they are dropped:
/// dropping moves the bytes after them, so it is done seldom.
const KEPT_SLACK: u64 = 1 << 20;

/// The parser's read buffer. The file is read straight into it, with no second buffer in
/// between: 64 KiB reads cost fewer system calls than 8 KiB ones and no extra copy.
const PARSE_BUFFER: usize = 64 * 1024;

impl RowGuard {
    /// The bytes between two stream offsets, if still kept.
    fn kept(&self, from: u64, to: u64) -> Option<&[u8]> {
        let from = usize::try_from(from.checked_sub(self.kept_from)?).ok()?;
        let to = usize::try_from(to.checked_sub(self.kept_from)?).ok()?;
        self.kept.get(from..to)
    }

    /// Forgets the bytes before stream offset `before` once they are many.
    fn forget(&mut self, before: u64) {
        let dead = before.saturating_sub(self.kept_from);
        if dead > KEPT_SLACK {
            let dead_bytes = usize::try_from(dead)
                .unwrap_or(usize::MAX)
                .min(self.kept.len());
            self.kept.drain(..dead_bytes);
            self.kept_from += dead_bytes as u64;
        }
    }
}

impl Read for RowGuard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let row_start = self.state.row_start.load(Ordering::Relaxed);
        if self.delivered.saturating_sub(row_start) > self.max_row_bytes {
            self.state.tripped.store(true, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "row longer than the limit",
            ));
        }
        let n = match self.mark_sent {
            None => match self.inner.read(buf)? {
                0 => {
                    self.state
                        .end_of_file
                        .store(self.delivered, Ordering::Relaxed);
                    self.mark_sent = Some(0);
                    return self.read(buf);
                }
                n => n,
            },
            Some(sent) => {
                let rest = &END_MARK[sent..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                self.mark_sent = Some(sent + n);
                n
            }
        };
        self.kept.extend_from_slice(&buf[..n]);
        self.delivered += n as u64;
        Ok(n)
    }
}

impl CsvSource {
    /// Opens `path` and reads its header, with the default limits.
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Result<CsvSource, InputError> {
        CsvSource::open_limited(path, InputLimits::default())
    }

    /// Opens `path` and reads its header.
    pub(crate) fn open_limited(path: &Path, limits: InputLimits) -> Result<CsvSource, InputError> {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // No BufReader: the parser reads into a buffer of its own ([`PARSE_BUFFER`]).
        CsvSource::from_reader_limited(path, Box::new(file), limits)
    }

    /// Reads CSV from any reader, with the default limits; `name` is used in messages as the
    /// file's name.
    #[cfg(test)]
    pub(crate) fn from_reader(
        name: &Path,
        read: Box<dyn Read + Send>,
    ) -> Result<CsvSource, InputError> {
        CsvSource::from_reader_limited(name, read, InputLimits::default())
    }

    /// Reads CSV from any reader; `name` is used in messages as the file's name.
    pub(crate) fn from_reader_limited(
        name: &Path,
        read: Box<dyn Read + Send>,
        limits: InputLimits,
    ) -> Result<CsvSource, InputError> {
        let guard = Arc::new(GuardState {
            row_start: AtomicU64::new(0),
            end_of_file: AtomicU64::new(u64::MAX),
            tripped: AtomicBool::new(false),
        });
        let reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(PARSE_BUFFER)
            .from_reader(RowGuard {
                inner: read,
                state: guard.clone(),
                max_row_bytes: limits.max_row_bytes as u64,
                delivered: 0,
                mark_sent: None,
                kept: Vec::new(),
                kept_from: 0,
            });
        let mut source = CsvSource {
            path: name.to_path_buf(),
            reader,
            guard,
            headers: ByteRecord::new(),
            header_line: 1,
            rows_read: 0,
            last_row: (0, 0),
            record: ByteRecord::new(),
            finished: false,
        };
        let headers = match source.reader.byte_headers() {
            Ok(headers) => headers.clone(),
            Err(e) => return Err(source.read_error(1, &e)),
        };
        let line = headers.position().map(|p| p.line()).unwrap_or(1);
        if headers.is_empty()
            || (headers.len() == 1 && headers[0].is_empty())
            || source.is_end_mark(&headers)
        {
            return Err(InputError::Empty {
                path: name.to_path_buf(),
            });
        }
        source.check_closed(&headers, line)?;
        limits.check_header(name, line, headers.len())?;
        if headers.iter().any(|h| h.contains(&0)) {
            return Err(InputError::NotUtf8Csv {
                path: name.to_path_buf(),
                line,
            });
        }
        source.headers = strip_bom(headers);
        source.header_line = line;
        Ok(source)
    }

    /// The header row, BOM removed.
    pub(crate) fn headers(&self) -> &ByteRecord {
        &self.headers
    }

    /// The line where the row just read starts. The parser's own count is taken where it
    /// starts reading, before the line break that ends the row before (the `\n` of a `\r\n`)
    /// and any blank lines: a line or more too early in a file saved on Windows. The line breaks
    /// in front of the row are counted here instead.
    fn first_line_of_last_row(&self, line_at_start: u64) -> u64 {
        let (from, to) = self.last_row;
        let breaks = self.reader.get_ref().kept(from, to).map_or(0, |raw| {
            raw.iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .filter(|b| **b == b'\n')
                .count()
        });
        line_at_start + breaks as u64
    }

    /// The row just read by [`CsvSource::read_into`] as the file writes it, without its line
    /// break, when any CSV reader reads that text back as the same cells: its quoting is
    /// strict RFC 4180 (`strictly_quoted`). `None` for a row written loosely (a quote inside
    /// an unquoted cell, text after a closing quote), which the parser reads leniently and a
    /// copy would pass on; its cells must be written out one by one.
    pub(crate) fn raw_row(&self) -> Option<&[u8]> {
        let (from, to) = self.last_row;
        let raw = self.reader.get_ref().kept(from, to)?;
        let is_break = |b: &u8| matches!(b, b'\r' | b'\n');
        let start = raw.iter().position(|b| !is_break(b))?;
        let end = raw.iter().rposition(|b| !is_break(b))? + 1;
        let raw = &raw[start..end];
        strictly_quoted(raw).then_some(raw)
    }

    /// The line the header row is on (1 unless blank lines come first).
    pub(crate) fn header_line(&self) -> u64 {
        self.header_line
    }

    /// The record just read is the end mark itself, ending where the stream ends: the file is
    /// done. (A row of the file with the same text cannot end there: the mark follows it.)
    fn is_end_mark(&self, record: &ByteRecord) -> bool {
        let end_of_file = self.guard.end_of_file.load(Ordering::Relaxed);
        record.len() == 1
            && &record[0] == END_MARK_FIELD
            && end_of_file != u64::MAX
            && self.reader.position().byte() == end_of_file + END_MARK.len() as u64
    }

    /// A record whose last cell swallowed the end mark was inside an open quote at the file's end.
    fn check_closed(&self, record: &ByteRecord, line: u64) -> Result<(), InputError> {
        let swallowed = record
            .iter()
            .next_back()
            .is_some_and(|cell| cell.ends_with(END_MARK));
        if swallowed && self.guard.end_of_file.load(Ordering::Relaxed) != u64::MAX {
            return Err(InputError::UnclosedQuote {
                path: self.path.clone(),
                line,
            });
        }
        Ok(())
    }

    fn read_error(&self, line: u64, e: &csv::Error) -> InputError {
        if self.guard.tripped.load(Ordering::Relaxed) {
            return InputError::RowTooLong {
                path: self.path.clone(),
                line,
                limit: usize::try_from(self.reader.get_ref().max_row_bytes).unwrap_or(usize::MAX),
            };
        }
        InputError::Read {
            path: self.path.clone(),
            line,
            message: e.to_string(),
        }
    }
}

impl CsvSource {
    /// Reads the next row into `row`, reusing its memory; `Ok(false)` at the end of the file.
    /// After an error the file is finished: past a read error the parser's place in it cannot
    /// be trusted.
    pub(crate) fn read_into(&mut self, row: &mut SourceRow) -> Result<bool, InputError> {
        if self.finished {
            return Ok(false);
        }
        let start = self.reader.position().clone();
        self.guard.row_start.store(start.byte(), Ordering::Relaxed);
        self.reader.get_mut().forget(start.byte());
        match self.reader.read_byte_record(&mut row.record) {
            Ok(true) if !self.is_end_mark(&row.record) => {
                self.last_row = (start.byte(), self.reader.position().byte());
                let line = self.first_line_of_last_row(start.line());
                if let Err(e) = self.check_closed(&row.record, line) {
                    self.finished = true;
                    return Err(e);
                }
                self.rows_read += 1;
                row.number = self.rows_read;
                row.line = line;
                Ok(true)
            }
            Ok(_) => {
                self.finished = true;
                Ok(false)
            }
            Err(e) => {
                self.finished = true;
                Err(self.read_error(start.line(), &e))
            }
        }
    }
}

impl Iterator for CsvSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Read into a kept record and hand out a copy: a clone is sized at once, where a new
        // record would grow field by field.
        let mut row = SourceRow {
            number: 0,
            line: 0,
            record: std::mem::take(&mut self.record),
        };
        let read = self.read_into(&mut row);
        let next = match read {
            Ok(true) => Some(Ok(SourceRow {
                record: row.record.clone(),
                ..row
            })),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        };
        self.record = row.record;
        next
    }
}

/// Whether the text of one row (line break removed) is quoted as RFC 4180 says: a quote only
/// opens a cell, closes it right before a comma or the end, or is doubled inside it. Only the
/// quotes are looked at, found a vector at a time.
fn strictly_quoted(row: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'"', &row[at..]) {
        let open = at + found;
        if open > 0 && row[open - 1] != b',' {
            return false;
        }
        // Inside the cell: find the quote that closes it, passing doubled ones.
        let mut inside = open + 1;
        loop {
            let Some(found) = memchr::memchr(b'"', &row[inside..]) else {
                return false;
            };
            let quote = inside + found;
            match row.get(quote + 1) {
                Some(b'"') => inside = quote + 2,
                Some(b',') | None => {
                    at = quote + 1;
                    break;
                }
                Some(_) => return false,
            }
        }
    }
    true
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
mod tests;
