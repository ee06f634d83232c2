//! Batch stage: checked rows in, in file order; [`Batch`]es out, each holding at most
//! `batch_size` valid rows for one bulk call.
//!
//! Rows that are not to be sent (invalid, or settled by an earlier run) ride along in the batch
//! where they appear instead of taking a separate path, so every batch covers a contiguous run
//! of input rows. That keeps the report in input order with a
//! reorder buffer no larger than the batches in flight, however the invalid rows are spread.
//!
//! A keyed sync sends two kinds of bulk call (adds and updates), each full: it feeds one
//! batcher per kind, and writes its report from the ledger instead (see `run`).

use crate::input::rows::SourceRow;
use crate::lsq::api::{ActivityItem, UpdateItem};
use crate::report::RowOutcome;

/// What is to be done with a row.
#[derive(Debug, Clone)]
pub enum RowWork {
    /// Post this activity. `filled_date` is set when lsq-sync chose the `ActivityDateTime`
    /// (the row had none), so the ledger can record it and a re-send is identical.
    Send {
        item: ActivityItem,
        filled_date: Option<String>,
    },
    /// Keyed sync: update the key's activity in place with this (Bulk Update).
    Update { item: UpdateItem },
    /// Nothing to send: the row's outcome is already known (invalid, or settled earlier).
    Done(RowOutcome),
}

/// One input row and what is to be done with it.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub source: SourceRow,
    pub work: RowWork,
}

impl BatchRow {
    pub(crate) fn is_sendable(&self) -> bool {
        !matches!(self.work, RowWork::Done(_))
    }
}

/// A contiguous run of input rows; the valid ones go out in one bulk call.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position of this batch in the input, from 0; the report writes batches in this order.
    pub seq: u64,
    pub rows: Vec<BatchRow>,
}

impl Batch {
    /// The activities to post, in row order.
    pub fn items(&self) -> Vec<&ActivityItem> {
        self.rows
            .iter()
            .filter_map(|r| match &r.work {
                RowWork::Send { item, .. } => Some(item),
                RowWork::Update { .. } | RowWork::Done(_) => None,
            })
            .collect()
    }

    /// Rows this batch will send.
    pub fn valid_count(&self) -> usize {
        self.rows.iter().filter(|r| r.is_sendable()).count()
    }
}

/// Groups rows into batches. Pure: the pipeline feeds it and forwards what it returns.
pub struct Batcher {
    batch_size: usize,
    /// Caps the rows (mostly invalid ones) a batch may hold, so a long run of invalid rows
    /// cannot make one batch, and the memory behind it, grow without bound.
    max_rows: usize,
    rows: Vec<BatchRow>,
    valid: usize,
    next_seq: u64,
}

impl Batcher {
    /// Rows a batch may carry in all, valid or not.
    pub(crate) const MAX_ROWS: usize = 1000;

    pub fn new(batch_size: usize) -> Batcher {
        Batcher {
            batch_size: batch_size.max(1),
            max_rows: Self::MAX_ROWS.max(batch_size),
            rows: Vec::new(),
            valid: 0,
            next_seq: 0,
        }
    }

    /// Adds a row; returns a batch when this row completes one.
    pub fn push(&mut self, row: BatchRow) -> Option<Batch> {
        self.valid += usize::from(row.is_sendable());
        self.rows.push(row);
        if self.valid >= self.batch_size || self.rows.len() >= self.max_rows {
            self.take()
        } else {
            None
        }
    }

    /// The last, partial batch, if any rows are left.
    pub fn finish(&mut self) -> Option<Batch> {
        self.take()
    }

    fn take(&mut self) -> Option<Batch> {
        if self.rows.is_empty() {
            return None;
        }
        let batch = Batch {
            seq: self.next_seq,
            rows: std::mem::take(&mut self.rows),
        };
        self.next_seq += 1;
        self.valid = 0;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csv::ByteRecord;

    fn row(number: u64, valid: bool) -> BatchRow {
        BatchRow {
            source: SourceRow {
                number,
                line: number + 1,
                record: ByteRecord::new(),
            },
            work: if valid {
                RowWork::Send {
                    item: ActivityItem {
                        related_prospect_id: "x".into(),
                        activity_event: 201,
                        activity_note: None,
                        activity_owner_email: None,
                        activity_date_time: None,
                        fields: vec![],
                    },
                    filled_date: None,
                }
            } else {
                RowWork::Done(RowOutcome::invalid("bad"))
            },
        }
    }

    fn run(batcher: &mut Batcher, rows: impl IntoIterator<Item = BatchRow>) -> Vec<Batch> {
        let mut out: Vec<Batch> = rows.into_iter().filter_map(|r| batcher.push(r)).collect();
        out.extend(batcher.finish());
        out
    }

    #[test]
    fn batches_hold_at_most_batch_size_valid_rows_and_cover_every_row_in_order() {
        let mut b = Batcher::new(25);
        let rows = (1..=1000).map(|n| row(n, n % 7 != 0));
        let batches = run(&mut b, rows);
        let numbers: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.source.number))
            .collect();
        assert_eq!(numbers, (1..=1000).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.valid_count() <= 25));
        assert!(
            batches[..batches.len() - 1]
                .iter()
                .all(|b| b.valid_count() == 25)
        );
        let seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, (0..batches.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_long_run_of_invalid_rows_is_cut_into_bounded_batches() {
        let mut b = Batcher::new(25);
        let batches = run(&mut b, (1..=2500).map(|n| row(n, false)));
        assert_eq!(batches.len(), 3);
        assert!(
            batches
                .iter()
                .all(|b| b.rows.len() <= Batcher::MAX_ROWS && b.valid_count() == 0)
        );
    }

    #[test]
    fn nothing_in_nothing_out() {
        let mut b = Batcher::new(25);
        assert!(b.finish().is_none());
    }
}
