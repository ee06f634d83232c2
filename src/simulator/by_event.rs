//! Get Activities by Activity Event (`POST ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent`):
//! every lead's activities of one custom code, in the shape the vendor documents, which is not
//! Get Activities of a Lead's.
//!
//! A parsed [`api::ByEventRequest`] enters from the HTTP layer (`server.rs`, which has already
//! logged, authenticated and rate-limited it); [`answer`] reads the account's state under its
//! mutex and returns the page as an [`api::ByEventResponse`], or the message of an
//! `MXInvalidInputException`. What the vendor documents is followed; where it is silent, the
//! choice is written beside the code:
//! - `FromDate`/`ToDate` select by the **modified** time (the vendor's default), inclusive;
//! - `PageIndex` counts from 1; 0 or no `Paging` is read as the first page (a server computing
//!   `(PageIndex - 1) * PageSize` would otherwise fail or wrap; the first page is the kind
//!   reading); `PageSize` 0 or missing, or above [`crate::simulator::SimConfig::by_event_page_cap`],
//!   is served as the cap, and `PageIndex` then counts pages of the size served;
//! - items are flat, every value a string, custom fields at the top level, the note as
//!   `ActivityEvent_Note` (or not at all, [`crate::simulator::ByEventNote::Absent`]); with
//!   `RemoveEmptyValue` true, empty values are left out, otherwise (false or missing) every
//!   field the type defines is listed, `""` when empty;
//! - the owner is not listed: the vendor's example shows `CreatedBy` and
//!   `CreatedByEmailAddress`, nothing that implies an owner;
//! - only custom types are served (an unknown or system code is an MX error, like the other
//!   endpoints), deleted activities are not listed, and the order is `Sorting`'s
//!   (`ModifiedOn` or `CreatedOn`, `Direction` 1 newest first, 0 oldest first; by default
//!   newest modified first), ties broken by id so that pages are stable.

use serde_json::{Map, Value};

use super::state::{EventSort, State, parse_date};
use super::{ByEventNote, Simulator, demo};
use crate::lsq::api;

/// The page asked for by `request`, or the message of the MX error it earns.
pub(super) fn answer(
    sim: &Simulator,
    request: &api::ByEventRequest,
) -> Result<api::ByEventResponse, String> {
    let config = &sim.shared.config;
    let parameter = &request.parameter;
    let bound = |name: &str, text: &Option<String>| match text {
        None => Ok(None),
        Some(text) => parse_date(text)
            .map(Some)
            .ok_or_else(|| format!("Invalid {name} '{text}': expected yyyy-MM-dd HH:mm:ss (UTC)")),
    };
    let from = bound("FromDate", &parameter.from_date)?;
    let to = bound("ToDate", &parameter.to_date)?;
    let cap = config.by_event_page_cap.max(1);
    let (index, size) = request.paging.map_or((1, cap), |p| {
        let size = if p.page_size == 0 {
            cap
        } else {
            p.page_size.min(cap)
        };
        (p.page_index.max(1), size)
    });
    let sort = match &request.sorting {
        None => EventSort {
            by_created: false,
            newest_first: true,
        },
        Some(sorting) => EventSort {
            by_created: sorting.column_name.eq_ignore_ascii_case("CreatedOn"),
            newest_first: sorting.direction != 0,
        },
    };
    let remove_empty = parameter.remove_empty_value.unwrap_or(false);
    let with_note = config.by_event_note == ByEventNote::Present;

    let state = sim.lock();
    let code = parameter.activity_event;
    if state.custom_type_name(code).is_none() {
        return Err(format!("Invalid activity event code {code}"));
    }
    let hits = state.query_event(code, from, to, sort);
    let skip = usize::try_from((index - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    let defined = state.type_fields(code);
    let list = hits
        .iter()
        .skip(skip)
        .take(take)
        .map(|&i| item(&state, i, &defined, remove_empty, with_note))
        .collect();
    Ok(api::ByEventResponse {
        record_count: hits.len() as u64,
        list,
    })
}

/// One activity as a flat map of strings.
fn item(
    state: &State,
    index: u32,
    defined: &[String],
    remove_empty: bool,
    with_note: bool,
) -> Map<String, Value> {
    let record = state.record(index);
    let mut map = Map::new();
    let mut put = |key: &str, value: String| {
        if !(remove_empty && value.is_empty()) {
            map.insert(key.to_string(), Value::String(value));
        }
    };
    put("ProspectActivityId", record.id());
    put("RelatedProspectId", state.lead_id(record).to_string());
    // The vendor's example marks custom activities "2", and only those are served.
    put("ActivityType", "2".to_string());
    put("ActivityEvent", record.event_code().to_string());
    put("Status", "Active".to_string());
    // As in Get Activities of a Lead, CreatedOn is the activity's own date.
    put("CreatedOn", record.date_time());
    put("ModifiedOn", record.modified_on());
    put("CreatedBy", demo::API_USER_ID.to_string());
    put("CreatedByName", demo::API_USER_NAME.to_string());
    put("CreatedByEmailAddress", demo::DEMO_OWNERS[0].to_string());
    let fields: Vec<(String, &str)> = record.fields().collect();
    for name in defined {
        let value = fields
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, v)| *v);
        put(name, value.to_string());
    }
    // A field stored without being defined (seeded by a test) is listed too.
    for (key, value) in &fields {
        if !defined.contains(key) {
            put(key, value.to_string());
        }
    }
    if with_note {
        put(api::FIELD_NOTE, record.note().unwrap_or("").to_string());
    }
    map
}

#[cfg(test)]
mod tests;
