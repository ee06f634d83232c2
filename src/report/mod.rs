//! Report stage: [`BatchOutcome`]s in, in any order; the report CSV out, one line per input row,
//! in input order, written as the run progresses.
//!
//! Batches finish out of order (several calls are in flight), so outcomes wait in a small
//! reorder buffer until every earlier batch is written. The buffer never holds more than the
//! batches in flight, because every batch covers a contiguous run of rows (see `batch`).
//! Columns: `RowNumber,Status,ProspectActivityId,Error`, then the input's own columns as read.
//!
//! With [`CellFormat::ExcelSafe`] every cell a spreadsheet would run as a formula gets a leading
//! `'` ([`excel_safe_cell`]); [`strip_excel_safe`] is its exact inverse, which `retry` applies
//! when it reads such a report back, so the values it re-posts are the ones first read.

pub(crate) mod html;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod stats;
pub(crate) mod summary;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csv::ByteRecord;

use crate::input::rows::{RowScan, SourceRow};
use crate::ledger::{Ledger, NO_INPUT_LINE, RowAction, RowState, StoredRow};

/// The report's own leading columns.
pub(crate) const REPORT_COLUMNS: [&str; 4] = ["RowNumber", "Status", "ProspectActivityId", "Error"];

/// Whether `headers` begin with the report's own columns ([`REPORT_COLUMNS`], any case): the
/// test `retry` and `undo` apply before reading a file as a report.
pub(crate) fn is_report_header(headers: &ByteRecord) -> bool {
    headers.len() >= REPORT_COLUMNS.len()
        && headers
            .iter()
            .zip(REPORT_COLUMNS)
            .all(|(found, want)| found.eq_ignore_ascii_case(want.as_bytes()))
}

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowStatus {
    /// The activity exists in LeadSquared; its id is in the report.
    Created,
    /// Sent (or meant to be) but not created; the Error says why.
    Failed,
    /// Failed validation and was never sent.
    Invalid,
    /// Created by an earlier run (`--skip-existing`); `ProspectActivityId` is that activity.
    Skipped,
    /// Passed every check that needs no server (`validate`, `import --dry-run`); not sent.
    Valid,
    /// Keyed sync: the key's activity already held what the row says; nothing sent.
    Unchanged,
    /// Keyed sync: the key's activity was updated in place; `ProspectActivityId` is the same.
    Updated,
    /// Keyed sync: the row moved its activity (lead, code, date or owner), which an update
    /// cannot do; the Error names what changed; nothing sent.
    Conflict,
    /// Keyed sync (`--delete-missing`): the input lacks the key, and its activity is queued for
    /// deletion; a line after the input's rows, without a `RowNumber`.
    Deleted,
}

impl RowStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RowStatus::Created => "created",
            RowStatus::Failed => "failed",
            RowStatus::Invalid => "invalid",
            RowStatus::Skipped => "skipped",
            RowStatus::Valid => "valid",
            RowStatus::Unchanged => "unchanged",
            RowStatus::Updated => "updated",
            RowStatus::Conflict => "conflict",
            RowStatus::Deleted => "deleted",
        }
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOutcome {
    pub status: RowStatus,
    pub activity_id: Option<String>,
    pub error: Option<String>,
}

impl RowOutcome {
    pub fn created(id: impl Into<String>) -> Self {
        RowOutcome {
            status: RowStatus::Created,
            activity_id: Some(id.into()),
            error: None,
        }
    }

    pub(crate) fn failed(error: impl Into<String>) -> Self {
        RowOutcome {
            status: RowStatus::Failed,
            activity_id: None,
            error: Some(error.into()),
        }
    }

    pub fn invalid(error: impl Into<String>) -> Self {
        RowOutcome {
            status: RowStatus::Invalid,
            activity_id: None,
            error: Some(error.into()),
        }
    }

    pub(crate) fn skipped(id: Option<String>) -> Self {
        RowOutcome {
            status: RowStatus::Skipped,
            activity_id: id,
            error: None,
        }
    }

    /// A keyed row's outcome that carries its activity's id (and, for a conflict, why).
    pub(crate) fn keyed(status: RowStatus, id: Option<String>, error: Option<String>) -> Self {
        RowOutcome {
            status,
            activity_id: id,
            error,
        }
    }
}

/// A row and its result, ready to be written.
#[derive(Debug, Clone)]
pub struct ReportedRow {
    pub source: SourceRow,
    pub outcome: RowOutcome,
}

/// The results of one batch, every row of it, in row order.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// The batch's position in the input (`Batch::seq`).
    pub seq: u64,
    pub rows: Vec<ReportedRow>,
}

/// Rows written so far, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub created: u64,
    pub failed: u64,
    pub invalid: u64,
    pub skipped: u64,
    /// Only in a dry run, which sends nothing.
    pub valid: u64,
    /// Keyed sync: rows whose activity already held what they say.
    pub unchanged: u64,
    /// Keyed sync: rows whose activity was updated in place.
    pub updated: u64,
    /// Keyed sync: rows that moved their activity, left as they were.
    pub conflict: u64,
    /// Keyed sync: keys the input lacks, whose activities are queued for deletion. Lines of
    /// the report, not rows of the input.
    pub deleted: u64,
}

impl StatusCounts {
    /// Lines of the report: the input's rows, and a line per key deleted.
    pub fn total(&self) -> u64 {
        self.created
            + self.failed
            + self.invalid
            + self.skipped
            + self.valid
            + self.unchanged
            + self.updated
            + self.conflict
            + self.deleted
    }

    fn add(&mut self, status: RowStatus) {
        match status {
            RowStatus::Created => self.created += 1,
            RowStatus::Failed => self.failed += 1,
            RowStatus::Invalid => self.invalid += 1,
            RowStatus::Skipped => self.skipped += 1,
            RowStatus::Valid => self.valid += 1,
            RowStatus::Unchanged => self.unchanged += 1,
            RowStatus::Updated => self.updated += 1,
            RowStatus::Conflict => self.conflict += 1,
            RowStatus::Deleted => self.deleted += 1,
        }
    }
}

/// The report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot create report {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write report {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("report {path} is incomplete: the results of {missing} batch(es) never arrived")]
    Incomplete { path: PathBuf, missing: usize },
}

/// How cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CellFormat {
    /// Exactly as read.
    #[default]
    AsRead,
    /// Cells that a spreadsheet would run as a formula get a leading `'` ([`excel_safe_cell`]).
    ExcelSafe,
}

impl CellFormat {
    /// The format the settings ask for (`--excel-safe`, `[report] excel_safe`).
    pub(crate) fn of(settings: &crate::config::Settings) -> CellFormat {
        if settings.excel_safe {
            CellFormat::ExcelSafe
        } else {
            CellFormat::AsRead
        }
    }

    /// Writes one line of a CSV file other than the report (export, results), each cell in
    /// this format.
    pub(crate) fn write_record<W: Write, T: AsRef<[u8]>>(
        self,
        out: &mut csv::Writer<W>,
        record: impl IntoIterator<Item = T>,
    ) -> csv::Result<()> {
        match self {
            CellFormat::AsRead => out.write_record(record),
            CellFormat::ExcelSafe => out.write_record(
                record
                    .into_iter()
                    .map(|cell| excel_safe_cell(cell.as_ref()).into_owned()),
            ),
        }
    }

    fn apply<'a>(self, cell: &'a [u8]) -> Cow<'a, [u8]> {
        match self {
            CellFormat::AsRead => Cow::Borrowed(cell),
            CellFormat::ExcelSafe => excel_safe_cell(cell),
        }
    }
}

/// First characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection
/// list).
const FORMULA_STARTS: &[u8] = b"=+-@\t\r";

/// Whether a cell needs the `'` prefix: it starts, after any `'`s, with a formula character.
/// Counting the `'`s already there is what makes the prefix reversible: a cell that really
/// starts with `'=` becomes `''=`, so stripping one `'` always gives the original back. A plain
/// number (`-5`, `+1.5`, `-2e3`) is left alone: a spreadsheet reads it as a number, not a
/// formula, and negative amounts should stay numbers.
fn needs_excel_prefix(cell: &[u8]) -> bool {
    let quotes = cell.iter().take_while(|b| **b == b'\'').count();
    match cell.get(quotes) {
        Some(first) if FORMULA_STARTS.contains(first) => quotes > 0 || !is_plain_number(cell),
        _ => false,
    }
}

/// `[+-]digits[.digits][e[+-]digits]`, the shape of a number a spreadsheet reads as one.
fn is_plain_number(cell: &[u8]) -> bool {
    let text = match std::str::from_utf8(cell) {
        Ok(text) => text,
        Err(_) => return false,
    };
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            (digits(whole) || whole.is_empty())
                && (digits(fraction) || fraction.is_empty())
                && !(whole.is_empty() && fraction.is_empty())
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// The cell as an excel-safe report writes it: `'` in front when a spreadsheet would otherwise
/// run it as a formula.
pub fn excel_safe_cell(cell: &[u8]) -> Cow<'_, [u8]> {
    if needs_excel_prefix(cell) {
        let mut prefixed = Vec::with_capacity(cell.len() + 1);
        prefixed.push(b'\'');
        prefixed.extend_from_slice(cell);
        Cow::Owned(prefixed)
    } else {
        Cow::Borrowed(cell)
    }
}

/// Undoes [`excel_safe_cell`] exactly: `strip_excel_safe(&excel_safe_cell(c)) == c` for every
/// cell. A cell a person edited in a spreadsheet comes back without the `'` (the spreadsheet
/// drops it on save) and is left as it is.
pub fn strip_excel_safe(cell: &[u8]) -> &[u8] {
    match cell.split_first() {
        Some((b'\'', rest)) if needs_excel_prefix(rest) => rest,
        _ => cell,
    }
}

/// One line of the report as [`ReportWriter::write_line`] takes it, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReportLine<'a> {
    pub number: u64,
    pub status: RowStatus,
    pub activity_id: &'a str,
    pub error: &'a str,
    /// The row as read.
    pub record: &'a ByteRecord,
    /// The record's [`RowScan::of`].
    pub scan: RowScan,
    /// A cell shown instead of the one read, `(column, text)`: the date sent where a time zone
    /// or date format converted it.
    pub shown: Option<(usize, &'a str)>,
    /// The record as the file wrote it, when that is also how CSV writes its cells
    /// ([`crate::input::CsvSource::raw_row`]): then it is copied whole.
    pub raw: Option<&'a [u8]>,
}

/// Writes outcomes in input order.
pub struct ReportWriter<W: Write> {
    path: PathBuf,
    out: CsvLines<W>,
    format: CellFormat,
    next_seq: u64,
    pending: BTreeMap<u64, BatchOutcome>,
    counts: StatusCounts,
    last_flush: Instant,
}

/// How often written lines are pushed to the file, so a person (or `tail -f`) sees progress.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Opens `path` for writing the report, creating missing parent folders.
pub(crate) fn create_report_file(path: &Path) -> Result<BufWriter<File>, ReportError> {
    let create = |source| ReportError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(create)?;
    }
    let file = File::create(path).map_err(create)?;
    Ok(BufWriter::with_capacity(128 * 1024, file))
}

impl<W: Write> ReportWriter<W> {
    /// Starts a report: writes the header, the report's columns then the input's.
    #[cfg(test)]
    pub(crate) fn new(
        path: &Path,
        out: W,
        input_headers: &ByteRecord,
    ) -> Result<Self, ReportError> {
        ReportWriter::with_format(path, out, input_headers, CellFormat::AsRead)
    }

    /// Starts a report whose cells are written in `format`.
    pub fn with_format(
        path: &Path,
        out: W,
        input_headers: &ByteRecord,
        format: CellFormat,
    ) -> Result<Self, ReportError> {
        let mut writer = ReportWriter {
            path: path.to_path_buf(),
            out: CsvLines::new(out),
            format,
            next_seq: 0,
            pending: BTreeMap::new(),
            counts: StatusCounts::default(),
            last_flush: Instant::now(),
        };
        for column in REPORT_COLUMNS {
            writer.out.cell(column.as_bytes());
        }
        for column in input_headers {
            writer.out.cell(&format.apply(column));
        }
        writer.out.end_line().map_err(|e| writer.write_error(e))?;
        writer.flush()?;
        Ok(writer)
    }

    /// Takes one batch's results; writes it and any batches it was holding back. Returns the
    /// rows written by this call.
    pub fn accept(&mut self, outcome: BatchOutcome) -> Result<u64, ReportError> {
        self.pending.insert(outcome.seq, outcome);
        let mut written = 0;
        while let Some(outcome) = self.pending.remove(&self.next_seq) {
            for row in &outcome.rows {
                self.write_row(row)?;
                written += 1;
            }
            self.next_seq += 1;
        }
        if written > 0 {
            self.flush_now_and_then()?;
        }
        Ok(written)
    }

    fn write_row(&mut self, row: &ReportedRow) -> Result<(), ReportError> {
        let outcome = &row.outcome;
        self.write_line(ReportLine {
            // A line for a key the input lacks has no row number of the input.
            number: if row.source.line == NO_INPUT_LINE {
                0
            } else {
                row.source.number
            },
            status: outcome.status,
            activity_id: outcome.activity_id.as_deref().unwrap_or(""),
            error: outcome.error.as_deref().unwrap_or(""),
            record: &row.source.record,
            scan: RowScan::of(&row.source.record),
            shown: None,
            raw: None,
        })
    }

    /// Writes one row straight away, with no batch and no reorder buffer: for a caller that
    /// produces rows in input order itself (a dry run), which then needs no [`ReportedRow`]
    /// built per row.
    pub(crate) fn write_line(&mut self, line: ReportLine<'_>) -> Result<(), ReportError> {
        let ReportLine {
            number,
            status,
            activity_id,
            error,
            record,
            scan,
            shown,
            raw,
        } = line;
        let mut digits = [0u8; 20];
        let format = self.format;
        let out = &mut self.out;
        // Row numbers and statuses are digits and letters: nothing to quote, nothing a
        // spreadsheet would run.
        if number == 0 {
            out.plain(b"");
        } else {
            out.plain(decimal(number, &mut digits));
        }
        out.plain(status.as_str().as_bytes());
        out.cell(&format.apply(activity_id.as_bytes()));
        out.cell(&format.apply(error.as_bytes()));
        match raw.filter(|_| shown.is_none() && format == CellFormat::AsRead) {
            // Nearly every row of a dry run: the text read is the text to write.
            Some(raw) => out.plain(raw),
            None => {
                // A `'` prefix or a replaced date brings no comma, quote or line break, so a
                // row with none of them needs no quotes whatever is shown.
                let plain = !scan.needs_quotes;
                for (i, cell) in record.iter().enumerate() {
                    let cell = match shown {
                        Some((column, text)) if column == i => text.as_bytes(),
                        _ => cell,
                    };
                    let cell = format.apply(cell);
                    if plain {
                        out.plain(&cell);
                    } else {
                        out.cell(&cell);
                    }
                }
            }
        }
        let result = out.end_line();
        result.map_err(|e| self.write_error(e))?;
        self.counts.add(status);
        Ok(())
    }

    /// Pushes written lines to the file when the last push is a while ago, so a person (or
    /// `tail -f`) sees progress; what [`ReportWriter::accept`] does after each batch.
    pub(crate) fn flush_now_and_then(&mut self) -> Result<(), ReportError> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// The report's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far, by status.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> StatusCounts {
        self.counts
    }

    /// Pushes written lines to the file.
    pub(crate) fn flush(&mut self) -> Result<(), ReportError> {
        self.last_flush = Instant::now();
        self.out.flush().map_err(|e| ReportError::Write {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Flushes and checks that no batch is missing.
    pub fn finish(mut self) -> Result<StatusCounts, ReportError> {
        self.flush()?;
        if !self.pending.is_empty() {
            return Err(ReportError::Incomplete {
                path: self.path.clone(),
                missing: self.pending.len(),
            });
        }
        Ok(self.counts)
    }

    fn write_error(&self, e: io::Error) -> ReportError {
        ReportError::Write {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

/// The report's CSV encoding, RFC 4180 with quotes only where a cell needs them: byte for byte
/// what the csv crate's writer produces (a property test holds them to it), which the other CSV
/// files lsq-sync writes still use. The report has its own because its millions of short cells
/// went through the crate's general field state machine one call at a time, a quarter of a dry
/// run's time; here a line is assembled in a buffer, and a row whose bytes hold nothing to quote
/// (nearly every row) is copied without looking at each cell.
struct CsvLines<W: Write> {
    out: W,
    buffer: Vec<u8>,
    /// No cell of the current line is written yet.
    line_start: bool,
}

/// Bytes gathered before they are handed to the file: at least the capacity of the report
/// file's `BufWriter`, so that it passes them straight through instead of copying them.
const LINES_BUFFER: usize = 1 << 20;

impl<W: Write> CsvLines<W> {
    fn new(out: W) -> Self {
        CsvLines {
            out,
            buffer: Vec::with_capacity(LINES_BUFFER + 4096),
            line_start: true,
        }
    }

    fn separate(&mut self) {
        if !self.line_start {
            self.buffer.push(b',');
        }
        self.line_start = false;
    }

    /// Writes one cell, quoted if it must be.
    fn cell(&mut self, cell: &[u8]) {
        self.separate();
        if !needs_quotes(cell) {
            self.buffer.extend_from_slice(cell);
            return;
        }
        self.buffer.push(b'"');
        let mut parts = cell.split(|b| *b == b'"');
        if let Some(first) = parts.next() {
            self.buffer.extend_from_slice(first);
        }
        for part in parts {
            self.buffer.extend_from_slice(b"\"\"");
            self.buffer.extend_from_slice(part);
        }
        self.buffer.push(b'"');
    }

    /// Writes text that is already CSV as it stands: one cell that needs no quotes, or
    /// several already written out and joined by commas.
    fn plain(&mut self, text: &[u8]) {
        self.separate();
        self.buffer.extend_from_slice(text);
    }

    /// Ends the line, handing the buffer to the file when it is full.
    fn end_line(&mut self) -> io::Result<()> {
        self.buffer.push(b'\n');
        self.line_start = true;
        if self.buffer.len() >= LINES_BUFFER {
            self.out.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buffer)?;
        self.buffer.clear();
        self.out.flush()
    }

    #[cfg(test)]
    fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

/// Whether CSV text must quote `bytes`: they hold a comma, a quote or a line break.
fn needs_quotes(bytes: &[u8]) -> bool {
    if bytes.len() < 16 {
        // Row numbers, statuses, empty cells: quicker looked at one by one.
        bytes
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    } else {
        RowScan::of_bytes(bytes).needs_quotes
    }
}

/// `n` in decimal, written into `buf`: the report writes a row number per line, and going
/// through `fmt` for it was a few percent of a dry run.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Error of a row the run stopped before sending.
pub(crate) const NOT_SENT: &str =
    "not sent: the run stopped before this row; run the same import again to resume";
/// Error of a row whose call got no clear answer and could not be checked.
pub(crate) const OUTCOME_UNKNOWN: &str = "outcome unknown: the call carrying this row got no clear answer and it could not be \
     checked yet; run the same import again: it checks the server before sending anything";

/// What the report says of a row as the ledger holds it; `None` for a row that is still to be
/// sent in this run.
pub(crate) fn outcome_of(row: &StoredRow) -> Option<RowOutcome> {
    outcome_of_state(row.state, row.activity_id.as_deref(), row.error.as_deref())
}

/// The one mapping from a ledger state (with the row's activity id and error) to what the
/// report says; `None` for a row still to be sent.
pub(crate) fn outcome_of_state(
    state: RowState,
    activity_id: Option<&str>,
    error: Option<&str>,
) -> Option<RowOutcome> {
    let id = || activity_id.map(str::to_string);
    let error = || error.unwrap_or_default().to_string();
    match state {
        RowState::Pending => None,
        RowState::Created => Some(RowOutcome::created(activity_id.unwrap_or_default())),
        RowState::Skipped => Some(RowOutcome::skipped(activity_id.map(str::to_string))),
        RowState::Failed => Some(RowOutcome::failed(error())),
        RowState::Invalid => Some(RowOutcome::invalid(error())),
        RowState::InFlight => Some(RowOutcome::failed(OUTCOME_UNKNOWN)),
        RowState::Unchanged => Some(RowOutcome::keyed(RowStatus::Unchanged, id(), None)),
        RowState::Updated => Some(RowOutcome::keyed(RowStatus::Updated, id(), None)),
        RowState::Conflict => Some(RowOutcome::keyed(RowStatus::Conflict, id(), Some(error()))),
        RowState::Deleted => Some(RowOutcome::keyed(RowStatus::Deleted, id(), None)),
    }
}

/// Writes the whole report of a run from the ledger, the cells written in `format`: the report
/// is a view of the ledger and can be regenerated at any time (`lsq-sync report`).
pub(crate) fn write_from_ledger_as(
    ledger: &Ledger,
    run: i64,
    path: &Path,
    format: CellFormat,
) -> Result<StatusCounts, ReportError> {
    write_ledger_rows(ledger, run, path, format, |row| {
        outcome_of(row).unwrap_or_else(|| RowOutcome::failed(NOT_SENT))
    })
}

/// The report of a keyed dry run: what the run would do with each line. A line to send is
/// `valid`, its Error saying how (created, updated in place, moved, deleted) and
/// `ProspectActivityId` naming the activity it acts on; the others as a run reports them.
pub(crate) fn write_plan_from_ledger(
    ledger: &Ledger,
    run: i64,
    path: &Path,
    format: CellFormat,
) -> Result<StatusCounts, ReportError> {
    write_ledger_rows(ledger, run, path, format, |row| {
        outcome_of(row).unwrap_or_else(|| {
            let target = row.target_id.clone().unwrap_or_default();
            let plan = match row.action {
                RowAction::Create => "plan: create".to_string(),
                RowAction::Update => format!("plan: update {target} in place"),
                RowAction::Replace => {
                    format!("plan: delete {target} (the row moves it), then create the row")
                }
                RowAction::Delete => format!("plan: delete {target} (the input lacks its key)"),
            };
            RowOutcome {
                status: RowStatus::Valid,
                activity_id: row.target_id.clone(),
                error: Some(plan),
            }
        })
    })
}

/// A report written from the ledger while the run goes on, for runs whose calls do not follow
/// input order (a keyed sync's adds and updates): a row before the first one still to be sent
/// is final, so [`TrailingReport::catch_up`] writes every row up to there; the end writes the
/// rest. The report is then mostly written while the pacer holds the calls back, not after.
pub(crate) struct TrailingReport<W: Write> {
    writer: ReportWriter<W>,
    /// The last row number written.
    written: u64,
    seq: u64,
}

impl<W: Write> TrailingReport<W> {
    pub(crate) fn new(writer: ReportWriter<W>) -> TrailingReport<W> {
        TrailingReport {
            writer,
            written: 0,
            seq: 0,
        }
    }

    /// Writes the rows of `run` that are final and not written yet; returns how many.
    pub(crate) fn catch_up(&mut self, ledger: &Ledger, run: i64) -> Result<u64, ReportError> {
        let until = ledger
            .first_unsettled(run, self.written)
            .map_err(|e| self.ledger_error(e))?;
        self.write_until(ledger, run, until)
    }

    /// Writes every row not written yet (a row still unsettled says why it was not sent) and
    /// closes the report.
    pub(crate) fn finish(mut self, ledger: &Ledger, run: i64) -> Result<StatusCounts, ReportError> {
        self.write_until(ledger, run, None)?;
        self.writer.finish()
    }

    fn write_until(
        &mut self,
        ledger: &Ledger,
        run: i64,
        until: Option<u64>,
    ) -> Result<u64, ReportError> {
        let mut written = 0;
        loop {
            let chunk = ledger
                .rows(run, self.written, 2000)
                .map_err(|e| self.ledger_error(e))?;
            let rows: Vec<ReportedRow> = chunk
                .into_iter()
                .take_while(|row| until.is_none_or(|until| row.number < until))
                .map(|row| ReportedRow {
                    outcome: outcome_of(&row).unwrap_or_else(|| RowOutcome::failed(NOT_SENT)),
                    source: SourceRow::from(row),
                })
                .collect();
            let Some(last) = rows.last() else { break };
            self.written = last.source.number;
            written += rows.len() as u64;
            self.writer.accept(BatchOutcome {
                seq: self.seq,
                rows,
            })?;
            self.seq += 1;
        }
        Ok(written)
    }

    fn ledger_error(&self, e: crate::ledger::LedgerError) -> ReportError {
        ReportError::Write {
            path: self.writer.path().to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Writes every row of a run from the ledger, in order, each with the outcome `outcome` gives.
fn write_ledger_rows(
    ledger: &Ledger,
    run: i64,
    path: &Path,
    format: CellFormat,
    outcome: impl Fn(&StoredRow) -> RowOutcome,
) -> Result<StatusCounts, ReportError> {
    let ledger_error = |e: crate::ledger::LedgerError| ReportError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let headers = ledger.headers(run).map_err(ledger_error)?;
    let mut writer = ReportWriter::with_format(path, create_report_file(path)?, &headers, format)?;
    let mut after = 0;
    let mut seq = 0;
    loop {
        let chunk = ledger.rows(run, after, 2000).map_err(ledger_error)?;
        let Some(last) = chunk.last() else { break };
        after = last.number;
        let rows = chunk
            .into_iter()
            .map(|row| ReportedRow {
                outcome: outcome(&row),
                source: SourceRow::from(row),
            })
            .collect();
        writer.accept(BatchOutcome { seq, rows })?;
        seq += 1;
    }
    writer.finish()
}

#[cfg(test)]
mod tests;
