//! What the ledger holds, as the rest of the program sees it: a row's state, a run's status and
//! record, rows as planned, stored and updated, the input options a run recorded, and the
//! deletions `undo` asked for.

use csv::ByteRecord;

use super::LedgerError;

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RowState {
    /// Valid, not (yet) created; sent by the next attempt or run.
    Pending,
    /// A call carrying it left and its outcome is not known yet (or was lost).
    InFlight,
    Created,
    /// Sent and refused, or given up on.
    Failed,
    /// Failed validation; never sent.
    Invalid,
    /// Created by an earlier run (`--skip-existing`) or carried over as created (`retry`).
    Skipped,
    /// Keyed sync: the key's activity already holds what the row says; nothing sent.
    Unchanged,
    /// Keyed sync: the key's activity was updated in place (Bulk Update).
    Updated,
    /// Keyed sync: the row moved its activity (lead, code, date or owner), which the documented
    /// update cannot do; nothing sent.
    Conflict,
    /// Keyed sync (`--delete-missing`): the key's activity is queued for deletion.
    Deleted,
}

impl RowState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::InFlight => "in_flight",
            RowState::Created => "created",
            RowState::Failed => "failed",
            RowState::Invalid => "invalid",
            RowState::Skipped => "skipped",
            RowState::Unchanged => "unchanged",
            RowState::Updated => "updated",
            RowState::Conflict => "conflict",
            RowState::Deleted => "deleted",
        }
    }

    pub(super) fn parse(text: &str) -> Result<RowState, LedgerError> {
        Ok(match text {
            "pending" => RowState::Pending,
            "in_flight" => RowState::InFlight,
            "created" => RowState::Created,
            "failed" => RowState::Failed,
            "invalid" => RowState::Invalid,
            "skipped" => RowState::Skipped,
            "unchanged" => RowState::Unchanged,
            "updated" => RowState::Updated,
            "conflict" => RowState::Conflict,
            "deleted" => RowState::Deleted,
            other => return Err(LedgerError::Corrupt(format!("unknown row state {other:?}"))),
        })
    }
}

/// `line` of a row that is not in the input: a key the input lacks, whose activity a keyed
/// sync deletes (`--delete-missing`). Its report line has no `RowNumber`.
pub(crate) const NO_INPUT_LINE: u64 = 0;

/// What sending a row means: which call carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum RowAction {
    /// A new activity (bulk add). Every row of a run without `--key` is one.
    #[default]
    Create,
    /// The key's activity (`target_id`) gets the row's note and fields (Bulk Update).
    Update,
    /// The key's old activity (`target_id`) is deleted, then the row is created
    /// (`--replace-changed`); once the deletion is queued the row is a plain create.
    Replace,
    /// The key's activity (`target_id`) is deleted: the input no longer has the key
    /// (`--delete-missing`).
    Delete,
}

impl RowAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RowAction::Create => "create",
            RowAction::Update => "update",
            RowAction::Replace => "replace",
            RowAction::Delete => "delete",
        }
    }

    /// `NULL` (rows recorded before keyed sync existed) is a create.
    pub(super) fn parse(text: Option<&str>) -> Result<RowAction, LedgerError> {
        Ok(match text {
            None | Some("create") => RowAction::Create,
            Some("update") => RowAction::Update,
            Some("replace") => RowAction::Replace,
            Some("delete") => RowAction::Delete,
            Some(other) => {
                return Err(LedgerError::Corrupt(format!(
                    "unknown row action {other:?}"
                )));
            }
        })
    }
}

/// What a keyed sync knows of the activity behind one key: where it is (lead, code, date,
/// owner) and a hash of what it holds (note and custom fields), as last sent or as read back
/// from the account. A row of the input is described the same way, so the two compare.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeyEntry {
    /// The lead's id, lowercase.
    pub lead: String,
    /// The activity code.
    pub event: i64,
    /// `ActivityDateTime` as sent, UTC; `None` when the row gave none (the server's, or the
    /// one lsq-sync filled in, is not the source's to compare).
    pub date: Option<String>,
    /// `ActivityOwnerEmail`, lowercase; `None` when none was given.
    pub owner: Option<String>,
    /// Whether `owner` is known at all: an entry read back from the account may not say who
    /// owns the activity in the form the input gives it, and is then not compared on it.
    #[serde(default = "known")]
    pub owner_known: bool,
    /// Hash of the note and the custom fields with a value (the key field left out), or `None`
    /// when it cannot be known (read back from a server that does not list notes): such an
    /// entry is updated rather than trusted to be unchanged.
    pub content: Option<String>,
    /// The custom fields holding a value, by schema name: an update clears the ones a row no
    /// longer gives.
    pub fields: Vec<String>,
}

fn known() -> bool {
    true
}

/// One key of the key map, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownKey {
    /// The source's key.
    pub key: String,
    /// The activity it maps to, lowercase.
    pub activity_id: String,
    pub entry: KeyEntry,
}

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunStatus {
    /// Its rows are being recorded; a run killed in this state is discarded, never resumed.
    #[allow(
        dead_code,
        reason = "written as the literal 'planning' by the SQL of begin_run"
    )]
    Planning,
    Running,
    Finished,
    Interrupted,
    Aborted,
    /// Superseded by `--fresh` or `--force`; never resumed.
    Abandoned,
}

impl RunStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Planning => "planning",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Aborted => "aborted",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunInfo {
    pub id: i64,
    pub kind: String,
    pub input_path: String,
    pub input_hash: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
}

/// A row to record when a run is planned.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub number: u64,
    pub line: u64,
    pub record: ByteRecord,
    pub fingerprint: Option<String>,
    pub lead_id: Option<String>,
    pub state: RowState,
    pub activity_id: Option<String>,
    pub error: Option<String>,
    /// The row's key (`--key`), trimmed; `None` without a key, or when the cell is empty.
    pub sync_key: Option<String>,
    /// What the row says of its key's activity, JSON of a [`KeyEntry`]; `None` unless the row
    /// is valid and keyed.
    pub sync_entry: Option<String>,
    /// What sending the row means.
    pub action: RowAction,
    /// The existing activity an update, replace or delete acts on.
    pub target_id: Option<String>,
}

/// How a run reads its input (`--map`, `--set`, `--match-by`, `--timezone`, `--date-format`,
/// `--sheet`), recorded with the run (the `"input"` key of its options): a resume, a retry and
/// an undo all read the run's rows this one way. Every key is optional, so that records written
/// before a key existed still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct InputRecord {
    /// The worksheet read, by name or position; `None` for the first (and for CSV).
    pub sheet: Option<String>,
    /// `(header, field)` pairs: the sheet's columns read as API fields.
    pub mapping: Vec<(String, String)>,
    /// `(field, value)` pairs: fields given the same value on every row.
    pub constants: Vec<(String, String)>,
    /// The unique lead field leads are found by, instead of their id.
    pub match_by: Option<String>,
    /// The IANA time zone local times were read in.
    pub timezone: Option<String>,
    /// The date format, in spreadsheet notation, as given.
    pub date_format: Option<String>,
}

impl InputRecord {
    /// The record in a run's options JSON; the defaults (columns read by name, UTC dates) for a
    /// run recorded without one.
    pub(crate) fn from_options(options: &str) -> Result<InputRecord, serde_json::Error> {
        let options: serde_json::Value = serde_json::from_str(options)?;
        match options.get("input") {
            None | Some(serde_json::Value::Null) => Ok(InputRecord::default()),
            Some(input) => serde_json::from_value(input.clone()),
        }
    }
}

/// A row as recorded.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub number: u64,
    pub line: u64,
    pub record: ByteRecord,
    pub state: RowState,
    pub activity_id: Option<String>,
    pub error: Option<String>,
    /// The `ActivityDateTime` sent for a row that had none, so a re-send is identical.
    pub sent_date_time: Option<String>,
    /// What sending the row means (a create, unless a keyed sync classified it otherwise).
    pub action: RowAction,
    /// The existing activity an update, replace or delete acts on.
    pub target_id: Option<String>,
    /// The row's key, in a keyed sync.
    pub sync_key: Option<String>,
}

/// A row's new state after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowUpdate {
    pub number: u64,
    pub state: RowState,
    pub activity_id: Option<String>,
    pub error: Option<String>,
    /// A replace's old activity is queued for deletion: the row becomes a plain create and its
    /// key leaves the key map (so a create that then fails is created by the next run).
    pub old_deleted: bool,
}

impl RowUpdate {
    /// Row `number` is now in `state`, with this id and error.
    pub(crate) fn new(
        number: u64,
        state: RowState,
        activity_id: Option<String>,
        error: Option<String>,
    ) -> RowUpdate {
        RowUpdate {
            number,
            state,
            activity_id,
            error,
            old_deleted: false,
        }
    }
}
