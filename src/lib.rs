//! lsq-sync: move CRM activity data into LeadSquared in bulk, paced to the account's quota,
//! retried, and reported row by row.
//!
//! The import is one pipeline, each stage a module with one job, joined by bounded channels so
//! memory stays flat however large the input is; the folders follow it:
//!
//! ```text
//! input/ -> import/ (validate -> batch -> send) -> lsq/ (pace, client, retry) -> report/
//!                      \___________ ledger (every row, call and outcome) ___________/
//! ```
//!
//! - [`input`]: reading rows: CSV ([`input::InputSource`] picks the reader), spreadsheets
//!   ([`input::xlsx`]), JSON Lines, standard input and PostgreSQL snapshots
//!   ([`input::sources`]), the row types ([`input::rows`]), the sheet's headers and constants
//!   mapped to API fields ([`input::mapping`]), date formats and time zones ([`input::dates`]).
//! - [`import`]: the import's own stages: [`import::plan`] (every row validated and recorded
//!   in the ledger before anything is sent, or the run to resume), [`import::validate`],
//!   [`import::batch`], [`import::send`], [`import::resolve`] (which rows of an unknown-outcome
//!   call exist), the [`import::run`] that runs the plan, and [`import::dry_run`]; for a keyed
//!   sync (`--key`), the classification step [`import::keyed`], the key map read back from the
//!   account [`import::keymap`], and the deletion stage [`import::deletion`].
//! - [`lsq`]: talking to LeadSquared: wire types ([`lsq::api`]), the client and its one
//!   classifier ([`lsq::client`]), the rate quota and the pacer ([`lsq::quota`],
//!   [`lsq::pace`]), the outage gate ([`lsq::outage`]), keys and hosts ([`lsq::secure`]), Get
//!   Activities of a lead ([`lsq::activities`]) and of a code account-wide ([`lsq::by_event`]),
//!   date windows applied on our side ([`lsq::window`]), and [`lsq::calls::Api`], the one
//!   paced, counted, retried call every command makes.
//! - [`ledger`]: the SQLite record of every run, row and call, and a keyed sync's key map;
//!   what makes resuming safe. All the program's SQL is there.
//! - [`report`]: per-row results in input order, and a run's end: counters ([`report::stats`]),
//!   the JSON summary ([`report::summary`]), the HTML page ([`report::html`]), Prometheus
//!   metrics ([`report::metrics`]) and the webhook ([`report::notify`]).
//! - [`ops`]: the other commands' work: [`ops::export`], [`ops::deletes`], [`ops::undo`],
//!   [`ops::check`], the `--leads` input ([`ops::leads`]), and how a keyed sync deletes
//!   ([`ops::mirror`], undo's surgical windows, handed to the import).
//! - [`commands`]: the CLI commands, thin wrappers over the above.
//! - [`simulator`]: an in-process HTTP simulator of the LeadSquared API for tests and demos.
//! - [`config`], [`cli`], [`progress`], [`abort`], [`exit`]: settings (defaults < file < env <
//!   flags), flags, the progress bar, the stop signal, exit codes.
//!
//! Modules import each other without a circle, and so do the folders (unit tests aside, which
//! use the simulator), from the bottom up: `lsq` < `ledger` < `input` < `config` < `report` <
//! `import` < `ops` < `commands`. `scripts/module_graph.py` prints the graph and fails on a
//! circle. Only what the binary and the tests use is `pub`.

// The map above and the modules' own docs link to crate-private items; `cargo doc
// --document-private-items` renders them.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod abort;
pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod confirm;
pub mod exit;
pub mod import;
pub mod input;
pub mod ledger;
pub mod lsq;
pub(crate) mod ops;
pub mod progress;
pub mod report;
pub mod simulator;
