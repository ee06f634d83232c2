//! lsq-sync: move CRM activity data into LeadSquared in bulk, paced to the account's quota,
//! retried, and reported row by row.
//!
//! The import is one pipeline, each stage a module with one job, joined by bounded channels so
//! memory stays flat however large the input is:
//!
//! ```text
//! input -> validate -> batch -> pace -> send (client, retry) -> report
//! ```
//!
//! - [`input`]: reads CSV rows (raw bytes, row and line numbers).
//! - [`validate`]: maps the header once, checks each row, builds the activity to post.
//! - [`batch`]: groups rows into bulk calls of at most 25 valid rows.
//! - [`pace`]: the governor limiter that keeps every window within the quota.
//! - [`send`]: posts a batch, retries what is worth retrying.
//! - [`client`]: the LeadSquared HTTP client and the one classifier of responses.
//! - [`activities`]: reads every activity of a lead, page by page, whatever `Offset` counts.
//! - [`outage`]: the run-wide health gate: an API failing across the board pauses the run, one
//!   probe at a time, until it answers again or the patience runs out.
//! - [`resolve`]: after a bulk post with an unknown outcome, finds which rows were created.
//! - [`ledger`]: the SQLite record of every run, row and call; what makes resuming safe.
//! - [`report`]: writes per-row results in input order.
//! - [`leads`]: reads the `--leads` input (a CSV file or a list of ids) of export and deletes.
//! - [`export`]: every activity of many leads into a CSV file the import reads as it is.
//! - [`remote`]: the two queued-delete endpoints, their argument checks, `--wait` polling.
//! - [`undo`]: plans the undo of an import: per lead and code, the delete windows cut around
//!   what else is there.
//! - [`pipeline`]: wires the stages for an import.
//! - [`dry_run`]: `validate` / `import --dry-run`: read, validate and report, nothing sent.
//! - [`summary`], [`html_report`]: a run's summary as JSON for schedulers, and as a page for
//!   people (counts, throughput chart, errors grouped by message).
//! - [`preflight`]: `lsq-sync check`: keys, host, the input's activity codes and fields.
//! - [`commands`]: the CLI commands, thin wrappers over the above.
//! - [`api`]: LeadSquared's wire types, shared by the client and the simulator.
//! - [`simulator`]: an in-process HTTP simulator of the LeadSquared API for tests and demos.
//! - [`xlsx`]: reads XLSX, XLS and ODS sheets into the same rows as CSV.
//! - [`sources`]: JSON Lines input, and standard input and PostgreSQL queries snapshotted to a
//!   file beside the ledger so a run over them can resume.
//! - [`notify`], [`metrics`]: a run's end posted to a webhook, and written for Prometheus.
//! - [`mapping`]: the sheet's own headers and constants mapped to API fields; `--match-by`.
//! - [`dates`]: spreadsheet date formats and time zones to the API's UTC date-times.
//! - [`config`], [`cli`], [`quota`], [`stats`], [`progress`], [`abort`], [`exit`]: settings,
//!   flags, the rate quota, counters and summary, the progress bar, the stop signal, exit codes.

pub mod abort;
pub mod activities;
pub mod api;
pub mod batch;
pub mod calls;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod dates;
pub mod dry_run;
pub mod exit;
pub mod export;
pub mod html_report;
pub mod input;
pub mod leads;
pub mod ledger;
pub mod mapping;
pub mod metrics;
pub mod notify;
pub mod outage;
pub mod pace;
pub mod pipeline;
pub mod preflight;
pub mod progress;
pub mod quota;
pub mod remote;
pub mod report;
pub mod resolve;
pub mod rows;
pub mod secure;
pub mod send;
pub mod simulator;
pub mod sources;
pub mod stats;
pub mod summary;
pub mod undo;
pub mod validate;
pub mod xlsx;
