//! `lsq-sync undo`: delete the activities an import created, and nothing else.
//!
//! The import's report or ledger run enters; `crate::ops::undo` groups what it created by lead and
//! code with the span covering it. With a terminal or `--yes`, each span is listed (Get
//! Activities) and judged: cut into the fewest windows that hold only the import's activities,
//! leaving (`partial`) those that share a second with another activity, or refused when no
//! window can be trusted; `--force` takes the whole span. The plan (windows, calls, least time)
//! is printed before the confirmation. Deletions leave as one queued call per window, each
//! recorded in the ledger before the next; `--wait` confirms each window; the results file has
//! one line per window (and per second left), by default `REPORT.undo.csv` beside the report.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use crate::cli::UndoArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::import::plan::default_ledger_path;
use crate::ledger::{DeletionRecord, Ledger};
use crate::ops::deletes::{DeleteError, DeleteWindow, Remote};
use crate::ops::undo::{
    Cut, Decision, Left, UndoGroup, from_ledger, from_report, group, is_ledger_file, judge,
};
use crate::report::CellFormat;

use super::CommandError;
use super::delete::{
    DeletionStatus, ResultLine, confirm, finish_results, open_results, results_path, wait_for,
};

/// A window to delete: where its results line is, and what the ledger records of it.
struct Pending {
    /// Index of its line in the results.
    line: usize,
    /// The lead.
    lead: String,
    /// The activity code.
    code: i64,
    /// The window sent.
    window: DeleteWindow,
    /// The import's ids (and, under `--force`, the others) the window was listed holding.
    ids: Vec<String>,
}

pub(crate) async fn run(args: UndoArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    if !args.source.exists() {
        return Err(CommandError::Usage(format!(
            "{} does not exist",
            args.source.display()
        )));
    }
    let source_is_ledger = is_ledger_file(&args.source);
    if args.run.is_some() && !source_is_ledger {
        return Err(CommandError::Usage(
            "--run goes with a ledger, not a report".into(),
        ));
    }
    let ledger_path = match (&args.ledger, source_is_ledger) {
        (Some(path), _) => path.clone(),
        (None, true) => args.source.clone(),
        (None, false) => default_ledger_path(&args.source),
    };
    let durability = settings.ledger_durability;
    let ledger = Ledger::open(&ledger_path, durability)?;
    // Settled before any call, so a results path that would overwrite an input stops the run
    // while nothing is sent.
    let out_path = results_path(
        args.confirm.out.as_deref(),
        Some(&args.source),
        "undo",
        &[&args.source, &ledger_path],
    )?;
    let (source_run, created) = if source_is_ledger && ledger_path == args.source {
        let (run, created) = from_ledger(&ledger, args.run).map_err(|e| usage(&e))?;
        (Some(run), created)
    } else if source_is_ledger {
        let source = Ledger::open(&args.source, durability)?;
        let (run, created) = from_ledger(&source, args.run).map_err(|e| usage(&e))?;
        (Some(run), created)
    } else {
        (
            None,
            from_report(&args.source, Some(&ledger)).map_err(|e| usage(&e))?,
        )
    };
    let groups = group(&created);

    eprintln!(
        "undo: {} activities created by {} on {} lead/code pair(s)",
        created.len(),
        match source_run {
            Some(run) => format!("run {run} of {}", args.source.display()),
            None => args.source.display().to_string(),
        },
        groups.len()
    );
    for g in &groups {
        eprintln!(
            "  lead {} code {}: {} activit{} in {}",
            g.lead,
            g.code,
            g.ids.len(),
            if g.ids.len() == 1 { "y" } else { "ies" },
            g.window.describe()
        );
    }
    // No terminal and no --yes: refuse before even listing, so nothing at all is sent.
    if !args.confirm.yes && !std::io::stdin().is_terminal() {
        return confirm(false, "undo").await.map(|()| ExitStatus::Usage);
    }
    let remote = Remote::from_settings(&settings).map_err(|e| usage(&e))?;

    // List each span and plan its windows.
    let mut lines: Vec<ResultLine> = Vec::with_capacity(groups.len());
    let mut pending: Vec<Pending> = Vec::new();
    let mut aborted: Option<String> = None;
    for g in &groups {
        let mut line = line_for(g);
        if aborted.is_some() {
            line.status = DeletionStatus::Failed;
            line.message = "not checked: the run stopped".into();
        } else if !g.undated.is_empty() {
            line.status = DeletionStatus::Refused;
            line.message = format!(
                "the date of {} is unknown (not in the report, and not in the ledger {}), so no \
                 window can be trusted to cover them",
                g.undated.join(", "),
                ledger_path.display()
            );
        } else {
            match remote
                .fetcher
                .fetch_all(&g.window.query(&g.lead, g.code))
                .await
            {
                Err(e) => {
                    let e = DeleteError::from(e);
                    if let DeleteError::Abort(m) = &e {
                        aborted = Some(m.clone());
                    }
                    line.status = DeletionStatus::Failed;
                    line.message = format!("cannot list the window: {e}");
                }
                Ok(found) => {
                    line.activities = Some(found.len() as u64);
                    match judge(g, &found, args.force) {
                        Decision::NothingLeft => {
                            line.status = DeletionStatus::Skipped;
                            line.message =
                                "none of the import's activities is there any more".into();
                        }
                        Decision::Refuse { reason } => {
                            line.status = DeletionStatus::Refused;
                            line.message = reason;
                        }
                        Decision::Delete {
                            cuts,
                            left,
                            avoided,
                        } => {
                            eprintln!(
                                "  lead {} code {}: {}",
                                g.lead,
                                g.code,
                                describe_plan(&cuts, &left, &avoided)
                            );
                            for cut in cuts {
                                pending.push(Pending {
                                    line: lines.len(),
                                    lead: g.lead.clone(),
                                    code: g.code,
                                    window: cut.window.clone(),
                                    ids: cut
                                        .ids
                                        .iter()
                                        .chain(&cut.forced_foreign)
                                        .cloned()
                                        .collect(),
                                });
                                lines.push(window_line(g, &cut));
                            }
                            lines.extend(left.iter().map(|l| left_line(g, l)));
                            continue;
                        }
                    }
                }
            }
        }
        eprintln!(
            "  lead {} code {}: {}: {}",
            line.lead,
            line.events,
            line.status.as_str(),
            line.message
        );
        lines.push(line);
    }
    if aborted.is_none() && !pending.is_empty() {
        print_plan(&pending, &remote, &settings, args.confirm.wait);
        confirm(
            args.confirm.yes,
            &format!("delete in {} window(s)", pending.len()),
        )
        .await?;
    }
    let out = open_results(&out_path)?;

    let mut records: Vec<(usize, i64)> = Vec::new();
    for p in &pending {
        let line = &mut lines[p.line];
        if let Some(reason) = &aborted {
            line.status = DeletionStatus::Failed;
            line.message = format!("not sent: the run stopped: {reason}");
            continue;
        }
        let result = remote
            .delete_activities(&p.lead, &[p.code], &p.window, None)
            .await;
        let (status, message) = match result {
            Ok(message) => (DeletionStatus::Queued, message),
            Err(e) => {
                if let DeleteError::Abort(m) = &e {
                    aborted = Some(m.clone());
                }
                (DeletionStatus::Failed, e.to_string())
            }
        };
        line.status = status;
        line.message = message;
        let record = DeletionRecord {
            id: 0,
            command: "undo".into(),
            source_run,
            lead_id: p.lead.clone(),
            events: p.code.to_string(),
            from_date: p.window.from.clone(),
            to_date: p.window.to.clone(),
            activity_ids: p.ids.clone(),
            status: status.as_str().into(),
            message: Some(line.message.clone()),
        };
        let id = ledger.record_deletion(&record)?;
        records.push((p.line, id));
    }
    if args.confirm.wait && aborted.is_none() {
        aborted = wait_for(&remote, &mut lines, &args.confirm, |line| {
            line.events
                .parse::<i64>()
                .map(|code| {
                    vec![
                        DeleteWindow {
                            from: line.from.clone(),
                            to: line.to.clone(),
                        }
                        .query(&line.lead, code),
                    ]
                })
                .unwrap_or_default()
        })
        .await;
        for &(i, id) in &records {
            ledger.update_deletion(id, lines[i].status.as_str(), Some(&lines[i].message))?;
        }
    }
    eprintln!("undo: {}", LeadTally::of(&lines));
    finish_results(
        out,
        &out_path,
        CellFormat::of(&settings),
        &lines,
        args.confirm.wait,
        aborted.as_deref(),
    )
}

/// One group's plan for people: the windows, what they go around, what stays.
fn describe_plan(cuts: &[Cut], left: &[Left], avoided: &[String]) -> String {
    let forced: Vec<&str> = cuts
        .iter()
        .flat_map(|c| c.forced_foreign.iter().map(String::as_str))
        .collect();
    let mut text = format!("{} window(s)", cuts.len());
    if !avoided.is_empty() {
        text.push_str(&format!(
            " around {} activit{} the import did not create ({})",
            avoided.len(),
            plural(avoided.len()),
            avoided.join(", ")
        ));
    }
    if !forced.is_empty() {
        text.push_str(&format!(", --force: also deleting {}", forced.join(", ")));
    }
    if !left.is_empty() {
        let stays: usize = left.iter().map(|l| l.ours.len()).sum();
        text.push_str(&format!(
            "; {stays} activit{} of the import left: {} a second with another",
            plural(stays),
            if stays == 1 {
                "it shares"
            } else {
                "they share"
            }
        ));
    }
    text
}

/// Before confirming, what the deletion costs: delete calls take the account's quota like any
/// call, so the plan says how many and the least time they take at the configured rate.
fn print_plan(pending: &[Pending], remote: &Remote, settings: &Settings, wait: bool) {
    let leads = pending
        .iter()
        .map(|p| p.lead.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let deletes = pending.len() as u64;
    // `--wait` lists each window at least once more after its deletion.
    let calls = if wait { deletes * 2 } else { deletes };
    eprintln!(
        "plan: {deletes} window(s) on {leads} lead(s): {deletes} delete call(s){} at {}: at least {:.1}s",
        if wait {
            format!(" and at least {deletes} Get Activities call(s) for --wait")
        } else {
            String::new()
        },
        settings.rate,
        remote
            .fetcher
            .api
            .pacer
            .spacing()
            .mul_f64(calls.saturating_sub(1) as f64)
            .as_secs_f64()
    );
}

/// How the leads came out, for the summary: a lead is fully undone when every line of it went
/// (or had nothing left), partly undone when some went and some did not, refused when nothing
/// went because of what is in its windows, failed otherwise.
#[derive(Debug, Default, PartialEq, Eq)]
struct LeadTally {
    undone: usize,
    partly: usize,
    refused: usize,
    failed: usize,
}

impl LeadTally {
    fn of(lines: &[ResultLine]) -> LeadTally {
        // Per lead: (some line went, some line did not, some line was refused or left).
        let mut leads: BTreeMap<&str, (bool, bool, bool)> = BTreeMap::new();
        for line in lines {
            let entry = leads.entry(line.lead.as_str()).or_default();
            match line.status {
                DeletionStatus::Queued | DeletionStatus::Confirmed => entry.0 = true,
                DeletionStatus::Skipped => {}
                DeletionStatus::Refused | DeletionStatus::Partial => {
                    entry.1 = true;
                    entry.2 = true;
                }
                DeletionStatus::Failed => entry.1 = true,
            }
        }
        let mut tally = LeadTally::default();
        for (went, missed, refused) in leads.into_values() {
            match (went, missed, refused) {
                (_, false, _) => tally.undone += 1,
                (true, true, _) => tally.partly += 1,
                (false, true, true) => tally.refused += 1,
                (false, true, false) => tally.failed += 1,
            }
        }
        tally
    }
}

impl std::fmt::Display for LeadTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lead(s) fully undone, {} partly undone, {} refused, {} failed",
            self.undone, self.partly, self.refused, self.failed
        )
    }
}

/// The results line of one window, before it is sent.
fn window_line(g: &UndoGroup, cut: &Cut) -> ResultLine {
    let found = cut.ids.len() + cut.forced_foreign.len();
    ResultLine {
        from: cut.window.from.clone(),
        to: cut.window.to.clone(),
        activities: Some(found as u64),
        message: if cut.forced_foreign.is_empty() {
            format!(
                "{found} activit{}, all created by the import",
                plural(found)
            )
        } else {
            format!("--force: also deleting {}", cut.forced_foreign.join(", "))
        },
        ..line_for(g)
    }
}

/// The results line of a second left alone: it names both sides.
fn left_line(g: &UndoGroup, left: &Left) -> ResultLine {
    ResultLine {
        from: Some(left.at.clone()),
        to: Some(left.at.clone()),
        status: DeletionStatus::Partial,
        activities: Some((left.ours.len() + left.foreign.len()) as u64),
        message: format!(
            "left {} (created by the import): {} the same second as {}, which the import did not \
             create, and a window cannot take one without the other (--force deletes both)",
            left.ours.join(", "),
            if left.ours.len() == 1 {
                "shares"
            } else {
                "share"
            },
            left.foreign.join(", ")
        ),
        ..line_for(g)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

/// A results line for a group, before anything is known.
fn line_for(g: &UndoGroup) -> ResultLine {
    ResultLine {
        lead: g.lead.clone(),
        events: g.code.to_string(),
        from: g.window.from.clone(),
        to: g.window.to.clone(),
        status: DeletionStatus::Queued,
        activities: None,
        message: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(lead: &str, status: DeletionStatus) -> ResultLine {
        ResultLine {
            lead: lead.into(),
            events: "201".into(),
            from: None,
            to: None,
            status,
            activities: None,
            message: String::new(),
        }
    }

    #[test]
    fn leads_are_tallied_by_what_went_and_what_stayed() {
        use DeletionStatus::*;
        let lines = [
            line("done", Confirmed),
            line("done", Queued),
            line("done", Skipped),
            line("nothing-left", Skipped),
            line("half", Confirmed),
            line("half", Partial),
            line("half-failed", Queued),
            line("half-failed", Failed),
            line("shared", Partial),
            line("undated", Refused),
            line("down", Failed),
        ];
        assert_eq!(
            LeadTally::of(&lines),
            LeadTally {
                undone: 2,
                partly: 2,
                refused: 2,
                failed: 1,
            }
        );
        assert_eq!(
            LeadTally::of(&lines).to_string(),
            "2 lead(s) fully undone, 2 partly undone, 2 refused, 1 failed"
        );
    }
}
