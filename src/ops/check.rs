//! Checks before a run (`lsq-sync check`): are the keys accepted, is the configured host the
//! account's own regional host, and do the input's activity codes and custom fields exist.
//!
//! The input enters through the same reading and validation stack as an import
//! ([`InputSource`], [`Schema`]), reduced to [`InputUsage`]: which codes the valid rows use, and
//! which `mx_Custom_<n>` fields carry a value for each. The server's side enters through two
//! read-only calls of [`LsqClient`] (UserByAccessKey.Get, ActivityTypes.Get). What leaves is a
//! [`CheckReport`]: one line per check, OK / FAIL / SKIP with the reason, and the exit status.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::import::validate::{Schema, SchemaError};
use crate::input::InputSource;
use crate::input::rows::InputError;
use crate::lsq::api::{ActivityType, UserByAccessKey};
use crate::lsq::client::{LsqClient, Verdict};

/// The input could not be read as an import would read it.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{path}: {source}")]
    Schema { path: PathBuf, source: SchemaError },
}

/// What an input file asks of the account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InputUsage {
    pub path: PathBuf,
    /// Data rows read.
    pub rows: u64,
    /// Rows that fail validation (never sent, so their codes are not checked).
    pub invalid: u64,
    /// Activity code -> the custom fields (`mx_Custom_<n>`) that hold a value in its rows.
    pub codes: BTreeMap<i64, BTreeSet<String>>,
}

/// Reads `path` through the import's reader and validator, under the same input settings
/// (sheet, mapping, constants, dates) an import of it would use.
pub(crate) fn read_input_usage(
    path: &Path,
    settings: &Settings,
) -> Result<InputUsage, PreflightError> {
    let source = InputSource::open_as(
        path,
        settings.input.format,
        settings.input.sheet.as_deref(),
        settings.input_limits,
    )?;
    let schema = Schema::for_input(source.headers(), &settings.input)
        .map_err(|source| PreflightError::Schema {
            path: path.to_path_buf(),
            source,
        })?
        .with_max_cell_bytes(settings.input_limits.max_cell_bytes);
    let mut usage = InputUsage {
        path: path.to_path_buf(),
        ..InputUsage::default()
    };
    for row in source {
        let row = row?;
        usage.rows += 1;
        match schema.check(&row) {
            Ok(item) => {
                let fields = usage.codes.entry(item.activity_event).or_default();
                fields.extend(item.fields.into_iter().map(|f| f.schema_name));
            }
            Err(_) => usage.invalid += 1,
        }
    }
    Ok(usage)
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckStatus {
    Ok,
    Fail,
    /// Not run, because an earlier check makes it meaningless.
    Skip,
}

impl CheckStatus {
    fn label(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK  ",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        }
    }
}

/// One line of the check list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckLine {
    pub status: CheckStatus,
    /// What was checked: `keys`, `host`, `input`, `activity code 201`.
    pub subject: String,
    /// Why it passed or failed, for a person.
    pub detail: String,
}

/// Every check that ran, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CheckReport {
    pub lines: Vec<CheckLine>,
    /// The keys were refused (exit 3): nothing else could be checked.
    pub unauthorized: bool,
}

impl CheckReport {
    fn push(&mut self, status: CheckStatus, subject: impl Into<String>, detail: impl Into<String>) {
        self.lines.push(CheckLine {
            status,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    pub(crate) fn failures(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.status == CheckStatus::Fail)
            .count()
    }

    /// 0 all passed, 1 a check failed, 3 the keys were refused.
    pub(crate) fn exit_status(&self) -> ExitStatus {
        if self.unauthorized {
            ExitStatus::Aborted
        } else if self.failures() > 0 {
            ExitStatus::RowsNotCreated
        } else {
            ExitStatus::Success
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(
                f,
                "{} {}: {}",
                line.status.label(),
                line.subject,
                line.detail
            )?;
        }
        let failed = self.failures();
        if failed == 0 {
            write!(f, "check: all {} checks passed", self.lines.len())
        } else {
            write!(f, "check: {failed} of {} checks failed", self.lines.len())
        }
    }
}

/// The account's API host as UserByAccessKey.Get names it (`LSQCommonServiceURLs.api`), as a
/// URL to pass to `--host`.
pub(crate) fn account_api_host(user: &UserByAccessKey) -> Option<String> {
    let value = user
        .lsq_common_service_urls
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("api"))?
        .1
        .as_str()?
        .trim();
    if value.is_empty() {
        return None;
    }
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("https://{value}")
    };
    let url = reqwest::Url::parse(&with_scheme).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Whether two host settings name the same server (scheme, case, a trailing slash or `/v2`
/// aside): host name and port.
pub(crate) fn same_host(configured: &str, account: &str) -> bool {
    let key = |text: &str| {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("https://{text}")
        };
        reqwest::Url::parse(&with_scheme).ok().and_then(|url| {
            Some((
                url.host_str()?.to_ascii_lowercase(),
                url.port_or_known_default(),
            ))
        })
    };
    matches!((key(configured), key(account)), (Some(a), Some(b)) if a == b)
}

/// Runs the checks against `client` (bound to `configured_host`), and with `input` the checks of
/// its codes and fields.
pub(crate) async fn run_checks(
    client: &LsqClient,
    configured_host: &str,
    input: Option<&InputUsage>,
) -> CheckReport {
    let mut report = CheckReport::default();
    let user = match client.user_by_access_key().await {
        Verdict::Success(user) => user,
        Verdict::Unauthorized(message) => {
            report.unauthorized = true;
            report.push(
                CheckStatus::Fail,
                "keys",
                format!("{message}; check LSQ_ACCESS_KEY and LSQ_SECRET_KEY"),
            );
            return report;
        }
        other => {
            report.push(
                CheckStatus::Fail,
                "keys",
                format!(
                    "UserByAccessKey.Get failed at {configured_host}: {}",
                    verdict_text(&other)
                ),
            );
            return report;
        }
    };
    let who = if user.email_address.is_empty() {
        format!("user {}", user.id)
    } else {
        user.email_address.clone()
    };
    report.push(
        CheckStatus::Ok,
        "keys",
        format!("accepted: they belong to {who} (org {})", user.org_id),
    );

    let host_ok = match account_api_host(&user) {
        Some(account) if same_host(configured_host, &account) => {
            report.push(
                CheckStatus::Ok,
                "host",
                format!("{configured_host} is the account's API host"),
            );
            true
        }
        Some(account) => {
            report.push(
                CheckStatus::Fail,
                "host",
                format!(
                    "the account belongs to {account}, not {configured_host}: \
                     use --host {account} (or LSQ_HOST, or [api] host in the config file)"
                ),
            );
            false
        }
        None => {
            report.push(
                CheckStatus::Skip,
                "host",
                "the server did not name the account's API host (LSQCommonServiceURLs.api)",
            );
            true
        }
    };

    let Some(input) = input else {
        return report;
    };
    let invalid_note = if input.invalid > 0 {
        format!(
            "; {} invalid row{} would not be sent (their codes are not checked)",
            input.invalid,
            if input.invalid == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    report.push(
        CheckStatus::Ok,
        "input",
        format!(
            "{}: {} rows, activity codes {}{invalid_note}",
            input.path.display(),
            input.rows,
            join(input.codes.keys())
        ),
    );
    if !host_ok {
        report.push(
            CheckStatus::Skip,
            "activity codes",
            "other calls fail on a host that is not the account's; fix the host first",
        );
        return report;
    }
    let types = match client.activity_types().await {
        Verdict::Success(types) => types,
        Verdict::Unauthorized(message) => {
            report.unauthorized = true;
            report.push(CheckStatus::Fail, "activity codes", message);
            return report;
        }
        other => {
            report.push(
                CheckStatus::Fail,
                "activity codes",
                format!("ActivityTypes.Get failed: {}", verdict_text(&other)),
            );
            return report;
        }
    };
    for (code, used) in &input.codes {
        let (status, detail) = check_code(*code, used, &types);
        report.push(status, format!("activity code {code}"), detail);
    }
    report
}

/// One input code against the account's types.
fn check_code(code: i64, used: &BTreeSet<String>, types: &[ActivityType]) -> (CheckStatus, String) {
    let Some(found) = types.iter().find(|t| t.activity_event == code) else {
        return (
            CheckStatus::Fail,
            format!(
                "not an activity type of this account (its codes: {})",
                join(types.iter().map(|t| t.activity_event))
            ),
        );
    };
    let unknown: Vec<&String> = used
        .iter()
        .filter(|f| !found.fields.iter().any(|d| d.eq_ignore_ascii_case(f)))
        .collect();
    if unknown.is_empty() {
        let fields = if used.is_empty() {
            "no custom fields used".to_string()
        } else {
            format!("fields {} defined", join(used))
        };
        (CheckStatus::Ok, format!("{}, {fields}", found.display_name))
    } else {
        (
            CheckStatus::Fail,
            format!(
                "{}: {} {} (it defines {})",
                found.display_name,
                join(&unknown),
                if unknown.len() == 1 {
                    "is not a field of this type"
                } else {
                    "are not fields of this type"
                },
                if found.fields.is_empty() {
                    "none".to_string()
                } else {
                    join(&found.fields)
                }
            ),
        )
    }
}

fn join<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let parts: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

fn verdict_text<T>(verdict: &Verdict<T>) -> String {
    match verdict {
        Verdict::Success(_) => "no error".to_string(),
        Verdict::RateLimited { message, .. } => format!("rate limited: {message}"),
        Verdict::Transient(m)
        | Verdict::Unknown(m)
        | Verdict::DataError(m)
        | Verdict::Unauthorized(m)
        | Verdict::Fatal(m)
        | Verdict::Rejected(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(api: &str) -> UserByAccessKey {
        let mut urls = serde_json::Map::new();
        urls.insert("api".into(), serde_json::Value::from(api));
        UserByAccessKey {
            id: "u".into(),
            email_address: String::new(),
            org_id: "1".into(),
            lsq_common_service_urls: urls,
        }
    }

    #[test]
    fn the_account_host_becomes_a_host_setting() {
        assert_eq!(
            account_api_host(&user("api-us11.leadsquared.com")).as_deref(),
            Some("https://api-us11.leadsquared.com")
        );
        assert_eq!(
            account_api_host(&user("https://api-in21.leadsquared.com/v2/")).as_deref(),
            Some("https://api-in21.leadsquared.com")
        );
        assert_eq!(
            account_api_host(&user("http://127.0.0.1:8080")).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(account_api_host(&user("")), None);
    }

    #[test]
    fn hosts_compare_by_name_and_port() {
        assert!(same_host(
            "https://API-in21.leadsquared.com/",
            "https://api-in21.leadsquared.com"
        ));
        assert!(same_host(
            "https://api-in21.leadsquared.com",
            "api-in21.leadsquared.com"
        ));
        assert!(!same_host(
            "https://api.leadsquared.com",
            "https://api-us11.leadsquared.com"
        ));
        assert!(!same_host("http://127.0.0.1:8080", "http://127.0.0.1:8081"));
    }

    #[test]
    fn codes_and_fields_are_checked_against_the_types() {
        let types = vec![ActivityType {
            activity_event: 201,
            display_name: "Webinar".into(),
            fields: vec!["mx_Custom_1".into(), "mx_Custom_2".into()],
        }];
        let used: BTreeSet<String> = ["mx_Custom_1".to_string()].into();
        assert_eq!(check_code(201, &used, &types).0, CheckStatus::Ok);
        let (status, detail) = check_code(299, &used, &types);
        assert_eq!(status, CheckStatus::Fail);
        assert!(detail.contains("its codes: 201"), "{detail}");
        let used: BTreeSet<String> = ["mx_Custom_1".to_string(), "mx_Custom_7".to_string()].into();
        let (status, detail) = check_code(201, &used, &types);
        assert_eq!(status, CheckStatus::Fail);
        assert!(detail.contains("mx_Custom_7 is not a field"), "{detail}");
        assert!(!detail.contains("mx_Custom_1 not"), "{detail}");
    }

    #[test]
    fn the_exit_status_follows_the_worst_line() {
        let mut report = CheckReport::default();
        report.push(CheckStatus::Ok, "keys", "fine");
        report.push(CheckStatus::Skip, "host", "unknown");
        assert_eq!(report.exit_status(), ExitStatus::Success);
        report.push(CheckStatus::Fail, "activity code 9", "no");
        assert_eq!(report.exit_status(), ExitStatus::RowsNotCreated);
        assert!(report.to_string().ends_with("1 of 3 checks failed"));
        report.unauthorized = true;
        assert_eq!(report.exit_status(), ExitStatus::Aborted);
    }
}
