//! The simulated account's mutable state: stored activities indexed by lead, the request log, the
//! rate limiter's window and the fault RNG, with the pure rules that read and change them.
//!
//! Nothing here does I/O or reads the clock: the HTTP layer (`server.rs`) passes in arrival
//! instants and "now" timestamps, calls these methods under the simulator's one mutex, and turns
//! their results into responses. That keeps every vendor rule unit-testable without sockets.
//! At about 760 lines it is over the 700 a module aims for: the rules share the one state and
//! the one mutex, and split by endpoint they would each reach into all of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

use super::demo::{self, DEMO_LEADS, DEMO_OWNERS, OWNER_CHANGE_EVENT, is_guid};
use super::{
    FaultConfig, RateChange, RefusedCalls, RequestOutcome, RequestRecord, SimConfig, StoredActivity,
};
use crate::lsq::api::{self, DATE_TIME_FORMAT};
use crate::lsq::quota::RateQuota;

/// `created_by` of activities no request created (seeded ones).
const NO_REQUEST: u64 = u64::MAX;
/// `owner` of activities without an owner.
const NO_OWNER: u16 = u16::MAX;
/// Schema names are `mx_Custom_1` .. `mx_Custom_MAX_FIELD`.
const MAX_FIELD: u8 = 50;
const FIELD_PREFIX: &str = "mx_Custom_";

/// One stored activity, kept small because a benchmark may hold a million of them: the id as raw
/// bytes, the date as epoch seconds, the lead and owner as indexes into interned tables, and
/// fields by number instead of by name.
pub(super) struct Record {
    id: [u8; 16],
    date: i64,
    /// When the server last changed it (epoch seconds, its own clock): `ModifiedOn`.
    modified: i64,
    created_by: u64,
    event_code: i64,
    note: Option<Box<str>>,
    fields: Box<[(u8, Box<str>)]>,
    lead: u32,
    owner: u16,
    deleted: bool,
    /// Bulk Updates applied to it: a client that re-sends an update it was not sure of shows
    /// here, though the values come out the same.
    updates: u16,
}

impl Record {
    pub(super) fn id(&self) -> String {
        uuid::Uuid::from_bytes(self.id).hyphenated().to_string()
    }
    pub(super) fn event_code(&self) -> i64 {
        self.event_code
    }
    pub(super) fn date_time(&self) -> String {
        format_date(self.date)
    }
    /// `ModifiedOn`, the server's own time of the last change.
    pub(super) fn modified_on(&self) -> String {
        format_date(self.modified)
    }
    /// Stamps a change at `at` (epoch seconds): what an update of the activity does.
    pub(super) fn set_modified(&mut self, at: i64) {
        self.modified = at;
    }

    pub(super) fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
    /// `(mx_Custom_<n>, value)` pairs in field-number order.
    pub(super) fn fields(&self) -> impl Iterator<Item = (String, &str)> {
        self.fields
            .iter()
            .map(|(n, v)| (format!("{FIELD_PREFIX}{n}"), &**v))
    }
}

/// A lead the account knows, with the indexes of its activities in creation order, so lookups
/// by lead never scan every activity.
struct Lead {
    id: Arc<str>,
    activities: Vec<u32>,
}

/// How a bulk row names its lead once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LeadRef {
    /// Index of a lead already in the table.
    Known(u32),
    /// A well-formed GUID not yet in the table, accepted because `accept_any_lead` is on;
    /// lowercase. It enters the table when something is created on it.
    Unseen(Box<str>),
}

/// A bulk row that passed every check, ready to be stored.
pub(super) struct ValidRow {
    lead: LeadRef,
    event_code: i64,
    date: Option<i64>,
    note: Option<Box<str>>,
    owner: u16,
    fields: Box<[(u8, Box<str>)]>,
}

/// A Bulk Update item that passed every check, ready to apply.
pub(super) struct ValidUpdate {
    index: u32,
    note: Box<str>,
    fields: Vec<(u8, Box<str>)>,
}

/// A custom activity type, with its defined fields as a bit set (bit n = `mx_Custom_<n>`).
struct TypeInfo {
    code: i64,
    name: String,
    fields: u64,
}

impl TypeInfo {
    /// The custom fields of a posted or updated item, by number, refused as the vendor does
    /// when one is not a custom field or not one this type defines (the row's
    /// `ExceptionMessage`). A repeated field keeps its last value, as a key-value store would.
    fn check_fields(&self, given: &[api::FieldValue]) -> Result<Vec<(u8, Box<str>)>, String> {
        let mut fields: Vec<(u8, Box<str>)> = Vec::with_capacity(given.len());
        for field in given {
            let n = parse_field_name(&field.schema_name).ok_or_else(|| {
                format!(
                    "Invalid field SchemaName '{}': expected mx_Custom_1 .. mx_Custom_50",
                    field.schema_name
                )
            })?;
            if self.fields & (1 << n) == 0 {
                return Err(format!(
                    "Field {} is not defined for activity event {}",
                    field.schema_name, self.code
                ));
            }
            match fields.iter_mut().find(|(m, _)| *m == n) {
                Some(slot) => slot.1 = field.value.as_str().into(),
                None => fields.push((n, field.value.as_str().into())),
            }
        }
        Ok(fields)
    }
}

/// The order of Get Activities by Activity Event's listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct EventSort {
    /// By the activity's date (`CreatedOn`) rather than `ModifiedOn`.
    pub(super) by_created: bool,
    /// Newest first (`Direction` 1).
    pub(super) newest_first: bool,
}

/// Filters shared by Get Activities and the delete endpoints; dates are epoch seconds, inclusive.
#[derive(Debug, Clone, Default)]
pub(super) struct Filter {
    pub(super) codes: Option<Vec<i64>>,
    pub(super) from: Option<i64>,
    pub(super) to: Option<i64>,
}

impl Filter {
    fn matches(&self, record: &Record) -> bool {
        !record.deleted
            && self
                .codes
                .as_ref()
                .is_none_or(|codes| codes.contains(&record.event_code))
            && self.from.is_none_or(|from| record.date >= from)
            && self.to.is_none_or(|to| record.date <= to)
    }
}

/// Which injected failure a bulk post suffers, drawn once per admitted bulk request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    Plain500,
    Drop,
    CommitThen500,
    CommitThenDrop,
    CommitThenLate,
}

impl Fault {
    /// One uniform draw against the cumulative probabilities, in the documented order, so each
    /// kind keeps its own probability and one seed reproduces the whole fault sequence.
    fn draw(config: &FaultConfig, rng: &mut fastrand::Rng) -> Option<Fault> {
        let u = rng.f64();
        let mut edge = 0.0;
        for (p, fault) in [
            (config.plain_500, Fault::Plain500),
            (config.drop_connection, Fault::Drop),
            (config.commit_then_500, Fault::CommitThen500),
            (config.commit_then_drop, Fault::CommitThenDrop),
            (config.commit_then_late, Fault::CommitThenLate),
        ] {
            edge += p.max(0.0);
            if u < edge {
                return Some(fault);
            }
        }
        None
    }
}

/// What the gate decided about a request at arrival, before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Keys were missing or wrong.
    Unauthorized,
    /// Over the quota in force (named in the answer); the duration is how long until a place
    /// frees in the window (for `Retry-After`).
    RateLimited(Duration, Option<RateQuota>),
    /// Counted in the window; bulk posts carry their fault draw.
    Admitted(Option<Fault>),
}

/// A sliding window over the instants of arrivals: `calls` per `window`, the way LeadSquared
/// counts. Whether refused arrivals are recorded too is [`RefusedCalls`]; the quota may change
/// at set times ([`RateChange`]).
pub(super) struct SlidingWindow {
    quota: Option<RateQuota>,
    /// Quotas still to come, in order of time since `started`.
    changes: VecDeque<RateChange>,
    refused_calls: RefusedCalls,
    started: Instant,
    arrivals: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(super) fn new(
        quota: Option<RateQuota>,
        changes: &[RateChange],
        refused_calls: RefusedCalls,
        started: Instant,
    ) -> Self {
        let mut changes: Vec<RateChange> = changes.to_vec();
        changes.sort_by_key(|c| c.at);
        SlidingWindow {
            quota,
            changes: changes.into(),
            refused_calls,
            started,
            arrivals: VecDeque::new(),
        }
    }

    /// The quota in force at `now`.
    pub(super) fn quota_at(&mut self, now: Instant) -> Option<RateQuota> {
        let since = now.saturating_duration_since(self.started);
        while self.changes.front().is_some_and(|c| c.at <= since) {
            if let Some(change) = self.changes.pop_front() {
                self.quota = change.rate;
            }
        }
        self.quota
    }

    fn prune(&mut self, quota: &RateQuota, now: Instant) {
        while let Some(&front) = self.arrivals.front() {
            if front + quota.window <= now {
                self.arrivals.pop_front();
            } else {
                break;
            }
        }
    }

    /// Admits and records `now`, or says how long until a place frees (recording `now` anyway
    /// when refused calls count).
    pub(super) fn try_admit(&mut self, now: Instant) -> Result<(), Duration> {
        let Some(quota) = self.quota_at(now) else {
            return Ok(());
        };
        self.prune(&quota, now);
        let calls = quota.calls.get() as usize;
        if self.arrivals.len() < calls {
            self.arrivals.push_back(now);
            return Ok(());
        }
        if self.refused_calls == RefusedCalls::Counted {
            self.arrivals.push_back(now);
        }
        // A place frees when all but CALLS-1 of the arrivals have left the window.
        let freeing = self.arrivals[self.arrivals.len() - calls];
        Err((freeing + quota.window).saturating_duration_since(now))
    }
}

/// The counters behind [`super::SimStats`].
pub(super) struct Counts {
    /// Requests, rate limited, faults, live and deleted activities.
    pub(super) log: (u64, u64, u64, u64, u64),
    pub(super) other_calls: u64,
    pub(super) other_refused: u64,
}

/// A request log entry, with whether its status is final yet.
struct LogSlot {
    record: RequestRecord,
    done: bool,
}

/// Everything that changes while the simulator runs. Guarded by one mutex in `Simulator`.
pub(super) struct State {
    accept_any_lead: bool,
    faults: FaultConfig,
    types: Vec<TypeInfo>,
    window: SlidingWindow,
    fault_rng: fastrand::Rng,
    id_rng: fastrand::Rng,
    log: Vec<LogSlot>,
    rate_limited: u64,
    /// The other integration's arrivals (since the start) and whether each was admitted.
    other: Vec<(Duration, bool)>,
    fault_count: u64,
    records: Vec<Record>,
    deleted: u64,
    leads: Vec<Lead>,
    lead_index: HashMap<Arc<str>, u32>,
    /// Interned owner e-mails; the first entries are `DEMO_OWNERS` in order.
    owners: Vec<Box<str>>,
    /// Records by id, built on the first Bulk Update (an import alone never needs it, and a
    /// benchmark may hold a million records).
    by_id: Option<HashMap<[u8; 16], u32>>,
}

impl State {
    /// A fresh account: demo and extra leads, each demo lead with two past owner changes.
    pub(super) fn new(config: &SimConfig, started: Instant) -> State {
        let mut state = State {
            accept_any_lead: config.accept_any_lead,
            faults: config.faults.clone(),
            types: demo::demo_activity_types()
                .into_iter()
                .map(|t| TypeInfo {
                    code: t.activity_event,
                    fields: t
                        .fields
                        .iter()
                        .filter_map(|f| parse_field_name(f))
                        .fold(0, |mask, n| mask | (1 << n)),
                    name: t.display_name,
                })
                .collect(),
            window: SlidingWindow::new(
                config.rate,
                &config.rate_changes,
                config.refused_calls,
                started,
            ),
            fault_rng: fastrand::Rng::with_seed(config.faults.seed),
            id_rng: fastrand::Rng::new(),
            log: Vec::new(),
            rate_limited: 0,
            other: Vec::new(),
            fault_count: 0,
            records: Vec::new(),
            deleted: 0,
            leads: Vec::new(),
            lead_index: HashMap::new(),
            owners: DEMO_OWNERS.iter().map(|o| Box::from(*o)).collect(),
            by_id: None,
        };
        for i in 0..DEMO_LEADS {
            let lead = state.intern_lead(&demo::demo_lead_id(i));
            for (k, date) in demo::OWNER_CHANGE_DATES.iter().enumerate() {
                let owner = ((i + k + 1) % DEMO_OWNERS.len()) as u16;
                let note = format!("Lead owner changed to {}", DEMO_OWNERS[owner as usize]);
                let date = parse_date(date).unwrap_or_default();
                // System history: last changed when it happened.
                state.push_record(
                    lead,
                    OWNER_CHANGE_EVENT,
                    date,
                    date,
                    Some(note.into()),
                    owner,
                    Box::new([]),
                    NO_REQUEST,
                );
            }
        }
        for lead in &config.extra_leads {
            state.intern_lead(&lead.trim().to_lowercase());
        }
        state
    }

    fn intern_lead(&mut self, lowercase_id: &str) -> u32 {
        if let Some(&index) = self.lead_index.get(lowercase_id) {
            return index;
        }
        let id: Arc<str> = Arc::from(lowercase_id);
        let index = self.leads.len() as u32;
        self.leads.push(Lead {
            id: id.clone(),
            activities: Vec::new(),
        });
        self.lead_index.insert(id, index);
        index
    }

    fn intern_owner(&mut self, email: &str) -> u16 {
        if let Some(i) = self
            .owners
            .iter()
            .position(|o| o.eq_ignore_ascii_case(email))
        {
            return i as u16;
        }
        if self.owners.len() >= usize::from(NO_OWNER) {
            return NO_OWNER;
        }
        self.owners.push(Box::from(email));
        (self.owners.len() - 1) as u16
    }

    #[allow(clippy::too_many_arguments)]
    fn push_record(
        &mut self,
        lead: u32,
        event_code: i64,
        date: i64,
        modified: i64,
        note: Option<Box<str>>,
        owner: u16,
        fields: Box<[(u8, Box<str>)]>,
        created_by: u64,
    ) -> String {
        let id = uuid::Builder::from_random_bytes(self.id_rng.u128(..).to_be_bytes()).into_uuid();
        let index = self.records.len() as u32;
        self.records.push(Record {
            id: id.into_bytes(),
            date,
            modified,
            created_by,
            event_code,
            note,
            fields,
            lead,
            owner,
            deleted: false,
            updates: 0,
        });
        self.leads[lead as usize].activities.push(index);
        if let Some(by_id) = &mut self.by_id {
            by_id.insert(id.into_bytes(), index);
        }
        id.hyphenated().to_string()
    }

    /// The lead a request names, if the account has it (or, with `accept_any_lead`, if it is a
    /// well-formed GUID). Ids compare lowercase, as GUIDs do.
    pub(super) fn resolve_lead(&self, raw: &str) -> Option<LeadRef> {
        let lower = raw.trim().to_ascii_lowercase();
        if let Some(&index) = self.lead_index.get(lower.as_str()) {
            return Some(LeadRef::Known(index));
        }
        (self.accept_any_lead && is_guid(&lower)).then(|| LeadRef::Unseen(lower.into()))
    }

    /// The display name of a custom activity type, or None if the code is not one.
    pub(super) fn custom_type_name(&self, code: i64) -> Option<&str> {
        self.types
            .iter()
            .find(|t| t.code == code)
            .map(|t| t.name.as_str())
    }

    /// `EventName` of any stored code.
    pub(super) fn event_name(&self, code: i64) -> String {
        match self.custom_type_name(code) {
            Some(name) => name.to_string(),
            None if code == OWNER_CHANGE_EVENT => demo::OWNER_CHANGE_EVENT_NAME.to_string(),
            None => format!("Activity {code}"),
        }
    }

    /// Checks one bulk row the way the vendor does; the error is the row's `ExceptionMessage`.
    pub(super) fn validate_row(&self, item: &api::ActivityItem) -> Result<ValidRow, String> {
        let lead = self
            .resolve_lead(&item.related_prospect_id)
            .ok_or_else(|| format!("Lead with Id {} does not exist", item.related_prospect_id))?;
        let code = item.activity_event;
        let Some(kind) = self.types.iter().find(|t| t.code == code) else {
            return Err(format!("Invalid activity event code {code}"));
        };
        let date = match &item.activity_date_time {
            None => None,
            Some(text) => Some(parse_date(text).ok_or_else(|| {
                format!("Invalid ActivityDateTime '{text}': expected yyyy-MM-dd HH:mm:ss (UTC)")
            })?),
        };
        let mut fields = kind.check_fields(&item.fields)?;
        fields.sort_by_key(|(n, _)| *n);
        let owner = match &item.activity_owner_email {
            None => NO_OWNER,
            Some(email) => DEMO_OWNERS
                .iter()
                .position(|o| o.eq_ignore_ascii_case(email))
                .map(|i| i as u16)
                .ok_or_else(|| {
                    format!("ActivityOwnerEmail {email} is not a user of this account")
                })?,
        };
        Ok(ValidRow {
            lead,
            event_code: code,
            date,
            note: item.activity_note.as_deref().map(Box::from),
            owner,
            fields: fields.into_boxed_slice(),
        })
    }

    /// Stores a validated row; `now` (epoch seconds) is its modified time, and its date when
    /// the row gave none.
    pub(super) fn create(&mut self, row: ValidRow, created_by: u64, now: i64) -> String {
        let lead = self.lead_for_write(row.lead);
        self.push_record(
            lead,
            row.event_code,
            row.date.unwrap_or(now),
            now,
            row.note,
            row.owner,
            row.fields,
            created_by,
        )
    }

    /// Seeds an activity without the bulk endpoint's checks (tests set up states a client could
    /// not create); its lead joins the account. `now` (epoch seconds) is its modified time, and
    /// its date when the item gives none. Unusable parts are dropped with a warning.
    pub(super) fn seed(&mut self, item: &api::ActivityItem, now: i64) -> String {
        let lead = self.intern_lead(&item.related_prospect_id.trim().to_ascii_lowercase());
        let date = match &item.activity_date_time {
            Some(text) => parse_date(text).unwrap_or_else(|| {
                tracing::warn!(date = %text, "seeded activity date not understood; using now");
                now
            }),
            None => now,
        };
        let owner = match &item.activity_owner_email {
            Some(email) => self.intern_owner(email),
            None => NO_OWNER,
        };
        let mut fields: Vec<(u8, Box<str>)> = Vec::new();
        for field in &item.fields {
            match parse_field_name(&field.schema_name) {
                Some(n) => fields.push((n, field.value.as_str().into())),
                None => tracing::warn!(field = %field.schema_name, "seeded field dropped"),
            }
        }
        fields.sort_by_key(|(n, _)| *n);
        let note = item.activity_note.as_deref().map(Box::from);
        self.push_record(
            lead,
            item.activity_event,
            date,
            now,
            note,
            owner,
            fields.into(),
            NO_REQUEST,
        )
    }

    /// Checks one Bulk Update item the way the bulk post checks a row: the activity exists (and
    /// is not deleted) and every field is defined for its type. The error is the row's
    /// `ExceptionMessage`.
    pub(super) fn validate_update(
        &mut self,
        item: &api::UpdateItem,
    ) -> Result<ValidUpdate, String> {
        let not_found = || format!("Activity {} does not exist", item.prospect_activity_id);
        let id = uuid::Uuid::parse_str(item.prospect_activity_id.trim())
            .map_err(|_| not_found())?
            .into_bytes();
        let records = &self.records;
        let index = *self
            .by_id
            .get_or_insert_with(|| {
                records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id, i as u32))
                    .collect()
            })
            .get(&id)
            .ok_or_else(not_found)?;
        let record = &self.records[index as usize];
        if record.deleted {
            return Err(not_found());
        }
        let code = record.event_code;
        let Some(kind) = self.types.iter().find(|t| t.code == code) else {
            return Err(format!(
                "Activity {} is not a custom activity",
                item.prospect_activity_id
            ));
        };
        let fields = kind.check_fields(&item.fields)?;
        Ok(ValidUpdate {
            index,
            note: item.activity_note.as_str().into(),
            fields,
        })
    }

    /// Applies a checked update at `now` (epoch seconds, its new modified time): the note
    /// replaced (empty clears it), the fields given set (an empty value clears one), the others
    /// kept.
    pub(super) fn apply_update(&mut self, update: ValidUpdate, now: i64) {
        let record = &mut self.records[update.index as usize];
        record.set_modified(now);
        record.note = (!update.note.is_empty()).then_some(update.note);
        let mut fields: Vec<(u8, Box<str>)> = record.fields.to_vec();
        for (n, value) in update.fields {
            fields.retain(|(m, _)| *m != n);
            if !value.is_empty() {
                fields.push((n, value));
            }
        }
        fields.sort_by_key(|(n, _)| *n);
        record.fields = fields.into_boxed_slice();
        record.updates = record.updates.saturating_add(1);
    }

    fn lead_for_write(&mut self, lead: LeadRef) -> u32 {
        match lead {
            LeadRef::Known(index) => index,
            LeadRef::Unseen(id) => self.intern_lead(&id),
        }
    }

    /// Indexes of the lead's matching activities, newest date first, ties in creation order.
    pub(super) fn query(&self, lead: &LeadRef, filter: &Filter) -> Vec<u32> {
        let LeadRef::Known(lead) = lead else {
            return Vec::new();
        };
        let mut hits: Vec<u32> = self.leads[*lead as usize]
            .activities
            .iter()
            .copied()
            .filter(|&i| filter.matches(&self.records[i as usize]))
            .collect();
        // Indexes grow with creation, so a stable sort by date keeps creation order on ties.
        hits.sort_by_key(|&i| std::cmp::Reverse(self.records[i as usize].date));
        hits
    }

    /// Flags the lead's matching activities deleted; returns how many were flagged.
    pub(super) fn delete(&mut self, lead: &LeadRef, filter: &Filter) -> usize {
        let hits = self.query(lead, filter);
        for &i in &hits {
            self.records[i as usize].deleted = true;
        }
        self.deleted += hits.len() as u64;
        hits.len()
    }

    pub(super) fn record(&self, index: u32) -> &Record {
        &self.records[index as usize]
    }

    /// The index of the activity with this id (any case), deleted or not.
    pub(super) fn find(&self, id: &str) -> Option<u32> {
        let id = uuid::Uuid::parse_str(id.trim()).ok()?.into_bytes();
        self.records
            .iter()
            .position(|r| r.id == id)
            .map(|i| i as u32)
    }

    /// Stamps a change of the activity at `index` at `at` (epoch seconds): its `ModifiedOn`.
    pub(super) fn set_modified(&mut self, index: u32, at: i64) {
        if let Some(record) = self.records.get_mut(index as usize) {
            record.set_modified(at);
        }
    }

    /// Indexes of every live activity of custom code `code` whose modified time is within
    /// `from ..= to`, in the order `sort` asks, ties by id so that pages are stable.
    pub(super) fn query_event(
        &self,
        code: i64,
        from: Option<i64>,
        to: Option<i64>,
        sort: EventSort,
    ) -> Vec<u32> {
        let mut hits: Vec<u32> = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                !r.deleted
                    && r.event_code == code
                    && from.is_none_or(|f| r.modified >= f)
                    && to.is_none_or(|t| r.modified <= t)
            })
            .map(|(i, _)| i as u32)
            .collect();
        let key = |i: &u32| {
            let r = &self.records[*i as usize];
            let at = if sort.by_created { r.date } else { r.modified };
            (at, r.id)
        };
        if sort.newest_first {
            hits.sort_by_key(|i| std::cmp::Reverse(key(i)));
        } else {
            hits.sort_by_key(key);
        }
        hits
    }

    /// Schema names of the fields custom type `code` defines, in number order.
    pub(super) fn type_fields(&self, code: i64) -> Vec<String> {
        self.types
            .iter()
            .find(|t| t.code == code)
            .map(|t| {
                (1..=MAX_FIELD)
                    .filter(|n| t.fields & (1 << n) != 0)
                    .map(|n| format!("{FIELD_PREFIX}{n}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn lead_id(&self, record: &Record) -> &str {
        &self.leads[record.lead as usize].id
    }

    pub(super) fn owner(&self, record: &Record) -> Option<&str> {
        self.owners.get(usize::from(record.owner)).map(|o| &**o)
    }

    /// The public, self-contained copy of one record.
    pub(super) fn stored(&self, record: &Record) -> StoredActivity {
        StoredActivity {
            id: record.id(),
            lead_id: self.lead_id(record).to_string(),
            event_code: record.event_code,
            note: record.note.as_deref().map(str::to_string),
            owner_email: self.owner(record).map(str::to_string),
            date_time: record.date_time(),
            modified_on: record.modified_on(),
            fields: record.fields().map(|(k, v)| (k, v.to_string())).collect(),
            deleted: record.deleted,
            created_by_request: (record.created_by != NO_REQUEST).then_some(record.created_by),
            updates: u32::from(record.updates),
        }
    }

    pub(super) fn all_stored(&self) -> Vec<StoredActivity> {
        self.records.iter().map(|r| self.stored(r)).collect()
    }

    /// Every activity ever stored on one lead, deleted ones included, in creation order.
    pub(super) fn stored_of_lead(&self, raw: &str) -> Vec<StoredActivity> {
        let lower = raw.trim().to_ascii_lowercase();
        match self.lead_index.get(lower.as_str()) {
            Some(&lead) => self.leads[lead as usize]
                .activities
                .iter()
                .map(|&i| self.stored(&self.records[i as usize]))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Logs an arrival and decides auth, rate limit and fault in one step, so the log's order,
    /// the limiter's order and the fault sequence all agree. Returns the request's seq.
    pub(super) fn arrive(
        &mut self,
        arrived: Duration,
        now: Instant,
        method: &str,
        path: &str,
        authorized: Option<bool>,
        is_bulk: bool,
    ) -> (u64, Admission) {
        let seq = self.log.len() as u64;
        let admission = match authorized {
            None => Admission::Admitted(None),
            Some(false) => Admission::Unauthorized,
            Some(true) => match self.window.try_admit(now) {
                Err(wait) => {
                    self.rate_limited += 1;
                    Admission::RateLimited(wait, self.window.quota_at(now))
                }
                Ok(()) if is_bulk => {
                    let fault = Fault::draw(&self.faults, &mut self.fault_rng);
                    self.fault_count += u64::from(fault.is_some());
                    Admission::Admitted(fault)
                }
                Ok(()) => Admission::Admitted(None),
            },
        };
        let provisional = match admission {
            Admission::Unauthorized => RequestOutcome::Unauthorized,
            Admission::RateLimited(..) => RequestOutcome::RateLimited,
            Admission::Admitted(_) => RequestOutcome::Ok,
        };
        self.log.push(LogSlot {
            record: RequestRecord {
                seq,
                at: arrived,
                method: method.to_string(),
                path: path.to_string(),
                status: 0,
                items: 0,
                outcome: provisional,
                answered: None,
            },
            done: false,
        });
        (seq, admission)
    }

    /// Logs a request that arrived during a staged outage: not admitted by the rate limit (a
    /// failing proxy answers before the limiter is reached) and acting on nothing.
    pub(super) fn arrive_in_outage(&mut self, arrived: Duration, method: &str, path: &str) -> u64 {
        let seq = self.log.len() as u64;
        self.log.push(LogSlot {
            record: RequestRecord {
                seq,
                at: arrived,
                method: method.to_string(),
                path: path.to_string(),
                status: 0,
                items: 0,
                outcome: RequestOutcome::Outage,
                answered: None,
            },
            done: false,
        });
        seq
    }

    /// Stamps when a request's answer left (or its connection closed).
    pub(super) fn answered(&mut self, seq: u64, at: Duration) {
        if let Some(slot) = self.log.get_mut(seq as usize) {
            slot.record.answered = Some(at);
        }
    }

    /// Records a request's final status once it is known.
    pub(super) fn finish(&mut self, seq: u64, status: u16, items: usize, outcome: RequestOutcome) {
        if let Some(slot) = self.log.get_mut(seq as usize) {
            slot.record.status = status;
            slot.record.items = items;
            slot.record.outcome = outcome;
            slot.done = true;
        }
    }

    /// Requests whose answer is decided, in arrival order.
    pub(super) fn finished_requests(&self) -> Vec<RequestRecord> {
        self.log
            .iter()
            .filter(|s| s.done)
            .map(|s| s.record.clone())
            .collect()
    }

    /// Arrival times of every logged request, in-flight ones included.
    pub(super) fn arrival_times(&self) -> Vec<Duration> {
        self.log.iter().map(|s| s.record.at).collect()
    }

    /// A call of the other integration arrives: admitted or refused like any other.
    pub(super) fn other_arrival(&mut self, arrived: Duration, now: Instant) -> bool {
        let admitted = self.window.try_admit(now).is_ok();
        self.other.push((arrived, admitted));
        admitted
    }

    pub(super) fn other_arrivals(&self) -> &[(Duration, bool)] {
        &self.other
    }

    pub(super) fn counts(&self) -> Counts {
        let total = self.records.len() as u64;
        Counts {
            log: (
                self.log.len() as u64,
                self.rate_limited,
                self.fault_count,
                total - self.deleted,
                self.deleted,
            ),
            other_calls: self.other.len() as u64,
            other_refused: self.other.iter().filter(|(_, ok)| !ok).count() as u64,
        }
    }

    #[cfg(test)]
    pub(super) fn push_test_record(&mut self, record: RequestRecord) {
        self.log.push(LogSlot { record, done: true });
    }
}

/// The largest number of arrivals inside any half-open window `[t, t + window)`.
pub(super) fn max_in_window(mut times: Vec<Duration>, window: Duration) -> usize {
    // Arrivals are logged in order; sorting guards hand-made logs.
    times.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Parses the vendor's only date format, strictly: chrono alone would accept unpadded fields.
pub(super) fn parse_date(text: &str) -> Option<i64> {
    let parsed = NaiveDateTime::parse_from_str(text, DATE_TIME_FORMAT).ok()?;
    (parsed.format(DATE_TIME_FORMAT).to_string() == text).then(|| parsed.and_utc().timestamp())
}

pub(super) fn format_date(epoch_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(epoch_seconds, 0)
        .map(|d| d.format(DATE_TIME_FORMAT).to_string())
        .unwrap_or_default()
}

/// `mx_Custom_<n>` with `n` in 1..=50 written without leading zeros, to its `n`.
fn parse_field_name(name: &str) -> Option<u8> {
    let digits = name.strip_prefix(FIELD_PREFIX)?;
    let n: u8 = digits.parse().ok()?;
    ((1..=MAX_FIELD).contains(&n) && n.to_string() == digits).then_some(n)
}

#[cfg(test)]
mod tests;
