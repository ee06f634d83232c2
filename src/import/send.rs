//! Send stage: a [`Batch`] in, its [`BatchOutcome`] out. Posts the batch's rows in one bulk
//! call, every attempt through the outage gate and the pacer, every attempt recorded in the
//! ledger once its permit is in hand (just before it leaves) and settled after, so that a crash
//! at any moment loses nothing and doubles nothing, and a kill leaves in flight only the calls
//! that could really have reached the server.
//!
//! What a response means is decided by `client::classify`; this module acts on the verdict:
//! - success: map rows by `RowNumber`;
//! - rate limited, or not sent at all: wait and retry;
//! - outcome unknown (timeout, dropped connection, 5xx): ask the server which rows exist, record
//!   those, and re-send only the rest, because the bulk endpoint is not idempotent. Such checks
//!   wait until the API answers again ([`crate::lsq::outage::Gate::healthy`]) and are pooled: a
//!   round waits a moment for more batches in doubt to join (at most [`POOL_WAIT`], less when
//!   every batch being sent is already waiting), then checks them all at once, each activity
//!   code by whichever read costs fewer calls, its leads one by one or its recent activities
//!   account-wide (`certainty`; [`Sender::check_server`]);
//! - the API failing across the board (an outage): the gate pauses every batch; failures in
//!   an outage do not count against `--max-attempts`;
//! - the batch refused as a whole for its data: split it in halves until the bad rows are alone
//!   (about 2 x log2(25) extra calls per bad row);
//! - bad credentials or wrong host: stop the whole run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use tracing::{debug, info, warn};

use crate::abort::{Abort, Interrupt};
use crate::import::batch::{Batch, RowWork};
use crate::import::certainty::{CallInDoubt, CheckMemory, Created, LAST_MARGIN, RowInDoubt};
use crate::ledger::{Ledger, RowState, RowUpdate};
use crate::lsq::activities::Fetcher;
use crate::lsq::api::{ActivityItem, BulkResponse, UpdateItem};
use crate::lsq::by_event::{CountedAs, EventReader};
use crate::lsq::calls::Api;
use crate::lsq::client::{RowResult, UpdateResult, Verdict, bulk_row_results, update_row_results};
use crate::lsq::counters::RunStats;
use crate::report::{
    BatchOutcome, NOT_SENT, OUTCOME_UNKNOWN, ReportedRow, RowOutcome, outcome_of_state,
};

/// A row on its way to the server.
#[derive(Debug, Clone)]
pub(crate) struct Sendable {
    /// The row's number in the run (ledger key, report `RowNumber`).
    pub number: u64,
    pub item: ActivityItem,
    /// `ActivityDateTime` chosen by lsq-sync for a row that had none.
    pub filled_date: Option<String>,
    /// Keyed sync: the row updates an activity in place (Bulk Update) instead of adding one.
    /// A call carries rows of one kind only.
    pub update: Option<UpdateItem>,
}

/// A bulk call's success body: the add's, or the update's (whose shape is not documented).
enum Answer {
    Added(BulkResponse),
    Updated(serde_json::Value),
}

/// Everything a sender task needs; shared by all of them.
pub(crate) struct Sender {
    /// The run's client, pacer, counters, retry policy and outage gate: every call of the run
    /// goes through it.
    pub api: Api,
    /// Raised when nothing more can succeed (bad keys, wrong host, ledger unwritable).
    pub abort: Abort,
    /// Raised by Ctrl-C or SIGTERM.
    pub interrupt: Interrupt,
    /// Where every attempt is recorded, in flight before it leaves and settled after.
    pub ledger: Arc<Ledger>,
    /// The run whose rows are sent.
    pub run: i64,
    /// Get Activities through the same [`Api`], for checking calls whose outcome is unknown.
    pub fetcher: Fetcher,
    /// Get Activities by Activity Event through the same [`Api`], for the same checks when an
    /// activity code's account-wide read costs less than reading its leads.
    pub reader: EventReader,
    /// Batches waiting for a check of their unknown outcome; the next round takes them all.
    pub doubts: std::sync::Mutex<Vec<Doubt>>,
    /// One check round at a time, held until its findings are in the ledger, so two checks
    /// cannot claim the same server activity for two rows; it guards what earlier rounds
    /// learned about the account-wide read.
    pub checking: tokio::sync::Mutex<CheckMemory>,
    /// Batches being sent right now (inside [`Sender::send`]): when every one of them is waiting
    /// for a check, no more can join the round, which then starts at once.
    pub active: AtomicUsize,
    /// Woken when a batch joins the doubts or a batch is done, for the round waiting to start.
    pub pool_changed: tokio::sync::Notify,
    /// What this run created: canaries ([`CallInDoubt::canaries`]) and counts per code.
    pub created: std::sync::Mutex<Created>,
}

/// Longest a check round waits for more batches in doubt to join it, from the moment the first
/// one queued. A round's account-wide reads cost about the same for one batch as for twenty,
/// so rounds that each take a few batches cost several times what one round taking them all
/// does (20,000 rows at 200 calls/s with 3% in doubt: three rounds and about 70 reads with a
/// 1 s wait, two and about 45 with 2 s); the wait is cut short once every batch being sent is
/// waiting for the check, and a batch in doubt holds no permit while it waits.
pub(crate) const POOL_WAIT: Duration = Duration::from_secs(2);

/// Rows of one call whose outcome is unknown, waiting for a check round.
pub(crate) struct Doubt {
    /// The call that left them in doubt (`None` for rows a previous run left in flight).
    call: Option<i64>,
    /// When that call left and its canaries, for an account-wide read.
    sent: CallInDoubt,
    /// When the rows joined the queue, which bounds how long a round waits for company.
    queued: tokio::time::Instant,
    /// Why, for the ledger and the report.
    why: String,
    rows: Vec<Sendable>,
    /// Where the round sends what it found: rows created, and rows to send again.
    reply: tokio::sync::oneshot::Sender<Checked>,
}

/// What a check found: rows found created (settled), and rows not found (to send again).
type Checked = (Vec<(u64, RowOutcome)>, Vec<Sendable>);

impl Sender {
    /// A sender with no check pending.
    pub(crate) fn new(
        api: Api,
        abort: Abort,
        interrupt: Interrupt,
        ledger: Arc<Ledger>,
        run: i64,
    ) -> Sender {
        Sender {
            fetcher: Fetcher::new(api.clone()),
            reader: EventReader {
                counted_as: CountedAs::Checks,
                freeze: true,
                ..EventReader::new(api.clone())
            },
            api,
            abort,
            interrupt,
            ledger,
            run,
            doubts: std::sync::Mutex::new(Vec::new()),
            checking: tokio::sync::Mutex::new(CheckMemory::default()),
            active: AtomicUsize::new(0),
            pool_changed: tokio::sync::Notify::new(),
            created: std::sync::Mutex::new(Created::default()),
        }
    }
}

/// Counts a batch in [`Sender::active`] while it is being sent.
struct Active<'a>(&'a Sender);

impl<'a> Active<'a> {
    fn enter(sender: &'a Sender) -> Active<'a> {
        sender.active.fetch_add(1, Ordering::SeqCst);
        Active(sender)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        // A round may be waiting for every batch left to be in doubt.
        self.0.pool_changed.notify_waiters();
    }
}

/// Whether a check round should start: the `queued` batches in doubt are all the `active` ones
/// being sent (nothing else can join), or the first has waited `waited`, as long as `bound`.
fn round_ready(queued: usize, active: usize, waited: Duration, bound: Duration) -> bool {
    queued >= active || waited >= bound
}

impl Sender {
    /// Sends one batch and returns the outcome of each of its rows, in row order.
    pub(crate) async fn send(&self, batch: Batch) -> BatchOutcome {
        let _active = Active::enter(self);
        let mut adds = Vec::new();
        let mut updates = Vec::new();
        for row in &batch.rows {
            match &row.work {
                RowWork::Send { item, filled_date } => adds.push(Sendable {
                    number: row.source.number,
                    item: item.clone(),
                    filled_date: filled_date.clone(),
                    update: None,
                }),
                RowWork::Update { item } => updates.push(Sendable {
                    number: row.source.number,
                    item: ActivityItem::default(),
                    filled_date: None,
                    update: Some(item.clone()),
                }),
                RowWork::Done(_) => {}
            }
        }
        let mut results: HashMap<u64, RowOutcome> = HashMap::new();
        let mut rng = fastrand::Rng::with_seed(batch.seq);
        for rows in [adds, updates] {
            if !rows.is_empty() {
                results.extend(self.deliver(rows, 0, &mut rng).await);
            }
        }
        let rows = batch
            .rows
            .into_iter()
            .map(|row| {
                let outcome = match row.work {
                    RowWork::Done(outcome) => outcome,
                    RowWork::Send { .. } | RowWork::Update { .. } => {
                        results.remove(&row.source.number).unwrap_or_else(|| {
                            RowOutcome::failed("internal error: no result for this row")
                        })
                    }
                };
                ReportedRow {
                    source: row.source,
                    outcome,
                }
            })
            .collect();
        BatchOutcome {
            seq: batch.seq,
            rows,
        }
    }

    /// Why nothing new may be sent, if that is the case.
    fn stopping(&self) -> Option<String> {
        if let Some(reason) = self.abort.reason() {
            return Some(format!("not sent: the run was aborted: {reason}"));
        }
        self.interrupt.flag().reason().map(|_| NOT_SENT.to_string())
    }

    async fn pause(&self, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.abort.triggered() => {}
            () = self.interrupt.flag().triggered() => {}
        }
    }

    /// Waits while the API is down (or, with `answered`, until it has answered since its last
    /// failure). A gate closed for good (patience exhausted, keys refused) stops the run.
    async fn wait_for_api(&self, answered: bool) {
        let Some(gate) = self.api.gate.clone() else {
            return;
        };
        let result = tokio::select! {
            result = async move {
                if answered { gate.healthy().await } else { gate.ready().await }
            } => result,
            () = self.abort.triggered() => Ok(()),
            () = self.interrupt.flag().triggered() => Ok(()),
        };
        if let Err(closed) = result {
            self.abort.trigger(closed.to_string());
        }
    }

    /// How late after its permit a call may still leave: half of what the pacer's margin leaves
    /// over in one quota window (CALLS spacings minus the window).
    fn steady_bound(&self) -> Duration {
        let quota = self.api.pacer.quota();
        let slack = self
            .api
            .pacer
            .spacing()
            .saturating_mul(quota.calls.get())
            .saturating_sub(quota.window);
        // With no margin there is no slack to keep; a few ms is what a commit always costs.
        (slack / 2).max(Duration::from_millis(5))
    }

    /// Records an outcome in the ledger; if that fails, nothing more may be sent.
    async fn record(&self, call: Option<i64>, outcome: &str, rows: Vec<RowUpdate>) {
        if let Err(e) = self.ledger.settle(self.run, call, outcome, rows).await {
            self.abort
                .trigger(format!("the ledger cannot be written: {e}"));
        }
    }

    /// Posts `rows` until each has a final outcome (or the run stops). `depth` > 0 for the halves
    /// of a batch refused as a whole. The rows are all adds or all updates (see [`Sendable`]):
    /// an update whose outcome is unknown is idempotent and simply sent again; an add is
    /// checked on the server first.
    fn deliver<'a>(
        &'a self,
        rows: Vec<Sendable>,
        depth: u32,
        rng: &'a mut fastrand::Rng,
    ) -> BoxFuture<'a, Vec<(u64, RowOutcome)>> {
        Box::pin(async move {
            let mut pending = rows;
            let mut done: Vec<(u64, RowOutcome)> = Vec::new();
            let mut attempt = 0u32;
            // Refusals for the rate, which do not use up attempts (see `max_rate_limited`).
            let mut rate_limited = 0u32;
            // Calls actually sent for these rows; attempts can be given back after an outage.
            let mut sent = 0u32;
            let mut last_problem = String::new();
            while !pending.is_empty() {
                if let Some(reason) = self.stopping() {
                    done.extend(
                        pending
                            .drain(..)
                            .map(|r| (r.number, RowOutcome::failed(reason.clone()))),
                    );
                    break;
                }
                if let Some(message) =
                    self.api
                        .retry
                        .exhausted(attempt, rate_limited, &last_problem)
                {
                    warn!(rows = pending.len(), "{message}");
                    let updates = updates(&pending, RowState::Failed, Some(&message));
                    self.record(None, &message, updates).await;
                    done.extend(
                        pending
                            .drain(..)
                            .map(|r| (r.number, RowOutcome::failed(message.clone()))),
                    );
                    break;
                }
                attempt += 1;
                self.wait_for_api(false).await;
                let epoch = self.api.epoch();
                let sent_at = self.api.pacer.acquire().await;
                if self.stopping().is_some() {
                    continue;
                }
                if !self.api.gate_open() {
                    // The API went down while this batch queued for its permit: nothing left,
                    // nothing is in doubt, and the attempt does not count.
                    attempt -= 1;
                    continue;
                }
                // In flight only now, with the permit in hand: a kill while the batch was
                // queued leaves nothing to check. The write is a group commit, so the time
                // between permit and request stays short; bench_outage.py measures that the
                // server still never sees more than the quota in a window.
                // Taken before the request leaves, for an account-wide check if it comes to that.
                let sent_call = self.call_in_doubt(&pending);
                let numbers = pending.iter().map(|r| r.number).collect();
                let fills = pending
                    .iter()
                    .filter_map(|r| r.filled_date.clone().map(|d| (r.number, d)))
                    .collect();
                let call = match self.ledger.begin_call(self.run, numbers, fills).await {
                    Ok(call) => call,
                    Err(e) => {
                        self.abort
                            .trigger(format!("the ledger cannot be written: {e}"));
                        continue;
                    }
                };
                // The server counts arrivals: a request that leaves later after its permit than
                // the next one after its own shrinks the spacing the pacer kept. A commit slower
                // than half the pacer's slack in a window (a busy disk) would risk CALLS+1
                // arrivals in one window, so such a call waits for a fresh permit instead.
                let sent_at = if sent_at.elapsed() > self.steady_bound() {
                    RunStats::add(&self.api.stats.late_permits);
                    let again = self.api.pacer.acquire().await;
                    if self.stopping().is_some() {
                        self.record(
                            Some(call),
                            "not sent: the run is stopping",
                            updates(&pending, RowState::Pending, None),
                        )
                        .await;
                        continue;
                    }
                    again
                } else {
                    sent_at
                };
                sent += 1;
                if sent > 1 {
                    RunStats::add(&self.api.stats.retries);
                }
                if depth > 0 {
                    RunStats::add(&self.api.stats.isolation_calls);
                }
                let verdict = match self.exchange(sent_at, &pending).await {
                    // An update is idempotent: sending it again is the check, so a lost answer
                    // is retried like a failure that carried nothing.
                    Verdict::Unknown(message) if pending.iter().any(|r| r.update.is_some()) => {
                        RunStats::add(&self.api.stats.ambiguous);
                        Verdict::Transient(message)
                    }
                    verdict => verdict,
                };
                match verdict {
                    Verdict::Success(answer) => {
                        let results = row_results(&pending, &answer);
                        let mut settled = Vec::with_capacity(pending.len());
                        // Rows the answer leaves in doubt: added ones are checked on the server
                        // below, updates are sent again.
                        let mut unsure = Vec::new();
                        let mut created = Vec::new();
                        for (row, result) in pending.drain(..).zip(results) {
                            let update = match result {
                                RowResult::Unknown(why) => {
                                    last_problem = why;
                                    unsure.push(row);
                                    continue;
                                }
                                RowResult::Created(id) => {
                                    let state = if row.update.is_some() {
                                        RowState::Updated
                                    } else {
                                        created.push((
                                            row.item.activity_event,
                                            canary(&row.item, &id),
                                        ));
                                        RowState::Created
                                    };
                                    RowUpdate::new(row.number, state, Some(id), None)
                                }
                                RowResult::Rejected(message) => RowUpdate::new(
                                    row.number,
                                    RowState::Failed,
                                    None,
                                    Some(message),
                                ),
                            };
                            settled.push(update);
                        }
                        self.note_created(created);
                        debug!(call, rows = settled.len(), attempt, "batch posted");
                        done.extend(settled.iter().map(outcome_of_update));
                        if unsure.first().is_some_and(|r| r.update.is_some()) {
                            settled.extend(updates(&unsure, RowState::Pending, None));
                            self.record(Some(call), "answered", settled).await;
                            pending = unsure;
                        } else {
                            self.record(Some(call), "answered", settled).await;
                            if !unsure.is_empty() {
                                let (found, missing) = self
                                    .settle_in_doubt(call, sent_call, &last_problem, unsure)
                                    .await;
                                done.extend(found);
                                pending = missing;
                            }
                        }
                    }
                    Verdict::RateLimited {
                        retry_after,
                        message,
                        ..
                    } => {
                        RunStats::add(&self.api.stats.rate_limited);
                        last_problem = format!("rate limited: {message}");
                        attempt -= 1;
                        rate_limited += 1;
                        let wait = self.api.retry.after_rate_limit(retry_after);
                        self.retry_later(call, attempt, &last_problem, &pending, wait)
                            .await;
                    }
                    Verdict::Transient(message) => {
                        last_problem = message;
                        let wait = if self.api.gate_open() {
                            self.api.retry.backoff(attempt, rng)
                        } else {
                            Duration::ZERO
                        };
                        self.retry_later(call, attempt, &last_problem, &pending, wait)
                            .await;
                        if self.api.in_outage_since(epoch) {
                            // Failed in an outage, which the gate waits out for every batch.
                            attempt -= 1;
                        }
                    }
                    Verdict::Unknown(message) => {
                        last_problem = message;
                        let (found, missing) = self
                            .settle_in_doubt(call, sent_call, &last_problem, pending)
                            .await;
                        done.extend(found);
                        pending = missing;
                        if self.api.outage_began_since(epoch) {
                            // In doubt because of an outage, now over and checked: not this
                            // batch's failure, and no reason to wait before sending again.
                            attempt -= 1;
                        } else if !pending.is_empty() && self.stopping().is_none() {
                            self.pause(self.api.retry.backoff(attempt, rng)).await;
                        }
                    }
                    Verdict::DataError(message) if pending.len() > 1 => {
                        info!(
                            call,
                            rows = pending.len(),
                            "batch refused as a whole ({message}); splitting it to find the bad rows"
                        );
                        self.record(
                            Some(call),
                            &format!("refused as a whole: {message}"),
                            updates(&pending, RowState::Pending, None),
                        )
                        .await;
                        let right = pending.split_off(pending.len() / 2);
                        let left = std::mem::take(&mut pending);
                        done.extend(self.deliver(left, depth + 1, rng).await);
                        done.extend(self.deliver(right, depth + 1, rng).await);
                    }
                    Verdict::DataError(message) | Verdict::Rejected(message) => {
                        warn!(call, rows = pending.len(), "not created: {message}");
                        self.record(
                            Some(call),
                            &message,
                            updates(&pending, RowState::Failed, Some(&message)),
                        )
                        .await;
                        done.extend(
                            pending
                                .drain(..)
                                .map(|r| (r.number, RowOutcome::failed(message.clone()))),
                        );
                    }
                    Verdict::Unauthorized(message) | Verdict::Fatal(message) => {
                        self.abort.trigger(message.clone());
                        self.record(
                            Some(call),
                            &message,
                            updates(&pending, RowState::Pending, None),
                        )
                        .await;
                    }
                }
            }
            done
        })
    }

    /// One bulk call of `rows` (all adds, or all updates) with its permit in hand.
    async fn exchange(&self, sent_at: tokio::time::Instant, rows: &[Sendable]) -> Verdict<Answer> {
        let updates: Vec<&UpdateItem> = rows.iter().filter_map(|r| r.update.as_ref()).collect();
        if updates.is_empty() {
            let items: Vec<&ActivityItem> = rows.iter().map(|r| &r.item).collect();
            self.api
                .exchange::<BulkResponse>(sent_at, self.api.client.post_bulk(&items))
                .await
                .map(Answer::Added)
        } else {
            self.api
                .exchange::<serde_json::Value>(sent_at, self.api.client.post_update(&updates))
                .await
                .map(Answer::Updated)
        }
    }

    /// The call did not get through (rate limit, connection refused): its rows go back to pending,
    /// and the next attempt waits `wait`.
    async fn retry_later(
        &self,
        call: i64,
        attempt: u32,
        problem: &str,
        rows: &[Sendable],
        wait: Duration,
    ) {
        self.record(Some(call), problem, updates(rows, RowState::Pending, None))
            .await;
        warn!(
            call,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "{problem}; retrying"
        );
        self.pause(wait).await;
    }

    /// A call whose answer leaves `rows` in doubt (no answer, or one that does not say what
    /// became of them): counted, logged, and settled by asking the server what it created.
    async fn settle_in_doubt(
        &self,
        call: i64,
        sent: CallInDoubt,
        why: &str,
        rows: Vec<Sendable>,
    ) -> (Vec<(u64, RowOutcome)>, Vec<Sendable>) {
        RunStats::add(&self.api.stats.ambiguous);
        warn!(
            call,
            rows = rows.len(),
            "outcome unknown ({why}); checking what the server created"
        );
        self.check_server(Some(call), sent, why, rows).await
    }

    /// When a call leaves, and the canaries of its rows' codes: what a check needs of it should
    /// its outcome be unknown. Updates are never checked, so they need neither.
    fn call_in_doubt(&self, rows: &[Sendable]) -> CallInDoubt {
        if rows.first().is_none_or(|r| r.update.is_some()) {
            return CallInDoubt::default();
        }
        let canaries = self
            .lock_created()
            .canaries_of(rows.iter().map(|r| r.item.activity_event));
        CallInDoubt {
            started: Some(Utc::now()),
            canaries,
        }
    }

    /// Counts the activities a call created, `(code, canary)` in answer order (so the last
    /// canary of a code is kept).
    fn note_created(&self, created: Vec<(i64, Option<String>)>) {
        if created.is_empty() {
            return;
        }
        let mut so_far = self.lock_created();
        for (code, canary) in created {
            so_far.note(code, canary);
        }
    }

    fn lock_created(&self) -> std::sync::MutexGuard<'_, Created> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the server which of `rows` exist after a call with an unknown outcome (`call`), or
    /// after a run that stopped with them in flight (`call` = None). Rows found are settled as
    /// created; the rest go back to pending and are returned for sending again. If the check
    /// itself fails, the rows stay in flight in the ledger (the next run checks again) and are
    /// reported with the reason.
    ///
    /// The rows join a queue; a round takes everything queued, once the API has answered since
    /// its last failure (during an outage every batch in doubt waits here, and they are then
    /// checked together) and once more batches in doubt had a moment to join ([`POOL_WAIT`]).
    /// `sent` says when the call left, for an account-wide read (`CallInDoubt::default()` when
    /// that is not known).
    pub(crate) async fn check_server(
        &self,
        call: Option<i64>,
        sent: CallInDoubt,
        why: &str,
        rows: Vec<Sendable>,
    ) -> Checked {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.lock_doubts().push(Doubt {
            call,
            sent,
            queued: tokio::time::Instant::now(),
            why: why.to_string(),
            rows,
            reply,
        });
        self.pool_changed.notify_waiters();
        {
            let mut memory = self.checking.lock().await;
            // Queued before the lock was taken: either an earlier round took these rows and has
            // answered, or they are still queued and this round takes them.
            self.wait_for_api(true).await;
            self.gather().await;
            let doubts = std::mem::take(&mut *self.lock_doubts());
            if !doubts.is_empty() {
                self.check_round(doubts, &mut memory).await;
            }
        }
        answer.await.unwrap_or_else(|_| (Vec::new(), Vec::new()))
    }

    /// Waits, while batches are still being sent that could join the doubts, until the first
    /// queued has waited [`POOL_WAIT`] ([`round_ready`]); at once when the run is stopping or
    /// nothing is queued (an earlier round took it).
    async fn gather(&self) {
        loop {
            // Made before looking, so that a change after the look still wakes this wait.
            let changed = self.pool_changed.notified();
            let (queued, first) = {
                let doubts = self.lock_doubts();
                (doubts.len(), doubts.iter().map(|d| d.queued).min())
            };
            let Some(first) = first else { return };
            let active = self.active.load(Ordering::SeqCst);
            if self.stopping().is_some() || round_ready(queued, active, first.elapsed(), POOL_WAIT)
            {
                return;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(first + POOL_WAIT) => {}
                () = self.abort.triggered() => {}
                () = self.interrupt.flag().triggered() => {}
            }
        }
    }

    fn lock_doubts(&self) -> std::sync::MutexGuard<'_, Vec<Doubt>> {
        self.doubts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One check of every row in `doubts`, answered to each doubt's caller.
    async fn check_round(&self, doubts: Vec<Doubt>, memory: &mut CheckMemory) {
        let problem = if let Some(reason) = self.stopping() {
            Some(format!("not checked, the run is stopping ({reason})"))
        } else {
            self.api.client.lead_match_field().map(|field| {
                // Get Activities needs lead ids, and these rows name leads by another field:
                // there is no safe way to tell which were created, and re-sending could
                // duplicate them.
                format!("rows matched by {field} cannot be looked up; check them in LeadSquared")
            })
        };
        if let Some(problem) = problem {
            for doubt in doubts {
                let _ = doubt.reply.send(self.unresolved(doubt.rows, &problem));
            }
            return;
        }
        let all: Vec<&Sendable> = doubts.iter().flat_map(|d| d.rows.iter()).collect();
        let mut leads: Vec<String> = all
            .iter()
            .map(|r| r.item.related_prospect_id.trim().to_ascii_lowercase())
            .collect();
        leads.sort();
        leads.dedup();
        let reads_before = self.check_calls();
        let calls: Vec<CallInDoubt> = doubts.iter().map(|d| d.sent.clone()).collect();
        // How fast the import goes on writing while the round reads: the bulk calls made since
        // the round began (none once the input is done), asked once its first pages are in.
        let began = (tokio::time::Instant::now(), self.bulk_calls());
        let arrivals = || {
            let seconds = began.0.elapsed().as_secs_f64().max(0.05);
            let rate = self.bulk_calls().saturating_sub(began.1) as f64 / seconds;
            self.lock_created().arrivals(rate)
        };
        let in_doubt: Vec<RowInDoubt> = doubts
            .iter()
            .enumerate()
            .flat_map(|(call, d)| {
                d.rows.iter().map(move |r| RowInDoubt {
                    item: &r.item,
                    call,
                })
            })
            .collect();
        let matches = match self.ledger.known_activity_ids(&leads) {
            Ok(known) => crate::import::certainty::settle(
                &self.fetcher,
                &self.reader,
                &in_doubt,
                &calls,
                &known,
                &arrivals,
                memory,
            )
            .await
            .map_err(|e| {
                if let crate::lsq::activities::FetchError::Unauthorized(m)
                | crate::lsq::activities::FetchError::Fatal(m) = &e
                {
                    self.abort.trigger(m.clone());
                }
                e.to_string()
            }),
            Err(e) => Err(e.to_string()),
        };
        let matches = match matches {
            Ok(matches) => matches,
            Err(problem) => {
                for doubt in doubts {
                    let _ = doubt.reply.send(self.unresolved(doubt.rows, &problem));
                }
                return;
            }
        };
        let (lookups, by_code) = {
            let (lookups, by_code) = self.check_calls();
            (lookups - reads_before.0, by_code - reads_before.1)
        };
        let rows = all.len();
        let resend_calls = rows.div_ceil(crate::lsq::api::MAX_BATCH) as u64;
        let batches = doubts.len();
        let mut matches = matches.into_iter();
        let mut found_in_all = 0;
        for doubt in doubts {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            let mut settled = Vec::new();
            for (row, matched) in doubt.rows.into_iter().zip(matches.by_ref()) {
                match matched {
                    Some(id) => {
                        RunStats::add(&self.api.stats.recovered);
                        settled.push(RowUpdate::new(
                            row.number,
                            RowState::Created,
                            Some(id.clone()),
                            None,
                        ));
                        found.push((row.number, RowOutcome::created(id)));
                    }
                    None => {
                        settled.push(RowUpdate::new(row.number, RowState::Pending, None, None));
                        missing.push(row);
                    }
                }
            }
            found_in_all += found.len();
            self.record(
                doubt.call,
                &format!(
                    "outcome unknown ({}): {} found created",
                    doubt.why,
                    found.len()
                ),
                settled,
            )
            .await;
            let _ = doubt.reply.send((found, missing));
        }
        info!(
            batches,
            rows,
            leads = leads.len(),
            lookups,
            by_code,
            found = found_in_all,
            "checked what the server created"
        );
        let cost = lookups + by_code;
        if cost > resend_calls {
            info!(
                "checking {rows} rows cost {cost} reads, more than the {resend_calls} calls \
                 sending them again would; they are checked all the same, because sending again \
                 could duplicate whatever the server created"
            );
        }
    }

    /// Bulk calls made so far: every call but the checks' reads and the outage probes.
    fn bulk_calls(&self) -> u64 {
        let stats = &self.api.stats;
        RunStats::get(&stats.calls)
            .saturating_sub(RunStats::get(&stats.lookup_calls))
            .saturating_sub(RunStats::get(&stats.check_reads))
            .saturating_sub(RunStats::get(&stats.probes))
    }

    /// The run's checking calls so far: Get Activities of a Lead, and account-wide reads.
    fn check_calls(&self) -> (u64, u64) {
        let stats = &self.api.stats;
        (
            RunStats::get(&stats.lookup_calls),
            RunStats::get(&stats.check_reads),
        )
    }

    fn unresolved(
        &self,
        rows: Vec<Sendable>,
        problem: &str,
    ) -> (Vec<(u64, RowOutcome)>, Vec<Sendable>) {
        warn!(
            rows = rows.len(),
            "cannot check which rows the server created: {problem}"
        );
        let message = format!("{OUTCOME_UNKNOWN} ({problem})");
        (
            rows.into_iter()
                .map(|r| (r.number, RowOutcome::failed(message.clone())))
                .collect(),
            Vec::new(),
        )
    }
}

/// What an answer says of each row sent, in order; an updated row is `Created` with the id it
/// updated.
fn row_results(rows: &[Sendable], answer: &Answer) -> Vec<RowResult> {
    match answer {
        Answer::Added(response) => bulk_row_results(rows.len(), response),
        Answer::Updated(body) => {
            let ids: Vec<&str> = rows
                .iter()
                .map(|r| {
                    r.update
                        .as_ref()
                        .map_or("", |u| u.prospect_activity_id.as_str())
                })
                .collect();
            update_row_results(&ids, body)
                .into_iter()
                .zip(&ids)
                .map(|(result, id)| match result {
                    UpdateResult::Updated => RowResult::Created(id.to_string()),
                    UpdateResult::Rejected(message) => RowResult::Rejected(message),
                    UpdateResult::Unknown(why) => RowResult::Unknown(why),
                })
                .collect()
        }
    }
}

fn updates(rows: &[Sendable], state: RowState, error: Option<&str>) -> Vec<RowUpdate> {
    rows.iter()
        .map(|r| RowUpdate::new(r.number, state, None, error.map(str::to_string)))
        .collect()
}

/// The id (lowercase) of a row just created, when it can serve as a canary of its code
/// ([`CallInDoubt::canaries`]): its date is earlier than now less [`LAST_MARGIN`], so that no
/// account-wide read that could need it would select it by its date (a row dated in the last
/// hour, or stamped with the time it was sent, is not one).
fn canary(item: &ActivityItem, id: &str) -> Option<String> {
    let dated = item
        .activity_date_time
        .as_deref()
        .and_then(crate::lsq::window::parse_api_second)?;
    (dated < (Utc::now() - LAST_MARGIN).timestamp()).then(|| id.trim().to_ascii_lowercase())
}

/// What the report says of a row just settled (created or failed).
fn outcome_of_update(update: &RowUpdate) -> (u64, RowOutcome) {
    let outcome = outcome_of_state(
        update.state,
        update.activity_id.as_deref(),
        update.error.as_deref(),
    )
    .unwrap_or_else(|| RowOutcome::failed(update.error.clone().unwrap_or_default()));
    (update.number, outcome)
}

#[cfg(test)]
mod tests;
