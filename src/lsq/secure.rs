//! What keeps the keys and the data safe on the way out: [`Secret`] (a key no `Debug` or
//! `Display` can print), [`check_host`] (https, or http to loopback only), URLs with their
//! credentials redacted, and the bundled root certificates every TLS client of the program
//! trusts.
//!
//! One home for these words, so that the settings (which hold keys and check the host) and the
//! HTTP client (which uses both) need not name each other.

use std::fmt;

use reqwest::Url;

/// A key that must never be printed. `Debug` and `Display` show only a short prefix of the
/// access key's length class, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that puts it in a request header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a host setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("{0:?} is not a URL (expected e.g. https://api-in21.leadsquared.com)")]
    NotAUrl(String),
    #[error(
        "{0:?}: only https:// is allowed, or http:// to a loopback address (127.0.0.1, localhost); \
         --allow-insecure-http (or [api] allow_insecure_http) lifts this, sending the keys in clear text"
    )]
    Insecure(String),
    #[error("{0:?}: the host must not carry a user name, password, path or query")]
    Extra(String),
}

/// Checks a host setting: https, or http to loopback (to any host with `allow_insecure_http`);
/// scheme and authority only.
pub(crate) fn check_host(host: &str, allow_insecure_http: bool) -> Result<Url, HostError> {
    let url = Url::parse(host.trim()).map_err(|_| HostError::NotAUrl(host.to_string()))?;
    if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(HostError::NotAUrl(host.to_string()));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !(url.path().is_empty() || url.path() == "/")
    {
        return Err(HostError::Extra(redact_userinfo(host)));
    }
    if url.scheme() == "http" && !allow_insecure_http && !is_loopback(&url) {
        return Err(HostError::Insecure(host.to_string()));
    }
    Ok(url)
}

/// Whether `url` names this machine: `localhost` or a loopback address.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A host string as it may be shown: any `user:password@` part removed.
pub(crate) fn redact_userinfo(host: &str) -> String {
    match (host.find("://"), host.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***@{}", &host[..scheme_end + 3], &host[at + 1..])
        }
        _ => host.to_string(),
    }
}

/// Mozilla's root certificates as bundled by `webpki-root-certs`.
pub(crate) fn web_pki_roots() -> Vec<reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

/// Checks a URL LeadSquared or a webhook receiver is to call (a delete's status webhook,
/// `--notify-url`): https with a host, no user name or password (the vendor would
/// store and call it, so a credential in it would leak). `http://` is allowed to a loopback
/// address (what the simulator calls and tests use), elsewhere only with `allow_insecure_http`,
/// the rule the API host follows too.
pub(crate) fn check_webhook_url(text: &str, allow_insecure_http: bool) -> Result<String, String> {
    let url = url::Url::parse(text.trim())
        .map_err(|_| format!("{:?} is not a URL", redact_userinfo(text)))?;
    // The URL parser reads "https:///x" as "https://x/"; a host the user did not write is no
    // host.
    let written_host = text
        .trim()
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.starts_with('/'));
    let host = url
        .host_str()
        .filter(|h| !h.is_empty() && written_host)
        .ok_or_else(|| "the URL has no host".to_string())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry a user name or password".into());
    }
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url.to_string()),
        "http" => Err(format!(
            "{host}: only https:// is allowed (or http:// to a loopback address); \
             --allow-insecure-http lifts this"
        )),
        _ => Err(format!(
            "{host}: only https:// is allowed (or http:// to a loopback address)"
        )),
    }
}
