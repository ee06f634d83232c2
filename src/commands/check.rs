//! `lsq-sync check`: verifies keys and host, and with `--input` the file's activity codes and
//! custom fields, before a run. Thin: the checks live in [`crate::ops::check`]; the list goes to
//! stdout (it is the command's output), one line per check.

use std::io::Write;

use crate::cli::CheckArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::lsq::client::LsqClient;
use crate::ops::check::{read_input_usage, run_checks};

use super::CommandError;

pub(crate) async fn run(args: CheckArgs, settings: Settings) -> Result<ExitStatus, CommandError> {
    let config = settings.client_config().map_err(CommandError::Usage)?;
    // The file is read first: a file that cannot be imported is a usage error before any call.
    let usage = match &args.input {
        Some(path) => Some(read_input_usage(path, &settings)?),
        None => None,
    };
    let client = LsqClient::new(&config).map_err(|e| CommandError::Usage(e.to_string()))?;
    let report = run_checks(&client, &config.host, usage.as_ref()).await;
    let mut stdout = std::io::stdout();
    // A closed stdout (`| head`) does not change what the checks found.
    let _ = writeln!(stdout, "lsq-sync check: {}\n{report}", config.host);
    Ok(report.exit_status())
}
