//! An in-process HTTP simulator of the LeadSquared API, for tests, demos and benchmarks.
//!
//! Requests enter over HTTP/1.1 on loopback ([`serve`], [`RunningSimulator`]); what they did
//! leaves through [`Simulator`]'s inspection methods (request log, stored activities, counters)
//! or the unauthenticated `/_sim/...` admin routes for out-of-process callers.
//!
//! The simulator imitates the vendor faithfully, unpleasant parts included: a sliding-window rate
//! limit answered with 429 or with HTTP 200 and an error body, validation errors as HTTP 500 with
//! an `MX...Exception` body, per-row or whole-batch rejection, queued deletes, ambiguous paging,
//! and injected faults (plain 500s and dropped connections, before or after the rows were
//! committed). It shares the wire *types* with the client (`crate::lsq::api`) but none of its logic.
//!
//! - `demo`: the account's fixed leads, users and activity types.
//! - `state`: stored activities, request log, limiter and the vendor's rules, free of I/O.
//! - `server`: the accept loop, per-connection kill switch, routing and handlers.
//! - `by_event`: the handler of Get Activities by Activity Event (one code, every lead).
//!
//! This file (its settings types and the inspection API tests use, about 750 lines),
//! `server.rs` (about 1,200 lines: one handler per endpoint of the vendor's API and of `/_sim`,
//! each with the vendor's quirks), `state.rs` (about 760: every rule of the account's state, kept
//! in one place because they all run under one mutex; its unit tests are beside it) and
//! `tests.rs` (the simulator's own tests) are over the
//! 700 lines a module aims for; splitting the handlers by endpoint is the next step there.

mod by_event;
mod demo;
mod server;
mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::lsq::api;
use crate::lsq::quota::RateQuota;

pub use demo::{
    DEMO_KEY_FIELD, DEMO_LEADS, DEMO_OWNERS, OWNER_CHANGE_EVENT, demo_activity_types,
    demo_lead_email, demo_lead_id, demo_lead_mobile, demo_lead_phone,
};
pub use server::{RunningSimulator, serve};

/// How the simulator behaves; every knob a test or benchmark may turn.
#[derive(Clone)]
pub struct SimConfig {
    /// The only access key that authenticates; anything else is answered 401.
    pub access_key: String,
    /// The secret key that must accompany [`SimConfig::access_key`].
    pub secret_key: String,
    /// The account's quota, enforced as a sliding window over arrivals; `None` for unlimited
    /// (benchmarks of the simulator itself).
    pub rate: Option<RateQuota>,
    /// Whether an over-limit request gets HTTP 429 or, as some accounts do, HTTP 200 with the
    /// same error body.
    pub rate_limit_style: RateLimitStyle,
    /// Send `Retry-After` (whole seconds, rounded up) with rate-limit answers. Off by default
    /// because the vendor documents none; on to test clients that honour it.
    pub send_retry_after: bool,
    /// Whether a refused call takes a place in the window like an admitted one. LeadSquared does
    /// not document which it does; many API gateways keep a sliding log of every arrival.
    pub refused_calls: RefusedCalls,
    /// Quotas that replace [`SimConfig::rate`] at a time after the start, in order: an account
    /// whose limit changes mid-run (a plan change, or a gateway that tightens under load).
    pub rate_changes: Vec<RateChange>,
    /// Another integration of the same account, whose calls share the window. They are not in
    /// the request log; [`SimStats::other_calls`] and [`SimStats::other_refused`] count them.
    pub other_client: Option<OtherClient>,
    /// Delay added to every `/v2` response (and before a dropped connection closes), after the
    /// arrival is logged and the state has changed.
    pub latency: Duration,
    /// Uniform spread around [`SimConfig::latency`]; the delay never goes below zero.
    pub jitter: Duration,
    /// Injected failures of bulk posts.
    pub faults: FaultConfig,
    /// Whether bad rows of a bulk post are rejected one by one or fail the whole call, since the
    /// vendor's behaviour here is unconfirmed.
    pub reject_mode: RejectMode,
    /// What Get Activities' `Paging.Offset` counts, since the vendor's docs are ambiguous.
    pub paging: PagingMode,
    /// Whether Get Activities of a Lead filters by `Parameter.FromDate`/`ToDate`. The vendor
    /// documents no such filter, so by default they are ignored (and not even read), as a
    /// server following the documentation would; [`RetrieveDates::Honoured`] is the lenient
    /// server that filters on the activity's date.
    pub retrieve_dates: RetrieveDates,
    /// Most rows Get Activities by Activity Event serves per page, whatever `PageSize` asks
    /// (the vendor documents no maximum); `PageIndex` then counts pages of the size served.
    pub by_event_page_cap: u64,
    /// Whether Get Activities by Activity Event lists each activity's note
    /// (`ActivityEvent_Note`); the vendor's example shows none.
    pub by_event_note: ByEventNote,
    /// How long a queued delete waits before it takes effect.
    pub delete_delay: Duration,
    /// Treat every well-formed GUID as an existing lead, so benchmarks need not use demo leads.
    pub accept_any_lead: bool,
    /// Leads the account holds besides the demo leads (compared lowercase).
    pub extra_leads: Vec<String>,
    /// Host UserByAccessKey.Get names as the account's API host; empty: the simulator's own
    /// URL as the client reached it.
    pub account_host: String,
    /// How every bulk post's answer is spoiled, to test clients against broken servers.
    pub bulk_answer: BulkAnswer,
    /// The shape of Bulk Update's answer, which the vendor's page does not show.
    pub update_answer: UpdateAnswer,
    /// An outage to stage, timed from the first `/v2` request (so a benchmark's outage starts
    /// the same time into the import however long the client took to start). More can be
    /// started at any time with [`Simulator::start_outage`] or `/_sim/outage`.
    pub outage: Option<OutageSchedule>,
    /// Activities each demo lead already holds (code 201, dates spread over 2023-2024, the
    /// dates `gen_activities` draws from), so that checking what an import created has to page
    /// through a long history, as on an old account.
    pub seeded_per_lead: usize,
}

/// How the API is unavailable during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageKind {
    /// Every `/v2` request is answered HTTP 500 with a proxy's HTML page; nothing is done.
    Plain500,
    /// Every `/v2` request's connection is closed without an answer; nothing is done.
    Reset,
    /// The simulator stops listening (connections are refused) and closes every open
    /// connection; it listens on the same port again when the outage ends.
    Refused,
}

/// An outage: how, when (after the first `/v2` request), and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageSchedule {
    pub kind: OutageKind,
    /// From the first `/v2` request to the start of the outage.
    pub after: Duration,
    /// How long it lasts.
    pub lasts: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            access_key: "sim-access-key".to_string(),
            secret_key: "sim-secret-key".to_string(),
            rate: Some(RateQuota::DEFAULT),
            rate_limit_style: RateLimitStyle::default(),
            send_retry_after: false,
            refused_calls: RefusedCalls::default(),
            rate_changes: Vec::new(),
            other_client: None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            faults: FaultConfig::default(),
            reject_mode: RejectMode::default(),
            paging: PagingMode::default(),
            retrieve_dates: RetrieveDates::default(),
            by_event_page_cap: DEFAULT_BY_EVENT_PAGE_CAP,
            by_event_note: ByEventNote::default(),
            delete_delay: Duration::from_millis(200),
            accept_any_lead: false,
            extra_leads: Vec::new(),
            account_host: "api-in21.leadsquared.com".to_string(),
            bulk_answer: BulkAnswer::default(),
            update_answer: UpdateAnswer::default(),
            outage: None,
            seeded_per_lead: 0,
        }
    }
}

/// Keys stay out of debug output: configurations get logged.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("access_key", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field("rate", &self.rate)
            .field("rate_limit_style", &self.rate_limit_style)
            .field("send_retry_after", &self.send_retry_after)
            .field("refused_calls", &self.refused_calls)
            .field("rate_changes", &self.rate_changes)
            .field("other_client", &self.other_client)
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("faults", &self.faults)
            .field("reject_mode", &self.reject_mode)
            .field("paging", &self.paging)
            .field("retrieve_dates", &self.retrieve_dates)
            .field("by_event_page_cap", &self.by_event_page_cap)
            .field("by_event_note", &self.by_event_note)
            .field("delete_delay", &self.delete_delay)
            .field("accept_any_lead", &self.accept_any_lead)
            .field("extra_leads", &self.extra_leads.len())
            .field("account_host", &self.account_host)
            .field("bulk_answer", &self.bulk_answer)
            .field("update_answer", &self.update_answer)
            .field("outage", &self.outage)
            .field("seeded_per_lead", &self.seeded_per_lead)
            .finish()
    }
}

/// How the rate limit is answered; the vendor does both depending on the account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStyle {
    /// HTTP 429 with the `MXAPIRateLimitExceededException` body, as documented.
    #[default]
    Http429,
    /// HTTP 200 with the same error body, as some accounts receive it.
    Http200,
}

/// Whether a refused call counts in the rate limiter's window; the vendor's behaviour is
/// unconfirmed, so the simulator offers both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedCalls {
    /// Only admitted calls are in the window: hammering does not extend a ban.
    #[default]
    NotCounted,
    /// Every arrival is in the window, refused or not (a sliding log): a client that keeps
    /// calling while refused keeps the window full for itself and for everyone else.
    Counted,
}

/// A quota that takes effect at a time after the simulator started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateChange {
    /// Time since the start.
    pub at: Duration,
    /// The new quota; `None` lifts the limit.
    pub rate: Option<RateQuota>,
}

/// Another integration of the account: its calls take places in the same window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OtherClient {
    /// How its calls arrive.
    pub load: OtherLoad,
    /// When it starts, since the simulator started.
    pub from: Duration,
    /// When it stops, since the simulator started; `None`: it never does.
    pub until: Option<Duration>,
}

/// The shape of the other integration's calls. It does not retry refused calls: a refusal is
/// counted ([`SimStats::other_refused`]) and the call is gone, so its load stays what was set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OtherLoad {
    /// Evenly spaced calls, this many per second.
    Steady {
        /// Calls per second.
        per_second: f64,
    },
    /// `calls` calls at once, every `every` (the first burst at the start).
    Bursts {
        /// Calls in one burst.
        calls: u32,
        /// Time between bursts.
        every: Duration,
    },
}

impl OtherLoad {
    /// Average calls per second.
    pub fn per_second(&self) -> f64 {
        match *self {
            OtherLoad::Steady { per_second } => per_second,
            OtherLoad::Bursts { calls, every } => f64::from(calls) / every.as_secs_f64(),
        }
    }
}

impl std::str::FromStr for OtherLoad {
    type Err = String;

    /// `10` or `steady:10` (calls per second), or `burst:25/2500ms` (25 calls at once every
    /// 2.5 s).
    fn from_str(text: &str) -> Result<OtherLoad, String> {
        let text = text.trim();
        let bad =
            || format!("{text:?} is not an other-client load (use steady:10 or burst:25/2500ms)");
        if let Some(burst) = text.strip_prefix("burst:") {
            let quota: RateQuota = burst.parse().map_err(|_| bad())?;
            return Ok(OtherLoad::Bursts {
                calls: quota.calls.get(),
                every: quota.window,
            });
        }
        let rate = text.strip_prefix("steady:").unwrap_or(text);
        match rate.parse::<f64>() {
            Ok(per_second) if per_second.is_finite() && per_second > 0.0 => {
                Ok(OtherLoad::Steady { per_second })
            }
            _ => Err(bad()),
        }
    }
}

/// How bad rows in a bulk post are answered; the vendor's behaviour is unconfirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectMode {
    /// Good rows are created; bad rows come back with `ActivityCreated: false`.
    #[default]
    PerRow,
    /// One bad row fails the call with HTTP 500 `MXInvalidInputException`; nothing is created.
    WholeBatch,
}

/// A wrong answer to every bulk post, for testing what a client makes of a broken server.
/// Except [`BulkAnswer::StatusError200`], the rows are handled (created or rejected) as usual
/// first, so a client that believes the broken answer is caught out by what the server holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAnswer {
    /// The vendor's answer, unspoiled.
    #[default]
    Faithful,
    /// HTTP 200 with a body that is not JSON.
    NotJson,
    /// HTTP 200 with the JSON answer cut off halfway.
    Truncated,
    /// The last row's result left out of `Response`.
    FewerItems,
    /// An extra result, for a `RowNumber` that was not sent.
    MoreItems,
    /// The first row's result given twice, the copy with another id.
    DuplicateRowNumbers,
    /// `RowNumber` left out of every result.
    MissingRowNumbers,
    /// Nothing created; HTTP 200 with `"Status":"Error"` and no exception type.
    StatusError200,
    /// `ProspectActivityId` left out of every result that says created.
    CreatedWithoutId,
}

/// How Bulk Update answers. The vendor's page shows no answer, so the least it promises is the
/// default: a whole-call success, which names no row, and a bad row failing the whole call
/// (HTTP 500 `MXInvalidInputException`, nothing updated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateAnswer {
    /// `{"Status":"Success","Message":{...}}` for the call; one bad row fails the whole call.
    #[default]
    WholeCall,
    /// `{"Response":[{"ProspectActivityId","RowNumber","ActivityUpdated","ExceptionMessage"}]}`,
    /// like the bulk post's: good rows are updated, bad ones come back with
    /// `ActivityUpdated: false`.
    PerRow,
}

/// What Get Activities' `Paging.Offset` means; the vendor calls it "the page number".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagingMode {
    /// Offset 0 is the first page.
    #[default]
    ZeroBasedPage,
    /// Offset 1 is the first page (0 is read as 1).
    OneBasedPage,
    /// Offset counts rows to skip.
    RowOffset,
}

/// Whether Get Activities of a Lead filters by the `FromDate`/`ToDate` its documentation does
/// not mention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrieveDates {
    /// As documented: no date filter; `FromDate`/`ToDate` are ignored.
    #[default]
    Ignored,
    /// Leniently: only activities whose date is in `FromDate..=ToDate` are listed.
    Honoured,
}

/// Whether Get Activities by Activity Event's items carry the note.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByEventNote {
    /// As `ActivityEvent_Note`, the note's schema name.
    #[default]
    Present,
    /// Left out, as in the vendor's example of the endpoint.
    Absent,
}

/// [`SimConfig::by_event_page_cap`] by default: the `PageSize` of the vendor's example.
pub const DEFAULT_BY_EVENT_PAGE_CAP: u64 = 100;

/// Probabilities, per admitted bulk post, of each injected failure. One seeded draw per request
/// decides, checked in field order, so a seed reproduces a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// HTTP 500 with a non-JSON body, nothing created: a proxy or server crash.
    pub plain_500: f64,
    /// The connection closes without a response, nothing created.
    pub drop_connection: f64,
    /// The rows are created, then HTTP 500 with a non-JSON body: the client cannot know it
    /// succeeded, and a blind retry duplicates.
    pub commit_then_500: f64,
    /// The rows are created, then the connection closes without a response.
    pub commit_then_drop: f64,
    /// The rows are created, then the answer is held back by [`FaultConfig::late_by`]: longer
    /// than the client's timeout, so it gives up on an answer that was on its way.
    pub commit_then_late: f64,
    /// How long a `commit_then_late` answer is held back.
    pub late_by: Duration,
    /// Seed of the fault RNG.
    pub seed: u64,
}

/// What the simulator did with one `/v2` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Answered normally (a bulk post whose rows were all or partly rejected one by one too).
    Ok,
    /// HTTP 401.
    Unauthorized,
    /// Refused by the rate limit (HTTP 429 or 200).
    RateLimited,
    /// HTTP 400: malformed body or content type.
    BadRequest,
    /// HTTP 500 with an `MX...Exception` body: the data was refused.
    DataError,
    /// Injected HTTP 500 without an MX body; nothing created.
    #[serde(rename = "fault_500")]
    Fault500,
    /// Answered HTTP 500 (or its connection closed) because of a staged outage; nothing done.
    Outage,
    /// Injected dropped connection; nothing created.
    Dropped,
    /// Injected HTTP 500 after the rows were created.
    #[serde(rename = "committed_then_500")]
    CommittedThen500,
    /// Injected dropped connection after the rows were created.
    CommittedThenDropped,
    /// Injected answer held back after the rows were created.
    CommittedThenLate,
    /// HTTP 404: no such endpoint.
    NotFound,
    /// A bulk post answered wrongly on purpose ([`SimConfig::bulk_answer`]).
    Spoiled,
}

/// One logged `/v2` request, for asserting what a client sent and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in arrival order, from 0; bulk-created activities point back to it.
    pub seq: u64,
    /// Arrival time since the simulator started, taken before the body is read, so quota
    /// checks see what the server's limiter saw.
    pub at: Duration,
    /// HTTP method, to tell endpoints sharing a path apart.
    pub method: String,
    /// Path without the query string, which may hold keys.
    pub path: String,
    /// Final HTTP status; 0 when the connection was dropped without one.
    pub status: u16,
    /// Number of activities in a bulk post's body (0 for other requests or unparsable bodies),
    /// to check batch sizes.
    pub items: usize,
    /// What happened, more precisely than the status says.
    pub outcome: RequestOutcome,
    /// When the answer left (or the connection was closed), since the simulator started; with
    /// [`RequestRecord::at`] it tells how many requests were in flight at once.
    #[serde(default)]
    pub answered: Option<Duration>,
}

/// One activity as stored, for asserting what a client created or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredActivity {
    /// The `ProspectActivityId` the bulk post returned.
    pub id: String,
    /// The lead's id, lowercase.
    pub lead_id: String,
    /// The activity type's code.
    pub event_code: i64,
    /// `ActivityNote`, if one was given.
    pub note: Option<String>,
    /// The owner's e-mail as the account spells it, if one was given.
    pub owner_email: Option<String>,
    /// The activity's date, `yyyy-MM-dd HH:mm:ss` UTC: the posted one or the posting time.
    pub date_time: String,
    /// When the server last changed it (created or updated), `yyyy-MM-dd HH:mm:ss` UTC: the
    /// server's clock, not the activity's date.
    #[serde(default)]
    pub modified_on: String,
    /// Custom field values by schema name.
    pub fields: BTreeMap<String, String>,
    /// Set once a queued delete has taken effect; deleted activities stay listed so tests can
    /// tell "deleted" from "never created".
    pub deleted: bool,
    /// `seq` of the bulk post that created it; `None` for seeded ones.
    pub created_by_request: Option<u64>,
    /// Bulk Updates applied to it (a re-sent update counts again, though it changes nothing).
    pub updates: u32,
}

/// Counters for assertions and benchmark reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// `/v2` requests logged.
    pub requests: u64,
    /// Of those, refused by the rate limit.
    pub rate_limited: u64,
    /// Of those, bulk posts that suffered an injected fault.
    pub faults: u64,
    /// Activities stored and not deleted (seeded ones included).
    pub activities_live: u64,
    /// Activities flagged deleted.
    pub activities_deleted: u64,
    /// Most logged requests in any window of the configured quota's length; `None` when the
    /// rate is unlimited. Above the quota's calls means the client overran it.
    pub max_requests_in_window: Option<usize>,
    /// Calls the other integration ([`SimConfig::other_client`]) made.
    #[serde(default)]
    pub other_calls: u64,
    /// Of those, refused by the rate limit: what this client's pace cost the account's others.
    #[serde(default)]
    pub other_refused: u64,
}

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The loopback port could not be bound (in use, or not permitted).
    #[error("cannot listen on {}", std::net::SocketAddr::new(*.ip, *.port))]
    Bind {
        /// The loopback address asked for.
        ip: std::net::IpAddr,
        /// The port asked for, named in the message so the user can pick another.
        port: u16,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Asked to listen on an address other than loopback: refused, because the simulator's
    /// keys are well known and its `/_sim` routes need none.
    #[error(
        "the simulator listens on loopback only (its keys are well known and its admin routes have none); \
         refusing to listen on {0}: use 127.0.0.1, ::1 or localhost"
    )]
    NotLoopback(String),
}

/// Reads a `--bind` address: `localhost` or a loopback IP address; anything else is refused.
pub fn loopback_address(text: &str) -> Result<std::net::IpAddr, SimError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("localhost") {
        return Ok(std::net::Ipv4Addr::LOCALHOST.into());
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok()
        .filter(std::net::IpAddr::is_loopback)
        .ok_or_else(|| SimError::NotLoopback(text.to_string()))
}

/// Everything handlers share: the fixed configuration and the mutable state behind one mutex.
struct Shared {
    config: SimConfig,
    started: Instant,
    state: Mutex<state::State>,
    /// Counts queued deletes that have taken effect, so tests wait on a signal, not a sleep.
    deletes_applied: tokio::sync::watch::Sender<u64>,
    /// Counts answered `/v2` requests, so tests can wait for a run to be under way on a signal.
    requests_answered: tokio::sync::watch::Sender<u64>,
    /// The staged outage: pending until the first request, then a window.
    outage: Mutex<OutagePlan>,
    /// Bumped when an outage is scheduled or ended early, to wake the accept loop.
    outage_changed: tokio::sync::watch::Sender<u64>,
}

/// The simulator's outage, as far as it is known.
#[derive(Debug, Default)]
struct OutagePlan {
    /// Scheduled relative to the first `/v2` request, which has not come yet.
    pending: Option<OutageSchedule>,
    /// The outage's kind and `[start, end)`.
    window: Option<(OutageKind, Instant, Instant)>,
}

/// A simulated LeadSquared account. Cheap to clone; clones share the account.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A fresh account holding the demo leads (each with two past owner changes) and
    /// `config.extra_leads`. The clock for [`RequestRecord::at`] starts now.
    pub fn new(config: SimConfig) -> Simulator {
        let started = Instant::now();
        let mut state = state::State::new(&config, started);
        seed_history(&mut state, config.seeded_per_lead);
        let outage = OutagePlan {
            pending: config.outage,
            window: None,
        };
        Simulator {
            shared: Arc::new(Shared {
                config,
                started,
                state: Mutex::new(state),
                deletes_applied: tokio::sync::watch::Sender::new(0),
                requests_answered: tokio::sync::watch::Sender::new(0),
                outage: Mutex::new(outage),
                outage_changed: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    fn outage_plan(&self) -> MutexGuard<'_, OutagePlan> {
        self.shared.outage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an outage of `kind` now, lasting `lasts` (replacing any other).
    pub fn start_outage(&self, kind: OutageKind, lasts: Duration) {
        let now = Instant::now();
        {
            let mut plan = self.outage_plan();
            plan.pending = None;
            plan.window = Some((kind, now, now + lasts));
        }
        self.shared.outage_changed.send_modify(|n| *n += 1);
    }

    /// Ends the outage now, if one is on or scheduled.
    pub fn end_outage(&self) {
        {
            let mut plan = self.outage_plan();
            plan.pending = None;
            if let Some((kind, start, _)) = plan.window {
                let now = Instant::now();
                plan.window = Some((kind, start.min(now), now));
            }
        }
        self.shared.outage_changed.send_modify(|n| *n += 1);
    }

    /// The outage under way at `now`, if any; the first `/v2` request starts the clock of a
    /// scheduled one.
    fn outage_at(&self, now: Instant, first_request: bool) -> Option<OutageKind> {
        let mut plan = self.outage_plan();
        if first_request && let Some(schedule) = plan.pending.take() {
            let start = now + schedule.after;
            plan.window = Some((schedule.kind, start, start + schedule.lasts));
            drop(plan);
            self.shared.outage_changed.send_modify(|n| *n += 1);
            return None;
        }
        plan.window
            .filter(|(_, start, end)| *start <= now && now < *end)
            .map(|(kind, _, _)| kind)
    }

    /// The next refused-connections outage not yet over: its `[start, end)`.
    fn next_refusal(&self) -> Option<(Instant, Instant)> {
        match self.outage_plan().window {
            Some((OutageKind::Refused, start, end)) if Instant::now() < end => Some((start, end)),
            _ => None,
        }
    }

    /// The staged outage's window in simulator time (`[start, end)` since the simulator
    /// started), once it is known: for tests asserting what happened during it.
    pub fn outage_window(&self) -> Option<(OutageKind, Duration, Duration)> {
        self.outage_plan().window.map(|(kind, start, end)| {
            (
                kind,
                self.arrived_since_start(start),
                self.arrived_since_start(end),
            )
        })
    }

    /// The configuration this simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    fn lock(&self) -> MutexGuard<'_, state::State> {
        // A panic elsewhere while holding the lock leaves plain data behind, still usable.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request log, in arrival order; requests still being answered are left out.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().finished_requests()
    }

    /// Resolves once at least `n` `/v2` requests have been answered.
    pub async fn wait_for_requests(&self, n: u64) {
        let mut answered = self.shared.requests_answered.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail while we hold it.
        let _ = answered.wait_for(|count| *count >= n).await;
    }

    /// Every activity ever stored, deleted ones flagged, in creation order.
    pub fn activities(&self) -> Vec<StoredActivity> {
        self.lock().all_stored()
    }

    /// Every activity ever stored on one lead (id compared lowercase), in creation order.
    pub fn activities_of_lead(&self, lead_id: &str) -> Vec<StoredActivity> {
        self.lock().stored_of_lead(lead_id)
    }

    /// Counters, without copying the log or the activities (except the arrival times needed
    /// for the window maximum).
    pub fn stats(&self) -> SimStats {
        let (times, counts) = {
            let state = self.lock();
            let times = self.shared.config.rate.map(|_| state.arrival_times());
            (times, state.counts())
        };
        let (requests, rate_limited, faults, activities_live, activities_deleted) = counts.log;
        SimStats {
            requests,
            rate_limited,
            faults,
            activities_live,
            activities_deleted,
            max_requests_in_window: self
                .shared
                .config
                .rate
                .zip(times)
                .map(|(quota, times)| state::max_in_window(times, quota.window)),
            other_calls: counts.other_calls,
            other_refused: counts.other_refused,
        }
    }

    /// The most logged requests (any path, any status, rate-limited ones included) whose
    /// arrivals fall in one window `[t, t + window)`: what a client must keep at or below the
    /// quota's calls.
    pub fn max_requests_in_any_window(&self, window: Duration) -> usize {
        let times = self.lock().arrival_times();
        state::max_in_window(times, window)
    }

    /// Stores an activity as if it had existed before the run, without the bulk endpoint's
    /// checks (any code, any lead; the lead joins the account). A missing or unreadable
    /// `ActivityDateTime` means now; field names other than `mx_Custom_<1..50>` are dropped.
    /// Returns the new activity's id.
    pub fn add_activity(&self, item: api::ActivityItem) -> String {
        let now = chrono::Utc::now().timestamp();
        self.lock().seed(&item, now)
    }

    /// Sets the `ModifiedOn` of the activity with id `id` to `modified_on`
    /// (`yyyy-MM-dd HH:mm:ss` UTC), as an update at that time would: for tests of reads by
    /// modified date, which must not depend on the wall clock. False if there is no such
    /// activity or the date is not in the API's format.
    pub fn set_modified(&self, id: &str, modified_on: &str) -> bool {
        let Some(at) = state::parse_date(modified_on) else {
            return false;
        };
        let mut state = self.lock();
        match state.find(id) {
            Some(index) => {
                state.set_modified(index, at);
                true
            }
            None => false,
        }
    }

    /// Every call of the other integration: arrival since the start, and whether it was
    /// admitted. With the request log, it is what the limiter saw.
    pub fn other_arrivals(&self) -> Vec<(Duration, bool)> {
        self.lock().other_arrivals().to_vec()
    }

    fn arrived_since_start(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.shared.started)
    }

    #[cfg(test)]
    fn push_test_record(&self, record: RequestRecord) {
        self.lock().push_test_record(record);
    }
}

/// Gives each demo lead `per_lead` activities of code 201 on dates spread over 2023-2024, each
/// with its own note, as if years of history were already in the account.
fn seed_history(state: &mut state::State, per_lead: usize) {
    if per_lead == 0 {
        return;
    }
    // 2023-01-01 00:00:00 UTC and the two years after it.
    const FROM: i64 = 1_672_531_200;
    const SPAN: i64 = 2 * 365 * 86_400;
    let now = chrono::Utc::now().timestamp();
    let step = (SPAN / per_lead as i64).max(1);
    for lead in 0..DEMO_LEADS {
        let lead_id = demo_lead_id(lead);
        for n in 0..per_lead {
            let when = FROM + (n as i64 * step + lead as i64 * 37) % SPAN;
            let item = api::ActivityItem {
                related_prospect_id: lead_id.clone(),
                activity_event: 201,
                activity_note: Some(format!("history {n} of lead {lead}")),
                activity_owner_email: None,
                activity_date_time: Some(state::format_date(when)),
                fields: Vec::new(),
            };
            state.seed(&item, now);
        }
    }
}

/// The rate-limit message in the vendor's words with this account's numbers, e.g. "API calls
/// exceeded the limit of 25 in 5 second(s)" or "... of 3 in 0.3 second(s)".
fn rate_limit_message(calls: NonZeroU32, window: Duration) -> String {
    let seconds = if window.subsec_nanos() == 0 {
        window.as_secs().to_string()
    } else {
        window.as_secs_f64().to_string()
    };
    format!("API calls exceeded the limit of {calls} in {seconds} second(s)")
}
