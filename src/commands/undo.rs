//! `lsq-sync undo`: delete the activities an import created, and nothing else.
//!
//! The import's report or ledger run enters; `crate::undo` groups what it created by lead and
//! code with the smallest covering window. With a terminal or `--yes`, each window is listed
//! (Get Activities) and judged: deleted only if everything there is the import's (or
//! `--force`), refused otherwise, naming the foreign ids. Deletions leave as queued calls,
//! each recorded in the ledger before the next; `--wait` confirms them; the results file has
//! one line per lead and code.

use std::io::IsTerminal;

use crate::cli::UndoArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::ledger::{DeletionRecord, Ledger};
use crate::pipeline::default_ledger_path;
use crate::remote::{DeleteError, Remote};
use crate::report::CellFormat;
use crate::undo::{Decision, UndoGroup, from_ledger, from_report, group, is_ledger_file, judge};

use super::CommandError;
use super::delete::{DeletionStatus, ResultLine, confirm, finish_results, open_results, wait_for};

pub async fn run(args: UndoArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
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

    // List each window and decide.
    let mut lines: Vec<ResultLine> = Vec::with_capacity(groups.len());
    let mut deletable: Vec<usize> = Vec::new();
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
                        Decision::Refuse { foreign } => {
                            line.status = DeletionStatus::Refused;
                            line.message = format!(
                                "the window also holds {} activit{} the import did not create: {} \
                                 (--force deletes them too)",
                                foreign.len(),
                                if foreign.len() == 1 { "y" } else { "ies" },
                                foreign.join(", ")
                            );
                        }
                        Decision::Delete {
                            found,
                            forced_foreign,
                        } => {
                            line.message = if forced_foreign.is_empty() {
                                format!("{found} activities, all created by the import")
                            } else {
                                format!("--force: also deleting {}", forced_foreign.join(", "))
                            };
                            deletable.push(lines.len());
                        }
                    }
                }
            }
        }
        eprintln!(
            "  lead {} code {}: {}",
            line.lead,
            line.events,
            if deletable.last() == Some(&lines.len()) {
                format!("will delete ({})", line.message)
            } else {
                format!("{}: {}", line.status.as_str(), line.message)
            }
        );
        lines.push(line);
    }
    if aborted.is_none() && !deletable.is_empty() {
        confirm(
            args.confirm.yes,
            &format!("delete in {} window(s)", deletable.len()),
        )
        .await?;
    }
    let out = open_results(&args.confirm.out)?;

    let mut records: Vec<(usize, i64)> = Vec::new();
    for &i in &deletable {
        let g = &groups[i];
        let line = &mut lines[i];
        if let Some(reason) = &aborted {
            line.status = DeletionStatus::Failed;
            line.message = format!("not sent: the run stopped: {reason}");
            continue;
        }
        let result = remote
            .delete_activities(&g.lead, &[g.code], &g.window, None)
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
            lead_id: g.lead.clone(),
            events: g.code.to_string(),
            from_date: g.window.from.clone(),
            to_date: g.window.to.clone(),
            activity_ids: g.ids.iter().cloned().collect(),
            status: status.as_str().into(),
            message: Some(line.message.clone()),
        };
        let id = ledger.record_deletion(&record)?;
        records.push((i, id));
    }
    if args.confirm.wait && aborted.is_none() {
        aborted = wait_for(&remote, &mut lines, &args.confirm, |line| {
            line.events
                .parse::<i64>()
                .map(|code| {
                    vec![
                        crate::remote::DeleteWindow {
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
    finish_results(
        out,
        &args.confirm.out,
        CellFormat::of(&settings),
        &lines,
        args.confirm.wait,
        aborted.as_deref(),
    )
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
