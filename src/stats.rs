//! Run counters and the end-of-run summary.
//!
//! [`RunStats`] is shared by the stages (atomics, no locks on the hot path); [`RunSummary`] is
//! the frozen picture at the end, rendered for a person on stderr and mapped to an exit code.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::exit::ExitStatus;
use crate::report::StatusCounts;

/// Live counters of a run.
#[derive(Debug, Default)]
pub struct RunStats {
    /// HTTP calls made, retries included.
    pub calls: AtomicU64,
    /// Calls answered with a rate-limit error (HTTP 429 or the HTTP 200 body).
    pub rate_limited: AtomicU64,
    /// Calls that were second or later attempts.
    pub retries: AtomicU64,
}

impl RunStats {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a finished (or aborted) import did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Data rows read from the input.
    pub rows: u64,
    pub counts: StatusCounts,
    pub calls: u64,
    pub rate_limited: u64,
    pub retries: u64,
    pub elapsed: Duration,
    /// Why the run stopped early, when it did.
    pub aborted: Option<String>,
}

impl RunSummary {
    /// 0 all created, 1 some rows failed or invalid, 3 aborted.
    pub fn exit_status(&self) -> ExitStatus {
        if self.aborted.is_some() {
            ExitStatus::Aborted
        } else if self.counts.failed + self.counts.invalid > 0 {
            ExitStatus::RowsNotCreated
        } else {
            ExitStatus::Success
        }
    }

    pub fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows as f64 / secs
        } else {
            0.0
        }
    }

    /// The last line, for cron mail and CI logs.
    pub fn status_line(&self) -> String {
        let c = &self.counts;
        match (&self.aborted, self.exit_status()) {
            (Some(reason), _) => format!(
                "ABORTED: {reason}; {} of {} rows created before the stop",
                c.created, self.rows
            ),
            (None, ExitStatus::Success) => format!("OK: all {} rows created", self.rows),
            _ => format!(
                "DONE WITH ERRORS: {} of {} rows created, {} failed, {} invalid",
                c.created, self.rows, c.failed, c.invalid
            ),
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "rows read {}: created {}, failed {}, invalid {}",
            self.rows, c.created, c.failed, c.invalid
        )?;
        writeln!(
            f,
            "calls made {}, 429s seen {}, retries {}",
            self.calls, self.rate_limited, self.retries
        )?;
        writeln!(
            f,
            "elapsed {:.1}s, {:.1} rows/s",
            self.elapsed.as_secs_f64(),
            self.rows_per_second()
        )?;
        write!(f, "{}", self.status_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(created: u64, failed: u64, invalid: u64, aborted: Option<&str>) -> RunSummary {
        RunSummary {
            rows: created + failed + invalid,
            counts: StatusCounts {
                created,
                failed,
                invalid,
            },
            calls: 3,
            rate_limited: 1,
            retries: 1,
            elapsed: Duration::from_secs(2),
            aborted: aborted.map(str::to_string),
        }
    }

    #[test]
    fn exit_status_follows_the_counts() {
        assert_eq!(summary(10, 0, 0, None).exit_status(), ExitStatus::Success);
        assert_eq!(
            summary(9, 1, 0, None).exit_status(),
            ExitStatus::RowsNotCreated
        );
        assert_eq!(
            summary(9, 0, 1, None).exit_status(),
            ExitStatus::RowsNotCreated
        );
        assert_eq!(
            summary(1, 9, 0, Some("HTTP 401")).exit_status(),
            ExitStatus::Aborted
        );
    }

    #[test]
    fn renders_every_figure() {
        let text = summary(8, 1, 1, None).to_string();
        for part in [
            "rows read 10",
            "created 8",
            "failed 1",
            "invalid 1",
            "calls made 3",
            "429s seen 1",
            "retries 1",
            "elapsed 2.0s",
            "5.0 rows/s",
            "DONE WITH ERRORS",
        ] {
            assert!(text.contains(part), "missing {part:?} in {text}");
        }
    }
}
