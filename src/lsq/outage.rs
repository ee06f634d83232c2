//! Outage mode: one run-wide gate that knows whether the API is answering, so that an outage
//! pauses the whole run instead of spending every batch's attempts and the account's quota.
//!
//! Data in: every call of the run reports how it went ([`Gate::answered`] for any HTTP answer
//! that is not a bare 5xx, [`Gate::failed`] for a 5xx without an `MX...` body, a refused or
//! reset connection, a timeout; [`failure_of`] tells them apart). Data out: [`Gate::ready`],
//! awaited by senders, lookups and deletes before they take a pacer permit (and looked at again
//! with [`Gate::open`] after it, since an outage can begin while they queue), and
//! [`Gate::healthy`], awaited before unknown outcomes are checked.
//!
//! States: `Healthy`; `Suspect` after a failure (calls still go; a success clears it);
//! `Outage` after [`OUTAGE_AFTER`] failures in a row with no answer between: nothing is sent but
//! one probe at a time ([`Probe`], a cheap read that creates no uncertainty, still paced), with
//! capped exponential backoff and jitter. One log line when the outage starts, one when it ends
//! (with its duration), and the progress bar says "waiting for the API". Past the patience the
//! gate closes for good: waiters get the reason and the run stops cleanly, resumable.
//!
//! [`Gate::epoch`] counts outages, so a batch can tell that a failure of its own happened in
//! one and not count it against `--max-attempts`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::lsq::client::{CallError, Reply, Verdict, classify};

/// Failures in a row, with no answer between, that make an outage. One or two are what a
/// healthy API does now and then (a proxy hiccup); three in a row at a paced rate are not.
pub const OUTAGE_AFTER: u32 = 3;

/// The longest wait between two probes, whatever `backoff_max` says: the run must notice the
/// API is back within seconds, and a probe every few seconds costs nothing against a quota.
pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// What one call says about the API: `Some(problem)` when it failed the way an unavailable API
/// fails (no connection, no answer, or a 5xx without an `MX...` body), `None` when the server
/// answered (success, rate limit, refused data: all signs of life). A certificate error is not
/// an outage either: it is fatal on its own.
pub(crate) fn failure_of(result: &Result<Reply, CallError>) -> Option<String> {
    match result {
        Err(CallError::Certificate(_)) => None,
        Err(e) => Some(e.to_string()),
        Ok(reply) if (500..=599).contains(&reply.status) => {
            match classify::<serde::de::IgnoredAny>(reply) {
                Verdict::Unknown(message) => Some(message),
                _ => None,
            }
        }
        Ok(_) => None,
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// The server answered: the outage is over.
    Answered,
    /// Still unavailable, and why.
    Failed(String),
    /// The server answered that nothing can succeed (keys refused, wrong host): stop.
    Fatal(String),
}

/// One cheap call that tells whether the API is back.
pub(crate) trait Probe: Send + Sync + 'static {
    fn probe(&self) -> BoxFuture<'_, ProbeOutcome>;
}

/// How the gate probes and how long it waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatePolicy {
    /// First wait before a probe; doubles per failed probe, with jitter.
    pub base: Duration,
    /// Longest wait between probes.
    pub max: Duration,
    /// How long an outage may last before the run gives up.
    pub patience: Duration,
}

impl GatePolicy {
    /// The run's retry backoff, capped at [`MAX_PROBE_INTERVAL`], and its patience.
    pub(crate) fn new(base: Duration, max: Duration, patience: Duration) -> GatePolicy {
        GatePolicy {
            base,
            max: max.min(MAX_PROBE_INTERVAL),
            patience,
        }
    }

    /// Between half and all of `base * 2^(probe-1)`, capped: the jitter keeps runs of several
    /// machines that lost the same API from probing in step.
    fn wait(&self, probe: u32, rng: &mut fastrand::Rng) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << probe.saturating_sub(1).min(20))
            .min(self.max);
        full.mul_f64(0.5 + 0.5 * rng.f64())
    }
}

/// Why the gate will never open again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GateClosed(pub String);

#[derive(Debug, Clone)]
enum Phase {
    Healthy,
    /// Failures in a row since the last answer.
    Suspect(u32),
    Outage {
        since: Instant,
    },
    Closed(String),
}

struct State {
    phase: Phase,
    /// Outages begun so far.
    epoch: u64,
    /// Time spent in finished outages.
    waited: Duration,
    /// A probe is under way (only one at a time).
    probing: bool,
}

/// The run-wide health gate; share it behind an `Arc`.
pub(crate) struct Gate {
    state: Mutex<State>,
    /// Bumped at every change of phase, so waiters wake without polling.
    changed: watch::Sender<u64>,
    probe: Box<dyn Probe>,
    policy: GatePolicy,
}

impl Gate {
    pub(crate) fn new(probe: impl Probe, policy: GatePolicy) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(State {
                phase: Phase::Healthy,
                epoch: 0,
                waited: Duration::ZERO,
                probing: false,
            }),
            changed: watch::Sender::new(0),
            probe: Box::new(probe),
            policy,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Outages begun so far: a call that failed under another epoch than it left under failed in
    /// an outage.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Outages begun, and the time spent in them (the current one included).
    pub(crate) fn outages(&self) -> (u64, Duration) {
        let state = self.lock();
        let current = match state.phase {
            Phase::Outage { since } => since.elapsed(),
            _ => Duration::ZERO,
        };
        (state.epoch, state.waited + current)
    }

    /// Whether a call may leave now (checked again after the pacer's permit).
    pub(crate) fn open(&self) -> bool {
        matches!(self.lock().phase, Phase::Healthy | Phase::Suspect(_))
    }

    /// The server answered a call.
    pub(crate) fn answered(&self) {
        let mut state = self.lock();
        match state.phase {
            Phase::Healthy | Phase::Closed(_) => return,
            Phase::Suspect(_) => state.phase = Phase::Healthy,
            // A call sent before the outage was noticed came back answered: the API is back.
            Phase::Outage { since } => end_outage(&mut state, since),
        }
        drop(state);
        self.bump();
    }

    /// A call failed the way an unavailable API fails.
    pub(crate) fn failed(self: &Arc<Self>, problem: &str) {
        let mut state = self.lock();
        let failures = match state.phase {
            Phase::Healthy => 1,
            Phase::Suspect(n) => n + 1,
            Phase::Outage { .. } | Phase::Closed(_) => return,
        };
        if failures < OUTAGE_AFTER {
            state.phase = Phase::Suspect(failures);
            return;
        }
        state.phase = Phase::Outage {
            since: Instant::now(),
        };
        state.epoch += 1;
        state.probing = true;
        drop(state);
        warn!(
            "the API is not answering ({problem}): the run pauses and probes it; \
             it gives up after {} (--outage-patience)",
            crate::lsq::quota::format_duration(self.policy.patience)
        );
        crate::progress::set_message("waiting for the API");
        self.bump();
        let gate = self.clone();
        tokio::spawn(async move { gate.probe_until_back().await });
    }

    /// Closes the gate for good (the run is over, or cannot go on): waiters return.
    pub(crate) fn close(&self, reason: &str) {
        let mut state = self.lock();
        if let Phase::Outage { since } = state.phase {
            state.waited += since.elapsed();
        }
        if !matches!(state.phase, Phase::Closed(_)) {
            state.phase = Phase::Closed(reason.to_string());
        }
        drop(state);
        self.bump();
    }

    /// Waits while an outage lasts; `Err` once the gate has closed.
    pub(crate) async fn ready(&self) -> Result<(), GateClosed> {
        let mut changes = self.changed.subscribe();
        loop {
            match &self.lock().phase {
                Phase::Healthy | Phase::Suspect(_) => return Ok(()),
                Phase::Closed(reason) => return Err(GateClosed(reason.clone())),
                Phase::Outage { .. } => {}
            }
            if changes.changed().await.is_err() {
                return Err(GateClosed("the run is over".into()));
            }
        }
    }

    /// Waits until the API has answered since its last failure, probing it if nothing else
    /// will tell: a check of unknown outcomes made any earlier would fail, or see the server
    /// before it finished what it was doing.
    pub(crate) async fn healthy(self: &Arc<Self>) -> Result<(), GateClosed> {
        let mut changes = self.changed.subscribe();
        loop {
            let probe_now = {
                let mut state = self.lock();
                match &state.phase {
                    Phase::Healthy => return Ok(()),
                    Phase::Closed(reason) => return Err(GateClosed(reason.clone())),
                    Phase::Suspect(_) if !state.probing => {
                        state.probing = true;
                        true
                    }
                    _ => false,
                }
            };
            if probe_now {
                let outcome = self.probe.probe().await;
                self.lock().probing = false;
                match outcome {
                    ProbeOutcome::Answered => self.answered(),
                    ProbeOutcome::Failed(problem) => self.failed(&problem),
                    ProbeOutcome::Fatal(reason) => self.close(&reason),
                }
                self.bump();
                continue;
            }
            if changes.changed().await.is_err() {
                return Err(GateClosed("the run is over".into()));
            }
        }
    }

    /// The prober of one outage: waits, probes, until the API answers, the patience runs out or
    /// the gate is closed.
    async fn probe_until_back(self: Arc<Self>) {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0;
        loop {
            let since = match self.lock().phase {
                Phase::Outage { since } => since,
                _ => break,
            };
            attempt += 1;
            let deadline = since + self.policy.patience;
            let next = Instant::now() + self.policy.wait(attempt, &mut rng);
            let mut changes = self.changed.subscribe();
            tokio::select! {
                () = tokio::time::sleep_until(next.min(deadline)) => {}
                // Closed or ended meanwhile (an answer to a call sent before the outage).
                _ = changes.changed() => continue,
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "the API has not answered for {} (--outage-patience); run the same command again to resume",
                    crate::lsq::quota::format_duration(self.policy.patience)
                );
                warn!("{reason}");
                self.close(&reason);
                break;
            }
            match self.probe.probe().await {
                ProbeOutcome::Answered => {
                    self.answered();
                    break;
                }
                ProbeOutcome::Failed(_) => {}
                ProbeOutcome::Fatal(reason) => {
                    self.close(&reason);
                    break;
                }
            }
        }
        self.lock().probing = false;
        self.bump();
    }
}

fn end_outage(state: &mut State, since: Instant) {
    let lasted = since.elapsed();
    state.waited += lasted;
    state.phase = Phase::Healthy;
    info!(
        "the API answers again after {:.1}s; the run continues",
        lasted.as_secs_f64()
    );
    crate::progress::set_message("");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails `failures` probes, then answers; counts probes and the most at once.
    struct Scripted {
        failures: u32,
        calls: Arc<AtomicU32>,
        running: Arc<AtomicU32>,
        most: Arc<AtomicU32>,
    }

    impl Probe for Scripted {
        fn probe(&self) -> BoxFuture<'_, ProbeOutcome> {
            Box::pin(async move {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.failures {
                    ProbeOutcome::Failed("HTTP 500".into())
                } else {
                    ProbeOutcome::Answered
                }
            })
        }
    }

    fn scripted(failures: u32) -> (Scripted, Arc<AtomicU32>, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        (
            Scripted {
                failures,
                calls: calls.clone(),
                running: Arc::new(AtomicU32::new(0)),
                most: most.clone(),
            },
            calls,
            most,
        )
    }

    /// Real time, kept short: tokio's paused clock would need its test-util feature.
    fn policy(patience: Duration) -> GatePolicy {
        GatePolicy::new(
            Duration::from_millis(10),
            Duration::from_millis(100),
            patience,
        )
    }

    #[tokio::test]
    async fn failures_in_a_row_pause_the_run_until_one_probe_at_a_time_gets_an_answer() {
        let (probe, calls, most) = scripted(4);
        let gate = Gate::new(probe, policy(Duration::from_secs(600)));
        gate.failed("HTTP 500");
        gate.failed("HTTP 500");
        assert!(gate.open(), "two failures are not an outage");
        gate.answered();
        gate.failed("HTTP 500");
        gate.failed("HTTP 500");
        assert!(gate.open(), "an answer between failures resets the count");
        gate.failed("HTTP 500");
        assert!(!gate.open());
        assert_eq!(gate.epoch(), 1);
        // Many waiters, one prober.
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.ready().await })
            })
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(()));
        }
        assert!(gate.open());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            5,
            "4 failed probes, 1 answered"
        );
        assert_eq!(most.load(Ordering::SeqCst), 1, "one probe at a time");
        let (outages, waited) = gate.outages();
        assert_eq!(outages, 1);
        // Backoff 10, 20, 40, 80, 100 ms (capped), each at least half of it.
        assert!(waited >= Duration::from_millis(125), "{waited:?}");
    }

    #[tokio::test]
    async fn an_outage_longer_than_the_patience_closes_the_gate() {
        let (probe, _, _) = scripted(u32::MAX);
        let gate = Gate::new(probe, policy(Duration::from_millis(300)));
        for _ in 0..OUTAGE_AFTER {
            gate.failed("connection refused");
        }
        let started = Instant::now();
        let result = gate.ready().await;
        assert!(
            matches!(&result, Err(GateClosed(reason)) if reason.contains("--outage-patience")),
            "{result:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_millis(900),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn healthy_probes_a_suspect_api_once_and_reports_an_answer() {
        let (probe, calls, _) = scripted(0);
        let gate = Gate::new(probe, policy(Duration::from_secs(60)));
        gate.failed("HTTP 502");
        let (a, b) = tokio::join!(gate.healthy(), gate.healthy());
        assert_eq!((a, b), (Ok(()), Ok(())));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(gate.epoch(), 0, "no outage");
    }

    #[test]
    fn bare_5xx_and_broken_connections_are_failures_mx_errors_and_429_are_answers() {
        let reply = |status: u16, body: &str| {
            Ok(Reply {
                status,
                retry_after: None,
                body: bytes::Bytes::from(body.to_string()),
            })
        };
        assert!(failure_of(&reply(500, "<html>500</html>")).is_some());
        assert!(failure_of(&reply(503, "")).is_some());
        assert!(
            failure_of(&reply(
                500,
                r#"{"Status":"Error","ExceptionType":"MXInvalidInputException","ExceptionMessage":"bad"}"#
            ))
            .is_none()
        );
        assert!(failure_of(&reply(429, "")).is_none());
        assert!(failure_of(&reply(200, "not json")).is_none());
        assert!(failure_of(&Err(CallError::Connect("refused".into()))).is_some());
        assert!(failure_of(&Err(CallError::Transport("reset".into()))).is_some());
        assert!(failure_of(&Err(CallError::Certificate("bad cert".into()))).is_none());
    }
}
