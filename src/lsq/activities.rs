//! Get Activities of a Lead, every page: an [`ActivityQuery`] (lead, optional type and date
//! window) goes in, every matching activity comes out exactly once, whatever the server's
//! `Paging.Offset` counts.
//!
//! The vendor documents no date filter for this endpoint, so a server may ignore the
//! `FromDate`/`ToDate` we send and list everything: the window is sent (a server that honours
//! it answers less), and applied again on our side to every activity's date (`CreatedOn`)
//! through [`DateWindow`], so nothing depends on what the server did with it.
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
use crate::lsq::window::DateWindow;

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

    /// The window to apply on our side, from `from`/`to`.
    pub(crate) fn window(&self) -> Result<DateWindow, FetchError> {
        DateWindow::parse(self.from.as_deref(), self.to.as_deref())
            .map_err(|e| FetchError::Failed(format!("lead {}: {e}", self.lead_id)))
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
    /// server lists them (newest first). The date window is applied here, whatever the server
    /// did with it: the walk pages through what the server lists (its `RecordCount` counts
    /// that), then only the activities dated inside the window are kept.
    pub(crate) async fn fetch_all(
        &self,
        query: &ActivityQuery,
    ) -> Result<Vec<ProspectActivity>, FetchError> {
        let window = query.window()?;
        let mut listed = self.list(query).await?;
        if !window.is_unbounded() {
            listed.retain(|activity| window.admits(&activity.created_on));
        }
        Ok(listed)
    }

    /// Everything the server lists for the query, whether or not it applied the window.
    async fn list(&self, query: &ActivityQuery) -> Result<Vec<ProspectActivity>, FetchError> {
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

    /// How many activities match. Without a date window, `RecordCount` from one call asking
    /// for a single row; with one, the server's count cannot be trusted to have applied it, so
    /// the activities are listed and those in the window counted.
    pub(crate) async fn count(&self, query: &ActivityQuery) -> Result<u64, FetchError> {
        if query.window()?.is_unbounded() {
            Ok(self.call(query, 0, 1).await?.record_count)
        } else {
            Ok(self.fetch_all(query).await?.len() as u64)
        }
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
                    Verdict::DataError(message) if names_missing_lead(&message) => {
                        Judged::Done(Err(FetchError::LeadNotFound(message)))
                    }
                    other => judge_read(other),
                },
                |closed| FetchError::Failed(closed.to_string()),
                FetchError::Failed,
            )
            .instrument(tracing::warn_span!("lookup", lead = %query.lead_id))
            .await
    }
}

/// What a read makes of an answer that is neither a rate limit nor a transient failure (those
/// [`Api::call`] retries itself): shared by every read, of a lead or of a code.
pub(crate) fn judge_read<R>(verdict: Verdict<R>) -> Judged<R, FetchError> {
    match verdict {
        Verdict::Success(response) => Judged::Done(Ok(response)),
        // A read is safe to repeat whatever happened to the first attempt.
        Verdict::Unknown(message) => Judged::Retry(message),
        Verdict::Unauthorized(message) => Judged::Done(Err(FetchError::Unauthorized(message))),
        Verdict::Fatal(message) => Judged::Done(Err(FetchError::Fatal(message))),
        Verdict::DataError(message)
        | Verdict::Rejected(message)
        | Verdict::Transient(message)
        | Verdict::RateLimited { message, .. } => Judged::Done(Err(FetchError::Failed(message))),
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
mod tests;
