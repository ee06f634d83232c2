//! Planning an import: which run a job works on, and every row of it recorded in the ledger
//! before anything is sent.
//!
//! [`plan_run`] resumes an unfinished run of the same input (its rows are already recorded, and
//! read again the way they were planned: [`input_settings_from_options`]), reports a finished
//! one again, or plans a new one: reads the whole input once, validates every row, and records
//! each with its state (pending, invalid, or created/skipped as an edited report or an earlier
//! run says), so that file-level problems surface before the first call and the plan (rows,
//! calls, minimum time) is known. Running the plan is [`crate::import::run`]'s job.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use tracing::{info, warn};

use crate::abort::Interrupt;
use crate::config::{InputSettings, Settings};
use crate::import::keyed::{Classifier, KeyColumn, entry_of};
use crate::import::validate::{Schema, SchemaError};
use crate::input::InputSource;
use crate::input::rows::{InputError, SourceRow};
use crate::ledger::{
    InputRecord, Ledger, LedgerError, NO_INPUT_LINE, NewRow, RowAction, RowState, RunStatus,
    fingerprint, hash_file,
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
    /// The keyed sync cannot work on this input (`--key`, `--key-field`).
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
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
#[derive(Clone)]
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
    /// Keyed sync: delete without asking (`--yes`).
    pub yes: bool,
    /// Keyed sync: how activities are deleted (`--delete-missing`, `--replace-changed`),
    /// handed in by the command; `None` where the job deletes nothing.
    pub deleter: Option<std::sync::Arc<dyn crate::import::deletion::Deleter>>,
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
    /// A new keyed run's classification so far: every row classified against the ledger's key
    /// map; what needs the account or every key (`keymap`, missing keys) is still to come.
    pub keyed: Option<Classifier>,
}

/// Maps the input's header and rows to the run's: for a report, the first four columns are the
/// report's own and the rest are the original input.
struct RowShape {
    kind: InputKind,
    schema: Schema,
    input_headers: ByteRecord,
    /// The report being read was written with `--excel-safe`: its cells carry a `'` to strip.
    excel_safe: bool,
    /// Keyed sync: where each row holds its key.
    key: Option<KeyColumn>,
}

/// What an edited report says was already done to a row.
enum Prior {
    None,
    /// Settled by the run that wrote the report (created, skipped, and a keyed sync's
    /// updated, unchanged and deleted): carried over, never sent again.
    Done(RowState, Option<String>, Option<String>),
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
        let key = KeyColumn::find(&input_headers, &settings.sync).map_err(|message| {
            ImportError::Key {
                path: path.to_path_buf(),
                message,
            }
        })?;
        if let Some(field) = key.as_ref().and_then(|k| k.field.as_deref())
            && let Some(source) = schema.custom_field_source(field)
        {
            return Err(ImportError::Key {
                path: path.to_path_buf(),
                message: format!(
                    "--key-field {field} is given by {source} too; the key field holds the key, \
                     so choose a custom field the input does not use"
                ),
            });
        }
        Ok(RowShape {
            kind,
            schema: schema.with_max_cell_bytes(settings.input_limits.max_cell_bytes),
            input_headers,
            excel_safe,
            key,
        })
    }

    /// The row as the run sees it, and what a report said of it. `last` is the highest row
    /// number read so far: a keyed sync's line for a key its input lacked has no `RowNumber`
    /// and takes the next one.
    fn split(
        &self,
        row: SourceRow,
        path: &Path,
        last: u64,
    ) -> Result<(SourceRow, Prior), ImportError> {
        if self.kind == InputKind::Import {
            return Ok((row, Prior::None));
        }
        let field = |i: usize| {
            String::from_utf8_lossy(row.record.get(i).unwrap_or_default())
                .trim()
                .to_string()
        };
        let status = field(1).to_ascii_lowercase();
        let id = Some(field(2)).filter(|id| !id.is_empty());
        // A line for a key the sync's input lacked (`--delete-missing`): carried as it is;
        // the next sync deletes the key again if it is still missing and still known.
        let missing_key = field(0).is_empty() && self.key.is_some();
        let number: u64 = if missing_key {
            last + 1
        } else {
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
                })?
        };
        let error = Some(field(3)).filter(|e| !e.is_empty());
        let prior = match status.as_str() {
            "created" => Prior::Done(RowState::Created, id, None),
            "skipped" => Prior::Done(RowState::Skipped, id, None),
            "updated" => Prior::Done(RowState::Updated, id, None),
            "unchanged" => Prior::Done(RowState::Unchanged, id, None),
            "deleted" => Prior::Done(RowState::Deleted, id, None),
            _ if missing_key => Prior::Done(RowState::Failed, id, error),
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
                line: if missing_key { NO_INPUT_LINE } else { row.line },
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
    check_sync(job)?;
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
                keyed: None,
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
        // A keyed sync compares every row with the key map, so running it again is already
        // idempotent, and its report should say what this run found (unchanged), not replay
        // what the last one did.
        && job.settings.sync.key.is_none()
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
            keyed: None,
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
        "sync": sync_options(&job.settings.sync),
    })
    .to_string();
    if let Some(key) = &shape.key {
        ledger.claim_key_column(&key.name)?;
    }
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
    let mut last_number = 0;
    let key_map = match shape.key {
        Some(_) => Some(ledger.key_map_reader()?),
        None => None,
    };
    let mut classifier = match shape.key {
        Some(_) => Some(Classifier::new(
            job.settings.sync.clone(),
            ledger.known_key_count()?,
        )),
        None => None,
    };
    let mut failure: Option<ImportError> = None;

    let rows = source.map_while(|row| {
        let result = (|| -> Result<NewRow, ImportError> {
            let (row, prior) = shape.split(row?, path, last_number)?;
            last_number = last_number.max(row.number);
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
            let sync_key = shape.key.as_ref().and_then(|k| k.key_of(&row.record));
            let mut new = NewRow {
                number: row.number,
                line: row.line,
                record: record.unwrap_or(row.record),
                fingerprint: None,
                lead_id: None,
                state: RowState::Pending,
                activity_id: None,
                error: None,
                sync_key,
                sync_entry: None,
                action: RowAction::Create,
                target_id: None,
            };
            let mut entry = None;
            if let Ok(item) = &check {
                // A keyed row is found by its key, never by its content (`--skip-existing` and
                // `--force` are for runs without a key).
                if shape.key.is_none() {
                    new.fingerprint = Some(fingerprint(item));
                }
                new.lead_id = Some(item.related_prospect_id.clone());
                if let Some(key) = &shape.key {
                    let e = entry_of(item, key.field.as_deref());
                    new.sync_entry = serde_json::to_string(&e).ok();
                    entry = Some(e);
                }
            }
            if let Some(classifier) = &mut classifier {
                classifier.note_key(new.sync_key.as_deref(), new.number, new.line);
            }
            match (prior, check) {
                (Prior::Done(state, id, error), _) => {
                    new.state = state;
                    new.activity_id = id;
                    new.error = error;
                    new.sync_entry = None;
                }
                (Prior::None, Err(problem)) => {
                    new.state = RowState::Invalid;
                    new.error = Some(problem.to_string());
                }
                (Prior::None, Ok(_)) if shape.key.is_some() && new.sync_key.is_none() => {
                    let column = shape.key.as_ref().map(|k| k.name.as_str()).unwrap_or("");
                    new.state = RowState::Invalid;
                    new.error = Some(format!(
                        "{column}: the key (--key) is empty; a keyed sync needs every row's key"
                    ));
                    new.sync_entry = None;
                }
                (Prior::None, Ok(_)) if classifier.is_some() => {
                    if let (Some(classifier), Some(entry), Some(key)) =
                        (&mut classifier, &entry, &new.sync_key)
                    {
                        let known = match &key_map {
                            Some(map) => map.get(key)?,
                            None => None,
                        };
                        classifier.classify(&mut new, entry, known.as_ref());
                    }
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
    // Reading and checking the rows (CPU) runs on its own thread, recording them (SQLite) on
    // this one: on two cores, planning takes about the longer of the two, not their sum.
    // Rows cross in blocks, so the threads do not wake each other for every row, and each
    // block goes back to be freed where it was made (freeing another thread's memory makes
    // the allocator's threads wait on each other).
    let inserted = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<NewRow>>(16);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<NewRow>>();
        scope.spawn(move || {
            let mut rows = rows.peekable();
            while rows.peek().is_some() {
                let block: Vec<NewRow> = rows.by_ref().take(256).collect();
                if tx.send(block).is_err() {
                    break;
                }
                while let Ok(done) = done_rx.try_recv() {
                    drop(done);
                }
            }
            drop(tx);
            for done in done_rx {
                drop(done);
            }
        });
        let mut inserted = 0;
        for block in rx {
            inserted += ledger.insert_rows(run, &block)?;
            let _ = done_tx.send(block);
        }
        Ok::<u64, LedgerError>(inserted)
    });
    drop(key_map);
    inserted?;
    if let Some(e) = failure {
        ledger.finish_run(run, RunStatus::Abandoned)?;
        return Err(e);
    }
    // A keyed run is resumable only once classified whole (keys held twice, the key map read
    // back from the account, keys the input lacks: `run` finishes it): until then a kill leaves
    // it `planning`, and the next run plans afresh.
    match &mut classifier {
        Some(classifier) => classifier.settle_duplicates(ledger, run)?,
        None => ledger.planned(run)?,
    }
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
        keyed: classifier,
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

/// What a keyed sync cannot be combined with, refused before anything is read.
fn check_sync(job: &ImportJob) -> Result<(), ImportError> {
    let sync = &job.settings.sync;
    if sync.key.is_none() {
        return Ok(());
    }
    let refuse = |m: &str| Err(ImportError::Setup(m.to_string()));
    if job.skip_existing {
        return refuse(
            "--skip-existing matches rows by content; with --key rows are matched by their key: \
             leave --skip-existing out",
        );
    }
    if job.settings.input.columns.match_by().is_some() {
        return refuse(
            "--key with --match-by is not supported: a keyed sync compares, updates and deletes \
             activities by lead id",
        );
    }
    if job.kind == InputKind::Retry && sync.delete_missing {
        return refuse(
            "retry re-sends what failed; --delete-missing belongs to the sync run itself (the next \
             run deletes keys still missing)",
        );
    }
    Ok(())
}

/// The keyed sync settings, for the ledger's record of the run.
fn sync_options(sync: &crate::config::SyncSettings) -> serde_json::Value {
    serde_json::json!({
        "key": sync.key,
        "key_field": sync.key_field,
        "replace_changed": sync.replace_changed,
        "delete_missing": sync.delete_missing,
        "max_delete": sync.max_delete.to_string(),
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
mod tests;
