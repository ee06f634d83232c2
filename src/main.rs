//! The `lsq-sync` binary: parse arguments, set up logging, run the command, map the outcome to
//! an exit code (documented in the README and in `--help`).

use std::process::ExitCode;

use clap::Parser;
use lsq_sync::cli::Cli;
use lsq_sync::commands;
use lsq_sync::config::LogFormat;
use lsq_sync::exit::ExitStatus;
use lsq_sync::progress::LogWriter;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // clap exits with 2 on a usage error, as documented.
    let cli = Cli::parse();
    let settings = match commands::settings_for(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            init_logging(commands::early_log_format(&cli));
            eprintln!("lsq-sync: {e}");
            return ExitCode::from(ExitStatus::Usage.code());
        }
    };
    init_logging(settings.log_format);
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

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("lsq_sync=info,warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Logging set up twice is a programming error, but not one worth failing a run for.
    let _ = result;
}
