//! Per-client rate limits at the token endpoint: a template may cap how many
//! tokens each of its clients gets (`rate = "50/s"`, `burst = 100`). Every
//! (client, template) pair has its own budget, spent only by requests that
//! passed every other check (so a replayed or refused request costs the
//! client nothing) and refused with `429 rate_limited` + `Retry-After`.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket
//! kept as one number): a bucket holds its *theoretical arrival time* `tat`;
//! a request at `now` would move it to `max(tat, now) + T` (`T` = period /
//! count, the emission interval) and is admitted when that is at most
//! `burst × T` ahead of `now`. A rested bucket admits `burst` requests at
//! once, then one per `T`. One number per bucket, one atomic update per
//! request, no timers.
//!
//! Two backends answer through [`RateLimiter`]: [`MemoryRateLimiter`] (one
//! process; one cell per configured pair, allocated at start) and
//! [`RedisRateLimiter`] (fleet-wide, one script call per request on the
//! replay cache's Redis).

mod fleet;
mod memory;

pub use fleet::RedisRateLimiter;
pub use memory::MemoryRateLimiter;

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// Longest a full bucket may take to rest (`burst × period / count`): keeps
/// every Redis key's TTL and every number in the script small.
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

/// Largest `count` and `burst`.
pub const MAX_COUNT: u32 = 1_000_000;

/// One template's limit, applied to each of its clients separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Tokens per `period` in the long run.
    pub count: u32,
    /// One second, minute or hour.
    pub period: Duration,
    /// Tokens a rested client may get at once. Defaults to `count`.
    pub burst: u32,
}

impl RateLimit {
    /// `rate` as written in a template (`"50/s"`, `"10/m"`, `"100/h"`) and
    /// an optional burst. The error says what is wrong, for the config error.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Self, String> {
        let (count, unit) =
            rate.trim().split_once('/').ok_or_else(|| format!("{rate:?} is not <count>/<s|m|h>, e.g. \"50/s\""))?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("unit {other:?} is not s, m or h")),
        };
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_COUNT).contains(n))
            .ok_or_else(|| format!("the count in {rate:?} must be a whole number from 1 to {MAX_COUNT}"))?;
        Self::new(count, period, burst.unwrap_or(count))
    }

    /// A limit of `count` tokens per `period` with `burst`.
    pub fn new(count: u32, period: Duration, burst: u32) -> Result<Self, String> {
        if !(1..=MAX_COUNT).contains(&count) || period.is_zero() {
            return Err(format!("the count must be from 1 to {MAX_COUNT} per a non-zero period"));
        }
        if !(1..=MAX_COUNT).contains(&burst) {
            return Err(format!("burst must be from 1 to {MAX_COUNT}"));
        }
        let limit = Self { count, period, burst };
        if limit.interval_micros() == 0 {
            return Err("more than one token per microsecond".into());
        }
        if u128::from(limit.window_micros()) > MAX_WINDOW.as_micros() {
            return Err(format!(
                "burst {burst} at {count} per {} s takes longer than a day to earn back; lower burst or raise the rate",
                period.as_secs()
            ));
        }
        Ok(limit)
    }

    /// `T`: microseconds between tokens in the long run.
    pub fn interval_micros(&self) -> u64 {
        u64::try_from(self.period.as_micros() / u128::from(self.count)).unwrap_or(u64::MAX)
    }

    /// `burst × T`: how far ahead of now a bucket may run.
    pub fn window_micros(&self) -> u64 {
        self.interval_micros().saturating_mul(u64::from(self.burst))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s".to_owned(),
            60 => "m".to_owned(),
            3600 => "h".to_owned(),
            _ => format!("{}ms", self.period.as_millis()),
        };
        write!(f, "{}/{unit}, burst {}", self.count, self.burst)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the limit; one token of the budget is spent.
    Admitted,
    /// Over the limit; nothing was spent. The next request is admitted
    /// after `retry_after`.
    Limited {
        /// How long until one token is earned back.
        retry_after: Duration,
    },
}

/// The limiter cannot answer; the request must be refused (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The backend is unreachable or answered badly.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
    /// No budget is kept for this client and template (a limiter built for
    /// another configuration).
    #[error("no rate limit bucket for client {client:?} and template {template:?}")]
    NoBucket {
        /// The client.
        client: String,
        /// The template.
        template: String,
    },
}

/// Keeps the budgets.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Spends one token of `client`'s budget for `template` under `limit`,
    /// or says how long to wait. Atomic: concurrent calls for one pair
    /// never admit more than the limit allows.
    async fn admit(&self, client: &str, template: &str, limit: &RateLimit) -> Result<Admission, RateLimitError>;

    /// `memory` or `redis`, for logs.
    fn backend(&self) -> &'static str;
}

/// One GCRA step in microseconds: the bucket's new `tat`, or how long until
/// the request would be admitted. `tat` 0 is a rested bucket.
pub(crate) fn gcra(tat: u64, now: u64, limit: &RateLimit) -> Result<u64, u64> {
    let new_tat = tat.max(now).saturating_add(limit.interval_micros());
    let ahead = new_tat - now;
    match ahead.checked_sub(limit.window_micros()) {
        Some(wait) if wait > 0 => Err(wait),
        _ => Ok(new_tat),
    }
}

/// `Retry-After` seconds: the wait rounded up, at least 1.
pub(crate) fn retry_after(wait_micros: u64) -> Duration {
    Duration::from_secs(wait_micros.div_ceil(1_000_000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_name_what_is_wrong() {
        let l = RateLimit::parse("50/s", None).unwrap();
        assert_eq!((l.count, l.period, l.burst), (50, Duration::from_secs(1), 50));
        assert_eq!((l.interval_micros(), l.window_micros()), (20_000, 1_000_000));
        assert_eq!(RateLimit::parse(" 10 / m ", Some(3)).unwrap().to_string(), "10/m, burst 3");
        assert_eq!(RateLimit::parse("1/h", Some(24)).unwrap().window_micros(), 86_400_000_000);
        for (rate, burst, why) in [
            ("50", None, "is not <count>/<s|m|h>"),
            ("50/d", None, "unit \"d\""),
            ("0/s", None, "from 1 to"),
            ("-1/s", None, "from 1 to"),
            ("1000001/s", None, "from 1 to"),
            ("x/s", None, "whole number"),
            ("1/s", Some(0), "burst must be"),
            ("1/h", Some(25), "longer than a day"),
        ] {
            let e = RateLimit::parse(rate, burst).unwrap_err();
            assert!(e.contains(why), "{rate} {burst:?}: {e}");
        }
    }

    #[test]
    fn gcra_admits_burst_then_one_per_interval() {
        let l = RateLimit::parse("10/s", Some(3)).unwrap(); // T = 100 ms
        let mut tat = 0;
        let now = 5_000_000;
        for _ in 0..3 {
            tat = gcra(tat, now, &l).unwrap();
        }
        assert_eq!(gcra(tat, now, &l), Err(100_000));
        assert_eq!(retry_after(100_000), Duration::from_secs(1));
        // One interval later exactly one more.
        tat = gcra(tat, now + 100_000, &l).unwrap();
        assert_eq!(gcra(tat, now + 100_000, &l), Err(100_000));
        // Rested after burst × T: a full burst again.
        let later = now + 100_000 + 300_000;
        for _ in 0..3 {
            tat = gcra(tat, later, &l).unwrap();
        }
        assert!(gcra(tat, later, &l).is_err());
        assert_eq!(retry_after(1_000_001), Duration::from_secs(2));
    }
}
