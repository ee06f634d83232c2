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

use csv::ByteRecord;

use crate::config::InputSettings;
use crate::import::plan::input_settings_from_options;
use crate::import::validate::Schema;
use crate::input::rows::SourceRow;
use crate::ledger::{Ledger, LedgerError, RowState};
use crate::lsq::api::ProspectActivity;
use crate::lsq::window::{format_api_second, parse_api_second};
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

/// A listed activity's date in epoch seconds ([`parse_api_second`]: the API's format, to the
/// second; a fraction, if a server ever sends one, is dropped, since windows are to the second
/// anyway).
fn listed_second(text: &str) -> Option<i64> {
    parse_api_second(text)
}

/// Epoch seconds back to the API's format.
fn format_second(second: i64) -> String {
    format_api_second(second)
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
        let item = schema.check(&SourceRow::of(&row)).map_err(|problem| {
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
mod tests;
