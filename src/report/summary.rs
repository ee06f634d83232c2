//! The machine-readable run summary (`--summary-json FILE`) for schedulers and monitoring.
//!
//! A finished or stopped run's [`RunSummary`] and where the run read and wrote ([`RunPaths`])
//! enter; a JSON document ([`SummaryJson`], `"version": 1`) leaves; for `validate` and
//! `import --dry-run`, a dry run's [`Validation`] enters and a smaller document
//! ([`ValidationSummaryJson`], same version and common fields) leaves. Either is written whole or not at all
//! (a temporary file renamed into place), so a wrapper script never reads half a summary. The
//! fields are documented in the README; new fields may be added within version 1, none removed
//! or changed in meaning.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::exit::ExitStatus;
use crate::report::stats::{RunSummary, Validation};

/// Bumped only when a field is removed or changes meaning.
pub(crate) const SUMMARY_VERSION: u32 = 1;

/// Where a run read and wrote, and when it ran.
#[derive(Debug, Clone)]
pub(crate) struct RunPaths {
    /// `import` or `retry`.
    pub command: &'static str,
    pub input: PathBuf,
    pub report: PathBuf,
    pub ledger: PathBuf,
    pub html_report: Option<PathBuf>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Rows by report Status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StatusCountsJson {
    pub created: u64,
    pub failed: u64,
    pub invalid: u64,
    pub skipped: u64,
    /// Keyed sync: activities updated in place, left as they were, left because the row moved
    /// them, and deleted because the input lacks their key (lines after the input's rows).
    pub updated: u64,
    pub unchanged: u64,
    pub conflict: u64,
    pub deleted: u64,
}

/// The fields every summary document starts with, whatever the command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SummaryHead {
    /// Format version, [`SUMMARY_VERSION`].
    pub version: u32,
    pub command: &'static str,
    /// `ok`, `done_with_errors`, `too_many_invalid`, `too_many_deletes`, `not_confirmed`,
    /// `aborted`, `interrupted`, `terminated`;
    /// for a dry run `ok` or `invalid_rows`.
    pub status: &'static str,
    /// The process's exit code.
    pub exit_code: u8,
    /// The one-line status printed last on stderr.
    pub status_line: String,
    /// Data rows in the input; equals the sum of `counts`.
    pub rows_total: u64,
}

/// The summary document, field by field as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SummaryJson {
    #[serde(flatten)]
    pub head: SummaryHead,
    pub counts: StatusCountsJson,
    /// HTTP calls made, retries and checks included.
    pub calls: u64,
    /// Calls answered with a rate-limit error (HTTP 429 or its HTTP 200 form).
    pub rate_limited: u64,
    /// Calls that were second or later attempts.
    pub retries: u64,
    /// Calls whose outcome was unknown and was checked with Get Activities.
    pub unknown_outcome_calls: u64,
    /// Rows such checks found already created (not re-sent).
    pub rows_found_created: u64,
    /// Extra calls spent isolating bad rows in batches refused as a whole.
    pub isolation_calls: u64,
    /// Reads made by those checks (and by a resume checking what a killed run left in
    /// flight), of a lead's activities and account-wide by code: the run's lookups.
    pub lookup_calls: u64,
    /// Of `lookup_calls`, the account-wide reads (Get Activities by Activity Event).
    pub lookup_reads_by_code: u64,
    /// Keyed sync: reads of the account's keyed activities that rebuilt the key map.
    pub key_reads: u64,
    /// API outages the run paused for, the seconds spent waiting, and the probes sent.
    pub outages: u64,
    pub outage_seconds: f64,
    pub probe_calls: u64,
    pub duration_seconds: f64,
    pub rows_per_second: f64,
    /// The quota configured (`25/5s`), and a lower one the server named during the run.
    pub quota_configured: Option<String>,
    pub quota_discovered: Option<String>,
    /// Why the run stopped early (aborted, or too many invalid rows), when it did.
    pub stop_reason: Option<String>,
    pub input: String,
    pub report: String,
    pub ledger: String,
    pub html_report: Option<String>,
    /// The ledger's run id (`lsq-sync report LEDGER --run N`), and whether this invocation
    /// continued an earlier, unfinished one.
    pub run_id: Option<i64>,
    pub resumed: bool,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
}

/// Could not write the summary file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the summary {path}: {message}")]
pub(crate) struct SummaryError {
    pub path: PathBuf,
    pub message: String,
}

impl SummaryJson {
    pub(crate) fn new(summary: &RunSummary, paths: &RunPaths) -> SummaryJson {
        let exit = summary.exit_status();
        let status = match exit {
            ExitStatus::Success => "ok",
            ExitStatus::RowsNotCreated => "done_with_errors",
            ExitStatus::Usage => summary
                .not_sent
                .as_ref()
                .map_or("too_many_invalid", |stop| stop.status),
            ExitStatus::Aborted => "aborted",
            ExitStatus::Interrupted => "interrupted",
            ExitStatus::Terminated => "terminated",
        };
        let c = &summary.counts;
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let path = |p: &Path| p.display().to_string();
        SummaryJson {
            head: SummaryHead {
                version: SUMMARY_VERSION,
                command: paths.command,
                status,
                exit_code: exit.code(),
                status_line: summary.status_line(),
                rows_total: summary.rows,
            },
            counts: StatusCountsJson {
                created: c.created,
                failed: c.failed,
                invalid: c.invalid,
                skipped: c.skipped,
                updated: c.updated,
                unchanged: c.unchanged,
                conflict: c.conflict,
                deleted: c.deleted,
            },
            key_reads: summary.key_reads,
            calls: summary.calls,
            rate_limited: summary.rate_limited,
            retries: summary.retries,
            unknown_outcome_calls: summary.ambiguous,
            rows_found_created: summary.recovered,
            isolation_calls: summary.isolation_calls,
            lookup_calls: summary.lookup_calls,
            lookup_reads_by_code: summary.lookup_reads_by_code,
            outages: summary.outages,
            outage_seconds: (summary.outage_time.as_secs_f64() * 1000.0).round() / 1000.0,
            probe_calls: summary.probes,
            duration_seconds: (summary.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            rows_per_second: (summary.rows_per_second() * 10.0).round() / 10.0,
            quota_configured: summary.quota.map(|q| q.to_string()),
            quota_discovered: summary.discovered_quota.map(|q| q.to_string()),
            stop_reason: summary
                .not_sent
                .as_ref()
                .map(|stop| stop.reason.clone())
                .or_else(|| summary.aborted.clone()),
            input: path(&paths.input),
            report: path(&paths.report),
            ledger: path(&paths.ledger),
            html_report: paths.html_report.as_deref().map(path),
            run_id: summary.ledger.as_ref().map(|(_, run)| *run),
            resumed: summary.resumed,
            started_at: time(&paths.started_at),
            finished_at: time(&paths.finished_at),
        }
    }

    /// Writes the document to `path` atomically: a temporary file beside it, renamed over it.
    pub(crate) fn write(&self, path: &Path) -> Result<(), SummaryError> {
        write_json(path, self)
    }
}

/// Rows of a dry run by report Status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ValidationCountsJson {
    pub valid: u64,
    pub invalid: u64,
}

/// The summary of `validate` / `import --dry-run`. Nothing was sent and no ledger written, so
/// it holds the fields of [`SummaryJson`] that mean something here, under the same names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ValidationSummaryJson {
    /// `command` is `validate`, also for `import --dry-run` (which is the same check).
    #[serde(flatten)]
    pub head: SummaryHead,
    pub counts: ValidationCountsJson,
    pub duration_seconds: f64,
    pub rows_per_second: f64,
    pub input: String,
    pub report: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
}

impl ValidationSummaryJson {
    pub(crate) fn new(
        validation: &Validation,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    ) -> ValidationSummaryJson {
        let exit = validation.exit_status();
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        ValidationSummaryJson {
            head: SummaryHead {
                version: SUMMARY_VERSION,
                command: "validate",
                status: if exit == ExitStatus::Success {
                    "ok"
                } else {
                    "invalid_rows"
                },
                exit_code: exit.code(),
                status_line: validation.status_line(),
                rows_total: validation.counts.total(),
            },
            counts: ValidationCountsJson {
                valid: validation.counts.valid,
                invalid: validation.counts.invalid,
            },
            duration_seconds: (validation.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            rows_per_second: (validation.rows_per_second() * 10.0).round() / 10.0,
            input: validation.input.display().to_string(),
            report: validation.report.display().to_string(),
            started_at: time(&started_at),
            finished_at: time(&finished_at),
        }
    }

    /// Writes the document to `path` atomically, as [`SummaryJson::write`] does.
    pub(crate) fn write(&self, path: &Path) -> Result<(), SummaryError> {
        write_json(path, self)
    }
}

/// Serializes `document` and writes it with [`write_atomically`].
fn write_json(path: &Path, document: &impl Serialize) -> Result<(), SummaryError> {
    let error = |message: String| SummaryError {
        path: path.to_path_buf(),
        message,
    };
    let text = serde_json::to_vec_pretty(document).map_err(|e| error(e.to_string()))?;
    write_atomically(path, &text).map_err(|e| error(e.to_string()))
}

/// Writes `bytes` to a temporary file beside `path`, flushed to disk, then renames it over
/// `path`, so a reader sees the old file or the new one, never a part.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::StatusCounts;
    use std::time::Duration;

    fn paths() -> RunPaths {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        RunPaths {
            command: "import",
            input: "in.csv".into(),
            report: "report.csv".into(),
            ledger: "report.csv.ledger".into(),
            html_report: None,
            started_at: at,
            finished_at: at + chrono::TimeDelta::seconds(2),
        }
    }

    fn summary(created: u64, failed: u64, invalid: u64) -> RunSummary {
        RunSummary::unsent(
            StatusCounts {
                created,
                failed,
                invalid,
                skipped: 0,
                valid: 0,
                ..StatusCounts::default()
            },
            Duration::from_millis(2500),
            ("report.csv.ledger".into(), 4),
            crate::lsq::quota::RateQuota::DEFAULT,
        )
    }

    #[test]
    fn the_document_carries_counts_exit_code_and_paths() {
        let json = serde_json::to_value(SummaryJson::new(&summary(8, 1, 1), &paths())).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["status"], "done_with_errors");
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["rows_total"], 10);
        assert_eq!(json["counts"]["created"], 8);
        assert_eq!(json["counts"]["invalid"], 1);
        assert_eq!(json["quota_configured"], "25/5s");
        assert_eq!(json["run_id"], 4);
        assert_eq!(json["duration_seconds"], 2.5);
        assert_eq!(json["started_at"], "2026-01-02T03:04:05.000Z");
        assert_eq!(json["finished_at"], "2026-01-02T03:04:07.000Z");
        assert_eq!(json["ledger"], "report.csv.ledger");
    }

    #[test]
    fn a_run_stopped_for_invalid_rows_says_so() {
        let mut stopped = summary(0, 5, 5);
        stopped.not_sent = Some(crate::report::stats::NotSent {
            status: "too_many_invalid",
            reason: "5 of 10 rows (50.0%) are invalid".into(),
        });
        let json = SummaryJson::new(&stopped, &paths());
        assert_eq!(
            (json.head.status, json.head.exit_code),
            ("too_many_invalid", 2)
        );
        assert_eq!(
            json.stop_reason.as_deref(),
            Some("5 of 10 rows (50.0%) are invalid")
        );
    }

    #[test]
    fn a_dry_run_summary_counts_valid_and_invalid_rows() {
        let validation = Validation {
            input: "in.csv".into(),
            report: "checked.csv".into(),
            counts: StatusCounts {
                valid: 7,
                invalid: 3,
                ..StatusCounts::default()
            },
            elapsed: Duration::from_millis(1250),
        };
        let at = paths().started_at;
        let json = serde_json::to_value(ValidationSummaryJson::new(
            &validation,
            at,
            at + chrono::TimeDelta::seconds(1),
        ))
        .unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["command"], "validate");
        assert_eq!(json["status"], "invalid_rows");
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["rows_total"], 10);
        assert_eq!(
            json["counts"],
            serde_json::json!({"valid": 7, "invalid": 3})
        );
        assert_eq!(json["duration_seconds"], 1.25);
        assert_eq!(json["report"], "checked.csv");
        assert!(
            json["status_line"]
                .as_str()
                .unwrap()
                .starts_with("INVALID: 3 of 10")
        );
        let clean = Validation {
            counts: StatusCounts {
                valid: 10,
                ..StatusCounts::default()
            },
            ..validation
        };
        let json = ValidationSummaryJson::new(&clean, at, at);
        assert_eq!((json.head.status, json.head.exit_code), ("ok", 0));
    }

    #[test]
    fn writing_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        std::fs::write(&path, "old").unwrap();
        SummaryJson::new(&summary(1, 0, 0), &paths())
            .write(&path)
            .unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(read["status"], "ok");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
