//! How to reach Redis: one node or a Redis Cluster, TLS, auth, timeouts.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`RedisStore`](super::RedisStore), embeddable in a config
/// file (`[store.redis]` or similar): every field has a default, unknown
/// fields are refused.
///
/// ```
/// let s: ekey_verifier::RedisStoreSettings = serde_json::from_str(r#"{
///     "cluster": ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"],
///     "password_file": "secrets/redis",
///     "request_timeout_ms": 300
/// }"#).unwrap();
/// assert_eq!(s.request_timeout(), std::time::Duration::from_millis(300));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisStoreSettings {
    /// One Redis primary: `redis://host:port/db` or `rediss://…` for TLS.
    /// User and password may sit in the URL, but prefer `password_file`.
    /// Exactly one of `url` and `cluster` must be set. Defaults to none.
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster (`redis://` or `rediss://` URLs); the
    /// rest of the cluster is discovered. Defaults to empty.
    pub cluster: Vec<String>,
    /// ACL user name (Redis 6+). Defaults to none (the `default` user).
    pub username: Option<String>,
    /// File holding the password (trailing newline ignored). Overrides a
    /// password in the URL. Defaults to none.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that sign the Redis server certificates, for
    /// `rediss://`. Defaults to none: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for Redis TLS client auth. Defaults to none.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`. Defaults to none.
    pub client_key_file: Option<PathBuf>,
    /// Prefix of every key; lets several fleets share one Redis. Must not
    /// contain `{`, `}` or whitespace. Defaults to `"ekey"`.
    pub key_prefix: String,
    /// Time to establish a connection, milliseconds. Defaults to 1000.
    pub connect_timeout_ms: u64,
    /// Time to wait for one reply, milliseconds. Defaults to 250.
    pub response_timeout_ms: u64,
    /// Upper bound on one whole store operation (redirects, reconnects,
    /// `WAIT` included), milliseconds; past it the request is refused with
    /// 503. Defaults to 500.
    pub request_timeout_ms: u64,
    /// Redirections (`MOVED`/`ASK`) and `TRYAGAIN`/`CLUSTERDOWN` retries per
    /// request on a cluster. Defaults to 3.
    pub cluster_retries: u32,
    /// Multiplexed connections per node opened by this process (requests are
    /// pipelined on each; more only helps past ~50k requests/s). 1–64.
    /// Defaults to 2.
    pub connections: usize,
    /// After a use is consumed, `WAIT` for this many replicas to acknowledge
    /// it; if fewer do within `wait_timeout_ms` the request is refused (the
    /// use stays consumed). 0 turns it off. See docs/replay-store.md,
    /// "Failover". Defaults to 0.
    pub wait_replicas: u32,
    /// Timeout of `WAIT`, milliseconds (1 or more, and below
    /// `response_timeout_ms`, when `wait_replicas > 0`). Defaults to 50.
    pub wait_timeout_ms: u64,
    /// What to do at start when Redis may evict keys (`maxmemory` set and
    /// `maxmemory-policy` other than `noeviction`). Defaults to `refuse`.
    pub eviction_check: EvictionCheck,
}

impl Default for RedisStoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            cluster: Vec::new(),
            username: None,
            password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            key_prefix: "ekey".into(),
            connect_timeout_ms: 1000,
            response_timeout_ms: 250,
            request_timeout_ms: 500,
            cluster_retries: 3,
            connections: 2,
            wait_replicas: 0,
            wait_timeout_ms: 50,
            eviction_check: EvictionCheck::Refuse,
        }
    }
}

/// Start-up reaction to an evicting `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvictionCheck {
    /// Refuse to start when the policy may evict ([`RedisStoreError::Eviction`])
    /// or cannot be read ([`RedisStoreError::EvictionUnchecked`]).
    Refuse,
    /// Log a warning and start (also when the policy cannot be read).
    Warn,
    /// Do not check (e.g. `CONFIG` is disabled by the provider and the
    /// policy is known to be `noeviction`).
    Off,
}

/// Why a [`RedisStore`](super::RedisStore) could not be set up. Each message
/// names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// A setting is invalid.
    #[error("{field}: {reason}")]
    Config {
        /// The setting, e.g. `url`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Redis could not be reached or refused the connection.
    #[error("cannot connect to Redis: {0}")]
    Connect(String),
    /// Redis may evict keys, which silently resets usage counters.
    #[error("Redis may evict keys: {0} (set maxmemory-policy noeviction, or eviction_check = \"warn\")")]
    Eviction(String),
    /// `eviction_check = "refuse"` and the policy could not be read
    /// (`CONFIG GET` renamed away or denied by an ACL, as managed Redis
    /// services often do): nothing shows that keys will not be evicted.
    #[error(
        "cannot check that Redis will not evict keys: CONFIG GET maxmemory-policy failed ({0}); make sure the \
         policy is noeviction, then set eviction_check = \"warn\" or \"off\""
    )]
    EvictionUnchecked(String),
}

impl RedisStoreSettings {
    /// Settings for one node at `url`.
    pub fn single(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), ..Self::default() }
    }

    /// Settings for a cluster seeded by `urls`.
    pub fn cluster<I: IntoIterator<Item = S>, S: Into<String>>(urls: I) -> Self {
        Self { cluster: urls.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `response_timeout_ms` as a duration.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), RedisStoreError> {
        let bad = |field, reason: &str| Err(RedisStoreError::Config { field, reason: reason.into() });
        match (&self.url, self.cluster.is_empty()) {
            (None, true) => return bad("url", "set url (one node) or cluster (seed nodes)"),
            (Some(_), false) => return bad("cluster", "set either url or cluster, not both"),
            _ => {}
        }
        for u in self.url.iter().chain(&self.cluster) {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                let field = if self.url.is_some() { "url" } else { "cluster" };
                return bad(field, "must start with redis:// or rediss://");
            }
        }
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 64
            || self.key_prefix.chars().any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return bad("key_prefix", "1–64 characters, no braces or whitespace");
        }
        for (field, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("response_timeout_ms", self.response_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(1..=60_000).contains(&v) {
                return bad(field, "must be between 1 and 60000");
            }
        }
        if !(1..=64).contains(&self.connections) {
            return bad("connections", "must be between 1 and 64");
        }
        if self.cluster_retries > 16 {
            return bad("cluster_retries", "must be at most 16");
        }
        // WAIT is one command: its reply must fit in the response timeout.
        if self.wait_replicas > 0 && !(1..self.response_timeout_ms).contains(&self.wait_timeout_ms) {
            return bad("wait_timeout_ms", "must be at least 1 and below response_timeout_ms when wait_replicas > 0");
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return bad("client_key_file", "client_cert_file and client_key_file go together");
        }
        Ok(())
    }

    /// The password from `password_file`, if set.
    pub(crate) fn password(&self) -> Result<Option<String>, RedisStoreError> {
        let Some(path) = &self.password_file else { return Ok(None) };
        let s = std::fs::read_to_string(path).map_err(|e| RedisStoreError::Config {
            field: "password_file",
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        let s = s.trim_end_matches(['\r', '\n']);
        if s.is_empty() {
            return Err(RedisStoreError::Config { field: "password_file", reason: "is empty".into() });
        }
        Ok(Some(s.to_owned()))
    }

    /// The TLS material named by `ca_file` / `client_*_file`, if any.
    pub(crate) fn tls_certificates(&self) -> Result<Option<redis::TlsCertificates>, RedisStoreError> {
        if self.ca_file.is_none() && self.client_cert_file.is_none() {
            return Ok(None);
        }
        let read = |field: &'static str, p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| RedisStoreError::Config { field, reason: format!("cannot read {}: {e}", p.display()) })
        };
        let root_cert = self.ca_file.as_ref().map(|p| read("ca_file", p)).transpose()?;
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                client_cert: read("client_cert_file", c)?,
                client_key: read("client_key_file", k)?,
            }),
            _ => None,
        };
        Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let msg = |s: RedisStoreSettings| s.validate().unwrap_err().to_string();
        assert!(msg(RedisStoreSettings::default()).starts_with("url:"));
        assert!(msg(RedisStoreSettings::single("http://x")).starts_with("url:"));
        let s = RedisStoreSettings { cluster: vec!["redis://a".into()], ..RedisStoreSettings::single("redis://b") };
        assert!(msg(s).starts_with("cluster:"));
        let s = RedisStoreSettings { key_prefix: "a{b".into(), ..RedisStoreSettings::single("redis://b") };
        assert!(msg(s).starts_with("key_prefix:"));
        let s = RedisStoreSettings { connections: 0, ..RedisStoreSettings::single("redis://b") };
        assert!(msg(s).starts_with("connections:"));
        let s = RedisStoreSettings { wait_replicas: 1, wait_timeout_ms: 0, ..RedisStoreSettings::single("redis://b") };
        assert!(msg(s).starts_with("wait_timeout_ms:"));
        let s =
            RedisStoreSettings { wait_replicas: 1, wait_timeout_ms: 250, ..RedisStoreSettings::single("redis://b") };
        assert!(msg(s).starts_with("wait_timeout_ms:"), "WAIT must fit in the response timeout");
        assert!(RedisStoreSettings::cluster(["redis://a:1", "rediss://b:2"]).validate().is_ok());
    }
}
