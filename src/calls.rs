//! The paced, counted, retried API call: what every call of a run shares, whatever it posts.
//!
//! [`RetryPolicy`] says how often and after how long a failed attempt is repeated: attempts per
//! call, exponential backoff with jitter, and the server's `Retry-After` (bounded) when it sent
//! one.

use std::time::Duration;

/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The policy the settings describe.
    pub fn from_settings(settings: &crate::config::Settings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: settings.max_attempts.get(),
            base: settings.backoff_base,
            max: settings.backoff_max,
        }
    }

    /// Exponential backoff with jitter: between half and all of `base * 2^(attempt-1)`, capped.
    /// The jitter spreads the retries of batches that failed together.
    pub fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        capped.mul_f64(0.5 + 0.5 * rng.f64())
    }

    /// The wait before the next attempt: the server's `Retry-After` when it sent one (bounded,
    /// so a hostile value cannot park the run for hours), else [`RetryPolicy::backoff`].
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        match retry_after {
            Some(wait) => wait.min(MAX_RETRY_AFTER),
            None => self.backoff(attempt, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=8 {
            let full =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            let d = policy.backoff(attempt, &mut rng);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_within_a_bound() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3)), &mut rng),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(99_999)), &mut rng),
            MAX_RETRY_AFTER
        );
    }
}
