//! Talking to LeadSquared: the wire types, the HTTP client and the one classifier of its
//! answers, the rate quota and the pacer that keeps to it, the outage gate, and the one paced,
//! counted, retried call every command makes through them.
//!
//! - [`api`]: LeadSquared's wire types (serde), shared by the client and the simulator.
//! - [`secure`]: keys that cannot be printed, the https-or-loopback host check, redaction.
//! - [`client`]: the HTTP client and [`client::classify`], what a response means.
//! - [`quota`]: a rate quota (`25/5s`) and durations as people write them.
//! - [`pace`]: the pacer: every call waits for a permit, a 429 slows the run.
//! - [`outage`]: the run-wide gate: an API failing across the board pauses every call.
//! - [`counters`]: the run's counters of calls, retries, rate limits, lookups.
//! - [`calls`]: [`calls::Api`], built once per run: permit, send, classify, retry.
//! - [`activities`]: Get Activities of a lead, every page, whatever `Offset` counts.
//! - [`by_event`]: Get Activities by Activity Event: one code, every lead, paged and read
//!   leniently.
//! - [`window`]: date windows applied on our side, since Get Activities documents no date
//!   filter.

pub(crate) mod activities;
pub mod api;
pub(crate) mod by_event;
pub(crate) mod calls;
pub(crate) mod client;
pub(crate) mod counters;
pub mod outage;
pub(crate) mod pace;
pub mod quota;
pub(crate) mod secure;
pub(crate) mod window;
