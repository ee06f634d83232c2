//! The CLI commands. Each is thin: it turns flags into settings and wires library pieces
//! together; the work happens in the pipeline stages and the simulator.

pub(crate) mod check;
pub(crate) mod delete;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod report;
pub(crate) mod simulate;
pub(crate) mod undo;

use crate::cli::{Cli, Command, SendArgs};
use crate::config::{
    ConfigError, FileConfig, InputOverrides, LogFormat, Overrides, Settings, SyncOverrides,
};
use crate::exit::ExitStatus;
use crate::import::plan::ImportError;
use crate::simulator::SimError;

/// A command that could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Simulator(#[from] SimError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Preflight(#[from] crate::ops::check::PreflightError),
    #[error(transparent)]
    DryRun(#[from] crate::import::dry_run::DryRunError),
    #[error(transparent)]
    Source(#[from] crate::input::sources::SourceError),
}

impl CommandError {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            CommandError::Import(e) => e.exit_status(),
            _ => ExitStatus::Usage,
        }
    }
}

/// Resolves the settings for `cli`: defaults < config file < environment < flags.
pub fn settings_for(cli: &Cli) -> Result<Settings, ConfigError> {
    let file = FileConfig::discover(cli.config.as_deref())?;
    if let Some((path, contents)) = &file {
        tracing::debug!(path = %path.display(), "config file read");
        // Printed, not logged: settings are read before logging is set up, and a filter must
        // not hide it. This runs once per process.
        if let Some(warning) = crate::config::key_file_warning(path, contents) {
            eprintln!("lsq-sync: {warning}");
        }
    }
    let send = match &cli.command {
        Command::Import(args) => args.send.clone(),
        Command::Retry(args) => args.send.clone(),
        Command::Export(args) => args.send.clone(),
        Command::DeleteActivities(args) => args.send.clone(),
        Command::DeleteOwnerHistory(args) => args.send.clone(),
        Command::Undo(args) => args.send.clone(),
        Command::Check(args) => args.send.clone(),
        Command::Simulate(_)
        | Command::Report(_)
        | Command::Validate(_)
        | Command::Completions(_)
        | Command::Man => SendArgs::default(),
    };
    let overrides = Overrides {
        host: send.host,
        rate: send.rate,
        max_attempts: send.max_attempts,
        outage_patience: send.outage_patience,
        concurrency: send.concurrency,
        batch_size: send.batch_size,
        connect_timeout: send.connect_timeout,
        request_timeout: send.request_timeout,
        log_format: cli.log_format,
        allow_insecure_http: cli.allow_insecure_http.then_some(true),
        input: input_overrides(&cli.command),
        max_invalid: match &cli.command {
            Command::Import(args) => args.nightly.max_invalid,
            Command::Retry(args) => args.nightly.max_invalid,
            _ => None,
        },
        excel_safe: match &cli.command {
            Command::Import(args) => args.format.excel_safe,
            Command::Retry(args) => args.format.excel_safe,
            Command::Report(args) => args.format.excel_safe,
            Command::Export(args) => args.format.excel_safe,
            Command::DeleteActivities(args) => args.format.excel_safe,
            Command::DeleteOwnerHistory(args) => args.format.excel_safe,
            Command::Undo(args) => args.format.excel_safe,
            _ => false,
        }
        .then_some(true),
        postgres_url: None,
        query: None,
        notify_url: None,
        notify_on: None,
        metrics_file: None,
        quiet: cli.quiet,
        sync: sync_overrides(&cli.command),
    };
    let overrides = match &cli.command {
        Command::Import(args) => Overrides {
            postgres_url: args.source.from_postgres.clone(),
            query: args.source.query.clone(),
            ..nightly_overrides(&args.nightly, overrides)
        },
        Command::Retry(args) => nightly_overrides(&args.nightly, overrides),
        _ => overrides,
    };
    let env = |name: &str| std::env::var(name).ok();
    Settings::resolve(file.as_ref().map(|(_, f)| f), &env, &overrides)
}

/// The notify and metrics flags of import and retry over `overrides`.
fn nightly_overrides(nightly: &crate::cli::NightlyArgs, overrides: Overrides) -> Overrides {
    Overrides {
        notify_url: nightly.notify_url.clone(),
        notify_on: nightly.notify_on,
        metrics_file: nightly.metrics_file.clone(),
        ..overrides
    }
}

/// The keyed sync flags of import and retry.
fn sync_overrides(command: &Command) -> SyncOverrides {
    let args = match command {
        Command::Import(args) => &args.sync,
        Command::Retry(args) => &args.sync,
        _ => return SyncOverrides::default(),
    };
    SyncOverrides {
        key: args.key.clone(),
        key_field: args.key_field.clone(),
        replace_changed: args.replace_changed.then_some(true),
        delete_missing: args.delete_missing.then_some(true),
        max_delete: args.max_delete.clone(),
    }
}

/// The input flags of the commands that read an input file.
fn input_overrides(command: &Command) -> InputOverrides {
    let args = match command {
        Command::Import(args) => args.input_options.clone(),
        Command::Retry(args) => args.input_options.clone(),
        Command::Validate(args) => args.input_options.clone(),
        Command::Check(args) => args.input_options.clone(),
        _ => return InputOverrides::default(),
    };
    InputOverrides {
        map: args.map,
        set: args.set,
        match_by: args.match_by,
        timezone: args.timezone,
        date_format: args.date_format,
        sheet: args.sheet,
        format: args.format,
    }
}

/// Runs the command; the log format has already been applied by the caller.
pub async fn run(cli: Cli, settings: Settings) -> Result<ExitStatus, CommandError> {
    match cli.command {
        Command::Import(args) => import::run(args, settings).await,
        Command::Retry(args) => import::retry(args, settings).await,
        Command::Report(args) => report::run(args, settings).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Export(args) => export::run(args, settings).await,
        Command::DeleteActivities(args) => delete::delete_activities(args, settings).await,
        Command::DeleteOwnerHistory(args) => delete::delete_owner_history(args, settings).await,
        Command::Undo(args) => undo::run(args, settings).await,
        Command::Check(args) => check::run(args, settings).await,
        Command::Validate(args) => {
            import::validate(args.input, args.out, args.summary_json, settings).await
        }
        command @ (Command::Completions(_) | Command::Man) => Ok(print_generated(&command)),
    }
}

/// `completions` and `man` need no settings (a broken config file must not stop them): the
/// output of those two, printed on stdout; `None` for every other command.
pub(crate) fn generated_output(command: &Command) -> Option<Vec<u8>> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    match command {
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "lsq-sync", &mut out);
        }
        // Rendering into memory cannot fail.
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .ok()?,
        _ => return None,
    }
    Some(out)
}

/// Prints [`generated_output`]; a closed pipe (`| head`) is not an error.
pub fn print_generated(command: &Command) -> ExitStatus {
    use std::io::Write;
    let Some(out) = generated_output(command) else {
        return ExitStatus::Usage;
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => ExitStatus::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitStatus::Success,
        Err(e) => {
            eprintln!("lsq-sync: cannot write to stdout: {e}");
            ExitStatus::Aborted
        }
    }
}

/// The log format to start with, before settings are resolved (flag, then environment).
pub fn early_log_format(cli: &Cli) -> LogFormat {
    cli.log_format
        .or_else(|| match std::env::var("LSQ_LOG_FORMAT").ok()?.trim() {
            "json" => Some(LogFormat::Json),
            _ => None,
        })
        .unwrap_or_default()
}
