//! `lsq-sync export`: checks the flags (leads or code, windows, output paths) before any call,
//! then either streams every listed lead's activities into the output CSV (`--leads`), or
//! every lead's activities of one code (`--event` alone, Get Activities by Activity Event) into
//! a temporary file renamed to the output once complete; writes the optional status file, and
//! prints a summary line on stderr.

use std::path::{Path, PathBuf};

use crate::cli::ExportArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::lsq::activities::FetchError;
use crate::lsq::by_event::{EventQuery, EventReader};
use crate::lsq::counters::RunStats;
use crate::lsq::window::DateWindow;
use crate::ops::deletes::{DeleteWindow, Remote, parse_codes};
use crate::ops::export::{
    EventExport, ExportError, ExportFilter, LeadExport, export_event, export_leads,
};
use crate::ops::leads::parse_leads_arg;
use crate::report::CellFormat;

use super::CommandError;

pub(crate) async fn run(args: ExportArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    let window =
        DeleteWindow::parse(args.from.as_deref(), args.to.as_deref()).map_err(|e| usage(&e))?;
    let event = match &args.event {
        Some(text) => match parse_codes(text).map_err(|e| usage(&e))?.as_slice() {
            [code] => Some(*code),
            _ => {
                return Err(CommandError::Usage(
                    "--event takes one activity code".into(),
                ));
            }
        },
        None => None,
    };
    if args.status.as_deref() == Some(args.out.as_path()) {
        return Err(CommandError::Usage(
            "--status and --out name the same file".into(),
        ));
    }
    match (&args.leads, event) {
        (Some(leads), _) => {
            let leads = parse_leads_arg(leads).map_err(|e| usage(&e))?;
            by_leads(&args, settings, leads, event, window).await
        }
        (None, Some(code)) => {
            // --modified-since is checked like --from: the API's format, a date that exists.
            let since = DeleteWindow::parse(args.modified_since.as_deref(), None)
                .map_err(|e| usage(&e.to_string().replace("--from", "--modified-since")))?
                .from;
            by_code(&args, settings, code, since, window).await
        }
        (None, None) => Err(CommandError::Usage(
            "export needs --leads (the leads whose activities to export), or --event CODE to \
             export every lead's activities of that code"
                .into(),
        )),
    }
}

/// `export --leads`: lead by lead, written as the leads arrive.
async fn by_leads(
    args: &ExportArgs,
    settings: Settings,
    leads: Vec<String>,
    event: Option<i64>,
    window: DeleteWindow,
) -> Result<ExitStatus, CommandError> {
    let remote =
        Remote::from_settings(&settings).map_err(|e| CommandError::Usage(e.to_string()))?;
    let format = CellFormat::of(&settings);
    let file = create(&args.out)?;
    let status_file = args.status.as_deref().map(create).transpose()?;

    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let mut status = status_file.map(|f| csv::Writer::from_writer(std::io::BufWriter::new(f)));
    if let Some(status) = status.as_mut() {
        status
            .write_record(["LeadId", "Status", "Activities", "Error"])
            .map_err(|e| write_error(args.status.as_deref(), &e))?;
    }
    let filter = ExportFilter {
        event,
        from: window.from,
        to: window.to,
    };
    let mut status_problem: Option<String> = None;
    let outcomes = export_leads(
        &remote.fetcher,
        &leads,
        &filter,
        &mut out,
        &args.out.display().to_string(),
        format,
        |lead, outcome| {
            let (count, error) = match outcome {
                LeadExport::Exported(n) => (n.to_string(), String::new()),
                LeadExport::NotFound(m) | LeadExport::Failed(m) | LeadExport::Aborted(m) => {
                    tracing::warn!(lead, "export: {}: {m}", outcome.status());
                    (String::new(), m.clone())
                }
            };
            if let Some(status) = status.as_mut()
                && let Err(e) =
                    format.write_record(status, [lead, outcome.status(), &count, &error])
            {
                status_problem.get_or_insert_with(|| e.to_string());
            }
        },
    )
    .await
    .map_err(|e| CommandError::Usage(e.to_string()))?;
    out.flush()
        .map_err(|e| write_error(Some(args.out.as_path()), &e))?;
    if let Some(mut status) = status {
        status
            .flush()
            .map_err(|e| write_error(args.status.as_deref(), &e))?;
    }
    if let Some(problem) = status_problem {
        return Err(write_error(args.status.as_deref(), &problem));
    }

    let exported: u64 = outcomes
        .iter()
        .map(|o| match o {
            LeadExport::Exported(n) => *n,
            _ => 0,
        })
        .sum();
    let tally = |status: &str| outcomes.iter().filter(|o| o.status() == status).count();
    eprintln!(
        "lsq-sync export: {exported} activities of {} lead(s) -> {}; {} not found, {} failed, {} not tried; {} calls",
        tally("exported"),
        args.out.display(),
        tally("not_found"),
        tally("failed"),
        tally("aborted"),
        RunStats::get(&remote.fetcher.api.stats.calls),
    );
    Ok(if tally("aborted") > 0 {
        ExitStatus::Aborted
    } else if tally("exported") < outcomes.len() {
        ExitStatus::RowsNotCreated
    } else {
        ExitStatus::Success
    })
}

/// `export --event CODE` without `--leads`: every lead's activities of the code, through Get
/// Activities by Activity Event. The lines go to `OUT.partial`, renamed to `OUT` only once the
/// listing is complete, so a run that fails or is stopped never leaves a partial export where
/// the complete one is expected, and running it again is the way to resume.
async fn by_code(
    args: &ExportArgs,
    settings: Settings,
    code: i64,
    modified_since: Option<String>,
    window: DeleteWindow,
) -> Result<ExitStatus, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    let remote = Remote::from_settings(&settings).map_err(|e| usage(&e))?;
    let reader = EventReader::new(remote.fetcher.api.clone());
    let dates =
        DateWindow::parse(window.from.as_deref(), window.to.as_deref()).map_err(|e| usage(&e))?;
    let format = CellFormat::of(&settings);
    let partial = partial_path(&args.out);
    let file = create(&partial)?;
    let status_file = args.status.as_deref().map(create).transpose()?;
    let query = EventQuery {
        event: code,
        modified_from: modified_since,
        ..EventQuery::default()
    };

    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let result = export_event(
        &reader,
        &query,
        dates,
        &mut out,
        &partial.display().to_string(),
        format,
    )
    .await;
    let result = match result {
        Ok(done) => out
            .flush()
            .map_err(|e| ExportError::Write {
                path: partial.display().to_string(),
                message: e.to_string(),
            })
            .map(|()| done),
        Err(e) => Err(e),
    };
    drop(out);
    let result = match result {
        Ok(done) => std::fs::rename(&partial, &args.out)
            .map(|()| done)
            .map_err(|e| ExportError::Write {
                path: args.out.display().to_string(),
                message: format!("cannot rename {} to it: {e}", partial.display()),
            }),
        Err(e) => {
            // Nothing partial is kept: the export is all or nothing, and runs again from the
            // start.
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    };
    let calls = RunStats::get(&reader.api.stats.calls);
    let (status_line, exit) = match &result {
        Ok(done) => {
            warn_about(code, done);
            eprintln!(
                "lsq-sync export: {} activities of code {code}{} -> {}; {} calls ({} pages of {}{}){}",
                done.written,
                match &query.modified_from {
                    Some(since) => format!(" modified since {since}"),
                    None => String::new(),
                },
                args.out.display(),
                calls,
                done.walk.pages,
                done.walk.page_size,
                if done.walk.walks > 1 {
                    ", walked twice"
                } else {
                    ""
                },
                if done.outside_window > 0 {
                    format!(
                        "; {} outside {} left out",
                        done.outside_window,
                        window.describe()
                    )
                } else {
                    String::new()
                },
            );
            (
                [
                    code.to_string(),
                    "exported".into(),
                    done.written.to_string(),
                    String::new(),
                ],
                ExitStatus::Success,
            )
        }
        Err(e) => {
            eprintln!(
                "lsq-sync export: code {code}: nothing written to {} ({e}); {calls} calls",
                args.out.display()
            );
            let exit = match e {
                ExportError::Fetch(FetchError::Unauthorized(_) | FetchError::Fatal(_)) => {
                    ExitStatus::Aborted
                }
                ExportError::Write { .. } => return Err(usage(e)),
                ExportError::Fetch(_) => ExitStatus::RowsNotCreated,
            };
            (
                [
                    code.to_string(),
                    if exit == ExitStatus::Aborted {
                        "aborted".into()
                    } else {
                        "failed".into()
                    },
                    String::new(),
                    e.to_string(),
                ],
                exit,
            )
        }
    };
    if let Some(file) = status_file {
        let mut status = csv::Writer::from_writer(std::io::BufWriter::new(file));
        status
            .write_record(["ActivityEvent", "Status", "Activities", "Error"])
            .and_then(|()| format.write_record(&mut status, &status_line))
            .and_then(|()| status.flush().map_err(csv::Error::from))
            .map_err(|e| write_error(args.status.as_deref(), &e))?;
    }
    Ok(exit)
}

/// Warnings about what the server's answers held, each said once.
fn warn_about(code: i64, done: &EventExport) {
    let walk = &done.walk;
    if walk.activities > 0 && walk.without_note == walk.activities {
        tracing::warn!(
            "the server's answers carry no note (ActivityEvent_Note) for any of the {} \
             activities of code {code}: their ActivityNote is empty in the export (export \
             --leads reads notes through Get Activities of a Lead)",
            walk.activities
        );
    }
    if walk.other_code > 0 {
        tracing::warn!(
            "the server listed {} activities of other codes than {code}; they were left out",
            walk.other_code
        );
    }
}

/// `OUT.partial` beside `OUT`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn create(path: &Path) -> Result<std::fs::File, CommandError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CommandError::Usage(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::File::create(path)
        .map_err(|e| CommandError::Usage(format!("cannot create {}: {e}", path.display())))
}

fn write_error(path: Option<&Path>, e: &dyn std::fmt::Display) -> CommandError {
    CommandError::Usage(format!(
        "cannot write {}: {e}",
        path.map(|p| p.display().to_string()).unwrap_or_default()
    ))
}
