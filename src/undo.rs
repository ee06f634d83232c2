//! Planning the undo of an import. The API deletes by lead, code and time window, never by id,
//! so a careless undo also deletes what was there before; this module works out, per lead and
//! code, the smallest window that covers what the import created and whether anything else is
//! in it.
//!
//! What the import created enters from its report ([`from_report`]: `created` lines, the date
//! from the input's `ActivityDateTime` or, when lsq-sync filled it in, from the ledger) or from
//! a ledger run ([`from_ledger`]); either is read the way the import read its input (`--map`,
//! `--set`, `--timezone`, ...), as the ledger's record of the run says. It leaves grouped as
//! [`UndoGroup`]s. After the caller has
//! listed each group's window (Get Activities), [`judge`] (pure) decides: delete, refuse (naming
//! the foreign activity ids), or nothing left to do.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use crate::api::ProspectActivity;
use crate::config::InputSettings;
use crate::input::SourceRow;
use crate::ledger::{Ledger, LedgerError, RowState};
use crate::pipeline::input_settings_from_options;
use crate::remote::DeleteWindow;
use crate::report::{REPORT_COLUMNS, is_report_header};
use crate::validate::Schema;

/// One activity the import created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedActivity {
    /// The report's `RowNumber`.
    pub row: u64,
    /// The lead, lowercase.
    pub lead: String,
    /// The activity code.
    pub code: i64,
    /// `ProspectActivityId`, lowercase.
    pub id: String,
    /// Its `ActivityDateTime`; `None` if neither the input nor the ledger says.
    pub date: Option<String>,
}

/// The created activities of one lead and code, and the window that covers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoGroup {
    /// The lead.
    pub lead: String,
    /// The activity code.
    pub code: i64,
    /// Ids the import created, lowercase.
    pub ids: BTreeSet<String>,
    /// From the earliest to the latest date of those activities, both inclusive.
    pub window: DeleteWindow,
    /// Ids whose date is unknown: the window cannot be trusted to cover them.
    pub undated: Vec<String>,
}

/// What to do with one group, once its window has been listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every activity in the window is the import's (or `--force`): delete. Carries how many
    /// are there and the foreign ids that `--force` lets go too.
    Delete {
        /// Activities in the window.
        found: u64,
        /// Foreign activities deleted anyway (only with `--force`).
        forced_foreign: Vec<String>,
    },
    /// Other activities are in the window; their ids.
    Refuse {
        /// The ids in the way.
        foreign: Vec<String>,
    },
    /// None of the import's activities is there any more.
    NothingLeft,
}

/// The undo cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    /// The report cannot be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The report.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Not a report of lsq-sync, or a line that makes no sense.
    #[error("{path}: {message}")]
    NotAReport {
        /// The report.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The run asked for does not exist.
    #[error("{0}")]
    NoRun(String),
    /// The import found its leads by another field: nothing records the lead ids the delete
    /// call needs.
    #[error(
        "run {run} found its leads by {field} (--match-by {field}): deleting needs each lead's id, \
         which neither its report nor its ledger holds (the rows name leads by {field}), so undo \
         of a --match-by import is not supported and nothing was deleted; the report's \
         ProspectActivityId column lists the activities it created"
    )]
    MatchBy {
        /// The ledger's run.
        run: i64,
        /// The lead field of `--match-by`.
        field: String,
    },
}

/// Whether `path` is an SQLite database (a ledger), by its 16-byte magic header.
pub fn is_ledger_file(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// The `created` lines of an import's report. The date of a line whose input had no
/// `ActivityDateTime` is looked up in `ledger` (what lsq-sync filled in), if given.
pub fn from_report(
    path: &Path,
    ledger: Option<&Ledger>,
) -> Result<Vec<CreatedActivity>, UndoError> {
    let read_error = |e: &dyn std::fmt::Display| UndoError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let not_report = |message: String| UndoError::NotAReport {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| read_error(&e))?;
    let headers = reader.byte_headers().map_err(|e| read_error(&e))?.clone();
    if !is_report_header(&headers) {
        return Err(not_report(format!(
            "not an lsq-sync report: expected the first columns to be {}",
            REPORT_COLUMNS.join(",")
        )));
    }
    let input_headers: ByteRecord = headers.iter().skip(REPORT_COLUMNS.len()).collect();
    let recorded = match ledger {
        Some(ledger) => report_input(ledger, &input_headers)?,
        None => None,
    };
    let schema = match &recorded {
        Some(input) => Schema::for_input(&input_headers, input),
        None => Schema::from_headers(&input_headers),
    }
    .map_err(|e| match recorded {
        Some(_) => not_report(e.to_string()),
        // Mapped imports are read through their ledger record; without one the plain names
        // are all there is.
        None => not_report(format!(
            "{e} (no run of the ledger has these columns, so they are read by their plain \
             names; if the import used --map or --set, give its ledger with --ledger)"
        )),
    })?;
    let mut created = Vec::new();
    let mut record = ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| read_error(&e))?
    {
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| {
            String::from_utf8_lossy(record.get(i).unwrap_or_default())
                .trim()
                .to_string()
        };
        if !cell(1).eq_ignore_ascii_case("created") {
            continue;
        }
        let id = cell(2).to_ascii_lowercase();
        if id.is_empty() {
            return Err(not_report(format!(
                "line {line}: Status created but no ProspectActivityId"
            )));
        }
        let row: u64 = cell(0).parse().unwrap_or(0);
        let source = SourceRow {
            number: row,
            line,
            record: record.iter().skip(REPORT_COLUMNS.len()).collect(),
        };
        let item = schema
            .check(&source)
            .map_err(|problem| not_report(format!("line {line}: {problem}")))?;
        created.push(CreatedActivity {
            row,
            lead: item.related_prospect_id.to_ascii_lowercase(),
            code: item.activity_event,
            id,
            date: item.activity_date_time,
        });
    }
    if let Some(ledger) = ledger {
        let undated: Vec<String> = created
            .iter()
            .filter(|c| c.date.is_none())
            .map(|c| c.id.clone())
            .collect();
        if !undated.is_empty() {
            let dates = ledger.sent_date_times(&undated)?;
            for activity in created.iter_mut().filter(|c| c.date.is_none()) {
                activity.date = dates.get(&activity.id).cloned();
            }
        }
    }
    Ok(created)
}

/// The created rows of a ledger run (`None`: the latest import or retry run), with the run's id.
pub fn from_ledger(
    ledger: &Ledger,
    run: Option<i64>,
) -> Result<(i64, Vec<CreatedActivity>), UndoError> {
    let runs = ledger.runs()?;
    let run = match run {
        Some(id) => runs
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| UndoError::NoRun(format!("the ledger has no run {id}")))?,
        None => runs
            .iter()
            .rev()
            .find(|r| r.kind == "import" || r.kind == "retry")
            .ok_or_else(|| UndoError::NoRun("the ledger holds no import run".into()))?,
    };
    let headers = ledger.headers(run.id)?;
    let schema = Schema::for_input(&headers, &run_input(ledger, run.id)?)
        .map_err(|e| UndoError::NoRun(format!("run {}: {e}", run.id)))?;
    let mut created = Vec::new();
    for row in ledger.rows_in_state(run.id, RowState::Created)? {
        let Some(id) = row.activity_id.clone() else {
            continue;
        };
        let source = SourceRow {
            number: row.number,
            line: row.line,
            record: row.record.clone(),
        };
        let item = schema.check(&source).map_err(|problem| {
            UndoError::NoRun(format!("run {}, row {}: {problem}", run.id, row.number))
        })?;
        created.push(CreatedActivity {
            row: row.number,
            lead: item.related_prospect_id.to_ascii_lowercase(),
            code: item.activity_event,
            id: id.to_ascii_lowercase(),
            date: item.activity_date_time.or(row.sent_date_time),
        });
    }
    Ok((run.id, created))
}

/// How a ledger run read its input (mapping, constants, dates), from its recorded options.
fn run_input(ledger: &Ledger, run: i64) -> Result<InputSettings, UndoError> {
    let input = input_settings_from_options(&ledger.options(run)?)
        .map_err(|e| UndoError::NoRun(format!("run {run}: {e}")))?;
    match input.columns.match_by() {
        Some(field) => Err(UndoError::MatchBy {
            run,
            field: field.to_string(),
        }),
        None => Ok(input),
    }
}

/// How the import that wrote a report read its input: the latest import or retry run of the
/// ledger with the report's input columns (a report keeps the sheet's own headers). `None`
/// when no run has them.
fn report_input(
    ledger: &Ledger,
    input_headers: &ByteRecord,
) -> Result<Option<InputSettings>, UndoError> {
    for run in ledger.runs()?.iter().rev() {
        if (run.kind == "import" || run.kind == "retry")
            && ledger.headers(run.id)? == *input_headers
        {
            return run_input(ledger, run.id).map(Some);
        }
    }
    Ok(None)
}

/// Groups created activities by lead and code, in first-seen order, each with the smallest
/// window covering their dates. Dates in the API's format sort as text.
pub fn group(created: &[CreatedActivity]) -> Vec<UndoGroup> {
    let mut order: Vec<(String, i64)> = Vec::new();
    let mut groups: BTreeMap<(String, i64), UndoGroup> = BTreeMap::new();
    for activity in created {
        let key = (activity.lead.clone(), activity.code);
        let group = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            UndoGroup {
                lead: activity.lead.clone(),
                code: activity.code,
                ids: BTreeSet::new(),
                window: DeleteWindow::default(),
                undated: Vec::new(),
            }
        });
        group.ids.insert(activity.id.clone());
        match &activity.date {
            None => group.undated.push(activity.id.clone()),
            Some(date) => {
                if group.window.from.as_ref().is_none_or(|f| date < f) {
                    group.window.from = Some(date.clone());
                }
                if group.window.to.as_ref().is_none_or(|t| date > t) {
                    group.window.to = Some(date.clone());
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| groups.remove(&key))
        .collect()
}

/// Decides what to do with a group, given every activity of its code in its window.
pub fn judge(group: &UndoGroup, found: &[ProspectActivity], force: bool) -> Decision {
    let mut foreign: Vec<String> = Vec::new();
    let mut ours = 0usize;
    let mut seen = HashSet::new();
    for activity in found {
        let id = activity.id.to_ascii_lowercase();
        if !seen.insert(id.clone()) {
            continue;
        }
        if group.ids.contains(&id) {
            ours += 1;
        } else {
            foreign.push(activity.id.clone());
        }
    }
    if ours == 0 {
        return Decision::NothingLeft;
    }
    if !foreign.is_empty() && !force {
        return Decision::Refuse { foreign };
    }
    Decision::Delete {
        found: seen.len() as u64,
        forced_foreign: foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(lead: &str, code: i64, id: &str, date: Option<&str>) -> CreatedActivity {
        CreatedActivity {
            row: 0,
            lead: lead.into(),
            code,
            id: id.into(),
            date: date.map(str::to_string),
        }
    }

    fn found(id: &str) -> ProspectActivity {
        serde_json::from_value(serde_json::json!({
            "Id": id, "EventCode": 201, "CreatedOn": "2024-01-01 00:00:00"
        }))
        .unwrap()
    }

    /// A ledger with one import run of `headers`, recorded with the given `"input"` options
    /// (the shape `pipeline::input_options` writes).
    fn ledger_with_run(
        dir: &tempfile::TempDir,
        headers: &[&str],
        input: serde_json::Value,
    ) -> Ledger {
        let ledger = Ledger::open(
            &dir.path().join("report.csv.ledger"),
            crate::ledger::Durability::Normal,
        )
        .unwrap();
        let options = serde_json::json!({ "kind": "import", "input": input }).to_string();
        ledger
            .start_run(
                "import",
                "in.csv",
                "hash",
                &ByteRecord::from(headers.to_vec()),
                &options,
            )
            .unwrap();
        ledger
    }

    #[test]
    fn recorded_input_options_rebuild_the_settings() {
        let input = input_settings_from_options(
            &serde_json::json!({ "kind": "import", "input": {
                "sheet": "Calls",
                "mapping": [["Lead ID", "RelatedProspectId"], ["When", "ActivityDateTime"]],
                "constants": [["ActivityEvent", "201"]],
                "match_by": null,
                "timezone": "Asia/Kolkata",
                "date_format": "dd/MM/yyyy HH:mm",
            }})
            .to_string(),
        )
        .unwrap();
        assert_eq!(
            input.columns.renames(),
            [
                ("Lead ID".to_string(), "RelatedProspectId".to_string()),
                ("When".to_string(), "ActivityDateTime".to_string())
            ]
        );
        assert_eq!(
            input.columns.constants(),
            [("ActivityEvent".to_string(), "201".to_string())]
        );
        assert_eq!(input.dates.zone.map(|z| z.name()), Some("Asia/Kolkata"));
        assert_eq!(
            input.dates.format.as_ref().map(|f| f.as_written()),
            Some("dd/MM/yyyy HH:mm")
        );
        assert_eq!(input.sheet.as_deref(), Some("Calls"));
        // A run recorded before the input options were kept read its columns by name.
        let old = input_settings_from_options(r#"{"kind":"import"}"#).unwrap();
        assert_eq!(old.columns, crate::mapping::ColumnMap::default());
        assert!(input_settings_from_options("not json").is_err());
    }

    #[test]
    fn a_mapped_report_is_read_the_way_its_run_read_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_run(
            &dir,
            &["Lead ID", "When", "Notes"],
            serde_json::json!({
                "mapping": [["Lead ID", "RelatedProspectId"], ["When", "ActivityDateTime"]],
                "constants": [["ActivityEvent", "202"]],
            }),
        );
        let report = dir.path().join("report.csv");
        std::fs::write(
            &report,
            "RowNumber,Status,ProspectActivityId,Error,Lead ID,When,Notes\n\
             1,created,ID-1,,{ABCDEF00-0000-0000-0000-000000000001},2024-05-02 10:00:00,hi\n\
             2,failed,,boom,abcdef00-0000-0000-0000-000000000002,2024-05-03 10:00:00,no\n",
        )
        .unwrap();
        assert_eq!(
            from_report(&report, Some(&ledger)).unwrap(),
            vec![CreatedActivity {
                row: 1,
                lead: "abcdef00-0000-0000-0000-000000000001".into(),
                code: 202,
                id: "id-1".into(),
                date: Some("2024-05-02 10:00:00".into()),
            }]
        );
        // Without the ledger the mapped names mean nothing, and the message says what helps.
        let plain = from_report(&report, None).unwrap_err().to_string();
        assert!(plain.contains("--ledger"), "{plain}");
    }

    #[test]
    fn a_match_by_run_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_run(
            &dir,
            &["Email", "ActivityEvent"],
            serde_json::json!({
                "mapping": [["Email", "SearchByValue"]],
                "match_by": "EmailAddress",
            }),
        );
        let message = match from_ledger(&ledger, None) {
            Err(e @ UndoError::MatchBy { .. }) => e.to_string(),
            other => panic!("expected a --match-by refusal, got {other:?}"),
        };
        assert!(message.contains("--match-by EmailAddress"), "{message}");
    }

    #[test]
    fn groups_by_lead_and_code_with_the_smallest_covering_window() {
        let groups = group(&[
            created("a", 201, "1", Some("2024-05-03 10:00:00")),
            created("a", 201, "2", Some("2024-05-01 09:00:00")),
            created("b", 201, "3", Some("2024-06-01 00:00:00")),
            created("a", 202, "4", None),
            created("a", 201, "5", Some("2024-05-02 00:00:00")),
        ]);
        assert_eq!(groups.len(), 3);
        assert_eq!((groups[0].lead.as_str(), groups[0].code), ("a", 201));
        assert_eq!(groups[0].ids.len(), 3);
        assert_eq!(
            groups[0].window.from.as_deref(),
            Some("2024-05-01 09:00:00")
        );
        assert_eq!(groups[0].window.to.as_deref(), Some("2024-05-03 10:00:00"));
        assert_eq!(groups[2].undated, vec!["4".to_string()]);
    }

    #[test]
    fn foreign_activities_refuse_unless_forced() {
        let g = &group(&[created("a", 201, "ours", Some("2024-05-01 00:00:00"))])[0];
        assert_eq!(
            judge(g, &[found("OURS")], false),
            Decision::Delete {
                found: 1,
                forced_foreign: vec![]
            }
        );
        assert_eq!(
            judge(g, &[found("ours"), found("theirs")], false),
            Decision::Refuse {
                foreign: vec!["theirs".into()]
            }
        );
        assert_eq!(
            judge(g, &[found("ours"), found("theirs")], true),
            Decision::Delete {
                found: 2,
                forced_foreign: vec!["theirs".into()]
            }
        );
        assert_eq!(judge(g, &[found("theirs")], false), Decision::NothingLeft);
    }
}
