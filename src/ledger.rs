//! The ledger: an SQLite database (WAL mode) that is the source of truth for what was sent and
//! what came back, so that a run killed at any moment can be finished without losing or
//! doubling a row.
//!
//! It records, per run, the input (path, SHA-256 of its content, header, options); per row, its
//! fingerprint, state, remote id, attempts, last error and the raw record; per call, when it left
//! and how it ended. Rows enter once, when a run is planned ([`Ledger::insert_rows`]); the send
//! stage marks a batch's rows in flight before the call leaves ([`Ledger::begin_call`]) and
//! settles them after the answer ([`Ledger::settle`]), each durably committed; the report is
//! regenerated from it at any time ([`Ledger::rows`] in row order).
//!
//! Hot-path writes go to one writer thread that commits whatever has queued up in a single
//! transaction (group commit), so concurrency does not turn into one fsync per call. A lock file
//! beside the database keeps a second process off the same ledger.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use csv::ByteRecord;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::input::rows::SourceRow;
use crate::lsq::api::ActivityItem;

/// Bumped when the schema changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,       -- import | retry
    input_path  TEXT NOT NULL,       -- canonical path of the input
    input_hash  TEXT NOT NULL,       -- SHA-256 of the input's bytes
    headers     BLOB NOT NULL,       -- the input's header row, CSV-encoded
    options     TEXT NOT NULL,       -- settings that shaped the run, JSON, no secrets
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL        -- planning | running | finished | interrupted | aborted | abandoned
);
CREATE TABLE IF NOT EXISTS rows (
    run            INTEGER NOT NULL REFERENCES runs(id),
    row_number     INTEGER NOT NULL, -- the report's RowNumber
    line           INTEGER NOT NULL, -- line of the input where the row starts
    fingerprint    TEXT,             -- identity of the activity (NULL for invalid rows)
    lead_id        TEXT,
    state          TEXT NOT NULL,    -- pending | in_flight | created | failed | invalid | skipped
    activity_id    TEXT,             -- ProspectActivityId once known
    attempts       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    sent_date_time TEXT,             -- ActivityDateTime lsq-sync filled in for a row without one
    last_call      INTEGER,
    record         BLOB NOT NULL,    -- the input row as read, CSV-encoded
    PRIMARY KEY (run, row_number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    id          INTEGER PRIMARY KEY,
    run         INTEGER NOT NULL REFERENCES runs(id),
    rows        INTEGER NOT NULL,    -- activities in the request
    started_at  TEXT NOT NULL,       -- marked before the request left
    finished_at TEXT,
    outcome     TEXT                 -- how it ended; NULL while in flight (or if killed)
);
CREATE TABLE IF NOT EXISTS deletions (
    id           INTEGER PRIMARY KEY,
    command      TEXT NOT NULL,      -- undo
    source_run   INTEGER,            -- the run whose activities were deleted, when known
    lead_id      TEXT NOT NULL,
    events       TEXT NOT NULL,      -- activity codes, comma-separated
    from_date    TEXT,
    to_date      TEXT,
    activity_ids TEXT NOT NULL,      -- ids the deletion was meant to remove, comma-separated
    status       TEXT NOT NULL,      -- queued | confirmed | failed
    message      TEXT,
    queued_at    TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
";

/// Indexes for looking rows up by content or by lead, built the first time such a lookup is
/// needed (`--skip-existing`, `--force`, an ambiguous outcome), not with the schema. Both are
/// keyed by random values (hashes, GUIDs), so keeping them up to date costs a random page read
/// and write per row: with them, the ledger was half of a million-row import's time, for
/// lookups that most runs never make.
const LOOKUP_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS rows_by_fingerprint ON rows(fingerprint) WHERE state = 'created';
CREATE INDEX IF NOT EXISTS rows_by_lead ON rows(lead_id) WHERE activity_id IS NOT NULL;
";

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

    fn parse(text: &str) -> Result<RowState, LedgerError> {
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

impl StoredRow {
    /// The row as the input held it (number, line, fields): the one way a recorded row goes back
    /// to the stages that read input rows (validation, the report).
    pub(crate) fn source(&self) -> SourceRow {
        SourceRow {
            number: self.number,
            line: self.line,
            record: self.record.clone(),
        }
    }

    /// [`StoredRow::source`], without copying the fields.
    pub(crate) fn into_source(self) -> SourceRow {
        SourceRow {
            number: self.number,
            line: self.line,
            record: self.record,
        }
    }
}

/// A row's new state after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowUpdate {
    pub number: u64,
    pub state: RowState,
    pub activity_id: Option<String>,
    pub error: Option<String>,
}

/// A deletion lsq-sync asked for, as recorded (table `deletions`): what `undo` did, so a later
/// look at the ledger tells which imported activities are gone and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRecord {
    /// Key of the record; 0 before it is inserted.
    pub id: i64,
    /// The command that asked (`undo`).
    pub command: String,
    /// The run whose activities were meant, when known.
    pub source_run: Option<i64>,
    /// The lead.
    pub lead_id: String,
    /// Activity codes, comma-separated.
    pub events: String,
    /// The window's start.
    pub from_date: Option<String>,
    /// The window's end.
    pub to_date: Option<String>,
    /// The activity ids the deletion was meant to remove.
    pub activity_ids: Vec<String>,
    /// `queued`, `confirmed` or `failed`.
    pub status: String,
    /// The server's answer or why it failed.
    pub message: Option<String>,
}

/// The ledger cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open ledger {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "ledger {path} is in use by another lsq-sync ({holder}); wait for it to finish or stop it"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "ledger {path} was written by a different version of lsq-sync (schema {found}, expected {SCHEMA_VERSION})"
    )]
    Version { path: PathBuf, found: i64 },
    #[error("ledger error: {0}")]
    Sql(String),
    #[error("ledger is inconsistent: {0}")]
    Corrupt(String),
    #[error("the ledger writer has stopped")]
    Closed,
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Sql(e.to_string())
    }
}

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync on every commit: survives power loss, not just a killed process.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a killed process; a power loss may lose the last
    /// commits (and so re-send their rows).
    Normal,
}

enum WriteOp {
    BeginCall {
        run: i64,
        rows: Vec<u64>,
        fills: Vec<(u64, String)>,
        ack: oneshot::Sender<Result<i64, LedgerError>>,
    },
    Settle {
        run: i64,
        call: Option<i64>,
        outcome: String,
        rows: Vec<RowUpdate>,
        ack: oneshot::Sender<Result<(), LedgerError>>,
    },
}

/// An open ledger; shared by the stages of one run.
pub struct Ledger {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// A second connection for look-ups made while `conn` is busy inserting a run's rows
    /// (`--skip-existing` asks about earlier runs row by row).
    lookup: Mutex<Connection>,
    /// Whether [`LOOKUP_INDEXES`] are known to exist.
    indexed: std::sync::atomic::AtomicBool,
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

fn open_connection(path: &Path, durability: Durability) -> Result<Connection, LedgerError> {
    let open_error = |e: rusqlite::Error| LedgerError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(open_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_error)?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_error)?;
    Ok(conn)
}

/// Takes the lock file beside the ledger, or says who holds it.
fn take_lock(ledger: &Path) -> Result<File, LedgerError> {
    let lock_path = PathBuf::from(format!("{}.lock", ledger.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| LedgerError::Open {
            path: lock_path.clone(),
            message: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LedgerError::Locked {
                path: ledger.to_path_buf(),
                holder: if holder.is_empty() {
                    "a process that has not written its name yet".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(LedgerError::Open {
                path: lock_path,
                message: format!("cannot lock: {e}"),
            });
        }
    }
    let command: Vec<String> = std::env::args().take(4).collect();
    let note = format!(
        "pid {}, started {} UTC, command: {}",
        std::process::id(),
        now(),
        command.join(" ")
    );
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(note.as_bytes()).and_then(|()| file.flush());
    Ok(file)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` and locks it for this process.
    pub fn open(path: &Path, durability: Durability) -> Result<Ledger, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| LedgerError::Open {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let lock = take_lock(path)?;
        let conn = open_connection(path, durability)?;
        conn.execute_batch(SCHEMA)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version.map(|v| v.parse::<i64>().unwrap_or(-1)) {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(LedgerError::Version {
                    path: path.to_path_buf(),
                    found,
                });
            }
        }
        let writer_conn = open_connection(path, durability)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || write_loop(writer_conn, rx))
            .map_err(|e| LedgerError::Open {
                path: path.to_path_buf(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        let lookup = open_connection(path, durability)?;
        Ok(Ledger {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            lookup: Mutex::new(lookup),
            indexed: std::sync::atomic::AtomicBool::new(false),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            _lock: lock,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest run of `kind` over `input_path` that did not finish, if any.
    pub(crate) fn unfinished_run(
        &self,
        kind: &str,
        input_path: &str,
    ) -> Result<Option<RunInfo>, LedgerError> {
        self.run_where(
            "kind = ?1 AND input_path = ?2 AND status IN ('running', 'interrupted', 'aborted')",
            kind,
            input_path,
        )
    }

    /// The latest finished run of `kind` over `input_path`, if any.
    pub(crate) fn finished_run(
        &self,
        kind: &str,
        input_path: &str,
    ) -> Result<Option<RunInfo>, LedgerError> {
        self.run_where(
            "kind = ?1 AND input_path = ?2 AND status = 'finished'",
            kind,
            input_path,
        )
    }

    fn run_where(
        &self,
        condition: &str,
        kind: &str,
        input_path: &str,
    ) -> Result<Option<RunInfo>, LedgerError> {
        let sql = format!(
            "SELECT id, kind, input_path, input_hash, started_at, finished_at, status FROM runs \
             WHERE {condition} ORDER BY id DESC LIMIT 1"
        );
        Ok(self
            .conn()
            .query_row(&sql, params![kind, input_path], run_info)
            .optional()?)
    }

    /// A run by id.
    #[cfg(test)]
    pub(crate) fn run(&self, id: i64) -> Result<Option<RunInfo>, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, kind, input_path, input_hash, started_at, finished_at, status FROM runs WHERE id = ?1",
                params![id],
                run_info,
            )
            .optional()?)
    }

    /// Every run, oldest first.
    pub(crate) fn runs(&self) -> Result<Vec<RunInfo>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, kind, input_path, input_hash, started_at, finished_at, status FROM runs ORDER BY id",
        )?;
        let runs = stmt
            .query_map([], run_info)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(runs)
    }

    /// Records a new run in the `planning` state and returns its id; [`Ledger::planned`] makes
    /// it resumable once all its rows are recorded. Runs an earlier process left half-planned
    /// are discarded first.
    pub(crate) fn start_run(
        &self,
        kind: &str,
        input_path: &str,
        input_hash: &str,
        headers: &ByteRecord,
        options: &str,
    ) -> Result<i64, LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM rows WHERE run IN (SELECT id FROM runs WHERE status = 'planning')",
            [],
        )?;
        tx.execute(
            "UPDATE runs SET status = 'abandoned', finished_at = ?1 WHERE status = 'planning'",
            params![now()],
        )?;
        tx.execute(
            "INSERT INTO runs (kind, input_path, input_hash, headers, options, started_at, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'planning')",
            params![
                kind,
                input_path,
                input_hash,
                encode_record(headers),
                options,
                now()
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Every row of a new run is recorded: from now on it is resumed, not re-planned.
    pub(crate) fn planned(&self, run: i64) -> Result<(), LedgerError> {
        self.set_status(run, RunStatus::Running, false)
    }

    /// Marks a run as running again (resume).
    pub(crate) fn reopen_run(&self, run: i64) -> Result<(), LedgerError> {
        self.set_status(run, RunStatus::Running, false)
    }

    /// Records how a run ended.
    pub(crate) fn finish_run(&self, run: i64, status: RunStatus) -> Result<(), LedgerError> {
        self.set_status(run, status, true)
    }

    fn set_status(&self, run: i64, status: RunStatus, finished: bool) -> Result<(), LedgerError> {
        let finished_at = finished.then(now);
        self.conn().execute(
            "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
            params![run, status.as_str(), finished_at],
        )?;
        Ok(())
    }

    /// The input header of a run.
    pub(crate) fn headers(&self, run: i64) -> Result<ByteRecord, LedgerError> {
        let bytes: Vec<u8> = self
            .conn()
            .query_row(
                "SELECT headers FROM runs WHERE id = ?1",
                params![run],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| LedgerError::Corrupt(format!("no run {run}")))?;
        decode_record(&bytes)
    }

    /// The options a run was started with (JSON, as given to [`Ledger::start_run`]).
    pub(crate) fn options(&self, run: i64) -> Result<String, LedgerError> {
        self.conn()
            .query_row(
                "SELECT options FROM runs WHERE id = ?1",
                params![run],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| LedgerError::Corrupt(format!("no run {run}")))
    }

    /// Records a run's rows, in chunks of one transaction each.
    pub(crate) fn insert_rows(
        &self,
        run: i64,
        rows: impl IntoIterator<Item = NewRow>,
    ) -> Result<u64, LedgerError> {
        let mut conn = self.conn();
        let mut count = 0u64;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO rows (run, row_number, line, fingerprint, lead_id, state, activity_id, error, record) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for row in rows.by_ref().take(10_000) {
                    stmt.execute(params![
                        run,
                        row.number as i64,
                        row.line as i64,
                        row.fingerprint,
                        row.lead_id,
                        row.state.as_str(),
                        row.activity_id,
                        row.error,
                        encode_record(&row.record),
                    ])?;
                    count += 1;
                }
            }
            tx.commit()?;
        }
        Ok(count)
    }

    /// Up to `limit` rows of a run after row number `after`, in row order: the report, or the
    /// send stage, walks a run in chunks so no read transaction stays open for long.
    pub(crate) fn rows(
        &self,
        run: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRow>, LedgerError> {
        self.select_rows(
            "run = ?1 AND row_number > ?2 ORDER BY row_number LIMIT ?3",
            params![run, after as i64, limit as i64],
        )
    }

    /// A run's rows in `state`, in row order.
    pub(crate) fn rows_in_state(
        &self,
        run: i64,
        state: RowState,
    ) -> Result<Vec<StoredRow>, LedgerError> {
        self.select_rows(
            "run = ?1 AND state = ?2 ORDER BY row_number",
            params![run, state.as_str()],
        )
    }

    fn select_rows(
        &self,
        condition: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredRow>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT row_number, line, record, state, activity_id, error, sent_date_time \
             FROM rows WHERE {condition}"
        ))?;
        let raw = stmt
            .query_map(values, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(
                |(number, line, record, state, activity_id, error, sent_date_time)| {
                    Ok(StoredRow {
                        number: number as u64,
                        line: line as u64,
                        record: decode_record(&record)?,
                        state: RowState::parse(&state)?,
                        activity_id,
                        error,
                        sent_date_time,
                    })
                },
            )
            .collect()
    }

    /// Rows of a run by state.
    pub(crate) fn counts(&self, run: i64) -> Result<HashMap<RowState, u64>, LedgerError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT state, COUNT(*) FROM rows WHERE run = ?1 GROUP BY state")?;
        let pairs = stmt
            .query_map(params![run], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        pairs
            .into_iter()
            .map(|(state, n)| Ok((RowState::parse(&state)?, n as u64)))
            .collect()
    }

    /// Builds the lookup indexes if this ledger does not have them yet (once per process). Call
    /// it before [`Ledger::created_ids_with_fingerprint`], and not while this thread holds the
    /// ledger's connection (an insert in progress): it needs that connection.
    pub(crate) fn ensure_lookup_indexes(&self) -> Result<(), LedgerError> {
        use std::sync::atomic::Ordering;
        if !self.indexed.load(Ordering::Acquire) {
            self.conn().execute_batch(LOOKUP_INDEXES)?;
            self.indexed.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Activity ids of rows created by other runs with this fingerprint, oldest first: what
    /// `--skip-existing` may point a row at.
    pub(crate) fn created_ids_with_fingerprint(
        &self,
        fingerprint: &str,
        except_run: i64,
    ) -> Result<Vec<String>, LedgerError> {
        let conn = self.lookup.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT activity_id FROM rows WHERE fingerprint = ?1 AND state = 'created' AND run <> ?2 \
             AND activity_id IS NOT NULL ORDER BY run, row_number",
        )?;
        let ids = stmt
            .query_map(params![fingerprint, except_run], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Every activity id the ledger attributes to a row of these leads, in any run: ids that an
    /// ambiguity resolution must not claim for another row.
    pub(crate) fn known_activity_ids(
        &self,
        leads: &[String],
    ) -> Result<HashSet<String>, LedgerError> {
        self.ensure_lookup_indexes()?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT activity_id FROM rows WHERE lead_id = ?1 AND activity_id IS NOT NULL",
        )?;
        let mut ids = HashSet::new();
        for lead in leads {
            for id in stmt.query_map(params![lead], |r| r.get::<_, String>(0))? {
                ids.insert(id?);
            }
        }
        Ok(ids)
    }

    /// `(fingerprint, state, activity_id)` of a run's rows that are created or in flight, for
    /// carrying them over into a run over a changed file (`--force`).
    pub(crate) fn settled_fingerprints(
        &self,
        run: i64,
    ) -> Result<Vec<(String, RowState, Option<String>)>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT fingerprint, state, activity_id FROM rows WHERE run = ?1 AND fingerprint IS NOT NULL \
             AND state IN ('created', 'in_flight') ORDER BY row_number",
        )?;
        let raw = stmt
            .query_map(params![run], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(fp, state, id)| Ok((fp, RowState::parse(&state)?, id)))
            .collect()
    }

    /// Calls recorded for a run: (made, still marked in flight).
    #[cfg(test)]
    pub(crate) fn call_counts(&self, run: i64) -> Result<(u64, u64), LedgerError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*), COALESCE(SUM(outcome IS NULL), 0) FROM calls WHERE run = ?1",
            params![run],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    fn send(&self, op: WriteOp) -> Result<(), LedgerError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer
            .as_ref()
            .ok_or(LedgerError::Closed)?
            .send(op)
            .map_err(|_| LedgerError::Closed)
    }

    /// Marks `rows` in flight for a call that is about to leave, durably, and returns the call's
    /// id. `fills` records the `ActivityDateTime` chosen for rows that had none.
    pub(crate) async fn begin_call(
        &self,
        run: i64,
        rows: Vec<u64>,
        fills: Vec<(u64, String)>,
    ) -> Result<i64, LedgerError> {
        let (ack, done) = oneshot::channel();
        self.send(WriteOp::BeginCall {
            run,
            rows,
            fills,
            ack,
        })?;
        done.await.map_err(|_| LedgerError::Closed)?
    }

    /// Settles rows after a call (or a resolution, `call` = None), durably.
    pub(crate) async fn settle(
        &self,
        run: i64,
        call: Option<i64>,
        outcome: impl Into<String>,
        rows: Vec<RowUpdate>,
    ) -> Result<(), LedgerError> {
        let (ack, done) = oneshot::channel();
        self.send(WriteOp::Settle {
            run,
            call,
            outcome: outcome.into(),
            rows,
            ack,
        })?;
        done.await.map_err(|_| LedgerError::Closed)?
    }

    /// Records a deletion and returns its id. Written directly (not through the writer thread):
    /// deletions are few, and each must be on disk before the next is sent.
    pub(crate) fn record_deletion(&self, record: &DeletionRecord) -> Result<i64, LedgerError> {
        let conn = self.conn();
        let at = now();
        conn.execute(
            "INSERT INTO deletions (command, source_run, lead_id, events, from_date, to_date, \
             activity_ids, status, message, queued_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            params![
                record.command,
                record.source_run,
                record.lead_id,
                record.events,
                record.from_date,
                record.to_date,
                record.activity_ids.join(","),
                record.status,
                record.message,
                at
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Sets a recorded deletion's status (after `--wait`).
    pub(crate) fn update_deletion(
        &self,
        id: i64,
        status: &str,
        message: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.conn().execute(
            "UPDATE deletions SET status = ?2, message = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, status, message, now()],
        )?;
        Ok(())
    }

    /// Every recorded deletion, oldest first.
    pub fn deletions(&self) -> Result<Vec<DeletionRecord>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, command, source_run, lead_id, events, from_date, to_date, activity_ids, \
             status, message FROM deletions ORDER BY id",
        )?;
        let records = stmt
            .query_map([], |r| {
                let ids: String = r.get(7)?;
                Ok(DeletionRecord {
                    id: r.get(0)?,
                    command: r.get(1)?,
                    source_run: r.get(2)?,
                    lead_id: r.get(3)?,
                    events: r.get(4)?,
                    from_date: r.get(5)?,
                    to_date: r.get(6)?,
                    activity_ids: ids
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    status: r.get(8)?,
                    message: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(records)
    }

    /// `sent_date_time` by activity id, for created rows of any run that lsq-sync filled a date
    /// in for: the date an undo needs when the report's input had none.
    pub(crate) fn sent_date_times(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, String>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sent_date_time FROM rows WHERE activity_id = ?1 AND sent_date_time IS NOT NULL LIMIT 1",
        )?;
        let mut dates = HashMap::new();
        for id in ids {
            if let Some(date) = stmt
                .query_row(params![id], |r| r.get::<_, String>(0))
                .optional()?
            {
                dates.insert(id.clone(), date);
            }
        }
        Ok(dates)
    }

    /// Stops the writer thread after it has committed everything queued.
    pub(crate) fn close(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self
            .writer_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.close();
    }
}

fn run_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    Ok(RunInfo {
        id: r.get(0)?,
        kind: r.get(1)?,
        input_path: r.get(2)?,
        input_hash: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        status: r.get(6)?,
    })
}

/// Group commit: take one op, then whatever else is already queued, apply all in one
/// transaction, commit, then acknowledge each. An op is acknowledged only after its commit.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<WriteOp>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 512 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = apply_all(&mut conn, &ops);
        for (op, outcome) in ops.into_iter().zip(result) {
            match op {
                WriteOp::BeginCall { ack, .. } => {
                    let _ = ack.send(outcome);
                }
                WriteOp::Settle { ack, .. } => {
                    let _ = ack.send(outcome.map(|_| ()));
                }
            }
        }
    }
}

fn apply_all(conn: &mut Connection, ops: &[WriteOp]) -> Vec<Result<i64, LedgerError>> {
    let failed_all = |e: &LedgerError| {
        ops.iter()
            .map(|_| Err(LedgerError::Sql(e.to_string())))
            .collect()
    };
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return failed_all(&e.into()),
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match apply(&tx, op) {
            Ok(value) => results.push(Ok(value)),
            Err(e) => return failed_all(&e),
        }
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => failed_all(&e.into()),
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &WriteOp) -> Result<i64, LedgerError> {
    match op {
        WriteOp::BeginCall {
            run, rows, fills, ..
        } => {
            tx.execute(
                "INSERT INTO calls (run, rows, started_at) VALUES (?1, ?2, ?3)",
                params![run, rows.len() as i64, now()],
            )?;
            let call = tx.last_insert_rowid();
            let mut mark = tx.prepare_cached(
                "UPDATE rows SET state = 'in_flight', attempts = attempts + 1, last_call = ?3 \
                 WHERE run = ?1 AND row_number = ?2",
            )?;
            for number in rows {
                mark.execute(params![run, *number as i64, call])?;
            }
            let mut fill = tx.prepare_cached(
                "UPDATE rows SET sent_date_time = ?3 WHERE run = ?1 AND row_number = ?2 AND sent_date_time IS NULL",
            )?;
            for (number, date) in fills {
                fill.execute(params![run, *number as i64, date])?;
            }
            Ok(call)
        }
        WriteOp::Settle {
            run,
            call,
            outcome,
            rows,
            ..
        } => {
            if let Some(call) = call {
                tx.execute(
                    "UPDATE calls SET finished_at = ?2, outcome = ?3 WHERE id = ?1",
                    params![call, now(), outcome],
                )?;
            }
            let mut update = tx.prepare_cached(
                "UPDATE rows SET state = ?3, activity_id = COALESCE(?4, activity_id), error = ?5 \
                 WHERE run = ?1 AND row_number = ?2",
            )?;
            for row in rows {
                update.execute(params![
                    run,
                    row.number as i64,
                    row.state.as_str(),
                    row.activity_id,
                    row.error
                ])?;
            }
            Ok(0)
        }
    }
}

/// A record as one CSV line (RFC 4180 quoting), readable with the `sqlite3` command.
pub(crate) fn encode_record(record: &ByteRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.as_slice().len() + record.len() + 2);
    if record.len() == 1 && record[0].is_empty() {
        // A lone empty field must not encode to nothing, which would decode as no field at all.
        out.extend_from_slice(b"\"\"");
        return out;
    }
    for (i, field) in record.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if field
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        {
            out.push(b'"');
            for &b in field {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(field);
        }
    }
    out
}

/// The inverse of [`encode_record`]. Hand-written rather than a `csv::Reader` per row: building
/// a reader costs more than the row itself (it was a quarter of an import's CPU), and the
/// encoding is ours, so its few rules are all there is to read.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<ByteRecord, LedgerError> {
    let corrupt = || LedgerError::Corrupt("a stored record cannot be read".to_string());
    let mut record = ByteRecord::new();
    if bytes.is_empty() {
        return Ok(record);
    }
    let mut field = Vec::new();
    let mut at = 0;
    loop {
        field.clear();
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match (bytes.get(at), bytes.get(at + 1)) {
                    (Some(b'"'), Some(b'"')) => {
                        field.push(b'"');
                        at += 2;
                    }
                    (Some(b'"'), _) => {
                        at += 1;
                        break;
                    }
                    (Some(&b), _) => {
                        field.push(b);
                        at += 1;
                    }
                    (None, _) => return Err(corrupt()),
                }
            }
        } else {
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |p| at + p);
            field.extend_from_slice(&bytes[at..end]);
            at = end;
        }
        record.push_field(&field);
        match bytes.get(at) {
            None => return Ok(record),
            Some(b',') => at += 1,
            Some(_) => return Err(corrupt()),
        }
    }
}

/// The identity of an activity, for finding the same row in another run: a hash of everything
/// that is sent (lead, code, note, owner, date, custom fields in name order).
pub(crate) fn fingerprint(item: &ActivityItem) -> String {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(item.related_prospect_id.to_ascii_lowercase().as_bytes());
    part(item.activity_event.to_string().as_bytes());
    part(item.activity_note.as_deref().unwrap_or("").as_bytes());
    part(
        item.activity_owner_email
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase()
            .as_bytes(),
    );
    part(item.activity_date_time.as_deref().unwrap_or("").as_bytes());
    let mut fields: Vec<_> = item.fields.iter().collect();
    fields.sort_by(|a, b| a.schema_name.cmp(&b.schema_name));
    for field in fields {
        part(field.schema_name.as_bytes());
        part(field.value.as_bytes());
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of everything read through it, for telling whether an input changed between runs.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: std::sync::Arc<Mutex<Sha256>>,
}

/// The finished digest of a [`HashingReader`], available once the reader is dropped or done.
#[derive(Clone)]
pub(crate) struct DigestHandle(std::sync::Arc<Mutex<Sha256>>);

impl DigestHandle {
    pub(crate) fn hex(&self) -> String {
        let hasher = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> (HashingReader<R>, DigestHandle) {
        let hasher = std::sync::Arc::new(Mutex::new(Sha256::new()));
        (
            HashingReader {
                inner,
                hasher: hasher.clone(),
            },
            DigestHandle(hasher),
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 of a file's bytes.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let (mut reader, digest) =
        HashingReader::new(std::io::BufReader::with_capacity(256 * 1024, file));
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(digest.hex())
}

#[cfg(test)]
mod tests;
