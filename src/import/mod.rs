//! The import, stage by stage: validate each input row, batch the valid ones, send each batch
//! through the run's [`crate::lsq::calls::Api`], check calls whose outcome is unknown, and wire
//! it all together with the ledger and the report.
//!
//! - [`validate`]: maps the header once, checks each row, builds the activity to post.
//! - [`batch`]: groups rows into bulk calls of at most 25 valid rows.
//! - [`send`]: posts a batch and acts on each answer (retry, split, check, stop).
//! - [`resolve`]: after a bulk post with an unknown outcome, finds which rows were created.
//! - [`certainty`]: chooses how a check round reads the server (lead by lead, or a code's
//!   activities account-wide), whichever costs fewer calls.
//! - [`plan`]: plans a run into the ledger: every row read, validated and recorded, or the run
//!   to resume found.
//! - [`run`]: runs the plan: ledger -> batch -> send -> report.
//! - [`dry_run`]: `validate` / `import --dry-run`: read, validate and report, nothing sent.

pub mod batch;
pub(crate) mod certainty;
pub(crate) mod deletion;
pub mod dry_run;
pub(crate) mod keyed;
pub(crate) mod keymap;
pub(crate) mod plan;
pub(crate) mod resolve;
pub(crate) mod run;
pub(crate) mod send;
pub mod validate;
