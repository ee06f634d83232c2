//! Deletion stage of a keyed sync: the activities of keys the input lacks (`--delete-missing`)
//! and the old activities of moved rows (`--replace-changed`) are deleted before anything is
//! created, with the same ledger discipline as the bulk calls: a lead's rows are marked in
//! flight before its deletion leaves and settled after.
//!
//! The rows enter from the ledger (pending, action delete or replace), grouped by the lead and
//! code of the activity to delete; each group goes to a [`Deleter`], which deletes with
//! surgical windows as `undo` does (the API deletes by lead, code and time window, never by
//! id, so a window must hold nothing the tool did not create). The deleter is handed in by the
//! command (it is `ops`'s undo planner, a layer above this one). What leaves: deleted rows
//! settled `deleted`; replaced rows turned into plain creates, sent by the send stage once any
//! deletion that could take the new activity with it has shown.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use tracing::{info, warn};

use crate::abort::{Abort, Interrupt};
use crate::ledger::{KeyEntry, Ledger, LedgerError, RowAction, RowState, RowUpdate, StoredRow};
use crate::lsq::calls::Api;

/// One activity to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeleteTarget {
    /// The row that deletes it.
    pub number: u64,
    /// Its id, lowercase.
    pub id: String,
}

/// What became of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Its deletion is queued (the server's message).
    Queued(String),
    /// It is not there any more.
    Gone,
    /// It shares its second with an activity the tool did not create, so no window can take it
    /// alone; it stays (why).
    Kept(String),
    /// The deletion failed or its outcome is unknown (why); it may still be there.
    Failed(String),
    /// Nothing more can succeed (keys refused, wrong host).
    Abort(String),
}

/// Deletes activities of one lead and code without touching any other: what the deletion stage
/// needs from `ops` (see [`crate::ops::mirror`]), every call through the run's `api`.
pub(crate) trait Deleter: Send + Sync {
    /// Deletes `targets`, all of `lead` and `code`; one answer per target, in order.
    fn delete<'a>(
        &'a self,
        api: &'a Api,
        lead: &'a str,
        code: i64,
        targets: &'a [DeleteTarget],
    ) -> BoxFuture<'a, Vec<Deleted>>;

    /// Waits (bounded) until none of `ids` of `lead` and `code` is listed any more: `Ok(true)`
    /// when that showed, `Ok(false)` when the time ran out.
    fn wait_gone<'a>(
        &'a self,
        api: &'a Api,
        lead: &'a str,
        code: i64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// Why the deletion stage could not go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeletionError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the deletion stage did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeletionTally {
    pub deleted: u64,
    pub replaced: u64,
    pub failed: u64,
}

/// A pending row with something to delete: its own activity (a missing key's), or the one it
/// replaces.
struct Doomed {
    row: StoredRow,
    /// The activity's lead and code, from the key map.
    lead: String,
    code: i64,
    /// For a replace: where the new activity goes, to tell whether the queued deletion could
    /// take it too.
    new: Option<KeyEntry>,
}

/// Deletes what the run's pending delete and replace rows name. Rows left pending are those
/// the run did not reach (stopped); the send stage reports them as not sent.
pub(crate) async fn run_deletions(
    ledger: &Ledger,
    run: i64,
    api: &Api,
    deleter: Option<&dyn Deleter>,
    abort: &Abort,
    interrupt: &Interrupt,
) -> Result<DeletionTally, DeletionError> {
    let mut tally = DeletionTally::default();
    let doomed = doomed_rows(ledger, run)?;
    if doomed.is_empty() {
        return Ok(tally);
    }
    let Some(deleter) = deleter else {
        return Err(DeletionError::Internal(
            "this run has activities to delete and no way to delete them".into(),
        ));
    };
    let mut groups: BTreeMap<(String, i64), Vec<Doomed>> = BTreeMap::new();
    for d in doomed {
        groups.entry((d.lead.clone(), d.code)).or_default().push(d);
    }
    info!(
        groups = groups.len(),
        "deleting the activities of keys the input lacks and of moved rows"
    );
    // Replaced rows whose new activity lands in a lead and code a deletion was queued for: they
    // are created only once that deletion shows, or it could take them too.
    let mut waits: Vec<(String, i64, Vec<String>, Vec<u64>)> = Vec::new();
    for ((lead, code), rows) in groups {
        if abort.reason().is_some() || interrupt.flag().reason().is_some() {
            break;
        }
        let numbers = rows.iter().map(|d| d.row.number).collect();
        let call = ledger.begin_call(run, numbers, Vec::new()).await?;
        let targets: Vec<DeleteTarget> = rows
            .iter()
            .map(|d| DeleteTarget {
                number: d.row.number,
                id: d
                    .row
                    .target_id
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
            })
            .collect();
        let answers = deleter.delete(api, &lead, code, &targets).await;
        let mut updates = Vec::with_capacity(rows.len());
        let mut queued_ids = Vec::new();
        let mut waiting = Vec::new();
        for (d, answer) in rows.iter().zip(answers) {
            let id = d.row.target_id.clone();
            let replace = d.row.action == RowAction::Replace;
            let update = match answer {
                Deleted::Queued(_) | Deleted::Gone if replace => {
                    tally.replaced += 1;
                    let lands_here = d
                        .new
                        .as_ref()
                        .is_some_and(|new| new.lead == lead && new.event == code);
                    if matches!(answer, Deleted::Queued(_)) && lands_here {
                        waiting.push(d.row.number);
                    }
                    RowUpdate {
                        old_deleted: true,
                        ..RowUpdate::new(d.row.number, RowState::Pending, None, None)
                    }
                }
                Deleted::Queued(_) | Deleted::Gone => {
                    tally.deleted += 1;
                    RowUpdate::new(d.row.number, RowState::Deleted, id, None)
                }
                Deleted::Kept(why) if replace => {
                    tally.failed += 1;
                    RowUpdate::new(
                        d.row.number,
                        RowState::Conflict,
                        id,
                        Some(format!(
                            "the old activity cannot be deleted: {why}; nothing was sent"
                        )),
                    )
                }
                Deleted::Kept(why) | Deleted::Failed(why) => {
                    tally.failed += 1;
                    RowUpdate::new(d.row.number, RowState::Failed, None, Some(why))
                }
                Deleted::Abort(why) => {
                    abort.trigger(why.clone());
                    RowUpdate::new(d.row.number, RowState::Pending, None, None)
                }
            };
            if matches!(update.state, RowState::Deleted) || update.old_deleted {
                queued_ids.push(d.row.target_id.clone().unwrap_or_default());
            }
            updates.push(update);
        }
        ledger.settle(run, Some(call), "deletion", updates).await?;
        if !waiting.is_empty() {
            waits.push((lead, code, queued_ids, waiting));
        }
    }
    for (lead, code, ids, numbers) in waits {
        let why = match deleter.wait_gone(api, &lead, code, &ids).await {
            Ok(true) => continue,
            Ok(false) => "the old activity's deletion has not shown yet, and the new one would \
                          fall in its window; it is created by the next run"
                .to_string(),
            Err(e) => format!("cannot tell whether the old activity's deletion shows: {e}"),
        };
        warn!(lead = %lead, code, rows = numbers.len(), "{why}");
        let updates = numbers
            .into_iter()
            .map(|n| RowUpdate::new(n, RowState::Failed, None, Some(why.clone())))
            .collect();
        ledger.settle(run, None, "replace waited", updates).await?;
    }
    Ok(tally)
}

/// The run's pending rows that delete something, with the lead and code of what they delete.
fn doomed_rows(ledger: &Ledger, run: i64) -> Result<Vec<Doomed>, DeletionError> {
    let mut doomed = Vec::new();
    for row in ledger.rows_in_state(run, RowState::Pending)? {
        let deletes =
            matches!(row.action, RowAction::Delete | RowAction::Replace) && row.target_id.is_some();
        if !deletes {
            continue;
        }
        // A missing key's row holds the key map's entry of the activity it deletes; a
        // replaced row holds its own new entry, and the old activity's is in the key map.
        let own = ledger.sync_entry(run, row.number)?;
        let (old, new) = match row.action {
            RowAction::Replace => {
                let key = row.sync_key.clone().unwrap_or_default();
                (ledger.known_key(&key)?.map(|k| k.entry), own)
            }
            _ => (own, None),
        };
        let Some(old) = old else {
            return Err(DeletionError::Internal(format!(
                "row {}: the activity it deletes is not in the ledger",
                row.number
            )));
        };
        doomed.push(Doomed {
            lead: old.lead,
            code: old.event,
            new,
            row,
        });
    }
    Ok(doomed)
}
