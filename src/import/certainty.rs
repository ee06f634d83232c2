//! How a check round reads back what the server created: lead by lead, or an activity code's
//! recently modified activities account-wide, whichever costs fewer calls.
//!
//! A check round (`send::Sender::check_server`) hands [`settle`] the rows of every call in doubt
//! at that moment ([`RowInDoubt`], each naming its [`CallInDoubt`]: when the call left, and its
//! canaries, below), the activity ids the ledger already attributes, and what earlier rounds
//! learned ([`CheckMemory`]). Out comes, per row and in order, the id of the server activity that
//! is the row's, or `None` (not found: safe to send again). Every call goes through the run's one
//! `Api`: Get Activities of a Lead by way of [`resolve`], Get Activities by Activity Event by way
//! of [`EventReader`] (counted as the run's `check_reads`).
//!
//! The choice ([`plan`] and [`choose`], pure):
//! - lead by lead costs one call per distinct lead in doubt, whatever codes its rows have (a
//!   lead read for one code's rows is read for all of them);
//! - the account-wide read of a code lists every activity of the code **modified** since the
//!   earliest of its rows' calls left, less a margin (`ModifiedOn` is the server's clock,
//!   `FromDate` selects on it; see [`CheckMemory::margin`]): whatever those calls created is
//!   among them, and rows are matched by content as [`match_event_rows`] does for any read. Its
//!   first page's `RecordCount` says what it costs, P = ceil(RecordCount / the page size
//!   served); that first page costs what a bare count would, so it is the estimate;
//! - once the estimates are in, the round reads account-wide the set of codes that makes it
//!   cheapest: the P - 1 pages left of each, plus the distinct leads of every other code. The
//!   reader freezes the listing at its first page ([`EventReader::freeze`]), since the import
//!   goes on writing the code while a check reads it.
//!
//! An estimate costs a read whatever it finds, so it is only paid for where it can pay back: not
//! for a code with one or two leads, not for more codes than a quarter of the round's leads
//! ([`affordable`]), and not where the code's last estimate ([`Density`]: activities per second
//! of window) predicts a read longer than its leads. One log line per code and round says which
//! read was chosen and why. Rounds are pooled by the caller (a round
//! waits a moment for more calls in doubt): a read costs about the same for one call as for
//! twenty.
//!
//! An account-wide read is only believed when nothing it left out could be one of the rows:
//! - it must list the code's **canary**: an activity of the code this run created, in a call
//!   answered before the first call in doubt left, dated (`ActivityDateTime`) more than
//!   [`LAST_MARGIN`] before that answer, so before any `FromDate` a read can have. Listed, it
//!   shows that the server selects by a stamp no earlier than its own clock's reading when the
//!   canary was created, not by the activity's date, and so that whatever the calls in doubt
//!   created (later) is listed too, however far its clock is from ours. Rows of calls that left
//!   before any canary of their code existed (the run's first calls) are read lead by lead; so
//!   is a code whose read does not list its canary, and the margin doubles for later rounds;
//! - every item must carry a note field (a server may list none, as the vendor's example does):
//!   rows are told apart by their notes;
//! - a read that fails, or whose pages never add up to its `RecordCount`, is not used.
//!
//! In each case the code's rows are read lead by lead, and the log says why: nothing an
//! account-wide read leaves out is ever taken for "not created".

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{info, warn};

use crate::import::resolve::{match_event_rows, normalise_lead, resolve};
use crate::lsq::activities::{FetchError, Fetcher};
use crate::lsq::api::{ActivityItem, DATE_TIME_FORMAT, MAX_BATCH};
use crate::lsq::by_event::{EventActivity, EventQuery, EventReader, FROZEN_SECONDS, OpenWalk};

/// How much earlier than our clock's start of a call the account-wide read begins, at first.
/// The server stamps `ModifiedOn` with its own clock, but the canary proves whether the margin
/// was enough, so the margin only weighs how many older activities every read lists against
/// how often a skewed clock sends a round to the leads. Clocks kept by NTP agree within a
/// second; a read that misses its canary doubles the margin for the rest of the run.
pub(crate) const FIRST_MARGIN: TimeDelta = TimeDelta::seconds(30);

/// The widest margin. A read that misses its canary even so means the server does not select
/// what this module relies on (or its clock is an hour off): account-wide reads stop for the
/// run. A canary is dated at least this long before its creation, so that no read can select it
/// by its date.
pub(crate) const LAST_MARGIN: TimeDelta = TimeDelta::hours(1);

/// Leads so few that reading them costs no more than an account-wide read's first page.
const FEW_LEADS: usize = 2;

/// Leads in doubt a round needs per estimate it pays for. Each estimate costs a read whatever
/// it finds, and an account-wide read chosen on it can still run over while the import goes on
/// writing, so a round that reading its leads settles cheaply does not gamble: one batch holds
/// at most 25 rows, so a round of one batch (at most 25 leads) never estimates and is read lead
/// by lead as before, never costing more reads than it has leads in doubt. Rounds that pool
/// several batches (an import in trouble at full speed) have the leads to pay for it.
const LEADS_PER_ESTIMATE: usize = 26;

/// A call whose rows are in doubt, as a round needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CallInDoubt {
    /// When the call left, by our clock (taken before its request was sent); `None` for rows a
    /// previous run left in flight, whose calls' times this run does not know.
    pub started: Option<DateTime<Utc>>,
    /// Per activity code: the id (lowercase) of an activity of that code which this run created,
    /// in a call answered before this one left, and which is dated before that answer less
    /// [`LAST_MARGIN`]. See the module comment.
    pub canaries: HashMap<i64, String>,
}

/// What the run has created so far, as checks need it: the latest canary of each code, and how
/// many activities of each code (whose shares say how fast the import writes each code).
#[derive(Debug, Default)]
pub(crate) struct Created {
    /// Per activity code, the latest activity that can serve as a canary: lowercase id.
    canaries: HashMap<i64, String>,
    /// Per activity code, activities created.
    counts: HashMap<i64, u64>,
}

impl Created {
    /// An activity of `code` created, `canary` its id when it can serve as one.
    pub(crate) fn note(&mut self, code: i64, canary: Option<String>) {
        *self.counts.entry(code).or_default() += 1;
        if let Some(id) = canary {
            self.canaries.insert(code, id);
        }
    }

    /// The latest canaries of `codes`: what a call leaving now carries ([`CallInDoubt`]).
    pub(crate) fn canaries_of(&self, codes: impl Iterator<Item = i64>) -> HashMap<i64, String> {
        codes
            .filter_map(|code| self.canaries.get(&code).map(|id| (code, id.clone())))
            .collect()
    }

    /// Per code, how many activities the import itself may add to a frozen listing while it
    /// is walked: bulk calls at `calls_per_second`, full batches, split between codes as the
    /// run's creations so far are, for half of
    /// [`FROZEN_SECONDS`] (the listing stays open for one to two seconds after its first page,
    /// and a short walk is over sooner).
    pub(crate) fn arrivals(&self, calls_per_second: f64) -> HashMap<i64, u64> {
        let total: u64 = self.counts.values().sum();
        let rows = calls_per_second * MAX_BATCH as f64 * (FROZEN_SECONDS.as_secs_f64() / 2.0);
        self.counts
            .iter()
            .map(|(&code, &n)| (code, (rows * n as f64 / total.max(1) as f64).ceil() as u64))
            .collect()
    }
}

/// One row of a round: the activity as sent, and which of the round's calls left it in doubt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowInDoubt<'a> {
    /// The row as it was posted.
    pub item: &'a ActivityItem,
    /// Index of its call in the round's calls.
    pub call: usize,
}

/// What earlier rounds of the run learned about the account-wide read, so that later rounds do
/// not pay for the same lesson again. Rounds are serialized, so it is held under the round lock.
#[derive(Debug, Default)]
pub(crate) struct CheckMemory {
    /// Per activity code.
    codes: HashMap<i64, CodeMemory>,
    /// Why the account-wide read is not used at all in this run (the endpoint is missing, or
    /// no margin made a read list its canary).
    unavailable: Option<String>,
    /// The margin once a read missed its canary; [`FIRST_MARGIN`] until then.
    widened: Option<TimeDelta>,
    /// Leads in doubt a round needs per estimate; [`LEADS_PER_ESTIMATE`] unless a test wants
    /// small rounds to try the account-wide read.
    leads_per_estimate: Option<usize>,
}

impl CheckMemory {
    /// A memory whose rounds pay for an estimate per `leads` leads in doubt (tests of the
    /// account-wide read on rounds of a few leads).
    #[cfg(test)]
    pub(crate) fn estimating_per(leads: usize) -> CheckMemory {
        CheckMemory {
            leads_per_estimate: Some(leads),
            ..CheckMemory::default()
        }
    }

    /// How much earlier than the first call in doubt an account-wide read begins.
    fn margin(&self) -> TimeDelta {
        self.widened.unwrap_or(FIRST_MARGIN)
    }

    /// After a read missed its canary: twice the margin, or no more account-wide reads when it
    /// was already [`LAST_MARGIN`].
    fn widen(&mut self) {
        let margin = self.margin();
        if margin >= LAST_MARGIN {
            self.unavailable = Some(format!(
                "reads beginning {} minutes before the calls in doubt did not list what was \
                 created before those calls: the server's clock or its date filter is not what \
                 this read relies on",
                LAST_MARGIN.num_minutes()
            ));
        } else {
            let wider = (margin * 2).min(LAST_MARGIN);
            warn!(
                "check: an account-wide read missed its canary: later reads begin {} s before \
                 the calls in doubt instead of {} s",
                wider.num_seconds(),
                margin.num_seconds()
            );
            self.widened = Some(wider);
        }
    }
}

/// What is known of one code's account-wide read.
#[derive(Debug, Clone, Default, PartialEq)]
struct CodeMemory {
    /// The server lists this code's activities without their notes.
    no_notes: bool,
    /// What the last estimate found, to predict the next one's.
    density: Option<Density>,
}

/// How many activities of a code an account-wide read lists, as the last estimate found it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Density {
    /// Activities listed per second of the read's window (from `FromDate` to the read).
    per_second: f64,
    /// Rows per page the server served.
    page_size: u64,
}

impl Density {
    /// Pages a read of a window beginning at `from` would take now, at this density.
    fn pages_since(&self, from: DateTime<Utc>) -> u64 {
        let window = (Utc::now() - from).num_milliseconds().max(0) as f64 / 1000.0;
        pages_of((self.per_second * window).ceil() as u64, self.page_size)
    }
}

/// What a round does about one code before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Read the first page of the account-wide listing, and decide from its `RecordCount`.
    Estimate,
    /// Read the leads; why.
    Leads(String),
}

/// The rows of one code in a round, and what an account-wide read of it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Demand<'a> {
    /// The activity code.
    event: i64,
    /// Indexes of the code's dated rows in the round that an account-wide read could settle
    /// (rows without a date match nothing, and are in neither list).
    rows: Vec<usize>,
    /// The leads of those rows, normalised.
    leads: BTreeSet<String>,
    /// `FromDate` of the account-wide read: the earliest of the rows' calls' starts less the
    /// margin; `None` when one of them has no known start (every activity of the code is read,
    /// which needs no canary).
    from: Option<DateTime<Utc>>,
    /// The canary of the earliest call, when the read has a `FromDate`.
    canary: Option<&'a str>,
    /// Rows whose call had no canary of the code (nothing of it had been created yet when it
    /// left, typically the first calls of a run): no bounded read can be verified to hold
    /// them, so they are read lead by lead whatever is chosen for the others.
    leads_only: Vec<usize>,
}

/// The round's rows grouped by code, in order of first appearance; a read's `FromDate` is its
/// earliest call's start less `margin`.
fn demands<'a>(
    rows: &[RowInDoubt<'_>],
    calls: &'a [CallInDoubt],
    margin: TimeDelta,
) -> Vec<Demand<'a>> {
    let mut out: Vec<Demand<'a>> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if row.item.activity_date_time.is_none() {
            continue;
        }
        let event = row.item.activity_event;
        let slot = match out.iter().position(|d| d.event == event) {
            Some(slot) => slot,
            None => {
                out.push(Demand {
                    event,
                    rows: Vec::new(),
                    leads: BTreeSet::new(),
                    from: None,
                    canary: None,
                    leads_only: Vec::new(),
                });
                out.len() - 1
            }
        };
        out[slot].rows.push(index);
    }
    for demand in &mut out {
        let call_of = |index: &usize| rows.get(*index).and_then(|r| calls.get(r.call));
        // A call of unknown start: the read lists every date, which needs no canary and holds
        // every row of the code.
        let unbounded = demand
            .rows
            .iter()
            .any(|i| call_of(i).is_none_or(|c| c.started.is_none()));
        if !unbounded {
            let event = demand.event;
            let (canaried, bare): (Vec<usize>, Vec<usize>) = demand
                .rows
                .iter()
                .partition(|i| call_of(i).is_some_and(|c| c.canaries.contains_key(&event)));
            let earliest = canaried
                .iter()
                .filter_map(call_of)
                .filter_map(|c| c.started.map(|at| (at, c)))
                .min_by_key(|(at, _)| *at);
            if let Some((at, call)) = earliest {
                demand.from = Some(at - margin);
                demand.canary = call.canaries.get(&event).map(String::as_str);
            }
            demand.rows = canaried;
            demand.leads_only = bare;
        }
        demand.leads = demand
            .rows
            .iter()
            .filter_map(|&i| rows.get(i))
            .map(|r| normalise_lead(&r.item.related_prospect_id))
            .collect();
    }
    out
}

/// Whether to estimate the account-wide read of a code whose rows in doubt lie on `leads`
/// leads, or to read those leads straight away. `bounded`: the read has a `FromDate` (and so
/// needs a canary to be believed); `predicted`: the pages the code's last estimate predicts
/// for this read, if there was one.
fn plan(
    leads: usize,
    bounded: bool,
    canary: bool,
    memory: &CodeMemory,
    unavailable: Option<&str>,
    predicted: Option<u64>,
) -> Plan {
    if leads <= FEW_LEADS {
        return Plan::Leads(format!(
            "{leads} lead(s) cost no more than an account-wide read's first page"
        ));
    }
    if let Some(why) = unavailable {
        return Plan::Leads(format!("the account-wide read is not available: {why}"));
    }
    if memory.no_notes {
        return Plan::Leads(
            "the server lists this code's activities without their notes, so they cannot be \
             matched"
                .to_string(),
        );
    }
    if bounded && !canary {
        return Plan::Leads(
            "no activity of this code is known created just before the calls in doubt, to \
             verify an account-wide read against"
                .to_string(),
        );
    }
    if let Some(pages) = predicted
        && !worth_reading(pages, leads)
    {
        return Plan::Leads(format!(
            "the code's last estimate puts its account-wide read at about {pages} pages"
        ));
    }
    Plan::Estimate
}

/// Which of the codes planned for an estimate (`leads` of each) keep it, when the round has
/// `total` distinct leads in doubt: as many as [`LEADS_PER_ESTIMATE`] allows, those with the
/// most leads first.
fn affordable(leads: &[usize], total: usize, per_estimate: usize) -> Vec<bool> {
    let allowed = total / per_estimate.max(1);
    let mut order: Vec<usize> = (0..leads.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(leads[i]));
    let mut keep = vec![false; leads.len()];
    for &i in order.iter().take(allowed) {
        keep[i] = true;
    }
    keep
}

/// Pages a read listing `record_count` activities takes at `page_size` per page (at least one:
/// the first page is read whatever it holds).
fn pages_of(record_count: u64, page_size: u64) -> u64 {
    record_count.div_ceil(page_size.max(1)).max(1)
}

/// Whether an account-wide read of `pages` pages, its first already read, costs fewer calls
/// than reading `leads` leads: the `pages - 1` left against `leads`.
fn worth_reading(pages: u64, leads: usize) -> bool {
    pages.saturating_sub(1) < leads as u64
}

/// Which of the estimated codes to read account-wide. `codes` gives, per code, the leads of its
/// rows and, for a code whose first page is in, the pages its read has left (`None`: it is read
/// lead by lead whatever happens); `anyway` holds leads read in any case. The choice makes the
/// round cheapest: the pages left of the codes chosen, plus one read per distinct lead of all
/// the others (a lead with rows of several codes is read once for all of them, so a code whose
/// leads are read anyway costs nothing more lead by lead). A tie goes to reading leads. Every
/// subset is tried up to [`EXACT_CHOICE`] candidates; beyond, codes are added one at a time
/// while one makes the round cheaper.
fn choose(codes: &[(&BTreeSet<String>, Option<u64>)], anyway: &BTreeSet<String>) -> Vec<bool> {
    // Leads as small numbers, so that a subset's distinct leads are counted without hashing.
    let mut numbers: HashMap<&str, usize> = HashMap::new();
    for lead in anyway
        .iter()
        .chain(codes.iter().flat_map(|(leads, _)| leads.iter()))
    {
        let next = numbers.len();
        numbers.entry(lead.as_str()).or_insert(next);
    }
    let number = |leads: &BTreeSet<String>| -> Vec<usize> {
        leads
            .iter()
            .filter_map(|l| numbers.get(l.as_str()).copied())
            .collect()
    };
    let base = number(anyway);
    let per_code: Vec<Vec<usize>> = codes.iter().map(|(leads, _)| number(leads)).collect();
    let mut marks = vec![0u32; numbers.len()];
    let mut generation = 0u32;
    let mut cost = |chosen: &[bool]| -> u64 {
        generation += 1;
        let mut reads = 0u64;
        let lead_reads = base.iter().chain(
            per_code
                .iter()
                .zip(chosen)
                .filter(|(_, chosen)| !**chosen)
                .flat_map(|(leads, _)| leads.iter()),
        );
        for &lead in lead_reads {
            if marks[lead] != generation {
                marks[lead] = generation;
                reads += 1;
            }
        }
        reads
            + codes
                .iter()
                .zip(chosen)
                .filter(|(_, chosen)| **chosen)
                .map(|((_, pages), _)| pages.unwrap_or(0))
                .sum::<u64>()
    };
    let candidates: Vec<usize> = (0..codes.len()).filter(|&i| codes[i].1.is_some()).collect();
    let mut best = vec![false; codes.len()];
    let mut best_cost = cost(&best);
    if candidates.len() <= EXACT_CHOICE {
        for mask in 1u32..(1 << candidates.len()) {
            let mut chosen = vec![false; codes.len()];
            for (bit, &i) in candidates.iter().enumerate() {
                chosen[i] = mask & (1 << bit) != 0;
            }
            let here = cost(&chosen);
            let fewer_codes =
                chosen.iter().filter(|c| **c).count() < best.iter().filter(|c| **c).count();
            if here < best_cost || (here == best_cost && fewer_codes) {
                best = chosen;
                best_cost = here;
            }
        }
    } else {
        loop {
            let mut step = None;
            for &i in &candidates {
                if best[i] {
                    continue;
                }
                best[i] = true;
                let here = cost(&best);
                best[i] = false;
                if here < step.map_or(best_cost, |(_, c)| c) {
                    step = Some((i, here));
                }
            }
            let Some((i, here)) = step else { break };
            best[i] = true;
            best_cost = here;
        }
    }
    best
}

/// Candidates up to which [`choose`] tries every subset (4,096 of them).
const EXACT_CHOICE: usize = 12;

/// The round: every row's match, reading each code account-wide or lead by lead as the module
/// comment says. `known` holds the ids the ledger attributes to the round's leads, which are
/// never claimed again; `arrivals` says, per code, what the import may add to a listing while it
/// is walked ([`Created::arrivals`]), which an estimate counts in (asked once the first pages
/// are in, so that it can go by how fast the import wrote meanwhile). Errors are those of the
/// per-lead reads, and an account-wide read's `Unauthorized` (the keys were refused: nothing
/// else will work either); any other failure of an account-wide read only sends its code to the
/// per-lead reads.
pub(crate) async fn settle(
    fetcher: &Fetcher,
    reader: &EventReader,
    rows: &[RowInDoubt<'_>],
    calls: &[CallInDoubt],
    known: &HashSet<String>,
    arrivals: &(dyn Fn() -> HashMap<i64, u64> + Sync),
    memory: &mut CheckMemory,
) -> Result<Vec<Option<String>>, FetchError> {
    let demands = demands(rows, calls, memory.margin());
    // Rows read lead by lead whatever is chosen, and the leads that are read for them.
    let mut by_lead: Vec<usize> = demands
        .iter()
        .flat_map(|d| d.leads_only.iter().copied())
        .collect();
    let anyway: BTreeSet<String> = by_lead
        .iter()
        .filter_map(|&i| rows.get(i))
        .map(|r| normalise_lead(&r.item.related_prospect_id))
        .collect();

    // Which codes are worth an estimate.
    let mut plans: Vec<Option<Plan>> = demands
        .iter()
        .map(|demand| {
            if demand.rows.is_empty() {
                return None;
            }
            let remembered = memory.codes.get(&demand.event).cloned().unwrap_or_default();
            let predicted = remembered
                .density
                .zip(demand.from)
                .map(|(d, f)| d.pages_since(f));
            Some(plan(
                demand.leads.len(),
                demand.from.is_some(),
                demand.canary.is_some(),
                &remembered,
                memory.unavailable.as_deref(),
                predicted,
            ))
        })
        .collect();
    let total = demands
        .iter()
        .flat_map(|d| d.leads.iter())
        .chain(&anyway)
        .collect::<HashSet<_>>()
        .len();
    let estimated: Vec<usize> = (0..plans.len())
        .filter(|&i| plans[i] == Some(Plan::Estimate))
        .collect();
    let sizes: Vec<usize> = estimated.iter().map(|&i| demands[i].leads.len()).collect();
    for (&i, keep) in estimated.iter().zip(affordable(
        &sizes,
        total,
        memory.leads_per_estimate.unwrap_or(LEADS_PER_ESTIMATE),
    )) {
        if !keep {
            plans[i] = Some(Plan::Leads(format!(
                "the round's {total} leads in doubt are too few to pay for an estimate of \
                 every code"
            )));
        }
    }

    // First pages, side by side (each still waits for the pacer).
    let opening = demands.iter().zip(plans).map(|(demand, plan)| async move {
        match plan {
            Some(Plan::Estimate) => {
                Opened::Walk(reader.open_walk(&demand.query()).await.map(Box::new))
            }
            Some(Plan::Leads(why)) => Opened::Leads(why),
            None => Opened::Nothing,
        }
    });
    let opened = futures::future::join_all(opening).await;

    // What each first page says, and the choice.
    let arrivals = arrivals();
    let mut walks: Vec<Option<Box<OpenWalk<'_>>>> = Vec::new();
    let mut costs: Vec<(&BTreeSet<String>, Option<u64>)> = Vec::new();
    for (demand, opened) in demands.iter().zip(opened) {
        let head = demand.head();
        let mut walk = None;
        match opened {
            Opened::Nothing => {
                if !demand.leads_only.is_empty() {
                    info!(
                        "check: code {}: {} rows in doubt, all of calls sent before anything \
                         of the code was known created: reading the leads",
                        demand.event,
                        demand.leads_only.len()
                    );
                }
            }
            Opened::Leads(why) => info!("{head}: reading the leads ({why})"),
            Opened::Walk(Err(FetchError::Unauthorized(message))) => {
                return Err(FetchError::Unauthorized(message));
            }
            Opened::Walk(Err(FetchError::Fatal(message))) => {
                warn!(
                    "{head}: reading the leads (the account-wide read is not available: \
                     {message})"
                );
                memory.unavailable = Some(message);
            }
            Opened::Walk(Err(e)) => {
                warn!("{head}: reading the leads (the account-wide read failed: {e})");
            }
            Opened::Walk(Ok(open)) if open.stats().without_note > 0 => {
                warn!(
                    "{head}: reading the leads (the server lists this code's activities \
                     without their notes, so they cannot be matched)"
                );
                memory.codes.entry(demand.event).or_default().no_notes = true;
            }
            Opened::Walk(Ok(open)) => walk = Some(open),
        }
        if let (Some(open), Some(from)) = (&walk, demand.from) {
            let window = (Utc::now() - from).num_milliseconds().max(1) as f64 / 1000.0;
            memory.codes.entry(demand.event).or_default().density = Some(Density {
                per_second: open.stats().record_count as f64 / window,
                page_size: open.stats().page_size.max(1),
            });
        }
        // The pages left by the first page's count, and what the import may add meanwhile.
        let pages_left = walk.as_ref().map(|w| {
            let coming = arrivals.get(&demand.event).copied().unwrap_or(0);
            pages_of(w.stats().record_count + coming, w.stats().page_size).saturating_sub(1)
        });
        costs.push((&demand.leads, pages_left));
        walks.push(walk);
    }
    let chosen = choose(&costs, &anyway);
    let pages_left: Vec<Option<u64>> = costs.iter().map(|(_, left)| *left).collect();

    // The chosen codes' walks finished, side by side; the others' leads read.
    let mut finishing = Vec::new();
    for (((demand, walk), chosen), left) in demands.iter().zip(walks).zip(&chosen).zip(pages_left) {
        let Some(walk) = walk else {
            by_lead.extend(&demand.rows);
            continue;
        };
        if !chosen {
            let first = walk.stats();
            let estimate = left.unwrap_or(0) + 1;
            let alone = !worth_reading(estimate, demand.leads.len());
            info!(
                "{}: reading the leads (the code's activities {} would take about {estimate} \
                 pages: {} activities, and up to {} more the import may write meanwhile{})",
                demand.head(),
                demand.since(),
                first.record_count,
                arrivals.get(&demand.event).copied().unwrap_or(0),
                if alone {
                    ""
                } else {
                    "; more than its leads add to those the round reads anyway"
                }
            );
            by_lead.extend(&demand.rows);
            continue;
        }
        finishing.push(finish_code(demand, walk));
    }
    let mut matched: Vec<Option<String>> = vec![None; rows.len()];
    let finished = futures::future::join_all(finishing).await;
    let mut missed = false;
    for (demand, result) in finished {
        match result {
            Finished::Listed(found) => {
                let items: Vec<&ActivityItem> = demand.rows.iter().map(|&i| rows[i].item).collect();
                for (&index, id) in demand
                    .rows
                    .iter()
                    .zip(match_event_rows(&items, &found, known))
                {
                    matched[index] = id;
                }
            }
            Finished::Unauthorized(message) => return Err(FetchError::Unauthorized(message)),
            Finished::NoNotes => {
                memory.codes.entry(demand.event).or_default().no_notes = true;
                by_lead.extend(&demand.rows);
            }
            Finished::CanaryMissed => {
                missed = true;
                by_lead.extend(&demand.rows);
            }
            Finished::Leads => by_lead.extend(&demand.rows),
        }
    }
    if missed {
        memory.widen();
    }
    if !by_lead.is_empty() {
        by_lead.sort_unstable();
        let items: Vec<&ActivityItem> = by_lead.iter().map(|&i| rows[i].item).collect();
        for (&index, id) in by_lead.iter().zip(resolve(fetcher, &items, known).await?) {
            matched[index] = id;
        }
    }
    Ok(matched)
}

/// What became of a code's estimate.
enum Opened<'r> {
    /// No rows an account-wide read could settle.
    Nothing,
    /// Not estimated: its leads are read, for this reason.
    Leads(String),
    /// The first page, or why it could not be read (boxed: a walk under way is large).
    Walk(Result<Box<OpenWalk<'r>>, FetchError>),
}

/// How a chosen code's account-wide read ended.
enum Finished {
    /// Believed: the listed activities of the round's leads.
    Listed(Vec<EventActivity>),
    /// The keys were refused.
    Unauthorized(String),
    /// Items came without a note field.
    NoNotes,
    /// The read did not list the canary.
    CanaryMissed,
    /// Failed otherwise.
    Leads,
}

/// The rest of a chosen code's walk, keeping what the round's leads hold, then the checks of the
/// module comment, with the code's log line.
async fn finish_code<'d, 'a>(
    demand: &'d Demand<'a>,
    walk: Box<OpenWalk<'_>>,
) -> (&'d Demand<'a>, Finished) {
    let head = demand.head();
    let mut kept = Vec::new();
    let mut canary_listed = false;
    let walked = walk
        .finish(|page| {
            for activity in page {
                canary_listed |= demand.canary == Some(activity.id.as_str());
                // Only the round's leads can hold one of its rows: the rest is not kept.
                if demand.leads.contains(&activity.lead_id) {
                    kept.push(activity);
                }
            }
            Ok::<(), FetchError>(())
        })
        .await;
    let stats = match walked {
        Ok(stats) => stats,
        Err(FetchError::Unauthorized(message)) => {
            return (demand, Finished::Unauthorized(message));
        }
        Err(e) => {
            warn!("{head}: reading the leads (the account-wide read failed: {e})");
            return (demand, Finished::Leads);
        }
    };
    if stats.without_note > 0 {
        warn!(
            "{head}: reading the leads ({} of the code's activities were listed without a note, \
             so they cannot be matched)",
            stats.without_note
        );
        return (demand, Finished::NoNotes);
    }
    if let Some(canary) = demand.canary.filter(|_| !canary_listed) {
        warn!(
            "{head}: reading the leads (the code's activities {} did not include {canary}, \
             created before the calls in doubt left: the server's clock is behind ours by more \
             than the margin, or its date filter is not what this read relies on)",
            demand.since()
        );
        return (demand, Finished::CanaryMissed);
    }
    info!(
        "{head}: read the code's activities {} ({} activities, {} pages) instead of the {} \
         leads",
        demand.since(),
        stats.activities,
        stats.pages,
        demand.leads.len()
    );
    (demand, Finished::Listed(kept))
}

impl Demand<'_> {
    /// The account-wide read: the code's activities modified since `from`, empty values listed
    /// as "" (so that an empty note is told from no note field at all).
    fn query(&self) -> EventQuery {
        EventQuery {
            event: self.event,
            modified_from: self.from.map(|f| f.format(DATE_TIME_FORMAT).to_string()),
            modified_to: None,
            keep_empty_values: true,
        }
    }

    /// The start of the code's log line.
    fn head(&self) -> String {
        let mut head = format!(
            "check: code {}: {} rows on {} leads in doubt",
            self.event,
            self.rows.len(),
            self.leads.len()
        );
        if !self.leads_only.is_empty() {
            head.push_str(&format!(
                " (and {} of calls sent before anything of the code was known created, read \
                 lead by lead)",
                self.leads_only.len()
            ));
        }
        head
    }

    /// Which activities the account-wide read lists, for the log.
    fn since(&self) -> String {
        self.from.map_or_else(
            || "of any date (a call's start is not known)".to_string(),
            |from| format!("modified since {}", from.format(DATE_TIME_FORMAT)),
        )
    }
}

#[cfg(test)]
mod tests;
