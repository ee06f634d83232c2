//! Integration tests: the real `lsq-sync` binary (and the library) against the embedded
//! simulator on 127.0.0.1 with a free port. One test binary, so the link step is paid once.

mod delete;
mod export;
mod hostile;
mod import;
mod properties;
mod resume;
mod support;
mod undo;
