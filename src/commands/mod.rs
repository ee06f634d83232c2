//! The CLI commands. Each is thin: it turns flags into settings and wires library pieces
//! together; the work happens in the pipeline stages and the simulator.

pub mod delete;
pub mod export;
pub mod import;
pub mod report;
pub mod simulate;
pub mod undo;

use crate::cli::{Cli, Command, SendArgs};
use crate::config::{ConfigError, FileConfig, LogFormat, Overrides, Settings};
use crate::exit::ExitStatus;
use crate::pipeline::ImportError;
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
    if let Some((path, _)) = &file {
        tracing::debug!(path = %path.display(), "config file read");
    }
    let send = match &cli.command {
        Command::Import(args) => args.send.clone(),
        Command::Retry(args) => args.send.clone(),
        Command::Export(args) => args.send.clone(),
        Command::DeleteActivities(args) => args.send.clone(),
        Command::DeleteOwnerHistory(args) => args.send.clone(),
        Command::Undo(args) => args.send.clone(),
        Command::Simulate(_) | Command::Report(_) => SendArgs::default(),
    };
    let overrides = Overrides {
        host: send.host,
        rate: send.rate,
        max_attempts: send.max_attempts,
        concurrency: send.concurrency,
        batch_size: send.batch_size,
        connect_timeout: send.connect_timeout,
        request_timeout: send.request_timeout,
        log_format: cli.log_format,
        excel_safe: match &cli.command {
            Command::Import(args) => args.format.excel_safe,
            Command::Retry(args) => args.format.excel_safe,
            Command::Report(args) => args.format.excel_safe,
            _ => false,
        }
        .then_some(true),
    };
    let env = |name: &str| std::env::var(name).ok();
    Settings::resolve(file.as_ref().map(|(_, f)| f), &env, &overrides)
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
