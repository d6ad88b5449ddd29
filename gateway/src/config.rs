//! The gateway's configuration: one TOML file, `EKEY_GATEWAY_*` overrides,
//! checked before anything starts. Every field and its default is in
//! `docs/gateway.md`.
//!
//! ```
//! let config = ekey_gateway::Config::from_toml_str(r#"
//!     [server]
//!     trusted_proxies = ["127.0.0.1/32"]
//!     [verifier]
//!     issuer = "https://issuer.example.com"
//!     audiences = ["https://api.example.com"]
//!     jwks_url = "https://issuer.example.com/.well-known/jwks.json"
//!     [store]
//!     kind = "redis"
//!     [store.redis]
//!     url = "rediss://redis.internal:6379"
//! "#).unwrap();
//! assert_eq!(config.server.listen.port(), 9191);
//! assert_eq!(config.verifier.jwks.max_staleness.as_secs(), 300);
//!
//! let err = ekey_gateway::Config::from_toml_str(r#"
//!     [verifier]
//!     issuer = "https://issuer.example.com"
//!     audiences = []
//!     jwks_url = "https://issuer.example.com/.well-known/jwks.json"
//! "#).unwrap_err();
//! assert_eq!(err.to_string(), "verifier.audiences: name at least one audience");
//! ```

use ekey_telemetry::{AuditConfig, AuditSinkKind, TelemetryConfig, TelemetryError};
use ekey_verifier::mtls::{CertHeaderFormat, ClientCertSource, TrustedProxies};
use ekey_verifier::{ExternalUrl, ExternalUrlSettings, RedisStoreSettings, RevocationFeedSettings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration is unusable; the message names the field or variable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape (wrong type, unknown field).
    #[error("config file is not valid: {0}")]
    Syntax(String),
    /// A field has an unusable value.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, e.g. `server.trusted_proxies`, or the environment variable.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), problem: problem.into() }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    verifier: Option<RawVerifier>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    audit: AuditConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    listener_scheme: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    public_base_url: Option<String>,
    trust_forwarded: Option<bool>,
    trust_forwarded_prefix: Option<bool>,
    envoy_prefix: Option<String>,
    client_cert_header: Option<String>,
    client_cert_format: Option<String>,
    max_connections: Option<u64>,
    header_read_timeout: Option<u64>,
    drain_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerifier {
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    jwks_url: Option<String>,
    jwks_file: Option<PathBuf>,
    leeway: Option<u32>,
    proof_max_age: Option<u32>,
    nonce_secret_file: Option<PathBuf>,
    nonce_secret_env: Option<String>,
    nonce_window: Option<u32>,
    jwks: Option<RawJwksFetch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwksFetch {
    ca_file: Option<PathBuf>,
    spki_pins: Option<Vec<String>>,
    max_staleness: Option<u64>,
    allow_insecure_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<String>,
    max_traces: Option<usize>,
    max_proofs: Option<usize>,
    redis: Option<RedisStoreSettings>,
    revocation: Option<RevocationFeedSettings>,
    allow_without_revocation: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[verifier]`.
    pub verifier: VerifierConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[telemetry]`: OTLP export of metrics and traces (see `ekey_telemetry::TelemetryConfig`).
    pub telemetry: TelemetryConfig,
    /// `[audit]`: where the `token.verify` audit events go. Defaults to standard output.
    pub audit: AuditConfig,
}

/// `[server]`: where to listen and whom to believe.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address. Defaults to `127.0.0.1:9191`; port 0 picks one.
    pub listen: SocketAddr,
    /// Admin listener: `/healthz`, `/readyz`, `/metrics`. Plain HTTP without
    /// credentials: keep it on loopback or a private network. Defaults to
    /// `127.0.0.1:9091`; port 0 picks one; must differ from `listen`.
    pub admin_listen: SocketAddr,
    /// Scheme of external URLs rebuilt from the connection (no proxy header,
    /// no base URL). Defaults to `http`.
    pub listener_scheme: &'static str,
    /// Proxies (CIDR or address) whose `X-Original-*`, `X-Forwarded-*`,
    /// `Forwarded` and client-certificate headers are believed. Defaults to none.
    pub trusted_proxies: Vec<String>,
    /// The public origin (and path prefix) of the protected service; overrides
    /// the headers. Defaults to none.
    pub public_base_url: Option<String>,
    /// Believe a trusted proxy's `Forwarded` header for the external scheme
    /// and host. Turn it on only when every trusted proxy overwrites the
    /// client's copy (nginx, Caddy and Traefik pass it through as sent).
    /// Defaults to `false`.
    pub trust_forwarded: bool,
    /// Believe a trusted proxy's `X-Forwarded-Prefix` as the path prefix of
    /// the external URL (the URL a DPoP proof names), under the same
    /// condition. The capability is matched on the original request target
    /// either way. Defaults to `false`.
    pub trust_forwarded_prefix: bool,
    /// Path prefix of the Envoy `ext_authz` endpoint. Defaults to `/envoy`.
    pub envoy_prefix: String,
    /// The header a trusted proxy puts the client certificate in, and its
    /// format, for certificate-bound tokens. Defaults to none: such tokens
    /// are refused.
    pub client_cert: Option<(String, CertHeaderFormat)>,
    /// Connections served at once on the authz listener; more wait in the
    /// kernel's backlog (the admin listener allows 64). Defaults to 1024.
    pub max_connections: usize,
    /// Time to receive a request head (and to hold an idle keep-alive
    /// connection), on both listeners. Defaults to 5 s.
    pub header_read_timeout: Duration,
    /// At SIGTERM / Ctrl-C, how long open connections get to finish.
    /// Defaults to 10 s.
    pub drain_timeout: Duration,
}

/// `[verifier]`: what tokens to accept.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The issuer URL (`iss`). Required.
    pub issuer: String,
    /// Audiences (`aud`) accepted. Required, at least one.
    pub audiences: Vec<String>,
    /// Where the issuer's keys come from. Exactly one of `jwks_url`, `jwks_file`.
    pub keys: KeysConfig,
    /// How `jwks_url` is fetched (`[verifier.jwks]`).
    pub jwks: JwksFetchConfig,
    /// Clock skew allowed, seconds. Defaults to 5.
    pub leeway: u32,
    /// Oldest DPoP proof accepted, seconds. Defaults to 60.
    pub proof_max_age: u32,
    /// DPoP server nonces: the shared secret and window. Defaults to off.
    pub nonce: Option<NonceConfig>,
}

/// The issuer's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysConfig {
    /// Fetched and cached from the issuer (`jwks_url`).
    Url(String),
    /// A JWKS file read at start (`jwks_file`).
    File(PathBuf),
}

/// `[verifier.jwks]`: how the issuer's JWKS is fetched from `jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetchConfig {
    /// PEM file of the CA certificates that sign the issuer's TLS
    /// certificate, trusted instead of the system's store. Defaults to none.
    pub ca_file: Option<PathBuf>,
    /// base64 SHA-256 of the SubjectPublicKeyInfo the issuer's leaf
    /// certificate must have (any one of them). Defaults to none.
    pub spki_pins: Vec<String>,
    /// How long past its freshness the last fetched set is still used while
    /// the JWKS cannot be fetched; then every request gets 503. Defaults to
    /// 300 s (0 ..= 3600).
    pub max_staleness: Duration,
    /// Allow `http://` to a host that is not loopback. Defaults to `false`.
    pub allow_insecure_http: bool,
}

impl Default for JwksFetchConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            spki_pins: Vec::new(),
            max_staleness: Duration::from_secs(300),
            allow_insecure_http: false,
        }
    }
}

/// DPoP nonces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceConfig {
    /// Where the secret is.
    pub secret: SecretSource,
    /// Seconds between nonce changes. Defaults to 60.
    pub window: u32,
}

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (one trailing newline ignored).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// `[store]`: where uses are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built once at start
pub enum StoreConfig {
    /// In this process (`kind = "memory"`, the default), which the operator
    /// accepted with `allow_without_revocation = true`: no revocation feed
    /// (revocations made at the issuer never reach this gateway) and every
    /// replica counts uses alone.
    Memory {
        /// Most traces held. Defaults to 1 000 000.
        max_traces: usize,
        /// Most proof ids held. Defaults to 4 000 000.
        max_proofs: usize,
    },
    /// Redis or Redis Cluster, shared by every gateway replica
    /// (`kind = "redis"` with a `[store.redis]` table). Revocation rules
    /// (by sub, template, issue time) are followed from the same Redis, as
    /// `[store.revocation]` says.
    Redis(RedisStoreSettings, RevocationFeedSettings),
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `ekey_gateway=debug`). Defaults to `info`.
    pub level: String,
    /// `human` or `json`. Defaults to `human`.
    pub json: bool,
}

/// The environment variables that override file settings, and the field each sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("EKEY_GATEWAY_LISTEN", "server.listen"),
    ("EKEY_GATEWAY_ADMIN_LISTEN", "server.admin_listen"),
    ("EKEY_GATEWAY_TRUSTED_PROXIES", "server.trusted_proxies (comma-separated)"),
    ("EKEY_GATEWAY_PUBLIC_BASE_URL", "server.public_base_url"),
    ("EKEY_GATEWAY_MAX_CONNECTIONS", "server.max_connections"),
    ("EKEY_GATEWAY_HEADER_READ_TIMEOUT", "server.header_read_timeout"),
    ("EKEY_GATEWAY_DRAIN_TIMEOUT", "server.drain_timeout"),
    ("EKEY_GATEWAY_ISSUER", "verifier.issuer"),
    ("EKEY_GATEWAY_AUDIENCES", "verifier.audiences (comma-separated)"),
    ("EKEY_GATEWAY_JWKS_URL", "verifier.jwks_url"),
    ("EKEY_GATEWAY_JWKS_CA_FILE", "verifier.jwks.ca_file"),
    ("EKEY_GATEWAY_JWKS_SPKI_PINS", "verifier.jwks.spki_pins (comma-separated)"),
    ("EKEY_GATEWAY_JWKS_MAX_STALENESS", "verifier.jwks.max_staleness"),
    ("EKEY_GATEWAY_NONCE_SECRET_FILE", "verifier.nonce_secret_file"),
    ("EKEY_GATEWAY_LOG_LEVEL", "log.level"),
    ("EKEY_GATEWAY_LOG_FORMAT", "log.format"),
    ("EKEY_GATEWAY_AUDIT_SINK", "audit.sink (stdout, file, off)"),
    ("EKEY_GATEWAY_AUDIT_PATH", "audit.path"),
];

impl Config {
    /// Reads `path` and applies the process's `EKEY_GATEWAY_*` variables.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml_with_env(&text, |k| std::env::var(k).ok())
    }

    /// Parses a TOML string without environment overrides.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, |_| None)
    }

    /// Parses a TOML string; `env` looks variables up (injected for tests).
    pub fn from_toml_with_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        apply_env(&mut raw, &env)?;
        validate(raw)
    }

    /// The external-URL rules of `[server]`.
    pub fn external_url(&self) -> Result<ExternalUrl, ConfigError> {
        external_url(&self.server)
    }

    /// Where client certificates come from: the configured header, from
    /// trusted proxies only.
    pub fn client_cert_source(&self) -> Result<ClientCertSource, ConfigError> {
        client_cert_source(&self.server)
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn whole_number(name: &str, v: &str) -> Result<u64, ConfigError> {
    v.trim().parse().map_err(|_| invalid(name, format!("expected a whole number, got {v:?}")))
}

fn apply_env(raw: &mut Raw, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let v = raw.verifier.get_or_insert_with(RawVerifier::default);
    for (name, _) in ENV_OVERRIDES {
        let Some(value) = env(name) else { continue };
        match *name {
            "EKEY_GATEWAY_LISTEN" => raw.server.listen = Some(value),
            "EKEY_GATEWAY_ADMIN_LISTEN" => raw.server.admin_listen = Some(value),
            "EKEY_GATEWAY_TRUSTED_PROXIES" => raw.server.trusted_proxies = Some(list(&value)),
            "EKEY_GATEWAY_PUBLIC_BASE_URL" => raw.server.public_base_url = Some(value),
            "EKEY_GATEWAY_MAX_CONNECTIONS" => raw.server.max_connections = Some(whole_number(name, &value)?),
            "EKEY_GATEWAY_HEADER_READ_TIMEOUT" => raw.server.header_read_timeout = Some(whole_number(name, &value)?),
            "EKEY_GATEWAY_DRAIN_TIMEOUT" => raw.server.drain_timeout = Some(whole_number(name, &value)?),
            "EKEY_GATEWAY_JWKS_CA_FILE" => v.jwks.get_or_insert_with(Default::default).ca_file = Some(value.into()),
            "EKEY_GATEWAY_JWKS_SPKI_PINS" => v.jwks.get_or_insert_with(Default::default).spki_pins = Some(list(&value)),
            "EKEY_GATEWAY_JWKS_MAX_STALENESS" => {
                v.jwks.get_or_insert_with(Default::default).max_staleness = Some(whole_number(name, &value)?)
            }
            "EKEY_GATEWAY_ISSUER" => v.issuer = Some(value),
            "EKEY_GATEWAY_AUDIENCES" => v.audiences = Some(list(&value)),
            "EKEY_GATEWAY_JWKS_URL" => {
                v.jwks_url = Some(value);
                v.jwks_file = None;
            }
            "EKEY_GATEWAY_NONCE_SECRET_FILE" => {
                v.nonce_secret_file = Some(value.into());
                v.nonce_secret_env = None;
            }
            "EKEY_GATEWAY_LOG_LEVEL" => raw.log.level = Some(value),
            "EKEY_GATEWAY_LOG_FORMAT" => raw.log.format = Some(value),
            "EKEY_GATEWAY_AUDIT_SINK" => {
                raw.audit.sink = AuditSinkKind::try_from(value)
                    .map_err(|e| invalid("EKEY_GATEWAY_AUDIT_SINK", e.trim_start_matches("audit.sink: ")))?;
                if raw.audit.sink != AuditSinkKind::File {
                    raw.audit.path = None;
                }
            }
            "EKEY_GATEWAY_AUDIT_PATH" => raw.audit.path = Some(value.into()),
            _ => {}
        }
    }
    Ok(())
}

/// A telemetry or audit error as a config error naming the same field.
fn from_telemetry(e: TelemetryError) -> ConfigError {
    match e {
        TelemetryError::Config { field, problem } => ConfigError::Invalid { field, problem },
        other => ConfigError::Invalid { field: "telemetry".into(), problem: other.to_string() },
    }
}

fn http_url(field: &str, value: &str) -> Result<String, ConfigError> {
    let ok = value
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(field, format!("{value:?} is not an http(s) URL")))
    }
}

fn external_url(server: &ServerConfig) -> Result<ExternalUrl, ConfigError> {
    ExternalUrl::new(&ExternalUrlSettings {
        trusted_proxies: server.trusted_proxies.clone(),
        public_base_url: server.public_base_url.clone(),
        trust_forwarded: server.trust_forwarded,
        trust_forwarded_prefix: server.trust_forwarded_prefix,
    })
    .map_err(|e| match e {
        ekey_verifier::ExternalUrlError::BaseUrl(_) => invalid("server.public_base_url", e.to_string()),
        other => invalid("server.trusted_proxies", other.to_string()),
    })
}

fn client_cert_source(server: &ServerConfig) -> Result<ClientCertSource, ConfigError> {
    let Some((header, format)) = &server.client_cert else {
        return Ok(ClientCertSource::direct());
    };
    let proxies =
        TrustedProxies::parse(&server.trusted_proxies).map_err(|e| invalid("server.trusted_proxies", e.to_string()))?;
    ClientCertSource::behind_proxy(proxies, header, *format)
        .map_err(|_| invalid("server.client_cert_header", format!("{header:?} is not a header name")))
}

fn validate(raw: Raw) -> Result<Config, ConfigError> {
    let s = raw.server;
    let listen = s.listen.as_deref().unwrap_or("127.0.0.1:9191");
    let listen: SocketAddr =
        listen.parse().map_err(|_| invalid("server.listen", format!("{listen:?} is not an address:port")))?;
    let admin = s.admin_listen.as_deref().unwrap_or("127.0.0.1:9091");
    let admin_listen: SocketAddr =
        admin.parse().map_err(|_| invalid("server.admin_listen", format!("{admin:?} is not an address:port")))?;
    if admin_listen == listen && listen.port() != 0 {
        return Err(invalid("server.admin_listen", format!("{admin_listen} is also server.listen; use another port")));
    }
    let listener_scheme = match s.listener_scheme.as_deref().unwrap_or("http") {
        "http" => "http",
        "https" => "https",
        other => return Err(invalid("server.listener_scheme", format!("{other:?} is not http or https"))),
    };
    let envoy_prefix = s.envoy_prefix.unwrap_or_else(|| "/envoy".into());
    if !envoy_prefix.starts_with('/')
        || envoy_prefix.len() < 2
        || envoy_prefix.ends_with('/')
        || !envoy_prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        return Err(invalid("server.envoy_prefix", "must be a path like /envoy (no trailing '/')"));
    }
    if matches!(envoy_prefix.as_str(), "/nginx" | "/forward-auth" | "/healthz") {
        return Err(invalid("server.envoy_prefix", "collides with another endpoint"));
    }
    let client_cert = match (s.client_cert_header, s.client_cert_format.as_deref()) {
        (None, None) => None,
        (None, Some(_)) => return Err(invalid("server.client_cert_format", "set only with client_cert_header")),
        (Some(h), format) => {
            let format = match format.unwrap_or("xfcc") {
                "xfcc" => CertHeaderFormat::Xfcc,
                "pem" => CertHeaderFormat::Pem,
                "escaped_pem" => CertHeaderFormat::EscapedPem,
                other => {
                    return Err(invalid(
                        "server.client_cert_format",
                        format!("{other:?} is not xfcc, pem or escaped_pem"),
                    ))
                }
            };
            Some((h.to_ascii_lowercase(), format))
        }
    };
    let max_connections = s.max_connections.unwrap_or(1024);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(invalid("server.max_connections", "must be 1 ..= 1000000"));
    }
    let secs = |field: &str, v: Option<u64>, default: u64, max: u64| match v.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(invalid(field, format!("must be 1 ..= {max} seconds"))),
    };
    let server = ServerConfig {
        listen,
        admin_listen,
        listener_scheme,
        trusted_proxies: s.trusted_proxies.unwrap_or_default(),
        public_base_url: s.public_base_url,
        trust_forwarded: s.trust_forwarded.unwrap_or(false),
        trust_forwarded_prefix: s.trust_forwarded_prefix.unwrap_or(false),
        envoy_prefix,
        client_cert,
        max_connections: max_connections as usize,
        header_read_timeout: secs("server.header_read_timeout", s.header_read_timeout, 5, 300)?,
        drain_timeout: secs("server.drain_timeout", s.drain_timeout, 10, 3600)?,
    };
    external_url(&server)?;
    client_cert_source(&server)?;

    let v = raw.verifier.ok_or_else(|| invalid("verifier", "the [verifier] section is required"))?;
    let issuer = v.issuer.ok_or_else(|| invalid("verifier.issuer", "required"))?;
    let issuer = http_url("verifier.issuer", &issuer)?;
    let audiences = v.audiences.ok_or_else(|| invalid("verifier.audiences", "required"))?;
    if audiences.is_empty() {
        return Err(invalid("verifier.audiences", "name at least one audience"));
    }
    for (i, a) in audiences.iter().enumerate() {
        if a.is_empty() {
            return Err(invalid(format!("verifier.audiences[{i}]"), "empty"));
        }
    }
    let keys = match (v.jwks_url, v.jwks_file) {
        (Some(u), None) => KeysConfig::Url(http_url("verifier.jwks_url", &u)?),
        (None, Some(f)) => KeysConfig::File(f),
        (Some(_), Some(_)) => return Err(invalid("verifier.jwks_url", "set jwks_url or jwks_file, not both")),
        (None, None) => return Err(invalid("verifier.jwks_url", "set jwks_url or jwks_file")),
    };
    let jwks = match (v.jwks, &keys) {
        (None, _) => JwksFetchConfig::default(),
        (Some(_), KeysConfig::File(_)) => {
            return Err(invalid("verifier.jwks", "[verifier.jwks] applies to jwks_url, not jwks_file"))
        }
        (Some(j), KeysConfig::Url(_)) => {
            let max_staleness = j.max_staleness.unwrap_or(300);
            if max_staleness > 3600 {
                return Err(invalid("verifier.jwks.max_staleness", "must be 0 ..= 3600 seconds"));
            }
            JwksFetchConfig {
                ca_file: j.ca_file,
                spki_pins: j.spki_pins.unwrap_or_default(),
                max_staleness: Duration::from_secs(max_staleness),
                allow_insecure_http: j.allow_insecure_http.unwrap_or(false),
            }
        }
    };
    let leeway = v.leeway.unwrap_or(5);
    if leeway > 60 {
        return Err(invalid("verifier.leeway", format!("{leeway} s is more than 60 s")));
    }
    let proof_max_age = v.proof_max_age.unwrap_or(60);
    if !(1..=300).contains(&proof_max_age) {
        return Err(invalid("verifier.proof_max_age", "must be 1 ..= 300 seconds"));
    }
    let secret = match (v.nonce_secret_file, v.nonce_secret_env) {
        (Some(f), None) => Some(SecretSource::File(f)),
        (None, Some(e)) => Some(SecretSource::Env(e)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(invalid("verifier.nonce_secret_file", "set nonce_secret_file or nonce_secret_env, not both"))
        }
    };
    let window = v.nonce_window.unwrap_or(60);
    if !(1..=3600).contains(&window) {
        return Err(invalid("verifier.nonce_window", "must be 1 ..= 3600 seconds"));
    }
    if secret.is_none() && v.nonce_window.is_some() {
        return Err(invalid("verifier.nonce_window", "set only with a nonce secret"));
    }
    let verifier = VerifierConfig {
        issuer,
        audiences,
        keys,
        jwks,
        leeway,
        proof_max_age,
        nonce: secret.map(|secret| NonceConfig { secret, window }),
    };

    let store = match raw.store.kind.as_deref().unwrap_or("memory") {
        "memory" if raw.store.redis.is_some() || raw.store.revocation.is_some() => {
            return Err(invalid("store.redis", "[store.redis] and [store.revocation] need kind = \"redis\""));
        }
        "memory" if raw.store.allow_without_revocation != Some(true) => {
            return Err(invalid(
                "store.allow_without_revocation",
                "the in-memory store has no revocation feed: revocations made at the issuer never reach this \
                 gateway, and each replica counts uses alone. Use kind = \"redis\", or set \
                 allow_without_revocation = true in [store] to run without",
            ));
        }
        "redis" if raw.store.allow_without_revocation.is_some() => {
            return Err(invalid(
                "store.allow_without_revocation",
                "applies to kind = \"memory\"; the Redis store follows revocations",
            ));
        }
        "redis" => {
            if raw.store.max_traces.is_some() || raw.store.max_proofs.is_some() {
                return Err(invalid("store.max_traces", "memory store limits do not apply to kind = \"redis\""));
            }
            let settings = raw
                .store
                .redis
                .ok_or_else(|| invalid("store.redis", "kind = \"redis\" needs a [store.redis] table"))?;
            settings.validate().map_err(|e| invalid("store.redis", e.to_string()))?;
            let feed = raw.store.revocation.unwrap_or_default();
            if feed.poll_interval_ms == 0 || feed.max_staleness_ms < 2 * feed.poll_interval_ms {
                return Err(invalid(
                    "store.revocation.max_staleness_ms",
                    "poll_interval_ms must be 1 or more and max_staleness_ms at least twice it",
                ));
            }
            StoreConfig::Redis(settings, feed)
        }
        "memory" => {
            let max_traces = raw.store.max_traces.unwrap_or(1_000_000);
            let max_proofs = raw.store.max_proofs.unwrap_or(4_000_000);
            if max_traces == 0 || max_proofs == 0 {
                return Err(invalid("store.max_traces", "limits must be at least 1"));
            }
            StoreConfig::Memory { max_traces, max_proofs }
        }
        other => return Err(invalid("store.kind", format!("{other:?} is not a store kind (memory, redis)"))),
    };

    let log = LogConfig {
        level: raw.log.level.unwrap_or_else(|| "info".into()),
        json: match raw.log.format.as_deref().unwrap_or("json") {
            "human" => false,
            "json" => true,
            other => return Err(invalid("log.format", format!("{other:?} is not human or json"))),
        },
    };
    raw.telemetry.validate().map_err(from_telemetry)?;
    raw.audit.validate().map_err(from_telemetry)?;
    Ok(Config { server, verifier, store, log, telemetry: raw.telemetry, audit: raw.audit })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A working config: in-memory store accepted, `[verifier]` last (so
    /// tests can append its fields).
    const MIN: &str = "[store]\nallow_without_revocation = true\n[verifier]\nissuer = \"https://i.example\"\n\
                       audiences = [\"https://a.example\"]\njwks_file = \"k.json\"\n";
    /// The same without `[store]`, for tests that write their own.
    const BASE: &str =
        "[verifier]\nissuer = \"https://i.example\"\naudiences = [\"https://a.example\"]\njwks_file = \"k.json\"\n";

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::from_toml_str(MIN).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9191");
        assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9091");
        assert_eq!((c.telemetry.clone(), c.audit.clone()), (TelemetryConfig::default(), AuditConfig::default()));
        assert_eq!(c.server.listener_scheme, "http");
        assert!(c.server.trusted_proxies.is_empty());
        assert!(!c.server.trust_forwarded && !c.server.trust_forwarded_prefix);
        assert_eq!(c.server.envoy_prefix, "/envoy");
        assert_eq!(c.verifier.keys, KeysConfig::File("k.json".into()));
        assert_eq!((c.verifier.leeway, c.verifier.proof_max_age), (5, 60));
        assert!(c.verifier.nonce.is_none());
        assert_eq!(c.store, StoreConfig::Memory { max_traces: 1_000_000, max_proofs: 4_000_000 });
        assert_eq!(c.log, LogConfig { level: "info".into(), json: true });
        assert!(c.server.client_cert.is_none());
        let r = Config::from_toml_str(&format!(
            "{BASE}[store]\nkind = \"redis\"\n[store.redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"gw\"\n"
        ))
        .unwrap();
        assert!(
            matches!(r.store, StoreConfig::Redis(ref s, ref f) if s.key_prefix == "gw" && f.max_staleness_ms == 1000)
        );
        let bad = "[store]\nkind = \"redis\"\n[store.redis]\nurl = \"redis://h\"\n[store.revocation]\npoll_interval_ms = 600\n";
        assert!(err(&format!("{BASE}{bad}")).starts_with("store.revocation.max_staleness_ms:"));
        let x = Config::from_toml_str(&format!("{MIN}[server]\nclient_cert_header = \"X-Forwarded-Client-Cert\"\n"))
            .unwrap();
        assert_eq!(x.server.client_cert, Some(("x-forwarded-client-cert".into(), CertHeaderFormat::Xfcc)));
        let t =
            Config::from_toml_str(&format!("{MIN}[server]\ntrust_forwarded = true\ntrust_forwarded_prefix = true\n"))
                .unwrap();
        assert!(t.server.trust_forwarded && t.server.trust_forwarded_prefix);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(""), "verifier.issuer: required");
        assert!(err("[server]\nlisten = \"nowhere\"\n").starts_with("server.listen:"));
        assert!(err(&format!("{MIN}[server]\nadmin_listen = \"x\"\n")).starts_with("server.admin_listen:"));
        assert!(err(&format!("{MIN}[server]\nlisten = \"127.0.0.1:9091\"\n")).starts_with("server.admin_listen:"));
        assert!(err(&format!("{MIN}[audit]\nsink = \"file\"\n")).starts_with("audit.path:"));
        assert!(err(&format!("{MIN}[audit]\nsink = \"syslog\"\n")).contains("audit.sink"));
        assert!(err(&format!("{MIN}[telemetry]\notlp = \"maybe\"\n")).contains("telemetry.otlp"));
        assert!(
            err(&format!("{MIN}[telemetry]\nmetrics_interval_ms = 1\n")).starts_with("telemetry.metrics_interval_ms:")
        );
        assert!(err(&format!("{MIN}[telemetry]\nbogus = 1\n")).starts_with("config file is not valid"));
        assert!(err(&format!("{MIN}[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n"))
            .starts_with("server.trusted_proxies:"));
        assert!(err(&format!("{MIN}[server]\npublic_base_url = \"ftp://x\"\n")).starts_with("server.public_base_url:"));
        assert!(err(&format!("{MIN}[server]\nenvoy_prefix = \"envoy\"\n")).starts_with("server.envoy_prefix:"));
        assert!(err(&format!("{BASE}[store]\nkind = \"disk\"\n")).starts_with("store.kind:"));
        assert!(err(&format!("{BASE}[store]\nkind = \"redis\"\n")).starts_with("store.redis:"));
        assert!(err(&format!("{BASE}[store.redis]\nurl = \"redis://127.0.0.1\"\n")).starts_with("store.redis:"));
        assert!(err(&format!("{BASE}[store]\nkind = \"redis\"\n[store.redis]\nbogus = 1\n")).starts_with("config file"));
        assert!(
            err(&format!("{MIN}[server]\nclient_cert_format = \"xfcc\"\n")).starts_with("server.client_cert_format:")
        );
        assert!(err(&format!("{MIN}[server]\nclient_cert_header = \"x\"\nclient_cert_format = \"der\"\n"))
            .starts_with("server.client_cert_format:"));
        assert!(err(&format!("{MIN}nonce_window = 30\n")).starts_with("verifier.nonce_window:"));
        assert!(err(&format!("{MIN}jwks_url = \"https://i.example/jwks\"\n")).contains("not both"));
        assert!(err(&format!("{MIN}bogus = 1\n")).starts_with("config file is not valid"));
    }

    #[test]
    fn memory_store_needs_explicit_consent_to_run_without_revocation() {
        // No [store] at all: the default kind, memory, is refused without the flag.
        let e = err(BASE);
        assert!(e.starts_with("store.allow_without_revocation:") && e.contains("revocation"), "{e}");
        assert!(err(&format!("{BASE}[store]\nkind = \"memory\"\n")).starts_with("store.allow_without_revocation:"));
        assert!(err(&format!("{BASE}[store]\nallow_without_revocation = false\n"))
            .starts_with("store.allow_without_revocation:"));
        let redis = "[store]\nkind = \"redis\"\nallow_without_revocation = true\n[store.redis]\nurl = \"redis://h\"\n";
        assert!(err(&format!("{BASE}{redis}")).starts_with("store.allow_without_revocation:"));
        assert!(matches!(Config::from_toml_str(MIN).unwrap().store, StoreConfig::Memory { .. }));
    }

    #[test]
    fn jwks_fetch_table() {
        let url = "[store]\nallow_without_revocation = true\n[verifier]\nissuer = \"https://i.example\"\n\
                   audiences = [\"https://a.example\"]\njwks_url = \"https://i.example/jwks\"\n";
        let c = Config::from_toml_str(url).unwrap();
        assert_eq!(c.verifier.jwks, JwksFetchConfig::default());
        assert_eq!(c.verifier.jwks.max_staleness, Duration::from_secs(300));
        let table = "[verifier.jwks]\nca_file = \"ca.pem\"\nspki_pins = [\"a\", \"b\"]\nmax_staleness = 120\n\
                     allow_insecure_http = true\n";
        let c = Config::from_toml_str(&format!("{url}{table}")).unwrap();
        assert_eq!(
            c.verifier.jwks,
            JwksFetchConfig {
                ca_file: Some("ca.pem".into()),
                spki_pins: vec!["a".into(), "b".into()],
                max_staleness: Duration::from_secs(120),
                allow_insecure_http: true,
            }
        );
        let e = err(&format!("{url}[verifier.jwks]\nmax_staleness = 3601\n"));
        assert!(e.starts_with("verifier.jwks.max_staleness:"), "{e}");
        assert!(err(&format!("{url}[verifier.jwks]\nbogus = 1\n")).starts_with("config file is not valid"));
        // With a JWKS file there is nothing to fetch.
        assert!(err(&format!("{MIN}[verifier.jwks]\nca_file = \"ca.pem\"\n")).starts_with("verifier.jwks:"));
        let env = |k: &str| match k {
            "EKEY_GATEWAY_JWKS_CA_FILE" => Some("env-ca.pem".to_owned()),
            "EKEY_GATEWAY_JWKS_SPKI_PINS" => Some("p1, p2".to_owned()),
            "EKEY_GATEWAY_JWKS_MAX_STALENESS" => Some("60".to_owned()),
            _ => None,
        };
        let c = Config::from_toml_with_env(url, env).unwrap();
        assert_eq!(c.verifier.jwks.ca_file, Some("env-ca.pem".into()));
        assert_eq!(c.verifier.jwks.spki_pins, vec!["p1", "p2"]);
        assert_eq!(c.verifier.jwks.max_staleness, Duration::from_secs(60));
        let bad = |k: &str| (k == "EKEY_GATEWAY_JWKS_MAX_STALENESS").then(|| "soon".to_owned());
        let e = Config::from_toml_with_env(url, bad).unwrap_err().to_string();
        assert!(e.starts_with("EKEY_GATEWAY_JWKS_MAX_STALENESS:"), "{e}");
    }

    #[test]
    fn listener_limits() {
        let c = Config::from_toml_str(MIN).unwrap();
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(
            (c.server.header_read_timeout, c.server.drain_timeout),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        let set = "[server]\nmax_connections = 8\nheader_read_timeout = 2\ndrain_timeout = 3\n";
        let c = Config::from_toml_str(&format!("{MIN}{set}")).unwrap();
        assert_eq!((c.server.max_connections, c.server.header_read_timeout), (8, Duration::from_secs(2)));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(3));
        for (bad, field) in [
            ("max_connections = 0", "server.max_connections:"),
            ("header_read_timeout = 0", "server.header_read_timeout:"),
            ("header_read_timeout = 301", "server.header_read_timeout:"),
            ("drain_timeout = 0", "server.drain_timeout:"),
        ] {
            assert!(err(&format!("{MIN}[server]\n{bad}\n")).starts_with(field), "{bad}");
        }
        let env = |k: &str| match k {
            "EKEY_GATEWAY_MAX_CONNECTIONS" => Some("16".to_owned()),
            "EKEY_GATEWAY_HEADER_READ_TIMEOUT" => Some("7".to_owned()),
            "EKEY_GATEWAY_DRAIN_TIMEOUT" => Some("1".to_owned()),
            _ => None,
        };
        let c = Config::from_toml_with_env(MIN, env).unwrap();
        assert_eq!((c.server.max_connections, c.server.header_read_timeout), (16, Duration::from_secs(7)));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(1));
    }

    #[test]
    fn help_names_every_override() {
        use clap::CommandFactory as _;
        let help = crate::cli::Cli::command().render_long_help().to_string();
        for (name, _) in ENV_OVERRIDES {
            assert!(help.contains(name), "--help does not name {name}");
        }
    }

    #[test]
    fn env_overrides() {
        let env = |k: &str| match k {
            "EKEY_GATEWAY_LISTEN" => Some("127.0.0.1:0".to_owned()),
            "EKEY_GATEWAY_ADMIN_LISTEN" => Some("127.0.0.1:0".to_owned()),
            "EKEY_GATEWAY_AUDIT_SINK" => Some("file".to_owned()),
            "EKEY_GATEWAY_AUDIT_PATH" => Some("audit.jsonl".to_owned()),
            "EKEY_GATEWAY_TRUSTED_PROXIES" => Some("10.0.0.0/8, ::1".to_owned()),
            "EKEY_GATEWAY_JWKS_URL" => Some("http://127.0.0.1:8080/.well-known/jwks.json".to_owned()),
            _ => None,
        };
        let c = Config::from_toml_with_env(MIN, env).unwrap();
        assert_eq!((c.server.listen.port(), c.server.admin_listen.port()), (0, 0));
        assert_eq!(c.audit, AuditConfig { sink: AuditSinkKind::File, path: Some("audit.jsonl".into()) });
        let off = |k: &str| (k == "EKEY_GATEWAY_AUDIT_SINK").then(|| "off".to_owned());
        let with_file = format!("{MIN}[audit]\nsink = \"file\"\npath = \"a.jsonl\"\n");
        assert_eq!(
            Config::from_toml_with_env(&with_file, off).unwrap().audit,
            AuditConfig { sink: AuditSinkKind::Off, path: None }
        );
        let bad_sink = |k: &str| (k == "EKEY_GATEWAY_AUDIT_SINK").then(|| "syslog".to_owned());
        assert!(Config::from_toml_with_env(MIN, bad_sink)
            .unwrap_err()
            .to_string()
            .starts_with("EKEY_GATEWAY_AUDIT_SINK:"));
        assert_eq!(c.server.trusted_proxies, vec!["10.0.0.0/8", "::1"]);
        assert_eq!(c.verifier.keys, KeysConfig::Url("http://127.0.0.1:8080/.well-known/jwks.json".into()));
        let bad = |k: &str| (k == "EKEY_GATEWAY_ISSUER").then(|| "not a url".to_owned());
        assert!(Config::from_toml_with_env(MIN, bad).unwrap_err().to_string().starts_with("verifier.issuer:"));
    }
}
