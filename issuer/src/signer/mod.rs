//! Token signing behind a trait, so the private key can live elsewhere (a
//! KMS) without the token endpoint knowing. One [`Signer::sign`] call per token.

mod breaker;
mod der;
mod kms;
mod kms_metrics;
mod local;

pub use kms::{KmsClient, KmsError, KmsPublicKey, KmsSettings, KmsSigner};
pub use local::LocalSigner;

use async_trait::async_trait;
use ekey_verifier::{Algorithm, PublicJwk};
use std::time::Duration;

/// Why a signature could not be made. The two variants tell the caller what
/// to do: retry later, or not at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signer cannot answer now (throttled, unreachable, timed out); the
    /// request may be retried, after `retry_after` when the signer says so.
    /// The token endpoint answers 503 `temporarily_unavailable` + `Retry-After`.
    #[error("signer unavailable: {reason}")]
    Unavailable {
        /// What happened, for logs.
        reason: String,
        /// How long to wait, if known.
        retry_after: Option<Duration>,
    },
    /// The signer refused for good (wrong key, disabled key, bad input);
    /// retrying will not help. The token endpoint answers 500 `server_error`.
    #[error("signing failed: {0}")]
    Failed(String),
}

impl SignError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A private key that signs JWS signing inputs.
///
/// Implementations return signatures in JOSE form (`r‖s` for ECDSA, RFC 7518
/// §3.4), never DER. `public_jwk` and `algorithm` are fixed for the signer's
/// life, so the JWKS and token headers can be built once.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use ekey_issuer::{LocalSigner, Signer};
/// use ekey_verifier::{Algorithm, VerifyingKey};
///
/// let signer = LocalSigner::generate(Algorithm::ES256)?;
/// let sig = signer.sign(b"header.payload").await?;
/// let key = VerifyingKey::new(signer.public_jwk(), signer.algorithm())?;
/// assert!(key.verify(b"header.payload", &sig));
/// assert_eq!(signer.kid(), signer.public_jwk().thumbprint());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The JWS `alg` of the signatures.
    fn algorithm(&self) -> Algorithm;

    /// The public key, without `kid`/`alg` members.
    fn public_jwk(&self) -> &PublicJwk;

    /// The key id: the RFC 7638 thumbprint of the public key.
    fn kid(&self) -> &str {
        self.public_jwk().thumbprint()
    }

    /// A short word for where the key lives, naming the signing span
    /// (`"{kind}.sign"`): `local` by default, `kms` for [`KmsSigner`].
    fn kind(&self) -> &'static str {
        "local"
    }

    /// Signs `signing_input` (`BASE64URL(header) '.' BASE64URL(payload)`).
    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError>;

    /// Whether the signer can sign now (`/readyz`). The default signs a fixed
    /// probe; a remote signer should override this with something that costs
    /// no signing quota (e.g. the outcome of its last call).
    async fn ready(&self) -> Result<(), SignError> {
        self.sign(b"ekey readiness probe").await.map(drop)
    }
}
