//! Running an import: the pipeline, wired: `ledger -> batch -> pace -> send -> report`.
//!
//! [`crate::import::plan`] reads and validates the whole input once and records every row in
//! the ledger before anything is sent (or finds the unfinished run to resume). Running the plan
//! is this module's job: calls a resumed run left in flight are checked against the server
//! first. Then rows stream out of the ledger in order: a blocking thread turns them into
//! batches on a bounded channel; the send stage keeps up to `concurrency` batches in flight,
//! each waiting on the pacer; the report stage writes outcomes in input order. Every channel is
//! bounded, so memory does not grow with the input.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::abort::Abort;
use crate::config::Settings;
use crate::import::batch::{Batch, BatchRow, Batcher, RowWork};
use crate::import::plan::{ImportError, ImportJob, plan_run};
use crate::import::send::{Sendable, Sender};
use crate::import::validate::Schema;
use crate::input::rows::SourceRow;
use crate::ledger::{Ledger, LedgerError, RowState, RowUpdate, RunStatus, StoredRow};
use crate::lsq::api::{ActivityItem, DATE_TIME_FORMAT};
use crate::lsq::client::{ClientConfig, LsqClient};
use crate::lsq::counters::RunStats;
use crate::progress::Progress;
use crate::report::stats::RunSummary;
use crate::report::{
    CellFormat, ReportWriter, RowOutcome, create_report_file, outcome_of, write_from_ledger_as,
};

/// The activity to send for a pending row, with the `ActivityDateTime` chosen for a row that
/// has none (kept in the ledger, so every attempt and every run sends the same value).
fn sendable(row: &StoredRow, schema: &Schema) -> Result<Sendable, String> {
    let mut item: ActivityItem = schema
        .check(&SourceRow::of(row))
        .map_err(|p| p.to_string())?;
    let filled_date = if item.activity_date_time.is_none() {
        let date = row
            .sent_date_time
            .clone()
            .unwrap_or_else(|| chrono::Utc::now().format(DATE_TIME_FORMAT).to_string());
        item.activity_date_time = Some(date.clone());
        Some(date)
    } else {
        None
    };
    Ok(Sendable {
        number: row.number,
        item,
        filled_date,
    })
}

fn work_of(row: &StoredRow, schema: &Schema) -> RowWork {
    if let Some(outcome) = outcome_of(row) {
        return RowWork::Done(outcome);
    }
    match sendable(row, schema) {
        Ok(s) => RowWork::Send {
            item: s.item,
            filled_date: s.filled_date,
        },
        Err(problem) => RowWork::Done(RowOutcome::invalid(problem)),
    }
}

/// Runs an import to the end and returns its summary. An `Err` means nothing was sent (or, for a
/// report that cannot be written, that the run had to stop).
pub(crate) async fn run_import(job: &ImportJob) -> Result<RunSummary, ImportError> {
    let started = Instant::now();
    let settings = &job.settings;
    let client = LsqClient::new(&client_config(settings)?)?;
    let ledger = {
        let path = job.ledger.clone();
        let durability = settings.ledger_durability;
        Arc::new(
            tokio::task::spawn_blocking(move || Ledger::open(&path, durability))
                .await
                .map_err(|e| ImportError::Internal(e.to_string()))??,
        )
    };
    let plan = {
        let ledger = ledger.clone();
        let job = job.clone();
        tokio::task::spawn_blocking(move || plan_run(&ledger, &job))
            .await
            .map_err(|e| ImportError::Internal(e.to_string()))??
    };
    let run = plan.run;
    let client = client.matching_leads_by(plan.input.columns.match_by());
    let schema = Schema::for_input(&ledger.headers(run)?, &plan.input)
        .map_err(|source| ImportError::Schema {
            path: job.input.clone(),
            line: 1,
            source,
        })?
        .with_max_cell_bytes(settings.input_limits.max_cell_bytes);

    if !plan.resumed
        && let Some(limit) = settings.max_invalid
    {
        let counts = ledger.counts(run)?;
        let invalid = counts.get(&RowState::Invalid).copied().unwrap_or(0);
        if let Some(reason) = too_many_invalid(invalid, counts.values().sum(), limit) {
            return stop_before_sending(job, &ledger, run, reason, started).await;
        }
    }

    let api = settings.api(client);
    let counts = ledger.counts(run)?;
    let count = |s: RowState| counts.get(&s).copied().unwrap_or(0);
    let total: u64 = counts.values().sum();
    let to_send = count(RowState::Pending) + count(RowState::InFlight);
    let calls = to_send.div_ceil(settings.batch_size as u64);
    info!(
        "plan: {to_send} rows to send of {total} ({} invalid, {} already created) in about {calls} calls at {}: at least {:.1}s",
        count(RowState::Invalid),
        count(RowState::Created) + count(RowState::Skipped),
        settings.rate,
        api.pacer
            .spacing()
            .mul_f64(calls.saturating_sub(1) as f64)
            .as_secs_f64()
    );

    let stats = api.stats.clone();
    let abort = Abort::new();
    let pacer_for_summary = api.pacer.clone();
    let gate = api.gate.clone();
    let sender = Arc::new(Sender::new(
        api,
        abort.clone(),
        job.interrupt.clone(),
        ledger.clone(),
        run,
    ));

    if count(RowState::InFlight) > 0 {
        recover_in_flight(&sender, &ledger, run, &schema).await?;
    }

    let format = CellFormat::of(settings);
    let mut report = ReportWriter::with_format(
        &job.report,
        create_report_file(&job.report)?,
        &ledger.headers(run)?,
        format,
    )?;
    let concurrency = settings.concurrency;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(concurrency.max(4));
    let (outcome_tx, mut outcome_rx) = mpsc::channel(concurrency.max(4) * 2);

    let reader = {
        let ledger = ledger.clone();
        let interrupt = job.interrupt.clone();
        let batch_size = settings.batch_size;
        tokio::task::spawn_blocking(move || -> Result<(), LedgerError> {
            let mut batcher = Batcher::new(batch_size);
            let mut after = 0;
            while interrupt.flag().reason().is_none() {
                let chunk = ledger.rows(run, after, 1000)?;
                let Some(last) = chunk.last() else { break };
                after = last.number;
                for row in chunk {
                    let work = work_of(&row, &schema);
                    let source = SourceRow::from(row);
                    if let Some(batch) = batcher.push(BatchRow { source, work })
                        && batch_tx.blocking_send(batch).is_err()
                    {
                        return Ok(());
                    }
                }
            }
            if let Some(batch) = batcher.finish() {
                let _ = batch_tx.blocking_send(batch);
            }
            Ok(())
        })
    };

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

    let progress = Progress::new(total, job.progress);
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
    drop(outcome_rx);
    sending
        .await
        .map_err(|e| ImportError::Internal(format!("send stage: {e}")))?;
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => abort.trigger(format!("reading the ledger failed: {e}")),
        Err(e) => return Err(ImportError::Internal(format!("read stage: {e}"))),
    }
    if let Some(e) = report_failure {
        ledger.finish_run(run, RunStatus::Aborted)?;
        return Err(ImportError::Stopped(e.to_string()));
    }

    let after = ledger.counts(run)?;
    let unsettled = after.get(&RowState::Pending).copied().unwrap_or(0)
        + after.get(&RowState::InFlight).copied().unwrap_or(0);
    let interrupted = job.interrupt.status();
    let status = if interrupted.is_some() {
        RunStatus::Interrupted
    } else if abort.reason().is_some() || unsettled > 0 {
        RunStatus::Aborted
    } else {
        RunStatus::Finished
    };
    // The report is complete before the run is marked finished: a kill in between leaves a run
    // that the next invocation resumes (with nothing left to send), never a finished run with a
    // partial report, which would invite a re-import.
    let counts = if interrupted.is_some() {
        // Rows the run never reached are missing from the streamed report: rewrite it whole.
        drop(report);
        write_from_ledger_as(&ledger, run, &job.report, format)
            .map_err(|e| ImportError::Stopped(e.to_string()))?
    } else {
        report
            .finish()
            .map_err(|e| ImportError::Stopped(e.to_string()))?
    };
    ledger.finish_run(run, status)?;
    ledger.close();
    let late = RunStats::get(&stats.late_permits);
    if late > 0 {
        info!(
            "{late} calls waited for a fresh permit: the ledger took too long to record them in \
             flight, and leaving late could have put more than the quota in one window"
        );
    }
    let (outages, outage_time) = gate.as_ref().map(|gate| gate.outages()).unwrap_or_default();
    if let Some(gate) = &gate {
        gate.close("the run is over");
    }

    Ok(RunSummary {
        rows: counts.total(),
        counts,
        calls: RunStats::get(&stats.calls),
        rate_limited: RunStats::get(&stats.rate_limited),
        retries: RunStats::get(&stats.retries),
        ambiguous: RunStats::get(&stats.ambiguous),
        recovered: RunStats::get(&stats.recovered),
        isolation_calls: RunStats::get(&stats.isolation_calls),
        lookup_calls: RunStats::get(&stats.lookup_calls),
        probes: RunStats::get(&stats.probes),
        outages,
        outage_time,
        elapsed: started.elapsed(),
        aborted: abort.reason().map(|r| r.to_string()).or_else(|| {
            (interrupted.is_none() && unsettled > 0).then(|| {
                format!("{unsettled} rows could not be settled; run the same command again")
            })
        }),
        interrupted,
        ledger: Some((job.ledger.display().to_string(), run)),
        resumed: plan.resumed,
        quota: Some(settings.rate),
        discovered_quota: pacer_for_summary.discovered(),
        too_many_invalid: None,
    })
}

/// Why a run must not send, when more than `limit` percent of its `total` rows are invalid.
fn too_many_invalid(invalid: u64, total: u64, limit: f64) -> Option<String> {
    let share = if total == 0 {
        0.0
    } else {
        invalid as f64 * 100.0 / total as f64
    };
    (share > limit).then(|| {
        format!(
            "{invalid} of {total} rows ({share:.1}%) are invalid, more than --max-invalid {limit}%"
        )
    })
}

/// Ends a planned run without sending anything: every row that would have been sent is settled
/// as failed with `reason` (so the report accounts for it and `retry` can post it after the
/// file is fixed), the report is written whole, and the run is abandoned so that running the
/// fixed file again starts afresh instead of resuming this one.
async fn stop_before_sending(
    job: &ImportJob,
    ledger: &Ledger,
    run: i64,
    reason: String,
    started: Instant,
) -> Result<RunSummary, ImportError> {
    warn!("{reason}: nothing is sent");
    let not_sent = format!("not sent: the run stopped before sending because {reason}");
    let updates = ledger
        .rows_in_state(run, RowState::Pending)?
        .into_iter()
        .map(|row| RowUpdate {
            number: row.number,
            state: RowState::Failed,
            activity_id: None,
            error: Some(not_sent.clone()),
        })
        .collect();
    ledger.settle(run, None, "max-invalid", updates).await?;
    let counts = write_from_ledger_as(ledger, run, &job.report, CellFormat::of(&job.settings))?;
    ledger.finish_run(run, RunStatus::Abandoned)?;
    ledger.close();
    Ok(RunSummary {
        too_many_invalid: Some(reason),
        ..RunSummary::unsent(
            counts,
            started.elapsed(),
            (job.ledger.display().to_string(), run),
            job.settings.rate,
        )
    })
}

/// Rows a killed run left in flight: their call may or may not have created them. Ask the
/// server before anything is sent, in one check of all of them (one paged read per lead, not
/// per batch); found rows are settled as created, the rest go back to pending and are sent by
/// the main pass.
async fn recover_in_flight(
    sender: &Sender,
    ledger: &Ledger,
    run: i64,
    schema: &Schema,
) -> Result<(), ImportError> {
    let rows = ledger.rows_in_state(run, RowState::InFlight)?;
    let sendables: Vec<Sendable> = rows
        .iter()
        .filter_map(|r| sendable(r, schema).ok())
        .collect();
    let mut leads: Vec<&str> = sendables
        .iter()
        .map(|r| r.item.related_prospect_id.as_str())
        .collect();
    leads.sort_unstable();
    leads.dedup();
    info!(
        rows = rows.len(),
        leads = leads.len(),
        "checking rows the previous run left in flight"
    );
    let _ = sender
        .check_server(
            None,
            "a call was in flight when the previous run stopped",
            sendables,
        )
        .await;
    Ok(())
}

fn client_config(settings: &Settings) -> Result<ClientConfig, ImportError> {
    settings.client_config().map_err(ImportError::Setup)
}
