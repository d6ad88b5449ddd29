//! Revocations in Redis: the issuer writes them ([`RedisRevocations`]),
//! every verifier reads them ([`RedisRevocationFeed`]).
//!
//! Rules sit in one sorted set, `<prefix>:revocations`, scored by expiry;
//! each write drops expired rules, extends the set's TTL to the latest
//! expiry and publishes on the channel of the same name, in one script. A
//! feed refreshes its [`RevocationRules`] on every message and every
//! `poll_interval_ms`, so a lost message (subscriber disconnected, failover)
//! is made up by the next poll; if no refresh succeeds for
//! `max_staleness_ms`, the rules refuse every request.

use super::{RevocationRule, RevocationRules};
use crate::store::redis::conn::{node_clients, Backend};
use crate::store::redis::{check_eviction, trace_key, unix_now, RedisStoreError, RedisStoreSettings};
use crate::store::StoreError;
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most rules in force at once (each lives at most `RULE_MARGIN_SECS`).
pub const MAX_RULES: usize = 10_000;

const ADD_RULE_LUA: &str = r#"
-- KEYS[1] rules set; ARGV: member, expiry, now, max rules, channel
local key, member = KEYS[1], ARGV[1]
local expires, now, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= max and not redis.call('ZSCORE', key, member) then
  return redis.error_reply('ERR ekey: too many revocation rules in force')
end
redis.call('ZADD', key, expires, member)
if redis.call('TTL', key) < expires - now then
  redis.call('EXPIRE', key, expires - now)
end
redis.call('PUBLISH', ARGV[5], 'rules')
return redis.call('ZCARD', key)
"#;

/// Writes and reads revocations in Redis.
#[derive(Debug)]
pub struct RedisRevocations {
    backend: Backend,
    settings: RedisStoreSettings,
    rules_key: String,
    add_sha: String,
}

impl RedisRevocations {
    /// Connects with the same settings as the usage store (the per-trace
    /// markers must be where the consume script looks).
    pub async fn connect(settings: RedisStoreSettings) -> Result<Self, RedisStoreError> {
        settings.validate()?;
        let backend = Backend::connect(&settings).await?;
        check_eviction(&backend, &settings).await?;
        let rules_key = format!("{}:revocations", settings.key_prefix);
        Ok(Self { backend, settings, rules_key, add_sha: redis::Script::new(ADD_RULE_LUA).get_hash().to_owned() })
    }

    /// The sorted set of rules, which is also the pub/sub channel.
    pub fn rules_key(&self) -> &str {
        &self.rules_key
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("redis {what}: {e}"))
    }

    async fn run(&self, cmd: redis::Cmd) -> Result<redis::Value, StoreError> {
        let timeout = self.settings.request_timeout();
        match tokio::time::timeout(timeout, async { self.backend.pick().query(&cmd).await }).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(crate::store::redis::conn::classify(&e), e)),
            Err(_) => Err(self.fail("timeout", format_args!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    /// Adds a rule (kept until [`RevocationRule::expires`]) and tells every
    /// feed. Returns the number of rules in force.
    pub async fn add_rule(&self, rule: &RevocationRule) -> Result<usize, StoreError> {
        let now = unix_now();
        let expires = rule.expires();
        if expires <= now {
            // Nothing it matches can still be valid.
            return Ok(0);
        }
        let member = serde_json::to_string(rule).map_err(|e| self.fail("encoding", e))?;
        let eval = |by_sha: bool| {
            let mut c = redis::cmd(if by_sha { "EVALSHA" } else { "EVAL" });
            c.arg(if by_sha { self.add_sha.as_str() } else { ADD_RULE_LUA })
                .arg(1)
                .arg(&self.rules_key)
                .arg(&member)
                .arg(expires)
                .arg(now)
                .arg(MAX_RULES)
                .arg(&self.rules_key);
            c
        };
        let timeout = self.settings.request_timeout();
        let attempt = async {
            let mut conn = self.backend.pick();
            match conn.query(&eval(true)).await {
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    conn.query(&eval(false)).await
                }
                other => other,
            }
        };
        let v = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(self.fail(crate::store::redis::conn::classify(&e), e)),
            Err(_) => return Err(self.fail("timeout", format_args!("no answer within {} ms", timeout.as_millis()))),
        };
        match v {
            redis::Value::Int(n) => Ok(usize::try_from(n).unwrap_or(0)),
            other => Err(self.fail("unexpected reply", format_args!("{other:?}"))),
        }
    }

    /// Revokes one trace until `until` (unix seconds): the consume script
    /// answers `Revoked` for it from now on.
    pub async fn revoke_trace(&self, trace: &str, until: i64) -> Result<(), StoreError> {
        let ttl = (until - unix_now()).min(3600);
        if ttl < 1 {
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(trace_key(&self.settings.key_prefix, trace, "x")).arg(1).arg("EX").arg(ttl);
        self.run(cmd).await.map(drop)
    }

    /// Every rule stored (expired ones included until the next write; they
    /// match no valid token).
    pub async fn rules(&self) -> Result<Vec<RevocationRule>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(&self.rules_key).arg(0).arg(MAX_RULES as i64 * 2);
        let v = self.run(cmd).await?;
        let members: Vec<Vec<u8>> = redis::from_redis_value(v).map_err(|e| self.fail("unexpected reply", e))?;
        // A member we cannot read fails the refresh (fail closed) rather than
        // silently dropping a revocation.
        members.iter().map(|m| serde_json::from_slice(m).map_err(|e| self.fail("bad revocation rule", e))).collect()
    }
}

/// How a [`RedisRevocationFeed`] refreshes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationFeedSettings {
    /// Re-read the rules at least this often, even without a message,
    /// milliseconds. Defaults to 250.
    pub poll_interval_ms: u64,
    /// Refuse every request (503) when the rules have not been read for
    /// this long, milliseconds: the bound on how long a revoked token stays
    /// usable. At least 2 × `poll_interval_ms`. Defaults to 1000.
    pub max_staleness_ms: u64,
}

impl Default for RevocationFeedSettings {
    fn default() -> Self {
        Self { poll_interval_ms: 250, max_staleness_ms: 1000 }
    }
}

/// Keeps a [`RevocationRules`] in step with Redis, in a background task
/// that ends when the feed is dropped.
#[derive(Debug)]
pub struct RedisRevocationFeed {
    rules: Arc<RevocationRules>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisRevocationFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisRevocationFeed {
    /// Connects, reads the rules once (an error if that fails), subscribes,
    /// and starts refreshing.
    pub async fn start(store: RedisStoreSettings, feed: RevocationFeedSettings) -> Result<Self, RedisStoreError> {
        if feed.poll_interval_ms == 0 || feed.max_staleness_ms < 2 * feed.poll_interval_ms {
            return Err(RedisStoreError::Config {
                field: "max_staleness_ms",
                reason: "poll_interval_ms must be 1 or more and max_staleness_ms at least twice it".into(),
            });
        }
        let clients = node_clients(&store)?;
        let reader = RedisRevocations::connect(store).await?;
        let rules = Arc::new(RevocationRules::new(Duration::from_millis(feed.max_staleness_ms)));
        let started = Instant::now();
        let first = reader.rules().await.map_err(|e| RedisStoreError::Connect(e.to_string()))?;
        rules.replace(first, started);
        let task = tokio::spawn(run(reader, rules.clone(), clients, Duration::from_millis(feed.poll_interval_ms)));
        Ok(Self { rules, task })
    }

    /// The rule set to give the verifier
    /// ([`Verifier::with_revocation`](crate::Verifier::with_revocation)).
    pub fn rules(&self) -> Arc<RevocationRules> {
        self.rules.clone()
    }
}

async fn refresh(reader: &RedisRevocations, rules: &RevocationRules) {
    let started = Instant::now();
    match reader.rules().await {
        Ok(r) => rules.replace(r, started),
        Err(e) => tracing::warn!(error = %e, "revocation rules not refreshed"),
    }
}

async fn run(reader: RedisRevocations, rules: Arc<RevocationRules>, clients: Vec<redis::Client>, poll: Duration) {
    let timeout = reader.settings.connect_timeout() + reader.settings.response_timeout();
    let mut messages: Option<redis::aio::PubSubStream> = None;
    let mut next_node = 0usize;
    loop {
        if messages.is_none() && !clients.is_empty() {
            // PUBLISH reaches subscribers on every node of a cluster, so any
            // reachable node will do; try them in turn.
            let client = &clients[next_node % clients.len()];
            next_node = next_node.wrapping_add(1);
            let subscribed = tokio::time::timeout(timeout, async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(reader.rules_key()).await?;
                Ok::<_, redis::RedisError>(ps.into_on_message())
            })
            .await;
            match subscribed {
                Ok(Ok(stream)) => messages = Some(stream),
                Ok(Err(e)) => tracing::debug!(error = %e, "revocation subscribe failed; polling"),
                Err(_) => tracing::debug!("revocation subscribe timed out; polling"),
            }
        }
        // Read after subscribing, so nothing written in between is missed.
        refresh(&reader, &rules).await;
        match messages.as_mut() {
            Some(stream) => {
                tokio::select! {
                    m = stream.next() => if m.is_none() {
                        tracing::warn!("revocation subscription lost; polling until it is back");
                        messages = None;
                    },
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}
