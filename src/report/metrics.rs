//! `--metrics-file FILE`: the last run's figures in Prometheus text format, for node_exporter's
//! textfile collector (point `--collector.textfile.directory` at the file's folder and name the
//! file `*.prom`).
//!
//! The run's summary document enters (or, for a run that could not start, only its exit code);
//! [`render`] (pure) turns it into text; [`write()`] puts it in place atomically (a temporary
//! file renamed over the old one), so the collector never reads half a file. Every metric is a
//! gauge describing the last run, except the two timestamps of the last successful and the last
//! completed run, which are carried over from the previous file when this run was not one.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::summary::SummaryJson;

/// Metric holding when a run last created every row (exit 0).
const LAST_SUCCESS: &str = "lsq_sync_last_success_timestamp_seconds";
/// Metric holding when a run last went through to its end (exit 0 or 1).
const LAST_COMPLETED: &str = "lsq_sync_last_completed_timestamp_seconds";

/// The previous file's value of `metric`, if the file exists and holds it.
fn previous_value(previous: &str, metric: &str) -> Option<f64> {
    previous.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == metric)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The file's text. `summary` is `None` for a run that stopped before it started (a bad flag,
/// an unreadable input, a query that failed); `previous` is the old file's text, if any.
pub(crate) fn render(
    summary: Option<&SummaryJson>,
    exit_code: u8,
    now_seconds: f64,
    previous: Option<&str>,
) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, values: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in values {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    if let Some(s) = summary {
        let c = &s.counts;
        gauge(
            "lsq_sync_last_run_rows",
            "Rows of the last run by report status.",
            &[
                ("{status=\"created\"}", c.created as f64),
                ("{status=\"failed\"}", c.failed as f64),
                ("{status=\"invalid\"}", c.invalid as f64),
                ("{status=\"skipped\"}", c.skipped as f64),
                ("{status=\"updated\"}", c.updated as f64),
                ("{status=\"unchanged\"}", c.unchanged as f64),
                ("{status=\"conflict\"}", c.conflict as f64),
                ("{status=\"deleted\"}", c.deleted as f64),
            ],
        );
        for (name, help, value) in [
            (
                "lsq_sync_last_run_calls",
                "HTTP calls the last run made, retries and lookups included.",
                s.calls,
            ),
            (
                "lsq_sync_last_run_rate_limited_calls",
                "Calls of the last run answered with a rate-limit error (HTTP 429 or its 200 form).",
                s.rate_limited,
            ),
            (
                "lsq_sync_last_run_retries",
                "Calls of the last run that were second or later attempts.",
                s.retries,
            ),
            (
                "lsq_sync_last_run_lookup_calls",
                "Reads the last run made to check calls with an unknown outcome (of a lead's activities and account-wide by code).",
                s.lookup_calls,
            ),
            (
                "lsq_sync_last_run_key_reads",
                "Keyed sync: reads of the account's keyed activities that rebuilt the key map.",
                s.key_reads,
            ),
        ] {
            gauge(name, help, &[("", value as f64)]);
        }
        gauge(
            "lsq_sync_last_run_duration_seconds",
            "Wall time of the last run.",
            &[("", s.duration_seconds)],
        );
    }
    gauge(
        "lsq_sync_last_run_exit_code",
        "Exit code of the last run (0 all created, 1 some rows not created, 2 input or usage error, 3 aborted, 130/143 stopped).",
        &[("", f64::from(exit_code))],
    );
    gauge(
        "lsq_sync_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        &[("", now_seconds)],
    );
    let carried = |metric: &str, now_counts: bool| {
        if now_counts {
            Some(now_seconds)
        } else {
            previous.and_then(|p| previous_value(p, metric))
        }
    };
    if let Some(t) = carried(LAST_SUCCESS, exit_code == 0) {
        gauge(
            LAST_SUCCESS,
            "When a run last created every row (exit 0, Unix time).",
            &[("", t)],
        );
    }
    if let Some(t) = carried(LAST_COMPLETED, exit_code <= 1) {
        gauge(
            LAST_COMPLETED,
            "When a run last went through to its end (exit 0 or 1, Unix time).",
            &[("", t)],
        );
    }
    out
}

/// Renders the metrics of this run (keeping the old file's timestamps where they still hold)
/// and puts them at `path` atomically.
pub(crate) fn write(
    path: &Path,
    summary: Option<&SummaryJson>,
    exit_code: u8,
    now: chrono::DateTime<chrono::Utc>,
) -> std::io::Result<()> {
    let previous = std::fs::read_to_string(path).ok();
    let now_seconds = now.timestamp_millis() as f64 / 1000.0;
    let text = render(summary, exit_code, now_seconds, previous.as_deref());
    crate::report::summary::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_of_success_are_carried_over_a_failed_run() {
        let first = render(None, 0, 100.0, None);
        assert!(
            first.contains("lsq_sync_last_success_timestamp_seconds 100\n"),
            "{first}"
        );
        let second = render(None, 3, 200.0, Some(&first));
        assert!(
            second.contains("lsq_sync_last_success_timestamp_seconds 100\n"),
            "{second}"
        );
        assert!(second.contains("lsq_sync_last_completed_timestamp_seconds 100\n"));
        assert!(second.contains("lsq_sync_last_run_exit_code 3\n"));
        assert!(second.contains("lsq_sync_last_run_timestamp_seconds 200\n"));
        let third = render(None, 1, 300.0, Some(&second));
        assert!(third.contains("lsq_sync_last_success_timestamp_seconds 100\n"));
        assert!(third.contains("lsq_sync_last_completed_timestamp_seconds 300\n"));
        assert!(!render(None, 2, 1.0, None).contains("last_success"));
    }
}
