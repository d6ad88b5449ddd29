//! `[replay]`: where assertion and proof `jti`s are remembered (this
//! process, or the fleet's Redis, which also holds the rate limits), the
//! Redis settings both `[replay.redis]` and `[revocation.redis]` take, and
//! the warning for a fleet that keeps them per process.

use super::raw::RawReplay;
use super::validate::Fields;
use super::{ConfigError, ReplayConfig, ServerConfig};
use ekey_verifier::{RedisStoreError, RedisStoreSettings};
use std::path::Path;

pub(super) fn validate(f: &Fields<'_>, raw: RawReplay, base: &Path) -> Result<ReplayConfig, ConfigError> {
    let capacity = f.int("replay.capacity", raw.capacity, 100..=100_000_000, 100_000, "")?;
    let redis = raw.redis.map(|r| redis_settings(f, "replay.redis", r, base)).transpose()?;
    if redis.as_ref().is_some_and(|r| r.wait_replicas > 0) {
        return Err(f.err(
            "replay.redis.wait_replicas",
            "not supported for the replay cache (each identifier is one SET); use the primary's \
             min-replicas-to-write instead, see docs/replay-store.md",
        ));
    }
    Ok(ReplayConfig { capacity, redis })
}

/// Redis settings as written under `field` (`replay.redis`,
/// `revocation.redis`): relative paths resolved against the config file's
/// directory, every field checked, errors naming `field.<name>`.
pub(super) fn redis_settings(
    f: &Fields<'_>,
    field: &str,
    mut redis: RedisStoreSettings,
    base: &Path,
) -> Result<RedisStoreSettings, ConfigError> {
    for p in [&mut redis.password_file, &mut redis.ca_file, &mut redis.client_cert_file, &mut redis.client_key_file]
        .into_iter()
        .flatten()
    {
        *p = base.join(&*p);
    }
    redis.validate().map_err(|e| match e {
        RedisStoreError::Config { field: name, reason } => f.err(&format!("{field}.{name}"), reason),
        other => f.err(field, other.to_string()),
    })?;
    Ok(redis)
}

/// The warning when this configuration looks like one of several replicas
/// but remembers `jti`s (and counts rate limits) per process: a replay sent
/// to another replica would be accepted, and each replica would allow the
/// whole rate.
///
/// Looks like a fleet: `server.replicas` above 1; or, when `replicas` is not
/// set, a public listener off loopback (what a load balancer reaches) or a
/// shared Redis already configured for `[revocation]`. `replicas = 1` says
/// "one process" and silences it.
pub(super) fn fleet_warning(server: &ServerConfig, replay: &ReplayConfig, revocation_redis: bool) -> Option<String> {
    if replay.redis.is_some() {
        return None;
    }
    let why = match server.replicas {
        Some(1) => return None,
        Some(n) => format!("server.replicas = {n}"),
        None if !server.listen.ip().is_loopback() => format!("server.listen {} is not loopback", server.listen),
        None if revocation_redis => "[revocation] already uses a shared Redis".to_owned(),
        None => return None,
    };
    Some(format!(
        "replay: the replay cache and rate limits are per process, but this looks like a fleet ({why}): a client \
         assertion or DPoP proof can be replayed at another replica and each replica allows a client the whole rate; \
         set [replay.redis] (or server.replicas = 1 for a single process)"
    ))
}
