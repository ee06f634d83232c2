//! `lsq-sync import` and `lsq-sync retry`: resolve what to read (a file, or a stream from
//! standard input or PostgreSQL, snapshotted first) and where to send (a real host, or the
//! embedded simulator with `--simulate`), watch for Ctrl-C and SIGTERM, run the pipeline, write
//! the summary JSON and HTML report when asked, print the summary on stderr, and tell the
//! unattended world (`--notify-url`, `--metrics-file`) how it ended.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::info;

use crate::abort::Interrupt;
use crate::cli::{ImportArgs, NightlyArgs, RetryArgs, RunArgs};
use crate::config::NotifyOn;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::import::dry_run::validate_file;
use crate::import::plan::{ImportJob, InputKind, default_ledger_path};
use crate::import::run::run_import;
use crate::input::sources::postgres::PgSource;
use crate::input::sources::{
    InputFormat, SourceError, Stream, prepare_snapshot, snapshot_for_dry_run,
};
use crate::lsq::secure::Secret;
use crate::report::html::write_html_report;
use crate::report::notify::RunEnd;
use crate::report::summary::{RunPaths, SummaryJson, ValidationSummaryJson};
use crate::simulator::{RunningSimulator, SimConfig};

use super::CommandError;

/// What the import reads: a file as named, or a stream to snapshot first.
enum Input {
    File(PathBuf),
    Stream(Stream),
}

/// Decides the input from the positional INPUT (`-` is standard input) and the PostgreSQL
/// source (flags, or `[source]` in the config file, which a named file overrides).
fn input_of(args: &ImportArgs, settings: &mut Settings) -> Result<Input, CommandError> {
    let usage = |m: &str| Err(CommandError::Usage(m.to_string()));
    if args.input.is_some() && args.source.from_postgres.is_some() {
        return usage("give either INPUT or --from-postgres, not both");
    }
    if args.input.is_some() && args.source.query.is_some() {
        return usage("--query goes with --from-postgres (or [source] postgres_url), not a file");
    }
    match (&args.input, &settings.source.postgres_url) {
        (Some(path), _) if path.as_os_str() == "-" => Ok(Input::Stream(Stream::Stdin(
            settings.input.format.unwrap_or(InputFormat::Csv),
        ))),
        (Some(path), _) => Ok(Input::File(path.clone())),
        (None, Some(url)) => {
            let Some(query) = settings.source.query.as_deref() else {
                return usage("--from-postgres needs --query \"SELECT ...\" (or [source] query)");
            };
            let source = PgSource::new(url.expose(), query).map_err(SourceError::from)?;
            // COPY writes CSV, whatever --format says of files.
            settings.input.format = Some(InputFormat::Csv);
            Ok(Input::Stream(Stream::Postgres(source)))
        }
        (None, None) => usage(
            "no input: give INPUT.csv, - for standard input, or --from-postgres URL --query SQL",
        ),
    }
}

pub(crate) async fn run(args: ImportArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    let ledger = args
        .run
        .ledger
        .clone()
        .unwrap_or_else(|| default_ledger_path(&args.out));
    // A dry run sends nothing and keeps no ledger: nothing to tell the unattended world.
    let unattended = if args.dry_run {
        None
    } else {
        Some(Unattended::of(&settings, &ledger, "import")?)
    };
    let result = import(args, settings, &ledger).await;
    if let (Err(e), Some(unattended)) = (&result, unattended) {
        unattended.failed(e).await;
    }
    result
}

/// `run` without the notification of a run that could not start; `ledger` is the run's
/// ledger (beside it go the snapshots of a streamed input).
async fn import(
    args: ImportArgs,
    mut settings: Settings,
    ledger: &Path,
) -> Result<ExitStatus, CommandError> {
    let input = input_of(&args, &mut settings)?;
    if args.dry_run {
        if args.nightly.html_report.is_some() {
            return Err(CommandError::Usage(
                "--html-report charts the calls of a run; --dry-run makes none (use --summary-json)"
                    .into(),
            ));
        }
        let input = match input {
            Input::File(path) => path,
            Input::Stream(stream) => {
                // No ledger, no resume: a dry run reads the stream afresh into its snapshot.
                let path = stream.snapshot_path(ledger);
                snapshot_for_dry_run(&stream, &path).await?;
                path
            }
        };
        if settings.sync.key.is_some() {
            let ledger = args
                .run
                .ledger
                .clone()
                .unwrap_or_else(|| ledger.to_path_buf());
            return plan_keyed(input, args.out, ledger, settings).await;
        }
        return validate(input, args.out, args.nightly.summary_json, settings).await;
    }
    // A fresh simulator knows nothing of earlier runs: resuming one into it would be wrong.
    let fresh_sim = args.simulate && args.run.ledger.is_none();
    let input = match input {
        Input::File(path) => path,
        Input::Stream(stream) => {
            let renew = args.run.fresh || args.run.force || fresh_sim;
            prepare_snapshot(&stream, ledger, "import", renew, settings.ledger_durability)
                .await?
                .path
        }
    };
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
    if fresh_sim {
        run_args.fresh = true;
    }
    let result = execute(
        InputKind::Import,
        input,
        args.out,
        run_args,
        args.nightly,
        args.sync.yes,
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
pub(crate) async fn validate(
    input: PathBuf,
    report: PathBuf,
    summary_json: Option<PathBuf>,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    check_outputs(&input, &report, &[("--summary-json", &summary_json)])?;
    let settings_quiet = settings.quiet;
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
    if settings_quiet {
        eprintln!("{}", validation.status_line());
    } else {
        eprintln!(
            "lsq-sync validate: {} -> {}\n{validation}",
            input.display(),
            report.display()
        );
    }
    Ok(validation.exit_status())
}

/// `import --dry-run --key`: what the sync would do, from the key map of `ledger` (and the
/// account's, with `--key-field`), sending nothing and changing no ledger: one report line per
/// row saying what would happen, the counts and calls on stderr. Exit 0, or 1 when rows are
/// invalid or in conflict.
async fn plan_keyed(
    input: PathBuf,
    report: PathBuf,
    ledger: PathBuf,
    settings: Settings,
) -> Result<ExitStatus, CommandError> {
    check_outputs(&input, &report, &[])?;
    let quiet = settings.quiet;
    let job = ImportJob {
        kind: InputKind::Import,
        input: input.clone(),
        report: report.clone(),
        ledger: ledger.clone(),
        settings,
        progress: false,
        fresh: true,
        force: false,
        skip_existing: false,
        yes: false,
        deleter: None,
        interrupt: Interrupt::default(),
    };
    let limit = job.settings.sync.max_delete;
    let (plan, counts) = crate::import::run::dry_run_keyed(&job).await?;
    if plan.deletions() > limit.most(plan.known) {
        eprintln!(
            "lsq-sync: {} deletions exceed --max-delete {limit} of {} keys known: the run would \
             stop before sending anything (exit 2)",
            plan.deletions(),
            plan.known
        );
    }
    let status = if counts.invalid + counts.conflict > 0 {
        ExitStatus::RowsNotCreated
    } else {
        ExitStatus::Success
    };
    let line = format!(
        "PLAN: {plan}; nothing was sent (key map of {})",
        ledger.display()
    );
    if quiet {
        eprintln!("{line}");
    } else {
        eprintln!(
            "lsq-sync import --dry-run: {} -> {}\n{} lines: {} to send, {} unchanged, {} \
             conflicts, {} invalid\n{line}",
            input.display(),
            report.display(),
            counts.total(),
            counts.valid,
            counts.unchanged,
            counts.conflict,
            counts.invalid
        );
    }
    Ok(status)
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

pub(crate) async fn retry(args: RetryArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    let ledger = args
        .run
        .ledger
        .clone()
        .unwrap_or_else(|| default_ledger_path(&args.out));
    let unattended = Unattended::of(&settings, &ledger, "retry")?;
    let result = execute(
        InputKind::Retry,
        args.report,
        args.out,
        args.run,
        args.nightly,
        args.sync.yes,
        settings,
    )
    .await;
    if let Err(e) = &result {
        unattended.failed(e).await;
    }
    result
}

/// `--notify-url` and `--metrics-file`: what is told, and to whom, when a run ends.
struct Unattended {
    notify_url: Option<String>,
    notify_on: NotifyOn,
    timeout: std::time::Duration,
    metrics_file: Option<PathBuf>,
    ledger: PathBuf,
    command: &'static str,
}

impl Unattended {
    /// Checks the notify URL before anything is read or sent (a bad one is a usage error).
    fn of(
        settings: &Settings,
        ledger: &Path,
        command: &'static str,
    ) -> Result<Unattended, CommandError> {
        let notify_url = match &settings.notify.url {
            Some(url) => Some(
                crate::report::notify::check_url(url.expose(), settings.allow_insecure_http)
                    .map_err(CommandError::Usage)?,
            ),
            None => None,
        };
        Ok(Unattended {
            notify_url,
            notify_on: settings.notify.on,
            timeout: settings.notify.timeout,
            metrics_file: settings.metrics_file.clone(),
            ledger: ledger.to_path_buf(),
            command,
        })
    }

    /// A run that went as far as a summary.
    async fn finished(&self, summary: &SummaryJson) {
        self.write_metrics(Some(summary), summary.head.exit_code);
        let document = serde_json::to_value(summary).unwrap_or_default();
        self.notify(
            document,
            summary.head.status,
            summary.head.exit_code,
            &summary.head.status_line,
        )
        .await;
    }

    /// A run that stopped before it had a summary (bad input, a failing query, a ledger held
    /// by another process): told as status `error`, with the message as its status line.
    async fn failed(&self, error: &CommandError) {
        let exit_code = error.exit_status().code();
        let status_line = format!("ERROR: {error}");
        self.write_metrics(None, exit_code);
        let document = serde_json::json!({
            "version": crate::report::summary::SUMMARY_VERSION,
            "command": self.command,
            "status": "error",
            "exit_code": exit_code,
            "status_line": status_line,
            "ledger": self.ledger.display().to_string(),
            "finished_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        self.notify(document, "error", exit_code, &status_line)
            .await;
    }

    fn write_metrics(&self, summary: Option<&SummaryJson>, exit_code: u8) {
        if let Some(path) = &self.metrics_file
            && let Err(e) =
                crate::report::metrics::write(path, summary, exit_code, chrono::Utc::now())
        {
            eprintln!(
                "lsq-sync: cannot write the metrics file {}: {e}",
                path.display()
            );
        }
    }

    async fn notify(&self, document: serde_json::Value, status: &str, exit_code: u8, line: &str) {
        let end = RunEnd {
            document,
            status,
            exit_code,
            status_line: line,
        };
        crate::report::notify::notify(
            self.notify_url.as_deref(),
            self.notify_on,
            self.timeout,
            &self.ledger,
            end,
        )
        .await;
    }
}

async fn execute(
    kind: InputKind,
    input: PathBuf,
    report: PathBuf,
    run: RunArgs,
    nightly: NightlyArgs,
    yes: bool,
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
    let ledger = run.ledger.unwrap_or_else(|| default_ledger_path(&report));
    let unattended = Unattended::of(&settings, &ledger, "import")?;
    let quiet = settings.quiet;
    let interrupt = Interrupt::default();
    let watcher = tokio::spawn(watch_signals(interrupt.clone()));
    let job = ImportJob {
        kind,
        ledger,
        input,
        report,
        settings,
        progress: !run.no_progress && !quiet,
        fresh: run.fresh,
        force: run.force,
        skip_existing: run.skip_existing,
        yes,
        deleter: Some(std::sync::Arc::new(crate::ops::mirror::SurgicalDeleter {
            wait: std::time::Duration::from_secs(120),
        })),
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
    let document = SummaryJson::new(&summary, &paths);
    if let Some(path) = &nightly.summary_json
        && let Err(e) = document.write(path)
    {
        eprintln!("lsq-sync: {e}");
    }
    Unattended {
        command,
        ..unattended
    }
    .finished(&document)
    .await;
    // The status line stays the last line on stderr, after anything the notifier logged.
    if quiet {
        eprintln!("{}", summary.status_line());
    } else {
        eprintln!(
            "lsq-sync {command}: {} -> {}\n{summary}",
            job.input.display(),
            job.report.display()
        );
    }
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
