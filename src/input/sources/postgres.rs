//! PostgreSQL as an input: `--from-postgres URL --query "SELECT ..."` (or `[source]` in the
//! config file). The query's result leaves as CSV bytes written to a file, which the import's
//! own CSV reader then reads like any other file.
//!
//! The server does the CSV: `COPY (query) TO STDOUT (FORMAT csv, HEADER)`, so quoting, NULLs
//! (empty cells) and the header are PostgreSQL's own, and rows stream to disk without being
//! held in memory. The query runs in a read-only transaction with the session's time zone set
//! to UTC and ISO dates, so a query cannot change the database and timestamps come out in the
//! form the import reads (`2024-05-01 10:00:00`, or with `+00` for `timestamptz`).
//!
//! The URL enters as text; its password may be in it, but is better given in `LSQ_PG_PASSWORD`
//! or `PGPASSWORD`. Everything this module says about the URL goes through [`redact_url`], and
//! the server's messages (which never hold the password) are passed on as they are.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

/// A query that could not be run, or whose result could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("--from-postgres {url}: {message}")]
    Url { url: String, message: String },
    #[error("PostgreSQL {url}: cannot connect: {message}")]
    Connect { url: String, message: String },
    #[error("PostgreSQL {url}: the query failed: {message}")]
    Query { url: String, message: String },
    #[error("cannot write the query's result to {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Where the rows come from.
#[derive(Clone)]
pub(crate) struct PgSource {
    /// As given, password included if it was written there: only ever shown redacted.
    url: String,
    /// A `SELECT` (or anything `COPY (...) TO STDOUT` takes), without a trailing `;`.
    query: String,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("url", &redact_url(&self.url))
            .field("query", &self.query)
            .finish()
    }
}

/// The URL (or `key=value` connection string) with any password replaced by `***`, for
/// messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url)
        && parsed.has_host()
    {
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("***"));
        }
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    // The key=value form: `host=... password=secret user=...`.
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of a client error: the server's own message for a database error (with its detail
/// and hint), else the error and its causes.
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (DETAIL: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (HINT: {hint})"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

impl PgSource {
    /// Checks the URL and the query without connecting, so a typo is a usage error before
    /// anything else happens.
    pub(crate) fn new(url: &str, query: &str) -> Result<PgSource, PgError> {
        let query = query.trim().trim_end_matches([';', ' ', '\n', '\r', '\t']);
        if query.is_empty() {
            return Err(PgError::Url {
                url: redact_url(url),
                message: "no query: give --query \"SELECT ...\" (or [source] query)".into(),
            });
        }
        let source = PgSource {
            url: url.trim().to_string(),
            query: query.to_string(),
        };
        source.config(None)?;
        Ok(source)
    }

    /// The URL as it may be shown.
    pub(crate) fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    fn config(&self, password: Option<&str>) -> Result<tokio_postgres::Config, PgError> {
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| PgError::Url {
            url: self.shown_url(),
            message: format!("not a PostgreSQL URL: {}", error_text(&e)),
        })?;
        if config.get_password().is_none()
            && let Some(password) = password
        {
            config.password(password);
        }
        if config.get_user().is_none() {
            match std::env::var("PGUSER") {
                Ok(user) if !user.is_empty() => {
                    config.user(&user);
                }
                _ => {
                    return Err(PgError::Url {
                        url: self.shown_url(),
                        message:
                            "the URL names no user (postgres://USER@HOST/DB) and PGUSER is not set"
                                .into(),
                    });
                }
            }
        }
        if config.get_connect_timeout().is_none() {
            // A host that drops packets must not hang a nightly run.
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(config)
    }

    /// Runs the query and writes its result, as CSV with a header, to `out`; returns the
    /// number of bytes written. The password, when the URL holds none, comes from
    /// `LSQ_PG_PASSWORD` or `PGPASSWORD`.
    pub(crate) async fn copy_csv(
        &self,
        out: &mut std::fs::File,
        out_path: &std::path::Path,
    ) -> Result<u64, PgError> {
        let password = ["LSQ_PG_PASSWORD", "PGPASSWORD"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|p| !p.is_empty()));
        let config = self.config(password.as_deref())?;
        let url = self.shown_url();
        let connect_error = |e: tokio_postgres::Error| PgError::Connect {
            url: url.clone(),
            message: error_text(&e),
        };
        let query_error = |e: tokio_postgres::Error| PgError::Query {
            url: url.clone(),
            message: error_text(&e),
        };
        let (client, connection) = config
            .connect(tls_connector())
            .await
            .map_err(connect_error)?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {}", error_text(&e));
            }
        });
        let result = async {
            client
                .batch_execute(
                    "START TRANSACTION READ ONLY; SET LOCAL TIME ZONE 'UTC'; \
                     SET LOCAL DateStyle = 'ISO, YMD'",
                )
                .await
                .map_err(query_error)?;
            let copy = format!("COPY ({}) TO STDOUT (FORMAT csv, HEADER)", self.query);
            let stream = client.copy_out(copy.as_str()).await.map_err(query_error)?;
            let mut stream = std::pin::pin!(stream);
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(query_error)?;
                // A blocking write to a local file, chunk by chunk: the only other task of
                // this runtime is the connection, which the write briefly delays.
                out.write_all(&chunk).map_err(|source| PgError::Write {
                    path: out_path.to_path_buf(),
                    source,
                })?;
                written += chunk.len() as u64;
            }
            client.batch_execute("COMMIT").await.map_err(query_error)?;
            Ok(written)
        }
        .await;
        drop(client);
        let _ = connection.await;
        result
    }
}

/// TLS for `sslmode=prefer` (the default) and `require`: rustls with the ring provider and the
/// bundled Mozilla roots, as the API client uses. `sslmode=disable` connects in clear text.
fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // ring supports the default versions; this arm only keeps a library change from
        // becoming a panic.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_in_every_form() {
        let shown = redact_url("postgres://etl:hunter2@db.example.com:5432/crm?sslmode=require");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("etl:***@db.example.com"), "{shown}");
        let shown = redact_url("postgresql://db/crm?user=etl&password=hunter2");
        assert!(
            !shown.contains("hunter2") && shown.contains("password=***"),
            "{shown}"
        );
        let shown = redact_url("host=db user=etl password=hunter2 dbname=crm");
        assert_eq!(shown, "host=db user=etl password=*** dbname=crm");
        let source = PgSource::new("postgres://etl:hunter2@db/crm", "select 1;").expect("valid");
        assert!(!format!("{source:?}").contains("hunter2"));
        assert_eq!(source.query, "select 1");
    }

    #[test]
    fn a_missing_query_or_a_bad_url_is_refused_without_the_password() {
        let err = PgSource::new("postgres://etl:hunter2@db/crm", "  ;").expect_err("no query");
        assert!(err.to_string().contains("no query"));
        let err = PgSource::new("mysql://etl:hunter2@db/crm", "select 1").expect_err("bad url");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
