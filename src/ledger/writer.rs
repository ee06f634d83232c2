//! The ledger's writer thread: the hot-path writes of the send stage (a call begun, a call
//! settled) queue here and are committed together, one transaction for whatever has queued up
//! (group commit), so that concurrency does not turn into one fsync per call. An op is
//! acknowledged only after its commit.

use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::{LedgerError, RowUpdate, now};

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
