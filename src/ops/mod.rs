//! The commands beside the import, each over the same [`crate::lsq::calls::Api`]: reading
//! activities out, deleting them, undoing an import, and checking a setup before a run.
//!
//! - [`leads`]: reads the `--leads` input (a CSV file or a list of ids).
//! - [`export`]: every activity of many leads into a CSV file the import reads as it is.
//! - [`deletes`]: the two queued-delete endpoints, their argument checks, `--wait` polling.
//! - [`undo`]: plans the undo of an import: per lead and code, the delete windows cut around
//!   what else is there.
//! - [`check`]: `lsq-sync check`: keys, host, the input's activity codes and fields.
//! - [`mirror`]: how a keyed sync deletes (`--delete-missing`, `--replace-changed`): as undo does.

pub(crate) mod check;
pub(crate) mod deletes;
pub(crate) mod export;
pub(crate) mod leads;
pub(crate) mod mirror;
pub(crate) mod undo;
