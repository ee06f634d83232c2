//! `lsq-sync export`: checks the flags (leads, code, window, output paths) before any call,
//! streams every lead's activities into the output CSV, writes the optional per-lead status
//! file, and prints a summary line on stderr.

use std::path::Path;

use crate::cli::ExportArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::ops::deletes::{DeleteWindow, Remote, parse_codes};
use crate::ops::export::{ExportFilter, LeadExport, export_leads};
use crate::ops::leads::parse_leads_arg;
use crate::report::CellFormat;

use super::CommandError;

pub(crate) async fn run(args: ExportArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    let leads = parse_leads_arg(&args.leads.leads).map_err(|e| usage(&e))?;
    let window = DeleteWindow::parse(args.leads.from.as_deref(), args.leads.to.as_deref())
        .map_err(|e| usage(&e))?;
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
    let remote = Remote::from_settings(&settings).map_err(|e| usage(&e))?;
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
        crate::lsq::counters::RunStats::get(&remote.fetcher.api.stats.calls),
    );
    Ok(if tally("aborted") > 0 {
        ExitStatus::Aborted
    } else if tally("exported") < outcomes.len() {
        ExitStatus::RowsNotCreated
    } else {
        ExitStatus::Success
    })
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
