//! `[revocation]`: the admin revocation API and the Redis it writes to.

use super::validate::Fields;
use super::ConfigError;
use ekey_verifier::RedisStoreSettings;
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
    let redis = raw.redis.ok_or_else(|| f.err("revocation.redis", "required: where revocations are written"))?;
    let admin_token_file = raw
        .admin_token_file
        .ok_or_else(|| f.err("revocation.admin_token_file", "required: the admin API's bearer token"))?;
    let redis = super::replay::redis_settings(f, "revocation.redis", redis, base)?;
    Ok(RevocationConfig { redis, admin_token_file: base.join(admin_token_file) })
}
