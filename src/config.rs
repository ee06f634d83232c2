//! Settings: the one place that merges defaults < config file < environment < flags into a plain
//! struct with real types, which is all the rest of the program sees.
//!
//! Raw inputs come in as [`FileConfig`] (TOML), an environment lookup and [`Overrides`] (the
//! parsed command line); [`Settings::resolve`] validates them once and returns [`Settings`] or a
//! [`ConfigError`] naming the source of the bad value. Secrets are wrapped in [`Secret`] so that
//! no `Debug` or `Display` of the settings can print them.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod file;
mod lsq;
mod sync;

use file::FileInput;
pub(crate) use file::{FileConfig, key_file_warning};
pub use sync::{DeleteLimit, SyncSettings};
pub(crate) use sync::{FileSync, SyncOverrides};

use crate::input::dates::{DateFormat, DateReader, parse_zone};
use crate::input::mapping::{ColumnMap, parse_pair};
use crate::input::rows::InputLimits;
use crate::ledger::{Durability, InputRecord};
use crate::lsq::api::MAX_BATCH;
use crate::lsq::quota::{RateQuota, parse_duration};
use crate::lsq::secure::Secret;

/// Where the config file is looked for when neither `--config` nor `LSQ_CONFIG` names one.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "config/lsq-sync.toml";

/// When a run's end is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Only runs that did not end with exit 0.
    Failure,
    /// Failures, and any run whose status differs from the previous run's (so a recovery to
    /// `ok` is announced once, and quiet successes stay quiet).
    #[default]
    Change,
    /// Every run.
    Always,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The resolved settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the API, e.g. `https://api-in21.leadsquared.com`; `None` until a command
    /// that talks to the API needs it (or `--simulate` supplies one).
    pub host: Option<String>,
    /// `x-LSQ-AccessKey`.
    pub access_key: Option<Secret>,
    /// `x-LSQ-SecretKey`.
    pub secret_key: Option<Secret>,
    /// The account's quota; no window of `rate.window` may ever hold more than `rate.calls`
    /// requests, retries included.
    pub rate: RateQuota,
    /// Extra spacing between calls, as a fraction of the ideal spacing, so that network jitter
    /// cannot squeeze CALLS+1 arrivals into one window at the server.
    pub pacing_margin: f64,
    /// Attempts per batch, the first included, before its rows are marked failed.
    pub max_attempts: NonZeroU32,
    /// Upper bound on requests in flight at once; the pacer, not this, sets the rate.
    pub concurrency: usize,
    /// Activities per bulk call (1..=25).
    pub batch_size: usize,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, so a server that never answers cannot hang the run.
    pub request_timeout: Duration,
    /// First backoff delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest single backoff delay.
    pub backoff_max: Duration,
    /// How long the run waits for an API that fails across the board (outage mode) before it
    /// stops cleanly, resumable.
    pub outage_patience: Duration,
    pub log_format: LogFormat,
    /// How hard each ledger commit is pushed to disk.
    pub ledger_durability: Durability,
    /// Ceilings on cell, row and header size that keep memory bounded against hostile files.
    pub input_limits: InputLimits,
    /// Prefix report cells a spreadsheet would run as a formula with `'` (retry strips it).
    pub excel_safe: bool,
    /// Send nothing if more than this percentage of a new run's rows is invalid.
    pub max_invalid: Option<f64>,
    /// Allow `http://` to a host that is not loopback: the keys would cross the network in
    /// clear text, so this is off unless asked for.
    pub allow_insecure_http: bool,
    /// How input files are read: sheet, column mapping, lead matching, dates.
    pub input: InputSettings,
    /// A PostgreSQL query to import from instead of a file (`[source]`, `--from-postgres`).
    pub source: SourceSettings,
    /// Who hears about a run's end (`[notify]`, `--notify-url`).
    pub notify: NotifySettings,
    /// A Prometheus textfile written at the end of a run (`[metrics] file`, `--metrics-file`).
    pub metrics_file: Option<PathBuf>,
    /// `-q`: print only the final status line (and errors), no progress bar.
    pub quiet: bool,
    /// Keyed sync: the key column, and how keys that changed or went are treated.
    pub sync: SyncSettings,
}

/// Where rows come from when no input file is named: `[source]` or `--from-postgres`.
#[derive(Debug, Clone, Default)]
pub struct SourceSettings {
    /// `postgres://USER@HOST:PORT/DB`; a `Secret` because it may hold a password, so no
    /// `Debug` of the settings prints it.
    pub postgres_url: Option<Secret>,
    /// The `SELECT` whose rows are the input.
    pub query: Option<String>,
}

/// The webhook told about a run's end.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// An https URL (http only to loopback, or with `allow_insecure_http`); a `Secret` because
    /// webhook URLs (Slack's) carry their token in the path.
    pub url: Option<Secret>,
    /// When to post.
    pub on: NotifyOn,
    /// The whole POST, connect included; a webhook that hangs must not hold the job.
    pub timeout: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            url: None,
            on: NotifyOn::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How import, retry and validate read their input (`[input]`, `[mapping]`, `[constants]`,
/// `--map`, `--set`, `--match-by`, `--timezone`, `--date-format`, `--sheet`).
#[derive(Debug, Clone, Default)]
pub struct InputSettings {
    /// Headers renamed to API fields, constant fields, and the lead field leads are found by.
    pub columns: ColumnMap,
    /// How `ActivityDateTime` cells are read: format and time zone.
    pub dates: DateReader,
    /// The worksheet of a spreadsheet input, by name or 1-based position; `None` for the first.
    pub sheet: Option<String>,
    /// `--format`: how a non-spreadsheet input is read; `None` decides by the extension.
    pub format: Option<crate::input::sources::InputFormat>,
}

impl InputSettings {
    /// What the ledger records of how a run reads its input; `sheet` is the worksheet actually
    /// read (none for a report, whatever the settings say).
    pub(crate) fn record(&self, sheet: Option<&str>) -> InputRecord {
        InputRecord {
            sheet: sheet.map(str::to_string),
            mapping: self.columns.renames().to_vec(),
            constants: self.columns.constants().to_vec(),
            match_by: self.columns.match_by().map(str::to_string),
            timezone: self.dates.zone.map(|z| z.name().to_string()),
            date_format: self
                .dates
                .format
                .as_ref()
                .map(|f| f.as_written().to_string()),
        }
    }

    /// The settings a run recorded, rebuilt so that its rows are read as the run read them.
    pub(crate) fn from_record(record: InputRecord) -> Result<InputSettings, ConfigError> {
        const SOURCE: &str = "the run's recorded input options";
        let invalid = |message: String| ConfigError::Invalid {
            source_name: SOURCE.to_string(),
            message,
        };
        let tagged = |pairs: Vec<(String, String)>| {
            pairs
                .into_iter()
                .map(|(name, value)| (SOURCE.to_string(), name, value))
                .collect()
        };
        let columns = ColumnMap::new(
            tagged(record.mapping),
            tagged(record.constants),
            record.match_by,
        )?;
        let format = match record.date_format {
            Some(text) => DateFormat::parse(&text).map_err(|e| invalid(e.to_string()))?,
            None => None,
        };
        let zone = match record.timezone {
            Some(name) => Some(parse_zone(&name).map_err(invalid)?),
            None => None,
        };
        Ok(InputSettings {
            columns,
            dates: DateReader { format, zone },
            sheet: record.sheet,
            // What the ledger holds of a run is CSV whatever the input was.
            format: None,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: None,
            access_key: None,
            secret_key: None,
            rate: RateQuota::DEFAULT,
            pacing_margin: 0.02,
            max_attempts: NonZeroU32::new(6).unwrap_or(NonZeroU32::MIN),
            concurrency: 64,
            batch_size: MAX_BATCH,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            outage_patience: Duration::from_secs(15 * 60),
            log_format: LogFormat::Text,
            ledger_durability: Durability::Full,
            allow_insecure_http: false,
            input: InputSettings::default(),
            max_invalid: None,
            input_limits: InputLimits::default(),
            excel_safe: false,
            source: SourceSettings::default(),
            notify: NotifySettings::default(),
            metrics_file: None,
            quiet: false,
            sync: SyncSettings::default(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub host: Option<String>,
    pub rate: Option<RateQuota>,
    pub max_attempts: Option<u32>,
    /// `--outage-patience`.
    pub outage_patience: Option<Duration>,
    pub concurrency: Option<usize>,
    pub batch_size: Option<usize>,
    pub connect_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub log_format: Option<LogFormat>,
    /// `--excel-safe`: `Some(true)` when given.
    pub excel_safe: Option<bool>,
    pub max_invalid: Option<f64>,
    /// `--allow-insecure-http`; `None` (flag absent) leaves the lower layers' value.
    pub allow_insecure_http: Option<bool>,
    pub input: InputOverrides,
    /// `--from-postgres URL` and `--query SQL`.
    pub postgres_url: Option<String>,
    pub query: Option<String>,
    /// `--notify-url`, `--notify-on`, `--metrics-file`.
    pub notify_url: Option<String>,
    pub notify_on: Option<NotifyOn>,
    pub metrics_file: Option<PathBuf>,
    /// `-q`.
    pub quiet: bool,
    /// `--key`, `--key-field`, `--replace-changed`, `--delete-missing`, `--max-delete`.
    pub sync: SyncOverrides,
}

/// Input flags (`cli::InputArgs`) as given; empty lists and `None` leave the lower layers' value.
#[derive(Debug, Default, Clone)]
pub(crate) struct InputOverrides {
    /// `--map "HEADER=FIELD"`, in order.
    pub map: Vec<String>,
    /// `--set "FIELD=VALUE"`, in order.
    pub set: Vec<String>,
    pub match_by: Option<String>,
    pub timezone: Option<String>,
    pub date_format: Option<String>,
    pub sheet: Option<String>,
    pub format: Option<crate::input::sources::InputFormat>,
}

/// A bad setting, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{source_name}: {message}")]
    Invalid {
        /// e.g. `"LSQ_RATE"`, `"--batch-size"`, `"config file [pacing] rate"`.
        source_name: String,
        message: String,
    },
    /// A column mapping or constant that names no API field; the message names its source.
    #[error(transparent)]
    Mapping(#[from] crate::input::mapping::MappingError),
}

fn invalid(source_name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

fn duration_from(source_name: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text.trim()).ok_or_else(|| {
        invalid(
            source_name,
            format!("{text:?} is not a duration (use e.g. 500ms, 10s, 2m)"),
        )
    })
}

fn rate_from(source_name: &str, text: &str) -> Result<RateQuota, ConfigError> {
    text.parse()
        .map_err(|e: crate::lsq::quota::RateQuotaError| invalid(source_name, e.to_string()))
}

fn percent_from(source_name: &str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            source_name,
            format!("{value} is not a percentage from 0 to 100"),
        ))
    }
}

fn number_from<T: std::str::FromStr>(source_name: &str, text: &str) -> Result<T, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| invalid(source_name, format!("{text:?} is not a whole number")))
}

impl Settings {
    /// Layers defaults, the file, the environment (through `env`, so tests need not touch the
    /// process environment) and the flags, then checks the result.
    pub(crate) fn resolve(
        file: Option<&FileConfig>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();

        if let Some(file) = file {
            let api = &file.api;
            if let Some(host) = &api.host {
                s.host = Some(host.clone());
            }
            if let Some(key) = &api.access_key {
                s.access_key = Some(Secret::new(key.clone()));
            }
            if let Some(key) = &api.secret_key {
                s.secret_key = Some(Secret::new(key.clone()));
            }
            if let Some(t) = &api.connect_timeout {
                s.connect_timeout = duration_from("config file [api] connect_timeout", t)?;
            }
            if let Some(t) = &api.request_timeout {
                s.request_timeout = duration_from("config file [api] request_timeout", t)?;
            }
            if let Some(allow) = api.allow_insecure_http {
                s.allow_insecure_http = allow;
            }
            if let Some(rate) = &file.pacing.rate {
                s.rate = rate_from("config file [pacing] rate", rate)?;
            }
            if let Some(margin) = file.pacing.margin {
                s.pacing_margin = margin;
            }
            if let Some(n) = file.pacing.concurrency {
                s.concurrency = n;
            }
            if let Some(n) = file.pacing.batch_size {
                s.batch_size = n;
            }
            if let Some(n) = file.retry.max_attempts {
                s.max_attempts = NonZeroU32::new(n).ok_or_else(|| {
                    invalid("config file [retry] max_attempts", "must be at least 1")
                })?;
            }
            if let Some(t) = &file.retry.backoff_base {
                s.backoff_base = duration_from("config file [retry] backoff_base", t)?;
            }
            if let Some(t) = &file.retry.backoff_max {
                s.backoff_max = duration_from("config file [retry] backoff_max", t)?;
            }
            if let Some(t) = &file.retry.outage_patience {
                s.outage_patience = duration_from("config file [retry] outage_patience", t)?;
            }
            if let Some(format) = file.log.format {
                s.log_format = format;
            }
            if let Some(durability) = file.ledger.durability {
                s.ledger_durability = durability;
            }
            if let Some(p) = file.nightly.max_invalid {
                s.max_invalid = Some(percent_from("config file [nightly] max_invalid", p)?);
            }
            let input = &file.input;
            let limits = &mut s.input_limits;
            for (value, slot) in [
                (input.max_cell_bytes, &mut limits.max_cell_bytes),
                (input.max_row_bytes, &mut limits.max_row_bytes),
                (input.max_columns, &mut limits.max_columns),
            ] {
                if let Some(n) = value {
                    *slot = n;
                }
            }
            if let Some(excel_safe) = file.report.excel_safe {
                s.excel_safe = excel_safe;
            }
            if let Some(url) = &file.source.postgres_url {
                s.source.postgres_url = Some(Secret::new(url.clone()));
            }
            s.source.query.clone_from(&file.source.query);
            if let Some(url) = &file.notify.url {
                s.notify.url = Some(Secret::new(url.clone()));
            }
            if let Some(on) = file.notify.on {
                s.notify.on = on;
            }
            if let Some(t) = &file.notify.timeout {
                s.notify.timeout = duration_from("config file [notify] timeout", t)?;
            }
            s.metrics_file.clone_from(&file.metrics.file);
        }

        if let Some(host) = env("LSQ_HOST").filter(|v| !v.trim().is_empty()) {
            s.host = Some(host);
        }
        if let Some(key) = env("LSQ_ACCESS_KEY").filter(|v| !v.is_empty()) {
            s.access_key = Some(Secret::new(key));
        }
        if let Some(key) = env("LSQ_SECRET_KEY").filter(|v| !v.is_empty()) {
            s.secret_key = Some(Secret::new(key));
        }
        if let Some(rate) = env("LSQ_RATE") {
            s.rate = rate_from("LSQ_RATE", &rate)?;
        }
        if let Some(n) = env("LSQ_MAX_ATTEMPTS") {
            let n: u32 = number_from("LSQ_MAX_ATTEMPTS", &n)?;
            s.max_attempts = NonZeroU32::new(n)
                .ok_or_else(|| invalid("LSQ_MAX_ATTEMPTS", "must be at least 1"))?;
        }
        if let Some(t) = env("LSQ_OUTAGE_PATIENCE") {
            s.outage_patience = duration_from("LSQ_OUTAGE_PATIENCE", &t)?;
        }
        if let Some(n) = env("LSQ_CONCURRENCY") {
            s.concurrency = number_from("LSQ_CONCURRENCY", &n)?;
        }
        if let Some(t) = env("LSQ_CONNECT_TIMEOUT") {
            s.connect_timeout = duration_from("LSQ_CONNECT_TIMEOUT", &t)?;
        }
        if let Some(t) = env("LSQ_REQUEST_TIMEOUT") {
            s.request_timeout = duration_from("LSQ_REQUEST_TIMEOUT", &t)?;
        }
        if let Some(v) = env("LSQ_ALLOW_INSECURE_HTTP").filter(|v| !v.trim().is_empty()) {
            s.allow_insecure_http = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => {
                    return Err(invalid(
                        "LSQ_ALLOW_INSECURE_HTTP",
                        format!("{v:?} is not true or false"),
                    ));
                }
            };
        }
        if let Some(p) = env("LSQ_MAX_INVALID").filter(|v| !v.trim().is_empty()) {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| invalid("LSQ_MAX_INVALID", format!("{p:?} is not a percentage")))?;
            s.max_invalid = Some(percent_from("LSQ_MAX_INVALID", p)?);
        }
        if let Some(url) = env("LSQ_NOTIFY_URL").filter(|v| !v.trim().is_empty()) {
            s.notify.url = Some(Secret::new(url));
        }
        if let Some(file) = env("LSQ_METRICS_FILE").filter(|v| !v.trim().is_empty()) {
            s.metrics_file = Some(PathBuf::from(file));
        }
        if let Some(f) = env("LSQ_LOG_FORMAT") {
            s.log_format = match f.trim().to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(invalid(
                        "LSQ_LOG_FORMAT",
                        format!("{f:?} is not text or json"),
                    ));
                }
            };
        }

        if let Some(host) = &flags.host {
            s.host = Some(host.clone());
        }
        if let Some(rate) = flags.rate {
            s.rate = rate;
        }
        if let Some(n) = flags.max_attempts {
            s.max_attempts = NonZeroU32::new(n)
                .ok_or_else(|| invalid("--max-attempts", "must be at least 1"))?;
        }
        if let Some(t) = flags.outage_patience {
            s.outage_patience = t;
        }
        if let Some(n) = flags.concurrency {
            s.concurrency = n;
        }
        if let Some(n) = flags.batch_size {
            s.batch_size = n;
        }
        if let Some(t) = flags.connect_timeout {
            s.connect_timeout = t;
        }
        if let Some(t) = flags.request_timeout {
            s.request_timeout = t;
        }
        if let Some(f) = flags.log_format {
            s.log_format = f;
        }
        if let Some(allow) = flags.allow_insecure_http {
            s.allow_insecure_http = allow;
        }
        if let Some(p) = flags.max_invalid {
            s.max_invalid = Some(percent_from("--max-invalid", p)?);
        }
        if let Some(excel_safe) = flags.excel_safe {
            s.excel_safe = excel_safe;
        }
        if let Some(url) = &flags.postgres_url {
            s.source.postgres_url = Some(Secret::new(url.clone()));
        }
        if let Some(query) = &flags.query {
            s.source.query = Some(query.clone());
        }
        if let Some(url) = &flags.notify_url {
            s.notify.url = Some(Secret::new(url.clone()));
        }
        if let Some(on) = flags.notify_on {
            s.notify.on = on;
        }
        if let Some(file) = &flags.metrics_file {
            s.metrics_file = Some(file.clone());
        }
        s.quiet = flags.quiet;

        s.input = resolve_input(file, env, &flags.input)?;
        s.sync = sync::resolve_sync(file.map(|f| &f.sync), &flags.sync)?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(invalid(
                "batch size",
                format!(
                    "{} is outside 1..={MAX_BATCH} (the bulk endpoint's limit)",
                    self.batch_size
                ),
            ));
        }
        let limits = &self.input_limits;
        if limits.max_cell_bytes == 0 || limits.max_row_bytes == 0 || limits.max_columns == 0 {
            return Err(invalid(
                "config file [input]",
                "max_cell_bytes, max_row_bytes and max_columns must be at least 1",
            ));
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.pacing_margin) {
            return Err(invalid(
                "pacing margin",
                "must be between 0 and 1 (e.g. 0.02 for 2%)",
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(invalid("timeouts", "must be longer than zero"));
        }
        if let Some(host) = &self.host {
            crate::lsq::secure::check_host(host, self.allow_insecure_http)
                .map_err(|e| invalid("host", e.to_string()))?;
        }
        Ok(())
    }
}

/// The input settings: file, then environment (`LSQ_TIMEZONE`, `LSQ_DATE_FORMAT`), then flags.
/// Mapping pairs of the file come first and flags after, so a flag for the same header or field
/// wins.
fn resolve_input(
    file: Option<&FileConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &InputOverrides,
) -> Result<InputSettings, ConfigError> {
    let from_file = |pick: fn(&FileInput) -> &Option<String>, name: &str| {
        file.and_then(|f| pick(&f.input).clone())
            .map(|v| (v, format!("config file [input] {name}")))
    };
    let layered = |flag: &Option<String>, flag_name: &str, env_name: Option<&str>, file_value| {
        flag.clone()
            .map(|v| (v, flag_name.to_string()))
            .or_else(|| {
                env_name.and_then(|n| {
                    env(n)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (v, n.to_string()))
                })
            })
            .or(file_value)
    };
    let match_by = layered(
        &flags.match_by,
        "--match-by",
        None,
        from_file(|i| &i.match_by, "match_by"),
    );
    let timezone = layered(
        &flags.timezone,
        "--timezone",
        Some("LSQ_TIMEZONE"),
        from_file(|i| &i.timezone, "timezone"),
    );
    let date_format = layered(
        &flags.date_format,
        "--date-format",
        Some("LSQ_DATE_FORMAT"),
        from_file(|i| &i.date_format, "date_format"),
    );
    let sheet = layered(
        &flags.sheet,
        "--sheet",
        None,
        from_file(|i| &i.sheet, "sheet"),
    );

    let mut renames = Vec::new();
    let mut constants = Vec::new();
    if let Some(file) = file {
        for (header, field) in &file.mapping {
            renames.push((
                "config file [mapping]".to_string(),
                header.clone(),
                field.clone(),
            ));
        }
        for (field, value) in &file.constants {
            let source_name = "config file [constants]";
            let value = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    value.to_string()
                }
                other => {
                    return Err(invalid(
                        source_name,
                        format!("{field} = {other}: give a text or a number"),
                    ));
                }
            };
            constants.push((source_name.to_string(), field.clone(), value));
        }
    }
    for (flag, list, out) in [
        ("--map", &flags.map, &mut renames),
        ("--set", &flags.set, &mut constants),
    ] {
        for text in list {
            let (name, value) = parse_pair(flag, text)?;
            out.push((flag.to_string(), name, value));
        }
    }
    let columns = ColumnMap::new(renames, constants, match_by.map(|(v, _)| v))?;
    let format = match date_format {
        Some((text, source_name)) => {
            DateFormat::parse(&text).map_err(|e| invalid(&source_name, e.to_string()))?
        }
        None => None,
    };
    let zone = match timezone {
        Some((text, source_name)) => Some(parse_zone(&text).map_err(|e| invalid(&source_name, e))?),
        None => None,
    };
    Ok(InputSettings {
        columns,
        dates: DateReader { format, zone },
        sheet: sheet
            .map(|(v, _)| v.trim().to_string())
            .filter(|v| !v.is_empty()),
        format: flags.format.or(file.and_then(|f| f.input.format)),
    })
}

#[cfg(test)]
mod tests;
