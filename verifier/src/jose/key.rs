//! Signature keys backed by josekit (OpenSSL): a [`VerifyingKey`] built once per
//! public key and reused, and a [`KeyPair`] for local signing.

use super::alg::Algorithm;
use super::jwk::PublicJwk;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::{Jwk, KeyPair as _};
use josekit::jws::{JwsSigner, JwsVerifier};
use std::fmt;

/// Why a key could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key cannot be used with this algorithm.
    #[error("key does not support {0}")]
    AlgorithmMismatch(Algorithm),
    /// The crypto library refused the key (e.g. an EC point not on the curve).
    #[error("invalid key: {0}")]
    Invalid(String),
    /// Local keys are ES256, ES384 or EdDSA.
    #[error("local keys support ES256, ES384 and EdDSA, not {0}")]
    UnsupportedLocal(Algorithm),
}

/// A public key ready to verify signatures of one algorithm. Building one
/// costs more than a signature check, so callers keep them (per `kid` or
/// thumbprint).
pub struct VerifyingKey {
    alg: Algorithm,
    jwk: PublicJwk,
    inner: Box<dyn JwsVerifier>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("alg", &self.alg).field("thumbprint", &self.jwk.thumbprint()).finish()
    }
}

impl VerifyingKey {
    /// Builds a verifier for `alg` from a public JWK.
    pub fn new(jwk: &PublicJwk, alg: Algorithm) -> Result<Self, KeyError> {
        if !jwk.allows(alg) {
            return Err(KeyError::AlgorithmMismatch(alg));
        }
        let map = match jwk.required_members() {
            serde_json::Value::Object(m) => m,
            _ => return Err(KeyError::Invalid("not an object".into())),
        };
        let josekit_jwk = Jwk::from_map(map).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let inner: Box<dyn JwsVerifier> = match alg {
            Algorithm::ES256 => Box::new(josekit::jws::ES256.verifier_from_jwk(&josekit_jwk).map_err(invalid)?),
            Algorithm::ES384 => Box::new(josekit::jws::ES384.verifier_from_jwk(&josekit_jwk).map_err(invalid)?),
            Algorithm::EdDSA => Box::new(josekit::jws::EdDSA.verifier_from_jwk(&josekit_jwk).map_err(invalid)?),
            Algorithm::PS256 => Box::new(josekit::jws::PS256.verifier_from_jwk(&josekit_jwk).map_err(invalid)?),
            Algorithm::RS256 => Box::new(josekit::jws::RS256.verifier_from_jwk(&josekit_jwk).map_err(invalid)?),
        };
        Ok(Self { alg, jwk: jwk.clone(), inner })
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key.
    pub fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// Checks `signature` over `message`. Fixed-size algorithms reject any other
    /// length first (so DER-encoded ECDSA signatures never reach the library).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if self.alg.fixed_signature_len().is_some_and(|n| n != signature.len()) {
            return false;
        }
        self.inner.verify(message, signature).is_ok()
    }
}

fn invalid(e: josekit::JoseError) -> KeyError {
    KeyError::Invalid(e.to_string())
}

/// A private key held in process memory, for local signing (the issuer's
/// development signer, DPoP clients, tests).
pub struct KeyPair {
    alg: Algorithm,
    public: PublicJwk,
    signer: Box<dyn JwsSigner>,
    pem: Vec<u8>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("KeyPair")
            .field("alg", &self.alg)
            .field("thumbprint", &self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a fresh key for `alg` (ES256, ES384 or EdDSA).
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let pem = match alg {
            Algorithm::ES256 => EcKeyPair::generate(EcCurve::P256).map_err(invalid)?.to_pem_private_key(),
            Algorithm::ES384 => EcKeyPair::generate(EcCurve::P384).map_err(invalid)?.to_pem_private_key(),
            Algorithm::EdDSA => EdKeyPair::generate(EdCurve::Ed25519).map_err(invalid)?.to_pem_private_key(),
            other => return Err(KeyError::UnsupportedLocal(other)),
        };
        Self::from_pem(&pem)
    }

    /// Loads a PKCS#8 (or SEC1 EC) PEM private key; the algorithm follows the
    /// key: P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let bad = |e: josekit::JoseError| KeyError::Invalid(format!("not a supported private key PEM: {e}"));
        let (alg, public, signer): (Algorithm, Jwk, Box<dyn JwsSigner>) = if let Ok(kp) = EcKeyPair::from_pem(pem, None)
        {
            match kp.curve() {
                EcCurve::P256 => (
                    Algorithm::ES256,
                    kp.to_jwk_public_key(),
                    Box::new(josekit::jws::ES256.signer_from_pem(pem).map_err(bad)?),
                ),
                EcCurve::P384 => (
                    Algorithm::ES384,
                    kp.to_jwk_public_key(),
                    Box::new(josekit::jws::ES384.signer_from_pem(pem).map_err(bad)?),
                ),
                other => return Err(KeyError::Invalid(format!("unsupported curve {}", other.name()))),
            }
        } else {
            let kp = EdKeyPair::from_pem(pem).map_err(bad)?;
            if kp.curve() != EdCurve::Ed25519 {
                return Err(KeyError::Invalid("only Ed25519 is supported".into()));
            }
            (Algorithm::EdDSA, kp.to_jwk_public_key(), Box::new(josekit::jws::EdDSA.signer_from_pem(pem).map_err(bad)?))
        };
        let public = serde_json::to_vec(public.as_ref())
            .ok()
            .and_then(|json| PublicJwk::from_json(&json).ok())
            .ok_or_else(|| KeyError::Invalid("public key could not be expressed as a JWK".into()))?;
        let pem = EcKeyPair::from_pem(pem, None)
            .map(|k| k.to_pem_private_key())
            .or_else(|_| EdKeyPair::from_pem(pem).map(|k| k.to_pem_private_key()))
            .map_err(bad)?;
        Ok(Self { alg, public, signer, pem })
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half, without `kid`/`alg`.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> &str {
        self.public.thumbprint()
    }

    /// Signs `message`; JOSE encoding (r‖s for ECDSA).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.signer.sign(message).map_err(invalid)
    }

    /// The private key as PKCS#8 PEM (to save a generated key).
    pub fn to_pem(&self) -> &[u8] {
        &self.pem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let kp = KeyPair::generate(alg).unwrap();
            let vk = VerifyingKey::new(kp.public_jwk(), alg).unwrap();
            let sig = kp.sign(b"hello").unwrap();
            assert!(vk.verify(b"hello", &sig), "{alg}");
            assert!(!vk.verify(b"hellp", &sig), "{alg}");
            let again = KeyPair::from_pem(kp.to_pem()).unwrap();
            assert_eq!(again.thumbprint(), kp.thumbprint());
            assert_eq!(again.algorithm(), alg);
        }
        assert_eq!(KeyPair::generate(Algorithm::PS256).unwrap_err(), KeyError::UnsupportedLocal(Algorithm::PS256));
    }

    #[test]
    fn wrong_algorithm_for_key() {
        let kp = KeyPair::generate(Algorithm::ES256).unwrap();
        assert_eq!(
            VerifyingKey::new(kp.public_jwk(), Algorithm::ES384).unwrap_err(),
            KeyError::AlgorithmMismatch(Algorithm::ES384)
        );
    }

    #[test]
    fn zero_signature_rejected() {
        let kp = KeyPair::generate(Algorithm::ES256).unwrap();
        let vk = VerifyingKey::new(kp.public_jwk(), Algorithm::ES256).unwrap();
        assert!(!vk.verify(b"m", &[0u8; 64]));
        assert!(!vk.verify(b"m", &[0u8; 72]));
    }
}
