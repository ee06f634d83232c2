//! The config file as written (`config/lsq-sync.toml`, or `--config`): one struct per TOML
//! section, every key optional, unknown keys refused; where it is found, and the warning for a
//! file holding keys that others may read. [`super::Settings::resolve`] merges it with the
//! environment and the flags.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, DEFAULT_CONFIG_PATH, LogFormat, NotifyOn};
use crate::ledger::Durability;

/// The config file as written (`config/lsq-sync.toml`); every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub api: FileApi,
    #[serde(default)]
    pub pacing: FilePacing,
    #[serde(default)]
    pub retry: FileRetry,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub ledger: FileLedger,
    #[serde(default)]
    pub input: FileInput,
    /// `"Sheet header" = "ApiField"`.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// `ApiField = "value"` (or a bare number, `ActivityEvent = 201`) for every row.
    #[serde(default)]
    pub constants: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub nightly: FileNightly,
    #[serde(default)]
    pub report: FileReport,
    #[serde(default)]
    pub source: FileSource,
    #[serde(default)]
    pub notify: FileNotify,
    #[serde(default)]
    pub metrics: FileMetrics,
    #[serde(default)]
    pub sync: super::FileSync,
}

/// `[source]` section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSource {
    pub postgres_url: Option<String>,
    pub query: Option<String>,
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field(
                "postgres_url",
                &self
                    .postgres_url
                    .as_deref()
                    .map(crate::input::sources::postgres::redact_url),
            )
            .field("query", &self.query)
            .finish()
    }
}

/// `[notify]` section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileNotify {
    pub url: Option<String>,
    pub on: Option<NotifyOn>,
    pub timeout: Option<String>,
}

impl fmt::Debug for FileNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileNotify")
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("on", &self.on)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `[metrics]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMetrics {
    pub file: Option<PathBuf>,
}

/// `[input]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileInput {
    pub match_by: Option<String>,
    pub timezone: Option<String>,
    pub date_format: Option<String>,
    pub sheet: Option<String>,
    pub format: Option<crate::input::sources::InputFormat>,
    pub max_cell_bytes: Option<usize>,
    pub max_row_bytes: Option<usize>,
    pub max_columns: Option<usize>,
}

/// `[nightly]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileNightly {
    pub max_invalid: Option<f64>,
}

/// `[report]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileReport {
    pub excel_safe: Option<bool>,
}

/// `[ledger]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLedger {
    pub durability: Option<Durability>,
}

/// `[api]` section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileApi {
    pub host: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub allow_insecure_http: Option<bool>,
}

impl fmt::Debug for FileApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileApi")
            .field("host", &self.host)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// `[pacing]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePacing {
    pub rate: Option<String>,
    pub margin: Option<f64>,
    pub concurrency: Option<usize>,
    pub batch_size: Option<usize>,
}

/// `[retry]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRetry {
    pub max_attempts: Option<u32>,
    pub backoff_base: Option<String>,
    pub backoff_max: Option<String>,
    pub outage_patience: Option<String>,
}

/// `[log]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLog {
    pub format: Option<LogFormat>,
}

impl FileConfig {
    /// Reads and parses a config file; unknown keys are an error so typos do not pass silently.
    pub(crate) fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Whether this file holds an access key or a secret key.
    pub(crate) fn holds_keys(&self) -> bool {
        self.api.access_key.is_some() || self.api.secret_key.is_some()
    }

    /// The config file to use: `explicit` (from `--config` or `LSQ_CONFIG`) must exist; without
    /// it, [`DEFAULT_CONFIG_PATH`] is used when present.
    pub(crate) fn discover(
        explicit: Option<&Path>,
    ) -> Result<Option<(PathBuf, FileConfig)>, ConfigError> {
        match explicit {
            Some(path) => Ok(Some((path.to_path_buf(), FileConfig::load(path)?))),
            None => {
                let path = Path::new(DEFAULT_CONFIG_PATH);
                if path.is_file() {
                    Ok(Some((path.to_path_buf(), FileConfig::load(path)?)))
                } else {
                    Ok(None)
                }
            }
        }
    }
}

/// A warning to show when `file` holds keys and `path` can be read by other users (group or
/// others may read it); `None` when it holds no keys, is private, or this is not unix.
pub(crate) fn key_file_warning(path: &Path, file: &FileConfig) -> Option<String> {
    if !file.holds_keys() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o044 != 0).then(|| {
            format!(
                "warning: config file {} holds API keys and can be read by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}
