//! The issuer's configuration: one TOML file, `EKEY_*` overrides, validated
//! into the types below before anything starts. Every field and its default
//! is documented in `docs/configuration.md`.
//!
//! A [`Config`] has passed every check that needs no file or network: ranges,
//! URLs, action patterns, template/client cross-references. Files named in it
//! (keys, secrets, client JWKS) are read by [`crate::Providers`], whose errors
//! also name the field.
//!
//! ```
//! let config = ekey_issuer::Config::from_toml_str(r#"
//!     issuer = "https://issuer.example.com"
//!     [signing_key]
//!     generate = true
//!     [[clients]]
//!     id = "worker"
//!     auth = "client_secret_basic"
//!     secret_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!     [[templates]]
//!     name = "payments.create"
//!     clients = ["worker"]
//!     actions = ["POST:/payments/:id"]
//!     audience = "https://api.example.com"
//! "#).unwrap();
//! assert_eq!(config.templates[0].ttl, 60);
//!
//! let err = ekey_issuer::Config::from_toml_str(
//!     "[signing_key]\ngenerate = true\n[[templates]]\nname = \"x\"\nttl = 900",
//! ).unwrap_err();
//! assert_eq!(err.to_string(), "templates[0].ttl: 900 exceeds the 300 s cap");
//! ```

mod env;
mod raw;
mod replay;
mod revocation;
mod signing;
mod validate;

pub use env::{process_env, variables as env_variables, EnvLookup};
pub(crate) use raw::{OneOrMany, RawClient, RawConfig};
pub use revocation::RevocationConfig;
pub(crate) use signing::format_rfc3339;
pub use signing::PublishedKeyConfig;

use crate::ratelimit::RateLimit;
use ekey_verifier::{Algorithm, PublicJwk};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration is unusable. The message names the field (or the
/// environment variable) and says what is wrong, e.g.
/// `templates[2].ttl: 900 exceeds the 300 s cap`.
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
    /// The file is not TOML of the expected shape (wrong type, unknown field).
    /// The message carries the line and the offending key.
    #[error("config file is not valid: {0}")]
    Syntax(String),
    /// A field has an unusable value.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, e.g. `templates[2].ttl`, or the environment variable.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// An `Invalid` error for `field`.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), problem: problem.into() }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The issuer URL, in origin form (`scheme://host[:port]`): the `iss` of
    /// every token. `None` means "derive it from the public listener's bound
    /// address" (development and tests only).
    pub issuer: Option<String>,
    /// Logging.
    pub log: LogConfig,
    /// Listeners and HTTP limits.
    pub server: ServerConfig,
    /// Public URLs and JWKS caching.
    pub endpoints: EndpointsConfig,
    /// The signing key.
    pub signing_key: SigningKeyConfig,
    /// DPoP proofs at the token endpoint.
    pub dpop: DpopConfig,
    /// Client authentication settings.
    pub client_auth: ClientAuthConfig,
    /// Replay cache for assertion and proof `jti`s.
    pub replay: ReplayConfig,
    /// Registered clients.
    pub clients: Vec<ClientConfig>,
    /// Capability templates: the policy.
    pub templates: Vec<TemplateConfig>,
    /// Per-client rate limits by template name, from each template's `rate`
    /// and `burst`. Defaults to none (no limit).
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// The revocation API, when `[revocation]` is set.
    pub revocation: Option<RevocationConfig>,
    /// OTLP export of metrics and traces (`[telemetry]`). Prometheus text
    /// is always served on the admin listener. Defaults to `otlp = "auto"`.
    pub telemetry: ekey_telemetry::TelemetryConfig,
    /// Where audit events go (`[audit]`). Defaults to standard output.
    pub audit: ekey_telemetry::AuditConfig,
    /// Things that are allowed but probably not meant for production; logged
    /// at start-up and printed by `check-config`.
    pub warnings: Vec<String>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `ekey_issuer=debug,info`. Defaults to `info`.
    pub level: String,
    /// Human-readable or JSON lines. Defaults to human.
    pub format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For a terminal.
    #[default]
    Human,
    /// One JSON object per line, for a log pipeline.
    Json,
}

/// Listeners and HTTP limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Public listener (token endpoint, JWKS, metadata). Defaults to `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`). Defaults to `127.0.0.1:8081`.
    pub admin_listen: SocketAddr,
    /// Largest request body accepted. Defaults to 16 KiB.
    pub max_body_bytes: usize,
    /// Most connections served at once per listener. Defaults to 1024.
    pub max_connections: usize,
    /// Time allowed for a request's headers. Defaults to 5 s.
    pub header_read_timeout: Duration,
    /// Time allowed for a request's body. Defaults to 10 s.
    pub request_timeout: Duration,
    /// Time allowed for in-flight requests at shutdown. Defaults to 10 s.
    pub drain_timeout: Duration,
    /// Most requests in flight at once on one HTTP/2 connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`). Defaults to 100.
    pub max_concurrent_streams: u32,
    /// How many replicas serve this configuration, as the operator states
    /// it. Only `check-config`'s fleet warning reads it. Defaults to unset.
    pub replicas: Option<u32>,
    /// TLS on the public listener (`[server.tls]`). Defaults to none (plain HTTP).
    pub tls: Option<TlsConfig>,
}

/// TLS on the public listener (rustls): TLS 1.3, optionally client
/// certificates for `tls_client_auth` and certificate-bound tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// PEM bundle of the CAs that issue client certificates. Defaults to none.
    pub client_ca: Option<PathBuf>,
    /// Whether client certificates are asked for. Defaults to off.
    pub client_auth: ClientCertMode,
    /// Also accept TLS 1.2 (ECDHE with AES-GCM only). Defaults to false.
    pub tls12: bool,
    /// Also offer ChaCha20-Poly1305. Defaults to false.
    pub chacha20: bool,
    /// How often the files are checked for changes; SIGHUP checks at once.
    /// Defaults to 30 s; `None` (0 in the file) turns polling off.
    pub reload_interval: Option<Duration>,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`). Defaults to true.
    pub http2: bool,
}

/// Client certificates on the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertMode {
    /// Not asked for.
    #[default]
    Off,
    /// Asked for; verified when presented; connections without one are served.
    Optional,
    /// Every connection must present a valid one.
    Required,
}

/// Public URLs and JWKS caching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointsConfig {
    /// The token endpoint's public URL (the DPoP `htu` and an accepted
    /// assertion `aud`). Defaults to `{issuer}/token`.
    pub token_endpoint: Option<String>,
    /// The JWKS's public URL. Defaults to `{issuer}/.well-known/jwks.json`.
    pub jwks_uri: Option<String>,
    /// `Cache-Control: max-age` of the JWKS and the metadata, in seconds. Defaults to 300.
    pub jwks_max_age: u32,
}

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningKeySource {
    /// A fresh key in memory (one process only: every replica and every
    /// restart gets another key).
    Generate(Algorithm),
    /// A PKCS#8 (or SEC1 EC) PEM private key file; the algorithm follows the key.
    PemFile {
        /// The file.
        path: PathBuf,
        /// The algorithm the config expects, if it named one.
        expect: Option<Algorithm>,
    },
    /// A KMS key by key id, key ARN, alias (`alias/…`) or alias ARN.
    Kms {
        /// The key.
        key_id: String,
        /// ES256/ES384 follow the key's curve; RSA keys sign PS256 unless
        /// this says RS256.
        algorithm: Option<Algorithm>,
    },
    /// A public JWK file: a next or previous key whose private half is
    /// elsewhere (or gone). Never the active key.
    PublicJwk {
        /// The file.
        path: PathBuf,
        /// The algorithm, unless the JWK's `alg` says it.
        algorithm: Option<Algorithm>,
    },
}

/// The signing keys: the active one, and the ones only published during a
/// rotation (see `docs/key-rotation.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyConfig {
    /// The active key: it signs every token.
    pub source: SigningKeySource,
    /// Longest a signature may take before the request gets a 503. Defaults to 5 s.
    pub timeout: Duration,
    /// When the active key was first published (as a `next` key), Unix
    /// seconds. Required when `previous` keys are listed; the key may sign
    /// only from `published_at + endpoints.jwks_max_age`.
    pub published_at: Option<i64>,
    /// Keys published ahead of their turn to sign.
    pub next: Vec<PublishedKeyConfig>,
    /// Keys that signed before and stay published until their tokens and
    /// every cached JWKS without the active key are gone.
    pub previous: Vec<PublishedKeyConfig>,
    /// How long a previous key stays published after `retired_at`.
    /// Defaults to 24 h; at least 300 s + 60 s + `endpoints.jwks_max_age`.
    pub previous_retention: Duration,
    /// How KMS is reached (for every KMS key of the set).
    pub kms: crate::signer::KmsSettings,
}

/// A secret's source. The secret itself never sits in the config.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// Only the SHA-256 of the secret (for client secrets).
    Sha256([u8; 32]),
    /// A file holding the secret (one trailing newline ignored).
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256(_) => f.write_str("Sha256(..)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Env(v) => f.debug_tuple("Env").field(v).finish(),
        }
    }
}

/// DPoP at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// Proof algorithms accepted. Defaults to ES256, ES384, EdDSA, PS256.
    pub algorithms: Vec<Algorithm>,
    /// How old a proof may be, in seconds. Defaults to 60.
    pub max_age: u32,
    /// Clock skew allowed, in seconds. Defaults to 5.
    pub leeway: u32,
    /// Server nonces (RFC 9449 §8). Defaults to off.
    pub nonce: Option<NonceConfig>,
}

/// Stateless DPoP server nonces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceConfig {
    /// The secret shared by every replica (≥ 32 bytes).
    pub secret: SecretSource,
    /// How often the nonce changes, in seconds. Defaults to 60.
    pub window: u32,
}

/// Client authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    /// `private_key_jwt` assertion algorithms. Defaults to ES256, ES384, EdDSA, PS256, RS256.
    pub assertion_algorithms: Vec<Algorithm>,
    /// Latest `exp` accepted, in seconds from now. Defaults to 300.
    pub max_assertion_lifetime: u32,
    /// Clock skew allowed, in seconds. Defaults to 5.
    pub leeway: u32,
}

/// The replay cache (and where rate limits are counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Most `jti`s remembered at once by the in-memory cache. Defaults to 100 000.
    pub capacity: usize,
    /// The fleet's Redis (or Redis Cluster), shared by every replica, for
    /// the replay cache and the rate limits (`[replay.redis]`, the fields of
    /// docs/replay-store.md). Defaults to none: both in this process.
    pub redis: Option<ekey_verifier::RedisStoreSettings>,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client id (`sub` of its tokens).
    pub id: String,
    /// How it authenticates.
    pub auth: ClientAuthMethod,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// HTTP Basic with a client secret (RFC 6749 §2.3.1).
    SecretBasic(SecretSource),
    /// A JWT signed with one of the client's keys (RFC 7523).
    PrivateKeyJwt(JwksSource),
    /// A client certificate from the configured CA with this subject or
    /// SAN (RFC 8705 §2.1).
    TlsClientAuth(CertificateName),
    /// A self-signed client certificate registered by its SHA-256 thumbprint
    /// or in a JWKS (`x5c`) (RFC 8705 §2.2).
    SelfSignedTlsClientAuth(SelfSignedSource),
}

/// The one certificate name a `tls_client_auth` client is registered by
/// (RFC 8705 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateName {
    /// `tls_client_auth_subject_dn`, an RFC 4514 string, e.g. `CN=api,O=Example`.
    SubjectDn(String),
    /// `tls_client_auth_san_dns`.
    SanDns(String),
    /// `tls_client_auth_san_uri`, e.g. a SPIFFE ID.
    SanUri(String),
    /// `tls_client_auth_san_ip`.
    SanIp(std::net::IpAddr),
    /// `tls_client_auth_san_email`.
    SanEmail(String),
}

/// Where a `self_signed_tls_client_auth` client's certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelfSignedSource {
    /// base64url SHA-256 thumbprints (`x5t#S256`) of the certificates.
    Thumbprints(Vec<String>),
    /// A JWK set file whose keys carry the certificates in `x5c`.
    JwksFile(PathBuf),
}

/// Where a client's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksSource {
    /// Given in the config.
    Inline(Vec<PublicJwk>),
    /// A JSON file: a JWK set or one JWK.
    File(PathBuf),
}

/// Which proof of possession a template's tokens must be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingRequirement {
    /// DPoP only.
    Dpop,
    /// mTLS client certificate only.
    Mtls,
    /// Whichever the request offers.
    Any,
}

/// A capability template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConfig {
    /// Unique name; what `scope` asks for and the tokens' `tpl`.
    pub name: String,
    /// Client ids allowed to use it.
    pub clients: Vec<String>,
    /// Actions it may grant (`METHOD:/path/:param`).
    pub actions: Vec<String>,
    /// Actions allowed as `subcap`. Defaults to none.
    pub subcap: Vec<String>,
    /// Largest `limit`. Defaults to 1.
    pub max_limit: u32,
    /// `limit` when the request names none. Defaults to 1.
    pub default_limit: u32,
    /// Token lifetime in seconds. Defaults to 60; at most 300.
    pub ttl: u32,
    /// The tokens' `aud`.
    pub audience: Vec<String>,
    /// Required binding. Defaults to any.
    pub binding: BindingRequirement,
    /// `cap.scope` of the tokens, if any.
    pub scope: Option<String>,
}

impl Config {
    /// Reads `path`, applies the process's `EKEY_*` variables and validates.
    /// Relative paths in the file are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base, &process_env)
    }

    /// Parses and validates TOML text with `env` for the overrides; relative
    /// paths are resolved against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        env::apply(&mut raw, env)?;
        Self::from_raw(raw, base_dir)
    }

    /// Parses and validates TOML text without environment overrides (tests,
    /// embedding); relative paths are relative to the current directory.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml(text, Path::new("."), &|_| Ok(None))
    }

    pub(crate) fn from_raw(raw: RawConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        validate::validate(raw, base_dir)
    }

    /// The template named `name`.
    pub fn template(&self, name: &str) -> Option<&TemplateConfig> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// The per-client rate limit of template `name`, if it has one.
    pub fn rate_limit(&self, name: &str) -> Option<&RateLimit> {
        self.rate_limits.get(name)
    }
}
