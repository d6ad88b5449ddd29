//! The config file as written: every field optional, unknown fields refused
//! (a misspelt `max_limit` must not silently fall back to its default).
//! Numbers are read as `i64` so that range errors get our own message, which
//! names the field, instead of a deserializer's.

use serde::Deserialize;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub issuer: Option<String>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub endpoints: RawEndpoints,
    #[serde(default)]
    pub signing_key: RawSigningKey,
    #[serde(default)]
    pub dpop: RawDpop,
    #[serde(default)]
    pub client_auth: RawClientAuth,
    #[serde(default)]
    pub replay: RawReplay,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub templates: Vec<RawTemplate>,
    pub revocation: Option<super::revocation::RawRevocation>,
    /// `[telemetry]`: OTLP export (the telemetry crate's own type, checked
    /// field by field as it is read).
    #[serde(default)]
    pub telemetry: ekey_telemetry::TelemetryConfig,
    /// `[audit]`: where audit events go.
    #[serde(default)]
    pub audit: ekey_telemetry::AuditConfig,
    /// Fields set from the environment, with the variable that set them, so
    /// an error names the variable as well as the field.
    #[serde(skip)]
    pub from_env: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub header_read_timeout: Option<i64>,
    pub request_timeout: Option<i64>,
    pub drain_timeout: Option<i64>,
    pub max_concurrent_streams: Option<i64>,
    pub replicas: Option<i64>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub client_auth: Option<String>,
    pub tls12: Option<bool>,
    pub chacha20: Option<bool>,
    pub reload_interval: Option<i64>,
    pub http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoints {
    pub token_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks_max_age: Option<i64>,
}

pub(crate) use super::signing::RawSigningKey;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpop {
    pub algorithms: Option<Vec<String>>,
    pub max_age: Option<i64>,
    pub leeway: Option<i64>,
    pub nonce_secret_file: Option<PathBuf>,
    pub nonce_secret_env: Option<String>,
    pub nonce_window: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAuth {
    pub assertion_algorithms: Option<Vec<String>>,
    pub max_assertion_lifetime: Option<i64>,
    pub leeway: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplay {
    pub capacity: Option<i64>,
    /// `[replay.redis]`: the fleet's shared cache (the verifier's settings type).
    pub redis: Option<ekey_verifier::RedisStoreSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub id: Option<String>,
    pub auth: Option<String>,
    pub secret_sha256: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// Inline public JWKs (TOML tables with the JWK members).
    pub jwks: Option<Vec<serde_json::Value>>,
    pub tls_client_auth_subject_dn: Option<String>,
    pub tls_client_auth_san_dns: Option<String>,
    pub tls_client_auth_san_uri: Option<String>,
    pub tls_client_auth_san_ip: Option<String>,
    pub tls_client_auth_san_email: Option<String>,
    pub certificate_thumbprints: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTemplate {
    pub name: Option<String>,
    pub clients: Option<Vec<String>>,
    pub actions: Option<Vec<String>>,
    pub subcap: Option<Vec<String>>,
    pub max_limit: Option<i64>,
    pub default_limit: Option<i64>,
    pub ttl: Option<i64>,
    pub audience: Option<OneOrMany>,
    pub binding: Option<String>,
    pub scope: Option<String>,
    pub rate: Option<String>,
    pub burst: Option<i64>,
}

/// A string or an array of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}
