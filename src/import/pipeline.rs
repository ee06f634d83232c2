//! The import pipeline, wired: `input -> validate -> ledger -> batch -> pace -> send -> report`.
//!
//! Planning reads and validates the whole input once and records every row in the ledger
//! before anything is sent, so file-level problems surface before the first call and the plan
//! (rows, calls, minimum time) is known. An unfinished earlier run of the same input is resumed
//! instead: its rows are already recorded, and calls it left in flight are checked against the
//! server first. Then rows stream out of the ledger in order: a blocking thread turns them into
//! batches on a bounded channel; the send stage keeps up to `concurrency` batches in flight,
//! each waiting on the pacer; the report stage writes outcomes in input order. Every channel is
//! bounded, so memory does not grow with the input.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use csv::ByteRecord;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::abort::{Abort, Interrupt};
use crate::config::{InputSettings, Settings};
use crate::import::batch::{Batch, BatchRow, Batcher, RowWork};
use crate::import::send::{Sendable, Sender};
use crate::import::validate::{Schema, SchemaError};
use crate::input::InputSource;
use crate::input::rows::{InputError, SourceRow};
use crate::ledger::{
    Ledger, LedgerError, NewRow, RowState, RowUpdate, RunStatus, StoredRow, fingerprint, hash_file,
};
use crate::lsq::api::{ActivityItem, DATE_TIME_FORMAT};
use crate::lsq::calls::Api;
use crate::lsq::client::{ClientConfig, ClientError, LsqClient};
use crate::progress::Progress;
use crate::report::stats::{RunStats, RunSummary};
use crate::report::{
    CellFormat, REPORT_COLUMNS, ReportError, ReportWriter, RowOutcome, create_report_file,
    is_report_header, outcome_of, strip_excel_safe, write_from_ledger_as,
};

/// What the input file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputKind {
    /// Activity rows as exported from a spreadsheet.
    Import,
    /// An lsq-sync report, possibly edited: `created` rows are carried over, the rest re-posted.
    Retry,
}

impl InputKind {
    fn as_str(self) -> &'static str {
        match self {
            InputKind::Import => "import",
            InputKind::Retry => "retry",
        }
    }
}

/// An import that cannot start or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{path}: line {line} (the header): {source}")]
    Schema {
        path: PathBuf,
        line: u64,
        source: SchemaError,
    },
    #[error("{path}: {message}")]
    NotAReport { path: PathBuf, message: String },
    #[error(
        "{path} has changed since run {run} of it started ({started} UTC) and did not finish; \
         run with --force to continue with the new content (rows already created are matched by \
         content and not sent again), or --fresh to start over"
    )]
    InputChanged {
        path: PathBuf,
        run: i64,
        started: String,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Setup(String),
    #[error(
        "run {run} of this input was planned with {flag} {recorded}, and this command gives {given}; \
         resuming must read the rows the way they were planned: give the same options as before \
         (or none, to use the recorded ones), or --fresh to start a new run"
    )]
    OptionsConflict {
        run: i64,
        flag: &'static str,
        recorded: String,
        given: String,
    },
    /// The run had started and had to stop; the report holds what was written.
    #[error("the run stopped: {0}")]
    Stopped(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ImportError {
    /// Problems found before anything was sent are usage errors (2); a run that had to stop
    /// after sending is aborted (3).
    pub(crate) fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            ImportError::Stopped(_) | ImportError::Internal(_) => crate::exit::ExitStatus::Aborted,
            _ => crate::exit::ExitStatus::Usage,
        }
    }
}

/// What to import, where to, and how.
#[derive(Debug, Clone)]
pub(crate) struct ImportJob {
    pub kind: InputKind,
    pub input: PathBuf,
    pub report: PathBuf,
    /// The ledger database (default: the report's path + `.ledger`).
    pub ledger: PathBuf,
    pub settings: Settings,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Start a new run even if an unfinished one of the same input exists.
    pub fresh: bool,
    /// Continue an unfinished run although the input changed.
    pub force: bool,
    /// Skip rows that an earlier run in the same ledger created.
    pub skip_existing: bool,
    /// Ctrl-C and SIGTERM.
    pub interrupt: Interrupt,
}

/// The ledger that goes with a report when none is named: `REPORT.csv.ledger`.
pub(crate) fn default_ledger_path(report: &Path) -> PathBuf {
    PathBuf::from(format!("{}.ledger", report.display()))
}

/// The run a job works on, once planned.
struct Prepared {
    run: i64,
    resumed: bool,
    /// How the run reads its input: the recorded description for a run that was planned
    /// earlier (resume, retry and undo all read rows the one way they were planned), the
    /// settings given now for a new run.
    input: InputSettings,
}

/// Maps the input's header and rows to the run's: for a report, the first four columns are the
/// report's own and the rest are the original input.
struct RowShape {
    kind: InputKind,
    schema: Schema,
    input_headers: ByteRecord,
    /// The report being read was written with `--excel-safe`: its cells carry a `'` to strip.
    excel_safe: bool,
}

/// What an edited report says was already done to a row.
enum Prior {
    None,
    Created(Option<String>),
    Skipped(Option<String>),
}

impl RowShape {
    fn of(
        kind: InputKind,
        headers: &ByteRecord,
        header_line: u64,
        path: &Path,
        settings: &Settings,
    ) -> Result<RowShape, ImportError> {
        let excel_safe = kind == InputKind::Retry && settings.excel_safe;
        let input_headers = match kind {
            InputKind::Import => headers.clone(),
            InputKind::Retry => {
                if !is_report_header(headers) {
                    return Err(ImportError::NotAReport {
                        path: path.to_path_buf(),
                        message: format!(
                            "not an lsq-sync report: expected the first columns to be {}",
                            REPORT_COLUMNS.join(",")
                        ),
                    });
                }
                headers
                    .iter()
                    .skip(REPORT_COLUMNS.len())
                    .map(|h| if excel_safe { strip_excel_safe(h) } else { h })
                    .collect()
            }
        };
        let schema = Schema::for_input(&input_headers, &settings.input).map_err(|source| {
            ImportError::Schema {
                path: path.to_path_buf(),
                line: header_line,
                source,
            }
        })?;
        Ok(RowShape {
            kind,
            schema: schema.with_max_cell_bytes(settings.input_limits.max_cell_bytes),
            input_headers,
            excel_safe,
        })
    }

    /// The row as the run sees it, and what a report said of it.
    fn split(&self, row: SourceRow, path: &Path) -> Result<(SourceRow, Prior), ImportError> {
        if self.kind == InputKind::Import {
            return Ok((row, Prior::None));
        }
        let field = |i: usize| {
            String::from_utf8_lossy(row.record.get(i).unwrap_or_default())
                .trim()
                .to_string()
        };
        let number: u64 =
            field(0)
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ImportError::NotAReport {
                    path: path.to_path_buf(),
                    message: format!(
                        "line {}: RowNumber {:?} is not a positive whole number",
                        row.line,
                        field(0)
                    ),
                })?;
        let id = Some(field(2)).filter(|id| !id.is_empty());
        let prior = match field(1).to_ascii_lowercase().as_str() {
            "created" => Prior::Created(id),
            "skipped" => Prior::Skipped(id),
            _ => Prior::None,
        };
        let record = row
            .record
            .iter()
            .skip(REPORT_COLUMNS.len())
            .map(|cell| {
                if self.excel_safe {
                    strip_excel_safe(cell)
                } else {
                    cell
                }
            })
            .collect();
        Ok((
            SourceRow {
                number,
                line: row.line,
                record,
            },
            prior,
        ))
    }
}

/// Finds the run to work on: resumes an unfinished run of the same input, or plans a new one
/// by reading, validating and recording every row.
fn prepare(ledger: &Ledger, job: &ImportJob) -> Result<Prepared, ImportError> {
    let path = &job.input;
    let open_error = |source| InputError::Open {
        path: path.clone(),
        source,
    };
    let key = std::fs::canonicalize(path)
        .map_err(open_error)?
        .display()
        .to_string();
    let hash = hash_file(path).map_err(open_error)?;
    let kind = job.kind.as_str();
    let mut carry_from = None;

    if let Some(old) = ledger.unfinished_run(kind, &key)? {
        if job.fresh {
            warn!(
                run = old.id,
                "--fresh: the unfinished run {} is abandoned; a new run starts", old.id
            );
            ledger.finish_run(old.id, RunStatus::Abandoned)?;
        } else if old.input_hash == hash {
            let input = recorded_input(ledger, old.id, &job.settings.input)?;
            info!(
                run = old.id,
                "resuming run {} (started {} UTC)", old.id, old.started_at
            );
            ledger.reopen_run(old.id)?;
            return Ok(Prepared {
                run: old.id,
                resumed: true,
                input,
            });
        } else if job.force {
            warn!(
                run = old.id,
                "{} changed since run {} started; --force: rows it created are matched by content and not sent again",
                path.display(),
                old.id
            );
            ledger.finish_run(old.id, RunStatus::Abandoned)?;
            carry_from = Some(old.id);
        } else {
            return Err(ImportError::InputChanged {
                path: path.clone(),
                run: old.id,
                started: old.started_at,
            });
        }
    } else if !job.skip_existing
        && !job.fresh
        && let Some(done) = ledger.finished_run(kind, &key)?
        && done.input_hash == hash
    {
        // The same command run again after it finished (perhaps killed between finishing and
        // exiting, so the caller could not know): finishing the work means doing nothing more.
        // Importing the file again is a deliberate choice: --fresh.
        warn!(
            "{} was imported completely by run {} ({} UTC): nothing to send, the report is written again \
             (use --fresh to import it again, which creates its activities again)",
            path.display(),
            done.id,
            done.started_at
        );
        let input = recorded_input(ledger, done.id, &job.settings.input)?;
        ledger.reopen_run(done.id)?;
        return Ok(Prepared {
            run: done.id,
            resumed: true,
            input,
        });
    }

    // A report is always CSV, whatever sheet the import read.
    let sheet = match job.kind {
        InputKind::Import => job.settings.input.sheet.as_deref(),
        InputKind::Retry => None,
    };
    let format = match job.kind {
        InputKind::Import => job.settings.input.format,
        InputKind::Retry => None,
    };
    let source = InputSource::open_as(path, format, sheet, job.settings.input_limits)?;
    let shape = RowShape::of(
        job.kind,
        source.headers(),
        source.header_line(),
        path,
        &job.settings,
    )?;
    let options = serde_json::json!({
        "kind": kind,
        "host": job.settings.host,
        "rate": job.settings.rate.to_string(),
        "batch_size": job.settings.batch_size,
        "max_attempts": job.settings.max_attempts.get(),
        "skip_existing": job.skip_existing,
        "carried_over_from_run": carry_from,
        "input": input_options(&job.settings.input, sheet),
    })
    .to_string();
    if job.skip_existing {
        // Before the rows go in: the lookups below run while the insert holds the connection.
        ledger.ensure_lookup_indexes()?;
    }
    let run = ledger.start_run(kind, &key, &hash, &shape.input_headers, &options)?;

    let mut carried: HashMap<String, VecDeque<(RowState, Option<String>)>> = HashMap::new();
    if let Some(old) = carry_from {
        for (fp, state, id) in ledger.settled_fingerprints(old)? {
            carried.entry(fp).or_default().push_back((state, id));
        }
    }
    let mut skip_used: HashMap<String, usize> = HashMap::new();
    let mut seen_numbers: HashSet<u64> = HashSet::new();
    let mut failure: Option<ImportError> = None;

    let rows = source.map_while(|row| {
        let result = (|| -> Result<NewRow, ImportError> {
            let (row, prior) = shape.split(row?, path)?;
            if job.kind == InputKind::Retry && !seen_numbers.insert(row.number) {
                return Err(ImportError::NotAReport {
                    path: path.clone(),
                    message: format!("line {}: RowNumber {} appears twice", row.line, row.number),
                });
            }
            let inspected = shape.schema.inspect(&row);
            // The report shows the UTC date sent where a time zone or format converted it.
            let record = inspected.as_ref().ok().and_then(|valid| valid.as_sent());
            let check = inspected.map(|valid| valid.to_item());
            let mut new = NewRow {
                number: row.number,
                line: row.line,
                record: record.unwrap_or(row.record),
                fingerprint: None,
                lead_id: None,
                state: RowState::Pending,
                activity_id: None,
                error: None,
            };
            if let Ok(item) = &check {
                new.fingerprint = Some(fingerprint(item));
                new.lead_id = Some(item.related_prospect_id.clone());
            }
            match (prior, check) {
                (Prior::Created(id), _) => {
                    new.state = RowState::Created;
                    new.activity_id = id;
                }
                (Prior::Skipped(id), _) => {
                    new.state = RowState::Skipped;
                    new.activity_id = id;
                }
                (Prior::None, Err(problem)) => {
                    new.state = RowState::Invalid;
                    new.error = Some(problem.to_string());
                }
                (Prior::None, Ok(_)) => {
                    let fp = new.fingerprint.clone().unwrap_or_default();
                    if let Some((state, id)) = carried.get_mut(&fp).and_then(VecDeque::pop_front) {
                        new.state = state;
                        new.activity_id = id;
                    } else if job.skip_existing {
                        let ids = ledger.created_ids_with_fingerprint(&fp, run)?;
                        let used = skip_used.entry(fp).or_default();
                        if let Some(id) = ids.get(*used) {
                            *used += 1;
                            new.state = RowState::Skipped;
                            new.activity_id = Some(id.clone());
                        }
                    }
                }
            }
            Ok(new)
        })();
        match result {
            Ok(row) => Some(row),
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    ledger.insert_rows(run, rows)?;
    if let Some(e) = failure {
        ledger.finish_run(run, RunStatus::Abandoned)?;
        return Err(e);
    }
    ledger.planned(run)?;
    let orphans: usize = carried.values().map(VecDeque::len).sum();
    if let Some(old) = carry_from.filter(|_| orphans > 0) {
        warn!(
            "{orphans} activities created by run {old} match no row of the changed file; they stay in \
             LeadSquared (`lsq-sync report {} --run {old}` lists them)",
            ledger.path().display()
        );
    }
    Ok(Prepared {
        run,
        resumed: false,
        input: job.settings.input.clone(),
    })
}

/// The input description run `run` recorded, which a resumed run reads its rows with. Options
/// given now that say otherwise are refused, naming the first that differs; none given (every
/// input option at its default) means "as recorded".
fn recorded_input(
    ledger: &Ledger,
    run: i64,
    given: &InputSettings,
) -> Result<InputSettings, ImportError> {
    let recorded = input_settings_from_options(&ledger.options(run)?).map_err(|e| {
        ImportError::Setup(format!(
            "run {run}: cannot read its recorded input options: {e}"
        ))
    })?;
    let recorded_view = input_options(&recorded, recorded.sheet.as_deref());
    let given_view = input_options(given, given.sheet.as_deref());
    let defaults = input_options(&InputSettings::default(), None);
    if given_view == defaults || given_view == recorded_view {
        if recorded_view != defaults {
            info!("run {run} reads its input with the options it recorded: {recorded_view}");
        }
        return Ok(recorded);
    }
    const FLAGS: [(&str, &str); 6] = [
        ("mapping", "--map"),
        ("constants", "--set"),
        ("match_by", "--match-by"),
        ("timezone", "--timezone"),
        ("date_format", "--date-format"),
        ("sheet", "--sheet"),
    ];
    let (key, flag) = FLAGS
        .iter()
        .find(|(key, _)| recorded_view.get(key) != given_view.get(key))
        .copied()
        .unwrap_or(("mapping", "--map"));
    let show = |view: &serde_json::Value| match view.get(key) {
        None | Some(serde_json::Value::Null) => "nothing".to_string(),
        Some(serde_json::Value::Array(a)) if a.is_empty() => "nothing".to_string(),
        Some(value) => value.to_string(),
    };
    Err(ImportError::OptionsConflict {
        run,
        flag,
        recorded: show(&recorded_view),
        given: show(&given_view),
    })
}

/// How the input was read, for the ledger's record of the run (a later `undo` or a person
/// reading the ledger needs the mapping to make sense of the rows).
fn input_options(input: &InputSettings, sheet: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "sheet": sheet,
        "mapping": input.columns.renames(),
        "constants": input.columns.constants(),
        "match_by": input.columns.match_by(),
        "timezone": input.dates.zone.map(|z| z.name()),
        "date_format": input.dates.format.as_ref().map(|f| f.as_written()),
    })
}

/// The input settings a run recorded with [`input_options`] (the `"input"` key of its ledger
/// options JSON), rebuilt so that `undo` reads the run's rows as the run read them. A run
/// recorded without them (older ledgers) was read with the plain column names: the defaults.
pub(crate) fn input_settings_from_options(
    options: &str,
) -> Result<InputSettings, crate::config::ConfigError> {
    /// The shape [`input_options`] writes; every key optional so older records still read.
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct Recorded {
        sheet: Option<String>,
        mapping: Vec<(String, String)>,
        constants: Vec<(String, String)>,
        match_by: Option<String>,
        timezone: Option<String>,
        date_format: Option<String>,
    }
    const SOURCE: &str = "the run's recorded input options";
    let invalid = |message: String| crate::config::ConfigError::Invalid {
        source_name: SOURCE.to_string(),
        message,
    };
    let options: serde_json::Value =
        serde_json::from_str(options).map_err(|e| invalid(e.to_string()))?;
    let recorded: Recorded = match options.get("input") {
        None | Some(serde_json::Value::Null) => Recorded::default(),
        Some(input) => serde_json::from_value(input.clone()).map_err(|e| invalid(e.to_string()))?,
    };
    let tagged = |pairs: Vec<(String, String)>| {
        pairs
            .into_iter()
            .map(|(name, value)| (SOURCE.to_string(), name, value))
            .collect()
    };
    let columns = crate::input::mapping::ColumnMap::new(
        tagged(recorded.mapping),
        tagged(recorded.constants),
        recorded.match_by,
    )?;
    let format = match recorded.date_format {
        Some(text) => {
            crate::input::dates::DateFormat::parse(&text).map_err(|e| invalid(e.to_string()))?
        }
        None => None,
    };
    let zone = match recorded.timezone {
        Some(name) => Some(crate::input::dates::parse_zone(&name).map_err(invalid)?),
        None => None,
    };
    Ok(InputSettings {
        columns,
        dates: crate::input::dates::DateReader { format, zone },
        sheet: recorded.sheet,
        // What the ledger holds of a run is CSV whatever the input was.
        format: None,
    })
}

/// The activity to send for a pending row, with the `ActivityDateTime` chosen for a row that
/// has none (kept in the ledger, so every attempt and every run sends the same value).
fn sendable(row: &StoredRow, schema: &Schema) -> Result<Sendable, String> {
    let source = SourceRow {
        number: row.number,
        line: row.line,
        record: row.record.clone(),
    };
    let mut item: ActivityItem = schema.check(&source).map_err(|p| p.to_string())?;
    let filled_date = if item.activity_date_time.is_none() {
        let date = row
            .sent_date_time
            .clone()
            .unwrap_or_else(|| chrono::Utc::now().format(DATE_TIME_FORMAT).to_string());
        item.activity_date_time = Some(date.clone());
        Some(date)
    } else {
        None
    };
    Ok(Sendable {
        number: row.number,
        item,
        filled_date,
    })
}

fn work_of(row: &StoredRow, schema: &Schema) -> RowWork {
    if let Some(outcome) = outcome_of(row) {
        return RowWork::Done(outcome);
    }
    match sendable(row, schema) {
        Ok(s) => RowWork::Send {
            item: s.item,
            filled_date: s.filled_date,
        },
        Err(problem) => RowWork::Done(RowOutcome::invalid(problem)),
    }
}

/// Runs an import to the end and returns its summary. An `Err` means nothing was sent (or, for a
/// report that cannot be written, that the run had to stop).
pub(crate) async fn run_import(job: &ImportJob) -> Result<RunSummary, ImportError> {
    let started = Instant::now();
    let settings = &job.settings;
    let client = LsqClient::new(&client_config(settings)?)?;
    let ledger = {
        let path = job.ledger.clone();
        let durability = settings.ledger_durability;
        Arc::new(
            tokio::task::spawn_blocking(move || Ledger::open(&path, durability))
                .await
                .map_err(|e| ImportError::Internal(e.to_string()))??,
        )
    };
    let prepared = {
        let ledger = ledger.clone();
        let job = job.clone();
        tokio::task::spawn_blocking(move || prepare(&ledger, &job))
            .await
            .map_err(|e| ImportError::Internal(e.to_string()))??
    };
    let run = prepared.run;
    let client = client.matching_leads_by(prepared.input.columns.match_by());
    let schema = Schema::for_input(&ledger.headers(run)?, &prepared.input)
        .map_err(|source| ImportError::Schema {
            path: job.input.clone(),
            line: 1,
            source,
        })?
        .with_max_cell_bytes(settings.input_limits.max_cell_bytes);

    if !prepared.resumed
        && let Some(limit) = settings.max_invalid
    {
        let counts = ledger.counts(run)?;
        let invalid = counts.get(&RowState::Invalid).copied().unwrap_or(0);
        if let Some(reason) = too_many_invalid(invalid, counts.values().sum(), limit) {
            return stop_before_sending(job, &ledger, run, reason, started).await;
        }
    }

    let api = Api::new(client, settings);
    let counts = ledger.counts(run)?;
    let count = |s: RowState| counts.get(&s).copied().unwrap_or(0);
    let total: u64 = counts.values().sum();
    let to_send = count(RowState::Pending) + count(RowState::InFlight);
    let calls = to_send.div_ceil(settings.batch_size as u64);
    info!(
        "plan: {to_send} rows to send of {total} ({} invalid, {} already created) in about {calls} calls at {}: at least {:.1}s",
        count(RowState::Invalid),
        count(RowState::Created) + count(RowState::Skipped),
        settings.rate,
        api.pacer
            .spacing()
            .mul_f64(calls.saturating_sub(1) as f64)
            .as_secs_f64()
    );

    let stats = api.stats.clone();
    let abort = Abort::new();
    let pacer_for_summary = api.pacer.clone();
    let gate = api.gate.clone();
    let sender = Arc::new(Sender::new(
        api,
        abort.clone(),
        job.interrupt.clone(),
        ledger.clone(),
        run,
    ));

    if count(RowState::InFlight) > 0 {
        recover_in_flight(&sender, &ledger, run, &schema).await?;
    }

    let format = CellFormat::of(settings);
    let mut report = ReportWriter::with_format(
        &job.report,
        create_report_file(&job.report)?,
        &ledger.headers(run)?,
        format,
    )?;
    let concurrency = settings.concurrency;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(concurrency.max(4));
    let (outcome_tx, mut outcome_rx) = mpsc::channel(concurrency.max(4) * 2);

    let reader = {
        let ledger = ledger.clone();
        let interrupt = job.interrupt.clone();
        let batch_size = settings.batch_size;
        tokio::task::spawn_blocking(move || -> Result<(), LedgerError> {
            let mut batcher = Batcher::new(batch_size);
            let mut after = 0;
            while interrupt.flag().reason().is_none() {
                let chunk = ledger.rows(run, after, 1000)?;
                let Some(last) = chunk.last() else { break };
                after = last.number;
                for row in chunk {
                    let work = work_of(&row, &schema);
                    let source = SourceRow {
                        number: row.number,
                        line: row.line,
                        record: row.record,
                    };
                    if let Some(batch) = batcher.push(BatchRow { source, work })
                        && batch_tx.blocking_send(batch).is_err()
                    {
                        return Ok(());
                    }
                }
            }
            if let Some(batch) = batcher.finish() {
                let _ = batch_tx.blocking_send(batch);
            }
            Ok(())
        })
    };

    let sending = tokio::spawn(async move {
        futures::stream::poll_fn(move |cx| batch_rx.poll_recv(cx))
            .for_each_concurrent(concurrency, |batch| {
                let sender = sender.clone();
                let outcome_tx = outcome_tx.clone();
                async move {
                    let outcome = sender.send(batch).await;
                    // The report stage only goes away when the run is being torn down.
                    let _ = outcome_tx.send(outcome).await;
                }
            })
            .await;
    });

    let progress = Progress::new(total, job.progress);
    let mut report_failure = None;
    while let Some(outcome) = outcome_rx.recv().await {
        match report.accept(outcome) {
            Ok(rows) => progress.advance(rows),
            Err(e) => {
                abort.trigger(format!("the report cannot be written: {e}"));
                report_failure = Some(e);
                break;
            }
        }
    }
    progress.finish();
    drop(outcome_rx);
    sending
        .await
        .map_err(|e| ImportError::Internal(format!("send stage: {e}")))?;
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => abort.trigger(format!("reading the ledger failed: {e}")),
        Err(e) => return Err(ImportError::Internal(format!("read stage: {e}"))),
    }
    if let Some(e) = report_failure {
        ledger.finish_run(run, RunStatus::Aborted)?;
        return Err(ImportError::Stopped(e.to_string()));
    }

    let after = ledger.counts(run)?;
    let unsettled = after.get(&RowState::Pending).copied().unwrap_or(0)
        + after.get(&RowState::InFlight).copied().unwrap_or(0);
    let interrupted = job.interrupt.status();
    let status = if interrupted.is_some() {
        RunStatus::Interrupted
    } else if abort.reason().is_some() || unsettled > 0 {
        RunStatus::Aborted
    } else {
        RunStatus::Finished
    };
    // The report is complete before the run is marked finished: a kill in between leaves a run
    // that the next invocation resumes (with nothing left to send), never a finished run with a
    // partial report, which would invite a re-import.
    let counts = if interrupted.is_some() {
        // Rows the run never reached are missing from the streamed report: rewrite it whole.
        drop(report);
        write_from_ledger_as(&ledger, run, &job.report, format)
            .map_err(|e| ImportError::Stopped(e.to_string()))?
    } else {
        report
            .finish()
            .map_err(|e| ImportError::Stopped(e.to_string()))?
    };
    ledger.finish_run(run, status)?;
    ledger.close();
    let late = RunStats::get(&stats.late_permits);
    if late > 0 {
        info!(
            "{late} calls waited for a fresh permit: the ledger took too long to record them in \
             flight, and leaving late could have put more than the quota in one window"
        );
    }
    let (outages, outage_time) = gate.as_ref().map(|gate| gate.outages()).unwrap_or_default();
    if let Some(gate) = &gate {
        gate.close("the run is over");
    }

    Ok(RunSummary {
        rows: counts.total(),
        counts,
        calls: RunStats::get(&stats.calls),
        rate_limited: RunStats::get(&stats.rate_limited),
        retries: RunStats::get(&stats.retries),
        ambiguous: RunStats::get(&stats.ambiguous),
        recovered: RunStats::get(&stats.recovered),
        isolation_calls: RunStats::get(&stats.isolation_calls),
        lookup_calls: RunStats::get(&stats.lookup_calls),
        probes: RunStats::get(&stats.probes),
        outages,
        outage_time,
        elapsed: started.elapsed(),
        aborted: abort.reason().map(|r| r.to_string()).or_else(|| {
            (interrupted.is_none() && unsettled > 0).then(|| {
                format!("{unsettled} rows could not be settled; run the same command again")
            })
        }),
        interrupted,
        ledger: Some((job.ledger.display().to_string(), run)),
        resumed: prepared.resumed,
        quota: Some(settings.rate),
        discovered_quota: pacer_for_summary.discovered(),
        too_many_invalid: None,
    })
}

/// Why a run must not send, when more than `limit` percent of its `total` rows are invalid.
fn too_many_invalid(invalid: u64, total: u64, limit: f64) -> Option<String> {
    let share = if total == 0 {
        0.0
    } else {
        invalid as f64 * 100.0 / total as f64
    };
    (share > limit).then(|| {
        format!(
            "{invalid} of {total} rows ({share:.1}%) are invalid, more than --max-invalid {limit}%"
        )
    })
}

/// Ends a planned run without sending anything: every row that would have been sent is settled
/// as failed with `reason` (so the report accounts for it and `retry` can post it after the
/// file is fixed), the report is written whole, and the run is abandoned so that running the
/// fixed file again starts afresh instead of resuming this one.
async fn stop_before_sending(
    job: &ImportJob,
    ledger: &Ledger,
    run: i64,
    reason: String,
    started: Instant,
) -> Result<RunSummary, ImportError> {
    warn!("{reason}: nothing is sent");
    let not_sent = format!("not sent: the run stopped before sending because {reason}");
    let updates = ledger
        .rows_in_state(run, RowState::Pending)?
        .into_iter()
        .map(|row| RowUpdate {
            number: row.number,
            state: RowState::Failed,
            activity_id: None,
            error: Some(not_sent.clone()),
        })
        .collect();
    ledger.settle(run, None, "max-invalid", updates).await?;
    let counts = write_from_ledger_as(ledger, run, &job.report, CellFormat::of(&job.settings))?;
    ledger.finish_run(run, RunStatus::Abandoned)?;
    ledger.close();
    Ok(RunSummary {
        too_many_invalid: Some(reason),
        ..RunSummary::unsent(
            counts,
            started.elapsed(),
            (job.ledger.display().to_string(), run),
            job.settings.rate,
        )
    })
}

/// Rows a killed run left in flight: their call may or may not have created them. Ask the
/// server before anything is sent, in one check of all of them (one paged read per lead, not
/// per batch); found rows are settled as created, the rest go back to pending and are sent by
/// the main pass.
async fn recover_in_flight(
    sender: &Sender,
    ledger: &Ledger,
    run: i64,
    schema: &Schema,
) -> Result<(), ImportError> {
    let rows = ledger.rows_in_state(run, RowState::InFlight)?;
    let sendables: Vec<Sendable> = rows
        .iter()
        .filter_map(|r| sendable(r, schema).ok())
        .collect();
    let mut leads: Vec<&str> = sendables
        .iter()
        .map(|r| r.item.related_prospect_id.as_str())
        .collect();
    leads.sort_unstable();
    leads.dedup();
    info!(
        rows = rows.len(),
        leads = leads.len(),
        "checking rows the previous run left in flight"
    );
    let _ = sender
        .check_server(
            None,
            "a call was in flight when the previous run stopped",
            sendables,
        )
        .await;
    Ok(())
}

fn client_config(settings: &Settings) -> Result<ClientConfig, ImportError> {
    ClientConfig::from_settings(settings).map_err(ImportError::Setup)
}
