//! The import pipeline, wired: `input -> validate -> batch -> pace -> send -> report`.
//!
//! A first pass reads and validates the whole file without sending anything ([`plan`]): file-level
//! problems surface before the first call, and the plan (rows, calls, minimum time the quota
//! allows) is known up front. The second pass streams: a blocking thread reads, validates and
//! batches into a bounded channel; the send stage keeps up to `concurrency` batches in flight,
//! each waiting on the pacer; the report stage writes outcomes in input order. Every channel is
//! bounded, so memory does not grow with the input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::abort::Abort;
use crate::batch::{Batch, BatchRow, Batcher};
use crate::client::{ClientConfig, ClientError, LsqClient};
use crate::config::Settings;
use crate::input::{CsvSource, InputError};
use crate::pace::Pacer;
use crate::progress::Progress;
use crate::report::{ReportError, ReportWriter, create_report_file};
use crate::send::{RetryPolicy, Sender};
use crate::stats::{RunStats, RunSummary};
use crate::validate::{Schema, SchemaError};

/// What an import will do, known before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportPlan {
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    /// Bulk calls needed if none is retried.
    pub calls: u64,
}

impl ImportPlan {
    /// The least time the quota allows for the calls (the first call leaves at once).
    pub fn minimum_time(&self, pacer_spacing: Duration) -> Duration {
        pacer_spacing.mul_f64(self.calls.saturating_sub(1) as f64)
    }
}

/// An import that cannot start or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{path}: {source}")]
    Schema { path: PathBuf, source: SchemaError },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Setup(String),
    /// The run had started and had to stop; the report holds what was written.
    #[error("the run stopped: {0}")]
    Stopped(ReportError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ImportError {
    /// Problems found before anything was sent are usage errors (2); a run that had to stop
    /// after sending is aborted (3).
    pub fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            ImportError::Stopped(_) | ImportError::Internal(_) => crate::exit::ExitStatus::Aborted,
            _ => crate::exit::ExitStatus::Usage,
        }
    }
}

/// What to import, where to, and how.
#[derive(Debug, Clone)]
pub struct ImportJob {
    pub input: PathBuf,
    pub report: PathBuf,
    pub settings: Settings,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
}

/// Reads and validates the whole file once, sending nothing.
pub fn plan(path: &Path, batch_size: usize) -> Result<ImportPlan, ImportError> {
    let source = CsvSource::open(path)?;
    let schema = schema_of(&source)?;
    let mut batcher = Batcher::new(batch_size);
    let mut plan = ImportPlan {
        rows: 0,
        valid: 0,
        invalid: 0,
        calls: 0,
    };
    let mut count = |batch: Batch| plan.calls += u64::from(batch.valid_count() > 0);
    let mut counts = (0u64, 0u64);
    for row in source {
        let row = row?;
        let check = schema.check(&row);
        if check.is_ok() {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        if let Some(batch) = batcher.push(BatchRow { source: row, check }) {
            count(batch);
        }
    }
    if let Some(batch) = batcher.finish() {
        count(batch);
    }
    plan.valid = counts.0;
    plan.invalid = counts.1;
    plan.rows = counts.0 + counts.1;
    Ok(plan)
}

fn schema_of(source: &CsvSource) -> Result<Schema, ImportError> {
    Schema::from_headers(source.headers()).map_err(|source_error| ImportError::Schema {
        path: source.path().to_path_buf(),
        source: source_error,
    })
}

/// Runs an import to the end and returns its summary. An `Err` means nothing was sent (or, for a
/// report that cannot be written, that the run had to stop).
pub async fn run_import(job: &ImportJob) -> Result<RunSummary, ImportError> {
    let started = Instant::now();
    let settings = &job.settings;

    let plan = {
        let input = job.input.clone();
        let batch_size = settings.batch_size;
        tokio::task::spawn_blocking(move || plan(&input, batch_size))
            .await
            .map_err(|e| ImportError::Internal(e.to_string()))??
    };
    let client = LsqClient::new(&client_config(settings)?)?;
    let pacer = Arc::new(Pacer::new(settings.rate, settings.pacing_margin));
    info!(
        "plan: {} valid rows of {} in {} calls at {}: at least {:.1}s",
        plan.valid,
        plan.rows,
        plan.calls,
        settings.rate,
        plan.minimum_time(pacer.spacing()).as_secs_f64()
    );

    let source = CsvSource::open(&job.input)?;
    let schema = schema_of(&source)?;
    let mut report = ReportWriter::new(
        &job.report,
        create_report_file(&job.report)?,
        source.headers(),
    )?;

    let stats = Arc::new(RunStats::default());
    let abort = Abort::new();
    let sender = Arc::new(Sender {
        client,
        pacer,
        stats: stats.clone(),
        abort: abort.clone(),
        retry: RetryPolicy {
            max_attempts: settings.max_attempts.get(),
            base: settings.backoff_base,
            max: settings.backoff_max,
        },
    });

    let concurrency = settings.concurrency;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(concurrency.max(4));
    let (outcome_tx, mut outcome_rx) = mpsc::channel(concurrency.max(4) * 2);

    let batch_size = settings.batch_size;
    let reader = tokio::task::spawn_blocking(move || -> Result<(), InputError> {
        let mut batcher = Batcher::new(batch_size);
        for row in source {
            let row = row?;
            let check = schema.check(&row);
            if let Some(batch) = batcher.push(BatchRow { source: row, check })
                && batch_tx.blocking_send(batch).is_err()
            {
                return Ok(());
            }
        }
        if let Some(batch) = batcher.finish() {
            let _ = batch_tx.blocking_send(batch);
        }
        Ok(())
    });

    let sending = tokio::spawn(async move {
        futures::stream::poll_fn(move |cx| batch_rx.poll_recv(cx))
            .for_each_concurrent(concurrency, |batch| {
                let sender = sender.clone();
                let outcome_tx = outcome_tx.clone();
                async move {
                    let outcome = sender.send(batch).await;
                    // The report stage only goes away when the run is being torn down.
                    let _ = outcome_tx.send(outcome).await;
                }
            })
            .await;
    });

    let progress = Progress::new(plan.rows, job.progress);
    let mut report_failure = None;
    while let Some(outcome) = outcome_rx.recv().await {
        match report.accept(outcome) {
            Ok(rows) => progress.advance(rows),
            Err(e) => {
                abort.trigger(format!("the report cannot be written: {e}"));
                report_failure = Some(e);
                break;
            }
        }
    }
    progress.finish();
    if let Some(e) = report_failure {
        drop(outcome_rx);
        let _ = sending.await;
        let _ = reader.await;
        return Err(ImportError::Stopped(e));
    }

    sending
        .await
        .map_err(|e| ImportError::Internal(format!("send stage: {e}")))?;
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!("reading stopped early: {e}");
            abort.trigger(format!("reading the input failed: {e}"));
        }
        Err(e) => return Err(ImportError::Internal(format!("read stage: {e}"))),
    }
    let counts = report.finish().map_err(ImportError::Stopped)?;

    Ok(RunSummary {
        rows: counts.total(),
        counts,
        calls: RunStats::get(&stats.calls),
        rate_limited: RunStats::get(&stats.rate_limited),
        retries: RunStats::get(&stats.retries),
        elapsed: started.elapsed(),
        aborted: abort.reason().map(|r| r.to_string()),
    })
}

fn client_config(settings: &Settings) -> Result<ClientConfig, ImportError> {
    let host = settings.host.clone().ok_or_else(|| {
        ImportError::Setup(
            "no API host: set --host, LSQ_HOST or [api] host in the config file (or use --simulate)".into(),
        )
    })?;
    let missing = |name: &str| {
        ImportError::Setup(format!(
            "no {name}: set LSQ_{} in the environment or [api] {} in the config file (or use --simulate)",
            name.to_ascii_uppercase().replace(' ', "_"),
            name.replace(' ', "_")
        ))
    };
    Ok(ClientConfig {
        host,
        access_key: settings
            .access_key
            .clone()
            .ok_or_else(|| missing("access key"))?,
        secret_key: settings
            .secret_key
            .clone()
            .ok_or_else(|| missing("secret key"))?,
        connect_timeout: settings.connect_timeout,
        request_timeout: settings.request_timeout,
        max_idle_connections: settings.concurrency,
    })
}
