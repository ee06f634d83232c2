//! Keyed sync settings (`[sync]`, `--key`, `--key-field`, `--replace-changed`,
//! `--delete-missing`, `--max-delete`): the config file's section and the flags in, one checked
//! [`SyncSettings`] out.

use std::fmt;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::lsq::api::MAX_CUSTOM_FIELD;

/// How an import matches its rows to activities made before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncSettings {
    /// The input column holding each row's own stable id (a call id): with it, import is an
    /// upsert by that key; without it, every valid row is a new activity.
    pub key: Option<String>,
    /// The custom field (`mx_Custom_<n>`) the key is written into on every activity the sync
    /// creates, so that a run whose ledger does not know a key can read the map back from the
    /// account.
    pub key_field: Option<String>,
    /// A row whose lead, code, date or owner changed deletes its old activity and creates the
    /// new one, instead of being reported as a conflict.
    pub replace_changed: bool,
    /// Delete the activities of keys that earlier runs created and the input lacks.
    pub delete_missing: bool,
    /// Above this, a run deletes nothing and sends nothing.
    pub max_delete: DeleteLimit,
}

/// The most deletions a keyed run may make: a count, or a share of the keys known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeleteLimit {
    Count(u64),
    /// Percent of the keys the key map holds before the run.
    Percent(f64),
}

impl Default for DeleteLimit {
    /// A nightly mirror normally deletes a few rows; a tenth of everything is an export gone
    /// wrong far more often than a real change.
    fn default() -> Self {
        DeleteLimit::Percent(10.0)
    }
}

impl DeleteLimit {
    /// `N` or `P%`.
    pub(crate) fn parse(text: &str) -> Result<DeleteLimit, String> {
        let text = text.trim();
        let bad =
            || format!("{text:?} is neither a number of deletions (50) nor a percentage (10%)");
        if let Some(percent) = text.strip_suffix('%') {
            let p: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{text:?}: a percentage is between 0% and 100%"));
            }
            return Ok(DeleteLimit::Percent(p));
        }
        text.parse().map(DeleteLimit::Count).map_err(|_| bad())
    }

    /// The most deletions allowed when the key map holds `known` keys.
    pub(crate) fn most(self, known: u64) -> u64 {
        match self {
            DeleteLimit::Count(n) => n,
            DeleteLimit::Percent(p) => (known as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl fmt::Display for DeleteLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteLimit::Count(n) => write!(f, "{n}"),
            DeleteLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `[sync]` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSync {
    pub key: Option<String>,
    pub key_field: Option<String>,
    pub replace_changed: Option<bool>,
    pub delete_missing: Option<bool>,
    /// A number of deletions, or a percentage written as a string (`"10%"`).
    pub max_delete: Option<toml::Value>,
}

/// The keyed sync flags as given; `None` leaves the config file's value.
#[derive(Debug, Default, Clone)]
pub(crate) struct SyncOverrides {
    pub key: Option<String>,
    pub key_field: Option<String>,
    pub replace_changed: Option<bool>,
    pub delete_missing: Option<bool>,
    pub max_delete: Option<String>,
}

/// The file's `[sync]`, then the flags, checked.
pub(crate) fn resolve_sync(
    file: Option<&FileSync>,
    flags: &SyncOverrides,
) -> Result<SyncSettings, ConfigError> {
    let mut s = SyncSettings::default();
    if let Some(file) = file {
        s.key.clone_from(&file.key);
        s.key_field.clone_from(&file.key_field);
        s.replace_changed = file.replace_changed.unwrap_or(false);
        s.delete_missing = file.delete_missing.unwrap_or(false);
        if let Some(value) = &file.max_delete {
            let text = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            s.max_delete = DeleteLimit::parse(&text)
                .map_err(|m| invalid("config file [sync] max_delete", m))?;
        }
    }
    if let Some(key) = &flags.key {
        s.key = Some(key.clone());
    }
    if let Some(field) = &flags.key_field {
        s.key_field = Some(field.clone());
    }
    if let Some(replace) = flags.replace_changed {
        s.replace_changed = replace;
    }
    if let Some(delete) = flags.delete_missing {
        s.delete_missing = delete;
    }
    if let Some(limit) = &flags.max_delete {
        s.max_delete = DeleteLimit::parse(limit).map_err(|m| invalid("--max-delete", m))?;
    }
    if let Some(key) = &s.key
        && key.trim().is_empty()
    {
        return Err(invalid("--key", "names no column"));
    }
    s.key = s.key.map(|k| k.trim().to_string());
    if let Some(field) = &s.key_field {
        s.key_field = Some(custom_field(field).ok_or_else(|| {
            invalid(
                "--key-field",
                format!(
                    "{field:?} is not a custom field (mx_Custom_1 .. mx_Custom_{MAX_CUSTOM_FIELD})"
                ),
            )
        })?);
    }
    if s.key.is_none() {
        for (set, flag) in [
            (s.key_field.is_some(), "--key-field"),
            (s.replace_changed, "--replace-changed"),
            (s.delete_missing, "--delete-missing"),
        ] {
            if set {
                return Err(invalid(
                    flag,
                    "works on rows matched by key: give --key COLUMN",
                ));
            }
        }
    }
    Ok(s)
}

/// `mx_Custom_<n>` (any case) in the API's spelling, for n in 1..=50.
fn custom_field(name: &str) -> Option<String> {
    let name = name.trim();
    let prefix = name.get(..10)?;
    if !prefix.eq_ignore_ascii_case("mx_custom_") {
        return None;
    }
    let digits = &name[10..];
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (1..=MAX_CUSTOM_FIELD)
        .contains(&n)
        .then(|| format!("mx_Custom_{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_limits_are_counts_or_percentages() {
        assert_eq!(DeleteLimit::parse("50"), Ok(DeleteLimit::Count(50)));
        assert_eq!(
            DeleteLimit::parse(" 12.5% "),
            Ok(DeleteLimit::Percent(12.5))
        );
        assert!(DeleteLimit::parse("ten").is_err());
        assert!(DeleteLimit::parse("120%").is_err());
        assert!(DeleteLimit::parse("-3").is_err());
        assert_eq!(DeleteLimit::Percent(10.0).most(3000), 300);
        assert_eq!(DeleteLimit::Percent(10.0).most(9), 0);
        assert_eq!(DeleteLimit::Count(7).most(0), 7);
    }

    #[test]
    fn flags_win_over_the_file_and_are_checked() {
        let file = FileSync {
            key: Some("call_id".into()),
            key_field: Some("MX_CUSTOM_9".into()),
            max_delete: Some(toml::Value::Integer(5)),
            ..FileSync::default()
        };
        let s = resolve_sync(Some(&file), &SyncOverrides::default()).unwrap();
        assert_eq!(s.key.as_deref(), Some("call_id"));
        assert_eq!(s.key_field.as_deref(), Some("mx_Custom_9"));
        assert_eq!(s.max_delete, DeleteLimit::Count(5));
        let flags = SyncOverrides {
            key: Some("id".into()),
            max_delete: Some("2%".into()),
            delete_missing: Some(true),
            ..SyncOverrides::default()
        };
        let s = resolve_sync(Some(&file), &flags).unwrap();
        assert_eq!(s.key.as_deref(), Some("id"));
        assert!(s.delete_missing);
        assert_eq!(s.max_delete, DeleteLimit::Percent(2.0));

        for bad in ["mx_Custom_51", "mx_Custom_0", "mx_Custom_07", "Notes"] {
            let flags = SyncOverrides {
                key: Some("id".into()),
                key_field: Some(bad.into()),
                ..SyncOverrides::default()
            };
            let err = resolve_sync(None, &flags).unwrap_err().to_string();
            assert!(err.contains("--key-field"), "{err}");
        }
        let flags = SyncOverrides {
            delete_missing: Some(true),
            ..SyncOverrides::default()
        };
        let err = resolve_sync(None, &flags).unwrap_err().to_string();
        assert!(
            err.contains("--delete-missing") && err.contains("--key"),
            "{err}"
        );
    }
}
