//! `lsq-sync report`: writes a run's report from its ledger, or lists the ledger's runs.

use std::io::Write;

use crate::cli::ReportArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::ledger::{Durability, Ledger};
use crate::report::{CellFormat, write_from_ledger_as};

use super::CommandError;

pub(crate) async fn run(args: ReportArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    tokio::task::spawn_blocking(move || report(args, &settings))
        .await
        .map_err(|e| CommandError::Usage(format!("internal error: {e}")))?
}

fn report(args: ReportArgs, settings: &Settings) -> Result<ExitStatus, CommandError> {
    if !args.ledger.is_file() {
        return Err(CommandError::Usage(format!(
            "no ledger at {}",
            args.ledger.display()
        )));
    }
    let ledger = Ledger::open(&args.ledger, Durability::Normal)?;
    let runs = ledger.runs()?;
    if args.list {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "run\tkind\tstatus\tstarted (UTC)\tfinished (UTC)\tinput"
        );
        for r in &runs {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}",
                r.id,
                r.kind,
                r.status,
                r.started_at,
                r.finished_at.as_deref().unwrap_or("-"),
                r.input_path
            );
        }
        return Ok(ExitStatus::Success);
    }
    let run = match args.run {
        Some(id) => runs.iter().find(|r| r.id == id).ok_or_else(|| {
            CommandError::Usage(format!("{} has no run {id}", args.ledger.display()))
        })?,
        None => runs.last().ok_or_else(|| {
            CommandError::Usage(format!("{} holds no run", args.ledger.display()))
        })?,
    };
    let out = args
        .out
        .ok_or_else(|| CommandError::Usage("--out is required".into()))?;
    let counts = write_from_ledger_as(&ledger, run.id, &out, CellFormat::of(settings))?;
    eprintln!(
        "run {} ({}): {} rows: created {}, failed {}, invalid {}, skipped {} -> {}",
        run.id,
        run.status,
        counts.total(),
        counts.created,
        counts.failed,
        counts.invalid,
        counts.skipped,
        out.display()
    );
    Ok(ExitStatus::Success)
}
