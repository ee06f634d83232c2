//! The account's request quota, "CALLS per WINDOW" (`25/5s`, `25/1s`, `10/500ms`).
//!
//! One type shared by the pacer (which must never exceed it), the simulator (which enforces it
//! with a sliding window) and the configuration (which parses it from flags, env and TOML).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// `calls` requests are allowed in any window of length `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// How many requests one window may hold.
    pub calls: NonZeroU32,
    /// The window length; LeadSquared counts it as a sliding window over arrival times.
    pub window: Duration,
}

/// Why a quota string was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate {input:?}: {reason} (expected CALLS/DURATION such as 25/5s, 25/1s or 10/500ms)"
)]
pub struct RateQuotaError {
    input: String,
    reason: &'static str,
}

impl RateQuota {
    /// LeadSquared's documented default: 25 calls in 5 seconds.
    pub(crate) const DEFAULT: RateQuota = RateQuota {
        calls: NonZeroU32::new(25).expect("25 is not zero"),
        window: Duration::from_secs(5),
    };

    pub fn new(calls: NonZeroU32, window: Duration) -> Self {
        RateQuota { calls, window }
    }

    /// Calls per second this quota allows on average, for ETAs and ratios.
    pub(crate) fn per_second(&self) -> f64 {
        f64::from(self.calls.get()) / self.window.as_secs_f64()
    }
}

impl Default for RateQuota {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for RateQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.calls, format_duration(self.window))
    }
}

impl FromStr for RateQuota {
    type Err = RateQuotaError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| RateQuotaError {
            input: input.to_string(),
            reason,
        };
        let (calls, window) = input.trim().split_once('/').ok_or_else(|| err("no '/'"))?;
        let calls: u32 = calls
            .trim()
            .parse()
            .map_err(|_| err("CALLS is not a whole number"))?;
        let calls = NonZeroU32::new(calls).ok_or_else(|| err("CALLS must be at least 1"))?;
        let window =
            parse_duration(window.trim()).ok_or_else(|| err("DURATION is not understood"))?;
        if window.is_zero() {
            return Err(err("DURATION must be longer than zero"));
        }
        Ok(RateQuota { calls, window })
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h`; a bare number means seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "" | "s" => Some(Duration::from_secs(number)),
        "m" | "min" => Some(Duration::from_secs(number.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(number.checked_mul(3600)?)),
        _ => None,
    }
}

/// The shortest of `parse_duration`'s forms that says exactly this duration.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let q: RateQuota = "25/5s".parse().unwrap();
        assert_eq!((q.calls.get(), q.window), (25, Duration::from_secs(5)));
        let q: RateQuota = "10/500ms".parse().unwrap();
        assert_eq!((q.calls.get(), q.window), (10, Duration::from_millis(500)));
        let q: RateQuota = " 100 / 1m ".parse().unwrap();
        assert_eq!((q.calls.get(), q.window), (100, Duration::from_secs(60)));
    }

    #[test]
    fn refuses_nonsense_with_the_input_in_the_message() {
        for bad in ["", "25", "0/5s", "x/5s", "25/0s", "25/5 parsecs", "-1/5s"] {
            let err = bad.parse::<RateQuota>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["25/5s", "25/1s", "10/500ms", "100/1m", "7/1500ms", "3/2h"] {
            let q: RateQuota = text.parse().unwrap();
            assert_eq!(q.to_string(), text);
        }
    }

    #[test]
    fn per_second() {
        assert!((RateQuota::DEFAULT.per_second() - 5.0).abs() < 1e-9);
    }
}
