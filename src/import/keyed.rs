//! Keyed sync's classification step (`--key`): while planning records the rows, each valid
//! row is compared with what the key map knows of its key, and becomes a create, an update in
//! place, nothing (unchanged), a conflict, or (`--replace-changed`) a delete and a create; keys
//! the input lacks become deletions (`--delete-missing`).
//!
//! Rows enter one by one as the plan reads them, each keyed row with its [`KeyEntry`]
//! ([`KeyColumn`], [`entry_of`]) beside the key map's entry ([`Classifier::classify`]); what
//! needs every row (keys held twice, keys read back from the account since, keys the input
//! lacks) follows once they are recorded. What leaves is the ledger's rows with their action
//! and state, and the [`SyncPlan`] that counts them. The rule itself, [`decide`], is pure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use csv::ByteRecord;
use sha2::{Digest, Sha256};

use crate::config::SyncSettings;
use crate::ledger::{
    Classified, KeyEntry, KnownKey, Ledger, LedgerError, NO_INPUT_LINE, NewRow, RowAction, RowState,
};
use crate::lsq::api::ActivityItem;

/// Where a keyed input holds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyColumn {
    /// Position in the input's own header (after a report's columns, for `retry`).
    pub index: usize,
    /// The column's name as written in the file.
    pub name: String,
    /// `--key-field`: the custom field the key is also written into.
    pub field: Option<String>,
}

impl KeyColumn {
    /// The key column of `headers` under `sync`, matched without case; `Ok(None)` without
    /// `--key`, an error naming the column when the header lacks it.
    pub(crate) fn find(
        headers: &ByteRecord,
        sync: &SyncSettings,
    ) -> Result<Option<KeyColumn>, String> {
        let Some(key) = &sync.key else {
            return Ok(None);
        };
        let found: Vec<usize> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                String::from_utf8_lossy(h)
                    .trim()
                    .eq_ignore_ascii_case(key.trim())
            })
            .map(|(i, _)| i)
            .collect();
        match found.as_slice() {
            [index] => Ok(Some(KeyColumn {
                index: *index,
                name: String::from_utf8_lossy(&headers[*index]).trim().to_string(),
                field: sync.key_field.clone(),
            })),
            [] => Err(format!(
                "the key column {key:?} (--key) is not in the header (columns found: {})",
                headers
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).trim().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            [first, second, ..] => Err(format!(
                "the key column {key:?} (--key) appears twice, as columns {} and {}",
                first + 1,
                second + 1
            )),
        }
    }

    /// The row's key: its cell, trimmed; `None` when empty.
    pub(crate) fn key_of(&self, record: &ByteRecord) -> Option<String> {
        let cell = String::from_utf8_lossy(record.get(self.index).unwrap_or_default());
        let key = cell.trim();
        (!key.is_empty()).then(|| key.to_string())
    }

    /// The activity as sent by a keyed create: with `--key-field`, the key goes into that field.
    pub(crate) fn stamp(&self, item: &mut ActivityItem, key: &str) {
        if let Some(field) = &self.field {
            item.fields.retain(|f| f.schema_name != *field);
            item.fields.push(crate::lsq::api::FieldValue {
                schema_name: field.clone(),
                value: key.to_string(),
            });
        }
    }

    /// The record of a report line for a key the input lacks: the key in its column, the rest
    /// empty, `width` cells.
    fn missing_record(&self, width: usize, key: &str) -> ByteRecord {
        (0..width.max(self.index + 1))
            .map(|i| if i == self.index { key } else { "" })
            .collect()
    }
}

/// What a row says of its key's activity, to compare with the key map: where it is, and a hash
/// of the note and the custom fields that hold a value (the key field left out: it holds the
/// key, not data).
pub(crate) fn entry_of(item: &ActivityItem, key_field: Option<&str>) -> KeyEntry {
    let fields: Vec<(&str, &str)> = item
        .fields
        .iter()
        .map(|f| (f.schema_name.as_str(), f.value.as_str()))
        .collect();
    let (content, fields) = content_of(item.activity_note.as_deref(), &fields, key_field);
    KeyEntry {
        lead: item.related_prospect_id.trim().to_ascii_lowercase(),
        event: item.activity_event,
        date: item.activity_date_time.clone(),
        owner: item
            .activity_owner_email
            .as_deref()
            .map(|o| o.trim().to_ascii_lowercase())
            .filter(|o| !o.is_empty()),
        owner_known: true,
        content: Some(content),
        fields,
    }
}

/// The content hash of a note and fields, and the names of the fields that hold a value, in
/// order: what [`entry_of`] stores for a row and the key map rebuild computes for an activity
/// read back, so the two compare. An empty note is no note; empty fields are no fields.
pub(crate) fn content_of(
    note: Option<&str>,
    fields: &[(&str, &str)],
    key_field: Option<&str>,
) -> (String, Vec<String>) {
    let mut kept: Vec<(&str, &str)> = fields
        .iter()
        .copied()
        .filter(|(name, value)| !value.is_empty() && Some(*name) != key_field)
        .collect();
    kept.sort_unstable();
    kept.dedup_by(|a, b| a.0 == b.0);
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(note.unwrap_or("").as_bytes());
    for (name, value) in &kept {
        part(name.as_bytes());
        part(value.as_bytes());
    }
    let hex = crate::ledger::hex16(&hasher.finalize());
    (hex, kept.iter().map(|(n, _)| n.to_string()).collect())
}

/// What a keyed row becomes, given the key map's entry for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The activity holds what the row says.
    Unchanged,
    /// Note or fields changed: update in place.
    Update,
    /// Lead, code, date or owner changed, which an update cannot do; why.
    Conflict(String),
    /// The same, with `--replace-changed`: delete the old activity, create the new one.
    Replace,
}

/// Compares a row with the key map's entry for its key. A date the row does not give is not
/// compared (the activity's was the server's or lsq-sync's choice), nor an owner the entry does
/// not know.
pub(crate) fn decide(row: &KeyEntry, known: &KnownKey, replace_changed: bool) -> Decision {
    let was = &known.entry;
    let mut moved: Vec<String> = Vec::new();
    if row.lead != was.lead {
        moved.push(format!("lead {} (was {})", row.lead, was.lead));
    }
    if row.event != was.event {
        moved.push(format!("ActivityEvent {} (was {})", row.event, was.event));
    }
    if let (Some(now), Some(then)) = (&row.date, &was.date)
        && now != then
    {
        moved.push(format!("ActivityDateTime {now} (was {then})"));
    }
    if was.owner_known && row.owner != was.owner {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
        moved.push(format!(
            "ActivityOwnerEmail {} (was {})",
            show(&row.owner),
            show(&was.owner)
        ));
    }
    if !moved.is_empty() {
        return if replace_changed {
            Decision::Replace
        } else {
            Decision::Conflict(format!(
                "key {:?} is activity {}, and the row moves it: {}; an update cannot move an \
                 activity, so nothing was sent (--replace-changed deletes it and creates the row \
                 anew)",
                known.key,
                known.activity_id,
                moved.join(", ")
            ))
        };
    }
    match (&row.content, &was.content) {
        (Some(now), Some(then)) if now == then => Decision::Unchanged,
        _ => Decision::Update,
    }
}

/// How a keyed run was classified: rows by what they become, and calls they need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SyncPlan {
    /// New keys.
    pub create: u64,
    /// Changed notes or fields.
    pub update: u64,
    /// Moved activities, to delete and create anew (`--replace-changed`).
    pub replace: u64,
    pub unchanged: u64,
    pub conflict: u64,
    /// Keys the input lacks whose activities are to be deleted (`--delete-missing`).
    pub delete: u64,
    /// Keys the input lacks that are left alone (no `--delete-missing`, or a key that could not
    /// be read).
    pub missing_kept: u64,
    /// Rows made invalid by their key: empty, or held by another row too.
    pub bad_keys: u64,
    /// Keys the key map held before the run.
    pub known: u64,
    /// Lead and code pairs the deletions touch: each is one listing and at least one delete
    /// call (one per window).
    pub delete_groups: u64,
}

impl SyncPlan {
    /// Activities deleted: the missing keys', and the old activities of replaced rows.
    pub(crate) fn deletions(&self) -> u64 {
        self.delete + self.replace
    }
}

impl fmt::Display for SyncPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls = |n: u64| n.div_ceil(crate::lsq::api::MAX_BATCH as u64);
        write!(
            f,
            "{} to create ({} calls), {} to update in place ({} calls), {} unchanged, {} conflicts",
            self.create + self.replace,
            calls(self.create + self.replace),
            self.update,
            calls(self.update),
            self.unchanged,
            self.conflict
        )?;
        if self.replace > 0 {
            write!(f, ", {} moved (old activity deleted first)", self.replace)?;
        }
        if self.delete > 0 {
            write!(f, ", {} to delete (keys the input lacks)", self.delete)?;
        }
        if self.delete_groups > 0 {
            write!(
                f,
                " on {} lead/code pairs ({} listings and at least as many delete calls)",
                self.delete_groups, self.delete_groups
            )?;
        }
        if self.missing_kept > 0 {
            write!(f, ", {} keys the input lacks left alone", self.missing_kept)?;
        }
        if self.bad_keys > 0 {
            write!(f, ", {} rows invalid for their key", self.bad_keys)?;
        }
        Ok(())
    }
}

/// Rows re-classified per ledger transaction.
const CHUNK: usize = 2000;

/// A key's place in a run, for finding keys held twice and keys the input lacks without an
/// index over every run's rows: a 64-bit hash of the key (8 bytes a row), checked against the
/// real keys wherever two hashes meet.
fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Classifies a keyed run while planning records its rows, one row at a time against the key
/// map ([`Classifier::classify`]), then deals with what needs every row seen: keys held by
/// more than one row ([`Classifier::settle_duplicates`]), keys read back from the account
/// since ([`Classifier::reclassify_unknown`]), and keys the input lacks
/// ([`Classifier::add_missing`]).
#[derive(Debug)]
pub(crate) struct Classifier {
    sync: SyncSettings,
    /// The first row seen with each key hash: `(number, line)`.
    first: HashMap<u64, (u64, u64)>,
    /// Later rows whose key hash was seen before.
    repeats: HashMap<u64, Vec<(u64, u64)>>,
    /// Rows read whose key could not be read (an empty cell).
    unreadable: u64,
    /// What the rows became so far.
    pub plan: SyncPlan,
    /// Where the old activities of replaced rows are.
    replaced_from: HashSet<(String, i64)>,
}

impl Classifier {
    /// A classifier for a run under `sync`, whose key map holds `known` keys.
    pub(crate) fn new(sync: SyncSettings, known: u64) -> Classifier {
        Classifier {
            sync,
            first: HashMap::new(),
            repeats: HashMap::new(),
            unreadable: 0,
            plan: SyncPlan {
                known,
                ..SyncPlan::default()
            },
            replaced_from: HashSet::new(),
        }
    }

    /// Notes a row's key (`None`: the cell was empty), whatever the row's state.
    pub(crate) fn note_key(&mut self, key: Option<&str>, number: u64, line: u64) {
        let Some(key) = key else {
            self.unreadable += 1;
            return;
        };
        let hash = key_hash(key);
        match self.first.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.repeats.entry(hash).or_default().push((number, line));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((number, line));
            }
        }
    }

    /// Classifies a valid keyed row, about to be recorded, against the key map's entry for its
    /// key: the row's state, action, target, id and error are set.
    pub(crate) fn classify(
        &mut self,
        row: &mut NewRow,
        entry: &KeyEntry,
        known: Option<&KnownKey>,
    ) {
        let Some(known) = known else {
            self.plan.create += 1;
            return;
        };
        let c = classified(row.number, self.decide(entry, known), known);
        (
            row.state,
            row.action,
            row.target_id,
            row.activity_id,
            row.error,
        ) = (c.state, c.action, c.target_id, c.activity_id, c.error);
        if row.state != RowState::Pending {
            // Settled now, never sent: its entry would only weigh on the ledger (a quiet
            // night's rows are nearly all unchanged).
            row.sync_entry = None;
        }
    }

    fn decide(&mut self, entry: &KeyEntry, known: &KnownKey) -> Decision {
        let decision = decide(entry, known, self.sync.replace_changed);
        match &decision {
            Decision::Unchanged => self.plan.unchanged += 1,
            Decision::Update => self.plan.update += 1,
            Decision::Conflict(_) => self.plan.conflict += 1,
            Decision::Replace => {
                self.plan.replace += 1;
                self.replaced_from
                    .insert((known.entry.lead.clone(), known.entry.event));
            }
        }
        decision
    }

    /// Rows that hold a key another row holds too are invalid, all of them, naming the key and
    /// the rows; run once every row is recorded.
    pub(crate) fn settle_duplicates(
        &mut self,
        ledger: &Ledger,
        run: i64,
    ) -> Result<(), LedgerError> {
        let mut decided: Vec<Classified> = Vec::new();
        for (hash, later) in std::mem::take(&mut self.repeats) {
            let Some(first) = self.first.get(&hash).copied() else {
                continue;
            };
            // The same hash is nearly always the same key; group by the real keys to be sure.
            let mut by_key: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
            for (number, line) in std::iter::once(first).chain(later) {
                if let Some(key) = ledger.row_key(run, number)? {
                    by_key.entry(key).or_default().push((number, line));
                }
            }
            for (dup, rows) in by_key.into_iter().filter(|(_, rows)| rows.len() > 1) {
                let where_ = rows
                    .iter()
                    .map(|(number, line)| format!("row {number} (line {line})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                for (number, _) in rows {
                    decided.push(Classified {
                        number,
                        state: RowState::Invalid,
                        action: RowAction::Create,
                        target_id: None,
                        activity_id: None,
                        error: Some(format!(
                            "{}: key {dup:?} (--key) is held by {where_}; a key names one \
                             activity, so none of these rows is sent",
                            self.sync.key.as_deref().unwrap_or_default()
                        )),
                    });
                }
            }
        }
        if decided.is_empty() {
            return Ok(());
        }
        // The rows were counted as what they would have become; they are invalid instead.
        for row in
            ledger.rows_numbered(run, &decided.iter().map(|c| c.number).collect::<Vec<_>>())?
        {
            match (row.state, row.action) {
                (RowState::Unchanged, _) => self.plan.unchanged -= 1,
                (RowState::Conflict, _) => self.plan.conflict -= 1,
                (RowState::Pending, RowAction::Update) => self.plan.update -= 1,
                (RowState::Pending, RowAction::Replace) => self.plan.replace -= 1,
                (RowState::Pending, _) => self.plan.create -= 1,
                _ => {}
            }
        }
        self.plan.bad_keys += decided.len() as u64;
        ledger.classify(run, &decided)
    }

    /// Classifies again the rows that were to be created because the key map did not know
    /// their key, after the map learnt keys from the account (`--key-field`).
    pub(crate) fn reclassify_unknown(
        &mut self,
        ledger: &Ledger,
        run: i64,
    ) -> Result<(), LedgerError> {
        let mut after = 0;
        loop {
            let rows = ledger.keyed_rows(run, after, CHUNK)?;
            let Some(last) = rows.last() else { break };
            after = last.number;
            let mut decided = Vec::new();
            for row in rows {
                let Some(known) = &row.known else { continue };
                self.plan.create -= 1;
                let decision = self.decide(&row.entry, known);
                decided.push(classified(row.number, decision, known));
            }
            ledger.classify(run, &decided)?;
        }
        Ok(())
    }

    /// The keys the map holds that no row of the run holds. With `--delete-missing` each is
    /// appended to the run as a row that deletes its activity, unless some row's key could not
    /// be read (then nothing is deleted: the unreadable keys may be exactly those). `width` is
    /// the input's column count, for the appended rows' records.
    pub(crate) fn add_missing(
        &mut self,
        ledger: &Ledger,
        run: i64,
        key: &KeyColumn,
        width: usize,
    ) -> Result<(), LedgerError> {
        self.plan.known = ledger.known_key_count()?;
        let first = &self.first;
        let missing = ledger.known_keys_where(|key| !first.contains_key(&key_hash(key)))?;
        if !self.sync.delete_missing || self.unreadable > 0 {
            self.plan.missing_kept = missing.len() as u64;
            self.plan.delete_groups = self.replaced_from.len() as u64;
            if self.sync.delete_missing && !missing.is_empty() {
                tracing::warn!(
                    "{} rows have no readable key, so none of the {} keys the input lacks is \
                     deleted (a key that could not be read may be one of them)",
                    self.unreadable,
                    missing.len()
                );
            }
            return Ok(());
        }
        self.plan.delete = missing.len() as u64;
        let mut pairs = std::mem::take(&mut self.replaced_from);
        pairs.extend(
            missing
                .iter()
                .map(|k| (k.entry.lead.clone(), k.entry.event)),
        );
        self.plan.delete_groups = pairs.len() as u64;
        let first = ledger.last_row_number(run)? + 1;
        let rows = missing
            .into_iter()
            .zip(first..)
            .map(|(known, number)| missing_row(known, number, key, width));
        ledger.insert_rows(run, rows)?;
        Ok(())
    }
}

/// What `decision` makes row `number`: its state, action, target, id and error.
fn classified(number: u64, decision: Decision, known: &KnownKey) -> Classified {
    let id = Some(known.activity_id.clone());
    let (state, action, target_id, error) = match decision {
        Decision::Unchanged => (RowState::Unchanged, RowAction::Create, None, None),
        Decision::Update => (RowState::Pending, RowAction::Update, id.clone(), None),
        Decision::Replace => (RowState::Pending, RowAction::Replace, id.clone(), None),
        Decision::Conflict(why) => (RowState::Conflict, RowAction::Create, None, Some(why)),
    };
    Classified {
        number,
        state,
        action,
        target_id,
        // An unchanged or conflicting row's report shows the activity it is; an update's id is
        // set when it is sent.
        activity_id: (state != RowState::Pending).then_some(known.activity_id.clone()),
        error,
    }
}

/// The row that deletes a missing key's activity: a report line after the input's rows.
fn missing_row(known: KnownKey, number: u64, key: &KeyColumn, width: usize) -> NewRow {
    NewRow {
        number,
        line: NO_INPUT_LINE,
        record: key.missing_record(width, &known.key),
        fingerprint: None,
        lead_id: Some(known.entry.lead.clone()),
        state: RowState::Pending,
        activity_id: Some(known.activity_id.clone()),
        error: None,
        sync_entry: serde_json::to_string(&known.entry).ok(),
        sync_key: Some(known.key),
        action: RowAction::Delete,
        target_id: Some(known.activity_id),
    }
}

#[cfg(test)]
mod tests;
