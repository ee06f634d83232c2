//! Keyed sync: the key map read back from the account (`--key-field`), so that a run whose
//! ledger does not know a key (a new container, a lost volume, a first run on another machine)
//! finds the activity an earlier run created for it instead of creating a second one.
//!
//! What enters is the planned run (its keyed rows and their activity codes) and the ledger's
//! key map; what leaves is the key map with the account's keyed activities added, before the
//! run is classified. The reads are Get Activities by Activity Event, one walk per code of the
//! input, paced through the run's `Api` like every call: every lead's activities of the code,
//! a page at a time (a page holds up to 1000 where the server allows), so the whole map costs
//! about `activities of those codes / page size` reads, not one per lead and code. Once a code
//! has been read through, later runs read only what was modified since (less a margin for
//! clocks), which is what another copy of the sync could have created meanwhile.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration as Span, Utc};
use tracing::{info, warn};

use crate::import::keyed::{KeyColumn, content_of};
use crate::import::plan::ImportError;
use crate::ledger::{KeyEntry, KnownKey, Ledger, LedgerError};
use crate::lsq::api::DATE_TIME_FORMAT;
use crate::lsq::by_event::{EventActivity, EventQuery, EventReader};
use crate::lsq::calls::Api;

/// How far before a read began the next incremental read starts: the server stamps
/// `ModifiedOn` with its clock, not ours.
const CLOCK_MARGIN_MINUTES: i64 = 60;

/// Entries added from one page before they are written.
const WRITE_EVERY: usize = 1000;

/// Why the key map could not be read back; nothing has been sent, and nothing may be, since an
/// unknown key could then become a second activity.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyMapError {
    #[error(transparent)]
    Fetch(#[from] crate::lsq::activities::FetchError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What reading the account did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyMapRead {
    /// Codes whose activities were read.
    pub codes: u64,
    /// Activities listed, and of those, carrying a key.
    pub listed: u64,
    pub keyed: u64,
    /// Keys the ledger did not know, now added.
    pub added: u64,
    /// Keys held by more than one activity on the account (the first one read is kept).
    pub repeated: u64,
    /// Activities read without a note field: their content cannot be compared, so their keys
    /// are updated (idempotently) rather than taken as unchanged.
    pub without_note: u64,
}

/// The key map entry of an activity read back from the account: where it is, and its content
/// when the server listed its note (`content` `None` otherwise). The owner is compared only when
/// the server names it by e-mail, the form the input gives.
pub(crate) fn entry_from_account(activity: &EventActivity, key_field: &str) -> KeyEntry {
    let fields: Vec<(&str, &str)> = activity
        .fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (content, names) = content_of(activity.note.as_deref(), &fields, Some(key_field));
    let owner = activity
        .owner
        .as_deref()
        .map(|o| o.trim().to_ascii_lowercase())
        .filter(|o| o.contains('@'));
    KeyEntry {
        lead: activity.lead_id.clone(),
        event: activity.event,
        date: activity.date.clone(),
        owner_known: owner.is_some(),
        owner,
        content: activity.note.is_some().then_some(content),
        fields: names,
    }
}

/// Adds to the ledger's key map what the account holds for the run's codes, when the run has
/// keys the ledger does not know. Each code is read whole the first time, then from where the
/// last read of it began.
pub(crate) async fn read_back(
    api: &Api,
    ledger: &Arc<Ledger>,
    run: i64,
    key: &KeyColumn,
) -> Result<KeyMapRead, ImportError> {
    let mut read = KeyMapRead::default();
    let Some(field) = key.field.clone() else {
        return Ok(read);
    };
    let unknown = ledger.unknown_keys(run)?;
    if unknown == 0 {
        return Ok(read);
    }
    let reader = EventReader::new(api.clone());
    let codes = ledger.keyed_events(run)?;
    info!(
        unknown,
        codes = codes.len(),
        "the ledger does not know {unknown} keys: reading the account's keyed activities of codes {codes:?} (--key-field {field})"
    );
    let mut seen: HashSet<String> = HashSet::new();
    for code in codes {
        let began = (Utc::now() - Span::minutes(CLOCK_MARGIN_MINUTES))
            .format(DATE_TIME_FORMAT)
            .to_string();
        let since = ledger.keys_read_through(code)?;
        let query = EventQuery {
            event: code,
            modified_from: since.clone(),
            modified_to: None,
            keep_empty_values: true,
        };
        let mut batch: Vec<KnownKey> = Vec::new();
        let result = reader
            .walk_event::<KeyMapError>(&query, |page| {
                for activity in page {
                    read.listed += 1;
                    let Some(value) = activity.fields.get(&field) else {
                        continue;
                    };
                    let value = value.trim();
                    if value.is_empty() {
                        continue;
                    }
                    read.keyed += 1;
                    if !seen.insert(value.to_string()) {
                        read.repeated += 1;
                        continue;
                    }
                    if activity.note.is_none() {
                        read.without_note += 1;
                    }
                    batch.push(KnownKey {
                        key: value.to_string(),
                        activity_id: activity.id.clone(),
                        entry: entry_from_account(&activity, &field),
                    });
                    if batch.len() >= WRITE_EVERY {
                        read.added += ledger.add_account_keys(&std::mem::take(&mut batch))?;
                    }
                }
                Ok(())
            })
            .await;
        let stats = result.map_err(|e| {
            ImportError::Stopped(format!(
                "cannot read the key map back from the account (code {code}): {e}; nothing was \
                 sent, since a key the ledger does not know could otherwise be created twice"
            ))
        })?;
        read.added += ledger.add_account_keys(&batch)?;
        ledger.set_keys_read_through(code, &began)?;
        read.codes += 1;
        info!(
            code,
            since = since.as_deref().unwrap_or("the beginning"),
            pages = stats.pages,
            activities = stats.activities,
            "key map: code {code} read"
        );
    }
    if read.repeated > 0 {
        warn!(
            "{} keys are held by more than one activity on the account; the first one listed is \
             the key's (the others stay as they are)",
            read.repeated
        );
    }
    if read.without_note > 0 {
        warn!(
            "the server listed {} keyed activities without their note, so whether their content \
             changed cannot be told: those rows are updated (an update is idempotent)",
            read.without_note
        );
    }
    info!(
        "key map read back from the account: {} activities listed, {} carry a key, {} keys added \
         to the ledger",
        read.listed, read.keyed, read.added
    );
    Ok(read)
}
