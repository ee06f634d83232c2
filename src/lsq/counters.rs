//! The run's live counters of API calls: every call of the run, through [`crate::lsq::calls::Api`],
//! the outage probe and the send stage, counts here (atomics, no locks on the hot path); the
//! run's summary reads them at the end.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of a run.
#[derive(Debug, Default)]
pub(crate) struct RunStats {
    /// HTTP calls made, retries included.
    pub calls: AtomicU64,
    /// Calls answered with a rate-limit error (HTTP 429 or the HTTP 200 body).
    pub rate_limited: AtomicU64,
    /// Calls that were second or later attempts.
    pub retries: AtomicU64,
    /// Calls whose outcome was unknown (timeout, dropped connection, 5xx): checked with Get
    /// Activities before anything was re-sent.
    pub ambiguous: AtomicU64,
    /// Rows such a check found already created (each would have been a duplicate).
    pub recovered: AtomicU64,
    /// Calls made by splitting batches that the server refused as a whole, to isolate bad rows.
    pub isolation_calls: AtomicU64,
    /// Get Activities calls (checks of unknown outcomes, and resumes checking what a killed run
    /// left in flight).
    pub lookup_calls: AtomicU64,
    /// Account-wide reads (Get Activities by Activity Event), retries included: exports by
    /// code, the keyed sync's key map rebuilt from the account, and whatever else reads an
    /// account without a list of leads, except checks (`check_reads`).
    pub reads: AtomicU64,
    /// Account-wide reads (Get Activities by Activity Event) made by checks of unknown
    /// outcomes, retries included: the other half of what certainty cost, beside
    /// `lookup_calls`.
    pub check_reads: AtomicU64,
    /// Calls made only to learn whether the API is back during an outage.
    pub probes: AtomicU64,
    /// Bulk calls whose in-flight record took too long to commit after the permit, and which
    /// waited for a fresh permit so that arrivals stay paced.
    pub late_permits: AtomicU64,
}

impl RunStats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
