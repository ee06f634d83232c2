//! `lsq-sync import` and `lsq-sync retry`: resolve where to send (a real host, or the embedded
//! simulator with `--simulate`), watch for Ctrl-C and SIGTERM, run the pipeline, write the
//! summary JSON and HTML report when asked, print the summary on stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::info;

use crate::abort::Interrupt;
use crate::cli::{ImportArgs, NightlyArgs, RetryArgs, RunArgs};
use crate::config::{Secret, Settings};
use crate::dry_run::validate_file;
use crate::exit::ExitStatus;
use crate::html_report::write_html_report;
use crate::pipeline::{ImportJob, InputKind, default_ledger_path, run_import};
use crate::simulator::{RunningSimulator, SimConfig};
use crate::summary::{RunPaths, SummaryJson, ValidationSummaryJson};

use super::CommandError;

pub async fn run(args: ImportArgs, mut settings: Settings) -> Result<ExitStatus, CommandError> {
    if args.dry_run {
        if args.nightly.html_report.is_some() {
            return Err(CommandError::Usage(
                "--html-report charts the calls of a run; --dry-run makes none (use --summary-json)"
                    .into(),
            ));
        }
        return validate(args.input, args.out, args.nightly.summary_json, settings).await;
    }
    let simulator = if args.simulate {
        let keys = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let sim = RunningSimulator::start(SimConfig {
            access_key: keys.0.clone(),
            secret_key: keys.1.clone(),
            rate: Some(settings.rate),
            latency: Duration::from_millis(args.sim_latency_ms),
            ..SimConfig::default()
        })
        .await
        .map_err(|e| CommandError::Usage(format!("cannot start the simulator: {e}")))?;
        info!(url = %sim.base_url(), "embedded simulator started");
        settings.host = Some(sim.base_url());
        settings.access_key = Some(Secret::new(keys.0));
        settings.secret_key = Some(Secret::new(keys.1));
        Some(sim)
    } else {
        None
    };
    let mut run_args = args.run;
    if args.simulate && run_args.ledger.is_none() {
        // A fresh simulator knows nothing of earlier runs: resuming one into it would be wrong.
        run_args.fresh = true;
    }
    let result = execute(
        InputKind::Import,
        args.input,
        args.out,
        run_args,
        args.nightly,
        settings,
    )
    .await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    result
}

/// `lsq-sync validate` and `import --dry-run`: every row checked, nothing sent, no ledger; the
/// summary JSON when asked.
pub async fn validate(
    input: PathBuf,
    report: PathBuf,
    summary_json: Option<PathBuf>,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    check_outputs(&input, &report, &[("--summary-json", &summary_json)])?;
    let started_at = chrono::Utc::now();
    let (input_for_task, report_for_task) = (input.clone(), report.clone());
    let validation = tokio::task::spawn_blocking(move || {
        validate_file(&input_for_task, &report_for_task, &settings)
    })
    .await
    .map_err(|e| CommandError::Usage(format!("internal error: the check stopped: {e}")))??;
    if let Some(path) = &summary_json
        && let Err(e) =
            ValidationSummaryJson::new(&validation, started_at, chrono::Utc::now()).write(path)
    {
        eprintln!("lsq-sync: {e}");
    }
    eprintln!(
        "lsq-sync validate: {} -> {}\n{validation}",
        input.display(),
        report.display()
    );
    Ok(validation.exit_status())
}

/// Refuses outputs that would overwrite the input, or the report, before anything is read.
fn check_outputs(
    input: &Path,
    report: &Path,
    others: &[(&str, &Option<PathBuf>)],
) -> Result<(), CommandError> {
    for (flag, path) in others {
        if path.as_ref().is_some_and(|p| p == input || p == report) {
            return Err(CommandError::Usage(format!(
                "{flag} would overwrite the input or the report; choose another file"
            )));
        }
    }
    if input == report {
        return Err(CommandError::Usage(format!(
            "the report {} would overwrite the input; choose another --out",
            report.display()
        )));
    }
    Ok(())
}

pub async fn retry(args: RetryArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    execute(
        InputKind::Retry,
        args.report,
        args.out,
        args.run,
        args.nightly,
        settings,
    )
    .await
}

async fn execute(
    kind: InputKind,
    input: PathBuf,
    report: PathBuf,
    run: RunArgs,
    nightly: NightlyArgs,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    check_outputs(
        &input,
        &report,
        &[
            ("--summary-json", &nightly.summary_json),
            ("--html-report", &nightly.html_report),
        ],
    )?;
    let interrupt = Interrupt::default();
    let watcher = tokio::spawn(watch_signals(interrupt.clone()));
    let job = ImportJob {
        kind,
        ledger: run.ledger.unwrap_or_else(|| default_ledger_path(&report)),
        input,
        report,
        settings,
        progress: !run.no_progress,
        fresh: run.fresh,
        force: run.force,
        skip_existing: run.skip_existing,
        interrupt,
    };
    let started_at = chrono::Utc::now();
    let result = run_import(&job).await;
    watcher.abort();
    let summary = result?;
    let command = if kind == InputKind::Retry {
        "retry"
    } else {
        "import"
    };
    let paths = RunPaths {
        command,
        input: job.input.clone(),
        report: job.report.clone(),
        ledger: job.ledger.clone(),
        html_report: nightly.html_report.clone(),
        started_at,
        finished_at: chrono::Utc::now(),
    };
    // A file that cannot be written is reported, but does not change what the run did: the
    // exit code still says that, and the status line stays the last line.
    if let Some(path) = &nightly.html_report
        && let Err(e) = write_html_report(path, &summary, &paths)
    {
        eprintln!("lsq-sync: {e}");
    }
    if let Some(path) = &nightly.summary_json
        && let Err(e) = SummaryJson::new(&summary, &paths).write(path)
    {
        eprintln!("lsq-sync: {e}");
    }
    eprintln!(
        "lsq-sync {command}: {} -> {}\n{summary}",
        job.input.display(),
        job.report.display()
    );
    Ok(summary.exit_status())
}

/// First Ctrl-C or SIGTERM: stop taking new batches and let the calls in flight finish. A second
/// one: stop at once. The ledger stays consistent either way (every write is a transaction), and
/// running the same command again resumes.
async fn watch_signals(interrupt: Interrupt) {
    let first = next_signal().await;
    let (status, name) = first;
    eprintln!(
        "lsq-sync: {name} received: finishing the calls in flight, then stopping (again to stop at once)"
    );
    interrupt.trigger(status, name);
    let (status, name) = next_signal().await;
    eprintln!("lsq-sync: second {name}: stopping now; run the same command again to resume");
    std::process::exit(i32::from(status.code()));
}

async fn next_signal() -> (ExitStatus, &'static str) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            return tokio::select! {
                _ = int.recv() => (ExitStatus::Interrupted, "SIGINT"),
                _ = term.recv() => (ExitStatus::Terminated, "SIGTERM"),
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    (ExitStatus::Interrupted, "SIGINT")
}
