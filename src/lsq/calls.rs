//! The paced, counted, retried API call: what every call of a run shares, whatever it posts.
//!
//! [`Api`] is built once per run from the settings ([`crate::config::Settings::api`]): the HTTP client, the one
//! pacer, the run's counters, the [`RetryPolicy`] and the outage gate. Every call of the run,
//! posts of the send stage, Get Activities lookups and queued deletes, goes through it:
//! - [`Api::permit`] waits while the API is down, takes a pacer permit, and looks at the gate
//!   again (an outage can begin while a call queues);
//! - [`Api::exchange`] counts the call, sends it, tells the gate how it went, classifies the
//!   answer ([`crate::lsq::client::classify`]) and tells the pacer what the answer means for the pace;
//! - [`Api::call`] is the whole loop for lookups and deletes: permit, exchange, then retry what
//!   is worth retrying: transient failures with backoff or the server's `Retry-After`; rate
//!   limits at once (the pacer has already slowed every caller) or after `Retry-After`, not
//!   counted against `max_attempts` but bounded by [`RetryPolicy::max_rate_limited`], the
//!   posts' rule too; failures in an outage not counted at all. What any other
//!   answer means is the caller's to say ([`Judged`]). The send stage, which must record each
//!   attempt in the ledger between permit and request, runs its own loop over `permit` and
//!   `exchange`; the outage gate's probe ([`ApiProbe`]) is the two halves of one `exchange`,
//!   its failure going to the gate as the probe's outcome.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::warn;

use crate::lsq::client::{CallError, LsqClient, Reply, Verdict, classify};
use crate::lsq::counters::RunStats;
use crate::lsq::outage::{Gate, GateClosed, GatePolicy, Probe, ProbeOutcome, failure_of};
use crate::lsq::pace::Pacer;
use crate::lsq::quota::RateQuota;

/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// See [`RetryPolicy::max_rate_limited`].
const RATE_LIMITED_PER_ATTEMPT: u32 = 5;
/// See [`RetryPolicy::max_rate_limited`]: however few attempts are allowed for failures, a
/// shared quota may refuse a call this many times five over before its rows fail.
const RATE_LIMITED_MIN_ATTEMPTS: u32 = 10;

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
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
    pub(crate) fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        capped.mul_f64(0.5 + 0.5 * rng.f64())
    }

    /// Refusals for the rate one call may meet before its rows fail. They are the account's
    /// congestion, not the call's fault, so they do not use up `max_attempts`; but a quota that
    /// never has room must still end the run.
    pub(crate) fn max_rate_limited(&self) -> u32 {
        self.max_attempts
            .max(RATE_LIMITED_MIN_ATTEMPTS)
            .saturating_mul(RATE_LIMITED_PER_ATTEMPT)
    }

    /// The message of a call that is over without success, if it is: `attempts` counted ones
    /// reached `max_attempts`, or `rate_limited` refusals for the rate reached
    /// [`RetryPolicy::max_rate_limited`]. `problem` is the last failure's.
    pub(crate) fn exhausted(
        &self,
        attempts: u32,
        rate_limited: u32,
        problem: &str,
    ) -> Option<String> {
        if attempts >= self.max_attempts {
            Some(format!("gave up after {attempts} attempts: {problem}"))
        } else if rate_limited >= self.max_rate_limited() {
            Some(format!(
                "gave up after {rate_limited} refusals for the rate: {problem}"
            ))
        } else {
            None
        }
    }

    /// The wait after a refusal for the rate: the server's `Retry-After` if it sent one
    /// (bounded), else none. The pacer, which every attempt goes through, already slows or
    /// holds every caller; a per-call backoff on top would leave the quota unused while calls
    /// sleep, and grow with each refusal a burst of the others' causes.
    pub(crate) fn after_rate_limit(&self, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or(Duration::ZERO, |wait| wait.min(MAX_RETRY_AFTER))
    }

    /// The wait before the next attempt: the server's `Retry-After` when it sent one (bounded,
    /// so a hostile value cannot park the run for hours), else [`RetryPolicy::backoff`].
    pub(crate) fn delay(
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

/// The run's one way to the API: every call, first or retry, paced, counted and watched by the
/// outage gate. Cheap to clone (the pacer, counters and gate are shared).
#[derive(Clone)]
pub(crate) struct Api {
    /// The HTTP client bound to the account.
    pub client: LsqClient,
    /// The run's one pacer: every call, retries included, waits here for a permit.
    pub pacer: Arc<Pacer>,
    /// The run's counters: calls, rate-limit answers, retries and the rest.
    pub stats: Arc<RunStats>,
    /// How rate-limited and transient calls are retried.
    pub retry: RetryPolicy,
    /// The run's outage gate, when it has one (every command's run has; tests may not): no
    /// call leaves while the API is down, and failures during an outage are not counted
    /// against `retry.max_attempts`.
    pub gate: Option<Arc<Gate>>,
}

/// A pacer permit in hand: the call may leave now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permit {
    /// When the permit was granted, which the pacer needs to judge the answer.
    pub sent_at: Instant,
    /// The gate's outage count when the call started waiting, to tell afterwards whether a
    /// failure happened in an outage.
    pub epoch: Option<u64>,
}

/// What the caller of [`Api::call`] makes of an answer that is neither a rate limit nor a
/// transient failure (those the loop retries itself).
pub(crate) enum Judged<R, E> {
    /// The call is over, with this result.
    Done(Result<R, E>),
    /// Worth another attempt (after the backoff), failing for this reason.
    Retry(String),
}

impl Api {
    /// The client, a pacer keeping to `quota` (stretched by `margin`), fresh counters, the retry
    /// policy and an outage gate: built once per run (from the settings,
    /// [`crate::config::Settings::api`]), shared by every call of it.
    pub(crate) fn new(
        client: LsqClient,
        quota: RateQuota,
        margin: f64,
        retry: RetryPolicy,
        outage: GatePolicy,
    ) -> Api {
        let pacer = Arc::new(Pacer::new(quota, margin));
        let stats = Arc::new(RunStats::default());
        // Every run waits out an outage: imports, lookups, deletes and the reads around them.
        let probe = ApiProbe {
            api: Api {
                client: client.clone(),
                pacer: pacer.clone(),
                stats: stats.clone(),
                retry,
                gate: None,
            },
        };
        let gate = Gate::new(probe, outage);
        Api {
            client,
            pacer,
            stats,
            retry,
            gate: Some(gate),
        }
    }

    /// An API for tests: no outage gate, a pacer of `pace` (`"1000/1s"`) without margin, fresh
    /// counters.
    #[cfg(test)]
    pub(crate) fn for_tests(client: LsqClient, pace: &str, retry: RetryPolicy) -> Api {
        Api {
            client,
            pacer: Arc::new(Pacer::new(pace.parse().unwrap(), 0.0)),
            stats: Arc::new(RunStats::default()),
            retry,
            gate: None,
        }
    }

    /// The gate's count of outages so far ([`Gate::epoch`]); `None` without a gate.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.gate.as_ref().map(|gate| gate.epoch())
    }

    /// Whether calls may leave now: the gate is not in an outage (always, without a gate).
    pub(crate) fn gate_open(&self) -> bool {
        self.gate.as_ref().is_none_or(|gate| gate.open())
    }

    /// Whether an outage began since the gate's count was `epoch`.
    pub(crate) fn outage_began_since(&self, epoch: Option<u64>) -> bool {
        matches!((&self.gate, epoch), (Some(gate), Some(epoch)) if gate.epoch() != epoch)
    }

    /// Whether an outage began since the gate's count was `epoch`, or one is on now: a failure
    /// then is the outage's, not the call's.
    pub(crate) fn in_outage_since(&self, epoch: Option<u64>) -> bool {
        self.outage_began_since(epoch) || (epoch.is_some() && !self.gate_open())
    }

    /// Waits while the API is down, then for a pacer permit. `Ok(None)` when the API went down
    /// while the call queued for its permit: the caller waits again, and the attempt does not
    /// count. An error when the gate closed for good (patience exhausted, keys refused).
    pub(crate) async fn permit(&self) -> Result<Option<Permit>, GateClosed> {
        let epoch = self.epoch();
        if let Some(gate) = &self.gate {
            gate.ready().await?;
        }
        let sent_at = self.pacer.acquire().await;
        if !self.gate_open() {
            return Ok(None);
        }
        Ok(Some(Permit { sent_at, epoch }))
    }

    /// One attempt with its permit in hand: counts the call, sends `request`, tells the gate
    /// whether the API answered, classifies the answer and tells the pacer what it means for the
    /// pace (announcing a lower limit the server named).
    pub(crate) async fn exchange<T: DeserializeOwned>(
        &self,
        sent_at: Instant,
        request: impl Future<Output = Result<Reply, CallError>>,
    ) -> Verdict<T> {
        let result = self.send(request).await;
        self.judge(sent_at, result)
    }

    /// The first half of [`Api::exchange`]: counts the call, sends it, and tells the gate
    /// whether the API answered.
    async fn send(
        &self,
        request: impl Future<Output = Result<Reply, CallError>>,
    ) -> Result<Reply, CallError> {
        RunStats::add(&self.stats.calls);
        let result = request.await;
        if let Some(gate) = &self.gate {
            match failure_of(&result) {
                Some(problem) => gate.failed(&problem),
                None => gate.answered(),
            }
        }
        result
    }

    /// The second half of [`Api::exchange`]: what the answer to the call that left at `sent_at`
    /// means, told to the pacer.
    fn judge<T: DeserializeOwned>(
        &self,
        sent_at: Instant,
        result: Result<Reply, CallError>,
    ) -> Verdict<T> {
        let verdict = match result {
            Ok(reply) => classify::<T>(&reply),
            Err(e) => Verdict::from_call_error(&e),
        };
        // Every call shares the account's quota: a 429 on a lookup says as much about the
        // window as a 429 on a post.
        if let Some(adopted) = self.pacer.answer(sent_at, &verdict) {
            warn!(
                "the account's limit is {adopted}, lower than the configured {}: using {adopted} for the rest of the run",
                self.pacer.configured()
            );
        }
        verdict
    }

    /// A call, repeated until it is over: each attempt through [`Api::permit`] and
    /// [`Api::exchange`] (also counted in `counter`, when given). Transient failures are
    /// retried after [`RetryPolicy::delay`]; rate limits after [`RetryPolicy::after_rate_limit`],
    /// without using up an attempt, up to [`RetryPolicy::max_rate_limited`] of them; every other
    /// verdict goes to `judge`. Attempts that failed in an outage are not counted. `what` names
    /// the call in log lines; `closed` and `gave_up` make the caller's error of a gate closed for
    /// good and of attempts run out ([`RetryPolicy::exhausted`]).
    pub(crate) async fn call<T, R, E, F>(
        &self,
        what: &str,
        counter: Option<&AtomicU64>,
        mut request: impl FnMut() -> F,
        mut judge: impl FnMut(Verdict<T>) -> Judged<R, E>,
        closed: impl Fn(GateClosed) -> E,
        gave_up: impl Fn(String) -> E,
    ) -> Result<R, E>
    where
        T: DeserializeOwned,
        F: Future<Output = Result<Reply, CallError>>,
    {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0;
        // Refusals for the rate, which do not use up attempts (see `max_rate_limited`).
        let mut rate_limited = 0u32;
        // Requests made, whether or not their attempt counted: all but the first are retries.
        let mut made = 0u32;
        loop {
            attempt += 1;
            let Some(permit) = self.permit().await.map_err(&closed)? else {
                // The API went down while this call queued for its permit: wait, uncounted.
                attempt -= 1;
                continue;
            };
            if let Some(counter) = counter {
                RunStats::add(counter);
            }
            if made > 0 {
                RunStats::add(&self.stats.retries);
            }
            made += 1;
            let verdict = self.exchange::<T>(permit.sent_at, request()).await;
            let (problem, retry_after, for_the_rate) = match verdict {
                Verdict::RateLimited {
                    retry_after,
                    message,
                    ..
                } => {
                    RunStats::add(&self.stats.rate_limited);
                    (format!("rate limited: {message}"), retry_after, true)
                }
                Verdict::Transient(message) => (message, None, false),
                other => match judge(other) {
                    Judged::Done(result) => return result,
                    Judged::Retry(problem) => (problem, None, false),
                },
            };
            if for_the_rate {
                // The account's congestion, not the call's fault (the same rule as the
                // posts'): it does not use up an attempt.
                attempt -= 1;
                rate_limited += 1;
            } else if self.in_outage_since(permit.epoch) {
                // Failed in an outage: the gate waits it out; this attempt does not count.
                attempt -= 1;
                continue;
            }
            if let Some(message) = self.retry.exhausted(attempt, rate_limited, &problem) {
                return Err(gave_up(message));
            }
            // After a refusal for the rate the pacer has already slowed or held every caller:
            // only a `Retry-After` adds a wait.
            let wait = if for_the_rate {
                self.retry.after_rate_limit(retry_after)
            } else {
                self.retry.delay(attempt, retry_after, &mut rng)
            };
            warn!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "{what}: {problem}; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The outage gate's probe: `UserByAccessKey.Get`, a read that creates nothing (so a probe lost
/// mid-way adds no uncertainty), through the run's pacer and counters like every call. Its
/// [`Api`] has no gate: the probe's answer goes to the gate as the probe's outcome.
struct ApiProbe {
    /// The run's client, pacer and counters.
    api: Api,
}

impl Probe for ApiProbe {
    fn probe(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(async move {
            let api = &self.api;
            let sent_at = api.pacer.acquire().await;
            RunStats::add(&api.stats.probes);
            let result = api
                .send(api.client.get(crate::lsq::api::PATH_USER_BY_ACCESS_KEY))
                .await;
            if let Some(problem) = failure_of(&result) {
                return ProbeOutcome::Failed(problem);
            }
            match api.judge::<serde::de::IgnoredAny>(sent_at, result) {
                Verdict::Unauthorized(m) | Verdict::Fatal(m) => ProbeOutcome::Fatal(m),
                Verdict::RateLimited { .. } => {
                    RunStats::add(&api.stats.rate_limited);
                    ProbeOutcome::Answered
                }
                _ => ProbeOutcome::Answered,
            }
        })
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
    fn retry_after_is_honoured_within_a_bound() {
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
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(99_999)), &mut rng),
            MAX_RETRY_AFTER
        );
    }

    // ---- the loop, fed scripted answers (no server: `call` takes the request as a closure) ----

    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// An API with a fast pacer and short backoffs; the client is never used by these tests.
    fn test_api(max_attempts: u32) -> Api {
        let client = LsqClient::for_tests("http://127.0.0.1:9", "a", "s");
        Api::for_tests(
            client,
            "1000/1s",
            RetryPolicy {
                max_attempts,
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
        )
    }

    fn reply(status: u16, body: &str) -> Result<Reply, CallError> {
        Ok(Reply {
            status,
            retry_after: None,
            body: bytes::Bytes::from(body.to_string()),
        })
    }

    /// Runs `api.call` over `answers` in order, the way the deletes judge a verdict: success is
    /// the body's number, any other verdict it is given fails the call. Returns the result and
    /// how many requests were made.
    async fn run(
        api: &Api,
        answers: Vec<Result<Reply, CallError>>,
    ) -> (Result<u64, String>, usize) {
        let answers = Mutex::new(VecDeque::from(answers));
        let made = Mutex::new(0usize);
        let extra = AtomicU64::new(0);
        let result = api
            .call::<u64, u64, String, _>(
                "test",
                Some(&extra),
                || {
                    *made.lock().unwrap() += 1;
                    let next = answers.lock().unwrap().pop_front();
                    async move { next.unwrap_or_else(|| reply(200, "0")) }
                },
                |verdict| match verdict {
                    Verdict::Success(n) => Judged::Done(Ok(n)),
                    Verdict::Unknown(m) => Judged::Retry(m),
                    other => Judged::Done(Err(format!("{other:?}"))),
                },
                |closed| closed.to_string(),
                |gave_up| gave_up,
            )
            .await;
        let made = *made.lock().unwrap();
        assert_eq!(
            RunStats::get(&extra) as usize,
            made,
            "every attempt is counted"
        );
        (result, made)
    }

    #[tokio::test]
    async fn a_success_is_one_counted_call() {
        let api = test_api(3);
        let (result, made) = run(&api, vec![reply(200, "7")]).await;
        assert_eq!(result, Ok(7));
        assert_eq!(made, 1);
        assert_eq!(RunStats::get(&api.stats.calls), 1);
        assert_eq!(RunStats::get(&api.stats.retries), 0);
    }

    #[tokio::test]
    async fn transient_failures_and_rate_limits_are_retried_and_counted() {
        let api = test_api(5);
        let refused = Err(CallError::Connect("refused".into()));
        let answers = vec![refused, reply(429, "slow down"), reply(200, "3")];
        let (result, made) = run(&api, answers).await;
        assert_eq!(result, Ok(3));
        assert_eq!(made, 3);
        assert_eq!(RunStats::get(&api.stats.calls), 3);
        assert_eq!(RunStats::get(&api.stats.retries), 2);
        assert_eq!(RunStats::get(&api.stats.rate_limited), 1);
    }

    #[tokio::test]
    async fn the_caller_decides_what_an_unknown_outcome_means() {
        // This caller retries it (a read); a 500 is an unknown outcome.
        let api = test_api(3);
        let (result, made) = run(&api, vec![reply(500, "oops"), reply(200, "1")]).await;
        assert_eq!(result, Ok(1));
        assert_eq!(made, 2);
    }

    #[tokio::test]
    async fn attempts_run_out_with_the_last_problem() {
        let api = test_api(3);
        let refused = || Err(CallError::Connect("refused".into()));
        let answers = (0..5).map(|_| refused()).collect();
        let (result, made) = run(&api, answers).await;
        assert_eq!(made, 3);
        let err = result.unwrap_err();
        assert!(err.starts_with("gave up after 3 attempts: "), "{err}");
    }

    #[tokio::test]
    async fn refusals_for_the_rate_do_not_use_up_attempts_but_do_end() {
        // Lookups and deletes share the posts' rule: a shared quota's 429s are the account's
        // congestion, so three of them do not exhaust three attempts... (A 10 ms window: each
        // refusal holds the pacer for one.)
        let fast = || {
            let client = LsqClient::for_tests("http://127.0.0.1:9", "a", "s");
            Api::for_tests(client, "10/10ms", test_api(3).retry)
        };
        let api = fast();
        let mut answers: Vec<_> = (0..4).map(|_| reply(429, "slow down")).collect();
        answers.push(reply(200, "9"));
        let (result, made) = run(&api, answers).await;
        assert_eq!(result, Ok(9));
        assert_eq!(made, 5);
        assert_eq!(RunStats::get(&api.stats.rate_limited), 4);

        // ...but a quota that never has room still ends the call, with the count in its error.
        let api = fast();
        let limit = api.retry.max_rate_limited() as usize;
        let answers = (0..limit + 5).map(|_| reply(429, "slow down")).collect();
        let (result, made) = run(&api, answers).await;
        assert_eq!(made, limit);
        let err = result.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "gave up after {limit} refusals for the rate: rate limited: slow down"
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_final_verdict_stops_at_once() {
        let api = test_api(3);
        let (result, made) = run(&api, vec![reply(401, "bad keys")]).await;
        assert!(result.unwrap_err().starts_with("Unauthorized"));
        assert_eq!(made, 1);
        assert_eq!(RunStats::get(&api.stats.retries), 0);
    }

    #[tokio::test]
    async fn a_lower_limit_named_by_the_server_is_adopted_by_the_pacer() {
        let api = test_api(3);
        let verdict = api
            .exchange::<u64>(
                api.pacer.acquire().await,
                std::future::ready(reply(
                    429,
                    "API calls exceeded the limit of 10 in 5 second(s)",
                )),
            )
            .await;
        assert!(
            matches!(verdict, Verdict::RateLimited { .. }),
            "{verdict:?}"
        );
        assert_eq!(api.pacer.discovered(), Some("10/5s".parse().unwrap()));
        assert_eq!(RunStats::get(&api.stats.calls), 1);
    }
}
