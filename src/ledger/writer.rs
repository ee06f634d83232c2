//! The ledger's writer thread: the hot-path writes of the send stage (a call begun, a call
//! settled) queue here and are committed together, one transaction for whatever has queued up
//! (group commit), so that concurrency does not turn into one fsync per call. An op is
//! acknowledged only after its commit.

use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{LedgerError, RowState, RowUpdate, now};

pub(super) enum WriteOp {
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

/// Group commit: take one op, then whatever else is already queued, apply all in one
/// transaction, commit, then acknowledge each. An op is acknowledged only after its commit.
pub(super) fn write_loop(mut conn: Connection, rx: mpsc::Receiver<WriteOp>) {
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
                 WHERE run = ?1 AND row_number = ?2 RETURNING sync_key",
            )?;
            for row in rows {
                let key: Option<Option<String>> = update
                    .query_row(
                        params![
                            run,
                            row.number as i64,
                            row.state.as_str(),
                            row.activity_id,
                            row.error
                        ],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(Some(_)) = key {
                    keep_key_map(tx, *run, row)?;
                }
            }
            Ok(0)
        }
    }
}

/// The key map follows a keyed row as it settles, in the same transaction: a created or updated
/// row's key maps to its activity as now sent; a deleted row's key, or a replaced row's old
/// activity (now queued for deletion), leaves the map.
fn keep_key_map(
    tx: &rusqlite::Transaction<'_>,
    run: i64,
    row: &RowUpdate,
) -> Result<(), LedgerError> {
    let number = row.number as i64;
    match row.state {
        RowState::Created | RowState::Updated => {
            tx.prepare_cached(
                "INSERT INTO sync_keys (key, activity_id, entry, origin, run, updated_at) \
                 SELECT sync_key, activity_id, sync_entry, 'sent', run, ?3 FROM rows \
                 WHERE run = ?1 AND row_number = ?2 AND sync_entry IS NOT NULL \
                 AND activity_id IS NOT NULL \
                 ON CONFLICT(key) DO UPDATE SET activity_id = excluded.activity_id, \
                 entry = excluded.entry, origin = 'sent', run = excluded.run, \
                 updated_at = excluded.updated_at",
            )?
            .execute(params![run, number, now()])?;
        }
        RowState::Deleted => {
            forget_target(tx, run, number)?;
        }
        _ if row.old_deleted => {
            forget_target(tx, run, number)?;
            tx.prepare_cached(
                "UPDATE rows SET action = NULL, target_id = NULL WHERE run = ?1 AND row_number = ?2",
            )?
            .execute(params![run, number])?;
        }
        _ => {}
    }
    Ok(())
}

/// Removes the row's key from the map, if it still maps to the row's target (the activity
/// deleted).
fn forget_target(tx: &rusqlite::Transaction<'_>, run: i64, number: i64) -> Result<(), LedgerError> {
    tx.prepare_cached(
        "DELETE FROM sync_keys WHERE (key, activity_id) IN \
         (SELECT sync_key, target_id FROM rows WHERE run = ?1 AND row_number = ?2)",
    )?
    .execute(params![run, number])?;
    Ok(())
}
