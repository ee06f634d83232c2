//! Dry run (`lsq-sync validate`, `import --dry-run`): `read -> validate -> report`, with nothing
//! sent and no ledger written.
//!
//! Rows come from the same [`InputSource`] and the same [`Schema`] checks as an import's
//! planning, so a file that validates clean here plans clean there. Each row leaves as one report
//! line, `valid` or `invalid` with the reason, in input order. The reader runs on its own thread
//! and hands chunks of rows over a bounded channel, so parsing and checking use both cores while
//! memory stays at a few chunks, however large the file.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::input::{InputError, InputSource, SourceRow};
use crate::report::{
    BatchOutcome, CellFormat, ReportError, ReportWriter, ReportedRow, RowOutcome, StatusCounts,
    create_report_file,
};
use crate::validate::{Schema, SchemaError};

/// Rows handed from the reader to the checker at a time: large enough that the channel costs
/// nothing per row, small enough that a few in flight are a few megabytes.
const CHUNK: usize = 1024;
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

/// What a dry run found.
#[derive(Debug, Clone)]
pub struct Validation {
    pub input: PathBuf,
    pub report: PathBuf,
    /// `valid` and `invalid` rows; nothing else occurs in a dry run.
    pub counts: StatusCounts,
    pub elapsed: Duration,
}

impl Validation {
    pub fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counts.total() as f64 / secs
        } else {
            0.0
        }
    }

    /// 0 when every row is valid, 1 when some are not.
    pub fn exit_status(&self) -> ExitStatus {
        if self.counts.invalid == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::RowsNotCreated
        }
    }

    /// The last line of the output: what a person reading cron mail needs first.
    pub fn status_line(&self) -> String {
        let total = self.counts.total();
        if self.counts.invalid == 0 {
            format!("OK: all {total} rows valid; nothing was sent")
        } else {
            format!(
                "INVALID: {} of {total} rows invalid (see {}); nothing was sent",
                self.counts.invalid,
                self.report.display()
            )
        }
    }
}

impl std::fmt::Display for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "rows read {}: valid {}, invalid {}",
            self.counts.total(),
            self.counts.valid,
            self.counts.invalid
        )?;
        writeln!(
            f,
            "elapsed {:.2}s, {:.0} rows/s",
            self.elapsed.as_secs_f64(),
            self.rows_per_second()
        )?;
        write!(f, "{}", self.status_line())
    }
}

/// Validates every row of `input` and writes the report to `report`.
pub fn validate_file(
    input: &Path,
    report: &Path,
    settings: &Settings,
) -> Result<Validation, DryRunError> {
    let started = Instant::now();
    let source = InputSource::open(
        input,
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

    let (chunks_tx, chunks_rx) =
        mpsc::sync_channel::<Result<Vec<SourceRow>, InputError>>(CHUNKS_AHEAD);
    let reader = std::thread::spawn(move || {
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in source {
            match row {
                Ok(row) => chunk.push(row),
                Err(e) => {
                    let _ = chunks_tx.send(Err(e));
                    return;
                }
            }
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if chunks_tx.send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = chunks_tx.send(Ok(chunk));
        }
    });

    // Checking runs on a third thread, so reading, checking and writing (about a quarter, a
    // third and the rest of the work) spread over the cores instead of the writer waiting on the
    // checks.
    let (checked_tx, checked_rx) =
        mpsc::sync_channel::<Result<Vec<ReportedRow>, InputError>>(CHUNKS_AHEAD);
    let checker = std::thread::spawn(move || {
        for chunk in chunks_rx.iter() {
            let checked =
                chunk.map(|rows| rows.into_iter().map(|row| check(&schema, row)).collect());
            if checked_tx.send(checked).is_err() {
                return;
            }
        }
    });

    let mut outcome = Ok(());
    for (seq, chunk) in (0u64..).zip(checked_rx.iter()) {
        let rows = match chunk {
            Ok(rows) => rows,
            Err(e) => {
                outcome = Err(DryRunError::Input(e));
                break;
            }
        };
        if let Err(e) = writer.accept(BatchOutcome { seq, rows }) {
            outcome = Err(e.into());
            break;
        }
    }
    drop(checked_rx);
    if checker.join().is_err() {
        return Err(DryRunError::ReaderLost);
    }
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

/// One row's verdict; a valid row shows the values that would be sent where a time zone or date
/// format converted them, exactly as an import's report would.
fn check(schema: &Schema, row: SourceRow) -> ReportedRow {
    match schema.check(&row) {
        Ok(item) => {
            let record = schema.as_sent(&row, &item);
            let source = match record {
                Some(record) => SourceRow { record, ..row },
                None => row,
            };
            ReportedRow {
                source,
                outcome: RowOutcome::valid(),
            }
        }
        Err(problem) => ReportedRow {
            source: row,
            outcome: RowOutcome::invalid(problem.to_string()),
        },
    }
}
