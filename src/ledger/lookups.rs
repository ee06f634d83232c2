//! Looking rows up by content or by lead, across runs: what `--skip-existing`, `--force` and the
//! check of an unknown outcome need, with the indexes they need built on first use.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::params;

use super::{Ledger, LedgerError, RowState};

/// Indexes for looking rows up by content or by lead, built the first time such a lookup is
/// needed (`--skip-existing`, `--force`, an ambiguous outcome), not with the schema. Both are
/// keyed by random values (hashes, GUIDs), so keeping them up to date costs a random page read
/// and write per row: with them, the ledger was half of a million-row import's time, for
/// lookups that most runs never make.
const LOOKUP_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS rows_by_fingerprint ON rows(fingerprint) WHERE state = 'created';
CREATE INDEX IF NOT EXISTS rows_by_lead ON rows(lead_id) WHERE activity_id IS NOT NULL;
";

impl Ledger {
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
}

/// When each call of run `run` that created rows came back (its end, else its start, as
/// recorded) and how many rows it created, read from the ledger file at `path` without opening
/// it as a [`Ledger`] (read-only, no lock: the run may still hold it). The error is SQLite's
/// message.
pub(crate) fn created_per_call(path: &Path, run: i64) -> Result<Vec<(String, u64)>, String> {
    let read = || -> rusqlite::Result<Vec<(String, u64)>> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut stmt = conn.prepare(
            "SELECT COALESCE(c.finished_at, c.started_at), COUNT(*) FROM rows r \
             JOIN calls c ON c.id = r.last_call \
             WHERE r.run = ?1 AND r.state = 'created' GROUP BY c.id",
        )?;
        stmt.query_map([run], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect()
    };
    read().map_err(|e| e.to_string())
}
