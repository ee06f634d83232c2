//! Get Activities of a Lead, every page: an [`ActivityQuery`] (lead, optional type and date
//! window) goes in, every matching activity comes out exactly once, whatever the server's
//! `Paging.Offset` counts.
//!
//! The vendor calls `Offset` "the page number" without saying whether the first page is 0 or 1,
//! and some clients treat it as a row offset (`shared/leadsquared-api/README.md`). Rather than
//! assume, [`Pager`] (pure, no I/O) works the meaning out from what the first two pages hold and
//! then walks the rest; [`Fetcher`] (the I/O half) makes each call through the run's
//! [`Api`] (paced, counted, retried, watched by the outage gate, like every other call of the
//! run) and maps the client's [`Verdict`]s to [`FetchError`]s.

use std::collections::HashSet;

use tracing::{Instrument, debug, warn};

use crate::lsq::api::{
    PATH_RETRIEVE, Paging, ProspectActivity, RetrieveParameter, RetrieveRequest, RetrieveResponse,
};
use crate::lsq::calls::{Api, Judged};
use crate::lsq::client::Verdict;

/// `RowCount` asked for when nothing else is configured: a tenth of the calls the vendor's
/// default of 25 would need, while keeping each answer small.
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 100;

/// Pages allowed in one walk beyond `ceil(RecordCount / page size)`: one for the probe that
/// tells the paging modes apart, and slack for activities added while we walk. The cap exists so
/// that no server behaviour, however odd, can make a walk loop forever.
const EXTRA_PAGES: u64 = 3;

/// Walks made before giving up on a lead whose pages never add up to its `RecordCount` (its
/// activities changed while we paged, or the server's answers contradict each other).
const MAX_WALKS: u32 = 2;

/// Which activities of which lead to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ActivityQuery {
    /// The lead's id, sent as the `leadId` query parameter.
    pub lead_id: String,
    /// Only this activity type (`Parameter.ActivityEvent`); `None` for every type, system ones
    /// such as owner changes included.
    pub event: Option<i64>,
    /// Earliest activity date, inclusive, UTC `yyyy-MM-dd HH:mm:ss` (`Parameter.FromDate`).
    pub from: Option<String>,
    /// Latest activity date, inclusive, UTC `yyyy-MM-dd HH:mm:ss` (`Parameter.ToDate`).
    pub to: Option<String>,
}

impl ActivityQuery {
    /// Every activity of `lead_id`, any type, any date.
    #[cfg(test)]
    pub(crate) fn lead(lead_id: impl Into<String>) -> ActivityQuery {
        ActivityQuery {
            lead_id: lead_id.into(),
            ..ActivityQuery::default()
        }
    }

    /// The request body for one page. `Parameter` is left out when there is no filter, which
    /// is the vendor's documented way to ask for every type.
    fn request(&self, offset: u64, row_count: u64) -> RetrieveRequest {
        let parameter = RetrieveParameter {
            activity_event: self.event,
            from_date: self.from.clone(),
            to_date: self.to.clone(),
        };
        RetrieveRequest {
            parameter: (parameter != RetrieveParameter::default()).then_some(parameter),
            paging: Some(Paging { offset, row_count }),
        }
    }
}

/// Why a lead's activities could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// The server does not know the lead (`MXInvalidEntityException`); carries its message.
    #[error("lead not found: {0}")]
    LeadNotFound(String),
    /// The server refused the query, answered something unreadable, kept failing after every
    /// retry, or its pages never added up to its `RecordCount`.
    #[error("{0}")]
    Failed(String),
    /// The keys were refused (HTTP 401): nothing more can succeed, the caller should stop.
    #[error("{0}")]
    Unauthorized(String),
    /// Wrong host or path (HTTP 404): nothing more can succeed, the caller should stop.
    #[error("{0}")]
    Fatal(String),
}

/// Fetches activities of leads; cheap to share behind a reference, every call paced.
pub(crate) struct Fetcher {
    /// The run's client, pacer, counters, retry policy and outage gate.
    pub api: Api,
    /// `RowCount` of each page; [`DEFAULT_PAGE_SIZE`] unless configured. 0 is read as 1.
    pub page_size: u64,
}

impl Fetcher {
    /// A fetcher with the default page size.
    pub(crate) fn new(api: Api) -> Fetcher {
        Fetcher {
            api,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Every activity of the lead matching the query, each exactly once, in the order the
    /// server lists them (newest first).
    pub(crate) async fn fetch_all(
        &self,
        query: &ActivityQuery,
    ) -> Result<Vec<ProspectActivity>, FetchError> {
        let mut problem = String::new();
        for walk in 1..=MAX_WALKS {
            let mut pager = Pager::new(self.page_size);
            while let Some((offset, row_count)) = pager.next_request() {
                let page = self.call(query, offset, row_count).await?;
                debug!(
                    lead = %query.lead_id,
                    offset,
                    rows = page.prospect_activities.len(),
                    record_count = page.record_count,
                    "activities page"
                );
                pager.feed(page);
            }
            match pager.finish() {
                Ok(activities) => return Ok(activities),
                // A second walk helps when activities were added or deleted while we paged;
                // when the server itself is inconsistent it fails the same way and we stop.
                Err(why) => {
                    warn!(lead = %query.lead_id, walk, "activities incomplete: {why}");
                    problem = why;
                }
            }
        }
        Err(FetchError::Failed(format!(
            "could not list every activity of lead {} after {MAX_WALKS} attempts: {problem}",
            query.lead_id
        )))
    }

    /// Just `RecordCount`: how many activities match, from one call asking for a single row.
    pub(crate) async fn count(&self, query: &ActivityQuery) -> Result<u64, FetchError> {
        Ok(self.call(query, 0, 1).await?.record_count)
    }

    /// One page, through the pacer, retried on rate limits and transient failures. Get
    /// Activities only reads, so a retry after a lost answer cannot duplicate anything.
    async fn call(
        &self,
        query: &ActivityQuery,
        offset: u64,
        row_count: u64,
    ) -> Result<RetrieveResponse, FetchError> {
        let body = query.request(offset, row_count);
        let params = [("leadId", query.lead_id.as_str())];
        self.api
            .call(
                "get activities",
                Some(&self.api.stats.lookup_calls),
                || self.api.client.post(PATH_RETRIEVE, &params, &body),
                |verdict| match verdict {
                    Verdict::Success(response) => Judged::Done(Ok(response)),
                    // A read is safe to repeat whatever happened to the first attempt.
                    Verdict::Unknown(message) => Judged::Retry(message),
                    Verdict::DataError(message) if names_missing_lead(&message) => {
                        Judged::Done(Err(FetchError::LeadNotFound(message)))
                    }
                    Verdict::Unauthorized(message) => {
                        Judged::Done(Err(FetchError::Unauthorized(message)))
                    }
                    Verdict::Fatal(message) => Judged::Done(Err(FetchError::Fatal(message))),
                    Verdict::DataError(message)
                    | Verdict::Rejected(message)
                    | Verdict::Transient(message)
                    | Verdict::RateLimited { message, .. } => {
                        Judged::Done(Err(FetchError::Failed(message)))
                    }
                },
                |closed| FetchError::Failed(closed.to_string()),
                FetchError::Failed,
            )
            .instrument(tracing::warn_span!("lookup", lead = %query.lead_id))
            .await
    }
}

/// Whether a data error says the lead does not exist. The vendor answers an unknown lead with
/// `MXInvalidEntityException`; the wording of the message is not documented, so the type is
/// what counts, with the usual phrasings as a fallback.
fn names_missing_lead(message: &str) -> bool {
    let text = message.to_ascii_lowercase();
    text.contains("mxinvalidentityexception")
        || ((text.contains("lead") || text.contains("entity"))
            && (text.contains("not found") || text.contains("does not exist")))
}

/// What `Paging.Offset` turned out to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetMeaning {
    /// Offset 0 is the first page.
    ZeroBasedPage,
    /// Offset 1 is the first page (and 0 is either the first page too, or empty).
    OneBasedPage,
    /// Offset is the number of rows to skip.
    Rows,
}

impl OffsetMeaning {
    /// The offset that starts at row `rows` (a multiple of `page` for the page meanings, since
    /// a walk only goes on after full pages).
    fn offset(self, rows: u64, page: u64) -> u64 {
        match self {
            OffsetMeaning::ZeroBasedPage => rows / page,
            OffsetMeaning::OneBasedPage => rows / page + 1,
            OffsetMeaning::Rows => rows,
        }
    }
}

/// Where a walk stands: what the next request is, and how its answer will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Ask for Offset 0.
    First,
    /// Offset 0 came back empty although `RecordCount` says there are activities: a strictly
    /// 1-based server may answer page 0 with nothing, so ask for Offset 1 as the first page.
    FirstAtOne,
    /// The first page was full and more exist: ask for Offset 1 and compare it with the first
    /// page to learn what Offset counts.
    Probe,
    /// The meaning is known; `rows` rows of the listing have been walked so far.
    Walk { meaning: OffsetMeaning, rows: u64 },
    /// No more requests.
    Done,
}

/// The paging logic of [`Fetcher::fetch_all`], free of I/O: it says which page to ask for next
/// ([`Pager::next_request`]), reads each answer ([`Pager::feed`]) and hands back the collected
/// activities ([`Pager::finish`]).
///
/// How Offset's meaning is found: the first page (Offset 0) is rows `0..P` under every meaning
/// (a 1-based server reads 0 as 1, or answers nothing, see [`Phase::FirstAtOne`]). Offset 1
/// then gives rows `0..P` again if pages are 1-based, rows `1..P+1` (the first page shifted by
/// one) if Offset counts rows, and rows `P..2P` if pages are 0-based; with distinct ids these
/// three answers cannot be confused, and for `P = 1` the last two coincide and are walked the
/// same way. After that every request starts at the first row not yet walked, so a row-offset
/// server is still read a full page per call.
///
/// The walk stops when the distinct ids reach `RecordCount`, when a page comes back shorter
/// than asked (or empty), when a page adds no new id, or after `ceil(RecordCount / P) + 3`
/// pages, whichever comes first: nothing the server answers can make it loop forever.
#[derive(Debug)]
struct Pager {
    /// Rows per page. Starts as the configured `RowCount`; lowered to what the server actually
    /// returns when it serves fewer rows than asked while saying more exist (a server-side cap).
    page: u64,
    /// What to ask next.
    phase: Phase,
    /// Ids collected so far, to de-duplicate.
    seen: HashSet<String>,
    /// The activities collected, first sighting of each id, in listing order.
    activities: Vec<ProspectActivity>,
    /// Ids of the first page, in order, for the probe's comparison.
    first_ids: Vec<String>,
    /// `RecordCount` of the latest answer: how many activities match right now.
    record_count: u64,
    /// The largest `RecordCount` seen, which sizes the page cap.
    max_record_count: u64,
    /// Pages received in this walk.
    pages: u64,
    /// Why the walk ended, for the message when it ends short.
    stop: &'static str,
}

impl Pager {
    fn new(page_size: u64) -> Pager {
        Pager {
            page: page_size.max(1),
            phase: Phase::First,
            seen: HashSet::new(),
            activities: Vec::new(),
            first_ids: Vec::new(),
            record_count: 0,
            max_record_count: 0,
            pages: 0,
            stop: "not started",
        }
    }

    /// `(Offset, RowCount)` of the next call, or `None` when the walk is over.
    fn next_request(&self) -> Option<(u64, u64)> {
        let offset = match self.phase {
            Phase::First => 0,
            Phase::FirstAtOne | Phase::Probe => 1,
            Phase::Walk { meaning, rows } => meaning.offset(rows, self.page),
            Phase::Done => return None,
        };
        Some((offset, self.page))
    }

    /// Reads the answer to the request [`Pager::next_request`] named.
    fn feed(&mut self, response: RetrieveResponse) {
        self.pages += 1;
        self.record_count = response.record_count;
        self.max_record_count = self.max_record_count.max(response.record_count);
        let page = response.prospect_activities;
        let len = page.len() as u64;
        let ids: Vec<String> = page.iter().map(|a| a.id.clone()).collect();
        let fresh = self.add(page);
        self.phase = match self.phase {
            Phase::First => {
                if len == 0 && self.record_count > 0 {
                    Phase::FirstAtOne
                } else {
                    // A server that caps RowCount serves fewer rows than asked while saying
                    // more exist; its pages are then that long, and Offset counts in them.
                    if len > 0 && len < self.page && self.record_count > len {
                        self.page = len;
                    }
                    self.first_ids = ids;
                    self.after_page(len, fresh, Phase::Probe)
                }
            }
            Phase::FirstAtOne => self.after_page(
                len,
                fresh,
                Phase::Walk {
                    meaning: OffsetMeaning::OneBasedPage,
                    rows: len,
                },
            ),
            Phase::Probe => {
                let first = &self.first_ids;
                let (meaning, rows) = if ids == *first {
                    // The same page again: Offset 0 and 1 both name the first page.
                    (OffsetMeaning::OneBasedPage, first.len() as u64)
                } else if !first.is_empty()
                    && ids.len() + 1 >= first.len()
                    && ids[..first.len() - 1] == first[1..]
                {
                    // The first page moved up by one row: Offset skipped one row. Rows 0 (from
                    // the first page) through `len` (this page) are walked.
                    (OffsetMeaning::Rows, 1 + len)
                } else {
                    // Something else: the second page of a 0-based listing.
                    (OffsetMeaning::ZeroBasedPage, first.len() as u64 + len)
                };
                debug!(?meaning, "paging: what Offset counts");
                // A 1-based probe repeats the first page by design, so "no new id" only ends
                // the walk for the other meanings.
                let fresh = if meaning == OffsetMeaning::OneBasedPage {
                    len
                } else {
                    fresh
                };
                self.after_page(len, fresh, Phase::Walk { meaning, rows })
            }
            Phase::Walk { meaning, rows } => self.after_page(
                len,
                fresh,
                Phase::Walk {
                    meaning,
                    rows: rows + len,
                },
            ),
            Phase::Done => Phase::Done,
        };
    }

    /// The phase after a page of `len` rows that added `fresh` new ids: `next`, unless one of
    /// the stop rules applies.
    fn after_page(&mut self, len: u64, fresh: u64, next: Phase) -> Phase {
        let cap = self.max_record_count.div_ceil(self.page) + EXTRA_PAGES;
        self.stop = if self.seen.len() as u64 >= self.record_count {
            "all counted activities collected"
        } else if len < self.page {
            "a page came back short"
        } else if fresh == 0 {
            "a page added no new activity"
        } else if self.pages >= cap {
            "too many pages"
        } else {
            return next;
        };
        Phase::Done
    }

    /// Keeps the activities whose ids are new; returns how many were.
    fn add(&mut self, page: Vec<ProspectActivity>) -> u64 {
        let before = self.activities.len();
        for activity in page {
            if self.seen.insert(activity.id.clone()) {
                self.activities.push(activity);
            }
        }
        (self.activities.len() - before) as u64
    }

    /// The activities, or why they fall short of `RecordCount`. A short list is an error, not
    /// a result: callers decide from it which rows exist, and a missing one would be posted
    /// again as a duplicate.
    fn finish(self) -> Result<Vec<ProspectActivity>, String> {
        let got = self.activities.len() as u64;
        if got >= self.record_count {
            Ok(self.activities)
        } else {
            Err(format!(
                "{got} distinct activities collected of the {} the server counts, in {} pages \
                 ({})",
                self.record_count, self.pages, self.stop
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::lsq::api::ActivityItem;
    use crate::lsq::calls::RetryPolicy;
    use crate::lsq::client::{ClientConfig, LsqClient};
    use crate::lsq::pace::Pacer;
    use crate::lsq::secure::Secret;
    use crate::report::stats::RunStats;
    use crate::simulator::{OWNER_CHANGE_EVENT, PagingMode, RunningSimulator, SimConfig};

    // ---- Pager against an in-memory listing ----

    /// How a fake server reads Offset, including behaviours outside the three real modes.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fake {
        Zero,
        One,
        Rows,
        /// 1-based and strict: Offset 0 is empty.
        OneStrict,
        /// Ignores Offset: always the first page.
        Ignores,
    }

    fn fake_activity(id: &str) -> ProspectActivity {
        ProspectActivity {
            id: id.to_string(),
            event_code: 201,
            event_name: String::new(),
            activity_score: 0,
            created_on: "2025-01-01 00:00:00".into(),
            activity_type: 2,
            is_email_type: false,
            direction: String::new(),
            session_id: String::new(),
            related_prospect_id: String::new(),
            data: Vec::new(),
            activity_fields: serde_json::Map::new(),
            modified_on: String::new(),
        }
    }

    /// One page of `ids` as a server of kind `fake` would serve it. `cap` limits RowCount,
    /// `extra_count` inflates RecordCount.
    fn serve(
        fake: Fake,
        ids: &[String],
        offset: u64,
        row_count: u64,
        cap: u64,
        extra_count: u64,
    ) -> RetrieveResponse {
        let rows = row_count.min(cap);
        let skip = match fake {
            Fake::Zero => Some(offset * rows),
            Fake::One => Some(offset.max(1).saturating_sub(1) * rows),
            Fake::OneStrict => offset.checked_sub(1).map(|p| p * rows),
            Fake::Rows => Some(offset),
            Fake::Ignores => Some(0),
        };
        let page = match skip {
            Some(skip) => ids
                .iter()
                .skip(skip as usize)
                .take(rows as usize)
                .map(|id| fake_activity(id))
                .collect(),
            None => Vec::new(),
        };
        RetrieveResponse {
            record_count: ids.len() as u64 + extra_count,
            prospect_activities: page,
        }
    }

    /// Runs a walk against the fake; returns the result and the number of calls.
    fn walk(
        fake: Fake,
        n: usize,
        page: u64,
        cap: u64,
        extra_count: u64,
    ) -> (Result<Vec<ProspectActivity>, String>, u64, Vec<String>) {
        let ids: Vec<String> = (0..n).map(|i| format!("id-{i}")).collect();
        let mut pager = Pager::new(page);
        let mut calls = 0;
        while let Some((offset, row_count)) = pager.next_request() {
            calls += 1;
            assert!(calls < 1000, "{fake:?} n={n} page={page}: runaway walk");
            pager.feed(serve(fake, &ids, offset, row_count, cap, extra_count));
        }
        (pager.finish(), calls, ids)
    }

    #[test]
    fn every_offset_meaning_yields_each_activity_once_in_few_calls() {
        for fake in [Fake::Zero, Fake::One, Fake::Rows, Fake::OneStrict] {
            for page in [1u64, 2, 3, 25, 100] {
                let p = page as usize;
                for n in [0, 1, p.saturating_sub(1), p, p + 1, 2 * p, 2 * p + 1, 237] {
                    let (result, calls, ids) = walk(fake, n, page, u64::MAX, 0);
                    let got: Vec<String> = result
                        .unwrap_or_else(|e| panic!("{fake:?} n={n} page={page}: {e}"))
                        .into_iter()
                        .map(|a| a.id)
                        .collect();
                    assert_eq!(got, ids, "{fake:?} n={n} page={page}");
                    // The probe costs one call, and a strict 1-based server one more.
                    let bound = (n as u64).div_ceil(page).max(1) + 2;
                    assert!(
                        calls <= bound,
                        "{fake:?} n={n} page={page}: {calls} calls > {bound}"
                    );
                    if n as u64 <= page && fake != Fake::OneStrict {
                        assert_eq!(calls, 1, "{fake:?} n={n} page={page}: one page is one call");
                    }
                }
            }
        }
    }

    #[test]
    fn a_server_that_ignores_offset_ends_quickly_and_incomplete() {
        let (result, calls, _) = walk(Fake::Ignores, 237, 25, u64::MAX, 0);
        let err = result.unwrap_err();
        assert!(
            err.contains("25 distinct activities collected of the 237"),
            "{err}"
        );
        assert!(calls <= 3, "{calls} calls");
    }

    #[test]
    fn an_inflated_record_count_cannot_make_the_walk_endless() {
        for fake in [Fake::Zero, Fake::One, Fake::Rows] {
            let (result, calls, _) = walk(fake, 60, 25, u64::MAX, 1_000_000);
            assert!(result.is_err(), "{fake:?}");
            assert!(calls <= 5, "{fake:?}: {calls} calls");
        }
    }

    #[test]
    fn a_server_side_row_count_cap_is_followed() {
        for fake in [Fake::Zero, Fake::One, Fake::Rows] {
            let (result, calls, ids) = walk(fake, 95, 25, 10, 0);
            let got: Vec<String> = result.unwrap().into_iter().map(|a| a.id).collect();
            assert_eq!(got, ids, "{fake:?}");
            assert!(calls <= 12, "{fake:?}: {calls} calls");
        }
    }

    #[test]
    fn the_request_body_carries_filters_and_paging_as_the_vendor_spells_them() {
        let query = ActivityQuery {
            lead_id: "x".into(),
            event: Some(201),
            from: Some("2025-01-01 00:00:00".into()),
            to: None,
        };
        assert_eq!(
            serde_json::to_value(query.request(2, 25)).unwrap(),
            serde_json::json!({
                "Parameter": {"ActivityEvent": 201, "FromDate": "2025-01-01 00:00:00"},
                "Paging": {"Offset": "2", "RowCount": "25"}
            })
        );
        let all = ActivityQuery::lead("x").request(0, 100);
        assert_eq!(
            serde_json::to_value(all).unwrap(),
            serde_json::json!({"Paging": {"Offset": "0", "RowCount": "100"}})
        );
    }

    #[test]
    fn missing_lead_messages_are_recognised() {
        assert!(names_missing_lead(
            "MXInvalidEntityException: Lead not found"
        ));
        assert!(names_missing_lead("Lead does not exist"));
        assert!(!names_missing_lead(
            "MXInvalidInputException: Invalid FromDate"
        ));
    }

    // ---- Fetcher against the simulator ----

    const ACCESS: &str = "sim-access-key";
    const SECRET: &str = "sim-secret-key";
    const MAIN_ACTIVITIES: usize = 237;

    fn make_fetcher(
        sim: &RunningSimulator,
        page_size: u64,
        pace: &str,
        keys: (&str, &str),
    ) -> Fetcher {
        let client = LsqClient::new(&ClientConfig {
            host: sim.base_url(),
            access_key: Secret::new(keys.0),
            secret_key: Secret::new(keys.1),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_idle_connections: 4,
            allow_insecure_http: false,
        })
        .unwrap();
        Fetcher {
            api: Api::ungated(
                client,
                Arc::new(Pacer::new(pace.parse().unwrap(), 0.0)),
                Arc::new(RunStats::default()),
                RetryPolicy {
                    max_attempts: 30,
                    base: Duration::from_millis(20),
                    max: Duration::from_millis(200),
                },
            ),
            page_size,
        }
    }

    /// A fresh GUID-shaped lead id for extra leads.
    fn lead_guid(n: u32) -> String {
        format!("00000000-0000-4000-8000-{n:012}")
    }

    /// Seeds `n` activities on `lead`, codes 201..=205 in turn, dates with many ties (about
    /// five per hour) so the listing's tie order matters for paging too.
    fn seed(sim: &RunningSimulator, lead: &str, n: usize) {
        for i in 0..n {
            sim.sim.add_activity(ActivityItem {
                related_prospect_id: lead.to_string(),
                activity_event: 201 + (i % 5) as i64,
                activity_note: Some(format!("seeded {i}")),
                activity_owner_email: None,
                activity_date_time: Some(format!("2025-02-{:02} {:02}:00:00", 1 + i % 28, i % 24)),
                fields: Vec::new(),
            });
        }
    }

    /// Live ids the simulator holds for a lead, optionally of one code and inside a window.
    fn expected(
        sim: &RunningSimulator,
        lead: &str,
        code: Option<i64>,
        window: Option<(&str, &str)>,
    ) -> HashSet<String> {
        sim.sim
            .activities_of_lead(lead)
            .into_iter()
            .filter(|a| !a.deleted && code.is_none_or(|c| a.event_code == c))
            .filter(|a| {
                window.is_none_or(|(from, to)| {
                    a.date_time.as_str() >= from && a.date_time.as_str() <= to
                })
            })
            .map(|a| a.id)
            .collect()
    }

    /// Fetches, checks every expected id comes exactly once, and checks the number of calls.
    async fn check_fetch(fetcher: &Fetcher, query: &ActivityQuery, want: &HashSet<String>) {
        let before = RunStats::get(&fetcher.api.stats.calls);
        let got = fetcher.fetch_all(query).await.unwrap();
        let calls = RunStats::get(&fetcher.api.stats.calls) - before;
        let ids: Vec<String> = got.into_iter().map(|a| a.id).collect();
        let distinct: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(distinct.len(), ids.len(), "{query:?}: duplicates");
        assert_eq!(&distinct, want, "{query:?}");
        let bound = (want.len() as u64).div_ceil(fetcher.page_size).max(1) + 2;
        assert!(calls <= bound, "{query:?}: {calls} calls > {bound}");
    }

    async fn fetch_everything_in(mode: PagingMode) {
        let sim = RunningSimulator::start(SimConfig {
            rate: None,
            paging: mode,
            extra_leads: vec![lead_guid(1)],
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let main = crate::simulator::demo_lead_id(1);
        seed(&sim, &main, MAIN_ACTIVITIES);
        let (exactly_25, exactly_100) = (lead_guid(25), lead_guid(100));
        seed(&sim, &exactly_25, 25);
        seed(&sim, &exactly_100, 100);
        let empty = lead_guid(1);
        let window = ("2025-02-03 00:00:00", "2025-02-10 12:00:00");
        for page_size in [25, 100] {
            let fetcher = make_fetcher(&sim, page_size, "1000/1s", (ACCESS, SECRET));
            // Unfiltered: the 237 seeded plus the two owner changes every demo lead has.
            let all = expected(&sim, &main, None, None);
            assert_eq!(all.len(), MAIN_ACTIVITIES + 2);
            check_fetch(&fetcher, &ActivityQuery::lead(main.clone()), &all).await;
            let calls = expected(&sim, &main, Some(203), None);
            let query = ActivityQuery {
                event: Some(203),
                ..ActivityQuery::lead(main.clone())
            };
            check_fetch(&fetcher, &query, &calls).await;
            assert_eq!(fetcher.count(&query).await.unwrap(), calls.len() as u64);
            let owner_changes = ActivityQuery {
                event: Some(OWNER_CHANGE_EVENT),
                ..ActivityQuery::lead(main.clone())
            };
            assert_eq!(fetcher.fetch_all(&owner_changes).await.unwrap().len(), 2);
            let dated = ActivityQuery {
                event: Some(201),
                from: Some(window.0.into()),
                to: Some(window.1.into()),
                ..ActivityQuery::lead(main.clone())
            };
            let in_window = expected(&sim, &main, Some(201), Some(window));
            assert!(!in_window.is_empty());
            check_fetch(&fetcher, &dated, &in_window).await;
            assert_eq!(fetcher.count(&dated).await.unwrap(), in_window.len() as u64);
            check_fetch(
                &fetcher,
                &ActivityQuery::lead(empty.clone()),
                &HashSet::new(),
            )
            .await;
            let exact = if page_size == 25 {
                &exactly_25
            } else {
                &exactly_100
            };
            let want = expected(&sim, exact, None, None);
            assert_eq!(want.len() as u64, page_size);
            check_fetch(&fetcher, &ActivityQuery::lead(exact.clone()), &want).await;
            assert_eq!(RunStats::get(&fetcher.api.stats.retries), 0);
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn fetch_all_with_zero_based_pages() {
        fetch_everything_in(PagingMode::ZeroBasedPage).await;
    }

    #[tokio::test]
    async fn fetch_all_with_one_based_pages() {
        fetch_everything_in(PagingMode::OneBasedPage).await;
    }

    #[tokio::test]
    async fn fetch_all_with_row_offsets() {
        fetch_everything_in(PagingMode::RowOffset).await;
    }

    #[tokio::test]
    async fn unknown_leads_and_bad_keys_are_told_apart() {
        let sim = RunningSimulator::start(SimConfig {
            rate: None,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let fetcher = make_fetcher(&sim, 25, "1000/1s", (ACCESS, SECRET));
        let err = fetcher
            .fetch_all(&ActivityQuery::lead(lead_guid(404)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::LeadNotFound(m) if m.contains("MXInvalidEntityException")),
            "{err:?}"
        );
        let bad_keys = make_fetcher(&sim, 25, "1000/1s", (ACCESS, "wrong"));
        let err = bad_keys
            .count(&ActivityQuery::lead(crate::simulator::demo_lead_id(0)))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Unauthorized(_)), "{err:?}");
        // Neither is retried: one call each.
        assert_eq!(RunStats::get(&fetcher.api.stats.calls), 1);
        assert_eq!(RunStats::get(&bad_keys.api.stats.calls), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn rate_limited_pages_are_retried_until_everything_is_read() {
        let sim = RunningSimulator::start(SimConfig {
            rate: Some("3/300ms".parse().unwrap()),
            paging: PagingMode::RowOffset,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let main = crate::simulator::demo_lead_id(2);
        seed(&sim, &main, MAIN_ACTIVITIES);
        // The pacer allows five times what the account does, so the server must refuse some.
        let fetcher = make_fetcher(&sim, 25, "50/1s", (ACCESS, SECRET));
        let got = fetcher
            .fetch_all(&ActivityQuery::lead(main.clone()))
            .await
            .unwrap();
        let ids: HashSet<String> = got.iter().map(|a| a.id.clone()).collect();
        assert_eq!(ids.len(), got.len());
        assert_eq!(ids, expected(&sim, &main, None, None));
        let stats = &fetcher.api.stats;
        assert!(RunStats::get(&stats.rate_limited) > 0);
        assert_eq!(
            RunStats::get(&stats.rate_limited),
            RunStats::get(&stats.retries)
        );
        assert_eq!(
            sim.sim.stats().rate_limited,
            RunStats::get(&stats.rate_limited)
        );
        assert_eq!(sim.sim.stats().requests, RunStats::get(&stats.calls));
        sim.shutdown().await;
    }
}
