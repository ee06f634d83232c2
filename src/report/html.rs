//! The run report for people (`--html-report FILE`): one self-contained HTML page with the
//! counts, the throughput over time as an SVG bar chart drawn here, and the errors grouped by
//! message with example row numbers. No scripts, no external assets: it opens from a mail
//! attachment or a file share as it is.
//!
//! Data enters from the finished run: its [`RunSummary`], the report CSV (errors, by row) and
//! the ledger's `calls` and `rows` tables (when each created row's call came back), read with a
//! read-only connection after the run has released the ledger. [`render`] is pure and escapes
//! every value that came from the data; the keys never reach it (nothing here sees settings).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use crate::report::stats::RunSummary;
use crate::report::summary::{RunPaths, write_atomically};

/// Error groups shown; the rest are counted in one line.
const MAX_GROUPS: usize = 50;
/// Example row numbers shown per error group.
const EXAMPLES: usize = 5;
/// At most this many bars in the chart; the bucket width grows to fit.
const MAX_BARS: i64 = 60;

/// The page could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the HTML report {path}: {message}")]
pub(crate) struct HtmlReportError {
    pub path: PathBuf,
    pub message: String,
}

/// Rows that share a Status and an Error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorGroup {
    pub status: String,
    pub message: String,
    pub count: u64,
    /// The first few RowNumbers, in report order.
    pub examples: Vec<String>,
}

/// Rows created per time bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Throughput {
    /// Width of a bucket in milliseconds (short runs get sub-second bars).
    pub bucket_ms: i64,
    /// Start of the first bucket (UTC).
    pub start: Option<NaiveDateTime>,
    /// Rows created in each bucket, in time order, empty buckets included.
    pub created: Vec<u64>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub(crate) struct PageData {
    pub title: String,
    pub status_line: String,
    pub exit_code: u8,
    pub rows_total: u64,
    /// (label, count) in display order.
    pub counts: Vec<(&'static str, u64)>,
    /// (label, value) of the run's other figures.
    pub facts: Vec<(&'static str, String)>,
    pub throughput: Throughput,
    pub errors: Vec<ErrorGroup>,
    /// Groups left out beyond [`MAX_GROUPS`].
    pub more_groups: usize,
}

/// Gathers the data of a finished run and writes the page to `path` atomically.
pub(crate) fn write_html_report(
    path: &Path,
    summary: &RunSummary,
    paths: &RunPaths,
) -> Result<(), HtmlReportError> {
    let error = |message: String| HtmlReportError {
        path: path.to_path_buf(),
        message,
    };
    let (errors, more_groups) = error_groups(&paths.report).map_err(error)?;
    let throughput = match &summary.ledger {
        Some((_, run)) => created_over_time(&paths.ledger, *run).map_err(error)?,
        None => bucket(Vec::new()),
    };
    let c = &summary.counts;
    let data = PageData {
        title: format!(
            "lsq-sync {} of {}",
            paths.command,
            paths
                .input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        status_line: summary.status_line(),
        exit_code: summary.exit_status().code(),
        rows_total: summary.rows,
        counts: if summary.keyed {
            vec![
                ("created", c.created),
                ("updated", c.updated),
                ("unchanged", c.unchanged),
                ("conflict", c.conflict),
                ("deleted", c.deleted),
                ("failed", c.failed),
                ("invalid", c.invalid),
            ]
        } else {
            vec![
                ("created", c.created),
                ("failed", c.failed),
                ("invalid", c.invalid),
                ("skipped", c.skipped),
            ]
        },
        facts: vec![
            ("input", paths.input.display().to_string()),
            ("report", paths.report.display().to_string()),
            ("ledger", paths.ledger.display().to_string()),
            (
                "started",
                paths.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ),
            (
                "finished",
                paths
                    .finished_at
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string(),
            ),
            (
                "duration",
                format!(
                    "{:.1} s ({:.1} rows/s)",
                    summary.elapsed.as_secs_f64(),
                    summary.rows_per_second()
                ),
            ),
            ("calls", summary.calls.to_string()),
            ("rate limited (429)", summary.rate_limited.to_string()),
            ("retries", summary.retries.to_string()),
            (
                "quota",
                match (summary.quota, summary.discovered_quota) {
                    (Some(q), Some(d)) => format!("{d} (named by the server; configured {q})"),
                    (Some(q), None) => q.to_string(),
                    (None, _) => "-".to_string(),
                },
            ),
        ],
        throughput,
        errors,
        more_groups,
    };
    write_atomically(path, render(&data).as_bytes()).map_err(|e| error(e.to_string()))
}

/// Groups the report's failed, invalid and conflicting rows by Status and Error, largest group
/// first. A keyed sync's line for a key its input lacked has no row number: it is shown as `-`.
fn error_groups(report: &Path) -> Result<(Vec<ErrorGroup>, usize), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(report)
        .map_err(|e| format!("cannot read the report {}: {e}", report.display()))?;
    let mut groups: Vec<ErrorGroup> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| format!("report {}: {e}", report.display()))?;
        let field =
            |i: usize| String::from_utf8_lossy(record.get(i).unwrap_or_default()).into_owned();
        let status = field(1);
        if !matches!(status.as_str(), "failed" | "invalid" | "conflict") {
            continue;
        }
        let key = (status.clone(), field(3));
        let at = *index.entry(key).or_insert_with(|| {
            groups.push(ErrorGroup {
                status,
                message: field(3),
                count: 0,
                examples: Vec::new(),
            });
            groups.len() - 1
        });
        let group = &mut groups[at];
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            let number = field(0);
            group.examples.push(if number.is_empty() {
                "-".into()
            } else {
                number
            });
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    let more = groups.len().saturating_sub(MAX_GROUPS);
    groups.truncate(MAX_GROUPS);
    Ok((groups, more))
}

/// When each created row's call came back, from the ledger, bucketed.
fn created_over_time(ledger: &Path, run: i64) -> Result<Throughput, String> {
    let rows = crate::ledger::created_per_call(ledger, run)
        .map_err(|e| format!("cannot read the ledger {}: {e}", ledger.display()))?;
    let points = rows
        .into_iter()
        .filter_map(|(at, n)| {
            NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| (t, n))
        })
        .collect();
    Ok(bucket(points))
}

/// Sums `points` into at most [`MAX_BARS`] buckets of a round width.
fn bucket(points: Vec<(NaiveDateTime, u64)>) -> Throughput {
    let (Some(first), Some(last)) = (
        points.iter().map(|p| p.0).min(),
        points.iter().map(|p| p.0).max(),
    ) else {
        return Throughput {
            bucket_ms: 1000,
            start: None,
            created: Vec::new(),
        };
    };
    let ms = |t: NaiveDateTime| t.and_utc().timestamp_millis();
    let span = ms(last) - ms(first);
    let width = [
        100, 200, 500, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, w)| if i < 3 { w } else { w * 1000 })
    .find(|w| span / w < MAX_BARS)
    .unwrap_or_else(|| span / MAX_BARS + 1);
    let start = ms(first).div_euclid(width).saturating_mul(width);
    let start_time = chrono::DateTime::from_timestamp_millis(start).map(|t| t.naive_utc());
    let mut created = vec![0; ((ms(last) - start) / width + 1) as usize];
    for (at, n) in points {
        let i = ((ms(at) - start) / width) as usize;
        if let Some(slot) = created.get_mut(i) {
            *slot += n;
        }
    }
    Throughput {
        bucket_ms: width,
        start: start_time,
        created,
    }
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.1em;margin-top:2em}
.status{font-weight:600;padding:.5em .8em;border-radius:4px;background:#eef5ee}
.status.bad{background:#fbeeee}
.counts{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.count{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:7em}
.count b{display:block;font-size:1.6em}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .6em;border-bottom:1px solid #eee;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{fill:#4a7fb5}.axis{stroke:#999;stroke-width:1}svg text{font-size:11px;fill:#555}
";

/// The page, from its data. Every value from the data is escaped.
pub(crate) fn render(data: &PageData) -> String {
    let mut html = String::new();
    let ok = data.exit_code == 0;
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n\
         <h1>{title}</h1>\n<p class=\"status{bad}\" id=\"status\">{status} (exit code {code})</p>\n",
        title = escape(&data.title),
        bad = if ok { "" } else { " bad" },
        status = escape(&data.status_line),
        code = data.exit_code,
    );
    let _ = write!(
        html,
        "<div class=\"counts\"><div class=\"count\" id=\"count-rows\"><b>{}</b>rows</div>",
        data.rows_total
    );
    for (label, n) in &data.counts {
        let _ = write!(
            html,
            "<div class=\"count\" id=\"count-{label}\"><b>{n}</b>{label}</div>"
        );
    }
    html.push_str("</div>\n<h2>Rows created over time</h2>\n");
    html.push_str(&chart(&data.throughput));
    html.push_str("\n<h2>Errors by message</h2>\n");
    if data.errors.is_empty() {
        html.push_str("<p id=\"no-errors\">No failed, invalid or conflicting rows.</p>\n");
    } else {
        html.push_str(
            "<table id=\"errors\"><tr><th>rows</th><th>status</th><th>message</th><th>example rows</th></tr>\n",
        );
        for group in &data.errors {
            let _ = writeln!(
                html,
                "<tr class=\"error-group\"><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                group.count,
                escape(&group.status),
                escape(&group.message),
                escape(&group.examples.join(", ")),
            );
        }
        html.push_str("</table>\n");
        if data.more_groups > 0 {
            let _ = writeln!(
                html,
                "<p>{} more messages: see the report.</p>",
                data.more_groups
            );
        }
    }
    html.push_str("<h2>Run</h2>\n<table id=\"facts\">\n");
    for (label, value) in &data.facts {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        );
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

/// The bar chart of rows created per bucket, as inline SVG.
fn chart(t: &Throughput) -> String {
    let Some(start) = t.start.filter(|_| !t.created.is_empty()) else {
        return "<p id=\"no-throughput\">No activities were created in this run.</p>".to_string();
    };
    let (width, height, left, bottom, top) = (720.0, 240.0, 48.0, 28.0, 12.0);
    let plot_w = width - left - 8.0;
    let plot_h = height - bottom - top;
    let max = t.created.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = plot_w / t.created.len() as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"throughput\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"rows created per {w} s\">\
         <title>rows created per {w} s</title>",
        w = t.bucket_ms as f64 / 1000.0
    );
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\"/>\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y}\"/>\
         <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{lx}\" y=\"{y}\" text-anchor=\"end\">0</text>",
        y = top + plot_h,
        x2 = left + plot_w,
        lx = left - 4.0,
        ty = top + 10.0,
        max = max as u64,
    );
    for (i, n) in t.created.iter().enumerate() {
        let h = *n as f64 / max * plot_h;
        let _ = write!(
            svg,
            "<rect class=\"bar\" data-rows=\"{n}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{n} rows</title></rect>",
            left + i as f64 * slot + slot * 0.1,
            top + plot_h - h,
            slot * 0.8,
        );
    }
    let end = start + chrono::TimeDelta::milliseconds(t.bucket_ms * t.created.len() as i64);
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{ly}\">{}</text><text x=\"{rx}\" y=\"{ly}\" text-anchor=\"end\">{} UTC, {} s per bar</text></svg>",
        start.format("%H:%M:%S%.3f"),
        end.format("%H:%M:%S%.3f"),
        t.bucket_ms as f64 / 1000.0,
        ly = height - 8.0,
        rx = left + plot_w,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    fn page(errors: Vec<ErrorGroup>, throughput: Throughput) -> PageData {
        PageData {
            title: "lsq-sync import of <x>.csv".into(),
            status_line: "DONE WITH ERRORS: 1 of 2 rows created".into(),
            exit_code: 1,
            rows_total: 2,
            counts: vec![
                ("created", 1),
                ("failed", 0),
                ("invalid", 1),
                ("skipped", 0),
            ],
            facts: vec![("input", "a&b.csv".into())],
            throughput,
            errors,
            more_groups: 0,
        }
    }

    #[test]
    fn buckets_are_round_and_cover_the_run() {
        let t = bucket(vec![
            (at("2026-01-01 10:00:00.500"), 25),
            (at("2026-01-01 10:00:01.200"), 25),
            (at("2026-01-01 10:00:03.900"), 10),
        ]);
        assert_eq!(t.bucket_ms, 100);
        assert_eq!(t.created.len(), 35);
        assert_eq!((t.created[0], t.created[7], t.created[34]), (25, 25, 10));
        let t = bucket(vec![
            (at("2026-01-01 10:00:00.500"), 25),
            (at("2026-01-01 10:00:31.200"), 25),
        ]);
        assert_eq!(t.bucket_ms, 1000);
        assert_eq!(t.created.len(), 32);
        let t = bucket(vec![
            (at("2026-01-01 10:00:00"), 1),
            (at("2026-01-01 11:00:00"), 2),
        ]);
        assert_eq!(t.bucket_ms, 120_000);
        assert_eq!(t.created.len(), 31);
        assert_eq!(t.created.iter().sum::<u64>(), 3);
        assert!(bucket(Vec::new()).created.is_empty());
    }

    #[test]
    fn data_is_escaped_everywhere() {
        let html = render(&page(
            vec![ErrorGroup {
                status: "invalid".into(),
                message: "ActivityNote: \"<script>alert('x')</script>\"".into(),
                count: 1,
                examples: vec!["2".into()],
            }],
            bucket(vec![(at("2026-01-01 10:00:00"), 1)]),
        ));
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("of &lt;x&gt;.csv"));
        assert!(html.contains("a&amp;b.csv"));
        assert!(html.contains("<svg id=\"throughput\""));
        assert!(html.contains("10:00:00.000</text>") && html.contains("</svg>"));
        assert!(html.contains("data-rows=\"1\""));
        assert!(html.contains("id=\"count-invalid\"><b>1</b>"));
    }

    #[test]
    fn a_run_without_creations_says_so_instead_of_a_chart() {
        let html = render(&page(Vec::new(), bucket(Vec::new())));
        assert!(html.contains("no-throughput") && !html.contains("<svg"));
        assert!(html.contains("No failed, invalid or conflicting rows."));
    }

    #[test]
    fn errors_group_by_status_and_message_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(
            &path,
            "RowNumber,Status,ProspectActivityId,Error,X\n\
             1,created,id1,,a\n2,invalid,,bad date,b\n3,failed,,no lead,c\n\
             4,invalid,,bad date,d\n5,invalid,,bad date,e\n",
        )
        .unwrap();
        let (groups, more) = error_groups(&path).unwrap();
        assert_eq!(more, 0);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].message.as_str(), groups[0].count),
            ("bad date", 3)
        );
        assert_eq!(groups[0].examples, vec!["2", "4", "5"]);
        assert_eq!(groups[1].status, "failed");
    }
}
