//! Send stage: a [`Batch`] in, its [`BatchOutcome`] out. Posts the batch's valid rows in one bulk
//! call, every attempt through the pacer, and retries what is worth retrying.
//!
//! What a response means is decided by `client::classify`; this module only acts on the
//! verdict: map rows on success, back off and retry on rate limits and transient failures, fail
//! the rows on data errors, and stop the whole run on bad credentials.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::abort::Abort;
use crate::api::BulkResponse;
use crate::batch::Batch;
use crate::client::{LsqClient, RowResult, Verdict, bulk_row_results, classify};
use crate::pace::Pacer;
use crate::report::{BatchOutcome, ReportedRow, RowOutcome};
use crate::stats::RunStats;

/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with jitter: between half and all of `base * 2^(attempt-1)`, capped.
    /// The jitter spreads the retries of batches that failed together.
    pub fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        capped.mul_f64(0.5 + 0.5 * rng.f64())
    }

    /// The wait before the next attempt: the server's `Retry-After` when it sent one (bounded,
    /// so a hostile value cannot park the run for hours), else [`RetryPolicy::backoff`].
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        match retry_after {
            Some(wait) => wait.min(MAX_RETRY_AFTER),
            None => self.backoff(attempt, rng),
        }
    }
}

/// Everything a sender task needs; shared by all of them.
pub struct Sender {
    pub client: LsqClient,
    pub pacer: Arc<Pacer>,
    pub stats: Arc<RunStats>,
    pub abort: Abort,
    pub retry: RetryPolicy,
}

impl Sender {
    /// Sends one batch and returns the outcome of each of its rows, invalid ones included.
    pub async fn send(&self, batch: Batch) -> BatchOutcome {
        let items = batch.items();
        let mut results = if items.is_empty() {
            Vec::new()
        } else {
            self.post_with_retries(batch.seq, &items).await
        }
        .into_iter();
        let rows = batch
            .rows
            .into_iter()
            .map(|row| {
                let outcome = match row.check {
                    Err(problem) => RowOutcome::invalid(problem.to_string()),
                    Ok(_) => results.next().unwrap_or_else(|| {
                        RowOutcome::failed("internal error: no result for this row")
                    }),
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

    async fn post_with_retries(
        &self,
        seq: u64,
        items: &[&crate::api::ActivityItem],
    ) -> Vec<RowOutcome> {
        let all = |outcome: RowOutcome| vec![outcome; items.len()];
        let mut rng = fastrand::Rng::with_seed(seq);
        let mut attempt = 0;
        loop {
            if let Some(reason) = self.abort.reason() {
                return all(RowOutcome::failed(format!(
                    "not sent: the run was aborted: {reason}"
                )));
            }
            attempt += 1;
            self.pacer.acquire().await;
            if let Some(reason) = self.abort.reason() {
                return all(RowOutcome::failed(format!(
                    "not sent: the run was aborted: {reason}"
                )));
            }
            RunStats::add(&self.stats.calls);
            if attempt > 1 {
                RunStats::add(&self.stats.retries);
            }
            let verdict = match self.client.post_bulk(items).await {
                Ok(reply) => classify::<BulkResponse>(&reply),
                Err(e) => Verdict::from_call_error(&e),
            };
            let (problem, retry_after) = match verdict {
                Verdict::Success(response) => {
                    debug!(batch = seq, rows = items.len(), attempt, "batch posted");
                    return bulk_row_results(items.len(), &response)
                        .into_iter()
                        .map(|r| match r {
                            RowResult::Created(id) => RowOutcome::created(id),
                            RowResult::Rejected(message) => RowOutcome::failed(message),
                        })
                        .collect();
                }
                Verdict::RateLimited {
                    retry_after,
                    message,
                    ..
                } => {
                    RunStats::add(&self.stats.rate_limited);
                    (format!("rate limited: {message}"), retry_after)
                }
                Verdict::Transient(message) => (message, None),
                Verdict::DataError(message)
                | Verdict::Rejected(message)
                | Verdict::Unreadable(message) => {
                    warn!(
                        batch = seq,
                        rows = items.len(),
                        "batch not created: {message}"
                    );
                    return all(RowOutcome::failed(message));
                }
                Verdict::Unauthorized(message) | Verdict::Fatal(message) => {
                    self.abort.trigger(message.clone());
                    return all(RowOutcome::failed(message));
                }
            };
            if attempt >= self.retry.max_attempts {
                warn!(batch = seq, attempt, "giving up: {problem}");
                return all(RowOutcome::failed(format!(
                    "gave up after {attempt} attempts: {problem}"
                )));
            }
            let wait = self.retry.delay(attempt, retry_after, &mut rng);
            warn!(
                batch = seq,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "{problem}; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.abort.triggered() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=8 {
            let full =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            let d = policy.backoff(attempt, &mut rng);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3)), &mut rng),
            Duration::from_secs(3)
        );
    }
}
