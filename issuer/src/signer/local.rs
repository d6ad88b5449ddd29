//! A signer holding its private key in process memory.

use super::{SignError, Signer};
use async_trait::async_trait;
use ekey_verifier::{Algorithm, KeyError, KeyPair, PublicJwk};
use std::path::Path;

/// Signs with an in-memory [`KeyPair`]: ES256 (default), ES384 or EdDSA,
/// generated at start or loaded from a PEM file. For development, tests and
/// single-process deployments; fleets share a KMS key instead.
#[derive(Debug)]
pub struct LocalSigner {
    key: KeyPair,
}

impl LocalSigner {
    /// Wraps an existing key pair.
    pub fn new(key: KeyPair) -> Self {
        Self { key }
    }

    /// A fresh key for `alg` (ES256, ES384 or EdDSA).
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        Ok(Self::new(KeyPair::generate(alg)?))
    }

    /// Loads a PKCS#8 (or SEC1 EC) PEM private key; the algorithm follows the key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Ok(Self::new(KeyPair::from_pem(pem)?))
    }

    /// Reads and loads a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|e| KeyError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        Self::from_pem(&pem)
    }

    /// The key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}

#[async_trait]
impl Signer for LocalSigner {
    fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    fn public_jwk(&self) -> &PublicJwk {
        self.key.public_jwk()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        // Local signing is ~0.1 ms of CPU: cheaper than handing it to a
        // blocking thread.
        self.key.sign(signing_input).map_err(|e| SignError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::VerifyingKey;

    #[tokio::test]
    async fn signs_verifiably_for_each_local_algorithm() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let s = LocalSigner::generate(alg).unwrap();
            let sig = s.sign(b"a.b").await.unwrap();
            let vk = VerifyingKey::new(s.public_jwk(), s.algorithm()).unwrap();
            assert!(vk.verify(b"a.b", &sig), "{alg}");
            assert_eq!(s.kid(), s.key_pair().thumbprint());
            s.ready().await.unwrap();
            let again = LocalSigner::from_pem(s.key_pair().to_pem()).unwrap();
            assert_eq!(again.kid(), s.kid());
        }
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(LocalSigner::from_pem(b"not a key").is_err());
        assert!(LocalSigner::from_pem_file(Path::new("/nonexistent/ekey.pem")).is_err());
    }
}
