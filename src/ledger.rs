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
//!
//! This file holds the schema, opening (lock, connections) and the runs and rows; beside it:
//! [`records`] (the types it hands out), [`writer`] (the group-commit thread), [`codec`] (a
//! row's encoding, an activity's fingerprint, an input's hash), [`lookups`] (rows by content or
//! lead, across runs) and [`deletions`] (what `undo` asked LeadSquared to delete). All SQL of
//! the program is in these files.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use csv::ByteRecord;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

mod codec;
mod deletions;
mod keys;
mod lookups;
mod records;
mod writer;

pub(crate) use codec::{decode_record, encode_record, fingerprint, hash_file, hex16};
pub use deletions::DeletionRecord;
pub(crate) use keys::Classified;
pub(crate) use lookups::created_per_call;
pub(crate) use records::{
    InputRecord, KeyEntry, KnownKey, NO_INPUT_LINE, NewRow, RowAction, RowState, RowUpdate,
    RunInfo, RunStatus, StoredRow,
};
use writer::{WriteOp, write_loop};

/// Bumped when the schema changes; [`MIGRATIONS`] bring an older ledger up to it.
const SCHEMA_VERSION: i64 = 2;

/// What turns a ledger of version N into N + 1 (index 0: 1 -> 2). A ledger written by an
/// earlier lsq-sync opens in a newer one; the other way round is refused.
const MIGRATIONS: [&str; 1] = ["
ALTER TABLE rows ADD COLUMN sync_key TEXT;
ALTER TABLE rows ADD COLUMN sync_entry TEXT;
ALTER TABLE rows ADD COLUMN action TEXT;
ALTER TABLE rows ADD COLUMN target_id TEXT;
"];

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
    sync_key       TEXT,             -- keyed sync: the row's key (--key)
    sync_entry     TEXT,             -- keyed sync: what the row says of its activity (JSON)
    action         TEXT,             -- create (NULL too) | update | replace | delete
    target_id      TEXT,             -- the existing activity an update, replace or delete acts on
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
CREATE TABLE IF NOT EXISTS sync_keys (
    key         TEXT PRIMARY KEY,    -- the source's key of a row (--key)
    activity_id TEXT NOT NULL,       -- the activity lsq-sync created for it
    entry       TEXT NOT NULL,       -- lead, code, date, owner, content hash, fields (JSON)
    origin      TEXT NOT NULL,       -- sent (by a run of this ledger) | account (read back)
    run         INTEGER,             -- the run that last sent it
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;
";

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
    #[error(
        "ledger {path} holds the key map of column {held:?}, and this run is keyed by {given:?}; \
         give each keyed sync its own ledger (--ledger)"
    )]
    KeyColumn {
        path: PathBuf,
        held: String,
        given: String,
    },
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

/// An open ledger; shared by the stages of one run.
pub struct Ledger {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// A second connection for look-ups made while `conn` is busy inserting a run's rows
    /// (`--skip-existing` asks about earlier runs row by row).
    lookup: Mutex<Connection>,
    /// Whether the lookup indexes ([`Ledger::ensure_lookup_indexes`]) are known to exist.
    indexed: std::sync::atomic::AtomicBool,
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// `PRAGMA synchronous` as the durability setting asks, restored after a run's rows are
    /// recorded without it.
    sync_mode: &'static str,
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
    conn.pragma_update(None, "synchronous", sync_mode(durability))
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_error)?;
    Ok(conn)
}

/// `PRAGMA synchronous` for a durability setting.
fn sync_mode(durability: Durability) -> &'static str {
    match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    }
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
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None);
        if let Some(found) = version.map(|v| v.parse::<i64>().unwrap_or(-1))
            && found != SCHEMA_VERSION
        {
            migrate(&conn, path, found)?;
        }
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
            sync_mode: sync_mode(durability),
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
    pub(crate) fn insert_rows<R: std::borrow::Borrow<NewRow>>(
        &self,
        run: i64,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<u64, LedgerError> {
        let mut conn = self.conn();
        // A run's rows are recorded while it is `planning`, and a run killed then is discarded,
        // never resumed: these commits need not wait for the disk (the run's status change to
        // `running` afterwards does, and is ordered after them).
        conn.pragma_update(None, "synchronous", "OFF")?;
        let result = insert_all(&mut conn, run, rows);
        conn.pragma_update(None, "synchronous", self.sync_mode)?;
        result
    }
}

/// [`Ledger::insert_rows`]'s inserts, in chunks of one transaction each.
fn insert_all<R: std::borrow::Borrow<NewRow>>(
    conn: &mut Connection,
    run: i64,
    rows: impl IntoIterator<Item = R>,
) -> Result<u64, LedgerError> {
    {
        let mut count = 0u64;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO rows (run, row_number, line, fingerprint, lead_id, state, activity_id, error, record, \
                     sync_key, sync_entry, action, target_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?;
                for row in rows.by_ref().take(10_000) {
                    let row = row.borrow();
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
                        row.sync_key,
                        row.sync_entry,
                        (row.action != RowAction::Create).then(|| row.action.as_str()),
                        row.target_id,
                    ])?;
                    count += 1;
                }
            }
            tx.commit()?;
        }
        Ok(count)
    }
}

impl Ledger {
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

    /// The number of the first row of `run` after `after` still to be settled (pending or in
    /// flight), if any.
    pub(crate) fn first_unsettled(&self, run: i64, after: u64) -> Result<Option<u64>, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT row_number FROM rows WHERE run = ?1 AND row_number > ?2 \
                 AND state IN ('pending', 'in_flight') ORDER BY row_number LIMIT 1",
                params![run, after as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|n| n as u64))
    }

    /// A run's rows with these numbers, in row order.
    pub(crate) fn rows_numbered(
        &self,
        run: i64,
        numbers: &[u64],
    ) -> Result<Vec<StoredRow>, LedgerError> {
        let mut rows = Vec::with_capacity(numbers.len());
        for chunk in numbers.chunks(500) {
            let list = chunk
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            rows.extend(self.select_rows(
                &format!("run = ?1 AND row_number IN ({list}) ORDER BY row_number"),
                params![run],
            )?);
        }
        rows.sort_by_key(|r| r.number);
        Ok(rows)
    }

    /// Up to `limit` rows of a run after row number `after` still to be settled (pending or in
    /// flight), in row order.
    pub(crate) fn unsettled_rows(
        &self,
        run: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRow>, LedgerError> {
        self.select_rows(
            "run = ?1 AND row_number > ?2 AND state IN ('pending', 'in_flight') \
             ORDER BY row_number LIMIT ?3",
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
            "SELECT row_number, line, record, state, activity_id, error, sent_date_time, action, \
             target_id, sync_key FROM rows WHERE {condition}"
        ))?;
        let raw = stmt
            .query_map(values, |r| {
                Ok(RawRow {
                    number: r.get(0)?,
                    line: r.get(1)?,
                    record: r.get(2)?,
                    state: r.get(3)?,
                    activity_id: r.get(4)?,
                    error: r.get(5)?,
                    sent_date_time: r.get(6)?,
                    action: r.get(7)?,
                    target_id: r.get(8)?,
                    sync_key: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|raw| {
                Ok(StoredRow {
                    number: raw.number as u64,
                    line: raw.line as u64,
                    record: decode_record(&raw.record)?,
                    state: RowState::parse(&raw.state)?,
                    activity_id: raw.activity_id,
                    error: raw.error,
                    sent_date_time: raw.sent_date_time,
                    action: RowAction::parse(raw.action.as_deref())?,
                    target_id: raw.target_id,
                    sync_key: raw.sync_key,
                })
            })
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

/// A row as SQLite hands it over, before its fields are decoded.
struct RawRow {
    number: i64,
    line: i64,
    record: Vec<u8>,
    state: String,
    activity_id: Option<String>,
    error: Option<String>,
    sent_date_time: Option<String>,
    action: Option<String>,
    target_id: Option<String>,
    sync_key: Option<String>,
}

/// Brings a ledger of schema `found` up to [`SCHEMA_VERSION`], in one transaction; refuses a
/// newer (or unreadable) one.
fn migrate(conn: &Connection, path: &Path, found: i64) -> Result<(), LedgerError> {
    let refuse = || LedgerError::Version {
        path: path.to_path_buf(),
        found,
    };
    if !(1..SCHEMA_VERSION).contains(&found) {
        return Err(refuse());
    }
    let mut script = String::from("BEGIN IMMEDIATE;");
    for step in &MIGRATIONS[(found - 1) as usize..] {
        script.push_str(step);
    }
    script.push_str(&format!(
        "UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'; COMMIT;"
    ));
    conn.execute_batch(&script).map_err(|e| LedgerError::Open {
        path: path.to_path_buf(),
        message: format!("cannot bring the ledger from schema {found} to {SCHEMA_VERSION}: {e}"),
    })
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

#[cfg(test)]
mod tests;
