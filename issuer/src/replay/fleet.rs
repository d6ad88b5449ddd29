//! The replay cache shared by every replica: one `SET key 1 NX PX <ttl>`
//! per identifier on the fleet's Redis (or Redis Cluster).
//!
//! Keys: `<prefix>:jti:<base64url of the ReplayKey>` — fixed size (a SHA-256
//! over kind, scope and `jti`), nothing of the request in clear, and no
//! hash tag: each command touches one key, so keys spread over a cluster.
//!
//! The expiry is relative (`PX`), computed from the issuer's clock: the
//! entry must outlive the moment this issuer (and its peers, whose clocks
//! must agree within the leeway anyway) would stop accepting the proof or
//! assertion, so a Redis clock that runs ahead cannot shorten it, as an
//! absolute `EXAT` would. Fail closed: no answer within
//! `request_timeout_ms`, an error or a reply of the wrong shape refuses the
//! request (503). Nothing is retried: a reply lost after the `SET` ran would
//! make the retry look like a replay.

use super::{ReplayCache, ReplayError, ReplayKey, Seen};
use crate::fleet::Calls;
use async_trait::async_trait;
use ekey_verifier::{b64_encode, RedisConnection};
use std::sync::Arc;

/// Longest an entry is kept, in seconds. The longest any identifier needs
/// is about an hour (`client_auth.max_assertion_lifetime` ≤ 3600 plus
/// leeway); this only guards against a nonsensical `until`.
const MAX_RETAIN_SECS: i64 = 7200;

/// Assertion and proof `jti`s in the fleet's Redis.
#[derive(Debug)]
pub struct RedisReplayCache {
    redis: Arc<RedisConnection>,
    calls: Calls,
}

impl RedisReplayCache {
    /// A cache on `redis`, under its `key_prefix`.
    pub fn new(redis: Arc<RedisConnection>) -> Self {
        Self { redis, calls: Calls::new("replay cache") }
    }

    /// The connection (shared with the rate limiter).
    pub fn connection(&self) -> &Arc<RedisConnection> {
        &self.redis
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &ReplayKey) -> String {
        format!("{}:jti:{}", self.redis.settings().key_prefix, b64_encode(key.as_bytes()))
    }

    /// Identifiers refused so far because Redis did not answer properly.
    pub fn failures(&self) -> u64 {
        self.calls.failures()
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn record(&self, key: ReplayKey, until: i64, now: i64) -> Result<Seen, ReplayError> {
        let ttl_ms = until.saturating_sub(now).clamp(1, MAX_RETAIN_SECS) * 1000;
        let mut set = redis::cmd("SET");
        set.arg(self.redis_key(&key)).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        match self.calls.run(&self.redis, self.redis.query(&set)).await.map_err(ReplayError::Unavailable)? {
            redis::Value::Okay => Ok(Seen::First),
            redis::Value::SimpleString(s) if s == "OK" => Ok(Seen::First),
            redis::Value::Nil => Ok(Seen::Again),
            _ => {
                Err(ReplayError::Unavailable(self.calls.fail("unexpected reply", "SET NX answered neither OK nor nil")))
            }
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    /// `PING` within `request_timeout_ms` (not counted as a failure: the
    /// readiness probe reports it).
    async fn check(&self) -> Result<(), ReplayError> {
        let timeout = self.redis.settings().request_timeout();
        match tokio::time::timeout(timeout, self.redis.query(&redis::cmd("PING"))).await {
            Ok(Ok(redis::Value::SimpleString(s))) if s == "PONG" => Ok(()),
            Ok(Ok(_)) => Err(ReplayError::Unavailable("redis PING: unexpected reply".into())),
            Ok(Err(e)) => {
                Err(ReplayError::Unavailable(format!("redis PING: {}: {e}", ekey_verifier::redis_error_reason(&e))))
            }
            Err(_) => Err(ReplayError::Unavailable(format!("redis PING: no answer within {} ms", timeout.as_millis()))),
        }
    }
}
