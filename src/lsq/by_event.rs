//! Get Activities by Activity Event: every lead's activities of one custom type, read
//! account-wide, page by page, without a list of leads.
//!
//! An [`EventQuery`] (code, optional window on the **modified** date) goes in; pages of
//! [`EventActivity`]s come out, each activity once, handed to the caller as they arrive so that
//! memory stays flat whatever the account holds (only the ids seen are kept, 16 bytes each for
//! GUIDs). [`EventWalk`] (pure, no I/O) decides which page to ask for next, reads each answer
//! leniently ([`EventActivity::from_item`]), de-duplicates and says when the walk is over;
//! [`EventReader`] (the I/O half) makes each call through the run's [`Api`] (paced, counted in
//! `reads`, or in `check_reads` for a check's reads, retried, watched by the outage gate, like
//! every other call). [`EventReader::open_walk`] lets the caller stop after the first page,
//! whose `RecordCount` tells what the whole read would cost.
//!
//! What the vendor documents, and what is assumed (`shared/leadsquared-api/README.md`):
//! `PageIndex` counts from 1; the largest `PageSize` is not documented, so the reader asks for
//! [`DEFAULT_EVENT_PAGE_SIZE`] and, when the first page holds fewer rows while `RecordCount`
//! says more exist, takes that as the server's cap and asks for pages of that size from then
//! on (so `PageIndex` counts the pages the server really serves). Items are flat maps whose
//! values the vendor writes as strings; numbers are read too, unknown keys are ignored, and
//! the note, absent from the vendor's example, is read from `ActivityEvent_Note` (its schema
//! name elsewhere) or a few other spellings, and is `None` when the item has none.
//!
//! The listing is asked newest-modified first: an activity modified while we walk moves to the
//! front, behind us, so the rows still ahead shift by one and come again (de-duplicated by id)
//! rather than being skipped. The walk stops when the distinct ids reach `RecordCount`, a page
//! comes back short, a page repeats the one before, or after `ceil(RecordCount / size) + 3`
//! pages; if the ids then fall short of `RecordCount` it walks once more (handing out only ids
//! not seen yet), and if they still fall short it is an error, never a silent partial result.
//! A reader that needs nothing modified after its walk began (a check) can freeze the listing
//! at its first page and walk the rest oldest first ([`EventReader::freeze`]), so that an
//! import writing the same code at full speed does not keep the walk from catching up.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use tracing::{Instrument, debug};

use crate::lsq::activities::{FetchError, judge_read};
use crate::lsq::api::{
    ByEventParameter, ByEventRequest, ByEventResponse, FIELD_NOTE, MAX_CUSTOM_FIELD,
    PATH_RETRIEVE_BY_EVENT, PageIndexPaging, Sorting,
};
use crate::lsq::calls::Api;
use crate::lsq::window::{format_api_second, parse_api_second};

/// `PageSize` asked for: public scripts use 1000 on a similar endpoint; a server that caps
/// lower is handled by learning its size from the first page.
pub(crate) const DEFAULT_EVENT_PAGE_SIZE: u64 = 1000;

/// Pages allowed in one walk beyond `ceil(RecordCount / page size)`: slack for activities
/// modified while we walk. The cap exists so that no answer can make a walk loop forever.
const EXTRA_PAGES: u64 = 3;

/// Walks made before the reader gives up on pages that never add up to `RecordCount`.
const MAX_WALKS: u32 = 2;

/// How long after its first page a frozen listing stops taking in activities: its `ToDate`
/// leaves open the second of the newest activity that page listed and the one after
/// ([`freeze`]), and the server's clock had reached the first of them when it served the page.
pub(crate) const FROZEN_SECONDS: std::time::Duration = std::time::Duration::from_secs(2);

/// Spellings of the note an item may carry, the vendor's schema name first.
const NOTE_KEYS: [&str; 4] = [
    FIELD_NOTE,
    "ActivityNote",
    "Note",
    "NotableEventDescription",
];

/// Spellings of the activity's owner an item may carry (the vendor's example shows none).
const OWNER_KEYS: [&str; 4] = [
    "Owner",
    "ActivityOwner",
    "OwnerEmailAddress",
    "ActivityOwnerEmail",
];

/// Which activities of one code to read account-wide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventQuery {
    /// The custom activity type's code (`Parameter.ActivityEvent`).
    pub event: i64,
    /// Earliest **modified** date, inclusive, UTC `yyyy-MM-dd HH:mm:ss` (`Parameter.FromDate`).
    pub modified_from: Option<String>,
    /// Latest **modified** date, inclusive (`Parameter.ToDate`).
    pub modified_to: Option<String>,
    /// Ask for empty values too (`RemoveEmptyValue: false`), so that an empty note can be told
    /// from a server that lists no note at all (the keyed sync's key map needs to know which).
    pub keep_empty_values: bool,
}

impl EventQuery {
    /// The request body for one page: newest-modified first (see the module comment) unless
    /// `newest_first` is false (a frozen walk, [`EventReader::freeze`]), empty values left out
    /// as the vendor documents `RemoveEmptyValue`.
    fn request(&self, page_index: u64, page_size: u64, newest_first: bool) -> ByEventRequest {
        ByEventRequest {
            parameter: ByEventParameter {
                activity_event: self.event,
                from_date: self.modified_from.clone(),
                to_date: self.modified_to.clone(),
                remove_empty_value: Some(!self.keep_empty_values),
            },
            paging: Some(PageIndexPaging {
                page_index,
                page_size,
            }),
            sorting: Some(Sorting {
                column_name: "ModifiedOn".to_string(),
                direction: u64::from(newest_first),
            }),
        }
    }
}

/// One activity as RetrieveByActivityEvent lists it, read leniently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventActivity {
    /// `ProspectActivityId`, lowercase.
    pub id: String,
    /// `RelatedProspectId`, lowercase.
    pub lead_id: String,
    /// `ActivityEvent` (a string or a number on the wire; the query's code when absent).
    pub event: i64,
    /// The activity's date: `ActivityDateTime` if the item has one, else `CreatedOn` (which the
    /// vendor's example fills with the activity's date, as Get Activities of a Lead does).
    pub date: Option<String>,
    /// `ModifiedOn`, when the item has it.
    pub modified_on: Option<String>,
    /// The note; `None` when the item carries no note field at all (an empty note left out by
    /// `RemoveEmptyValue` looks the same), `Some("")` when it carries an empty one.
    pub note: Option<String>,
    /// The owner as the server names it (an e-mail address or a user id), if the item has one.
    pub owner: Option<String>,
    /// `mx_Custom_<n>` with non-empty values, by schema name as the API spells it.
    pub fields: BTreeMap<String, String>,
}

impl EventActivity {
    /// Reads one item of `List`. `event` is the code asked for, taken when the item names none.
    /// An item without an id or a lead cannot be used (nor de-duplicated): that is an error,
    /// with what the item holds, and the walk counts it as not collected.
    pub(crate) fn from_item(
        item: &Map<String, Value>,
        event: i64,
    ) -> Result<EventActivity, String> {
        let text_of = |names: &[&str]| lookup(item, names).and_then(text).filter(|t| !t.is_empty());
        let keys = || item.keys().cloned().collect::<Vec<_>>().join(", ");
        let id = text_of(&["ProspectActivityId", "ActivityId", "Id"])
            .ok_or_else(|| format!("an item without ProspectActivityId (keys: {})", keys()))?
            .trim()
            .to_ascii_lowercase();
        let lead_id = text_of(&["RelatedProspectId", "ProspectId", "LeadId"])
            .ok_or_else(|| format!("activity {id} names no lead (RelatedProspectId)"))?
            .trim()
            .to_ascii_lowercase();
        let event = match text_of(&["ActivityEvent", "EventCode"]) {
            None => event,
            Some(code) => code
                .trim()
                .parse()
                .map_err(|_| format!("activity {id}: ActivityEvent {code:?} is not a code"))?,
        };
        let mut fields = BTreeMap::new();
        for (key, value) in item {
            if let Some(n) = custom_field_number(key)
                && let Some(value) = text(value).filter(|v| !v.is_empty())
            {
                fields.insert(format!("mx_Custom_{n}"), value);
            }
        }
        Ok(EventActivity {
            id,
            lead_id,
            event,
            date: text_of(&["ActivityDateTime"]).or_else(|| text_of(&["CreatedOn"])),
            modified_on: text_of(&["ModifiedOn"]),
            // A note that is present but null is an empty note, not a missing one.
            note: lookup(item, &NOTE_KEYS).map(|v| text(v).unwrap_or_default()),
            owner: text_of(&OWNER_KEYS),
            fields,
        })
    }
}

/// The first of `names` the item has: exact spelling first, then ignoring case.
fn lookup<'a>(item: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| item.get(*name)).or_else(|| {
        names.iter().find_map(|name| {
            item.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        })
    })
}

/// A value as text: strings as they are, numbers and booleans written out, `null` as none.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `n` of a key `mx_Custom_<n>` (any case), 1..=50.
fn custom_field_number(key: &str) -> Option<u32> {
    let digits = key
        .get(..10)
        .filter(|head| head.eq_ignore_ascii_case("mx_Custom_"))
        .map(|_| &key[10..])?;
    let n: u32 = digits.parse().ok()?;
    ((1..=MAX_CUSTOM_FIELD).contains(&n) && n.to_string() == digits).then_some(n)
}

/// Ids seen so far: GUIDs as 16 bytes (an account-wide walk may see millions), anything else
/// as text.
#[derive(Debug, Default)]
struct IdSet {
    guids: HashSet<u128>,
    others: HashSet<String>,
}

impl IdSet {
    /// Adds a lowercase id; whether it was new.
    fn insert(&mut self, id: &str) -> bool {
        match uuid::Uuid::parse_str(id) {
            Ok(guid) => self.guids.insert(guid.as_u128()),
            Err(_) => self.others.insert(id.to_string()),
        }
    }

    fn len(&self) -> u64 {
        (self.guids.len() + self.others.len()) as u64
    }
}

/// What a walk found, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventWalkStats {
    /// Calls made (pages asked for), retries not included (`RunStats` counts those).
    pub pages: u64,
    /// Activities handed out: distinct, of the code asked for.
    pub activities: u64,
    /// The server's last `RecordCount`.
    pub record_count: u64,
    /// Rows per page the server served (the size asked for, or the cap it revealed).
    pub page_size: u64,
    /// Walks made: 1, or 2 when the first fell short of `RecordCount`.
    pub walks: u32,
    /// Handed-out activities whose item carried no note field.
    pub without_note: u64,
    /// Listed activities of another code than the one asked for: not handed out.
    pub other_code: u64,
}

/// How a walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// Every counted activity was collected.
    Complete,
    /// Short of `RecordCount`: walk again (the next requests start from the first page).
    Again(String),
    /// Short of `RecordCount` after every walk allowed: why.
    Short(String),
}

/// The paging of [`EventReader::walk_event`], free of I/O: which page to ask for
/// ([`EventWalk::next_request`]), what each answer adds ([`EventWalk::feed`]), and whether the
/// walk is complete ([`EventWalk::end_walk`]).
#[derive(Debug)]
pub(crate) struct EventWalk {
    /// The code asked for.
    event: i64,
    /// `PageSize` asked; lowered to the server's cap once the first page reveals one.
    size: u64,
    /// Whether the first page has told the served size.
    learned: bool,
    /// Rows of the listing walked in this walk; the next `PageIndex` is `rows / size + 1`.
    rows: u64,
    /// Pages received in this walk.
    pages: u64,
    /// Ids of the previous page, to notice a server that ignores `PageIndex`.
    previous: Vec<String>,
    /// Every id listed (of any code), across walks.
    seen: IdSet,
    /// `RecordCount` of the latest answer.
    record_count: u64,
    /// The largest `RecordCount` seen in this walk, which sizes the page cap.
    max_record_count: u64,
    /// Whether this walk has stopped, and why.
    stop: Option<&'static str>,
    /// Items that could not be read in this walk, with the first one's problem.
    unreadable: (u64, Option<String>),
    /// Totals for the caller.
    stats: EventWalkStats,
}

impl EventWalk {
    /// A walk of code `event` asking `page_size` rows per page (0 is read as 1).
    pub(crate) fn new(event: i64, page_size: u64) -> EventWalk {
        EventWalk {
            event,
            size: page_size.max(1),
            learned: false,
            rows: 0,
            pages: 0,
            previous: Vec::new(),
            seen: IdSet::default(),
            record_count: 0,
            max_record_count: 0,
            stop: None,
            unreadable: (0, None),
            stats: EventWalkStats {
                walks: 1,
                ..EventWalkStats::default()
            },
        }
    }

    /// `(PageIndex, PageSize)` of the next call, or `None` when this walk is over.
    pub(crate) fn next_request(&self) -> Option<(u64, u64)> {
        self.stop
            .is_none()
            .then(|| (self.rows / self.size + 1, self.size))
    }

    /// Reads the answer to the request [`EventWalk::next_request`] named; returns the
    /// activities not handed out before, of the code asked for, in the server's order.
    pub(crate) fn feed(&mut self, response: ByEventResponse) -> Vec<EventActivity> {
        self.pages += 1;
        self.stats.pages += 1;
        self.record_count = response.record_count;
        self.max_record_count = self.max_record_count.max(response.record_count);
        self.stats.record_count = response.record_count;
        let served = response.list.len() as u64;
        if !self.learned && served > 0 {
            // A server that caps PageSize serves fewer rows than asked while saying more exist;
            // its pages are that long from now on, and PageIndex counts in them.
            if served < self.size && self.record_count > served {
                debug!(asked = self.size, served, "the server caps PageSize");
                self.size = served;
            }
            self.learned = true;
        }
        self.rows += served;
        let mut ids = Vec::with_capacity(response.list.len());
        let mut fresh = Vec::new();
        for item in &response.list {
            let activity = match EventActivity::from_item(item, self.event) {
                Ok(activity) => activity,
                Err(problem) => {
                    self.unreadable.0 += 1;
                    self.unreadable.1.get_or_insert(problem);
                    continue;
                }
            };
            ids.push(activity.id.clone());
            if !self.seen.insert(&activity.id) {
                continue;
            }
            if activity.event != self.event {
                self.stats.other_code += 1;
                continue;
            }
            self.stats.activities += 1;
            self.stats.without_note += u64::from(activity.note.is_none());
            fresh.push(activity);
        }
        self.stats.page_size = self.size;
        let repeated = !ids.is_empty() && ids == self.previous;
        self.previous = ids;
        let cap = self.max_record_count.div_ceil(self.size) + EXTRA_PAGES;
        self.stop = if self.seen.len() >= self.record_count {
            Some("all counted activities collected")
        } else if served < self.size {
            Some("a page came back short")
        } else if repeated {
            Some("a page repeated the one before")
        } else if self.pages >= cap {
            Some("too many pages")
        } else {
            None
        };
        fresh
    }

    /// After [`EventWalk::next_request`] said `None`: whether the walk collected every counted
    /// activity; if not, it is set up to walk again while walks remain.
    pub(crate) fn end_walk(&mut self) -> WalkEnd {
        let got = self.seen.len();
        if got >= self.record_count {
            return WalkEnd::Complete;
        }
        let mut why = format!(
            "{got} distinct activities listed of the {} the server counts, in {} pages of {} ({})",
            self.record_count,
            self.pages,
            self.size,
            self.stop.unwrap_or("not started")
        );
        if let (n, Some(problem)) = &self.unreadable {
            why.push_str(&format!(
                "; {n} item(s) could not be read, the first: {problem}"
            ));
        }
        if self.stats.walks >= MAX_WALKS {
            return WalkEnd::Short(why);
        }
        self.stats.walks += 1;
        self.rows = 0;
        self.pages = 0;
        self.previous.clear();
        self.max_record_count = 0;
        self.stop = None;
        self.unreadable = (0, None);
        WalkEnd::Again(why)
    }

    /// Goes on from the other end of the listing: the next request is its first page again,
    /// while what was seen stays seen (and counts towards `RecordCount`). Nothing changes when
    /// the walk is already over.
    pub(crate) fn turn(&mut self) {
        if self.stop.is_none() {
            self.rows = 0;
            self.pages = 0;
            self.previous.clear();
        }
    }

    /// The totals so far.
    pub(crate) fn stats(&self) -> &EventWalkStats {
        &self.stats
    }
}

/// `query` with `ToDate` a second after the latest `ModifiedOn` among `first` (its first page's
/// activities), when it has no `ToDate` and one of them has a readable `ModifiedOn`. The listing
/// is newest-modified first, so nothing visible when the first page was served was modified
/// later than that: the frozen query lists everything the first one did, except activities
/// modified after the walk began. The second added covers a server that keeps fractions of a
/// second (and compares `ToDate` against them): leaving out an activity the first page listed
/// would move every later one up a place, and the walk would skip one; taking in a few more
/// only repeats some, which the walk sets aside.
fn freeze(query: &EventQuery, first: &[EventActivity]) -> Option<EventQuery> {
    if query.modified_to.is_some() {
        return None;
    }
    let newest = first
        .iter()
        .filter_map(|a| a.modified_on.as_deref().and_then(parse_api_second))
        .max()?;
    Some(EventQuery {
        modified_to: Some(format_api_second(newest + 1)),
        ..query.clone()
    })
}

/// Which of the run's counters an [`EventReader`]'s calls count in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CountedAs {
    /// `reads`: exports by code, the keyed sync's key map.
    #[default]
    Reads,
    /// `check_reads`: checks of calls whose outcome is unknown, which the summary counts among
    /// the run's lookups (what certainty cost), apart from the key map's reads.
    Checks,
}

/// Reads activities account-wide by code; cheap to share behind a reference, every call paced.
pub(crate) struct EventReader {
    /// The run's client, pacer, counters, retry policy and outage gate.
    pub api: Api,
    /// `PageSize` asked for; [`DEFAULT_EVENT_PAGE_SIZE`] unless configured.
    pub page_size: u64,
    /// The counter each call (retries included) adds to.
    pub counted_as: CountedAs,
    /// After the first page of a query without `ToDate`, ask only for activities modified no
    /// later than the newest that page listed ([`freeze`]), and walk the rest oldest first. An
    /// import creating activities of the code while the walk goes on would otherwise keep
    /// pushing new ones in at the front of the newest-first listing: every page would repeat
    /// part of the one before (each page of a check waits behind the bulk calls for its permit),
    /// and the walk might never catch up with `RecordCount`. Oldest first, the few that still
    /// come in (stamped in the frozen last seconds) land at the far end, and the walk is over
    /// as soon as its pages meet the first page's. If some landed behind it (a server stamping
    /// to the second sorts a second's activities among themselves), a second walk, newest first
    /// and once the open seconds are over, lists them first. Only for readers that need nothing
    /// modified after their first page (a check: what it looks for was created before it
    /// began).
    pub freeze: bool,
}

/// A walk whose first page is in ([`EventReader::open_walk`]); [`OpenWalk::finish`] reads the
/// rest.
pub(crate) struct OpenWalk<'r> {
    /// The reader whose calls it makes.
    reader: &'r EventReader,
    /// Where the walk stands.
    walk: EventWalk,
    /// What is asked: the caller's query, or the same frozen at the first page.
    query: EventQuery,
    /// Which end of the listing the next page counts from.
    newest_first: bool,
    /// When a frozen listing's open seconds are over (on the server's clock too).
    settled_at: Option<tokio::time::Instant>,
    /// The first page's activities, not handed out yet.
    first: Vec<EventActivity>,
}

impl OpenWalk<'_> {
    /// The totals of the first page: `RecordCount`, the page size served, items without a
    /// note.
    pub(crate) fn stats(&self) -> &EventWalkStats {
        self.walk.stats()
    }

    /// One page, fed to the walk; its new activities.
    async fn next_page(&mut self, index: u64, size: u64) -> Result<Vec<EventActivity>, FetchError> {
        let response = self
            .reader
            .page(&self.query, index, size, self.newest_first)
            .await?;
        debug!(
            event = self.query.event,
            index,
            size,
            rows = response.list.len(),
            record_count = response.record_count,
            "activities-by-event page"
        );
        Ok(self.walk.feed(response))
    }

    /// The rest of the walk: hands the first page's activities and then each further page's
    /// to `each_page`, and returns the totals (errors as [`EventReader::walk_event`]).
    pub(crate) async fn finish<E: From<FetchError>>(
        mut self,
        mut each_page: impl FnMut(Vec<EventActivity>) -> Result<(), E>,
    ) -> Result<EventWalkStats, E> {
        let first = std::mem::take(&mut self.first);
        if !first.is_empty() {
            each_page(first)?;
        }
        loop {
            while let Some((index, size)) = self.walk.next_request() {
                let fresh = self.next_page(index, size).await?;
                if !fresh.is_empty() {
                    each_page(fresh)?;
                }
            }
            match self.walk.end_walk() {
                WalkEnd::Complete => return Ok(self.walk.stats().clone()),
                WalkEnd::Again(why) => {
                    tracing::warn!(
                        event = self.query.event,
                        "listing incomplete, walking again: {why}"
                    );
                    if let Some(settled_at) = self.settled_at {
                        // What a frozen walk misses came in during it, stamped in the seconds
                        // it left open (a server that stamps to the second sorts them among
                        // that second's, not after them). Once those seconds are over, nothing
                        // more comes in; what came is among the newest, which a newest-first
                        // walk lists first, and the walk ends once it has them all.
                        tokio::time::sleep_until(settled_at).await;
                        self.newest_first = true;
                    }
                }
                WalkEnd::Short(why) => {
                    return Err(E::from(FetchError::Failed(format!(
                        "could not list every activity of code {} after {MAX_WALKS} walks: {why}",
                        self.query.event
                    ))));
                }
            }
        }
    }
}

impl EventReader {
    /// A reader asking [`DEFAULT_EVENT_PAGE_SIZE`] rows per page.
    pub(crate) fn new(api: Api) -> EventReader {
        EventReader {
            api,
            page_size: DEFAULT_EVENT_PAGE_SIZE,
            counted_as: CountedAs::Reads,
            freeze: false,
        }
    }

    /// Walks every page of `query`, handing each page's new activities to `each_page` as it
    /// arrives (never collecting them), and returns the totals. An error of `each_page` stops
    /// the walk and is returned; so is a failed call, or pages that never add up to the
    /// server's `RecordCount` after two walks (as [`FetchError::Failed`]).
    pub(crate) async fn walk_event<E: From<FetchError>>(
        &self,
        query: &EventQuery,
        each_page: impl FnMut(Vec<EventActivity>) -> Result<(), E>,
    ) -> Result<EventWalkStats, E> {
        self.open_walk(query).await?.finish(each_page).await
    }

    /// The first page of [`EventReader::walk_event`]: what it tells (`RecordCount`, the page
    /// size the server serves, items without a note) costs what a bare count would, so the
    /// caller can decide from it whether the rest is worth reading ([`OpenWalk::finish`]) or
    /// not (the walk is simply dropped). A [`EventReader::freeze`] reader freezes the listing
    /// here.
    pub(crate) async fn open_walk(&self, query: &EventQuery) -> Result<OpenWalk<'_>, FetchError> {
        let mut open = OpenWalk {
            reader: self,
            walk: EventWalk::new(query.event, self.page_size),
            query: query.clone(),
            newest_first: true,
            settled_at: None,
            first: Vec::new(),
        };
        if let Some((index, size)) = open.walk.next_request() {
            open.first = open.next_page(index, size).await?;
        }
        if self.freeze
            && let Some(frozen) = freeze(&open.query, &open.first)
        {
            debug!(
                event = query.event,
                to = frozen.modified_to,
                "listing frozen at its first page's newest activity; the rest oldest first"
            );
            open.query = frozen;
            open.newest_first = false;
            open.settled_at = Some(tokio::time::Instant::now() + FROZEN_SECONDS);
            open.walk.turn();
        }
        Ok(open)
    }

    /// Just `RecordCount`: how many activities of the code match, from one call asking for a
    /// single row.
    // Not called by this crate's commands yet: the keyed sync's checks are its first user.
    #[allow(dead_code)]
    pub(crate) async fn count_event(&self, query: &EventQuery) -> Result<u64, FetchError> {
        Ok(self.page(query, 1, 1, true).await?.record_count)
    }

    /// One page, through the pacer, retried on rate limits and transient failures (a read is
    /// safe to repeat whatever happened to the first attempt).
    async fn page(
        &self,
        query: &EventQuery,
        index: u64,
        size: u64,
        newest_first: bool,
    ) -> Result<ByEventResponse, FetchError> {
        let body = query.request(index, size, newest_first);
        self.api
            .call(
                "get activities by activity event",
                Some(match self.counted_as {
                    CountedAs::Reads => &self.api.stats.reads,
                    CountedAs::Checks => &self.api.stats.check_reads,
                }),
                || self.api.client.post(PATH_RETRIEVE_BY_EVENT, &[], &body),
                judge_read,
                |closed| FetchError::Failed(closed.to_string()),
                FetchError::Failed,
            )
            .instrument(tracing::warn_span!(
                "read",
                event = query.event,
                page = index
            ))
            .await
    }
}

#[cfg(test)]
mod tests;
