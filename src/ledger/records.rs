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
            other => return Err(LedgerError::Corrupt(format!("unknown row state {other:?}"))),
        })
    }
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
}

/// A row's new state after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowUpdate {
    pub number: u64,
    pub state: RowState,
    pub activity_id: Option<String>,
    pub error: Option<String>,
}
