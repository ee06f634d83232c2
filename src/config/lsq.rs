//! What the API layer (`crate::lsq`) reads of the settings, read here so that it need not know
//! [`Settings`]: the client's host, keys and timeouts, the retry policy, the outage gate's
//! policy, and the run's [`Api`] built from them.

use super::Settings;
use crate::lsq::calls::{Api, RetryPolicy};
use crate::lsq::client::{ClientConfig, LsqClient};
use crate::lsq::outage::GatePolicy;

impl Settings {
    /// The client settings of a run, or a message naming the one that is missing and where to
    /// set it.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let host = self.host.clone().ok_or_else(|| {
            "no API host: set --host, LSQ_HOST or [api] host in the config file".to_string()
        })?;
        let missing = |name: &str| {
            format!(
                "no {name}: set LSQ_{} in the environment or [api] {} in the config file",
                name.to_ascii_uppercase().replace(' ', "_"),
                name.replace(' ', "_")
            )
        };
        Ok(ClientConfig {
            host,
            access_key: self
                .access_key
                .clone()
                .ok_or_else(|| missing("access key"))?,
            secret_key: self
                .secret_key
                .clone()
                .ok_or_else(|| missing("secret key"))?,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_idle_connections: self.concurrency,
            allow_insecure_http: self.allow_insecure_http,
        })
    }

    /// How failed attempts are retried: `--max-attempts`, `--backoff-base`, `--backoff-max`.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.get(),
            base: self.backoff_base,
            max: self.backoff_max,
        }
    }

    /// How the outage gate probes and how long it waits: the retry backoff and
    /// `--outage-patience`.
    pub(crate) fn gate_policy(&self) -> GatePolicy {
        GatePolicy::new(self.backoff_base, self.backoff_max, self.outage_patience)
    }

    /// The run's one [`Api`] over `client`: its pacer, counters, retry policy and outage gate as
    /// these settings describe them.
    pub(crate) fn api(&self, client: LsqClient) -> Api {
        Api::new(
            client,
            self.rate,
            self.pacing_margin,
            self.retry_policy(),
            self.gate_policy(),
        )
    }
}
