//! `lsq-sync delete-activities` and `lsq-sync delete-owner-history`, and the safety steps every
//! destructive command shares (also used by `undo`): the plan on stderr, confirmation on a
//! terminal or `--yes`, the per-lead results file, and the exit status.
//!
//! Flags enter as text and are all checked (leads, codes, window, webhook, results file) before
//! any call; the deletions leave as one queued call per lead through [`Remote`], optionally
//! followed by `--wait` polling; the outcome leaves as one results line per lead.

use std::path::{Path, PathBuf};

use futures::StreamExt;

use crate::cli::{ConfirmArgs, DeleteActivitiesArgs, DeleteOwnerHistoryArgs, LeadsArgs};
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::lsq::activities::ActivityQuery;
use crate::ops::deletes::{
    DeleteError, DeleteWindow, OWNER_CHANGE_EVENT, Remote, WaitOutcome, WaitPolicy, check_webhook,
    parse_codes, wait_until_gone,
};
use crate::ops::leads::{leads_file, parse_leads_arg};
use crate::report::CellFormat;

use super::CommandError;

/// Columns of the results file of every destructive command.
pub(crate) const RESULT_COLUMNS: [&str; 7] = [
    "LeadId",
    "ActivityEvents",
    "FromDate",
    "ToDate",
    "Status",
    "Activities",
    "Message",
];

/// Deletions queued at once: the pacer sets the rate; this only hides latency.
const DELETES_IN_FLIGHT: usize = 8;

/// Where one lead (or lead and code, for undo) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeletionStatus {
    /// The API accepted the deletion; it happens later.
    Queued,
    /// `--wait` saw the activities gone.
    Confirmed,
    /// Not queued (refused, not sent, or the answer was lost), or polling failed.
    Failed,
    /// Undo: not sent because the window holds activities the import did not create.
    Refused,
    /// Undo: nothing left to delete.
    Skipped,
    /// Undo: activities of the import left in place because an activity it did not create
    /// shares their second, so no window can take one without the other.
    Partial,
}

impl DeletionStatus {
    /// The results file's `Status` cell.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeletionStatus::Queued => "queued",
            DeletionStatus::Confirmed => "confirmed",
            DeletionStatus::Failed => "failed",
            DeletionStatus::Refused => "refused",
            DeletionStatus::Skipped => "skipped",
            DeletionStatus::Partial => "partial",
        }
    }
}

/// One line of a results file.
#[derive(Debug, Clone)]
pub(crate) struct ResultLine {
    /// The lead.
    pub lead: String,
    /// The codes the line is about, comma-separated.
    pub events: String,
    /// The window's start, if any.
    pub from: Option<String>,
    /// The window's end, if any.
    pub to: Option<String>,
    /// Where it stands.
    pub status: DeletionStatus,
    /// Activities found in the window before deleting, when they were counted.
    pub activities: Option<u64>,
    /// Why, for anything but a plain success; the server's message otherwise.
    pub message: String,
}

/// The results file: `--out` if given; else beside the input, named after it and the command
/// (`report.csv` -> `report.undo.csv`, `leads.csv` -> `leads.delete-activities.csv`), or
/// `COMMAND.csv` in the current folder when the input is not a file (lead ids on the command
/// line). A path that is one of `inputs` is refused: a results file never overwrites an input.
pub(crate) fn results_path(
    out: Option<&Path>,
    beside: Option<&Path>,
    command: &str,
    inputs: &[&Path],
) -> Result<PathBuf, CommandError> {
    let path = match (out, beside) {
        (Some(out), _) => out.to_path_buf(),
        (None, Some(input)) => input.with_extension(format!("{command}.csv")),
        (None, None) => PathBuf::from(format!("{command}.csv")),
    };
    if let Some(input) = inputs.iter().find(|input| same_file(&path, input)) {
        return Err(CommandError::Usage(format!(
            "the results file {} would overwrite {}; choose another --out",
            path.display(),
            input.display()
        )));
    }
    Ok(path)
}

/// Whether two paths name one file: equal as written, or (both existing) once resolved, so
/// `./report.csv` and `report.csv` match.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Opens the results file before anything is sent, so an unwritable path is a usage error.
pub(crate) fn open_results(path: &Path) -> Result<csv::Writer<std::fs::File>, CommandError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CommandError::Usage(format!("cannot create {}: {e}", parent.display())))?;
    }
    let file = std::fs::File::create(path)
        .map_err(|e| CommandError::Usage(format!("cannot create {}: {e}", path.display())))?;
    Ok(csv::Writer::from_writer(file))
}

/// Writes the results and returns the exit status they mean: 3 if the run was aborted, 1 if a
/// line failed, was refused, left activities (partial), or (with `--wait`) stayed queued,
/// else 0.
pub(crate) fn finish_results(
    mut out: csv::Writer<std::fs::File>,
    path: &Path,
    format: CellFormat,
    lines: &[ResultLine],
    waited: bool,
    aborted: Option<&str>,
) -> Result<ExitStatus, CommandError> {
    let write_error = |e: &dyn std::fmt::Display| {
        CommandError::Usage(format!("cannot write {}: {e}", path.display()))
    };
    out.write_record(RESULT_COLUMNS)
        .map_err(|e| write_error(&e))?;
    for line in lines {
        format
            .write_record(
                &mut out,
                [
                    line.lead.as_str(),
                    line.events.as_str(),
                    line.from.as_deref().unwrap_or(""),
                    line.to.as_deref().unwrap_or(""),
                    line.status.as_str(),
                    &line.activities.map(|n| n.to_string()).unwrap_or_default(),
                    line.message.as_str(),
                ],
            )
            .map_err(|e| write_error(&e))?;
    }
    out.flush().map_err(|e| write_error(&e))?;
    let count = |s: DeletionStatus| lines.iter().filter(|l| l.status == s).count();
    eprintln!(
        "{} queued, {} confirmed, {} failed, {} refused, {} skipped, {} partial -> {}",
        count(DeletionStatus::Queued),
        count(DeletionStatus::Confirmed),
        count(DeletionStatus::Failed),
        count(DeletionStatus::Refused),
        count(DeletionStatus::Skipped),
        count(DeletionStatus::Partial),
        path.display()
    );
    if let Some(reason) = aborted {
        eprintln!("lsq-sync: the run stopped: {reason}");
        return Ok(ExitStatus::Aborted);
    }
    let bad = count(DeletionStatus::Failed)
        + count(DeletionStatus::Refused)
        + count(DeletionStatus::Partial)
        + if waited {
            count(DeletionStatus::Queued)
        } else {
            0
        };
    Ok(if bad > 0 {
        ExitStatus::RowsNotCreated
    } else {
        ExitStatus::Success
    })
}

/// The destructive step's gate. With `--yes`, go. Otherwise the plan (already printed) needs a
/// "yes" typed on a terminal; with no terminal, refuse: a script must say `--yes`.
pub(crate) async fn confirm(yes: bool, what: &str) -> Result<(), CommandError> {
    crate::confirm::ask(yes, what)
        .await
        .map_err(CommandError::Usage)
}

/// The checked inputs shared by both delete commands.
struct Target {
    leads: Vec<String>,
    window: DeleteWindow,
    webhook: Option<String>,
    /// The results file, `--out` or its default.
    out: PathBuf,
}

fn check_target(
    operation: Operation<'_>,
    leads: &LeadsArgs,
    webhook: Option<&str>,
    out: Option<&Path>,
    allow_insecure_http: bool,
) -> Result<Target, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    let lead_ids = parse_leads_arg(&leads.leads).map_err(|e| usage(&e))?;
    let window =
        DeleteWindow::parse(leads.from.as_deref(), leads.to.as_deref()).map_err(|e| usage(&e))?;
    let webhook = webhook
        .map(|url| check_webhook(url, allow_insecure_http))
        .transpose()
        .map_err(|e| usage(&e))?;
    let file = leads_file(&leads.leads);
    let inputs: Vec<&Path> = file.into_iter().collect();
    let out = results_path(out, file, operation.name(), &inputs)?;
    Ok(Target {
        leads: lead_ids,
        window,
        webhook,
        out,
    })
}

/// What a delete command does per lead.
#[derive(Clone, Copy)]
enum Operation<'a> {
    Activities(&'a [i64]),
    OwnerHistory,
}

impl Operation<'_> {
    fn codes(&self) -> Vec<i64> {
        match self {
            Operation::Activities(codes) => codes.to_vec(),
            Operation::OwnerHistory => vec![OWNER_CHANGE_EVENT],
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Operation::Activities(_) => "delete-activities",
            Operation::OwnerHistory => "delete-owner-history",
        }
    }
}

pub(crate) async fn delete_activities(
    args: DeleteActivitiesArgs,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    let codes = parse_codes(&args.events).map_err(|e| CommandError::Usage(e.to_string()))?;
    if codes.contains(&OWNER_CHANGE_EVENT) {
        return Err(CommandError::Usage(
            crate::ops::deletes::ArgumentError::OwnerChangeCode.to_string(),
        ));
    }
    let target = check_target(
        Operation::Activities(&codes),
        &args.leads,
        args.webhook.as_deref(),
        args.confirm.out.as_deref(),
        settings.allow_insecure_http,
    )?;
    run_deletes(
        Operation::Activities(&codes),
        target,
        args.count,
        &args.confirm,
        settings,
    )
    .await
}

pub(crate) async fn delete_owner_history(
    args: DeleteOwnerHistoryArgs,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    let target = check_target(
        Operation::OwnerHistory,
        &args.leads,
        args.webhook.as_deref(),
        args.confirm.out.as_deref(),
        settings.allow_insecure_http,
    )?;
    run_deletes(
        Operation::OwnerHistory,
        target,
        args.count,
        &args.confirm,
        settings,
    )
    .await
}

/// Plan, confirm, queue one deletion per lead, optionally wait, write the results.
async fn run_deletes(
    operation: Operation<'_>,
    target: Target,
    count: bool,
    confirm_args: &ConfirmArgs,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    let remote =
        Remote::from_settings(&settings).map_err(|e| CommandError::Usage(e.to_string()))?;
    let codes = operation.codes();
    let codes_text = codes
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let queries_of = |lead: &str| -> Vec<ActivityQuery> {
        codes
            .iter()
            .map(|&code| target.window.query(lead, code))
            .collect()
    };

    // The plan, on stderr (stdout stays for data).
    eprintln!(
        "{}: {} lead(s), activity code(s) {codes_text}, window {}{}",
        operation.name(),
        target.leads.len(),
        target.window.describe(),
        target
            .webhook
            .as_deref()
            .map(|_| ", with a status webhook")
            .unwrap_or("")
    );
    let mut counts: Vec<Option<u64>> = vec![None; target.leads.len()];
    for (i, lead) in target.leads.iter().enumerate() {
        if count {
            match remote.count_all(&queries_of(lead)).await {
                Ok(n) => {
                    counts[i] = Some(n);
                    eprintln!("  {lead}: {n} activit{} in the window", plural(n));
                }
                Err(e) => {
                    if let crate::lsq::activities::FetchError::Unauthorized(m)
                    | crate::lsq::activities::FetchError::Fatal(m) = &e
                    {
                        eprintln!("lsq-sync: the run stopped: {m}");
                        return Ok(ExitStatus::Aborted);
                    }
                    eprintln!("  {lead}: cannot count: {e}");
                }
            }
        } else if i < 20 {
            eprintln!("  {lead}");
        } else if i == 20 {
            eprintln!("  ... and {} more", target.leads.len() - 20);
        }
    }
    confirm(
        confirm_args.yes,
        &format!("{} for {} lead(s)", operation.name(), target.leads.len()),
    )
    .await?;
    // Opened after the confirmation, so a refusal leaves no empty file behind, and before the
    // first deletion, so an unwritable path stops the run while nothing is deleted.
    let out = open_results(&target.out)?;

    let abort: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let abort_ref = &abort;
    let remote_ref = &remote;
    let webhook = target.webhook.as_deref();
    let window = &target.window;
    let results: Vec<Result<String, DeleteError>> = futures::stream::iter(target.leads.iter())
        .map(|lead| async move {
            if let Some(reason) = abort_ref.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return Err(DeleteError::Failed(format!(
                    "not sent: the run stopped: {reason}"
                )));
            }
            let result = match operation {
                Operation::Activities(codes) => {
                    remote_ref
                        .delete_activities(lead, codes, window, webhook)
                        .await
                }
                Operation::OwnerHistory => {
                    remote_ref.delete_owner_history(lead, window, webhook).await
                }
            };
            if let Err(DeleteError::Abort(m)) = &result {
                abort_ref
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| m.clone());
            }
            result
        })
        .buffered(DELETES_IN_FLIGHT)
        .collect()
        .await;

    let mut lines: Vec<ResultLine> = target
        .leads
        .iter()
        .zip(results)
        .zip(counts)
        .map(|((lead, result), activities)| {
            let (status, message) = match result {
                Ok(message) => (DeletionStatus::Queued, message),
                Err(e) => (DeletionStatus::Failed, e.to_string()),
            };
            ResultLine {
                lead: lead.clone(),
                events: codes_text.clone(),
                from: target.window.from.clone(),
                to: target.window.to.clone(),
                status,
                activities,
                message,
            }
        })
        .collect();
    let mut aborted = abort.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if confirm_args.wait && aborted.is_none() {
        aborted = wait_for(&remote, &mut lines, confirm_args, |line| {
            queries_of(&line.lead)
        })
        .await;
    }
    finish_results(
        out,
        &target.out,
        CellFormat::of(&settings),
        &lines,
        confirm_args.wait,
        aborted.as_deref(),
    )
}

/// `--wait`: polls the queued lines until their activities are gone; marks them confirmed, or
/// leaves them queued with a message. Returns the reason if polling had to stop (401/404).
pub(crate) async fn wait_for(
    remote: &Remote,
    lines: &mut [ResultLine],
    confirm_args: &ConfirmArgs,
    queries_of: impl Fn(&ResultLine) -> Vec<ActivityQuery>,
) -> Option<String> {
    let queued: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].status == DeletionStatus::Queued)
        .collect();
    let items: Vec<Vec<ActivityQuery>> = queued.iter().map(|&i| queries_of(&lines[i])).collect();
    let policy = WaitPolicy::with_timeout(confirm_args.wait_timeout);
    let outcomes = wait_until_gone(remote, &items, policy).await;
    let mut aborted = None;
    for (i, outcome) in queued.into_iter().zip(outcomes) {
        let line = &mut lines[i];
        match outcome {
            WaitOutcome::Confirmed => {
                line.status = DeletionStatus::Confirmed;
                line.message = "deleted: no matching activity is left".into();
            }
            WaitOutcome::StillThere(n) => {
                line.message = format!(
                    "queued, but {n} matching activit{} still there after {:?}",
                    plural(n),
                    confirm_args.wait_timeout
                );
            }
            WaitOutcome::Failed(m) => {
                line.message = format!("queued; could not check whether it happened: {m}");
            }
            WaitOutcome::Abort(m) => {
                line.message = format!("queued; could not check whether it happened: {m}");
                aborted = Some(m);
            }
        }
    }
    aborted
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_go_beside_the_input_unless_out_says_and_never_over_an_input() {
        let path = |p: &str| PathBuf::from(p);
        let chosen = |out: Option<&str>, beside: Option<&str>, command: &str| {
            results_path(out.map(Path::new), beside.map(Path::new), command, &[])
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            chosen(None, Some("runs/report.csv"), "undo"),
            Ok(path("runs/report.undo.csv"))
        );
        assert_eq!(
            chosen(None, Some("leads.csv"), "delete-activities"),
            Ok(path("leads.delete-activities.csv"))
        );
        assert_eq!(
            chosen(None, None, "delete-owner-history"),
            Ok(path("delete-owner-history.csv"))
        );
        assert_eq!(
            chosen(Some("mine.csv"), Some("report.csv"), "undo"),
            Ok(path("mine.csv"))
        );

        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.csv");
        std::fs::write(&report, "x").unwrap();
        // The same file written another way is still the input.
        let roundabout = dir.path().join(".").join("report.csv");
        let refused = results_path(Some(&roundabout), Some(&report), "undo", &[&report])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("would overwrite"), "{refused}");
        assert!(results_path(None, Some(&report), "undo", &[&report]).is_ok());
    }
}
