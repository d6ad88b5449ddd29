//! Calls to the fleet's shared Redis (the replay cache and the rate limits):
//! each bounded by `request_timeout_ms`, each failure a short fixed word
//! plus detail, logged at most once per second per user so that an outage
//! does not flood the logs. The connection itself is the verifier's
//! [`RedisConnection`], shared with nothing else of the issuer.

use ekey_verifier::{redis_error_reason, Clock as _, RedisConnection, SystemClock};
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Failure accounting for one user of the connection.
#[derive(Debug)]
pub(crate) struct Calls {
    /// What uses the connection, for the log (`replay cache`, `rate limiter`).
    user: &'static str,
    /// Unix second of the last warning.
    last_warning: AtomicI64,
    failures: AtomicU64,
}

impl Calls {
    pub(crate) const fn new(user: &'static str) -> Self {
        Self { user, last_warning: AtomicI64::new(0), failures: AtomicU64::new(0) }
    }

    /// Calls refused so far because Redis did not answer properly.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Runs one Redis call within the connection's `request_timeout_ms`.
    /// The error is the message for the refusal: `redis <word>: <detail>`.
    pub(crate) async fn run<T>(
        &self,
        redis: &RedisConnection,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let timeout = redis.settings().request_timeout();
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(redis_error_reason(&e), e)),
            Err(_) => Err(self.fail("timeout", format_args!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    /// Counts and (throttled) logs a failure; returns the refusal message.
    pub(crate) fn fail(&self, what: &str, detail: impl std::fmt::Display) -> String {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = SystemClock.now();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                user = self.user,
                reason = what,
                error = %detail,
                "shared Redis unavailable: token requests are refused (503)"
            );
        }
        format!("redis {what}: {detail}")
    }
}
