//! Run counters and the end-of-run summary (of an import, [`RunSummary`], and of a dry run,
//! [`Validation`]).
//!
//! [`RunSummary`] is the frozen picture at the end of a run (its counters,
//! [`crate::lsq::counters::RunStats`], among it), rendered for a person on stderr and mapped to
//! an exit code.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::ExitStatus;
use crate::report::StatusCounts;

/// What a finished (or aborted) import did.
#[derive(Debug, Clone)]
pub(crate) struct RunSummary {
    /// Data rows read from the input.
    pub rows: u64,
    pub counts: StatusCounts,
    pub calls: u64,
    pub rate_limited: u64,
    pub retries: u64,
    /// Calls with an unknown outcome, and rows found created by checking.
    pub ambiguous: u64,
    pub recovered: u64,
    /// Extra calls spent isolating bad rows in batches refused as a whole.
    pub isolation_calls: u64,
    /// Reads that checked calls with an unknown outcome, of both kinds: Get Activities of a
    /// Lead, and account-wide reads by activity code (`lookup_reads_by_code` of them).
    pub lookup_calls: u64,
    pub lookup_reads_by_code: u64,
    /// Probes sent during outages, outages the run waited out, and the time spent waiting.
    pub probes: u64,
    pub outages: u64,
    pub outage_time: Duration,
    pub elapsed: Duration,
    /// Why the run stopped early, when it did.
    pub aborted: Option<String>,
    /// Set when a signal stopped the run.
    pub interrupted: Option<ExitStatus>,
    /// The ledger and run, for `lsq-sync report` and for resuming.
    pub ledger: Option<(String, i64)>,
    /// This run continued an earlier, unfinished one.
    pub resumed: bool,
    /// The quota configured, and a lower one the server named during the run.
    pub quota: Option<crate::lsq::quota::RateQuota>,
    pub discovered_quota: Option<crate::lsq::quota::RateQuota>,
    /// Set when the run stopped before sending anything (`--max-invalid`, `--max-delete`,
    /// deletions not confirmed).
    pub not_sent: Option<NotSent>,
    /// A keyed sync (`--key`): the counts and the status line speak of updates too.
    pub keyed: bool,
    /// Reads of the account's activities that rebuilt the key map (`--key-field`).
    pub key_reads: u64,
}

/// Why a run sent nothing, for the status line and the summary's `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotSent {
    /// The summary's `status`: `too_many_invalid`, `too_many_deletes`, `not_confirmed`.
    pub status: &'static str,
    /// Why, with the numbers.
    pub reason: String,
}

impl RunSummary {
    /// 0 all created, 1 some rows failed or invalid, 2 stopped by `--max-invalid` before
    /// sending, 3 aborted.
    pub(crate) fn exit_status(&self) -> ExitStatus {
        if self.not_sent.is_some() {
            ExitStatus::Usage
        } else if let Some(signal) = self.interrupted {
            signal
        } else if self.aborted.is_some() {
            ExitStatus::Aborted
        } else if self.counts.failed + self.counts.invalid + self.counts.conflict > 0 {
            ExitStatus::RowsNotCreated
        } else {
            ExitStatus::Success
        }
    }

    /// A run that ended before its first call: only the counts of the report.
    pub(crate) fn unsent(
        counts: StatusCounts,
        elapsed: Duration,
        ledger: (String, i64),
        quota: crate::lsq::quota::RateQuota,
    ) -> RunSummary {
        RunSummary {
            rows: counts.total(),
            counts,
            calls: 0,
            rate_limited: 0,
            retries: 0,
            ambiguous: 0,
            recovered: 0,
            isolation_calls: 0,
            lookup_calls: 0,
            lookup_reads_by_code: 0,
            probes: 0,
            outages: 0,
            outage_time: Duration::ZERO,
            elapsed,
            aborted: None,
            interrupted: None,
            ledger: Some(ledger),
            resumed: false,
            quota: Some(quota),
            discovered_quota: None,
            not_sent: None,
            keyed: false,
            key_reads: 0,
        }
    }

    pub(crate) fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows as f64 / secs
        } else {
            0.0
        }
    }

    /// The last line, for cron mail and CI logs.
    pub(crate) fn status_line(&self) -> String {
        let c = &self.counts;
        if let Some(stop) = &self.not_sent {
            return format!(
                "STOPPED: {}; nothing was sent, the report lists every row",
                stop.reason
            );
        }
        if self.keyed && self.interrupted.is_none() && self.aborted.is_none() {
            let verdict = if self.exit_status() == ExitStatus::Success {
                "OK"
            } else {
                "DONE WITH ERRORS"
            };
            return format!("{verdict}: {} rows: {}", self.rows, keyed_counts(c));
        }
        if self.interrupted.is_some() {
            return format!(
                "INTERRUPTED: {} of {} rows created; run the same command again to resume",
                c.created + c.skipped,
                self.rows
            );
        }
        match (&self.aborted, self.exit_status()) {
            (Some(reason), _) => format!(
                "ABORTED: {reason}; {} of {} rows created before the stop",
                c.created, self.rows
            ),
            (None, ExitStatus::Success) if c.skipped > 0 => format!(
                "OK: all {} rows created ({} of them by earlier runs)",
                self.rows, c.skipped
            ),
            (None, ExitStatus::Success) => format!("OK: all {} rows created", self.rows),
            _ if c.skipped > 0 => format!(
                "DONE WITH ERRORS: {} of {} rows created, {} skipped (created by earlier runs), {} failed, {} invalid",
                c.created, self.rows, c.skipped, c.failed, c.invalid
            ),
            _ => format!(
                "DONE WITH ERRORS: {} of {} rows created, {} failed, {} invalid",
                c.created, self.rows, c.failed, c.invalid
            ),
        }
    }
}

/// A keyed sync's report lines by status, for people: every count, zeros included, so two
/// nights' logs line up.
fn keyed_counts(c: &crate::report::StatusCounts) -> String {
    let mut text = format!(
        "created {}, updated {}, unchanged {}, conflict {}, deleted {}, failed {}, invalid {}",
        c.created, c.updated, c.unchanged, c.conflict, c.deleted, c.failed, c.invalid
    );
    if c.skipped > 0 {
        text.push_str(&format!(", skipped {}", c.skipped));
    }
    text
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        if self.keyed {
            write!(f, "rows {}: {}", self.rows, keyed_counts(c))?;
        } else {
            write!(
                f,
                "rows read {}: created {}, failed {}, invalid {}",
                self.rows, c.created, c.failed, c.invalid
            )?;
        }
        if c.skipped > 0 {
            write!(f, ", skipped {} (created by earlier runs)", c.skipped)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "calls made {}, 429s seen {}, retries {}",
            self.calls, self.rate_limited, self.retries
        )?;
        if let Some(quota) = self.quota {
            let seconds = self.elapsed.as_secs_f64();
            let per_second = if seconds > 0.0 {
                self.calls as f64 / seconds
            } else {
                0.0
            };
            match self.discovered_quota {
                Some(real) => writeln!(
                    f,
                    "quota {real} (named by the server; configured {quota}), {per_second:.1} calls/s used"
                )?,
                None => writeln!(f, "quota {quota}, {per_second:.1} calls/s used")?,
            }
        }
        if self.ambiguous > 0 {
            writeln!(
                f,
                "calls with unknown outcome {}: {} rows found already created, not re-sent",
                self.ambiguous, self.recovered
            )?;
        }
        if self.lookup_calls > 0 {
            writeln!(
                f,
                "lookups {} (reads checking what the server created: {} of a lead's activities, \
                 {} account-wide by activity code)",
                self.lookup_calls,
                self.lookup_calls.saturating_sub(self.lookup_reads_by_code),
                self.lookup_reads_by_code
            )?;
        }
        if self.key_reads > 0 {
            writeln!(
                f,
                "key map reads {} (the account's keyed activities read back)",
                self.key_reads
            )?;
        }
        if self.outages > 0 {
            writeln!(
                f,
                "API outages waited out {} ({:.1}s in all, {} probes)",
                self.outages,
                self.outage_time.as_secs_f64(),
                self.probes
            )?;
        }
        if self.isolation_calls > 0 {
            writeln!(
                f,
                "extra calls to isolate bad rows in refused batches {}",
                self.isolation_calls
            )?;
        }
        if let Some((path, run)) = &self.ledger {
            writeln!(
                f,
                "ledger {path}, run {run}{}",
                if self.resumed { " (resumed)" } else { "" }
            )?;
        }
        writeln!(
            f,
            "elapsed {:.1}s, {:.1} rows/s",
            self.elapsed.as_secs_f64(),
            self.rows_per_second()
        )?;
        write!(f, "{}", self.status_line())
    }
}

/// What a dry run found.
#[derive(Debug, Clone)]
pub struct Validation {
    pub input: PathBuf,
    pub report: PathBuf,
    /// `valid` and `invalid` rows; nothing else occurs in a dry run.
    pub counts: StatusCounts,
    pub elapsed: Duration,
}

impl Validation {
    pub(crate) fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counts.total() as f64 / secs
        } else {
            0.0
        }
    }

    /// 0 when every row is valid, 1 when some are not.
    pub(crate) fn exit_status(&self) -> ExitStatus {
        if self.counts.invalid == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::RowsNotCreated
        }
    }

    /// The last line of the output: what a person reading cron mail needs first.
    pub(crate) fn status_line(&self) -> String {
        let total = self.counts.total();
        if self.counts.invalid == 0 {
            format!("OK: all {total} rows valid; nothing was sent")
        } else {
            format!(
                "INVALID: {} of {total} rows invalid (see {}); nothing was sent",
                self.counts.invalid,
                self.report.display()
            )
        }
    }
}

impl std::fmt::Display for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "rows read {}: valid {}, invalid {}",
            self.counts.total(),
            self.counts.valid,
            self.counts.invalid
        )?;
        writeln!(
            f,
            "elapsed {:.2}s, {:.0} rows/s",
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
                skipped: 0,
                valid: 0,
                ..StatusCounts::default()
            },
            calls: 3,
            rate_limited: 1,
            retries: 1,
            ambiguous: 0,
            recovered: 0,
            isolation_calls: 0,
            lookup_calls: 0,
            lookup_reads_by_code: 0,
            probes: 0,
            outages: 0,
            outage_time: Duration::ZERO,
            elapsed: Duration::from_secs(2),
            aborted: aborted.map(str::to_string),
            interrupted: None,
            ledger: None,
            resumed: false,
            quota: None,
            discovered_quota: None,
            not_sent: None,
            keyed: false,
            key_reads: 0,
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
        let mut stopped = summary(0, 6, 4, None);
        stopped.not_sent = Some(NotSent {
            status: "too_many_invalid",
            reason: "4 of 10 rows (40.0%) are invalid".into(),
        });
        assert_eq!(stopped.exit_status(), ExitStatus::Usage);
        assert!(stopped.status_line().starts_with("STOPPED: 4 of 10 rows"));
        assert!(!stopped.status_line().contains('\n'));
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
