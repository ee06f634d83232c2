//! The key map of a keyed sync (`--key`): which activity each of the source's keys became, and
//! what it was last sent as (or read back from the account as), so that the next run can tell a
//! new row from an edited one from one that has not changed.
//!
//! Entries enter when a keyed row settles as created or updated (the writer thread maintains
//! them in the same transaction as the row, see `writer.rs`), or from the account itself
//! ([`Ledger::add_account_keys`], when a run rebuilds the map with `--key-field`); they leave
//! when their activity is deleted. A run's classification reads its rows beside the entries of
//! their keys ([`Ledger::keyed_rows`]) and records what each row is to become
//! ([`Ledger::classify`]). One ledger holds the key map of one key column
//! ([`Ledger::claim_key_column`]).

use rusqlite::{OptionalExtension, params};

use super::{KeyEntry, KnownKey, Ledger, LedgerError, RowAction, RowState, now};

/// What classification decided for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    /// The row's number in the run.
    pub number: u64,
    /// `Pending` to send it; otherwise settled now (`unchanged`, `conflict`, `invalid`).
    pub state: RowState,
    /// The call that sends it.
    pub action: RowAction,
    /// The existing activity an update, replace or delete acts on.
    pub target_id: Option<String>,
    /// The id the report shows for a row settled now.
    pub activity_id: Option<String>,
    /// Why, for a conflict or an invalid row.
    pub error: Option<String>,
}

/// A keyed row of a run waiting to be classified, beside what the key map knows of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyedRow {
    pub number: u64,
    pub key: String,
    /// What the row says of its key's activity.
    pub entry: KeyEntry,
    /// The key map's entry for the key, if it has one.
    pub known: Option<KnownKey>,
}

fn parse_entry(json: &str) -> Result<KeyEntry, LedgerError> {
    serde_json::from_str(json)
        .map_err(|e| LedgerError::Corrupt(format!("unreadable key entry {json:?}: {e}")))
}

/// The key map, read in one transaction on a connection of its own
/// ([`Ledger::key_map_reader`]); ends it when dropped. Behind a mutex so that the planning
/// thread that reads the rows can hold it (it is never contended).
pub(crate) struct KeyMapReader {
    conn: std::sync::Mutex<rusqlite::Connection>,
}

impl KeyMapReader {
    /// The activity `key` maps to, if the map holds it.
    pub(crate) fn get(&self, key: &str) -> Result<Option<KnownKey>, LedgerError> {
        known_key_on(&self.conn.lock().unwrap_or_else(|e| e.into_inner()), key)
    }
}

impl Drop for KeyMapReader {
    fn drop(&mut self) {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let _ = conn.execute_batch("COMMIT");
    }
}

/// The key map's entry for `key`, read on `conn`.
fn known_key_on(conn: &rusqlite::Connection, key: &str) -> Result<Option<KnownKey>, LedgerError> {
    let raw: Option<(String, String)> = conn
        .prepare_cached("SELECT activity_id, entry FROM sync_keys WHERE key = ?1")?
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    raw.map(|(activity_id, entry)| {
        Ok(KnownKey {
            key: key.to_string(),
            activity_id,
            entry: parse_entry(&entry)?,
        })
    })
    .transpose()
}

/// `meta` key naming the input column whose keys the map holds.
const KEY_COLUMN: &str = "sync_key_column";
/// `meta` key, followed by an activity code: every activity of that code modified on the
/// account after this time (UTC, the API's format) that carries a key has been read into the
/// map (`--key-field`).
const READ_THROUGH: &str = "sync_read_through:";

impl Ledger {
    /// Makes this ledger the key map of `column` (compared without case): the first keyed run
    /// claims it; a run keyed by another column is refused, since its keys would be taken for
    /// this column's (and `--delete-missing` would delete every one of them).
    pub(crate) fn claim_key_column(&self, column: &str) -> Result<(), LedgerError> {
        match self.meta(KEY_COLUMN)? {
            Some(held) if !held.eq_ignore_ascii_case(column) => Err(LedgerError::KeyColumn {
                path: self.path.clone(),
                held,
                given: column.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.conn().execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![KEY_COLUMN, column],
                )?;
                Ok(())
            }
        }
    }

    /// How many keys the map holds.
    pub(crate) fn known_key_count(&self) -> Result<u64, LedgerError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM sync_keys", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Up to `limit` keyed rows of `run` to be created (valid, with an entry), after row
    /// `after`, in row order, each beside the key map's entry for its key (which it did not
    /// have when the row was classified, unless the map has learnt it since).
    pub(crate) fn keyed_rows(
        &self,
        run: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<KeyedRow>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.row_number, r.sync_key, r.sync_entry, k.activity_id, k.entry \
             FROM rows r LEFT JOIN sync_keys k ON k.key = r.sync_key \
             WHERE r.run = ?1 AND r.row_number > ?2 AND r.state = 'pending' \
             AND r.action IS NULL AND r.sync_entry IS NOT NULL ORDER BY r.row_number LIMIT ?3",
        )?;
        let raw = stmt
            .query_map(params![run, after as i64, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(number, key, entry, known_id, known_entry)| {
                let known = match (known_id, known_entry) {
                    (Some(activity_id), Some(entry)) => Some(KnownKey {
                        key: key.clone(),
                        activity_id,
                        entry: parse_entry(&entry)?,
                    }),
                    _ => None,
                };
                Ok(KeyedRow {
                    number,
                    key,
                    entry: parse_entry(&entry)?,
                    known,
                })
            })
            .collect()
    }

    /// Records what classification decided for rows of `run`, in one transaction.
    pub(crate) fn classify(&self, run: i64, rows: &[Classified]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE rows SET state = ?3, action = ?4, target_id = ?5, activity_id = ?6, \
                 error = ?7 WHERE run = ?1 AND row_number = ?2",
            )?;
            for row in rows {
                stmt.execute(params![
                    run,
                    row.number as i64,
                    row.state.as_str(),
                    (row.action != RowAction::Create).then(|| row.action.as_str()),
                    row.target_id,
                    row.activity_id,
                    row.error,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The highest row number of `run` (0 for none).
    pub(crate) fn last_row_number(&self, run: i64) -> Result<u64, LedgerError> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(row_number), 0) FROM rows WHERE run = ?1",
            params![run],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Every key of the map for which `wanted` says yes (it sees the key only; the entry is
    /// read for the keys it wants), in key order.
    pub(crate) fn known_keys_where(
        &self,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<Vec<KnownKey>, LedgerError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT key, activity_id, entry FROM sync_keys ORDER BY key")?;
        let mut rows = stmt.query([])?;
        let mut keys = Vec::new();
        while let Some(r) = rows.next()? {
            let key: String = r.get(0)?;
            if wanted(&key) {
                keys.push(KnownKey {
                    key,
                    activity_id: r.get(1)?,
                    entry: parse_entry(&r.get::<_, String>(2)?)?,
                });
            }
        }
        Ok(keys)
    }

    /// The key of row `number` of `run`, if it has one.
    pub(crate) fn row_key(&self, run: i64, number: u64) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT sync_key FROM rows WHERE run = ?1 AND row_number = ?2",
                params![run, number as i64],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Adds keys read back from the account for keys the map does not hold yet (what this
    /// ledger sent itself stays as sent); returns how many were added.
    pub(crate) fn add_account_keys(&self, keys: &[KnownKey]) -> Result<u64, LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO sync_keys (key, activity_id, entry, origin, run, updated_at) \
                 VALUES (?1, ?2, ?3, 'account', NULL, ?4) ON CONFLICT(key) DO NOTHING",
            )?;
            let at = now();
            for known in keys {
                let entry = serde_json::to_string(&known.entry)
                    .map_err(|e| LedgerError::Sql(e.to_string()))?;
                added += stmt.execute(params![known.key, known.activity_id, entry, at])? as u64;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// A reader of the key map for a run's planning: one read transaction on the lookup
    /// connection for every key asked (not one each, which costs file locks and cache checks
    /// per row), while the main connection inserts the run's rows. The map does not change
    /// while a run is planned.
    pub(crate) fn key_map_reader(&self) -> Result<KeyMapReader, LedgerError> {
        let conn = super::open_connection(&self.path, super::Durability::Normal)?;
        conn.execute_batch("BEGIN DEFERRED")?;
        Ok(KeyMapReader {
            conn: std::sync::Mutex::new(conn),
        })
    }

    /// The activity a key maps to, if the map holds it. Asked on the lookup connection, so
    /// that planning can ask while it holds the main one inserting the run's rows.
    pub(crate) fn known_key(&self, key: &str) -> Result<Option<KnownKey>, LedgerError> {
        known_key_on(&self.lookup.lock().unwrap_or_else(|e| e.into_inner()), key)
    }

    /// What row `number` of `run` says of its key's activity (for a row deleting a missing
    /// key, the key map's entry of that activity), if it is a keyed row.
    pub(crate) fn sync_entry(
        &self,
        run: i64,
        number: u64,
    ) -> Result<Option<KeyEntry>, LedgerError> {
        let json: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT sync_entry FROM rows WHERE run = ?1 AND row_number = ?2",
                params![run, number as i64],
                |r| r.get(0),
            )
            .optional()?;
        json.flatten().map(|j| parse_entry(&j)).transpose()
    }

    /// When the earliest call still carrying rows of `run` in flight left (UTC, to the
    /// second), if any: what a killed run's updates could have changed on the account since.
    pub(crate) fn in_flight_since(&self, run: i64) -> Result<Option<String>, LedgerError> {
        let at: Option<String> = self.conn().query_row(
            "SELECT MIN(c.started_at) FROM rows r JOIN calls c ON c.id = r.last_call \
             WHERE r.run = ?1 AND r.state = 'in_flight'",
            params![run],
            |r| r.get(0),
        )?;
        Ok(at.map(|t| t.chars().take(19).collect()))
    }

    /// A consistent copy of the whole ledger at `path` (which must not exist): what a keyed
    /// dry run plans in, so that nothing it does reaches the real ledger.
    pub(crate) fn copy_to(&self, path: &std::path::Path) -> Result<(), LedgerError> {
        self.conn()
            .execute("VACUUM INTO ?1", params![path.display().to_string()])?;
        Ok(())
    }

    /// The time through which the account's keyed activities of `code` have been read into
    /// the map (`--key-field`); `None` if they never were.
    pub(crate) fn keys_read_through(&self, code: i64) -> Result<Option<String>, LedgerError> {
        self.meta(&format!("{READ_THROUGH}{code}"))
    }

    /// A `meta` value.
    fn meta(&self, key: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Records that the account's keyed activities of `code` modified up to `at` are in the
    /// map.
    pub(crate) fn set_keys_read_through(&self, code: i64, at: &str) -> Result<(), LedgerError> {
        self.conn().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![format!("{READ_THROUGH}{code}"), at],
        )?;
        Ok(())
    }

    /// Keyed rows of `run` (valid, with an entry) whose key the map does not hold.
    pub(crate) fn unknown_keys(&self, run: i64) -> Result<u64, LedgerError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM rows r WHERE r.run = ?1 AND r.sync_entry IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM sync_keys k WHERE k.key = r.sync_key)",
            params![run],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// The activity codes of `run`'s keyed rows, in order.
    pub(crate) fn keyed_events(&self, run: i64) -> Result<Vec<i64>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT CAST(json_extract(sync_entry, '$.event') AS INTEGER) AS code \
             FROM rows WHERE run = ?1 AND sync_entry IS NOT NULL ORDER BY code",
        )?;
        let codes = stmt
            .query_map(params![run], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(codes)
    }
}
