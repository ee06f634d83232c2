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
//! The choice, per activity code of the round ([`plan`] and [`worth_reading`], pure):
//! - lead by lead costs about one call per lead with rows of the code in doubt (L);
//! - the account-wide read lists every activity of the code **modified** since the earliest of
//!   those calls left, less a margin (`ModifiedOn` is the server's clock, `FromDate` selects on
//!   it; see [`CheckMemory::margin`]): whatever those calls created is among them, and rows are
//!   matched by content as [`match_event_rows`] does for any read. Its first page's
//!   `RecordCount` says what it costs, P = ceil(RecordCount / the page size served); that first
//!   page costs what a bare count would, so it is the estimate, and the walk goes on only while
//!   the P - 1 pages left cost less than the L leads. Otherwise the leads are read after all,
//!   and the estimate is remembered so that the next round does not pay for it again. The
//!   reader freezes the listing at its first page ([`EventReader::freeze`]), since the import
//!   goes on writing the code while a check reads it.
//!
//! With one or two leads there is nothing to save, and no estimate is paid for. One log line per
//! code and round says which read was chosen and why. Rounds are pooled by the caller (a round
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
use crate::lsq::api::{ActivityItem, DATE_TIME_FORMAT};
use crate::lsq::by_event::{EventActivity, EventQuery, EventReader, EventWalkStats, Walked};

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
}

impl CheckMemory {
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CodeMemory {
    /// The server lists this code's activities without their notes.
    no_notes: bool,
    /// Pages the last estimate found, when that was more than reading the leads: a later round
    /// with no more leads skips the estimate.
    costly: Option<u64>,
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
/// needs a canary to be believed).
fn plan(
    leads: usize,
    bounded: bool,
    canary: bool,
    memory: &CodeMemory,
    unavailable: Option<&str>,
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
    if let Some(pages) = memory.costly
        && !worth_reading(pages, leads)
    {
        return Plan::Leads(format!(
            "the last estimate of this code's account-wide read was {pages} pages"
        ));
    }
    Plan::Estimate
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

/// How one code's account-wide read ended.
enum CodeRead {
    /// Believed: the listed activities of the round's leads.
    Listed(Vec<EventActivity>),
    /// Not used; the code's rows are read lead by lead.
    Leads,
}

/// The round: every row's match, reading each code account-wide or lead by lead as the module
/// comment says. `known` holds the ids the ledger attributes to the round's leads, which are
/// never claimed again. Errors are those of the per-lead reads, and an account-wide read's
/// `Unauthorized` (the keys were refused: nothing else will work either); any other failure of
/// an account-wide read only sends its code to the per-lead reads.
pub(crate) async fn settle(
    fetcher: &Fetcher,
    reader: &EventReader,
    rows: &[RowInDoubt<'_>],
    calls: &[CallInDoubt],
    known: &HashSet<String>,
    memory: &mut CheckMemory,
) -> Result<Vec<Option<String>>, FetchError> {
    let mut matched: Vec<Option<String>> = vec![None; rows.len()];
    let demands = demands(rows, calls, memory.margin());
    // The codes' reads run side by side (each page still waits for the pacer); what they teach
    // is written to `memory` once all are in.
    let reads = demands.iter().map(|demand| {
        let remembered = memory.codes.get(&demand.event).cloned().unwrap_or_default();
        let unavailable = memory.unavailable.clone();
        async move {
            if demand.rows.is_empty() {
                info!(
                    "check: code {}: {} rows in doubt, all of calls sent before anything of the \
                     code was known created: reading the leads",
                    demand.event,
                    demand.leads_only.len()
                );
                return Ok((CodeRead::Leads, Learned::Nothing));
            }
            let plan = plan(
                demand.leads.len(),
                demand.from.is_some(),
                demand.canary.is_some(),
                &remembered,
                unavailable.as_deref(),
            );
            read_code(reader, demand, plan, remembered).await
        }
    });
    let results = futures::future::join_all(reads).await;
    let mut by_lead: Vec<usize> = Vec::new();
    let mut missed = false;
    for (demand, result) in demands.iter().zip(results) {
        by_lead.extend(&demand.leads_only);
        let (read, learned) = result?;
        match learned {
            Learned::Nothing => {}
            Learned::Code(code) => {
                memory.codes.insert(demand.event, code);
            }
            Learned::Unavailable(why) => memory.unavailable = Some(why),
            Learned::CanaryMissed => missed = true,
        }
        match read {
            CodeRead::Listed(found) => {
                let items: Vec<&ActivityItem> = demand.rows.iter().map(|&i| rows[i].item).collect();
                for (&index, id) in demand
                    .rows
                    .iter()
                    .zip(match_event_rows(&items, &found, known))
                {
                    matched[index] = id;
                }
            }
            CodeRead::Leads => by_lead.extend(&demand.rows),
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

/// What a code's read taught, for [`CheckMemory`].
enum Learned {
    /// Nothing new.
    Nothing,
    /// The code's memory from now on.
    Code(CodeMemory),
    /// The account-wide read is not available in this run, and why.
    Unavailable(String),
    /// A read did not list its canary: the margin was too narrow (or the server selects by
    /// something else).
    CanaryMissed,
}

/// One code: the plan carried out, with its log line.
async fn read_code(
    reader: &EventReader,
    demand: &Demand<'_>,
    plan: Plan,
    mut memory: CodeMemory,
) -> Result<(CodeRead, Learned), FetchError> {
    let mut head = format!(
        "check: code {}: {} rows on {} leads in doubt",
        demand.event,
        demand.rows.len(),
        demand.leads.len()
    );
    if !demand.leads_only.is_empty() {
        head.push_str(&format!(
            " (and {} of calls sent before anything of the code was known created, read lead by \
             lead)",
            demand.leads_only.len()
        ));
    }
    if let Plan::Leads(why) = plan {
        info!("{head}: reading the leads ({why})");
        return Ok((CodeRead::Leads, Learned::Nothing));
    }
    let since = demand.from.map_or_else(
        || "of any date (a call's start is not known)".to_string(),
        |from| format!("modified since {}", from.format(DATE_TIME_FORMAT)),
    );
    let query = EventQuery {
        event: demand.event,
        modified_from: demand.from.map(|f| f.format(DATE_TIME_FORMAT).to_string()),
        modified_to: None,
        // Empty values listed as "", so that an empty note is told from no note field at all.
        keep_empty_values: true,
    };
    let leads = demand.leads.len();
    let mut kept = Vec::new();
    let mut canary_listed = false;
    let walked = reader
        .walk_event_if(
            &query,
            |first| first.without_note == 0 && worth_reading(pages(first), leads),
            |page| {
                for activity in page {
                    canary_listed |= demand.canary == Some(activity.id.as_str());
                    // Only the round's leads can hold one of its rows: the rest is not kept.
                    if demand.leads.contains(&activity.lead_id) {
                        kept.push(activity);
                    }
                }
                Ok::<(), FetchError>(())
            },
        )
        .await;
    let stats = match walked {
        Ok(Walked::Complete(stats)) => stats,
        Ok(Walked::Declined(first)) => {
            if first.without_note > 0 {
                memory.no_notes = true;
                warn!(
                    "{head}: reading the leads (the server lists this code's activities \
                     without their notes, so they cannot be matched)"
                );
            } else {
                memory.costly = Some(pages(&first));
                info!(
                    "{head}: reading the leads (the code's activities {since} would take {} \
                     pages: {} activities)",
                    pages(&first),
                    first.record_count
                );
            }
            return Ok((CodeRead::Leads, Learned::Code(memory)));
        }
        Err(FetchError::Unauthorized(message)) => return Err(FetchError::Unauthorized(message)),
        Err(FetchError::Fatal(message)) => {
            warn!("{head}: reading the leads (the account-wide read is not available: {message})");
            return Ok((CodeRead::Leads, Learned::Unavailable(message)));
        }
        Err(e) => {
            warn!("{head}: reading the leads (the account-wide read failed: {e})");
            return Ok((CodeRead::Leads, Learned::Nothing));
        }
    };
    if stats.without_note > 0 {
        memory.no_notes = true;
        warn!(
            "{head}: reading the leads ({} of the code's activities were listed without a note, \
             so they cannot be matched)",
            stats.without_note
        );
        return Ok((CodeRead::Leads, Learned::Code(memory)));
    }
    if let Some(canary) = demand.canary.filter(|_| !canary_listed) {
        warn!(
            "{head}: reading the leads (the code's activities {since} did not include {canary}, \
             created before the calls in doubt left: the server's clock is behind ours by more \
             than the margin, or its date filter is not what this read relies on)"
        );
        return Ok((CodeRead::Leads, Learned::CanaryMissed));
    }
    info!(
        "{head}: read the code's activities {since} ({} activities, {} pages) instead of the \
         {leads} leads",
        stats.activities, stats.pages
    );
    memory.costly = None;
    Ok((CodeRead::Listed(kept), Learned::Code(memory)))
}

/// Pages the whole read takes, by the first page's count and the size the server serves.
fn pages(stats: &EventWalkStats) -> u64 {
    pages_of(stats.record_count, stats.page_size)
}

#[cfg(test)]
mod tests;
