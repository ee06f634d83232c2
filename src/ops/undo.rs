//! Planning the undo of an import. The API deletes by lead, code and time window, never by id,
//! so a careless undo also deletes what was there before; this module works out, per lead and
//! code, the span that covers what the import created, and then the fewest delete windows
//! inside it that hold nothing else.
//!
//! What the import created enters from its report ([`from_report`]: `created` lines, the date
//! from the input's `ActivityDateTime` or, when lsq-sync filled it in, from the ledger) or from
//! a ledger run ([`from_ledger`]); either is read the way the import read its input (`--map`,
//! `--set`, `--timezone`, ...), as the ledger's record of the run says. It leaves grouped as
//! [`UndoGroup`]s. After the caller has listed each group's span (Get Activities), [`judge`]
//! (pure) decides: the windows to delete, cut around the foreign activities by
//! [`plan_windows`] (pure), and the imported activities that share a second with a foreign one
//! and so must stay; or refuse (a date that cannot be read); or nothing left to do.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use csv::ByteRecord;

use crate::config::InputSettings;
use crate::import::plan::input_settings_from_options;
use crate::import::validate::Schema;
use crate::input::rows::SourceRow;
use crate::ledger::{Ledger, LedgerError, RowState};
use crate::lsq::api::{DATE_TIME_FORMAT, ProspectActivity};
use crate::ops::deletes::DeleteWindow;
use crate::report::{REPORT_COLUMNS, is_report_header};

/// One activity the import created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatedActivity {
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
pub(crate) struct UndoGroup {
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

/// One delete call of an undo: a window holding only activities the import created (or, with
/// `--force`, the group's whole window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cut {
    /// The call's `FromDate`..`ToDate`, both inclusive, to the second.
    pub window: DeleteWindow,
    /// The import's ids the listing found in the window, lowercase, in date order.
    pub ids: Vec<String>,
    /// Foreign ids in the window: always empty, except under `--force`.
    pub forced_foreign: Vec<String>,
}

/// Imported activities left in place because a foreign activity shares their second: no window
/// can take one without the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Left {
    /// The shared second, `yyyy-MM-dd HH:mm:ss` UTC.
    pub at: String,
    /// The import's ids at that second.
    pub ours: Vec<String>,
    /// The foreign ids at that second.
    pub foreign: Vec<String>,
}

/// What to do with one group, once its window has been listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Delete with these calls (possibly none, when everything of the import shares a second
    /// with a foreign activity), and leave `left` in place.
    Delete {
        /// One per delete call, in date order.
        cuts: Vec<Cut>,
        /// The import's activities no window can take without a foreign one.
        left: Vec<Left>,
        /// Foreign ids in the group's window that the cuts go around (empty under `--force`).
        avoided: Vec<String>,
    },
    /// No window can be trusted: a listed activity's date cannot be read.
    Refuse {
        /// Why, naming the activity.
        reason: String,
    },
    /// None of the import's activities is there any more.
    NothingLeft,
}

/// The windows of one group in epoch seconds: see [`plan_windows`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SecondsPlan {
    /// `(from, to)`, both inclusive, in order, disjoint; each holds imported seconds only.
    pub windows: Vec<(i64, i64)>,
    /// Imported seconds that a foreign activity shares, in order: left alone.
    pub shared: Vec<i64>,
}

/// The fewest windows that cover every second holding an imported activity and hold no second
/// holding a foreign one. Pure; seconds in any order, repeats allowed.
///
/// Two imported seconds can share a window exactly when no foreign second lies between them,
/// so the windows are the maximal runs of imported seconds between foreign seconds; fewer
/// windows would put a foreign second inside one. Each window is snug (first to last imported
/// second of its run), not stretched to the foreign neighbours: what is deleted is then only
/// what the listing showed to be the import's, even if activities arrive in the gaps meanwhile.
/// An imported second that is also a foreign one cannot be covered and is returned in `shared`.
pub(crate) fn plan_windows(ours: &[i64], foreign: &[i64]) -> SecondsPlan {
    let foreign: BTreeSet<i64> = foreign.iter().copied().collect();
    let ours: BTreeSet<i64> = ours.iter().copied().collect();
    let mut plan = SecondsPlan::default();
    let mut run: Option<(i64, i64)> = None;
    for &second in &ours {
        if foreign.contains(&second) {
            plan.shared.push(second);
            continue;
        }
        run = match run {
            // `last < second` (a set iterates in order), so the range is never reversed.
            Some((first, last)) if foreign.range(last..second).next().is_none() => {
                Some((first, second))
            }
            Some(done) => {
                plan.windows.push(done);
                Some((second, second))
            }
            None => Some((second, second)),
        };
    }
    plan.windows.extend(run);
    plan
}

/// A listed activity's date in epoch seconds. The API's format, to the second; a fraction, if
/// a server ever sends one, is dropped, since windows are to the second anyway.
fn listed_second(text: &str) -> Option<i64> {
    let head = text.trim().get(..19)?;
    NaiveDateTime::parse_from_str(head, DATE_TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Epoch seconds back to the API's format.
fn format_second(second: i64) -> String {
    chrono::DateTime::from_timestamp(second, 0)
        .map(|t| t.naive_utc().format(DATE_TIME_FORMAT).to_string())
        .unwrap_or_default()
}

/// The undo cannot be planned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UndoError {
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
pub(crate) fn is_ledger_file(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// The `created` lines of an import's report. The date of a line whose input had no
/// `ActivityDateTime` is looked up in `ledger` (what lsq-sync filled in), if given.
pub(crate) fn from_report(
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
pub(crate) fn from_ledger(
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
        let item = schema.check(&row.source()).map_err(|problem| {
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
pub(crate) fn group(created: &[CreatedActivity]) -> Vec<UndoGroup> {
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

/// Decides what to do with a group, given every activity of its code in its window (the
/// listing): which windows to delete, and what to leave. Without `--force` the windows go
/// around every foreign activity ([`plan_windows`], on the listed dates, which are what the
/// delete call filters on); with it, one call takes the group's whole window.
pub(crate) fn judge(group: &UndoGroup, found: &[ProspectActivity], force: bool) -> Decision {
    // (second, id) of each distinct listed activity, the import's and the others apart; the
    // second is `None` when the listed date cannot be read.
    let mut ours: Vec<(Option<i64>, String)> = Vec::new();
    let mut foreign: Vec<(Option<i64>, String)> = Vec::new();
    let mut seen = HashSet::new();
    for activity in found {
        let id = activity.id.to_ascii_lowercase();
        if !seen.insert(id.clone()) {
            continue;
        }
        let second = listed_second(&activity.created_on);
        if group.ids.contains(&id) {
            ours.push((second, id));
        } else {
            foreign.push((second, activity.id.clone()));
        }
    }
    if ours.is_empty() {
        return Decision::NothingLeft;
    }
    ours.sort();
    foreign.sort();
    let ids =
        |list: &[(Option<i64>, String)]| list.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>();
    if force {
        // The whole window goes, whatever is in it: dates do not matter.
        return Decision::Delete {
            cuts: vec![Cut {
                window: group.window.clone(),
                ids: ids(&ours),
                forced_foreign: ids(&foreign),
            }],
            left: Vec::new(),
            avoided: Vec::new(),
        };
    }
    if let Some((_, id)) = ours.iter().chain(&foreign).find(|(s, _)| s.is_none()) {
        let shown = found
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(id))
            .map(|a| a.created_on.as_str())
            .unwrap_or_default();
        return Decision::Refuse {
            reason: format!(
                "the date of activity {id} ({shown:?}) cannot be read, so no window can be cut \
                 around it (--force deletes the whole window)"
            ),
        };
    }
    let avoided = ids(&foreign);
    let dated = |list: &[(Option<i64>, String)]| {
        list.iter()
            .filter_map(|(second, id)| second.map(|s| (s, id.clone())))
            .collect::<Vec<_>>()
    };
    let (ours, foreign) = (dated(&ours), dated(&foreign));
    let seconds = |list: &[(i64, String)]| list.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    let plan = plan_windows(&seconds(&ours), &seconds(&foreign));
    let at = |list: &[(i64, String)], from: i64, to: i64| {
        list.iter()
            .filter(|(s, _)| (from..=to).contains(s))
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    };
    let cuts = plan
        .windows
        .iter()
        .map(|&(from, to)| Cut {
            window: DeleteWindow {
                from: Some(format_second(from)),
                to: Some(format_second(to)),
            },
            ids: at(&ours, from, to),
            forced_foreign: Vec::new(),
        })
        .collect();
    let left = plan
        .shared
        .iter()
        .map(|&second| Left {
            at: format_second(second),
            ours: at(&ours, second, second),
            foreign: at(&foreign, second, second),
        })
        .collect();
    Decision::Delete {
        cuts,
        left,
        avoided,
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
        found_at(id, "2024-01-01 00:00:00")
    }

    fn found_at(id: &str, date: &str) -> ProspectActivity {
        serde_json::from_value(serde_json::json!({
            "Id": id, "EventCode": 201, "CreatedOn": date
        }))
        .unwrap()
    }

    /// A ledger with one import run of `headers`, recorded with the given `"input"` options
    /// (the shape `plan::input_options` writes).
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
        assert_eq!(old.columns, crate::input::mapping::ColumnMap::default());
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

    /// `(id, date)` pairs as a listing returns them.
    fn listing(items: &[(&str, &str)]) -> Vec<ProspectActivity> {
        items.iter().map(|(id, date)| found_at(id, date)).collect()
    }

    fn window(from: &str, to: &str) -> DeleteWindow {
        DeleteWindow {
            from: Some(from.into()),
            to: Some(to.into()),
        }
    }

    #[test]
    fn windows_are_cut_around_foreign_activities_and_a_shared_second_is_left() {
        let g = &group(&[
            created("a", 201, "o1", Some("2024-05-01 10:00:00")),
            created("a", 201, "o2", Some("2024-05-01 11:00:00")),
            created("a", 201, "o3", Some("2024-05-01 12:00:00")),
            created("a", 201, "o4", Some("2024-05-01 13:00:00")),
            created("a", 201, "o5", Some("2024-05-01 14:00:00")),
        ])[0];
        let found = listing(&[
            ("O1", "2024-05-01 10:00:00"),
            ("o2", "2024-05-01 11:00:00"),
            ("f1", "2024-05-01 11:30:00"),
            ("o3", "2024-05-01 12:00:00"),
            ("f2", "2024-05-01 13:00:00"),
            ("o4", "2024-05-01 13:00:00"),
            ("o5", "2024-05-01 14:00:00"),
            ("o5", "2024-05-01 14:00:00"),
        ]);
        let Decision::Delete {
            cuts,
            left,
            avoided,
        } = judge(g, &found, false)
        else {
            panic!("expected windows");
        };
        let windows: Vec<_> = cuts
            .iter()
            .map(|c| (c.window.clone(), c.ids.clone()))
            .collect();
        assert_eq!(
            windows,
            vec![
                (
                    window("2024-05-01 10:00:00", "2024-05-01 11:00:00"),
                    vec!["o1".to_string(), "o2".into()]
                ),
                (
                    window("2024-05-01 12:00:00", "2024-05-01 12:00:00"),
                    vec!["o3".to_string()]
                ),
                // f2 shares o4's second: it cuts there like any foreign activity.
                (
                    window("2024-05-01 14:00:00", "2024-05-01 14:00:00"),
                    vec!["o5".to_string()]
                ),
            ]
        );
        assert!(cuts.iter().all(|c| c.forced_foreign.is_empty()));
        assert_eq!(
            left,
            vec![Left {
                at: "2024-05-01 13:00:00".into(),
                ours: vec!["o4".into()],
                foreign: vec!["f2".into()],
            }]
        );
        assert_eq!(avoided, vec!["f1".to_string(), "f2".into()]);
    }

    #[test]
    fn force_takes_the_whole_window_in_one_call() {
        let g = &group(&[
            created("a", 201, "ours", Some("2024-05-01 00:00:00")),
            created("a", 201, "more", Some("2024-05-03 00:00:00")),
        ])[0];
        let found = listing(&[
            ("ours", "2024-05-01 00:00:00"),
            ("theirs", "2024-05-02 00:00:00"),
            ("more", "2024-05-03 00:00:00"),
        ]);
        assert_eq!(
            judge(g, &found, true),
            Decision::Delete {
                cuts: vec![Cut {
                    window: g.window.clone(),
                    ids: vec!["ours".into(), "more".into()],
                    forced_foreign: vec!["theirs".into()],
                }],
                left: vec![],
                avoided: vec![],
            }
        );
        let Decision::Delete { cuts, .. } = judge(g, &found, false) else {
            panic!("expected windows");
        };
        assert_eq!(cuts.len(), 2);
    }

    #[test]
    fn nothing_left_and_unreadable_dates() {
        let g = &group(&[created("a", 201, "ours", Some("2024-05-01 00:00:00"))])[0];
        assert_eq!(judge(g, &[found("theirs")], false), Decision::NothingLeft);
        let odd = listing(&[("ours", "2024-05-01 00:00:00"), ("theirs", "May 1st")]);
        match judge(g, &odd, false) {
            Decision::Refuse { reason } => assert!(reason.contains("theirs"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A fraction of a second is read as its second.
        let precise = listing(&[("ours", "2024-05-01 00:00:00.250")]);
        assert!(matches!(
            judge(g, &precise, false),
            Decision::Delete { ref cuts, .. } if cuts.len() == 1
        ));
    }

    #[test]
    fn plan_windows_examples() {
        assert_eq!(plan_windows(&[], &[5]), SecondsPlan::default());
        assert_eq!(
            plan_windows(&[3, 1, 2, 2], &[]),
            SecondsPlan {
                windows: vec![(1, 3)],
                shared: vec![]
            }
        );
        // A foreign second between two imported ones cuts; one outside does not.
        assert_eq!(
            plan_windows(&[10, 20, 30, 40], &[0, 15, 16, 35, 50]),
            SecondsPlan {
                windows: vec![(10, 10), (20, 30), (40, 40)],
                shared: vec![]
            }
        );
        // A shared second is left, and cuts like any foreign second.
        assert_eq!(
            plan_windows(&[10, 20, 30], &[20]),
            SecondsPlan {
                windows: vec![(10, 10), (30, 30)],
                shared: vec![20]
            }
        );
        // Adjacent seconds: the window ends one second before the foreign one.
        assert_eq!(
            plan_windows(&[9, 11], &[10]),
            SecondsPlan {
                windows: vec![(9, 9), (11, 11)],
                shared: vec![]
            }
        );
    }

    proptest::proptest! {
        /// Every imported second is covered unless it is foreign too; no window holds a foreign
        /// second; windows are ordered and disjoint; and their number is the least possible:
        /// the maximal runs of imported (not shared) seconds with no foreign second between.
        #[test]
        fn plan_windows_covers_avoids_and_is_minimal(
            ours in proptest::collection::vec(0i64..200, 0..60),
            foreign in proptest::collection::vec(0i64..200, 0..30),
        ) {
            let plan = plan_windows(&ours, &foreign);
            let inside = |s: i64| plan.windows.iter().any(|&(f, t)| f <= s && s <= t);
            for &s in &ours {
                let is_foreign = foreign.contains(&s);
                proptest::prop_assert_eq!(inside(s), !is_foreign, "second {}", s);
                proptest::prop_assert_eq!(plan.shared.contains(&s), is_foreign, "second {}", s);
            }
            for &s in &foreign {
                proptest::prop_assert!(!inside(s), "foreign second {} in a window", s);
            }
            for &(f, t) in &plan.windows {
                proptest::prop_assert!(f <= t);
                proptest::prop_assert!(ours.contains(&f) && ours.contains(&t), "snug");
            }
            for pair in plan.windows.windows(2) {
                proptest::prop_assert!(pair[0].1 < pair[1].0);
            }
            // The lower bound, counted independently: walk every second in order and count
            // the imported runs that a foreign second ends.
            let mut runs = 0;
            let mut in_run = false;
            for s in 0..200 {
                if foreign.contains(&s) {
                    in_run = false;
                } else if ours.contains(&s) && !in_run {
                    runs += 1;
                    in_run = true;
                }
            }
            proptest::prop_assert_eq!(plan.windows.len(), runs);
        }
    }
}
