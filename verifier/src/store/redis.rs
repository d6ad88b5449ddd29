//! The fleet-wide usage store on Redis or Redis Cluster: one Lua script, one
//! round trip per request.
//!
//! Every verifier of a fleet sharing one Redis (or one Redis Cluster) sees
//! the same counters: a token with `cap.limit = L` is accepted L times in
//! total, whichever instance serves each request. The script
//! (`consume.lua`) checks a per-trace revocation, the limit and the proof's
//! `jti`, records the use and sets the expiry, atomically. All keys of one
//! trace share the hash tag `{<trace>}`, so on a cluster they sit in one slot
//! and the script runs on one node. See `docs/replay-store.md`.
//!
//! Fail closed: no answer within `request_timeout_ms`, an unreachable node,
//! `BUSY`, a script error or a reply of the wrong shape is a
//! [`StoreError::Unavailable`] (503 + `Retry-After`). Connections are
//! re-established in the background, so the store recovers by itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ekey_verifier::{RedisStore, RedisStoreSettings};
//! let store = RedisStore::connect(RedisStoreSettings::single("redis://127.0.0.1:6379")).await?;
//! # let _ = store; Ok(()) }
//! ```

pub(crate) mod conn;
mod settings;
mod shared;

pub use settings::{EvictionCheck, RedisStoreError, RedisStoreSettings};
pub use shared::{redis_error_reason, RedisConnection};

use super::{ConsumeOutcome, ConsumeRequest, ProofId, StoreError, UsageStore};
use conn::Backend;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest retention the script is asked for (tokens live ≤ 300 s; this
/// leaves room for any leeway and proof age).
const MAX_RETAIN_SECS: i64 = 3600;

/// The consume script.
const CONSUME_LUA: &str = include_str!("consume.lua");

/// A [`UsageStore`] shared by every verifier connected to the same Redis.
#[derive(Debug)]
pub struct RedisStore {
    backend: Backend,
    settings: RedisStoreSettings,
    /// SHA-1 of `consume.lua`, for `EVALSHA`.
    script_sha: String,
    /// Random per process; with `counter`, makes request ids unique fleet-wide.
    rid_prefix: [u8; 8],
    counter: AtomicU64,
    /// Unix second of the last "unavailable" warning, to keep logs readable
    /// during an outage.
    last_warning: AtomicI64,
    failures: AtomicU64,
}

impl RedisStore {
    /// Connects (every node of a cluster), checks `maxmemory-policy` as
    /// `settings.eviction_check` says, and returns the store.
    pub async fn connect(settings: RedisStoreSettings) -> Result<Self, RedisStoreError> {
        settings.validate()?;
        let backend = Backend::connect(&settings).await?;
        check_eviction(&backend, &settings).await?;
        let mut rid_prefix = [0u8; 8];
        openssl::rand::rand_bytes(&mut rid_prefix)
            .map_err(|e| RedisStoreError::Connect(format!("no randomness for request ids: {e}")))?;
        Ok(Self {
            backend,
            settings,
            script_sha: redis::Script::new(CONSUME_LUA).get_hash().to_owned(),
            rid_prefix,
            counter: AtomicU64::new(0),
            last_warning: AtomicI64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &RedisStoreSettings {
        &self.settings
    }

    /// Store operations refused so far because Redis did not answer properly.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The usage hash of `trace` (for operators and tests).
    pub fn usage_key(&self, trace: &str) -> String {
        trace_key(&self.settings.key_prefix, trace, "u")
    }

    /// The revocation marker of `trace`.
    pub fn revocation_key(&self, trace: &str) -> String {
        trace_key(&self.settings.key_prefix, trace, "x")
    }

    fn request_id(&self) -> [u8; 16] {
        let mut rid = [0u8; 16];
        rid[..8].copy_from_slice(&self.rid_prefix);
        rid[8..].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        rid
    }

    fn fail(&self, what: &'static str, detail: impl std::fmt::Display) -> StoreError {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = unix_now();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(reason = what, error = %detail, "replay store unavailable: requests are refused (503)");
        }
        StoreError::Unavailable(format!("redis {what}: {detail}"))
    }

    async fn consume_inner(&self, req: &ConsumeRequest<'_>, deadline: Instant) -> Result<ConsumeOutcome, StoreError> {
        let ttl = (req.retain_until - req.now).clamp(1, MAX_RETAIN_SECS);
        let rid = self.request_id();
        let field: Vec<u8> = match req.proof {
            Some(ProofId(id)) => [&b"p"[..], &id].concat(),
            None => [&b"q"[..], &rid].concat(),
        };
        let usage = self.usage_key(req.trace);
        let revoked = self.revocation_key(req.trace);
        let (limit, ttl) = (req.limit.to_string(), ttl.to_string());
        let script = conn::Eval {
            sha: &self.script_sha,
            code: CONSUME_LUA,
            keys: [usage.as_bytes(), revoked.as_bytes()],
            args: [limit.as_bytes(), ttl.as_bytes(), &field, &rid],
        };

        // A dropped connection may have lost the reply of a script that ran:
        // retrying is safe because the request id makes the script answer
        // the first outcome again instead of counting a second use.
        let mut attempt = 0;
        let (reply, mut conn) = loop {
            attempt += 1;
            let mut conn = self.backend.pick();
            match conn.eval(&script).await {
                Ok(v) => break (v, conn),
                Err(e) if attempt < 3 && conn::is_connection_error(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                Err(e) => return Err(self.fail(conn::classify(&e), e)),
            }
        };
        let outcome = parse_reply(&reply, req.limit).map_err(|why| self.fail("unexpected reply", why))?;
        if let (ConsumeOutcome::Accepted { .. }, n @ 1..) = (&outcome, self.settings.wait_replicas) {
            let timeout = self.settings.wait_timeout_ms;
            let acked = conn.wait_replicas(&usage, n, timeout).await.map_err(|e| self.fail("WAIT", e))?;
            if acked < i64::from(n) {
                return Err(self.fail("WAIT", format!("{acked} of {n} replicas acknowledged within {timeout} ms")));
            }
        }
        Ok(outcome)
    }
}

/// The start-up check of `maxmemory-policy`, as `settings.eviction_check` says.
pub(crate) async fn check_eviction(backend: &Backend, settings: &RedisStoreSettings) -> Result<(), RedisStoreError> {
    if settings.eviction_check == EvictionCheck::Off {
        return Ok(());
    }
    match backend.eviction_risk(settings.connect_timeout() + settings.response_timeout()).await {
        Ok(None) => Ok(()),
        Ok(Some(risk)) if settings.eviction_check == EvictionCheck::Refuse => Err(RedisStoreError::Eviction(risk)),
        Ok(Some(risk)) => {
            tracing::warn!(
                risk = %risk,
                "Redis may evict usage counters and revocations: a token could be accepted more often than its limit"
            );
            Ok(())
        }
        // No answer is no evidence: `refuse` must not assume noeviction.
        Err(e) if settings.eviction_check == EvictionCheck::Refuse => {
            Err(RedisStoreError::EvictionUnchecked(e.to_string()))
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "could not read Redis maxmemory-policy (CONFIG disabled?); make sure it is noeviction"
            );
            Ok(())
        }
    }
}

/// `<prefix>:{<tag of trace>}:<suffix>`.
pub(crate) fn trace_key(prefix: &str, trace: &str, suffix: &str) -> String {
    format!("{prefix}:{{{}}}:{suffix}", hash_tag(trace))
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The hash tag of a trace: the trace itself when it is plain base64url (as
/// the issuer mints them), else a hash, so that no trace can break the
/// `{…}` tag or make keys long.
fn hash_tag(trace: &str) -> std::borrow::Cow<'_, str> {
    if (1..=128).contains(&trace.len()) && trace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        trace.into()
    } else {
        let digest = openssl::sha::sha256(trace.as_bytes());
        // `~` is not base64url: a hashed tag never equals a plain one.
        let mut s = String::with_capacity(65);
        s.push('~');
        for b in digest {
            s.push_str(&format!("{b:02x}"));
        }
        s.into()
    }
}

fn parse_reply(v: &redis::Value, limit: u32) -> Result<ConsumeOutcome, String> {
    let (code, used) = match v {
        redis::Value::Array(items) => match items.as_slice() {
            [redis::Value::Int(code), redis::Value::Int(used)] => (*code, *used),
            _ => return Err(format!("{v:?}")),
        },
        _ => return Err(format!("{v:?}")),
    };
    let used = u32::try_from(used).map_err(|_| format!("used = {used}"))?;
    match code {
        1 if (1..=limit).contains(&used) => Ok(ConsumeOutcome::Accepted { used, remaining: limit - used }),
        2 => Ok(ConsumeOutcome::Exhausted),
        3 => Ok(ConsumeOutcome::ReplayedProof),
        4 => Ok(ConsumeOutcome::Revoked),
        _ => Err(format!("code {code}, used {used}, limit {limit}")),
    }
}

#[async_trait::async_trait]
impl UsageStore for RedisStore {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    async fn consume(&self, req: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        let timeout = self.settings.request_timeout();
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout(timeout, self.consume_inner(req, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(self.fail("timeout", format_args!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    async fn revoke_trace(&self, trace: &str, until: i64) -> Result<(), StoreError> {
        let timeout = self.settings.request_timeout();
        // Relative to this host's clock, like the consume script's TTLs, so
        // that a skewed Redis clock does not shorten it.
        let ttl = (until - unix_now()).min(MAX_RETAIN_SECS);
        if ttl < 1 {
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.revocation_key(trace)).arg(1).arg("EX").arg(ttl);
        match tokio::time::timeout(timeout, self.backend.pick().query(&cmd)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.fail(conn::classify(&e), e)),
            Err(_) => Err(self.fail("timeout", format_args!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    /// `PING` on one connection of the pool (on a cluster, one node), within
    /// `request_timeout_ms`. Not counted in [`RedisStore::failures`] and not
    /// logged: the caller (a readiness probe) reports it.
    async fn check(&self) -> Result<(), StoreError> {
        let timeout = self.settings.request_timeout();
        match tokio::time::timeout(timeout, self.backend.pick().query(&redis::cmd("PING"))).await {
            Ok(Ok(redis::Value::SimpleString(s))) if s == "PONG" => Ok(()),
            Ok(Ok(other)) => {
                Err(StoreError::Unavailable(format!("redis PING: unexpected reply {}", reply_kind(&other))))
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis PING: {}: {e}", conn::classify(&e)))),
            Err(_) => Err(StoreError::Unavailable(format!("redis PING: no answer within {} ms", timeout.as_millis()))),
        }
    }
}

/// A short name for a reply's type (never its content).
fn reply_kind(v: &redis::Value) -> &'static str {
    match v {
        redis::Value::Nil => "nil",
        redis::Value::Int(_) => "integer",
        redis::Value::BulkString(_) => "bulk string",
        redis::Value::Array(_) => "array",
        redis::Value::SimpleString(_) => "simple string",
        redis::Value::Okay => "OK",
        redis::Value::ServerError(_) => "error",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn tags_stay_inside_braces() {
        assert_eq!(hash_tag("abc-_09"), "abc-_09");
        for odd in ["", "a}b", "a{b", "a b", &"x".repeat(129)] {
            let t = hash_tag(odd);
            assert!(t.starts_with('~') && t.len() == 65, "{odd:?} -> {t}");
        }
    }

    #[test]
    fn reply_kinds_name_types_only() {
        assert_eq!(reply_kind(&Value::SimpleString("secret".into())), "simple string");
        assert_eq!(reply_kind(&Value::BulkString(b"secret".to_vec())), "bulk string");
        assert_eq!(reply_kind(&Value::Nil), "nil");
    }

    #[test]
    fn replies_are_checked() {
        let r = |c, u| Value::Array(vec![Value::Int(c), Value::Int(u)]);
        assert_eq!(parse_reply(&r(1, 2), 3), Ok(ConsumeOutcome::Accepted { used: 2, remaining: 1 }));
        assert_eq!(parse_reply(&r(2, 3), 3), Ok(ConsumeOutcome::Exhausted));
        assert_eq!(parse_reply(&r(3, 1), 3), Ok(ConsumeOutcome::ReplayedProof));
        assert_eq!(parse_reply(&r(4, 0), 3), Ok(ConsumeOutcome::Revoked));
        // Accepted beyond the limit, unknown codes, wrong shapes: refused.
        for bad in [r(1, 4), r(1, 0), r(1, -1), r(9, 0), Value::Nil, Value::Okay, Value::Array(vec![Value::Int(1)])] {
            assert!(parse_reply(&bad, 3).is_err(), "{bad:?}");
        }
    }
}
