//! Pace stage: every request, first attempt or retry, waits here for a permit, so that no
//! window of the quota's length ever holds more than its CALLS requests, and so that a quota
//! shared with other integrations is used without a stream of 429s.
//!
//! Two gates, in this order:
//! 1. A budget of calls per quota window ([`Budget`]), enforced the way the server counts: over
//!    our own arrivals in any window, refused calls included, since LeadSquared does not say
//!    whether a refused call holds a place. It starts at the quota. A refusal is read by what
//!    was going on when it came: a window (nearly) all the others' is a burst (hold every send
//!    for one window, keep the budget); a refusal of a raise undoes it (probe refused); one
//!    after a quiet spell is first taken for a burst (hold, and one less if we were at the
//!    budget); one while we used less than the budget measures the others' share and cuts to
//!    ours; one at the budget soon after another takes one off. Each window in use without a
//!    refusal raises it again, and the first call past the old level waits for its answer
//!    before the next leaves, so a refused probe costs one refusal. Every change is one log line
//!    (old budget, new budget, why), and voids places already queued.
//! 2. A governor limiter for the quota itself, the hard ceiling. governor implements GCRA. A
//!    quota of "N per W" with a burst of N admits up to 2N-1 requests in some window of length W
//!    (a full burst, then steady refill), which LeadSquared's sliding window would reject. With a
//!    burst of 1 and a period of W/N, any window of length W admits at most
//!    `1 + ceil(W / T) - 1 = N` requests: the full rate, never more. The period is stretched by a
//!    small margin because the server counts arrival times, and network jitter can bring two
//!    requests closer together than they were sent.
//!
//! When a rate-limit message names a lower limit than configured ("limit of 10 in 5
//! second(s)"), the ceiling is rebuilt with it for the rest of the run ([`Pacer::rate_limited`]).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use governor::{
    Quota, RateLimiter, middleware::NoOpMiddleware, state::InMemoryState, state::NotKeyed,
};
use tokio::time::Instant;
use tracing::info;

use crate::lsq::quota::RateQuota;

type Limiter = RateLimiter<NotKeyed, InMemoryState, governor::clock::DefaultClock, NoOpMiddleware>;

/// The spacing between two permits: the window divided by its calls, stretched by `margin`.
pub(crate) fn spacing(quota: RateQuota, margin: f64) -> Duration {
    let ideal = quota.window.as_secs_f64() / f64::from(quota.calls.get());
    Duration::from_secs_f64(ideal * (1.0 + margin.max(0.0))).max(Duration::from_nanos(1))
}

/// The governor quota that never exceeds `quota` in any window: burst 1, period [`spacing`].
pub(crate) fn gcra_quota(quota: RateQuota, margin: f64) -> Quota {
    Quota::with_period(spacing(quota, margin))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::MIN)
}

/// How far past a window's end a place counts as free again, as a fraction of the window: the
/// server counts arrival times, and network jitter can bring two requests closer together than
/// they were sent.
const WINDOW_MARGIN: f64 = 0.02;
/// After a probe above a level that was refused fails, the next one waits this many more
/// windows (doubling each time, up to [`MAX_LINGER`]): a failed probe costs a refusal, and the
/// account's other integrations rarely change their pace every few seconds.
const FIRST_LINGER: u32 = 4;
const MAX_LINGER: u32 = 24;
/// Windows without a change or a refusal after which a refusal is first taken for a burst.
const QUIET_WINDOWS: f64 = 1.5;

/// Why the budget changed, for the one log line each change gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeReason {
    /// A call was refused while ours were fewer than the budget: the account's other
    /// integrations use more than the budget leaves them.
    OthersUseMore,
    /// A call was refused right after the budget was raised: the raise was too much.
    ProbeRefused,
    /// A call was refused while the budget had not changed and was in use: the others sent a
    /// burst. The budget stays; sending holds until that window has passed.
    Burst,
    /// A refusal with the budget in full use, soon after another: one less.
    AtBudget,
    /// A refusal after a quiet spell with the budget in full use: held for one window like a
    /// burst, and one less, in case it was the budget that was a little too high.
    BurstAtBudget,
    /// A window went by without a refusal while the budget was in use: try one more.
    NoRefusalFor(u32),
    /// The server named a lower limit than configured.
    LowerLimit,
}

impl std::fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeReason::OthersUseMore => {
                f.write_str("refused below the budget: other integrations use more of the quota")
            }
            ChangeReason::ProbeRefused => f.write_str("the last raise was refused"),
            ChangeReason::Burst => f.write_str(
                "refused at a steady budget: another integration's burst; holding for one window",
            ),
            ChangeReason::AtBudget => {
                f.write_str("refused with the budget in full use, soon after another: one less")
            }
            ChangeReason::BurstAtBudget => f.write_str(
                "refused at the budget after a quiet spell: a burst, or a budget a little high; \
                 holding for one window, one less",
            ),
            ChangeReason::NoRefusalFor(windows) => {
                write!(
                    f,
                    "no refusal for {windows} window(s) with the budget in use"
                )
            }
            ChangeReason::LowerLimit => f.write_str("the server named a lower limit"),
        }
    }
}

/// A change of the budget: what it was, what it is, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetChange {
    /// Calls per window before.
    pub(crate) from: u32,
    /// Calls per window after.
    pub(crate) to: u32,
    /// Sending holds until this moment (a burst, or the drain after a cut), if at all.
    pub(crate) hold: Option<Duration>,
    pub(crate) why: ChangeReason,
}

/// Our budget of calls per quota window: the share of the account's quota this run may use.
/// Pure: time is passed in.
///
/// The server keeps a sliding window of arrivals from every client of the account; whether a
/// refused call takes a place in it is not documented, so nothing here assumes either. Our own
/// calls are kept in a log, and no slot is handed out while the log holds `budget` calls in the
/// last window: the budget is enforced the way the server counts, over arrivals, so after a cut
/// the calls already sent at the old pace (and any refused ones, which may hold places) are
/// waited out rather than added to.
///
/// In this order:
/// - A window (nearly) all the others' is a burst of theirs: the budget stays and sending holds
///   until that window has passed. Not within a window of a cut, where ours are few because
///   they drain.
/// - A refusal of a call sent under a raise undoes it; the next raise to that level waits
///   longer (a plateau), doubling when the same level is refused again.
/// - After a quiet spell (no change, no refusal for [`QUIET_WINDOWS`]) a refusal is taken for a
///   burst: held for a window; one less too if we were at the budget, which settles a budget a
///   little too high without cutting on every burst.
/// - A refusal while we used fewer calls than the budget measures the others: the window was
///   full, and ours in it (less our refusals) is our share. The budget drops just below it (to
///   every call of ours in the window less one, when measured again while the last cut
///   drains: where refused calls hold places, those of the overload are still there).
/// - At the budget, soon after another refusal: one less. Within a window of a change, the tail
///   of the overload acted on, which the log already waits out: nothing.
/// - Each window without a refusal, with the budget in use, raises it: by one below a level that
///   was refused, then after a linger at that level, by a step that doubles, so room the others
///   leave is taken in a few windows. The first call past the old level is a probe: the next
///   call waits for its answer (the smoothed answer time), so a refused probe costs one refusal
///   rather than that and every call sent while its answer travelled.
///
/// Refusals of calls sent before the last change are echoes of the same overload and ignored.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// The quota's calls per window: the ceiling of the budget.
    calls: u32,
    /// The quota's window.
    window: Duration,
    /// Stretch of the spacing between calls (jitter).
    margin: f64,
    /// Calls per window we allow ourselves now, 1..=calls.
    budget: u32,
    /// Slot times of our calls (every attempt, refused ones too), in order, for two windows.
    log: VecDeque<Instant>,
    /// Send times of our refused calls, for two windows.
    refused: VecDeque<Instant>,
    /// No slot before this.
    hold_until: Option<Instant>,
    /// Refusals of calls sent before this are echoes of an overload already acted on.
    echoes_before: Option<Instant>,
    /// When the budget last changed, to time the next raise.
    changed_at: Option<Instant>,
    /// The last raise (when, from what), undone if a call it let through is refused.
    raised: Option<(Instant, u32)>,
    /// When the budget was last cut for the others' share: for a window after, our calls
    /// drain, and what got in reads low.
    cut: Option<Instant>,
    /// The lowest level refused since: raising to it waits `linger` windows.
    plateau: Option<u32>,
    /// When the first slot was handed out.
    started: Option<Instant>,
    /// When the last refusal (not an echo) was sent.
    last_refusal: Option<Instant>,
    /// After a raise from this level, the first call past it is the probe.
    probe_level: Option<u32>,
    /// No slot before this: the probe's answer is awaited.
    probe_gap_until: Option<Instant>,
    /// The time calls take to be answered (smoothed), to wait for a probe's answer.
    latency: Option<Duration>,
    /// Windows to wait before raising to the plateau.
    linger: u32,
    /// Size of the next raise above the plateau; doubles with each.
    step: u32,
    /// Bumped at every cut or hold: a slot reserved before is void, its holder queues again.
    generation: u64,
}

impl Budget {
    pub(crate) fn new(calls: u32, window: Duration, margin: f64) -> Budget {
        let calls = calls.max(1);
        Budget {
            calls,
            window,
            margin: margin.max(0.0),
            budget: calls,
            log: VecDeque::new(),
            refused: VecDeque::new(),
            hold_until: None,
            echoes_before: None,
            changed_at: None,
            raised: None,
            cut: None,
            plateau: None,
            linger: FIRST_LINGER,
            started: None,
            last_refusal: None,
            probe_level: None,
            probe_gap_until: None,
            latency: None,
            step: 1,
            generation: 0,
        }
    }

    /// Calls per window now.
    #[cfg(test)]
    pub(crate) fn budget(&self) -> u32 {
        self.budget
    }

    /// Bumped at every cut or hold; compare with the value seen at [`Budget::reserve`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    fn spacing(&self) -> Duration {
        self.window
            .mul_f64((1.0 + self.margin) / f64::from(self.budget))
    }

    /// Reserves a send slot: `None` when it is free now, else the instant to wait for; and the
    /// budget's change, if one was due. Slots are handed out in order, spaced evenly at the
    /// budget's rate, and never more than `budget` in any window (counting every call in the
    /// log, refused ones included).
    pub(crate) fn reserve(&mut self, now: Instant) -> (Option<Instant>, Option<BudgetChange>) {
        let change = self.maybe_raise(now);
        self.started.get_or_insert(now);
        let mut slot = now;
        if let Some(hold) = self.hold_until {
            slot = slot.max(hold);
        }
        if let Some(&last) = self.log.back() {
            slot = slot.max(last + self.spacing());
        }
        let budget = self.budget as usize;
        if self.log.len() >= budget {
            let leaving = self.log[self.log.len() - budget];
            slot = slot.max(leaving + self.window.mul_f64(1.0 + WINDOW_MARGIN));
        }
        if let Some(after) = self.probe_gap_until {
            slot = slot.max(after);
        }
        if let Some(level) = self.probe_level {
            let since = slot.checked_sub(self.window);
            let in_window = self
                .log
                .iter()
                .filter(|t| since.is_none_or(|since| **t > since))
                .count();
            if in_window as u32 >= level {
                // The first call past the old budget is the probe: the next one waits for its
                // answer, so a refused probe costs one refusal, not that and the calls sent
                // while its answer travelled (which, where refused calls hold places, are
                // refused too).
                self.probe_level = None;
                self.probe_gap_until = Some(slot + self.latency.unwrap_or(Duration::ZERO));
            }
        }
        self.log.push_back(slot);
        self.forget_before(now);
        ((slot > now).then_some(slot), change)
    }

    /// Raises the budget after a window without refusals in which it was in use.
    fn maybe_raise(&mut self, now: Instant) -> Option<BudgetChange> {
        if self.budget >= self.calls {
            return None;
        }
        let since = self
            .changed_at
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let next = self.budget + 1;
        let windows = match self.plateau {
            Some(level) if next == level => self.linger,
            _ => 1,
        };
        if since < self.window * windows || !self.in_use(now) {
            return None;
        }
        // Past a level that was refused, the others have left room: an eighth of the budget,
        // doubling each window, claims it in a few windows.
        let step = match self.plateau {
            Some(level) if next <= level => 1,
            _ => self.step.max(self.budget / 4),
        };
        let from = self.budget;
        self.budget = (self.budget + step).min(self.calls);
        if self.plateau.is_none_or(|level| self.budget > level) {
            self.step = self.step.saturating_mul(2);
        }
        self.raised = Some((now, from));
        self.probe_level = Some(from);
        self.cut = None;
        self.changed_at = Some(now);
        // Places queued at the old spacing would keep the old pace for as long as the queue.
        self.void_reservations(now);
        Some(BudgetChange {
            from,
            to: self.budget,
            hold: None,
            why: ChangeReason::NoRefusalFor(windows),
        })
    }

    /// Whether the last window held (nearly) the whole budget: a budget not in use tells
    /// nothing about the room there is, so it is not raised.
    fn in_use(&self, now: Instant) -> bool {
        let since = now.checked_sub(self.window);
        let used = self
            .log
            .iter()
            .rev()
            .skip_while(|t| **t > now)
            .take_while(|t| since.is_none_or(|since| **t > since))
            .count();
        used + 1 >= self.budget as usize
    }

    /// The call sent at `sent_at` was answered at `now` (any answer): how long answers take.
    pub(crate) fn answered(&mut self, sent_at: Instant, now: Instant) {
        let took = now.saturating_duration_since(sent_at);
        self.latency = Some(match self.latency {
            // Slow to rise, quick to fall: a stray slow answer must not stall every probe.
            Some(smoothed) => smoothed.mul_f64(0.8) + took.mul_f64(0.2),
            None => took,
        });
    }

    /// The call sent at `sent_at` was refused for the rate, seen at `now`. Returns the change
    /// made, if any (none for an echo).
    pub(crate) fn rate_limited(&mut self, sent_at: Instant, now: Instant) -> Option<BudgetChange> {
        self.refused.push_back(sent_at);
        if self.echoes_before.is_some_and(|t| sent_at < t) {
            return None;
        }
        let since = sent_at.checked_sub(self.window);
        let in_window = |t: &Instant| since.is_none_or(|since| *t > since);
        // The refused call's own slot is in the log, at or a little before its send (a permit
        // leaves once the slot has come and the ceiling allows): the latest slot not after
        // `sent_at`. It is not one of the calls before it.
        let ours = (self
            .log
            .iter()
            .filter(|t| in_window(t) && **t <= sent_at)
            .count() as u32)
            .saturating_sub(1);
        let refused = self
            .refused
            .iter()
            .filter(|t| in_window(t) && **t < sent_at)
            .count() as u32;
        let accepted = ours.saturating_sub(refused);
        // The others' calls in that window: the rest of it.
        let others = self.calls.saturating_sub(accepted);
        let from = self.budget;
        let probe = self
            .raised
            .filter(|(at, _)| sent_at >= *at && sent_at < *at + self.window);
        let after_cut = self
            .cut
            .filter(|at| sent_at >= *at && sent_at < *at + self.window);
        // A window (nearly) all the others' is a burst of theirs, whatever we were doing: it
        // says nothing of our share, and cutting to what got in would collapse the pace.
        // Not while our calls drain after a cut: then ours in the window are few, however many
        // the others send, and reading that as a burst would undo a right cut into a storm.
        let crowded = others >= self.calls * 4 / 5 && after_cut.is_none();
        // A refusal after a quiet spell (the budget unchanged and unrefused for a while) is taken
        // for a burst first: held, not cut. If refusals come back soon, the others' pace has
        // changed, and the next one cuts.
        let quiet = self
            .changed_at
            .into_iter()
            .chain(self.last_refusal)
            .chain(self.started)
            .max()
            .is_some_and(|last| sent_at >= last + self.window.mul_f64(QUIET_WINDOWS));
        self.last_refusal = Some(sent_at);
        let why = if crowded {
            self.hold(sent_at);
            ChangeReason::Burst
        } else if let Some((_, before)) = probe {
            // The level just tried is too much; the one before was fine. The same level refused
            // again makes the next try wait longer; a new one starts from the first linger.
            self.linger = if self.plateau == Some(self.budget) {
                (self.linger * 2).min(MAX_LINGER)
            } else {
                FIRST_LINGER
            };
            // A raise of several levels refused says only that one of them is too much: the
            // next try is one level up, and it lingers.
            self.budget = before.min(accepted + 1).max(1);
            self.plateau = Some(self.budget + 1);
            self.raised = None;
            ChangeReason::ProbeRefused
        } else if quiet {
            self.hold(sent_at);
            if accepted + 2 >= self.budget && self.budget > 1 {
                // We were at the budget: a burst, or a budget a little above what the others'
                // pace leaves, which would be refused like this every few windows. One less
                // settles the second and costs the first little.
                self.take_one_off();
                ChangeReason::BurstAtBudget
            } else {
                ChangeReason::Burst
            }
        } else if accepted + 1 < self.budget {
            // Our share is what got in; one less leaves room for the others' jitter. The
            // refused call was ours `accepted + 1`; at `accepted` we were already at the edge of
            // what the others leave (their count in a window wobbles): raising back to it waits
            // the linger.
            //
            // Again within a window of a cut, the window still holds the calls refused in the
            // overload that caused it. Where refused calls hold places, they are part of what
            // we used, and what got in reads low by as many: the share is read from every
            // call of ours (refused too) less one, never below what got in, and the level
            // above it is tried after the linger. Where they do not, the cut's own reading was
            // right and this refusal is at its edge.
            let (share, plateau) = match after_cut {
                Some(_) => {
                    let share = ours
                        .saturating_sub(1)
                        .clamp(accepted, from.saturating_sub(1));
                    (share, share + 1)
                }
                None => (accepted.saturating_sub(1), accepted.max(2)),
            };
            self.plateau = Some(plateau);
            self.cut = Some(now);
            // One cut at most halves: a share misread once cannot collapse the pace, and
            // refusals that go on still bring it down, a half at a time.
            self.budget = share.max(self.budget / 2).clamp(1, self.calls);
            self.step = 1;
            self.raised = None;
            ChangeReason::OthersUseMore
        } else if self.changed_at.is_some_and(|at| sent_at < at + self.window) {
            // At the budget, right after it changed: the tail of the overload just acted on
            // (places it filled, the others' refused calls where those count), which the
            // budget's own log is already waiting out. Holding a whole window would cost more.
            return None;
        } else {
            // Refused with the budget in full use, not long after the last refusal: a budget a
            // little above what the others leave. One less; a hold would cost a whole window.
            self.take_one_off();
            ChangeReason::AtBudget
        };
        if !matches!(why, ChangeReason::Burst) {
            // A hold leaves the budget as it was, and the time since it last changed running.
            self.changed_at = Some(now);
        }
        self.echoes_before = Some(now);
        self.void_reservations(now);
        Some(BudgetChange {
            from,
            to: self.budget,
            hold: self.hold_until.map(|h| h.saturating_duration_since(now)),
            why,
        })
    }

    /// One call per window less; the level given up is the plateau, tried again after the
    /// linger.
    fn take_one_off(&mut self) {
        self.budget = self.budget.saturating_sub(1).max(1);
        self.plateau = Some(self.budget + 1);
        self.raised = None;
    }

    /// Holds every slot until the window of the call sent at `sent_at` has passed, so that
    /// every arrival in it (a burst of the others', refused calls that hold places) has left.
    fn hold(&mut self, sent_at: Instant) {
        let until = sent_at + self.window.mul_f64(1.0 + WINDOW_MARGIN);
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }

    /// A new ceiling (a lower limit discovered at `now`): the budget becomes it. Calls already
    /// sent stay in the log, so the window they fill is waited out at the new limit.
    pub(crate) fn set_ceiling(
        &mut self,
        calls: u32,
        window: Duration,
        now: Instant,
    ) -> BudgetChange {
        let from = self.budget;
        self.calls = calls.max(1);
        self.window = window;
        self.budget = self.calls;
        self.plateau = None;
        self.raised = None;
        self.cut = None;
        self.step = 1;
        self.changed_at = Some(now);
        self.echoes_before = Some(now);
        self.void_reservations(now);
        BudgetChange {
            from,
            to: self.budget,
            hold: None,
            why: ChangeReason::LowerLimit,
        }
    }

    /// Slots reserved for later than `now` are void: their holders queue again under the new
    /// budget. The generation tells them.
    fn void_reservations(&mut self, now: Instant) {
        while self.log.back().is_some_and(|t| *t > now) {
            self.log.pop_back();
        }
        self.generation += 1;
    }

    fn forget_before(&mut self, now: Instant) {
        // A refusal is read against the window before the refused call left, which may be an
        // answer time ago: the log keeps that much more.
        let horizon = self.window * 2 + self.latency.unwrap_or_default() * 2;
        for times in [&mut self.log, &mut self.refused] {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > horizon)
            {
                times.pop_front();
            }
        }
    }
}

struct Ceiling {
    quota: RateQuota,
    limiter: Arc<Limiter>,
    /// Bumped when the limiter is replaced, so waiters on the old one queue again.
    generation: u64,
}

/// Hands out permits to send, shared by every sender task.
pub(crate) struct Pacer {
    margin: f64,
    configured: RateQuota,
    ceiling: Mutex<Ceiling>,
    budget: Mutex<Budget>,
    /// A lower limit the server named, once adopted.
    discovered: Mutex<Option<RateQuota>>,
}

impl Pacer {
    pub(crate) fn new(quota: RateQuota, margin: f64) -> Pacer {
        Pacer {
            margin,
            configured: quota,
            ceiling: Mutex::new(Ceiling {
                quota,
                limiter: Arc::new(RateLimiter::direct(gcra_quota(quota, margin))),
                generation: 0,
            }),
            budget: Mutex::new(Budget::new(quota.calls.get(), quota.window, margin)),
            discovered: Mutex::new(None),
        }
    }

    fn ceiling(&self) -> MutexGuard<'_, Ceiling> {
        self.ceiling.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn budget(&self) -> MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more request may leave; returns the moment it may, which the caller
    /// hands back with [`Pacer::rate_limited`] if the server refuses the call for the rate.
    pub(crate) async fn acquire(&self) -> Instant {
        loop {
            let (slot, generation) = {
                let mut budget = self.budget();
                let (slot, change) = budget.reserve(Instant::now());
                if let Some(change) = change {
                    self.log_change(&change);
                }
                (slot, budget.generation())
            };
            if let Some(slot) = slot {
                tokio::time::sleep_until(slot).await;
            }
            // A cut or hold while this caller waited (here or in the ceiling's queue) voids its
            // place: a queue filled at the old pace would otherwise keep the overload going.
            if self.budget().generation() != generation {
                continue;
            }
            self.ceiling_permit().await;
            if self.budget().generation() == generation {
                return Instant::now();
            }
        }
    }

    async fn ceiling_permit(&self) {
        loop {
            let (limiter, generation) = {
                let ceiling = self.ceiling();
                (ceiling.limiter.clone(), ceiling.generation)
            };
            limiter.until_ready().await;
            if self.ceiling().generation == generation {
                return;
            }
        }
    }

    fn log_change(&self, change: &BudgetChange) {
        let window = crate::lsq::quota::format_duration(self.quota().window);
        match change.hold {
            Some(hold) if !hold.is_zero() => info!(
                from = change.from,
                to = change.to,
                hold_ms = hold.as_millis() as u64,
                "pace: {} -> {} calls per {window}, holding {} ms: {}",
                change.from,
                change.to,
                hold.as_millis(),
                change.why
            ),
            _ => info!(
                from = change.from,
                to = change.to,
                "pace: {} -> {} calls per {window}: {}",
                change.from,
                change.to,
                change.why
            ),
        }
    }

    /// The call that left at `sent_at` was answered with `verdict`: every paced call reports
    /// here, the one place where an answer's meaning for the pace is decided. Returns the new
    /// quota when the server named a lower limit, which the caller announces.
    pub(crate) fn answer<T>(
        &self,
        sent_at: Instant,
        verdict: &crate::lsq::client::Verdict<T>,
    ) -> Option<RateQuota> {
        self.budget().answered(sent_at, Instant::now());
        match verdict {
            crate::lsq::client::Verdict::RateLimited { limit, .. } => {
                self.rate_limited(sent_at, *limit)
            }
            _ => None,
        }
    }

    /// The call that left at `sent_at` was rate limited; `limit` is the limit the server's
    /// message named, if any. Returns the new quota when a lower limit was adopted.
    pub(crate) fn rate_limited(
        &self,
        sent_at: Instant,
        limit: Option<RateQuota>,
    ) -> Option<RateQuota> {
        let now = Instant::now();
        if let Some(limit) = limit
            && limit.per_second() < self.quota().per_second() * 0.999
        {
            {
                let mut ceiling = self.ceiling();
                ceiling.quota = limit;
                ceiling.limiter = Arc::new(RateLimiter::direct(gcra_quota(limit, self.margin)));
                ceiling.generation += 1;
            }
            *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(limit);
            let change = self
                .budget()
                .set_ceiling(limit.calls.get(), limit.window, now);
            self.log_change(&change);
            return Some(limit);
        }
        let change = self.budget().rate_limited(sent_at, now);
        if let Some(change) = change {
            self.log_change(&change);
        }
        None
    }

    /// The quota being respected (the configured one, or a lower one the server named).
    pub(crate) fn quota(&self) -> RateQuota {
        self.ceiling().quota
    }

    /// The quota given by configuration.
    pub(crate) fn configured(&self) -> RateQuota {
        self.configured
    }

    /// A lower limit the server named during the run, if any.
    pub(crate) fn discovered(&self) -> Option<RateQuota> {
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time between two permits at the full quota.
    pub(crate) fn spacing(&self) -> Duration {
        spacing(self.quota(), self.margin)
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
