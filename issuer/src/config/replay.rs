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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const KEY: &str = "[signing_key]\ngenerate = true\n";

    fn warnings(text: &str) -> Vec<String> {
        let c = Config::from_toml_str(&format!("issuer = \"https://i.example\"\n{KEY}{text}")).unwrap();
        c.warnings.into_iter().filter(|w| w.starts_with("replay:")).collect()
    }

    #[test]
    fn fleet_warning_rule() {
        // One process on loopback: nothing to say.
        assert!(warnings("").is_empty());
        // Off loopback, or replicas > 1, or a shared Redis for revocations:
        // a fleet with per-process state.
        let w = warnings("[server]\nlisten = \"0.0.0.0:8080\"");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("(server.listen 0.0.0.0:8080 is not loopback)"), "{w:?}");
        assert!(warnings("[server]\nreplicas = 2")[0].contains("(server.replicas = 2)"));
        let revocation = "[revocation]\nadmin_token_file = \"t\"\n[revocation.redis]\nurl = \"redis://r:6379\"\n";
        assert!(warnings(revocation)[0].contains("[revocation] already uses a shared Redis"));
        // Saying "one process", or sharing the cache, silences it.
        assert!(warnings("[server]\nlisten = \"0.0.0.0:8080\"\nreplicas = 1").is_empty());
        assert!(warnings("[server]\nreplicas = 3\n[replay.redis]\nurl = \"redis://r:6379\"").is_empty());
    }

    #[test]
    fn redis_section_is_checked_and_paths_follow_the_file() {
        let c = Config::from_toml(
            &format!("{KEY}[replay.redis]\ncluster = [\"rediss://a:1\"]\nca_file = \"ca.pem\"\nkey_prefix = \"fleet\""),
            Path::new("/etc/ekey"),
            &|_| Ok(None),
        )
        .unwrap();
        let r = c.replay.redis.unwrap();
        assert_eq!((r.ca_file.unwrap(), r.key_prefix.as_str()), (Path::new("/etc/ekey/ca.pem").to_path_buf(), "fleet"));
        assert_eq!(c.replay.capacity, 100_000);
        let err = |t: &str| Config::from_toml_str(&format!("{KEY}{t}")).unwrap_err().to_string();
        assert!(err("[replay.redis]\nurl = \"http://r\"").starts_with("replay.redis.url: must start with"));
        assert!(err("[replay.redis]\n").starts_with("replay.redis.url: set url"));
        assert!(err("[replay.redis]\nurl = \"redis://r\"\nwait_replicas = 1\nwait_timeout_ms = 10")
            .starts_with("replay.redis.wait_replicas: not supported"));
        assert!(err("[replay.redis]\nurl = \"redis://r\"\nkey_prefx = \"x\"").contains("key_prefx"));
        // From the environment, naming the variable.
        let env = |name: &str| Ok((name == "EKEY_REPLAY_REDIS_URL").then(|| "redis:/oops".to_string()));
        let e = Config::from_toml(KEY, Path::new("."), &env).unwrap_err().to_string();
        assert!(e.starts_with("replay.redis.url (from EKEY_REPLAY_REDIS_URL): "), "{e}");
        let env = |name: &str| Ok((name == "EKEY_REPLAY_REDIS_URL").then(|| "redis://r:6379".to_string()));
        let c = Config::from_toml(KEY, Path::new("."), &env).unwrap();
        assert_eq!(c.replay.redis.unwrap().url.as_deref(), Some("redis://r:6379"));
    }
}
