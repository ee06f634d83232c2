//! Which rows of a bulk post already exist on the server, for batches whose outcome is unknown.
//!
//! A bulk post can fail after the server acted on it: a timeout after sending, a dropped
//! connection, a 5xx that may have committed. The bulk endpoint is not idempotent, so re-sending
//! such a batch blindly duplicates whatever was created. Instead the caller hands the batch's
//! rows here: [`resolve`] reads the leads' activities back (through [`Fetcher`], paced and
//! retried like every call) and [`match_rows`] (pure) pairs each row with a server activity that
//! has the same content, or with nothing. Rows come back as `Some(activity id)` (created: report
//! it, do not re-send) or `None` (not found: safe to send again). Activities read account-wide
//! by code ([`EventActivity`], chosen by `certainty` when that read is cheaper) are matched by
//! the same rules through [`match_event_rows`].
//!
//! What "the same content" means, and why:
//! - lead id (compared lowercase, as GUIDs compare), activity code, and activity date-time;
//! - the note (`Data` entry `NotableEventDescription`; an empty note is the same as none);
//! - the custom fields: the row's `Fields` must equal the activity's non-empty `mx_Custom_*`
//!   values exactly (Get Activities returns only non-empty custom values, so empty values are
//!   left out on both sides);
//! - not the owner: the row names it by e-mail, the server stores and returns a user id.
//!
//! A row without `ActivityDateTime` matches nothing: the server stamped it with its own clock, so
//! nothing ties it to one activity rather than to any other of the same content (an earlier
//! import, a colleague's entry). Such rows stay `None` and the caller decides what to do with
//! them (report them as unknown rather than re-send them, typically).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{NaiveDateTime, TimeDelta};
use futures::StreamExt;
use tracing::debug;

use crate::lsq::activities::{ActivityQuery, FetchError, Fetcher};
use crate::lsq::api::{ActivityItem, DATA_KEY_NOTE, DATE_TIME_FORMAT, ProspectActivity};
use crate::lsq::by_event::EventActivity;

/// Prefix of custom field names; other `ActivityFields` entries (`Status`, `Owner`) are the
/// server's own and take no part in matching.
const CUSTOM_FIELD_PREFIX: &str = "mx_Custom_";

/// How far the date window of the read-back reaches beyond the rows' own dates. The vendor does
/// not say whether `ToDate` is inclusive, nor whether it reads the dates as UTC or in the
/// account's time zone; a wider window costs a few more rows in the answer, a narrower one
/// could miss a created row, which would then be posted again as a duplicate.
const DATE_MARGIN: TimeDelta = TimeDelta::days(1);

/// Everything a row and an activity must agree on to be taken as the same activity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MatchKey {
    /// The lead's id, trimmed and lowercase.
    lead: String,
    /// The activity code.
    event: i64,
    /// The activity date-time, normalised to `yyyy-MM-dd HH:mm:ss` when it parses.
    when: String,
    /// The note; `None` for no note or an empty one.
    note: Option<String>,
    /// Non-empty custom field values by schema name.
    fields: BTreeMap<String, String>,
}

impl MatchKey {
    /// The key of a posted row; `None` when the row has no date (see the module comment).
    fn of_row(row: &ActivityItem) -> Option<MatchKey> {
        let when = normalise_date(row.activity_date_time.as_deref()?);
        // A repeated schema name keeps its last value, as the server stores it.
        let mut fields = BTreeMap::new();
        for field in &row.fields {
            fields.insert(field.schema_name.clone(), field.value.clone());
        }
        fields.retain(|_, value| !value.is_empty());
        Some(MatchKey {
            lead: normalise_lead(&row.related_prospect_id),
            event: row.activity_event,
            when,
            note: row.activity_note.clone().filter(|n| !n.is_empty()),
            fields,
        })
    }

    /// The key of an activity as Get Activities returned it.
    fn of_activity(activity: &ProspectActivity) -> MatchKey {
        let note = activity
            .data
            .iter()
            .find(|kv| kv.key == DATA_KEY_NOTE)
            .map(|kv| kv.value.clone())
            .filter(|n| !n.is_empty());
        let fields = activity
            .activity_fields
            .iter()
            .filter(|(key, _)| key.starts_with(CUSTOM_FIELD_PREFIX))
            .filter_map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (!text.is_empty()).then(|| (key.clone(), text))
            })
            .collect();
        MatchKey {
            lead: normalise_lead(&activity.related_prospect_id),
            event: activity.event_code,
            when: normalise_date(&activity.created_on),
            note,
            fields,
        }
    }

    /// The key of an activity as Get Activities by Activity Event listed it; `None` when the
    /// item carries no note field at all, since its note then cannot be compared (an empty
    /// note listed as `""` is no note, as for rows). Its fields are already the non-empty
    /// `mx_Custom_*` values, its date the activity's own.
    fn of_event(activity: &EventActivity) -> Option<MatchKey> {
        let note = activity.note.as_ref()?;
        Some(MatchKey {
            lead: normalise_lead(&activity.lead_id),
            event: activity.event,
            when: normalise_date(activity.date.as_deref().unwrap_or_default()),
            note: Some(note.clone()).filter(|n| !n.is_empty()),
            fields: activity.fields.clone(),
        })
    }
}

/// A lead or activity id as compared: GUIDs, so trimmed and lowercase.
pub(crate) fn normalise_lead(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

/// Dates that parse are compared as instants (so `2025-1-5 ...` and `2025-01-05 ...` agree);
/// anything else is compared as trimmed text.
fn normalise_date(text: &str) -> String {
    match parse_date(text) {
        Some(when) => when.format(DATE_TIME_FORMAT).to_string(),
        None => text.trim().to_string(),
    }
}

/// Reads the API's date format, tolerating a `T` separator and fractional seconds in case the
/// server writes them; `None` when it is none of those.
fn parse_date(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    [
        DATE_TIME_FORMAT,
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
}

/// Pure matching. `rows`: the activities that were posted (as sent). `found`: what Get
/// Activities returned for those leads. `known_ids`: activity ids already attributed to other
/// rows (earlier runs, earlier resolutions), which must not be claimed again.
///
/// Returns, per row (same order), the id of the server activity matched to it, or `None`. Rows
/// are served in order, each taking the first unclaimed activity with the same content in the
/// order `found` lists them; each activity is claimed at most once, so `k` identical rows need
/// `k` identical activities. A row without `ActivityDateTime` is always `None`.
pub(crate) fn match_rows(
    rows: &[&ActivityItem],
    found: &[ProspectActivity],
    known_ids: &HashSet<String>,
) -> Vec<Option<String>> {
    let found = found
        .iter()
        .map(|activity| (activity.id.as_str(), MatchKey::of_activity(activity)));
    match_keys(rows, found, known_ids)
}

/// [`match_rows`] for activities listed account-wide by code. An item without a note field
/// matches nothing (its note cannot be compared); the caller reads such a code lead by lead
/// instead, and this rule only keeps a stray item from being claimed on too little.
pub(crate) fn match_event_rows(
    rows: &[&ActivityItem],
    found: &[EventActivity],
    known_ids: &HashSet<String>,
) -> Vec<Option<String>> {
    let found = found
        .iter()
        .filter_map(|activity| MatchKey::of_event(activity).map(|key| (activity.id.as_str(), key)));
    match_keys(rows, found, known_ids)
}

/// The matching itself, whatever read listed the activities: `(id, key)` of each.
fn match_keys<'a>(
    rows: &[&ActivityItem],
    found: impl Iterator<Item = (&'a str, MatchKey)>,
    known_ids: &HashSet<String>,
) -> Vec<Option<String>> {
    // Ids are GUIDs: compare them without regard to case or stray whitespace.
    let known: HashSet<String> = known_ids.iter().map(|id| normalise_lead(id)).collect();
    let mut listed = HashSet::new();
    let mut pool: HashMap<MatchKey, VecDeque<&str>> = HashMap::new();
    for (id, key) in found {
        let normal = normalise_lead(id);
        // An id listed twice (overlapping reads) is still one activity.
        if known.contains(&normal) || !listed.insert(normal) {
            continue;
        }
        pool.entry(key).or_default().push_back(id);
    }
    // Equal keys are interchangeable, so taking the first free candidate per row is as good as
    // any assignment: the number of matches per key is min(rows, activities) either way.
    rows.iter()
        .map(|row| {
            let key = MatchKey::of_row(row)?;
            pool.get_mut(&key)?.pop_front().map(str::to_string)
        })
        .collect()
}

/// How many leads are read back at once. Each page still waits for a pacer permit, so this
/// only keeps the permits busy while answers are on their way; it cannot exceed the quota.
const CONCURRENT_READS: usize = 8;

/// The rows of one lead: one paged read-back covers them all.
struct Group {
    /// The lead id as the first of these rows spelled it, trimmed, for the `leadId` parameter.
    lead: String,
    /// The activity code when every row of the lead has the same one (`Parameter.ActivityEvent`
    /// narrows the read); `None` when they differ, and the read takes every type.
    event: Option<i64>,
    /// Earliest and latest date of the group's dated rows; `None` until one is seen.
    span: Option<(NaiveDateTime, NaiveDateTime)>,
    /// Whether every dated row's date parsed; if not, no date window is sent, since a window
    /// built from the others could leave that row's activity out.
    dates_parse: bool,
}

/// Network part: for each distinct lead among `rows`, fetches the lead's activities (of the
/// rows' activity code when they share one) within the rows' dates, widened by a day on each
/// side, then [`match_rows`]. One paged read per lead however many rows, batches and codes it
/// covers: the cost of a check is the number of leads, not of rows. Leads are read
/// concurrently, every page through the fetcher's pacer. Leads with no dated row are not read
/// at all: nothing could match them.
///
/// A lead the server does not know holds no activities, so its rows are `None` rather than an
/// error. Any other fetch error is returned as is; the caller then leaves the rows unresolved
/// (and stops the run on `Unauthorized` or `Fatal`).
pub(crate) async fn resolve(
    fetcher: &Fetcher,
    rows: &[&ActivityItem],
    known_ids: &HashSet<String>,
) -> Result<Vec<Option<String>>, FetchError> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let Some(date) = row.activity_date_time.as_deref() else {
            continue;
        };
        let slot = *index
            .entry(normalise_lead(&row.related_prospect_id))
            .or_insert_with(|| {
                groups.push(Group {
                    lead: row.related_prospect_id.trim().to_string(),
                    event: Some(row.activity_event),
                    span: None,
                    dates_parse: true,
                });
                groups.len() - 1
            });
        let group = &mut groups[slot];
        if group.event != Some(row.activity_event) {
            group.event = None;
        }
        match parse_date(date) {
            Some(when) => {
                group.span = Some(match group.span {
                    None => (when, when),
                    Some((lo, hi)) => (lo.min(when), hi.max(when)),
                });
            }
            None => group.dates_parse = false,
        }
    }

    // Built into a Vec first: a stream over a borrowing closure makes the future !Send.
    let reads: Vec<_> = groups
        .iter()
        .map(|group| Box::pin(read_back(fetcher, group)))
        .collect();
    let reads = futures::stream::iter(reads)
        .buffer_unordered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await;
    let mut found = Vec::new();
    for read in reads {
        found.extend(read?);
    }
    Ok(match_rows(rows, &found, known_ids))
}

/// Every activity of one group's lead that could be one of its rows. The window is sent and
/// applied again on our side ([`Fetcher::fetch_all`]); nothing here relies on the server's
/// filter, since rows are matched by content, date included: a server that ignores the window
/// only makes the listing longer.
async fn read_back(fetcher: &Fetcher, group: &Group) -> Result<Vec<ProspectActivity>, FetchError> {
    let (from, to) = match (group.dates_parse, group.span) {
        (true, Some((lo, hi))) => (
            Some((lo - DATE_MARGIN).format(DATE_TIME_FORMAT).to_string()),
            Some((hi + DATE_MARGIN).format(DATE_TIME_FORMAT).to_string()),
        ),
        _ => (None, None),
    };
    let query = ActivityQuery {
        lead_id: group.lead.clone(),
        event: group.event,
        from,
        to,
    };
    let activities = match fetcher.fetch_all(&query).await {
        Ok(activities) => activities,
        Err(FetchError::LeadNotFound(message)) => {
            debug!(lead = %group.lead, "lead not found, so none of its rows exist: {message}");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    debug!(
        lead = %group.lead,
        event = group.event,
        activities = activities.len(),
        "read back for resolution"
    );
    // The read was for this lead: an answer that leaves the lead out still belongs to it.
    Ok(activities
        .into_iter()
        .map(|mut activity| {
            if activity.related_prospect_id.trim().is_empty() {
                activity.related_prospect_id = group.lead.clone();
            }
            activity
        })
        .collect())
}

#[cfg(test)]
mod tests;
