//! Providers: what the config names, made real. Reads key, secret and JWKS
//! files and environment secrets, builds the signer and checks it, builds the
//! client registry, the replay cache and the rate limiter (in this process,
//! or on the fleet's Redis). Every error names its config field.
//!
//! Tests and embedders can swap any piece before [`crate::Server::serve`]:
//! a failing signer, a manual clock, the telemetry.

use crate::clients::{AssertionSettings, ClientRegistry};
use crate::config::{ClientAuthMethod, Config, ConfigError, JwksSource, SecretSource, SelfSignedSource};
use crate::keyset::KeySet;
use crate::ratelimit::{MemoryRateLimiter, RateLimiter, RedisRateLimiter};
use crate::replay::{MemoryReplayCache, RedisReplayCache, ReplayCache};
use crate::revocation::AdminRevocations;
use crate::signer::Signer;
use ekey_telemetry::Telemetry;
use ekey_verifier::{
    from_json_strict, Clock, NonceSource, PublicJwk, RedisConnection, RedisStoreError, SystemClock, VerifyingKey,
};
use std::path::Path;
use std::sync::Arc;

/// The `service.name` of the issuer's telemetry (`OTEL_SERVICE_NAME` wins)
/// and the instrumentation scope of its meters.
pub const SERVICE_NAME: &str = "ekey-issuer";

/// Shortest client secret accepted from a file or the environment, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The issuer's pluggable parts.
#[derive(Debug)]
#[non_exhaustive]
pub struct Providers {
    /// The signing key and any further published keys.
    pub keys: KeySet,
    /// Registered clients.
    pub clients: ClientRegistry,
    /// Assertion and proof `jti`s.
    pub replay: Arc<dyn ReplayCache>,
    /// The templates' per-client rate limits (on the same backend as the
    /// replay cache).
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// DPoP server nonces, when configured.
    pub dpop_nonce: Option<NonceSource>,
    /// The revocation API, when `[revocation]` is configured.
    pub revocations: Option<Arc<AdminRevocations>>,
    /// Meters, tracer, Prometheus text and the audit sink, from
    /// `[telemetry]` and `[audit]`. Flushed and shut down with the server.
    pub telemetry: Telemetry,
}

impl Providers {
    /// Builds everything `config` names, telemetry included (which must
    /// happen inside a Tokio runtime). A KMS signer records its metrics on
    /// the telemetry's meter.
    pub async fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let telemetry = Telemetry::start(SERVICE_NAME, env!("CARGO_PKG_VERSION"), &config.telemetry, &config.audit)
            .map_err(|e| match e {
                ekey_telemetry::TelemetryError::Config { field, problem } => ConfigError::invalid(field, problem),
                ekey_telemetry::TelemetryError::AuditFile { path, source } => {
                    ConfigError::invalid("audit.path", format!("cannot open {}: {source}", path.display()))
                }
                other => ConfigError::invalid("telemetry", other.to_string()),
            })?;
        let now = SystemClock.now();
        let meter = telemetry.meter(SERVICE_NAME);
        let (keys, schedule) =
            crate::keyset::load_metered(&config.signing_key, config.endpoints.jwks_max_age, now, Some(&meter)).await?;
        for w in schedule {
            tracing::warn!("{w}");
        }
        self_test(keys.active().as_ref()).await?;
        let dpop_nonce = match &config.dpop.nonce {
            None => None,
            Some(n) => {
                let secret = read_secret("dpop.nonce_secret", &n.secret)?;
                Some(
                    NonceSource::new(&secret, n.window)
                        .map_err(|e| ConfigError::invalid("dpop.nonce_secret", e.to_string()))?,
                )
            }
        };
        let (replay, rate_limiter) = replay_and_rate_limits(config).await?;
        Ok(Self {
            keys,
            clients: clients(config)?,
            replay,
            rate_limiter,
            clock: Arc::new(SystemClock),
            dpop_nonce,
            revocations: match &config.revocation {
                Some(r) => Some(Arc::new(AdminRevocations::from_config(r).await?)),
                None => None,
            },
            telemetry,
        })
    }

    /// Replaces the telemetry (e.g. a test's, exporting to an in-process
    /// receiver). A KMS signer already built keeps recording on the meter
    /// it was given.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Replaces the signer (the key set then holds only this key).
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.keys = KeySet::new(signer);
        self
    }

    /// Replaces the key set.
    pub fn with_keys(mut self, keys: KeySet) -> Self {
        self.keys = keys;
        self
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the replay cache.
    pub fn with_replay_cache(mut self, replay: Arc<dyn ReplayCache>) -> Self {
        self.replay = replay;
        self
    }

    /// Replaces the rate limiter.
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.rate_limiter = limiter;
        self
    }
}

/// The replay cache and the rate limiter: both in this process, or both on
/// one connection pool to `[replay.redis]` (connected now, with the
/// `maxmemory-policy` check, so that a fleet that cannot share state does
/// not start).
async fn replay_and_rate_limits(config: &Config) -> Result<(Arc<dyn ReplayCache>, Arc<dyn RateLimiter>), ConfigError> {
    match &config.replay.redis {
        None => {
            let pairs = config
                .rate_limits
                .keys()
                .filter_map(|name| config.template(name))
                .map(|t| (t.name.as_str(), t.clients.iter().map(String::as_str)));
            Ok((Arc::new(MemoryReplayCache::new(config.replay.capacity)), Arc::new(MemoryRateLimiter::new(pairs))))
        }
        Some(settings) => {
            let redis = RedisConnection::connect(settings.clone()).await.map_err(|e| match e {
                RedisStoreError::Config { field, reason } => {
                    ConfigError::invalid(format!("replay.redis.{field}"), reason)
                }
                other => ConfigError::invalid("replay.redis", other.to_string()),
            })?;
            let redis = Arc::new(redis);
            Ok((Arc::new(RedisReplayCache::new(Arc::clone(&redis))), Arc::new(RedisRateLimiter::new(redis))))
        }
    }
}

/// One signature, checked against the published public key: catches a key
/// and public key that do not match, or a signer that returns DER instead of
/// JOSE signatures, before any token is issued.
async fn self_test(signer: &dyn Signer) -> Result<(), ConfigError> {
    let probe = b"ekey signer self-test";
    let fail = |why: String| ConfigError::invalid("signing_key", format!("self-test failed: {why}"));
    let sig = signer.sign(probe).await.map_err(|e| fail(e.to_string()))?;
    let key = VerifyingKey::new(signer.public_jwk(), signer.algorithm()).map_err(|e| fail(e.to_string()))?;
    if !key.verify(probe, &sig) {
        return Err(fail("the signature does not verify with the signer's public key".into()));
    }
    Ok(())
}

fn clients(config: &Config) -> Result<ClientRegistry, ConfigError> {
    let a = &config.client_auth;
    let mut registry = ClientRegistry::new(AssertionSettings {
        algorithms: a.assertion_algorithms.clone(),
        max_lifetime: a.max_assertion_lifetime,
        leeway: a.leeway,
    });
    for (i, c) in config.clients.iter().enumerate() {
        let field = |name: &str| format!("clients[{i}].{name}");
        let added = match &c.auth {
            ClientAuthMethod::SecretBasic(SecretSource::Sha256(d)) => registry.add_secret_sha256(&c.id, *d),
            ClientAuthMethod::SecretBasic(source) => {
                let name = if matches!(source, SecretSource::File(_)) { "secret_file" } else { "secret_env" };
                let secret = read_secret(&field(name), source)?;
                if secret.len() < MIN_SECRET_LEN {
                    return Err(ConfigError::invalid(
                        field(name),
                        format!("the secret is {} bytes; use at least {MIN_SECRET_LEN} random bytes", secret.len()),
                    ));
                }
                registry.add_secret(&c.id, &secret)
            }
            ClientAuthMethod::PrivateKeyJwt(JwksSource::Inline(keys)) => registry.add_keys(&c.id, keys),
            ClientAuthMethod::PrivateKeyJwt(JwksSource::File(path)) => {
                let keys = read_jwks(path).map_err(|e| ConfigError::invalid(field("jwks_file"), e))?;
                registry.add_keys(&c.id, &keys)
            }
            ClientAuthMethod::TlsClientAuth(name) => registry.add_certificate_name(&c.id, name.clone()),
            ClientAuthMethod::SelfSignedTlsClientAuth(source) => {
                let (name, thumbprints) = match source {
                    SelfSignedSource::Thumbprints(list) => {
                        ("certificate_thumbprints", crate::clients::thumbprints(list))
                    }
                    SelfSignedSource::JwksFile(path) => ("jwks_file", crate::clients::x5c_thumbprints(path)),
                };
                let thumbprints = thumbprints.map_err(|e| ConfigError::invalid(field(name), e))?;
                registry.add_self_signed(&c.id, thumbprints)
            }
        };
        added.map_err(|e| ConfigError::invalid(format!("clients[{i}]"), e.to_string()))?;
    }
    Ok(registry)
}

/// A secret from a file (one trailing newline dropped) or an environment
/// variable.
fn read_secret(field: &str, source: &SecretSource) -> Result<Vec<u8>, ConfigError> {
    let mut secret = match source {
        SecretSource::File(path) => std::fs::read(path)
            .map_err(|e| ConfigError::invalid(field, format!("cannot read {}: {e}", path.display())))?,
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) => v.into_bytes(),
            Err(std::env::VarError::NotPresent) => {
                return Err(ConfigError::invalid(field, format!("environment variable {var} is not set")))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ConfigError::invalid(field, format!("environment variable {var} is not UTF-8")))
            }
        },
        SecretSource::Sha256(_) => return Err(ConfigError::invalid(field, "needs the secret itself, not its hash")),
    };
    if secret.last() == Some(&b'\n') {
        secret.pop();
        if secret.last() == Some(&b'\r') {
            secret.pop();
        }
    }
    if secret.is_empty() {
        return Err(ConfigError::invalid(field, "the secret is empty"));
    }
    Ok(secret)
}

/// A JWK set (`{"keys": […]}`) or a single JWK, public keys only.
fn read_jwks(path: &Path) -> Result<Vec<PublicJwk>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value = from_json_strict(&bytes).map_err(|e| e.to_string())?;
    match value.get("keys") {
        None => Ok(vec![PublicJwk::from_json(&bytes).map_err(|e| e.to_string())?]),
        Some(serde_json::Value::Array(keys)) => keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let json = serde_json::to_vec(k).map_err(|e| e.to_string())?;
                PublicJwk::from_json(&json).map_err(|e| format!("keys[{i}]: {e}"))
            })
            .collect(),
        Some(_) => Err("\"keys\" must be an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::{Algorithm, KeyPair};
    use std::path::PathBuf;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ekey-providers-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        fn write(&self, name: &str, data: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, data).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load(toml: &str, dir: &TempDir) -> Result<Providers, ConfigError> {
        let config = Config::from_toml(toml, &dir.0, &|_| Ok(None))?;
        futures_block_on(Providers::from_config(&config))
    }

    fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn files_are_read_relative_to_the_config() {
        let dir = TempDir::new("files");
        let key = KeyPair::generate(Algorithm::EdDSA).unwrap();
        dir.write("signing.pem", key.to_pem());
        dir.write("secret.txt", b"0123456789abcdef0123\n");
        let client = KeyPair::generate(Algorithm::ES256).unwrap();
        let jwks = serde_json::json!({"keys": [client.public_jwk().to_json()]});
        dir.write("client.jwks.json", jwks.to_string().as_bytes());
        let p = load(
            r#"
            [signing_key]
            file = "signing.pem"
            [[clients]]
            id = "s"
            auth = "client_secret_basic"
            secret_file = "secret.txt"
            [[clients]]
            id = "k"
            auth = "private_key_jwt"
            jwks_file = "client.jwks.json"
            "#,
            &dir,
        )
        .unwrap();
        assert_eq!(p.keys.active().kid(), key.thumbprint());
        assert_eq!(p.keys.active().algorithm(), Algorithm::EdDSA);
        assert!(p.clients.contains("s") && p.clients.contains("k"));
    }

    #[test]
    fn errors_name_the_field() {
        let dir = TempDir::new("errors");
        let err = |toml: &str| load(toml, &dir).unwrap_err().to_string();
        assert!(err("[signing_key]\nfile = \"missing.pem\"").starts_with("signing_key.file: "));
        dir.write("bad.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(err("[signing_key]\nfile = \"bad.pem\"").starts_with("signing_key.file: "));
        let key = KeyPair::generate(Algorithm::ES256).unwrap();
        dir.write("es256.pem", key.to_pem());
        assert_eq!(
            err("[signing_key]\nfile = \"es256.pem\"\nalgorithm = \"EdDSA\""),
            "signing_key.algorithm: EdDSA does not match the key file, which is a ES256 key"
        );
        dir.write("short.txt", b"short\n");
        let base = "[signing_key]\ngenerate = true\n[[clients]]\nid = \"s\"\nauth = \"client_secret_basic\"\n";
        assert_eq!(
            err(&format!("{base}secret_file = \"short.txt\"")),
            "clients[0].secret_file: the secret is 5 bytes; use at least 16 random bytes"
        );
        assert!(err(&format!("{base}secret_env = \"EKEY_TEST_SURELY_UNSET_VARIABLE\""))
            .starts_with("clients[0].secret_env: environment variable"));
        dir.write("private.json", br#"{"kty":"oct","k":"AAAA"}"#);
        let jwt = "[signing_key]\ngenerate = true\n[[clients]]\nid = \"k\"\nauth = \"private_key_jwt\"\n";
        assert!(err(&format!("{jwt}jwks_file = \"private.json\"")).starts_with("clients[0].jwks_file: "));
        dir.write("nonce.txt", b"too short");
        assert!(err("[signing_key]\ngenerate = true\n[dpop]\nnonce_secret_file = \"nonce.txt\"")
            .starts_with("dpop.nonce_secret: "));
    }
}
