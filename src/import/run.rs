//! Running an import: the pipeline, wired: `ledger -> batch -> pace -> send -> report`.
//!
//! [`crate::import::plan`] reads and validates the whole input once and records every row in
//! the ledger before anything is sent (or finds the unfinished run to resume). Running the plan
//! is this module's job: calls a resumed run left in flight are checked against the server
//! first. Then rows stream out of the ledger in order: a blocking thread turns them into
//! batches on a bounded channel; the send stage keeps up to `concurrency` batches in flight,
//! each waiting on the pacer; the report stage writes outcomes in input order. Every channel is
//! bounded, so memory does not grow with the input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::abort::Abort;
use crate::config::Settings;
use crate::import::batch::{Batch, BatchRow, Batcher, RowWork};
use crate::import::deletion::{DeletionError, DeletionTally, run_deletions};
use crate::import::keyed::{Classifier, KeyColumn, SyncPlan};
use crate::import::plan::{ImportError, ImportJob, plan_run};
use crate::import::send::{Sendable, Sender};
use crate::import::validate::Schema;
use crate::input::rows::SourceRow;
use crate::ledger::{Ledger, LedgerError, RowAction, RowState, RowUpdate, RunStatus, StoredRow};
use crate::lsq::api::{ActivityItem, DATE_TIME_FORMAT, FieldValue, UpdateItem};
use crate::lsq::client::{ClientConfig, LsqClient};
use crate::lsq::counters::RunStats;
use crate::progress::Progress;
use crate::report::stats::{NotSent, RunSummary};
use crate::report::{
    CellFormat, ReportWriter, RowOutcome, StatusCounts, TrailingReport, create_report_file,
    outcome_of, write_from_ledger_as,
};

/// The activity to send for a pending row, with the `ActivityDateTime` chosen for a row that
/// has none (kept in the ledger, so every attempt and every run sends the same value). A keyed
/// create carries its key in the key field (`--key-field`).
fn sendable(row: &StoredRow, schema: &Schema, key: Option<&KeyColumn>) -> Result<Sendable, String> {
    let mut item: ActivityItem = schema
        .check(&SourceRow::of(row))
        .map_err(|p| p.to_string())?;
    if let (Some(key), Some(value)) = (key, &row.sync_key) {
        key.stamp(&mut item, value);
    }
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
        update: None,
    })
}

/// The Bulk Update item of a keyed row whose note or fields changed: the note (empty clears
/// it), every field the row gives, the key field, and an empty value for each field the
/// activity had (as the key map knows it) that the row no longer gives.
fn update_of(
    row: &StoredRow,
    schema: &Schema,
    key: &KeyColumn,
    ledger: &Ledger,
) -> Result<UpdateItem, String> {
    let mut item = schema
        .check(&SourceRow::of(row))
        .map_err(|p| p.to_string())?;
    let target = row
        .target_id
        .clone()
        .ok_or("internal error: an update without the activity it updates")?;
    let sync_key = row.sync_key.clone().unwrap_or_default();
    key.stamp(&mut item, &sync_key);
    let had = ledger
        .known_key(&sync_key)
        .map_err(|e| e.to_string())?
        .map(|known| known.entry.fields)
        .unwrap_or_default();
    for field in had {
        if !item.fields.iter().any(|f| f.schema_name == field) {
            item.fields.push(FieldValue {
                schema_name: field,
                value: String::new(),
            });
        }
    }
    Ok(UpdateItem {
        prospect_activity_id: target,
        activity_note: item.activity_note.unwrap_or_default(),
        fields: item.fields,
    })
}

fn work_of(row: &StoredRow, schema: &Schema, key: Option<&KeyColumn>, ledger: &Ledger) -> RowWork {
    if let Some(outcome) = outcome_of(row) {
        return RowWork::Done(outcome);
    }
    match (row.action, key) {
        (RowAction::Update, Some(key)) => match update_of(row, schema, key, ledger) {
            Ok(item) => RowWork::Update { item },
            Err(problem) => RowWork::Done(RowOutcome::invalid(problem)),
        },
        // A deletion the deletion stage did not get to (the run stopped first).
        (RowAction::Delete | RowAction::Replace, _) => {
            RowWork::Done(RowOutcome::failed(crate::report::NOT_SENT))
        }
        _ => match sendable(row, schema, key) {
            Ok(s) => RowWork::Send {
                item: s.item,
                filled_date: s.filled_date,
            },
            Err(problem) => RowWork::Done(RowOutcome::invalid(problem)),
        },
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
    let mut plan = {
        let ledger = ledger.clone();
        let job = job.clone();
        tokio::task::spawn_blocking(move || plan_run(&ledger, &job))
            .await
            .map_err(|e| ImportError::Internal(e.to_string()))??
    };
    let run = plan.run;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "planned");
    let client = client.matching_leads_by(plan.input.columns.match_by());
    let headers = ledger.headers(run)?;
    let schema = Schema::for_input(&headers, &plan.input)
        .map_err(|source| ImportError::Schema {
            path: job.input.clone(),
            line: 1,
            source,
        })?
        .with_max_cell_bytes(settings.input_limits.max_cell_bytes);
    let key = KeyColumn::find(&headers, &settings.sync).map_err(|message| ImportError::Key {
        path: job.input.clone(),
        message,
    })?;
    let api = settings.api(client);

    let mut deletions_planned = 0;
    if !plan.resumed
        && let Some(key) = &key
    {
        let classifier = plan.keyed.take().ok_or_else(|| {
            ImportError::Internal("a keyed run planned without its classifier".into())
        })?;
        let classified = classify(
            job,
            &ledger,
            run,
            key,
            headers.len(),
            &api,
            started,
            classifier,
        )
        .await?;
        match classified {
            Classified::Stop(summary) => return Ok(*summary),
            Classified::Go(deletions) => deletions_planned = deletions,
        }
    }

    if !plan.resumed
        && let Some(limit) = settings.max_invalid
    {
        let counts = ledger.counts(run)?;
        let invalid = counts.get(&RowState::Invalid).copied().unwrap_or(0);
        if let Some(reason) = too_many_invalid(invalid, counts.values().sum(), limit) {
            return stop_before_sending(
                job,
                &ledger,
                run,
                not_sent("too_many_invalid", reason),
                started,
            )
            .await;
        }
    }
    if key.is_some() && !plan.resumed {
        ledger.planned(run)?;
    }
    let counts = ledger.counts(run)?;
    let count = |s: RowState| counts.get(&s).copied().unwrap_or(0);
    let total: u64 = counts.values().sum();
    let to_send = count(RowState::Pending) + count(RowState::InFlight);
    let calls = to_send.div_ceil(settings.batch_size as u64);
    let settled_keyed = if key.is_some() {
        format!(
            ", {} unchanged, {} conflicts, {} deleted",
            count(RowState::Unchanged),
            count(RowState::Conflict),
            count(RowState::Deleted)
        )
    } else {
        String::new()
    };
    info!(
        "plan: {to_send} rows to send of {total} ({} invalid, {} already created{settled_keyed}) in about {calls} calls at {}: at least {:.1}s",
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
        recover_in_flight(&sender, &ledger, run, &schema, key.as_ref()).await?;
    }
    // A new run knows from its plan whether it deletes anything; a resumed one looks.
    let deletes = plan.resumed || deletions_planned > 0;
    if key.is_some() && deletes {
        let deleted = run_deletions(
            &ledger,
            run,
            &sender.api,
            job.deleter.as_deref(),
            &abort,
            &job.interrupt,
        )
        .await
        .map_err(|e| match e {
            DeletionError::Ledger(e) => ImportError::Ledger(e),
            DeletionError::Internal(m) => ImportError::Internal(m),
        })?;
        if deleted != DeletionTally::default() {
            info!(
                "deletions: {} activities of keys the input lacks queued, {} moved rows' old \
                 activities queued, {} could not be deleted",
                deleted.deleted, deleted.replaced, deleted.failed
            );
        }
    }

    let format = CellFormat::of(settings);
    let report = ReportWriter::with_format(
        &job.report,
        create_report_file(&job.report)?,
        &ledger.headers(run)?,
        format,
    )?;
    let concurrency = settings.concurrency;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(concurrency.max(4));
    let (outcome_tx, mut outcome_rx) = mpsc::channel(concurrency.max(4) * 2);

    let keyed = key.is_some();
    let reader = {
        let ledger = ledger.clone();
        let interrupt = job.interrupt.clone();
        let batch_size = settings.batch_size;
        tokio::task::spawn_blocking(move || -> Result<(), LedgerError> {
            // Without a key every row rides in one stream of batches, in input order, so the
            // report is written as they come back. A keyed sync sends adds and updates in
            // calls of their own, each full, so its rows go to a batcher per kind (and its
            // report is written from the ledger at the end).
            let mut batchers = [
                Batcher::new(batch_size),
                Batcher::new(batch_size),
                Batcher::new(batch_size),
            ];
            let mut after = 0;
            while interrupt.flag().reason().is_none() {
                // A keyed sync reads only the rows still to send: its report trails them from
                // the ledger, so the settled ones (most rows, on a quiet night) need no trip.
                let chunk = if keyed {
                    // A small first chunk: the first call should not wait for a scan of the
                    // whole run when the rows to send are few and far between.
                    let limit = if after == 0 { 50 } else { 1000 };
                    ledger.unsettled_rows(run, after, limit)?
                } else {
                    ledger.rows(run, after, 1000)?
                };
                let Some(last) = chunk.last() else { break };
                after = last.number;
                for row in chunk {
                    let work = work_of(&row, &schema, key.as_ref(), &ledger);
                    let stream = match (&work, keyed) {
                        (_, false) | (RowWork::Send { .. }, true) => 0,
                        (RowWork::Update { .. }, true) => 1,
                        (RowWork::Done(_), true) => 2,
                    };
                    let source = SourceRow::from(row);
                    if let Some(batch) = batchers[stream].push(BatchRow { source, work })
                        && batch_tx.blocking_send(batch).is_err()
                    {
                        return Ok(());
                    }
                }
            }
            for batcher in &mut batchers {
                if let Some(batch) = batcher.finish() {
                    let _ = batch_tx.blocking_send(batch);
                }
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
    // A keyed sync's calls do not follow input order: its report trails the first row still to
    // be sent, written from the ledger.
    let mut trailing = None;
    let mut report = Some(report);
    if keyed {
        trailing = report.take().map(TrailingReport::new);
    }
    while let Some(outcome) = outcome_rx.recv().await {
        let written = match (&mut trailing, &mut report) {
            (Some(trailing), _) => trailing.catch_up(&ledger, run),
            (None, Some(report)) => report.accept(outcome),
            (None, None) => Ok(0),
        };
        match written {
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
    let counts = match (interrupted, trailing, report) {
        (Some(_), _, _) | (None, None, None) => {
            // Rows the run never reached are missing from the streamed report: write it whole.
            write_from_ledger_as(&ledger, run, &job.report, format)
        }
        (None, Some(trailing), _) => trailing.finish(&ledger, run),
        (None, None, Some(report)) => report.finish(),
    }
    .map_err(|e| ImportError::Stopped(e.to_string()))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reported"
    );
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
        // What certainty cost, both kinds of read together; the account-wide ones apart too.
        lookup_calls: RunStats::get(&stats.lookup_calls) + RunStats::get(&stats.check_reads),
        lookup_reads_by_code: RunStats::get(&stats.check_reads),
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
        not_sent: None,
        keyed,
        key_reads: RunStats::get(&stats.reads),
    })
}

/// What needs every row of a keyed run recorded: the key map read back from the account
/// (`--key-field`, when the ledger did not know some keys and `api` is given) and the rows it
/// knew nothing of classified again, then the keys the input lacks.
async fn finish_classifying(
    ledger: &Arc<Ledger>,
    run: i64,
    key: &KeyColumn,
    width: usize,
    api: Option<&crate::lsq::calls::Api>,
    mut classifier: Classifier,
) -> Result<SyncPlan, ImportError> {
    let read = match api {
        Some(api) if classifier.plan.create > 0 => {
            crate::import::keymap::read_back(api, ledger, run, key).await?
        }
        _ => Default::default(),
    };
    let (ledger, key) = (ledger.clone(), key.clone());
    let plan = tokio::task::spawn_blocking(move || -> Result<SyncPlan, LedgerError> {
        if read.added > 0 {
            classifier.reclassify_unknown(&ledger, run)?;
        }
        classifier.add_missing(&ledger, run, &key, width)?;
        Ok(classifier.plan)
    })
    .await
    .map_err(|e| ImportError::Internal(e.to_string()))??;
    Ok(plan)
}

/// A keyed dry run (`--dry-run` with `--key`): the run planned and classified as it would be
/// (the key map read back from the account when `--key-field` asks for it: reads, nothing
/// written), in a copy of the ledger that is thrown away. The report says of every line what
/// the run would do; the plan's counts and calls go to the log.
pub(crate) async fn dry_run_keyed(
    job: &ImportJob,
) -> Result<(SyncPlan, StatusCounts), ImportError> {
    let scratch = std::env::temp_dir().join(format!(
        "lsq-sync-plan-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ImportError::Setup(format!("cannot make a scratch folder: {e}")))?;
    let result = plan_in(job, &scratch.join("plan.ledger")).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn plan_in(
    job: &ImportJob,
    scratch: &std::path::Path,
) -> Result<(SyncPlan, StatusCounts), ImportError> {
    let durability = job.settings.ledger_durability;
    if job.ledger.exists() {
        Ledger::open(&job.ledger, durability)?.copy_to(scratch)?;
    }
    let job = ImportJob {
        ledger: scratch.to_path_buf(),
        fresh: true,
        ..job.clone()
    };
    let ledger = Arc::new(Ledger::open(scratch, durability)?);
    let mut plan = {
        let (ledger, job) = (ledger.clone(), job.clone());
        tokio::task::spawn_blocking(move || plan_run(&ledger, &job))
            .await
            .map_err(|e| ImportError::Internal(e.to_string()))??
    };
    let headers = ledger.headers(plan.run)?;
    let key = KeyColumn::find(&headers, &job.settings.sync)
        .map_err(|message| ImportError::Key {
            path: job.input.clone(),
            message,
        })?
        .ok_or_else(|| ImportError::Internal("a keyed dry run without a key".into()))?;
    let classifier = plan.keyed.take().ok_or_else(|| {
        ImportError::Internal("a keyed run planned without its classifier".into())
    })?;
    let api = match key.field {
        Some(_) => Some(
            job.settings
                .api(LsqClient::new(&client_config(&job.settings)?)?),
        ),
        None => None,
    };
    let sync = finish_classifying(
        &ledger,
        plan.run,
        &key,
        headers.len(),
        api.as_ref(),
        classifier,
    )
    .await?;
    let counts = crate::report::write_plan_from_ledger(
        &ledger,
        plan.run,
        &job.report,
        CellFormat::of(&job.settings),
    )?;
    ledger.close();
    Ok((sync, counts))
}

/// What a keyed run's classification led to.
enum Classified {
    /// Send: every row is classified and the deletions (how many), if any, are allowed.
    Go(u64),
    /// Nothing is to be sent (too many deletions, deletions not confirmed, or only a plan was
    /// asked for): the run's summary.
    Stop(Box<RunSummary>),
}

/// The second half of planning a keyed run: read the key map back from the account when asked
/// (`--key-field`) and classify again the rows it knew nothing of, add the keys the input lacks,
/// and decide whether the deletions may go ahead (the `--max-delete` guard, and confirmation).
#[allow(clippy::too_many_arguments)]
async fn classify(
    job: &ImportJob,
    ledger: &Arc<Ledger>,
    run: i64,
    key: &KeyColumn,
    width: usize,
    api: &crate::lsq::calls::Api,
    started: Instant,
    classifier: Classifier,
) -> Result<Classified, ImportError> {
    let plan = finish_classifying(ledger, run, key, width, Some(api), classifier).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "classified"
    );
    info!("sync plan: {plan}");
    let deletions = plan.deletions();
    let most = job.settings.sync.max_delete.most(plan.known);
    if deletions > most {
        let reason = format!(
            "{deletions} activities would be deleted ({} keys the input lacks, {} moved rows) of \
             {} keys known, more than --max-delete {} allows ({most})",
            plan.delete, plan.replace, plan.known, job.settings.sync.max_delete
        );
        let summary = stop_before_sending(
            job,
            ledger,
            run,
            not_sent("too_many_deletes", reason),
            started,
        )
        .await?;
        return Ok(Classified::Stop(Box::new(summary)));
    }
    if deletions > 0
        && let Err(why) = crate::confirm::ask(
            job.yes,
            &format!("delete {deletions} activities (--delete-missing, --replace-changed)"),
        )
        .await
    {
        let summary =
            stop_before_sending(job, ledger, run, not_sent("not_confirmed", why), started).await?;
        return Ok(Classified::Stop(Box::new(summary)));
    }
    Ok(Classified::Go(deletions))
}

fn not_sent(status: &'static str, reason: String) -> NotSent {
    NotSent { status, reason }
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
    stop: NotSent,
    started: Instant,
) -> Result<RunSummary, ImportError> {
    let reason = &stop.reason;
    warn!("{reason}: nothing is sent");
    let not_sent = format!("not sent: the run stopped before sending because {reason}");
    let updates = ledger
        .rows_in_state(run, RowState::Pending)?
        .into_iter()
        .map(|row| RowUpdate::new(row.number, RowState::Failed, None, Some(not_sent.clone())))
        .collect();
    ledger.settle(run, None, "max-invalid", updates).await?;
    let counts = write_from_ledger_as(ledger, run, &job.report, CellFormat::of(&job.settings))?;
    ledger.finish_run(run, RunStatus::Abandoned)?;
    ledger.close();
    Ok(RunSummary {
        keyed: job.settings.sync.key.is_some(),
        not_sent: Some(stop),
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
/// the main pass. A keyed sync's updates and deletions in flight go back to pending without a
/// check: an update is idempotent and is sent again, a deletion is planned again from a fresh
/// listing.
async fn recover_in_flight(
    sender: &Sender,
    ledger: &Ledger,
    run: i64,
    schema: &Schema,
    key: Option<&KeyColumn>,
) -> Result<(), ImportError> {
    let since = ledger.in_flight_since(run)?;
    let (rows, again): (Vec<StoredRow>, Vec<StoredRow>) = ledger
        .rows_in_state(run, RowState::InFlight)?
        .into_iter()
        .partition(|r| r.action == RowAction::Create);
    if !again.is_empty() {
        let applied = match key {
            Some(key) => updates_applied(&sender.api, ledger, run, key, &again, since).await,
            None => Vec::new(),
        };
        info!(
            rows = again.len(),
            applied = applied.len(),
            "updates and deletions the previous run left in flight: the updates found applied \
             are settled, the rest are sent again"
        );
        let settled = again
            .iter()
            .map(|r| {
                if applied.contains(&r.number) {
                    RowUpdate::new(r.number, RowState::Updated, r.target_id.clone(), None)
                } else {
                    RowUpdate::new(r.number, RowState::Pending, None, None)
                }
            })
            .collect();
        ledger
            .settle(run, None, "in flight when the run stopped", settled)
            .await?;
    }
    let sendables: Vec<Sendable> = rows
        .iter()
        .filter_map(|r| sendable(r, schema, key).ok())
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
            // When those calls left is not known here: an account-wide read of their codes
            // would have to list every date, which its estimate weighs.
            crate::import::certainty::CallInDoubt::default(),
            "a call was in flight when the previous run stopped",
            sendables,
        )
        .await;
    Ok(())
}

/// Which of a killed run's updates in flight the account already shows (so that sending them
/// again would apply them twice): the activities of their codes modified since the earliest
/// call in flight left (less a margin for the server's clock) are read back, and an update is
/// applied when its activity now holds what the row says. Without notes in the server's
/// answer nothing can be confirmed, and every update is sent again (it is idempotent).
async fn updates_applied(
    api: &crate::lsq::calls::Api,
    ledger: &Ledger,
    run: i64,
    key: &KeyColumn,
    rows: &[StoredRow],
    since: Option<String>,
) -> Vec<u64> {
    let mut wanted: HashMap<String, (u64, Option<String>, i64)> = HashMap::new();
    for row in rows.iter().filter(|r| r.action == RowAction::Update) {
        if let (Some(target), Ok(Some(entry))) =
            (&row.target_id, ledger.sync_entry(run, row.number))
        {
            wanted.insert(
                target.to_ascii_lowercase(),
                (row.number, entry.content, entry.event),
            );
        }
    }
    let mut codes: Vec<i64> = wanted.values().map(|(_, _, code)| *code).collect();
    codes.sort_unstable();
    codes.dedup();
    let since = since.and_then(|t| {
        chrono::NaiveDateTime::parse_from_str(&t, DATE_TIME_FORMAT)
            .ok()
            .map(|t| {
                (t - chrono::Duration::minutes(5))
                    .format(DATE_TIME_FORMAT)
                    .to_string()
            })
    });
    let reader = crate::lsq::by_event::EventReader::new(api.clone());
    let field = key.field.clone().unwrap_or_default();
    let mut applied = Vec::new();
    for code in codes {
        let query = crate::lsq::by_event::EventQuery {
            event: code,
            modified_from: since.clone(),
            keep_empty_values: true,
            ..Default::default()
        };
        let walked = reader
            .walk_event::<crate::lsq::activities::FetchError>(&query, |page| {
                for activity in page {
                    let Some((number, content, _)) = wanted.get(&activity.id) else {
                        continue;
                    };
                    let now = crate::import::keymap::entry_from_account(&activity, &field);
                    if now.content.is_some() && now.content == *content {
                        applied.push(*number);
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = walked {
            warn!(
                "cannot read back code {code} to see which updates were applied ({e}); they are \
                 sent again"
            );
        }
    }
    applied
}

fn client_config(settings: &Settings) -> Result<ClientConfig, ImportError> {
    settings.client_config().map_err(ImportError::Setup)
}
