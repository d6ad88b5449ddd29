//! The fleet-wide limiter: every replica spends from the same buckets in
//! Redis, one script call (`gcra.lua`) per limited request.
//!
//! Keys: `<prefix>:rate:{<client tag>}:<template>`, where the client tag is
//! the base64url SHA-256 of the client id (fixed size, and no client id can
//! break out of the `{…}` hash tag). Every bucket of one client shares the
//! tag, so on a Redis Cluster a client's buckets sit in one slot and
//! different clients spread over the primaries.
//!
//! Time is Redis's (`TIME` inside the script), not the replicas': a bucket
//! is only ever compared with the clock of the node that holds it, so
//! replicas whose clocks disagree cannot earn a client extra tokens. (The
//! replay cache, by contrast, uses the issuer's clock: its expiry is about
//! when a proof or assertion stops being accepted, which the issuer's clock
//! decides.)

use super::{retry_after, Admission, RateLimit, RateLimitError, RateLimiter};
use crate::fleet::Calls;
use async_trait::async_trait;
use ekey_verifier::{b64_encode, RedisConnection};
use std::sync::Arc;

/// The script.
const GCRA_LUA: &str = include_str!("gcra.lua");

/// Budgets shared by every issuer connected to the same Redis.
#[derive(Debug)]
pub struct RedisRateLimiter {
    redis: Arc<RedisConnection>,
    sha: String,
    calls: Calls,
}

impl RedisRateLimiter {
    /// A limiter on `redis` (usually the replay cache's connection), with
    /// its `key_prefix`.
    pub fn new(redis: Arc<RedisConnection>) -> Self {
        Self { redis, sha: redis::Script::new(GCRA_LUA).get_hash().to_owned(), calls: Calls::new("rate limiter") }
    }

    /// The bucket of `client` for `template`.
    pub fn key(&self, client: &str, template: &str) -> String {
        let tag = b64_encode(openssl::sha::sha256(client.as_bytes()));
        format!("{}:rate:{{{tag}}}:{template}", self.redis.settings().key_prefix)
    }

    /// Requests refused so far because Redis did not answer properly.
    pub fn failures(&self) -> u64 {
        self.calls.failures()
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn admit(&self, client: &str, template: &str, limit: &RateLimit) -> Result<Admission, RateLimitError> {
        let key = self.key(client, template);
        let (interval, window) = (limit.interval_micros().to_string(), limit.window_micros().to_string());
        let (keys, args) = ([key.as_bytes()], [interval.as_bytes(), window.as_bytes()]);
        let call = self.redis.eval(&self.sha, GCRA_LUA, &keys, &args);
        let reply = self.calls.run(&self.redis, call).await.map_err(RateLimitError::Unavailable)?;
        match parse_reply(&reply, limit) {
            Ok(a) => Ok(a),
            Err(why) => Err(RateLimitError::Unavailable(self.calls.fail("unexpected reply", why))),
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

/// `{1, 0}` or `{0, wait}` with `0 < wait`, at most a day and an interval
/// (a bucket filled under a larger `burst` before a config change may run
/// ahead of the current window).
fn parse_reply(v: &redis::Value, limit: &RateLimit) -> Result<Admission, String> {
    let redis::Value::Array(items) = v else { return Err(kind(v)) };
    match items.as_slice() {
        [redis::Value::Int(1), redis::Value::Int(0)] => Ok(Admission::Admitted),
        [redis::Value::Int(0), redis::Value::Int(wait)] => match u64::try_from(*wait) {
            Ok(w @ 1..) if w <= max_wait(limit) => Ok(Admission::Limited { retry_after: retry_after(w) }),
            _ => Err(format!("wait {wait} outside 1..={}", max_wait(limit))),
        },
        _ => Err(format!("array of {} items", items.len())),
    }
}

fn max_wait(limit: &RateLimit) -> u64 {
    u64::try_from(super::MAX_WINDOW.as_micros()).unwrap_or(u64::MAX).saturating_add(limit.interval_micros())
}

/// The type of a reply, never its content.
fn kind(v: &redis::Value) -> String {
    match v {
        redis::Value::Nil => "nil",
        redis::Value::Int(_) => "integer",
        redis::Value::BulkString(_) => "bulk string",
        redis::Value::SimpleString(_) => "simple string",
        redis::Value::Okay => "OK",
        redis::Value::ServerError(_) => "error",
        _ => "other",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;
    use std::time::Duration;

    #[test]
    fn replies_are_checked() {
        let l = RateLimit::parse("1/s", Some(2)).unwrap();
        let r = |a, b| Value::Array(vec![Value::Int(a), Value::Int(b)]);
        assert_eq!(parse_reply(&r(1, 0), &l), Ok(Admission::Admitted));
        assert_eq!(parse_reply(&r(0, 1_500_000), &l), Ok(Admission::Limited { retry_after: Duration::from_secs(2) }));
        for bad in [r(0, 0), r(0, -1), r(0, 86_401_000_001), r(1, 5), r(2, 0), Value::Nil, Value::Okay] {
            assert!(parse_reply(&bad, &l).is_err(), "{bad:?}");
        }
    }
}
