//! Planning an import: which run a job works on, and every row of it recorded in the ledger
//! before anything is sent.
//!
//! [`plan_run`] resumes an unfinished run of the same input (its rows are already recorded, and
//! read again the way they were planned: [`input_settings_from_options`]), reports a finished
//! one again, or plans a new one: reads the whole input once, validates every row, and records
//! each with its state (pending, invalid, or created/skipped as an edited report or an earlier
//! run says), so that file-level problems surface before the first call and the plan (rows,
//! calls, minimum time) is known. Running the plan is [`crate::import::pipeline`]'s job.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use tracing::{info, warn};

use crate::abort::Interrupt;
use crate::config::{InputSettings, Settings};
use crate::import::validate::{Schema, SchemaError};
use crate::input::InputSource;
use crate::input::rows::{InputError, SourceRow};
use crate::ledger::{
    InputRecord, Ledger, LedgerError, NewRow, RowState, RunStatus, fingerprint, hash_file,
};
use crate::lsq::client::ClientError;
use crate::report::{REPORT_COLUMNS, ReportError, is_report_header, strip_excel_safe};

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
pub(crate) struct Plan {
    /// The run's id in the ledger.
    pub run: i64,
    /// Whether the run was planned earlier and is resumed (or finished and reported again).
    pub resumed: bool,
    /// How the run reads its input: the recorded description for a run that was planned
    /// earlier (resume, retry and undo all read rows the one way they were planned), the
    /// settings given now for a new run.
    pub input: InputSettings,
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
pub(crate) fn plan_run(ledger: &Ledger, job: &ImportJob) -> Result<Plan, ImportError> {
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
            return Ok(Plan {
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
        return Ok(Plan {
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
    Ok(Plan {
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
    let recorded_view = recorded.record(recorded.sheet.as_deref());
    let given_view = given.record(given.sheet.as_deref());
    let defaults = InputRecord::default();
    if given_view == defaults || given_view == recorded_view {
        if recorded_view != defaults {
            info!(
                "run {run} reads its input with the options it recorded: {}",
                json_of(&recorded_view)
            );
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
    let (recorded_view, given_view) = (json_of(&recorded_view), json_of(&given_view));
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

/// A record as JSON, for the ledger's options and for messages.
fn json_of(record: &InputRecord) -> serde_json::Value {
    serde_json::to_value(record).unwrap_or_default()
}

/// How the input was read, for the ledger's record of the run (a later `undo` or a person
/// reading the ledger needs the mapping to make sense of the rows).
fn input_options(input: &InputSettings, sheet: Option<&str>) -> serde_json::Value {
    json_of(&input.record(sheet))
}

/// The input settings a run recorded (the `"input"` key of its ledger options JSON, an
/// [`InputRecord`]), rebuilt so that a resume and an undo read the run's rows as the run read
/// them. A run recorded without them (older ledgers) was read with the plain column names: the
/// defaults.
pub(crate) fn input_settings_from_options(
    options: &str,
) -> Result<InputSettings, crate::config::ConfigError> {
    let record =
        InputRecord::from_options(options).map_err(|e| crate::config::ConfigError::Invalid {
            source_name: "the run's recorded input options".to_string(),
            message: e.to_string(),
        })?;
    InputSettings::from_record(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Durability, StoredRow};

    const LEAD: &str = "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf";

    /// A temp dir holding `input.csv` with `text`, and a ledger beside it.
    struct Fixture {
        dir: tempfile::TempDir,
        ledger: Ledger,
    }

    impl Fixture {
        fn new(name: &str, text: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(name), text).unwrap();
            let ledger = Ledger::open(&dir.path().join("run.ledger"), Durability::Normal).unwrap();
            Fixture { dir, ledger }
        }

        fn job(&self, kind: InputKind, name: &str) -> ImportJob {
            ImportJob {
                kind,
                input: self.dir.path().join(name),
                report: self.dir.path().join("report.csv"),
                ledger: self.dir.path().join("run.ledger"),
                settings: Settings::default(),
                progress: false,
                fresh: false,
                force: false,
                skip_existing: false,
                interrupt: Interrupt::default(),
            }
        }

        fn rows(&self, run: i64) -> Vec<StoredRow> {
            self.ledger.rows(run, 0, 100).unwrap()
        }
    }

    fn input() -> String {
        format!(
            "RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n\
             {LEAD},201,first,2024-01-01 10:00:00\n\
             not-a-guid,201,bad,2024-01-01 10:00:00\n\
             {LEAD},202,third,\n"
        )
    }

    #[test]
    fn a_new_run_records_every_row_with_its_state() {
        let f = Fixture::new("in.csv", &input());
        let plan = plan_run(&f.ledger, &f.job(InputKind::Import, "in.csv")).unwrap();
        assert!(!plan.resumed);
        let rows = f.rows(plan.run);
        let states: Vec<_> = rows.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            [RowState::Pending, RowState::Invalid, RowState::Pending]
        );
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 3, 4],
            "lines of the file, the header being line 1"
        );
        let error = rows[1].error.clone().unwrap_or_default();
        assert!(error.contains("RelatedProspectId"), "{error}");
        assert_eq!(&rows[0].record[2], b"first", "the row is kept as read");
        let run = f.ledger.run(plan.run).unwrap().unwrap();
        assert_eq!(run.status, "running", "planned, ready to run");
    }

    #[test]
    fn the_same_input_again_resumes_its_unfinished_run() {
        let f = Fixture::new("in.csv", &input());
        let job = f.job(InputKind::Import, "in.csv");
        let first = plan_run(&f.ledger, &job).unwrap();
        let again = plan_run(&f.ledger, &job).unwrap();
        assert!(again.resumed);
        assert_eq!(again.run, first.run);
        assert_eq!(f.ledger.runs().unwrap().len(), 1, "no new run, no new rows");
    }

    #[test]
    fn a_finished_run_of_the_same_input_is_reported_again_not_sent_again() {
        let f = Fixture::new("in.csv", &input());
        let job = f.job(InputKind::Import, "in.csv");
        let first = plan_run(&f.ledger, &job).unwrap();
        f.ledger.finish_run(first.run, RunStatus::Finished).unwrap();
        let again = plan_run(&f.ledger, &job).unwrap();
        assert!(again.resumed);
        assert_eq!(again.run, first.run);
        // --fresh is the deliberate way to import it again.
        let fresh = plan_run(&f.ledger, &ImportJob { fresh: true, ..job }).unwrap();
        assert!(!fresh.resumed);
        assert_ne!(fresh.run, first.run);
    }

    #[test]
    fn a_changed_input_is_refused_unless_forced_or_fresh() {
        let f = Fixture::new("in.csv", &input());
        let job = f.job(InputKind::Import, "in.csv");
        let first = plan_run(&f.ledger, &job).unwrap();
        std::fs::write(&job.input, input().replace("first", "changed")).unwrap();
        match plan_run(&f.ledger, &job) {
            Err(ImportError::InputChanged { run, .. }) => assert_eq!(run, first.run),
            other => panic!("expected InputChanged, got {:?}", other.map(|p| p.run)),
        }
        let fresh = plan_run(&f.ledger, &ImportJob { fresh: true, ..job }).unwrap();
        assert_ne!(fresh.run, first.run);
        let old = f.ledger.run(first.run).unwrap().unwrap();
        assert_eq!(old.status, "abandoned");
    }

    #[test]
    fn forcing_a_changed_input_carries_over_what_the_old_run_settled() {
        let f = Fixture::new("in.csv", &input());
        let job = f.job(InputKind::Import, "in.csv");
        let first = plan_run(&f.ledger, &job).unwrap();
        let created = crate::ledger::RowUpdate {
            number: 1,
            state: RowState::Created,
            activity_id: Some("act-1".into()),
            error: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(f.ledger.settle(first.run, None, "answered", vec![created]))
            .unwrap();
        // The third row changes; the first, created, is the same activity as before.
        std::fs::write(&job.input, input().replace("third", "changed")).unwrap();
        let forced = plan_run(&f.ledger, &ImportJob { force: true, ..job }).unwrap();
        let rows = f.rows(forced.run);
        assert_eq!(rows[0].state, RowState::Created);
        assert_eq!(rows[0].activity_id.as_deref(), Some("act-1"));
        assert_eq!(rows[2].state, RowState::Pending);
    }

    #[test]
    fn a_retry_reads_a_report_and_keeps_what_it_says_was_done() {
        let report = format!(
            "RowNumber,Status,ProspectActivityId,Error,RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n\
             1,created,act-1,,{LEAD},201,first,2024-01-01 10:00:00\n\
             2,failed,,HTTP 500,{LEAD},201,second,2024-01-01 11:00:00\n\
             3,skipped,act-3,,{LEAD},201,third,2024-01-01 12:00:00\n"
        );
        let f = Fixture::new("report.csv", &report);
        let plan = plan_run(&f.ledger, &f.job(InputKind::Retry, "report.csv")).unwrap();
        let rows = f.rows(plan.run);
        let states: Vec<_> = rows
            .iter()
            .map(|r| (r.number, r.state, r.activity_id.clone()))
            .collect();
        assert_eq!(
            states,
            [
                (1, RowState::Created, Some("act-1".to_string())),
                (2, RowState::Pending, None),
                (3, RowState::Skipped, Some("act-3".to_string())),
            ]
        );
        assert_eq!(
            rows[1].record.len(),
            4,
            "the report's own columns are dropped"
        );
        assert_eq!(
            f.ledger.headers(plan.run).unwrap(),
            ByteRecord::from(vec![
                "RelatedProspectId",
                "ActivityEvent",
                "ActivityNote",
                "ActivityDateTime"
            ])
        );
    }

    #[test]
    fn a_retry_of_something_that_is_not_a_report_is_refused() {
        let f = Fixture::new("in.csv", &input());
        let err = plan_run(&f.ledger, &f.job(InputKind::Retry, "in.csv"))
            .err()
            .unwrap();
        assert!(matches!(err, ImportError::NotAReport { .. }), "{err}");
        let twice = format!(
            "RowNumber,Status,ProspectActivityId,Error,RelatedProspectId,ActivityEvent\n\
             1,failed,,x,{LEAD},201\n\
             1,failed,,x,{LEAD},201\n"
        );
        let f = Fixture::new("report.csv", &twice);
        let err = plan_run(&f.ledger, &f.job(InputKind::Retry, "report.csv"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("appears twice"), "{err}");
        // A plan that failed half-way leaves no run to resume.
        let runs = f.ledger.runs().unwrap();
        assert!(runs.iter().all(|r| r.status == "abandoned"), "{runs:?}");
    }

    #[test]
    fn a_resume_reads_rows_the_way_they_were_planned() {
        let f = Fixture::new("in.csv", &input());
        let mut job = f.job(InputKind::Import, "in.csv");
        job.settings.input.dates.zone =
            Some(crate::input::dates::parse_zone("Asia/Kolkata").unwrap());
        let first = plan_run(&f.ledger, &job).unwrap();
        // No input option given: the recorded ones are used.
        let plain = f.job(InputKind::Import, "in.csv");
        let resumed = plan_run(&f.ledger, &plain).unwrap();
        assert_eq!(resumed.run, first.run);
        assert_eq!(resumed.input.dates.zone, job.settings.input.dates.zone);
        // Another time zone: refused, naming the flag.
        let mut other = f.job(InputKind::Import, "in.csv");
        other.settings.input.dates.zone =
            Some(crate::input::dates::parse_zone("Europe/London").unwrap());
        match plan_run(&f.ledger, &other) {
            Err(ImportError::OptionsConflict { flag, .. }) => assert_eq!(flag, "--timezone"),
            result => panic!("expected a conflict, got {:?}", result.map(|p| p.run)),
        }
    }

    #[test]
    fn recorded_input_options_read_back_as_settings() {
        let mut settings = InputSettings::default();
        settings.dates.zone = Some(crate::input::dates::parse_zone("Asia/Kolkata").unwrap());
        settings.sheet = Some("Calls".into());
        let options = serde_json::json!({ "input": input_options(&settings, Some("Calls")) });
        let back = input_settings_from_options(&options.to_string()).unwrap();
        assert_eq!(back.dates.zone, settings.dates.zone);
        assert_eq!(back.sheet.as_deref(), Some("Calls"));
        // Older ledgers recorded no input options: the defaults.
        let old = input_settings_from_options("{}").unwrap();
        assert_eq!(
            input_options(&old, None),
            input_options(&InputSettings::default(), None)
        );
    }
}
