//! Inputs that are not a file the user names: standard input (`import -`) and a PostgreSQL
//! query (`--from-postgres`), plus the JSON Lines reader ([`jsonl`]) any input may use.
//!
//! A stream can be read only once, and resuming a run needs the same rows again. So a streamed
//! source enters here and leaves as a **snapshot**: a file beside the ledger
//! (`LEDGER.stdin.csv`, `LEDGER.stdin.jsonl`, `LEDGER.postgres.csv`) holding exactly what was
//! read, written under a temporary name and renamed when complete (a kill while reading leaves
//! no snapshot that looks whole). The run then works from the snapshot like any input file: the
//! ledger records its path and SHA-256, and every later step (validation, report, retry, undo)
//! is the file pipeline's. When the ledger holds an unfinished run of that snapshot, the
//! snapshot is reused and the stream is not read at all: that is the resume. `--fresh` (or
//! `--force`) takes a new snapshot.

pub(crate) mod jsonl;
pub(crate) mod postgres;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::{info, warn};

use crate::ledger::{Durability, Ledger, LedgerError};

/// How an input's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// CSV with a header row (spreadsheets are still read by their extension).
    Csv,
    /// JSON Lines: one object per line, keys as column names.
    Jsonl,
}

/// A source read once, to be snapshotted before the run.
#[derive(Debug, Clone)]
pub(crate) enum Stream {
    /// Standard input, in the given format.
    Stdin(InputFormat),
    /// The CSV a query's `COPY ... TO STDOUT` writes.
    Postgres(postgres::PgSource),
}

/// A stream that could not be snapshotted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
    #[error("cannot write the snapshot {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("standard input: cannot read: {0}")]
    Stdin(std::io::Error),
    #[error("{0}: nothing was read (an empty stream); nothing to import")]
    Empty(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Stream {
    /// What the stream is, for messages (a URL without its password).
    pub(crate) fn describe(&self) -> String {
        match self {
            Stream::Stdin(_) => "standard input".to_string(),
            Stream::Postgres(pg) => format!("PostgreSQL {}", pg.shown_url()),
        }
    }

    /// Where the snapshot of this stream lives, beside `ledger`.
    pub(crate) fn snapshot_path(&self, ledger: &Path) -> PathBuf {
        let suffix = match self {
            Stream::Stdin(InputFormat::Csv) => "stdin.csv",
            Stream::Stdin(InputFormat::Jsonl) => "stdin.jsonl",
            Stream::Postgres(_) => "postgres.csv",
        };
        PathBuf::from(format!("{}.{suffix}", ledger.display()))
    }
}

/// What [`prepare_snapshot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub path: PathBuf,
    /// `false` when an unfinished run's snapshot was kept for a resume.
    pub taken: bool,
    /// Bytes in the snapshot.
    pub bytes: u64,
}

/// Makes the snapshot the run will read: reuses the one an unfinished run of `kind` in the
/// ledger was working from (unless `renew`), else reads the stream into a new one.
pub(crate) async fn prepare_snapshot(
    stream: &Stream,
    ledger_path: &Path,
    kind: &str,
    renew: bool,
    durability: Durability,
) -> Result<Snapshot, SourceError> {
    let path = stream.snapshot_path(ledger_path);
    if !renew && let Some(run) = unfinished_run_of(&path, ledger_path, kind, durability).await? {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        info!(
            run,
            "resuming run {run} from its snapshot {} ({bytes} bytes); {} is not read again",
            path.display(),
            stream.describe()
        );
        return Ok(Snapshot {
            path,
            taken: false,
            bytes,
        });
    }
    let bytes = take_snapshot(stream, &path).await?;
    info!(
        "{} read into the snapshot {} ({bytes} bytes)",
        stream.describe(),
        path.display()
    );
    Ok(Snapshot {
        path,
        taken: true,
        bytes,
    })
}

/// The unfinished run of `kind` over the snapshot at `path`, if the snapshot and the ledger
/// both exist.
async fn unfinished_run_of(
    path: &Path,
    ledger_path: &Path,
    kind: &str,
    durability: Durability,
) -> Result<Option<i64>, SourceError> {
    let (Ok(key), true) = (std::fs::canonicalize(path), ledger_path.exists()) else {
        return Ok(None);
    };
    let (ledger_path, kind) = (ledger_path.to_path_buf(), kind.to_string());
    let key = key.display().to_string();
    let found = tokio::task::spawn_blocking(move || -> Result<Option<i64>, LedgerError> {
        let ledger = Ledger::open(&ledger_path, durability)?;
        let run = ledger.unfinished_run(&kind, &key)?.map(|r| r.id);
        ledger.close();
        Ok(run)
    })
    .await
    .map_err(|e| SourceError::Snapshot {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })??;
    Ok(found)
}

/// Reads the whole stream into `path` (via `PATH.partial`, renamed when complete and synced).
async fn take_snapshot(stream: &Stream, path: &Path) -> Result<u64, SourceError> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let write_error = |source| SourceError::Snapshot {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let file = std::fs::File::create(&partial).map_err(write_error)?;
    // A stream that fails halfway (a query error at row 1,000, a broken pipe) leaves nothing
    // behind that could pass for a snapshot.
    let bytes = match read_stream(stream, file, path).await {
        Ok(0) => Err(SourceError::Empty(stream.describe())),
        other => other,
    };
    let bytes = bytes.inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    if path.exists() {
        warn!("replacing the earlier snapshot {}", path.display());
    }
    std::fs::rename(&partial, path).map_err(write_error)?;
    Ok(bytes)
}

/// Copies the whole stream into `file`, synced; returns the bytes copied.
async fn read_stream(
    stream: &Stream,
    mut file: std::fs::File,
    path: &Path,
) -> Result<u64, SourceError> {
    let write_error = |source| SourceError::Snapshot {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match stream {
        Stream::Stdin(_) => {
            let mut out = file.try_clone().map_err(write_error)?;
            tokio::task::spawn_blocking(move || {
                std::io::copy(&mut std::io::stdin().lock(), &mut out)
            })
            .await
            .map_err(|e| SourceError::Stdin(std::io::Error::other(e.to_string())))?
            .map_err(SourceError::Stdin)?
        }
        Stream::Postgres(pg) => pg.copy_csv(&mut file, path).await?,
    };
    file.flush()
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    Ok(bytes)
}

/// Takes a snapshot of `stream` at `path` whatever exists there, for a dry run (which keeps no
/// ledger and so never resumes).
pub(crate) async fn snapshot_for_dry_run(stream: &Stream, path: &Path) -> Result<u64, SourceError> {
    take_snapshot(stream, path).await
}
