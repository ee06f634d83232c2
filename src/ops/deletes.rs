//! The two delete endpoints, and what the commands that call them share: checking their
//! arguments, sending one queued deletion per lead, and waiting until a deletion shows.
//!
//! Arguments enter as text (codes, dates, webhook URL) and leave as checked values
//! ([`DeleteWindow`], codes, [`check_webhook`]) before anything is sent. A [`Remote`] is built
//! from the run's [`Settings`]; each call goes through the run's one
//! [`Api`](crate::lsq::calls::Api) (a pacer permit, `client::classify`), and is retried on rate
//! limits and on failures that carried nothing.
//! A deletion whose answer was lost (`Verdict::Unknown`) is not repeated blindly: the endpoints
//! delete by lead, code and window, so a repeat could take activities created meanwhile; it is
//! reported as failed with the reason, and `--wait` (a read) tells whether it happened.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::config::Settings;
use crate::lsq::activities::{ActivityQuery, FetchError, Fetcher};
use crate::lsq::api::{
    DATE_TIME_FORMAT, DeleteActivitiesRequest, DeleteOwnerHistoryRequest, PATH_DELETE_ACTIVITIES,
    PATH_DELETE_OWNER_HISTORY, QueuedResponse,
};
use crate::lsq::calls::Judged;
use crate::lsq::client::{ClientConfig, ClientError, LsqClient, Verdict};
use crate::lsq::counters::RunStats;
use crate::lsq::window::{DateWindow, format_api_second};

/// Code of the system activity LeadSquared posts when a lead's owner changes. Delete Activities
/// cannot remove it; Delete Owner Change History does.
pub(crate) const OWNER_CHANGE_EVENT: i64 = 22;

/// An argument that cannot be used; found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArgumentError {
    /// A date not in the API's one format.
    #[error("{flag} {value:?}: expected a date and time as yyyy-MM-dd HH:mm:ss (UTC)")]
    Date {
        /// `--from` or `--to`.
        flag: &'static str,
        /// As given.
        value: String,
    },
    /// `--from` after `--to`.
    #[error("--from {from} is after --to {to}")]
    Reversed {
        /// As given.
        from: String,
        /// As given.
        to: String,
    },
    /// An activity code that is not a positive whole number.
    #[error("activity code {0:?} is not a positive whole number (e.g. 201)")]
    Code(String),
    /// No code given.
    #[error("no activity code given (--events 201,202)")]
    NoCodes,
    /// The owner change code, which only its own endpoint deletes.
    #[error(
        "activity code {OWNER_CHANGE_EVENT} (owner change) is a system activity that Delete Activities \
         cannot remove; use lsq-sync delete-owner-history"
    )]
    OwnerChangeCode,
    /// A webhook URL that is not https (or http to loopback), has no host, or carries credentials.
    #[error("--webhook: {0}")]
    Webhook(String),
    /// No API host or keys configured.
    #[error("{0}")]
    Setup(String),
}

/// An optional `FromDate`..`ToDate` window, both inclusive, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DeleteWindow {
    /// Earliest activity date, `yyyy-MM-dd HH:mm:ss` UTC.
    pub from: Option<String>,
    /// Latest activity date, `yyyy-MM-dd HH:mm:ss` UTC.
    pub to: Option<String>,
}

impl DeleteWindow {
    /// Checks `--from` and `--to`: the API's format, dates that exist, from <= to.
    pub(crate) fn parse(
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<DeleteWindow, ArgumentError> {
        let from = from.map(|v| parse_date("--from", v)).transpose()?;
        let to = to.map(|v| parse_date("--to", v)).transpose()?;
        if let (Some((f, ft)), Some((t, tt))) = (&from, &to)
            && f > t
        {
            return Err(ArgumentError::Reversed {
                from: ft.clone(),
                to: tt.clone(),
            });
        }
        Ok(DeleteWindow {
            from: from.map(|(_, text)| text),
            to: to.map(|(_, text)| text),
        })
    }

    /// The window for people: `any date`, `from X`, `until Y` or `X .. Y`.
    pub(crate) fn describe(&self) -> String {
        match (&self.from, &self.to) {
            (None, None) => "any date".to_string(),
            (Some(f), None) => format!("from {f}"),
            (None, Some(t)) => format!("until {t}"),
            (Some(f), Some(t)) => format!("{f} .. {t}"),
        }
    }

    /// A Get Activities query over this window.
    pub(crate) fn query(&self, lead: &str, event: i64) -> ActivityQuery {
        ActivityQuery {
            lead_id: lead.to_string(),
            event: Some(event),
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }
}

/// Parses a date in the API's format, strictly (19 characters, a date that exists).
fn parse_date(flag: &'static str, value: &str) -> Result<(NaiveDateTime, String), ArgumentError> {
    let text = value.trim();
    let bad = || ArgumentError::Date {
        flag,
        value: value.to_string(),
    };
    if text.len() != 19 {
        return Err(bad());
    }
    let parsed = NaiveDateTime::parse_from_str(text, DATE_TIME_FORMAT).map_err(|_| bad())?;
    Ok((parsed, text.to_string()))
}

/// `201,202` -> `[201, 202]`, each a positive whole number, in order, each once.
pub(crate) fn parse_codes(text: &str) -> Result<Vec<i64>, ArgumentError> {
    let mut codes = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let code = item
            .parse::<u32>()
            .ok()
            .filter(|&c| c > 0 && item.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ArgumentError::Code(item.to_string()))?;
        let code = i64::from(code);
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    if codes.is_empty() {
        return Err(ArgumentError::NoCodes);
    }
    Ok(codes)
}

/// Checks a status webhook URL ([`crate::lsq::secure::check_webhook_url`]): https with a host,
/// no user name or password; `http://` to loopback, elsewhere only with `allow_insecure_http`.
pub(crate) fn check_webhook(
    text: &str,
    allow_insecure_http: bool,
) -> Result<String, ArgumentError> {
    crate::lsq::secure::check_webhook_url(text, allow_insecure_http).map_err(ArgumentError::Webhook)
}

/// Why a deletion was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DeleteError {
    /// Refused or failed for this lead; other leads may still succeed.
    #[error("{0}")]
    Failed(String),
    /// Keys refused (401) or wrong host (404): nothing more can succeed.
    #[error("{0}")]
    Abort(String),
}

impl From<FetchError> for DeleteError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Unauthorized(m) | FetchError::Fatal(m) => DeleteError::Abort(m),
            other => DeleteError::Failed(other.to_string()),
        }
    }
}

/// Everything needed to call the API for one run; every call paced and counted. The delete
/// calls go through the fetcher's [`Api`](crate::lsq::calls::Api) (client, pacer, counters, retry policy, outage gate),
/// so Get Activities polls and deletions share one quota and one set of figures.
pub(crate) struct Remote {
    /// Get Activities, and the client, pacer, counters and retry policy of every call.
    pub fetcher: Fetcher,
}

impl Remote {
    /// Builds the client, pacer and fetcher from the settings; fails without host or keys.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Remote, ArgumentError> {
        let config = client_config(settings)?;
        let client = LsqClient::new(&config).map_err(|e: ClientError| {
            ArgumentError::Setup(format!("cannot set up the API client: {e}"))
        })?;
        Ok(Remote {
            fetcher: Fetcher::new(settings.api(client)),
        })
    }

    /// Queues the deletion of a lead's activities of `codes` in `window`.
    pub(crate) async fn delete_activities(
        &self,
        lead: &str,
        codes: &[i64],
        window: &DeleteWindow,
        webhook: Option<&str>,
    ) -> Result<String, DeleteError> {
        let body = DeleteActivitiesRequest {
            prospect_id: lead.to_string(),
            activity_event_list: codes.iter().map(i64::to_string).collect(),
            from_date: window.from.clone(),
            to_date: window.to.clone(),
            status_webhook_url: webhook.map(str::to_string),
        };
        self.queue(PATH_DELETE_ACTIVITIES, &body).await
    }

    /// Queues the deletion of a lead's owner change history in `window`.
    pub(crate) async fn delete_owner_history(
        &self,
        lead: &str,
        window: &DeleteWindow,
        webhook: Option<&str>,
    ) -> Result<String, DeleteError> {
        let body = DeleteOwnerHistoryRequest {
            prospect_id: lead.to_string(),
            from_date: window.from.clone(),
            to_date: window.to.clone(),
            status_webhook_url: webhook.map(str::to_string),
        };
        self.queue(PATH_DELETE_OWNER_HISTORY, &body).await
    }

    /// One queued-deletion call, through the pacer, retried only when the request cannot have
    /// been acted on (rate limited, connection not opened). Returns the server's message.
    async fn queue<B: Serialize>(&self, path: &str, body: &B) -> Result<String, DeleteError> {
        let api = &self.fetcher.api;
        api.call::<QueuedResponse, _, _, _>(
            "delete",
            None,
            || api.client.post(path, &[], body),
            |verdict| match verdict {
                Verdict::Success(queued) => Judged::Done(Ok(queued.message.message)),
                Verdict::Unknown(message) => {
                    RunStats::add(&api.stats.ambiguous);
                    Judged::Done(Err(DeleteError::Failed(format!(
                        "outcome unknown ({message}); not repeated, since a deletion by window \
                         could take activities created meanwhile: check the lead, or run again"
                    ))))
                }
                Verdict::Unauthorized(message) | Verdict::Fatal(message) => {
                    Judged::Done(Err(DeleteError::Abort(message)))
                }
                Verdict::DataError(message)
                | Verdict::Rejected(message)
                | Verdict::Transient(message)
                | Verdict::RateLimited { message, .. } => {
                    Judged::Done(Err(DeleteError::Failed(message)))
                }
            },
            |closed| DeleteError::Abort(closed.to_string()),
            DeleteError::Failed,
        )
        .await
    }

    /// How many activities match each query, summed: zero means a deletion is visible.
    pub(crate) async fn count_all(&self, queries: &[ActivityQuery]) -> Result<u64, FetchError> {
        let mut total = 0;
        for count in self.count_each(&queries.iter().collect::<Vec<_>>()).await {
            total += count?;
        }
        Ok(total)
    }

    /// How many activities match each query (same order), each window counted on our side on
    /// the activities' dates: Get Activities documents no date filter, so its `RecordCount`
    /// may count the lead's whole history of the code. Queries of one lead and code share one
    /// listing over the span of their windows, so a round of `--wait` lists each lead and code
    /// once however many windows it has; without any window, `RecordCount` alone is enough.
    pub(crate) async fn count_each(
        &self,
        queries: &[&ActivityQuery],
    ) -> Vec<Result<u64, FetchError>> {
        let mut counts: Vec<Result<u64, FetchError>> = vec![Ok(0); queries.len()];
        // (lead, code) -> indexes of its queries, in first-seen order.
        let mut groups: Vec<(LeadCode, Vec<usize>)> = Vec::new();
        for (i, query) in queries.iter().enumerate() {
            let key = (query.lead_id.to_ascii_lowercase(), query.event);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        for (_, members) in groups {
            let windows: Result<Vec<DateWindow>, FetchError> =
                members.iter().map(|&i| queries[i].window()).collect();
            let result = match windows {
                Err(e) => Err(e),
                Ok(windows) if windows.iter().all(DateWindow::is_unbounded) => self
                    .fetcher
                    .count(queries[members[0]])
                    .await
                    .map(|n| vec![n; members.len()]),
                Ok(windows) => {
                    let span = windows
                        .iter()
                        .copied()
                        .reduce(DateWindow::span)
                        .unwrap_or_default();
                    let listing = ActivityQuery {
                        from: span.from.map(format_api_second),
                        to: span.to.map(format_api_second),
                        ..queries[members[0]].clone()
                    };
                    self.fetcher.fetch_all(&listing).await.map(|found| {
                        windows
                            .iter()
                            .map(|w| {
                                found.iter().filter(|a| w.admits(&a.created_on)).count() as u64
                            })
                            .collect()
                    })
                }
            };
            match result {
                Ok(each) => {
                    for (&i, n) in members.iter().zip(each) {
                        counts[i] = Ok(n);
                    }
                }
                Err(e) => {
                    for &i in &members {
                        counts[i] = Err(e.clone());
                    }
                }
            }
        }
        counts
    }
}

/// A lead (lowercase) and an optional activity code: what one listing covers.
type LeadCode = (String, Option<i64>);

/// How `--wait` polls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitPolicy {
    /// Give up (the deletion stays `queued`) after this long.
    pub timeout: Duration,
    /// First pause between polls of a lead; doubles up to [`WaitPolicy::max_interval`].
    pub first_interval: Duration,
    /// Longest pause between polls.
    pub max_interval: Duration,
}

impl WaitPolicy {
    /// Polls with `timeout`, starting at 100 ms between rounds, at most 5 s.
    pub(crate) fn with_timeout(timeout: Duration) -> WaitPolicy {
        WaitPolicy {
            timeout,
            first_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
        }
    }
}

/// What polling found for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// No matching activity is left.
    Confirmed,
    /// Activities still matched when the time ran out; how many.
    StillThere(u64),
    /// Polling failed; why.
    Failed(String),
    /// Keys refused or wrong host.
    Abort(String),
}

/// Polls Get Activities for each item (its queries) in rounds until every one has no matching
/// activity left, or `policy.timeout` passes. Returns one outcome per item, in order. Bounded:
/// at most `timeout / first_interval` rounds, each paced.
pub(crate) async fn wait_until_gone(
    remote: &Remote,
    items: &[Vec<ActivityQuery>],
    policy: WaitPolicy,
) -> Vec<WaitOutcome> {
    let deadline = Instant::now() + policy.timeout;
    let mut outcomes: Vec<Option<WaitOutcome>> = vec![None; items.len()];
    let mut remaining: Vec<u64> = vec![0; items.len()];
    let mut interval = policy.first_interval;
    loop {
        // Every open item's queries, counted together: one listing per lead and code a round.
        let open: Vec<(usize, &ActivityQuery)> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_none())
            .flat_map(|(i, queries)| queries.iter().map(move |q| (i, q)))
            .collect();
        let queries: Vec<&ActivityQuery> = open.iter().map(|(_, q)| *q).collect();
        let counts = remote.count_each(&queries).await;
        let mut round: Vec<Option<Result<u64, FetchError>>> = vec![None; items.len()];
        for ((i, _), count) in open.iter().zip(counts) {
            let slot = round[*i].get_or_insert(Ok(0));
            *slot = match (slot.clone(), count) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(a), Ok(b)) => Ok(a + b),
            };
        }
        for (i, result) in round.into_iter().enumerate() {
            let Some(result) = result else { continue };
            if outcomes[i].is_some() {
                continue;
            }
            match result {
                Ok(0) => outcomes[i] = Some(WaitOutcome::Confirmed),
                Ok(n) => remaining[i] = n,
                Err(FetchError::Unauthorized(m) | FetchError::Fatal(m)) => {
                    // Nothing more can be checked: every open item ends the same way.
                    for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                        *outcome = Some(WaitOutcome::Abort(m.clone()));
                    }
                    break;
                }
                Err(e) => outcomes[i] = Some(WaitOutcome::Failed(e.to_string())),
            }
        }
        if outcomes.iter().all(Option::is_some) || Instant::now() + interval > deadline {
            break;
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(policy.max_interval);
    }
    outcomes
        .into_iter()
        .zip(remaining)
        .map(|(o, n)| o.unwrap_or(WaitOutcome::StillThere(n)))
        .collect()
}

fn client_config(settings: &Settings) -> Result<ClientConfig, ArgumentError> {
    settings.client_config().map_err(ArgumentError::Setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_checked_strictly() {
        let w =
            DeleteWindow::parse(Some("2024-01-01 00:00:00"), Some("2024-02-01 00:00:00")).unwrap();
        assert_eq!(w.describe(), "2024-01-01 00:00:00 .. 2024-02-01 00:00:00");
        assert_eq!(
            DeleteWindow::parse(None, None).unwrap().describe(),
            "any date"
        );
        for bad in [
            "2024-01-01",
            "2024-02-30 00:00:00",
            "2024-01-01T00:00:00",
            "01/01/2024 00:00:00",
        ] {
            assert!(
                matches!(
                    DeleteWindow::parse(Some(bad), None),
                    Err(ArgumentError::Date { flag: "--from", .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            DeleteWindow::parse(Some("2024-03-01 00:00:00"), Some("2024-02-01 00:00:00")),
            Err(ArgumentError::Reversed { .. })
        ));
    }

    #[test]
    fn codes_are_positive_whole_numbers() {
        assert_eq!(parse_codes("163, 166,163").unwrap(), vec![163, 166]);
        for bad in ["16a", "-3", "0", "1.5", "+4"] {
            assert!(
                matches!(parse_codes(bad), Err(ArgumentError::Code(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_codes(" , "), Err(ArgumentError::NoCodes));
    }

    #[test]
    fn webhooks_must_be_https_without_credentials() {
        assert!(check_webhook("https://hooks.example.com/lsq", false).is_ok());
        assert!(check_webhook("http://127.0.0.1:9000/hook", false).is_ok());
        assert!(check_webhook("http://[::1]:9000/hook", false).is_ok());
        assert!(check_webhook("http://localhost/hook", false).is_ok());
        assert!(check_webhook("http://hooks.example.com/lsq", true).is_ok());
        assert!(check_webhook("https://user:pw@hooks.example.com/", true).is_err());
        let shown = check_webhook("https://user:hunter2@", false)
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        for bad in [
            "http://hooks.example.com/lsq",
            "https://user:pw@hooks.example.com/",
            "ftp://hooks.example.com/",
            "not a url",
            "https://",
            "https:///hook",
        ] {
            assert!(
                matches!(check_webhook(bad, false), Err(ArgumentError::Webhook(_))),
                "{bad}"
            );
        }
    }
}
