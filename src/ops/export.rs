//! Export: the activities of many leads, or of one code account-wide, to one CSV file that
//! `lsq-sync import` reads as it is (a migration between accounts).
//!
//! By lead ([`export_leads`]): leads enter as checked ids; for each,
//! [`crate::lsq::activities::Fetcher::fetch_all`] pages through its activities (every Offset
//! meaning, de-duplicated by id, bounded, the date window applied on our side), and
//! [`activity_record`] (pure) turns each into one line. Lines leave through a `csv::Writer`
//! lead by lead, so memory holds a few leads' activities, never the whole export. What happened
//! to each lead leaves as a [`LeadExport`] for the per-lead status file and the summary.
//!
//! By code ([`export_event`]): [`crate::lsq::by_event::EventReader::walk_event`] hands out the
//! account's activities of one code page by page (optionally only those modified in a window);
//! the activity-date window is applied here, and [`event_record`] (pure) writes each in the
//! same columns, so both exports feed `import` alike. What it did leaves as an [`EventExport`].
//!
//! The columns are fixed: [`EXPORT_COLUMNS`] then `mx_Custom_1` .. `mx_Custom_50`, then the
//! activity's own identity. A fixed set (rather than one discovered per run) lets the file be
//! written as the leads arrive, and keeps exports of different runs in the same shape; empty
//! custom cells are left out again by the import.

use std::io::Write;

use futures::StreamExt;

use crate::lsq::activities::{ActivityQuery, FetchError, Fetcher};
use crate::lsq::api::MAX_CUSTOM_FIELD;
use crate::lsq::api::{DATA_KEY_NOTE, ProspectActivity};
use crate::lsq::by_event::{EventActivity, EventQuery, EventReader, EventWalkStats};
use crate::lsq::window::DateWindow;
use crate::report::CellFormat;

/// The columns `lsq-sync import` reads, in its spelling, before the custom fields.
pub(crate) const EXPORT_COLUMNS: [&str; 5] = [
    "RelatedProspectId",
    "ActivityEvent",
    "ActivityNote",
    "ActivityDateTime",
    "ActivityOwnerEmail",
];

/// The activity's identity on the source account, after the custom fields; the import carries
/// these into its report unchanged.
pub(crate) const IDENTITY_COLUMNS: [&str; 5] =
    ["Id", "EventName", "CreatedOn", "ModifiedOn", "Owner"];

/// The whole header of an export.
pub(crate) fn export_header() -> Vec<String> {
    EXPORT_COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain((1..=MAX_CUSTOM_FIELD).map(|n| format!("mx_Custom_{n}")))
        .chain(IDENTITY_COLUMNS.iter().map(|c| c.to_string()))
        .collect()
}

/// What one line says, whichever endpoint listed the activity.
struct Line<'a> {
    lead: &'a str,
    event: i64,
    note: &'a str,
    /// The activity's date: `ActivityDateTime`, and `CreatedOn` among the identity columns.
    date: &'a str,
    /// The owner as the server names it; `ActivityOwnerEmail` only when an e-mail address.
    owner: &'a str,
    id: &'a str,
    event_name: &'a str,
    modified_on: &'a str,
}

impl Line<'_> {
    /// The line in [`export_header`]'s order; `field` gives a custom field's value by name.
    fn record(&self, field: impl Fn(&str) -> String) -> Vec<String> {
        // The import would refuse an owner that is not an e-mail address.
        let owner_email = if self.owner.contains('@') {
            self.owner
        } else {
            ""
        };
        let mut record: Vec<String> = [
            self.lead,
            &self.event.to_string(),
            self.note,
            self.date,
            owner_email,
        ]
        .map(str::to_string)
        .to_vec();
        record.extend((1..=MAX_CUSTOM_FIELD).map(|n| field(&format!("mx_Custom_{n}"))));
        record.extend(
            [
                self.id,
                self.event_name,
                self.date,
                self.modified_on,
                self.owner,
            ]
            .map(str::to_string),
        );
        record
    }
}

/// One activity of Get Activities of a Lead as one line, in [`export_header`]'s order.
///
/// `ActivityDateTime` is `CreatedOn`: Get Activities reports the date the activity was posted
/// with there. The owner goes to `ActivityOwnerEmail` only when it is an e-mail address (the
/// import would refuse anything else); the raw value is always in `Owner`.
pub(crate) fn activity_record(activity: &ProspectActivity) -> Vec<String> {
    let note = activity
        .data
        .iter()
        .find(|kv| kv.key == DATA_KEY_NOTE)
        .map(|kv| kv.value.as_str())
        .unwrap_or_default();
    let field = |name: &str| -> String {
        match activity.activity_fields.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    let owner = field("Owner");
    Line {
        lead: &activity.related_prospect_id,
        event: activity.event_code,
        note,
        date: &activity.created_on,
        owner: &owner,
        id: &activity.id,
        event_name: &activity.event_name,
        modified_on: &activity.modified_on,
    }
    .record(field)
}

/// One activity of Get Activities by Activity Event as one line, in the same columns as
/// [`activity_record`]. The endpoint names no type, so `EventName` is empty; a note the item
/// does not carry is an empty `ActivityNote`.
pub(crate) fn event_record(activity: &EventActivity) -> Vec<String> {
    Line {
        lead: &activity.lead_id,
        event: activity.event,
        note: activity.note.as_deref().unwrap_or_default(),
        date: activity.date.as_deref().unwrap_or_default(),
        owner: activity.owner.as_deref().unwrap_or_default(),
        id: &activity.id,
        event_name: "",
        modified_on: activity.modified_on.as_deref().unwrap_or_default(),
    }
    .record(|name| activity.fields.get(name).cloned().unwrap_or_default())
}

/// What the export did for one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeadExport {
    /// Every matching activity written; how many.
    Exported(u64),
    /// The account has no such lead.
    NotFound(String),
    /// The lead's activities could not be listed; nothing of it was written.
    Failed(String),
    /// Not tried: the run stopped (bad keys or wrong host) before this lead.
    Aborted(String),
}

impl LeadExport {
    /// The status file's `Status` cell.
    pub(crate) fn status(&self) -> &'static str {
        match self {
            LeadExport::Exported(_) => "exported",
            LeadExport::NotFound(_) => "not_found",
            LeadExport::Failed(_) => "failed",
            LeadExport::Aborted(_) => "aborted",
        }
    }
}

/// The export could not go on writing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// The output file could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The output file.
        path: String,
        /// Why.
        message: String,
    },
    /// The account-wide listing failed or came up short (by code; by lead a failure is the
    /// lead's line instead).
    #[error("{0}")]
    Fetch(#[from] FetchError),
}

/// What an export by code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventExport {
    /// Lines written: the activities of the code dated in the window.
    pub written: u64,
    /// Activities listed but dated outside the window, left out.
    pub outside_window: u64,
    /// What the walk found (pages, calls, notes missing, other codes).
    pub walk: EventWalkStats,
}

/// Exports every lead's activities of `query`'s code into `out` (header first, then one line per
/// activity as the pages arrive, in `format`), keeping those whose date is in `window`. A
/// listing that fails or falls short is an error: the caller must not keep a partial file.
pub(crate) async fn export_event<W: Write>(
    reader: &EventReader,
    query: &EventQuery,
    window: DateWindow,
    out: &mut csv::Writer<W>,
    out_name: &str,
    format: CellFormat,
) -> Result<EventExport, ExportError> {
    let write_error = |e: &dyn std::fmt::Display| ExportError::Write {
        path: out_name.to_string(),
        message: e.to_string(),
    };
    out.write_record(export_header())
        .map_err(|e| write_error(&e))?;
    let (mut written, mut outside_window) = (0u64, 0u64);
    let walk = reader
        .walk_event(query, |page| {
            for activity in &page {
                if !window.admits(activity.date.as_deref().unwrap_or_default()) {
                    outside_window += 1;
                    continue;
                }
                format
                    .write_record(out, event_record(activity))
                    .map_err(|e| write_error(&e))?;
                written += 1;
            }
            out.flush().map_err(|e| write_error(&e))
        })
        .await?;
    Ok(EventExport {
        written,
        outside_window,
        walk,
    })
}

/// What to export by lead.
#[derive(Debug, Clone)]
pub(crate) struct ExportFilter {
    /// Only this activity code.
    pub event: Option<i64>,
    /// Earliest activity date, inclusive.
    pub from: Option<String>,
    /// Latest activity date, inclusive.
    pub to: Option<String>,
}

/// Leads fetched at once: enough to keep the pacer busy while one lead's answer is awaited, few
/// enough that memory stays a handful of leads' activities.
const LEADS_IN_FLIGHT: usize = 4;

/// Exports `leads` in order into `out` (header first, then lines in `format`), calling
/// `on_lead` after each lead with its outcome. A lead that fails is reported and the export goes on; a 401 or 404 marks every
/// lead not yet fetched as aborted. Returns the outcome per lead, in order.
pub(crate) async fn export_leads<W: Write>(
    fetcher: &Fetcher,
    leads: &[String],
    filter: &ExportFilter,
    out: &mut csv::Writer<W>,
    out_name: &str,
    format: CellFormat,
    mut on_lead: impl FnMut(&str, &LeadExport),
) -> Result<Vec<LeadExport>, ExportError> {
    let write_error = |e: csv::Error| ExportError::Write {
        path: out_name.to_string(),
        message: e.to_string(),
    };
    out.write_record(export_header()).map_err(write_error)?;
    let abort: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let abort = &abort;
    let mut fetches = futures::stream::iter(leads.iter())
        .map(|lead| async move {
            if let Some(reason) = abort.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return (lead, Err(FetchError::Unauthorized(reason)), true);
            }
            let query = ActivityQuery {
                lead_id: lead.clone(),
                event: filter.event,
                from: filter.from.clone(),
                to: filter.to.clone(),
            };
            let result = fetcher.fetch_all(&query).await;
            if let Err(FetchError::Unauthorized(m) | FetchError::Fatal(m)) = &result {
                abort
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| m.clone());
            }
            (lead, result, false)
        })
        .buffered(LEADS_IN_FLIGHT);
    let mut outcomes = Vec::with_capacity(leads.len());
    while let Some((lead, result, skipped)) = fetches.next().await {
        let outcome = match result {
            Ok(activities) => {
                for activity in &activities {
                    format
                        .write_record(out, activity_record(activity))
                        .map_err(write_error)?;
                }
                out.flush().map_err(|e| ExportError::Write {
                    path: out_name.to_string(),
                    message: e.to_string(),
                })?;
                LeadExport::Exported(activities.len() as u64)
            }
            Err(FetchError::LeadNotFound(m)) => LeadExport::NotFound(m),
            Err(FetchError::Unauthorized(m) | FetchError::Fatal(m)) if skipped => {
                LeadExport::Aborted(format!("not tried: the run stopped: {m}"))
            }
            Err(FetchError::Unauthorized(m) | FetchError::Fatal(m)) => LeadExport::Aborted(m),
            Err(FetchError::Failed(m)) => LeadExport::Failed(m),
        };
        on_lead(lead, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsq::api::KeyValue;

    fn activity() -> ProspectActivity {
        let mut fields = serde_json::Map::new();
        fields.insert("mx_Custom_2".into(), "two".into());
        fields.insert("mx_Custom_50".into(), "fifty".into());
        fields.insert("Status".into(), "Active".into());
        fields.insert("Owner".into(), "asha.rao@example.com".into());
        ProspectActivity {
            id: "c310391d-6784-418b-b61c-bca2d0a7a645".into(),
            event_code: 201,
            event_name: "Webinar Attended".into(),
            activity_score: 0,
            created_on: "2024-05-01 10:00:00".into(),
            activity_type: 2,
            is_email_type: false,
            direction: "Inbound".into(),
            session_id: String::new(),
            related_prospect_id: "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf".into(),
            data: vec![KeyValue {
                key: DATA_KEY_NOTE.into(),
                value: "Lets begin".into(),
            }],
            activity_fields: fields,
            modified_on: "2024-05-02 11:00:00".into(),
        }
    }

    #[test]
    fn the_header_has_the_import_columns_every_custom_field_and_the_identity() {
        let header = export_header();
        assert_eq!(header.len(), 5 + 50 + 5);
        assert_eq!(
            &header[..4],
            &[
                "RelatedProspectId",
                "ActivityEvent",
                "ActivityNote",
                "ActivityDateTime"
            ]
        );
        assert_eq!(header[5], "mx_Custom_1");
        assert_eq!(header[54], "mx_Custom_50");
        assert_eq!(&header[55..], &IDENTITY_COLUMNS.map(String::from));
    }

    #[test]
    fn an_activity_becomes_a_line_under_the_header() {
        let header = export_header();
        let record = activity_record(&activity());
        assert_eq!(record.len(), header.len());
        let cell = |name: &str| record[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!(
            cell("RelatedProspectId"),
            "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf"
        );
        assert_eq!(cell("ActivityEvent"), "201");
        assert_eq!(cell("ActivityNote"), "Lets begin");
        assert_eq!(cell("ActivityDateTime"), "2024-05-01 10:00:00");
        assert_eq!(cell("ActivityOwnerEmail"), "asha.rao@example.com");
        assert_eq!(cell("mx_Custom_1"), "");
        assert_eq!(cell("mx_Custom_2"), "two");
        assert_eq!(cell("mx_Custom_50"), "fifty");
        assert_eq!(cell("Id"), "c310391d-6784-418b-b61c-bca2d0a7a645");
        assert_eq!(cell("ModifiedOn"), "2024-05-02 11:00:00");
    }

    #[test]
    fn an_activity_listed_by_code_becomes_the_same_line() {
        let header = export_header();
        let listed = EventActivity {
            id: "c310391d-6784-418b-b61c-bca2d0a7a645".into(),
            lead_id: "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf".into(),
            event: 201,
            date: Some("2024-05-01 10:00:00".into()),
            modified_on: Some("2024-05-02 11:00:00".into()),
            note: Some("Lets begin".into()),
            owner: Some("asha.rao@example.com".into()),
            fields: [("mx_Custom_2", "two"), ("mx_Custom_50", "fifty")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        };
        let by_lead = activity_record(&activity());
        let by_code = event_record(&listed);
        assert_eq!(by_code.len(), header.len());
        // Everything but EventName, which the endpoint does not give.
        for (i, name) in header.iter().enumerate() {
            if name != "EventName" {
                assert_eq!(by_code[i], by_lead[i], "{name}");
            }
        }
        let bare = event_record(&EventActivity {
            note: None,
            owner: None,
            ..listed
        });
        let cell = |name: &str| bare[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!(cell("ActivityNote"), "");
        assert_eq!(cell("ActivityOwnerEmail"), "");
    }

    #[test]
    fn an_owner_that_is_not_an_email_stays_out_of_the_import_column() {
        let mut a = activity();
        a.activity_fields.insert(
            "Owner".into(),
            "bf8ce802-836f-11e7-8758-0a106ee76b21".into(),
        );
        let header = export_header();
        let record = activity_record(&a);
        let cell = |name: &str| record[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!(cell("ActivityOwnerEmail"), "");
        assert_eq!(cell("Owner"), "bf8ce802-836f-11e7-8758-0a106ee76b21");
    }
}
