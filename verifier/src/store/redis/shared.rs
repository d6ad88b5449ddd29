//! The usage store's connection pool, for other ekey components that keep
//! fleet-wide state in the same Redis (the issuer's replay cache and rate
//! limits): one place that knows how to reach Redis (single node or
//! cluster, TLS, auth, timeouts, the `maxmemory-policy` check), so that no
//! component copies it.
//!
//! Commands are plain `redis` crate [`redis::Cmd`]s; on a cluster each is
//! routed by its key, so a command or script must keep its keys in one slot.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ekey_verifier::{RedisConnection, RedisStoreSettings};
//! let redis = RedisConnection::connect(RedisStoreSettings::single("redis://127.0.0.1:6379")).await?;
//! let mut set = redis::cmd("SET");
//! set.arg("ekey:example").arg(1).arg("NX").arg("PX").arg(60_000);
//! let reply = redis.query(&set).await?;
//! # let _ = reply; Ok(()) }
//! ```

use super::check_eviction;
use super::conn::{classify, Backend};
use super::settings::{RedisStoreError, RedisStoreSettings};
use redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

/// A pool of multiplexed connections to the Redis (or Redis Cluster) of a
/// [`RedisStoreSettings`], re-established in the background after a failure.
///
/// Calls are not bounded in time here beyond the settings' connect and
/// response timeouts: wrap each in `tokio::time::timeout` with
/// [`RedisStoreSettings::request_timeout`] to fail closed in bounded time,
/// as [`RedisStore`](super::RedisStore) does.
#[derive(Debug)]
pub struct RedisConnection {
    backend: Backend,
    settings: RedisStoreSettings,
}

impl RedisConnection {
    /// Validates the settings, connects (every node of a cluster) and checks
    /// `maxmemory-policy` as `settings.eviction_check` says.
    pub async fn connect(settings: RedisStoreSettings) -> Result<Self, RedisStoreError> {
        settings.validate()?;
        let backend = Backend::connect(&settings).await?;
        check_eviction(&backend, &settings).await?;
        Ok(Self { backend, settings })
    }

    /// The settings in use (`key_prefix`, timeouts).
    pub fn settings(&self) -> &RedisStoreSettings {
        &self.settings
    }

    /// Sends one command on the next connection of the pool (on a cluster,
    /// to the primary of its key's slot, following redirections).
    pub async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        self.backend.pick().query(cmd).await
    }

    /// Runs a script by its SHA-1 (`EVALSHA`), and by its text (`EVAL`)
    /// when the node has not cached it (after a restart, a failover or
    /// `SCRIPT FLUSH`). Routed by the first key on a cluster. `script` is
    /// the text whose hash `sha` is (see [`redis::Script::get_hash`]).
    pub async fn eval(&self, sha: &str, script: &str, keys: &[&[u8]], args: &[&[u8]]) -> RedisResult<Value> {
        let cmd = |by_sha: bool| {
            let mut c = redis::cmd(if by_sha { "EVALSHA" } else { "EVAL" });
            c.arg(if by_sha { sha } else { script }).arg(keys.len());
            for k in keys {
                c.arg(*k);
            }
            for a in args {
                c.arg(*a);
            }
            c
        };
        let mut conn = self.backend.pick();
        match conn.query(&cmd(true)).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => conn.query(&cmd(false)).await,
            other => other,
        }
    }
}

/// A short, stable word for why a Redis call failed (`timeout`,
/// `unreachable`, `busy`, `script error`, …), for logs and error messages;
/// the same words the usage store logs.
pub fn redis_error_reason(e: &RedisError) -> &'static str {
    classify(e)
}
