//! `[revocation]`: the admin revocation API and the Redis it writes to.

use super::validate::Fields;
use super::ConfigError;
use ekey_verifier::{RedisStoreError, RedisStoreSettings};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// As written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRevocation {
    pub redis: Option<RedisStoreSettings>,
    pub admin_token_file: Option<PathBuf>,
}

/// The revocation API (`POST /admin/revocations` on the admin listener) and
/// where revocations go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The Redis (or Redis Cluster) the verifiers use as their usage store,
    /// with the same `key_prefix`. Every field is documented in
    /// docs/replay-store.md.
    pub redis: RedisStoreSettings,
    /// File holding the admin bearer token (at least 32 bytes).
    pub admin_token_file: PathBuf,
}

pub(super) fn validate(f: &Fields<'_>, raw: RawRevocation, base: &Path) -> Result<RevocationConfig, ConfigError> {
    let mut redis = raw.redis.ok_or_else(|| f.err("revocation.redis", "required: where revocations are written"))?;
    let admin_token_file = raw
        .admin_token_file
        .ok_or_else(|| f.err("revocation.admin_token_file", "required: the admin API's bearer token"))?;
    for p in [&mut redis.password_file, &mut redis.ca_file, &mut redis.client_cert_file, &mut redis.client_key_file]
        .into_iter()
        .flatten()
    {
        *p = base.join(&*p);
    }
    redis.validate().map_err(|e| match e {
        RedisStoreError::Config { field, reason } => f.err(&format!("revocation.redis.{field}"), reason),
        other => f.err("revocation.redis", other.to_string()),
    })?;
    Ok(RevocationConfig { redis, admin_token_file: base.join(admin_token_file) })
}
