//! Dry run (`lsq-sync validate`, `import --dry-run`): `read -> validate -> report`, with nothing
//! sent and no ledger written.
//!
//! Rows come from the same [`InputSource`] and the same [`Schema`] checks as an import's
//! planning, so a file that validates clean here plans clean there. Each row leaves as one report
//! line, `valid` or `invalid` with the reason, in input order.
//!
//! The reader runs on its own thread and hands chunks of rows over a bounded channel to this
//! one, which checks and writes them and sends each chunk back to be refilled: parsing and
//! checking use both cores, memory stays at a few chunks however large the file, and a million
//! rows need no million allocations. Checks borrow the row ([`Schema::inspect_scanned`]), and a
//! row quoted strictly is copied to the report as the file writes it.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use csv::ByteRecord;

use crate::config::Settings;
use crate::import::validate::{Schema, SchemaError};
use crate::input::InputSource;
use crate::input::rows::{InputError, RowScan, SourceRow};
pub use crate::report::stats::Validation;
use crate::report::{
    CellFormat, ReportError, ReportLine, ReportWriter, RowStatus, create_report_file,
};

/// Rows handed from the reader to the checker at a time: large enough that the channel costs
/// nothing per row, small enough that a few in flight are a few megabytes. On the million-row
/// bench file 4,096 ran about 15% faster than 1,024 (the two threads wait on each other less)
/// and 16,384 slower, with twice the memory.
const CHUNK: usize = 4096;
/// Chunks the reader may run ahead of the checker.
const CHUNKS_AHEAD: usize = 4;

/// A dry run that could not finish; the report may be partial.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{path}: {source}")]
    Schema { path: PathBuf, source: SchemaError },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("internal error: a reading or checking thread stopped unexpectedly")]
    ReaderLost,
}

/// Validates every row of `input` and writes the report to `report`.
pub fn validate_file(
    input: &Path,
    report: &Path,
    settings: &Settings,
) -> Result<Validation, DryRunError> {
    let started = Instant::now();
    let source = InputSource::open_as(
        input,
        settings.input.format,
        settings.input.sheet.as_deref(),
        settings.input_limits,
    )?;
    let schema = Schema::for_input(source.headers(), &settings.input)
        .map_err(|source| DryRunError::Schema {
            path: input.to_path_buf(),
            source,
        })?
        .with_max_cell_bytes(settings.input_limits.max_cell_bytes);
    let mut writer = ReportWriter::with_format(
        report,
        create_report_file(report)?,
        source.headers(),
        CellFormat::of(settings),
    )?;

    // The reader parses on its own thread while this one checks and writes; chunks of rows go
    // back to it once written, so their memory is reused and a million rows cost no million
    // allocations.
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Chunk, InputError>>(CHUNKS_AHEAD);
    let (empty_tx, empty_rx) = mpsc::channel::<Chunk>();
    let reader = std::thread::spawn(move || {
        let mut source = source;
        loop {
            let chunk = empty_rx.try_recv().unwrap_or_else(|_| Chunk::new());
            let (chunk, more) = match fill(&mut source, chunk) {
                Ok(filled) => filled,
                Err(e) => {
                    let _ = full_tx.send(Err(e));
                    return;
                }
            };
            if !chunk.is_empty() && full_tx.send(Ok(chunk)).is_err() {
                return;
            }
            if !more {
                return;
            }
        }
    });

    let mut outcome = Ok(());
    for chunk in full_rx.iter() {
        let written = match chunk {
            Ok(chunk) => write_chunk(&schema, &mut writer, chunk),
            Err(e) => Err(DryRunError::Input(e)),
        };
        match written {
            // The reader may have finished; then there is no one to reuse the chunk.
            Ok(chunk) => drop(empty_tx.send(chunk)),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    drop(full_rx);
    if reader.join().is_err() {
        return Err(DryRunError::ReaderLost);
    }
    outcome?;
    let counts = writer.finish()?;
    Ok(Validation {
        input: input.to_path_buf(),
        report: report.to_path_buf(),
        counts,
        elapsed: started.elapsed(),
    })
}

/// Rows read together; the reader refills the same rows in place.
struct Chunk {
    rows: Vec<SourceRow>,
    /// Each row's text as written, where it can be copied to the report whole
    /// ([`InputSource::raw_row`]): a range of `raw`.
    raw_ranges: Vec<Option<Range<usize>>>,
    raw: Vec<u8>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            rows: Vec::with_capacity(CHUNK),
            raw_ranges: Vec::with_capacity(CHUNK),
            raw: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Refills `chunk` with the next rows of `source`, reusing the rows it holds, and keeps the
/// text of each as written; also says whether the file may have more.
fn fill(source: &mut InputSource, mut chunk: Chunk) -> Result<(Chunk, bool), InputError> {
    chunk.raw_ranges.clear();
    chunk.raw.clear();
    let mut filled = 0;
    while filled < CHUNK {
        if filled == chunk.rows.len() {
            chunk.rows.push(SourceRow {
                number: 0,
                line: 0,
                record: ByteRecord::new(),
            });
        }
        if !source.read_into(&mut chunk.rows[filled])? {
            chunk.rows.truncate(filled);
            return Ok((chunk, false));
        }
        let raw = source.raw_row().map(|raw| {
            let from = chunk.raw.len();
            chunk.raw.extend_from_slice(raw);
            from..chunk.raw.len()
        });
        chunk.raw_ranges.push(raw);
        filled += 1;
    }
    Ok((chunk, true))
}

/// Checks and reports each row of a chunk, in order, and hands the chunk back for reuse.
fn write_chunk<W: Write>(
    schema: &Schema,
    writer: &mut ReportWriter<W>,
    chunk: Chunk,
) -> Result<Chunk, DryRunError> {
    let raws = chunk
        .raw_ranges
        .iter()
        .map(|range| range.clone().and_then(|range| chunk.raw.get(range)));
    for (row, raw) in chunk.rows.iter().zip(raws) {
        // One look at all of the row's bytes spares the checks, and the writer of a row not
        // copied whole, a look at each cell.
        let scan = match raw {
            Some(_) => RowScan::text_of(&row.record),
            None => RowScan::of(&row.record),
        };
        let line = ReportLine {
            number: row.number,
            status: RowStatus::Valid,
            activity_id: "",
            error: "",
            record: &row.record,
            scan,
            shown: None,
            raw,
        };
        match schema.inspect_scanned(row, scan) {
            Ok(valid) => {
                // A time zone or date format converted the date: the report shows what was
                // sent, exactly as an import's report would.
                let shown = valid.shown_date();
                let shown = shown
                    .as_ref()
                    .map(|(column, text)| (*column, text.as_str()));
                writer.write_line(ReportLine { shown, ..line })?;
            }
            Err(problem) => writer.write_line(ReportLine {
                status: RowStatus::Invalid,
                error: &problem.to_string(),
                ..line
            })?,
        }
    }
    writer.flush_now_and_then()?;
    Ok(chunk)
}
