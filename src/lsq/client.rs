//! The LeadSquared API client: typed requests out, [`Verdict`]s back.
//!
//! [`LsqClient`] owns the HTTP connection pool and puts the keys in headers (never in the URL).
//! [`classify`] is the one place that decides what a response means: success, rows rejected,
//! rate limited, transient, about the data, unauthorized, or permanent. Callers (the send stage,
//! later the export and delete commands) act on the verdict and never look at status codes.
//! Transport errors are stripped of their URL before they become text, so no message can leak
//! the request line.

use std::sync::Once;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::lsq::api::{self, ActivityItem, BulkResponse, ErrorBody};
use crate::lsq::quota::RateQuota;
use crate::lsq::secure::{HostError, Secret, check_host, web_pki_roots};

/// What the client needs to talk to one account.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// `https://api-in21.leadsquared.com` or `http://127.0.0.1:PORT`.
    pub host: String,
    pub access_key: Secret,
    pub secret_key: Secret,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Idle connections kept per host; matches the send concurrency so keep-alive covers it.
    pub max_idle_connections: usize,
    /// Allow `http://` to a host that is not loopback (`--allow-insecure-http`).
    pub allow_insecure_http: bool,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid host: {0}")]
    Host(#[from] HostError),
    #[error("an access key or secret key contains characters not allowed in an HTTP header")]
    KeyNotHeaderSafe,
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// A response as it came back, before it is judged.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
    pub body: bytes::Bytes,
}

/// A request that got no HTTP response.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CallError {
    #[error("no answer within {0:?} (request timeout)")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The TLS handshake failed on the server's certificate: retrying cannot help.
    #[error("{0}")]
    Certificate(String),
    #[error("connection failed: {0}")]
    Transport(String),
}

/// What a response means, decided in one place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict<T> {
    /// HTTP 2xx with the expected body.
    Success(T),
    /// HTTP 429, or any status with `MXAPIRateLimitExceededException`: wait and retry.
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
        /// The account's real limit, when the message names it.
        limit: Option<RateQuota>,
    },
    /// Not processed, worth retrying as is: the connection could not be opened.
    Transient(String),
    /// Maybe processed, maybe not: a timeout or a connection lost after the request left, a 5xx
    /// without an `MX...` body, a 2xx whose body cannot be read. Safe to repeat only for
    /// read-only calls; a bulk post must first check what the server created.
    Unknown(String),
    /// An `MX...Exception`: about the data; retrying it unchanged cannot help.
    DataError(String),
    /// HTTP 401: the keys are wrong; nothing more can succeed.
    Unauthorized(String),
    /// Nothing more can succeed either (HTTP 404: wrong host or path).
    Fatal(String),
    /// This request will not succeed as sent (HTTP 400 and other 4xx), but others may.
    Rejected(String),
}

impl<T> Verdict<T> {
    /// The same verdict, its success body turned into another type.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Verdict<U> {
        match self {
            Verdict::Success(body) => Verdict::Success(f(body)),
            Verdict::RateLimited {
                retry_after,
                message,
                limit,
            } => Verdict::RateLimited {
                retry_after,
                message,
                limit,
            },
            Verdict::Transient(m) => Verdict::Transient(m),
            Verdict::Unknown(m) => Verdict::Unknown(m),
            Verdict::DataError(m) => Verdict::DataError(m),
            Verdict::Unauthorized(m) => Verdict::Unauthorized(m),
            Verdict::Fatal(m) => Verdict::Fatal(m),
            Verdict::Rejected(m) => Verdict::Rejected(m),
        }
    }

    /// A connection that could not be opened carried nothing; a timeout or a broken connection
    /// may have delivered the request and lost only the answer.
    pub(crate) fn from_call_error(err: &CallError) -> Verdict<T> {
        match err {
            CallError::Connect(_) => Verdict::Transient(err.to_string()),
            CallError::Certificate(_) => Verdict::Fatal(err.to_string()),
            CallError::Timeout(_) | CallError::Transport(_) => Verdict::Unknown(err.to_string()),
        }
    }
}

/// Judges a reply. `T` is the endpoint's success body.
pub(crate) fn classify<T: DeserializeOwned>(reply: &Reply) -> Verdict<T> {
    let status = reply.status;
    let error_body = serde_json::from_slice::<ErrorBody>(&reply.body)
        .ok()
        .filter(|b| b.status.eq_ignore_ascii_case("error"));
    let text = || body_excerpt(&reply.body);

    if status == 401 {
        let why = error_body
            .as_ref()
            .and_then(|b| b.exception_message.clone())
            .unwrap_or_else(text);
        return Verdict::Unauthorized(format!(
            "HTTP 401: the access key or secret key was refused ({why})"
        ));
    }
    if let Some(body) = &error_body {
        let kind = body.exception_type.clone().unwrap_or_default();
        let message = body.exception_message.clone().unwrap_or_default();
        if status == 429 || kind == api::RATE_LIMIT_EXCEPTION {
            return Verdict::RateLimited {
                retry_after: reply.retry_after,
                limit: parse_limit(&message),
                message,
            };
        }
        let described = if kind.is_empty() {
            message.clone()
        } else {
            format!("{kind}: {message}")
        };
        return match status {
            404 => Verdict::Fatal(format!("HTTP 404 ({described}); check the host")),
            400..=499 => Verdict::Rejected(format!("HTTP {status}: {described}")),
            _ if kind.starts_with("MX") => Verdict::DataError(described),
            500..=599 => Verdict::Unknown(format!("HTTP {status}: {described}")),
            // "Status":"Error" with a 2xx and no MX type: still an error, and about this call.
            _ => Verdict::DataError(described),
        };
    }
    match status {
        429 => {
            let message = text();
            Verdict::RateLimited {
                retry_after: reply.retry_after,
                limit: parse_limit(&message),
                message,
            }
        }
        500..=599 => Verdict::Unknown(format!("HTTP {status} from the server: {}", text())),
        404 => Verdict::Fatal(format!(
            "HTTP 404: the API path was not found; check the host ({})",
            text()
        )),
        400..=499 => Verdict::Rejected(format!("HTTP {status}: {}", text())),
        200..=299 => match serde_json::from_slice::<T>(&reply.body) {
            Ok(value) => Verdict::Success(value),
            Err(e) => Verdict::Unknown(format!(
                "HTTP {status} with a body that cannot be read ({e}): {}",
                text()
            )),
        },
        _ => Verdict::Unknown(format!("unexpected HTTP {status}: {}", text())),
    }
}

/// Reads "API calls exceeded the limit of 10 in 5 second(s)" as 10/5s.
pub(crate) fn parse_limit(message: &str) -> Option<RateQuota> {
    let rest = &message[message.find("limit of ")? + "limit of ".len()..];
    let (calls, rest) = rest.split_once(" in ")?;
    let seconds = rest.split_whitespace().next()?;
    let calls = std::num::NonZeroU32::new(calls.trim().parse().ok()?)?;
    let seconds: f64 = seconds.parse().ok()?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return None;
    }
    Some(RateQuota::new(calls, Duration::from_secs_f64(seconds)))
}

/// The start of a body, on one line, for messages.
fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > MAX {
        line.push_str("...");
    }
    if line.is_empty() {
        "empty body".to_string()
    } else {
        line
    }
}

/// Per-row result of a bulk post, by position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RowResult {
    Created(String),
    Rejected(String),
    /// The answer does not say clearly what happened to this row (no result, two results,
    /// "created" without an id): the server may have created it, so the caller must look
    /// before posting it again.
    Unknown(String),
}

/// Maps a bulk response back onto the `sent` rows by `RowNumber`. A row the response does not
/// account for, accounts for twice, or calls created without an id is [`RowResult::Unknown`]
/// with a message saying so: a row is never taken as created without an id, and never taken as
/// not created on the word of an answer that is broken. Results for rows that were not sent
/// (RowNumber missing or out of range) are ignored.
pub(crate) fn bulk_row_results(sent: usize, response: &BulkResponse) -> Vec<RowResult> {
    let mut seen: Vec<Vec<&api::BulkResultItem>> = vec![Vec::new(); sent];
    for item in &response.response {
        if let Some(n) = item.row_number.map(|n| n as usize)
            && (1..=sent).contains(&n)
        {
            seen[n - 1].push(item);
        }
    }
    seen.into_iter()
        .map(|items| match items.as_slice() {
            [] => RowResult::Unknown("the server's response has no result for this row".into()),
            [item] => match (&item.prospect_activity_id, item.activity_created) {
                (Some(id), true) if !id.trim().is_empty() => RowResult::Created(id.clone()),
                (_, true) => RowResult::Unknown(
                    "the server said the activity was created but gave no ProspectActivityId"
                        .into(),
                ),
                (_, false) => RowResult::Rejected(
                    item.exception_message
                        .clone()
                        .filter(|m| !m.trim().is_empty())
                        .unwrap_or_else(|| {
                            "the server did not create the activity and gave no reason".into()
                        }),
                ),
            },
            _ => RowResult::Unknown(
                "the server's response has more than one result for this row".into(),
            ),
        })
        .collect()
}

/// Per-row result of a Bulk Update, by position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpdateResult {
    Updated,
    Rejected(String),
    /// The answer does not say what became of this row. An update is idempotent, so the caller
    /// sends it again.
    Unknown(String),
}

/// Names of the per-row success flag a Bulk Update answer may use. The vendor's page shows no
/// answer; `ActivityUpdated` follows the bulk post's `ActivityCreated`, the others are the
/// spellings LeadSquared uses elsewhere.
const UPDATED_FLAGS: [&str; 5] = [
    "ActivityUpdated",
    "Updated",
    "IsUpdated",
    "IsSuccessful",
    "Success",
];

/// Maps a Bulk Update answer back onto the rows sent (`ids`, in request order). The vendor does
/// not document the answer, so both shapes it plausibly has are read:
/// - per row, like the bulk post's: `{"Response": [...]}` (or a bare array) of items matched
///   by `RowNumber` (1-based) or, without one, by `ProspectActivityId`, each with a boolean
///   such as `ActivityUpdated` and an `ExceptionMessage`;
/// - per call, like the single update's: `{"Status": "Success", ...}`: every row updated.
///
/// A row the answer does not account for (or accounts for twice) is `Unknown`; an answer of
/// neither shape leaves every row `Unknown`. Errors (`"Status": "Error"`) never get here: the
/// classifier has made them a verdict already.
pub(crate) fn update_row_results(ids: &[&str], body: &serde_json::Value) -> Vec<UpdateResult> {
    use serde_json::Value;
    let items = match body {
        Value::Array(items) => Some(items),
        Value::Object(map) => map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Response"))
            .and_then(|(_, v)| v.as_array()),
        _ => None,
    };
    let Some(items) = items else {
        let success = body
            .as_object()
            .and_then(|map| map.iter().find(|(k, _)| k.eq_ignore_ascii_case("Status")))
            .and_then(|(_, v)| v.as_str())
            .is_some_and(|status| status.eq_ignore_ascii_case("success"));
        let result = if success {
            UpdateResult::Updated
        } else {
            UpdateResult::Unknown(format!(
                "the server's answer to the update says nothing of its rows: {}",
                body_excerpt(body.to_string().as_bytes())
            ))
        };
        return vec![result; ids.len()];
    };
    let get = |item: &Value, name: &str| -> Option<Value> {
        item.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut seen: Vec<Vec<&Value>> = vec![Vec::new(); ids.len()];
    for item in items {
        let by_number = get(item, "RowNumber")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
            .map(|n| n as usize)
            .filter(|n| (1..=ids.len()).contains(n))
            .map(|n| n - 1);
        let by_id = || {
            let id = get(item, "ProspectActivityId")?;
            let id = id.as_str()?.trim();
            ids.iter().position(|sent| sent.eq_ignore_ascii_case(id))
        };
        if let Some(at) = by_number.or_else(by_id) {
            seen[at].push(item);
        }
    }
    seen.into_iter()
        .map(|items| match items.as_slice() {
            [] => UpdateResult::Unknown("the server's answer has no result for this row".into()),
            [item] => {
                let flag = UPDATED_FLAGS.iter().find_map(|name| {
                    let v = get(item, name)?;
                    v.as_bool()
                        .or_else(|| match v.as_str()?.trim().to_ascii_lowercase().as_str() {
                            "true" | "success" => Some(true),
                            "false" | "error" | "failure" => Some(false),
                            _ => None,
                        })
                });
                let message = get(item, "ExceptionMessage")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .filter(|m| !m.trim().is_empty());
                match (flag, message) {
                    (Some(true), _) => UpdateResult::Updated,
                    (Some(false), message) => {
                        UpdateResult::Rejected(message.unwrap_or_else(|| {
                            "the server did not update the activity and gave no reason".into()
                        }))
                    }
                    (None, Some(message)) => UpdateResult::Rejected(message),
                    (None, None) => UpdateResult::Unknown(
                        "the server's result for this row does not say whether it was updated"
                            .into(),
                    ),
                }
            }
            _ => UpdateResult::Unknown(
                "the server's answer has more than one result for this row".into(),
            ),
        })
        .collect()
}

/// A client for tests: `host` with these keys, the timeouts of a loopback simulator.
#[cfg(test)]
impl LsqClient {
    pub(crate) fn for_tests(
        host: &str,
        access: impl Into<String>,
        secret: impl Into<String>,
    ) -> LsqClient {
        LsqClient::new(&ClientConfig {
            host: host.to_string(),
            access_key: Secret::new(access),
            secret_key: Secret::new(secret),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_idle_connections: 4,
            allow_insecure_http: false,
        })
        .unwrap()
    }
}

/// An HTTP client bound to one host and one pair of keys.
#[derive(Debug, Clone)]
pub(crate) struct LsqClient {
    http: reqwest::Client,
    base: Url,
    request_timeout: Duration,
    /// With `--match-by`: the lead field bulk posts search by (ByLeadField endpoint).
    match_by: Option<String>,
}

static INSTALL_CRYPTO: Once = Once::new();

impl LsqClient {
    pub(crate) fn new(config: &ClientConfig) -> Result<LsqClient, ClientError> {
        INSTALL_CRYPTO.call_once(|| {
            // Another part of the process may have installed one already; either is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let base = check_host(&config.host, config.allow_insecure_http)?;
        let mut headers = HeaderMap::new();
        for (name, secret) in [
            (api::HEADER_ACCESS_KEY, &config.access_key),
            (api::HEADER_SECRET_KEY, &config.secret_key),
        ] {
            let mut value = HeaderValue::from_str(secret.expose())
                .map_err(|_| ClientError::KeyNotHeaderSafe)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("lsq-sync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            // The bundled Mozilla roots, not the system's: a run trusts the same authorities
            // on every machine, and a container without a CA bundle still works.
            .tls_certs_only(web_pki_roots())
            .build()
            .map_err(|e| ClientError::Build(e.without_url().to_string()))?;
        Ok(LsqClient {
            http,
            base,
            request_timeout: config.request_timeout,
            match_by: None,
        })
    }

    /// Makes [`LsqClient::post_bulk`] name leads by the value of `field` (ByLeadField) instead
    /// of by id; `None` keeps posting by id.
    pub(crate) fn matching_leads_by(mut self, field: Option<&str>) -> LsqClient {
        self.match_by = field.map(str::to_string);
        self
    }

    /// The lead field bulk posts search by, if they do not name leads by id.
    pub(crate) fn lead_match_field(&self) -> Option<&str> {
        self.match_by.as_deref()
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// POSTs `body` as JSON to `path`.
    pub(crate) async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &B,
    ) -> Result<Reply, CallError> {
        let request = self.http.post(self.url(path, query)).json(body);
        self.execute(request).await
    }

    /// GETs `path`.
    pub(crate) async fn get(&self, path: &str) -> Result<Reply, CallError> {
        self.execute(self.http.get(self.url(path, &[]))).await
    }

    /// Posts one batch to the bulk endpoint: by lead id, or by lead field under `--match-by`
    /// (both answer the same way, so one classifier reads both).
    pub(crate) async fn post_bulk(&self, items: &[&ActivityItem]) -> Result<Reply, CallError> {
        match &self.match_by {
            None => self.post(api::PATH_BULK_ADD_BY_LEAD_ID, &[], items).await,
            Some(field) => {
                let items: Vec<api::ByFieldItem> = items
                    .iter()
                    .map(|i| api::ByFieldItem::from_item(i))
                    .collect();
                let query = [(api::QUERY_SEARCH_BY, field.as_str())];
                self.post(api::PATH_BULK_ADD_BY_LEAD_FIELD, &query, &items)
                    .await
            }
        }
    }

    /// Updates one batch of activities in place (Bulk Update, by `ProspectActivityId`).
    pub(crate) async fn post_update(&self, items: &[&api::UpdateItem]) -> Result<Reply, CallError> {
        self.post(api::PATH_BULK_UPDATE, &[], items).await
    }

    /// Who owns the keys, and which regional host serves the account (answered on any host).
    pub(crate) async fn user_by_access_key(&self) -> Verdict<api::UserByAccessKey> {
        self.get_json(api::PATH_USER_BY_ACCESS_KEY).await
    }

    /// The account's activity types, with the custom fields each defines.
    pub(crate) async fn activity_types(&self) -> Verdict<Vec<api::ActivityType>> {
        self.get_json(api::PATH_ACTIVITY_TYPES).await
    }

    /// One GET, judged. Read-only, so a caller may repeat it whatever the verdict.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Verdict<T> {
        match self.get(path).await {
            Ok(reply) => classify(&reply),
            Err(e) => Verdict::from_call_error(&e),
        }
    }

    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<Reply, CallError> {
        let response = request.send().await.map_err(|e| self.call_error(e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(|e| self.call_error(e))?;
        Ok(Reply {
            status: status.as_u16(),
            retry_after,
            body,
        })
    }

    fn call_error(&self, e: reqwest::Error) -> CallError {
        let timed_out = e.is_timeout();
        let connect = e.is_connect();
        let e = e.without_url();
        if let Some(tls) = tls_error(&e) {
            let host = self.base.host_str().unwrap_or("the host");
            let why = match tls {
                rustls::Error::InvalidCertificate(reason) => {
                    let explained = match reason {
                        rustls::CertificateError::UnknownIssuer => {
                            "it is not signed by an authority in the bundled web PKI roots \
                             (self-signed, or a private CA)"
                        }
                        rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. } => {
                            "it is not valid for that host name"
                        }
                        rustls::CertificateError::Expired
                        | rustls::CertificateError::ExpiredContext { .. } => "it has expired",
                        _ => "it was refused",
                    };
                    format!(
                        "the TLS certificate of {host} is not trusted for that host: {explained} ({reason:?})"
                    )
                }
                other => format!("the TLS handshake with {host} failed: {other}"),
            };
            return CallError::Certificate(why);
        }
        if timed_out {
            CallError::Timeout(self.request_timeout)
        } else if connect {
            CallError::Connect(error_chain(&e))
        } else {
            CallError::Transport(error_chain(&e))
        }
    }
}

/// The rustls error somewhere in a transport error's causes. `io::Error::source` skips the
/// error it wraps, so each `io::Error` is opened by hand.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| tls_error(inner))
        {
            return Some(tls);
        }
        current = err.source();
    }
    None
}

/// The error and its causes on one line: reqwest's own message alone ("error sending request")
/// does not say what went wrong.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

#[cfg(test)]
mod tests;
