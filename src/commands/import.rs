//! `lsq-sync import`: resolves where to send (a real host, or the embedded simulator with
//! `--simulate`), runs the pipeline, prints the summary on stderr.

use std::time::Duration;

use tracing::info;

use crate::cli::ImportArgs;
use crate::config::{Secret, Settings};
use crate::exit::ExitStatus;
use crate::pipeline::{ImportJob, run_import};
use crate::simulator::{RunningSimulator, SimConfig};

use super::CommandError;

pub async fn run(args: ImportArgs, mut settings: Settings) -> Result<ExitStatus, CommandError> {
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

    let job = ImportJob {
        input: args.input,
        report: args.out,
        settings,
        progress: !args.no_progress,
    };
    let result = run_import(&job).await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    let summary = result?;
    eprintln!(
        "lsq-sync import: {} -> {}\n{summary}",
        job.input.display(),
        job.report.display()
    );
    Ok(summary.exit_status())
}
