//! `--notify-url`: tell a webhook (a Slack incoming webhook, or any HTTP receiver) how a run
//! ended, for runs nobody watches.
//!
//! The run's summary document (the `--summary-json` one, or a short one for a run that could
//! not start) enters; one HTTPS POST of that JSON leaves, with a `text` field added holding the
//! status line, which is what Slack shows. Whether to post is decided by [`should_notify`]
//! (pure) from `--notify-on` and the status of the previous run, which is kept in a small file
//! beside the ledger. Posting never changes the run's exit code: a webhook that is down, slow
//! (bounded by a timeout) or refusing is logged as a warning, naming only its host, since a
//! webhook URL often carries its token in the path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::NotifyOn;

/// Whether a run that ended with `status` and `exit_code` is posted, given the status of the
/// run before it (`None` when there was none).
pub(crate) fn should_notify(
    on: NotifyOn,
    status: &str,
    exit_code: u8,
    previous: Option<&str>,
) -> bool {
    match on {
        NotifyOn::Always => true,
        NotifyOn::Failure => exit_code != 0,
        NotifyOn::Change => exit_code != 0 || previous.is_some_and(|p| p != status),
    }
}

/// Checks a notify URL as the delete commands check their webhook: https with a host and no
/// credentials; http only to loopback, or with `allow_insecure_http`.
pub(crate) fn check_url(text: &str, allow_insecure_http: bool) -> Result<String, String> {
    crate::lsq::secure::check_webhook_url(text, allow_insecure_http)
        .map_err(|message| format!("--notify-url: {message}"))
}

/// Where the status of the last run is kept, beside the ledger.
pub(crate) fn state_path(ledger: &Path) -> PathBuf {
    PathBuf::from(format!("{}.last-status", ledger.display()))
}

/// A POST that did not get a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Transport(String),
    #[error("answered HTTP {0}")]
    Status(u16),
}

/// Posts `document` as JSON to `url`, giving up after `timeout`.
pub(crate) async fn post(
    url: &str,
    document: &serde_json::Value,
    timeout: Duration,
) -> Result<u16, NotifyError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("lsq-sync/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        .timeout(timeout)
        .tls_certs_only(crate::lsq::secure::web_pki_roots())
        .build()
        .map_err(|e| NotifyError::Client(e.without_url().to_string()))?;
    let response = client
        .post(url)
        .json(document)
        .send()
        .await
        .map_err(|e| NotifyError::Transport(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err(NotifyError::Status(status))
    }
}

/// What a run's end looks like to the notifier.
pub(crate) struct RunEnd<'a> {
    /// The summary document to post.
    pub document: serde_json::Value,
    /// Its `status` and `exit_code`.
    pub status: &'a str,
    pub exit_code: u8,
    /// Its status line, posted as `text`.
    pub status_line: &'a str,
}

/// With a `url`: records the run's status beside the ledger, and posts its end if `on` says
/// so. Never fails: whatever goes wrong is logged.
pub(crate) async fn notify(
    url: Option<&str>,
    on: NotifyOn,
    timeout: Duration,
    ledger: &Path,
    end: RunEnd<'_>,
) {
    // Without a webhook there is nobody to tell, and no file is left beside the ledger.
    let Some(url) = url else { return };
    let state = state_path(ledger);
    let previous = std::fs::read_to_string(&state)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    // Kept whether or not anything is posted, so `change` compares with the last run.
    if ledger.exists()
        && let Err(e) = crate::report::summary::write_atomically(&state, end.status.as_bytes())
    {
        warn!("cannot record the run's status in {}: {e}", state.display());
    }
    if !should_notify(on, end.status, end.exit_code, previous.as_deref()) {
        info!(
            "notify: not posted (--notify-on {on:?}, status {})",
            end.status
        );
        return;
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let mut document = end.document;
    if let Some(object) = document.as_object_mut() {
        object
            .entry("text")
            .or_insert_with(|| serde_json::Value::String(format!("lsq-sync: {}", end.status_line)));
    }
    match post(url, &document, timeout).await {
        Ok(code) => info!("notify: posted the summary to {host} (HTTP {code})"),
        Err(e) => warn!("notify: posting the summary to {host} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_to_post() {
        use NotifyOn::*;
        assert!(should_notify(Always, "ok", 0, Some("ok")));
        assert!(!should_notify(Failure, "ok", 0, Some("aborted")));
        assert!(should_notify(
            Failure,
            "done_with_errors",
            1,
            Some("done_with_errors")
        ));
        assert!(!should_notify(Change, "ok", 0, Some("ok")));
        assert!(!should_notify(Change, "ok", 0, None));
        assert!(should_notify(Change, "ok", 0, Some("done_with_errors")));
        assert!(should_notify(Change, "aborted", 3, Some("aborted")));
    }

    #[test]
    fn urls_are_checked_like_webhooks() {
        assert!(check_url("https://hooks.slack.com/services/T/B/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/hook", false).is_ok());
        let err = check_url("http://hooks.example.com/x", false).expect_err("clear text");
        assert!(err.starts_with("--notify-url:"), "{err}");
        assert!(check_url("https://u:pw@hooks.example.com/", false).is_err());
    }
}
