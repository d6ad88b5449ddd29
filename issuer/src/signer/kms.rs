//! A signer whose private key lives in AWS KMS (or a KMS-compatible API):
//! one `Sign` call per token, `MessageType=RAW`, ECDSA answers converted
//! from DER to JOSE `r‖s`.
//!
//! The key is read once at start (`GetPublicKey`): that gives the public JWK
//! and `kid`, checks the key can sign with the chosen algorithm, and resolves
//! an alias to the key's ARN, which every `Sign` call then names, so that
//! re-pointing an alias can never make this process sign with a key other
//! than the one it publishes.

use super::breaker::{Breaker, BreakerSettings};
use super::der::der_to_jose;
use super::kms_metrics::{CallTimer, FailureKind, KmsMetrics};
use super::{SignError, Signer};
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use ekey_verifier::{b64_encode, Algorithm, PublicJwk};
use openssl::bn::{BigNum, BigNumContext};
use openssl::pkey::{Id, PKey};
use opentelemetry::metrics::Meter;
use std::time::{Duration, Instant};

/// KMS's limit for `MessageType=RAW`.
const MAX_RAW_MESSAGE: usize = 4096;

/// How the issuer talks to KMS. Shared by every KMS key of the key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSettings {
    /// AWS region; `None` takes it from the standard chain (`AWS_REGION`,
    /// profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint URL override (a VPC endpoint, a test server). Defaults to
    /// the region's public endpoint.
    pub endpoint: Option<String>,
    /// The whole `Sign` call, retries included. The token endpoint answers
    /// 503 when it is exceeded. Defaults to `signing_key.timeout`.
    pub timeout: Duration,
    /// One HTTP attempt. Defaults to 2 s.
    pub attempt_timeout: Duration,
    /// Attempts per call, the first included (throttling and 5xx are
    /// retried with exponential backoff and full jitter). Defaults to 3.
    pub max_attempts: u32,
    /// Consecutive failed calls that open the circuit. Defaults to 5.
    pub breaker_failures: u32,
    /// How long the circuit stays open before a probe. Defaults to 5 s.
    pub breaker_cooldown: Duration,
}

impl Default for KmsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            max_attempts: 3,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

/// Why a KMS key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// No region from the config or the standard chain.
    #[error("no AWS region: set signing_key.kms.region or AWS_REGION")]
    NoRegion,
    /// KMS answered with an error or could not be reached.
    #[error("KMS {operation} for {key}: {reason}")]
    Call {
        /// `GetPublicKey` or `Sign`.
        operation: &'static str,
        /// The key id, ARN or alias.
        key: String,
        /// What happened.
        reason: String,
    },
    /// The key exists but cannot sign JOSE tokens as configured.
    #[error("KMS key {key}: {reason}")]
    Unusable {
        /// The key id, ARN or alias.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A KMS API client with the issuer's timeouts, retries and HTTPS
/// connector (rustls with ring). Cheap to clone.
#[derive(Debug, Clone)]
pub struct KmsClient {
    client: aws_sdk_kms::Client,
    settings: KmsSettings,
}

/// A KMS key's public half, as `GetPublicKey` reported it.
#[derive(Debug, Clone)]
pub struct KmsPublicKey {
    /// The key's ARN, as `GetPublicKey` names it (an alias resolved; some
    /// KMS-compatible servers answer the bare key id).
    pub arn: String,
    /// The public key as a JWK (no `kid`/`alg`).
    pub jwk: PublicJwk,
    /// The JOSE algorithm it will sign with.
    pub algorithm: Algorithm,
}

impl KmsClient {
    /// Credentials and region from the standard AWS chain (environment,
    /// shared config and credentials files, web identity, ECS, EC2 instance
    /// metadata), `settings.region` and `settings.endpoint` taking
    /// precedence.
    pub async fn from_env(settings: KmsSettings) -> Result<Self, KmsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(&sdk, settings)
    }

    /// From an already loaded SDK configuration (embedding, tests with fixed
    /// credentials). Timeouts, retries, region and endpoint come from
    /// `settings`; the HTTPS client from `sdk` when it has one.
    pub fn from_sdk_config(sdk: &SdkConfig, settings: KmsSettings) -> Result<Self, KmsError> {
        let retry = RetryConfig::standard()
            .with_max_attempts(settings.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(1));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.attempt_timeout)
            .operation_attempt_timeout(settings.attempt_timeout)
            .operation_timeout(settings.timeout)
            .build();
        let mut builder = aws_sdk_kms::config::Builder::from(sdk).retry_config(retry).timeout_config(timeouts);
        if sdk.http_client().is_none() {
            builder = builder.http_client(https_client());
        }
        if let Some(region) = &settings.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        let config = builder.build();
        if config.region().is_none() {
            return Err(KmsError::NoRegion);
        }
        Ok(Self { client: aws_sdk_kms::Client::from_conf(config), settings })
    }

    /// The settings.
    pub fn settings(&self) -> &KmsSettings {
        &self.settings
    }

    /// Reads `key_id`'s public key and checks it can sign JOSE tokens with
    /// `algorithm` (`None`: ES256/ES384 from the curve, PS256 for RSA).
    pub async fn public_key(&self, key_id: &str, algorithm: Option<Algorithm>) -> Result<KmsPublicKey, KmsError> {
        let call = |reason: String| KmsError::Call { operation: "GetPublicKey", key: key_id.to_owned(), reason };
        let unusable = |reason: String| KmsError::Unusable { key: key_id.to_owned(), reason };
        let out = tokio::time::timeout(self.settings.timeout, self.client.get_public_key().key_id(key_id).send())
            .await
            .map_err(|_| call(format!("no answer within {:?}", self.settings.timeout)))?
            .map_err(|e| call(describe(&e)))?;
        if out.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(unusable(format!("key usage is {:?}, not SIGN_VERIFY", out.key_usage())));
        }
        // Older servers (and moto) only fill the deprecated CustomerMasterKeySpec.
        #[allow(deprecated)]
        let legacy = out.customer_master_key_spec().map(|s| KeySpec::from(s.as_str()));
        let spec =
            out.key_spec().cloned().or(legacy).ok_or_else(|| unusable("GetPublicKey returned no KeySpec".into()))?;
        let algorithm = match (&spec, algorithm) {
            (KeySpec::EccNistP256, None | Some(Algorithm::ES256)) => Algorithm::ES256,
            (KeySpec::EccNistP384, None | Some(Algorithm::ES384)) => Algorithm::ES384,
            (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096, None | Some(Algorithm::PS256)) => Algorithm::PS256,
            (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096, Some(Algorithm::RS256)) => Algorithm::RS256,
            (spec, Some(alg)) => return Err(unusable(format!("a {} key cannot sign {alg}", spec.as_str()))),
            (spec, None) => {
                return Err(unusable(format!(
                    "key spec {} is not supported (ECC_NIST_P256, ECC_NIST_P384, RSA_2048/3072/4096)",
                    spec.as_str()
                )))
            }
        };
        let kms_alg =
            kms_algorithm(algorithm).ok_or_else(|| unusable(format!("{algorithm} has no KMS counterpart")))?;
        if !out.signing_algorithms().contains(&kms_alg) {
            return Err(unusable(format!("the key does not offer {}", kms_alg.as_str())));
        }
        let spki = out.public_key().ok_or_else(|| unusable("GetPublicKey returned no public key".into()))?;
        let jwk = jwk_from_spki(spki.as_ref()).map_err(unusable)?;
        if !jwk.allows(algorithm) {
            return Err(unusable(format!("the public key does not fit {algorithm}")));
        }
        let arn = out.key_id().filter(|k| !k.is_empty()).unwrap_or(key_id).to_owned();
        Ok(KmsPublicKey { arn, jwk, algorithm })
    }
}

/// The HTTPS connector: hyper 1 + rustls with ring, the platform's roots.
fn https_client() -> aws_sdk_kms::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// The KMS signing algorithm for a JOSE algorithm, if KMS has one that
/// `Sign` can use with `MessageType=RAW` here.
fn kms_algorithm(alg: Algorithm) -> Option<SigningAlgorithmSpec> {
    match alg {
        Algorithm::ES256 => Some(SigningAlgorithmSpec::EcdsaSha256),
        Algorithm::ES384 => Some(SigningAlgorithmSpec::EcdsaSha384),
        Algorithm::PS256 => Some(SigningAlgorithmSpec::RsassaPssSha256),
        Algorithm::RS256 => Some(SigningAlgorithmSpec::RsassaPkcs1V15Sha256),
        _ => None,
    }
}

/// A DER SubjectPublicKeyInfo (what `GetPublicKey` returns) as a JWK.
pub(crate) fn jwk_from_spki(der: &[u8]) -> Result<PublicJwk, String> {
    let key = PKey::public_key_from_der(der).map_err(|e| format!("the public key is not valid DER: {e}"))?;
    let json = match key.id() {
        Id::EC => {
            let ec = key.ec_key().map_err(|e| e.to_string())?;
            let (crv, len) = match ec.group().curve_name() {
                Some(openssl::nid::Nid::X9_62_PRIME256V1) => ("P-256", 32),
                Some(openssl::nid::Nid::SECP384R1) => ("P-384", 48),
                other => return Err(format!("unsupported curve {other:?}")),
            };
            let mut ctx = BigNumContext::new().map_err(|e| e.to_string())?;
            let (mut x, mut y) = (BigNum::new().map_err(|e| e.to_string())?, BigNum::new().map_err(|e| e.to_string())?);
            ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).map_err(|e| e.to_string())?;
            let pad = |n: &BigNum| n.to_vec_padded(len).map_err(|e| e.to_string());
            serde_json::json!({"kty": "EC", "crv": crv, "x": b64_encode(pad(&x)?), "y": b64_encode(pad(&y)?)})
        }
        Id::RSA => {
            let rsa = key.rsa().map_err(|e| e.to_string())?;
            serde_json::json!({"kty": "RSA", "n": b64_encode(rsa.n().to_vec()), "e": b64_encode(rsa.e().to_vec())})
        }
        other => return Err(format!("unsupported key type {other:?}")),
    };
    PublicJwk::from_json(json.to_string().as_bytes()).map_err(|e| e.to_string())
}

/// Signs through KMS `Sign`. See the module docs.
///
/// Failures are [`SignError::Unavailable`] when waiting may help
/// (unreachable, timed out, throttled, 5xx, circuit open) and
/// [`SignError::Failed`] when it will not (access denied, key disabled or
/// deleted). Either kind counts towards the circuit breaker, and while the
/// circuit is open calls fail at once, without a request to KMS.
///
/// With [`KmsSigner::with_metrics`], every call is measured on the given
/// meter: `ekey.kms.sign.duration` and `ekey.kms.sign.errors`.
#[derive(Debug)]
pub struct KmsSigner {
    client: KmsClient,
    key: KmsPublicKey,
    kms_alg: SigningAlgorithmSpec,
    field_len: Option<usize>,
    breaker: Breaker,
    metrics: Option<KmsMetrics>,
}

/// A failed `Sign` call: what the caller gets, and its `error.type`.
struct Failure {
    error: SignError,
    kind: FailureKind,
}

impl KmsSigner {
    /// Reads the key (`GetPublicKey`) and prepares to sign with it.
    pub async fn connect(client: KmsClient, key_id: &str, algorithm: Option<Algorithm>) -> Result<Self, KmsError> {
        let key = client.public_key(key_id, algorithm).await?;
        let breaker = Breaker::new(BreakerSettings {
            failures: client.settings.breaker_failures.max(1),
            cooldown: client.settings.breaker_cooldown,
        });
        let field_len = match key.algorithm {
            Algorithm::ES256 => Some(32),
            Algorithm::ES384 => Some(48),
            _ => None,
        };
        let kms_alg = kms_algorithm(key.algorithm).ok_or_else(|| KmsError::Unusable {
            key: key_id.to_owned(),
            reason: format!("{} has no KMS counterpart", key.algorithm),
        })?;
        Ok(Self { kms_alg, client, key, field_len, breaker, metrics: None })
    }

    /// Records every `Sign` call on `meter`: `ekey.kms.sign.duration`
    /// (histogram, seconds, `ekey.result` = `ok` | `error`) and
    /// `ekey.kms.sign.errors` (counter, `error.type` = `throttled` |
    /// `timeout` | `unavailable` | `rejected` | `circuit_open`).
    pub fn with_metrics(mut self, meter: &Meter) -> Self {
        self.metrics = Some(KmsMetrics::new(meter));
        self
    }

    /// The key's ARN (or key id), alias resolved: every `Sign` call names it.
    pub fn key_arn(&self) -> &str {
        &self.key.arn
    }

    async fn call_sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, Failure> {
        let timeout = self.client.settings.timeout;
        let request = self
            .client
            .client
            .sign()
            .key_id(&self.key.arn)
            .message(Blob::new(signing_input))
            .message_type(MessageType::Raw)
            .signing_algorithm(self.kms_alg.clone())
            .send();
        let out = match tokio::time::timeout(timeout, request).await {
            Err(_) => {
                let error = unavailable(format!("KMS Sign: no answer within {timeout:?}"));
                return Err(Failure { error, kind: FailureKind::Timeout });
            }
            Ok(Err(e)) => {
                let reason = format!("KMS Sign: {}", describe(&e));
                let error = if transient(&e) { unavailable(reason) } else { SignError::Failed(reason) };
                return Err(Failure { error, kind: failure_kind(&e) });
            }
            Ok(Ok(out)) => out,
        };
        let rejected = |reason: String| Failure { error: SignError::Failed(reason), kind: FailureKind::Rejected };
        let signature = out.signature().ok_or_else(|| rejected("KMS Sign returned no signature".into()))?;
        match self.field_len {
            Some(len) => der_to_jose(signature.as_ref(), len).map_err(|e| rejected(format!("KMS Sign: {e}"))),
            None => Ok(signature.as_ref().to_vec()),
        }
    }
}

fn unavailable(reason: String) -> SignError {
    SignError::Unavailable { reason, retry_after: None }
}

/// The error, with the service's code and message when there is one.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E>) -> String {
    match e {
        SdkError::ServiceError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
            format!("{} (HTTP {status}): {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message"))
        }
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(d) => {
            format!(
                "cannot reach KMS ({})",
                if d.is_timeout() {
                    "timeout"
                } else if d.is_io() {
                    "I/O"
                } else {
                    "connection"
                }
            )
        }
        other => {
            let mut s = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                s.push_str(": ");
                s.push_str(&cause.to_string());
                source = cause.source();
            }
            s
        }
    }
}

/// The `error.type` of a failed call.
fn failure_kind<E: ProvideErrorMetadata>(e: &SdkError<E>) -> FailureKind {
    match e {
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => FailureKind::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => FailureKind::Unavailable,
        SdkError::ServiceError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
            if status == 429 || e.code() == Some("ThrottlingException") {
                FailureKind::Throttled
            } else if transient(e) {
                FailureKind::Unavailable
            } else {
                FailureKind::Rejected
            }
        }
        _ => FailureKind::Rejected,
    }
}

/// Whether waiting may help: no answer, throttling, or a server-side error.
fn transient<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
            status == 429
                || status >= 500
                || matches!(
                    e.code(),
                    Some(
                        "ThrottlingException"
                            | "KMSInternalException"
                            | "DependencyTimeoutException"
                            | "KeyUnavailableException"
                    )
                )
        }
        _ => false,
    }
}

#[async_trait]
impl Signer for KmsSigner {
    fn algorithm(&self) -> Algorithm {
        self.key.algorithm
    }

    fn public_jwk(&self) -> &PublicJwk {
        &self.key.jwk
    }

    fn kind(&self) -> &'static str {
        "kms"
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        if signing_input.len() > MAX_RAW_MESSAGE {
            return Err(SignError::Failed(format!(
                "signing input is {} bytes; KMS signs at most {MAX_RAW_MESSAGE}",
                signing_input.len()
            )));
        }
        let admitted = match self.breaker.admit() {
            Ok(admitted) => admitted,
            Err(r) => {
                if let Some(m) = &self.metrics {
                    m.count_error(FailureKind::CircuitOpen);
                }
                return Err(SignError::Unavailable {
                    reason: "KMS circuit open after repeated failures".into(),
                    retry_after: Some(r.retry_after),
                });
            }
        };
        let started = Instant::now();
        // If this future is dropped mid-call (the caller's timeout), the
        // `admitted` guard records a failure and the timer a timeout.
        let timer = CallTimer::start(self.metrics.as_ref());
        let result = self.call_sign(signing_input).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(signature) => {
                admitted.succeeded();
                timer.succeeded();
                tracing::debug!(target: "ekey.kms.sign", latency_ms = elapsed_ms, "KMS Sign");
                Ok(signature)
            }
            Err(Failure { error, kind }) => {
                admitted.failed();
                timer.failed(kind);
                tracing::warn!(target: "ekey.kms.sign", latency_ms = elapsed_ms, error = %error, error_type = kind.as_str(), key = %self.key.arn, "KMS Sign failed");
                Err(error)
            }
        }
    }

    /// Ready while the circuit is closed. When it is open and its cooldown
    /// is over, reads the public key (no signing quota spent): if KMS
    /// answers with the same key, the circuit closes, on probation.
    async fn ready(&self) -> Result<(), SignError> {
        if self.breaker.probe_due() {
            if let Ok(admitted) = self.breaker.admit() {
                match self.client.public_key(&self.key.arn, Some(self.key.algorithm)).await {
                    // Not a Sign call: closes so that one more failure reopens.
                    Ok(k) if k.jwk == self.key.jwk => admitted.answered_without_signing(),
                    Ok(_) | Err(_) => admitted.failed(),
                }
            }
        }
        self.breaker.check().map_err(|r| SignError::Unavailable {
            reason: "KMS circuit open after repeated failures".into(),
            retry_after: Some(r.retry_after),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ekey_verifier::{KeyPair, VerifyingKey};

    #[test]
    fn spki_becomes_the_same_jwk_as_the_private_key_gives() {
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let pair = KeyPair::generate(alg).unwrap();
            let pkey = PKey::private_key_from_pem(pair.to_pem()).unwrap();
            let spki = pkey.public_key_to_der().unwrap();
            let jwk = jwk_from_spki(&spki).unwrap();
            assert_eq!(jwk.thumbprint(), pair.thumbprint(), "{alg}");
            let sig = pair.sign(b"m").unwrap();
            assert!(VerifyingKey::new(&jwk, alg).unwrap().verify(b"m", &sig));
        }
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let jwk = jwk_from_spki(&rsa.public_key_to_der().unwrap()).unwrap();
        assert!(jwk.allows(Algorithm::PS256) && jwk.allows(Algorithm::RS256));
        assert!(jwk_from_spki(b"\x30\x00").is_err());
        let ed = PKey::generate_ed25519().unwrap();
        assert!(jwk_from_spki(&ed.public_key_to_der().unwrap()).unwrap_err().contains("unsupported"));
    }

    #[test]
    fn jose_algorithms_map_to_their_kms_counterparts() {
        let name = |a| kms_algorithm(a).map(|k| k.as_str().to_owned());
        assert_eq!(name(Algorithm::ES256).as_deref(), Some("ECDSA_SHA_256"));
        assert_eq!(name(Algorithm::ES384).as_deref(), Some("ECDSA_SHA_384"));
        assert_eq!(name(Algorithm::PS256).as_deref(), Some("RSASSA_PSS_SHA_256"));
        assert_eq!(name(Algorithm::RS256).as_deref(), Some("RSASSA_PKCS1_V1_5_SHA_256"));
        assert_eq!(name(Algorithm::EdDSA), None);
    }
}
