//! Integration tests: the real `lsq-sync` binary (and the library) against the embedded
//! simulator on 127.0.0.1 with a free port. One test binary, so the link step is paid once.

// Test helpers outside #[test] functions unwrap too: a panic there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod by_code;
mod certainty;
mod check;
mod delete;
mod export;
mod hostile;
mod import;
mod input;
mod nightly;
mod outage;
mod pacing;
mod postgres;
mod properties;
mod responses;
mod resume;
mod secrets;
mod streams;
mod stub;
mod support;
mod sync;
mod transport;
mod unattended;
mod undo;
