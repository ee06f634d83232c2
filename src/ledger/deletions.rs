//! The deletions `undo` asks for, recorded in the ledger (table `deletions`) so that a later
//! look at it tells which imported activities are gone and why.

use rusqlite::params;

use super::{Ledger, LedgerError, now};

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

impl Ledger {
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
}
