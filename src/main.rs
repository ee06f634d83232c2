//! The `lsq-sync` binary: parse arguments, set up logging, run the command, map the outcome to
//! an exit code (documented in the README and in `--help`).

use std::process::ExitCode;

use clap::Parser;
use lsq_sync::cli::{Cli, Command};
use lsq_sync::commands;
use lsq_sync::config::LogFormat;
use lsq_sync::exit::ExitStatus;
use lsq_sync::progress::LogWriter;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // clap exits with 2 on a usage error, as documented.
    let cli = Cli::parse();
    if matches!(cli.command, Command::Completions(_) | Command::Man) {
        return ExitCode::from(commands::print_generated(&cli.command).code());
    }
    let settings = match commands::settings_for(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            init_logging(commands::early_log_format(&cli), &cli);
            eprintln!("lsq-sync: {e}");
            return ExitCode::from(ExitStatus::Usage.code());
        }
    };
    init_logging(settings.log_format, &cli);
    match run(cli, settings) {
        Ok(status) => ExitCode::from(status.code()),
        Err((status, e)) => {
            // `{e}`, not the chain `{e:#}`: every library error already says its cause in its
            // own message, and the chain would print the cause a second time.
            eprintln!("lsq-sync: {e}");
            ExitCode::from(status.code())
        }
    }
}

fn run(
    cli: Cli,
    settings: lsq_sync::config::Settings,
) -> Result<ExitStatus, (ExitStatus, anyhow::Error)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let e = anyhow::anyhow!("cannot start the async runtime: {e}");
            (ExitStatus::Aborted, e)
        })?;
    runtime
        .block_on(commands::run(cli, settings))
        .map_err(|e| (e.exit_status(), anyhow::Error::new(e)))
}

fn init_logging(format: LogFormat, cli: &Cli) {
    // -q and -v are shorthands for RUST_LOG and, being flags, win over it.
    let filter = match (cli.quiet, cli.verbose) {
        (true, _) => EnvFilter::new("error"),
        (false, 0) => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("lsq_sync=info,warn")),
        (false, 1) => EnvFilter::new("lsq_sync=debug,info"),
        (false, _) => EnvFilter::new("lsq_sync=trace,debug"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(lsq_sync::progress::colour_allowed())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Logging set up twice is a programming error, but not one worth failing a run for.
    let _ = result;
}
