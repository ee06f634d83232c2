//! lsq-sync: move CRM activity data into and out of LeadSquared in bulk, paced to the account's
//! quota, retried, and reported row by row.
//!
//! The import is one pipeline, each stage a module with one job, joined by bounded channels so
//! memory stays flat however large the input is:
//!
//! ```text
//! input (read CSV) -> validate -> batch (<= 25) -> pace (governor) -> send (client, retry) -> report
//! ```
//!
//! - [`api`]: LeadSquared's wire types, shared by the client and the simulator.
//! - [`quota`]: the "CALLS per WINDOW" rate quota.
//! - [`simulator`]: an in-process HTTP simulator of the LeadSquared API for tests and demos.

pub mod api;
pub mod quota;
pub mod simulator;
