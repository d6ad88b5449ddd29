//! The client side: a DPoP key that makes proofs (RFC 9449 §4.2). Used by the
//! `ekey` CLI, the tests and the conformance suite.

use crate::jose::alg::Algorithm;
use crate::jose::b64;
use crate::jose::key::{KeyError, KeyPair};
use serde_json::json;

/// A client's DPoP key pair.
///
/// ```
/// # use ekey_verifier::{client::DpopKey, Algorithm};
/// let key = DpopKey::generate(Algorithm::ES256).unwrap();
/// let proof = key.proof("POST", "https://api.example.com/payments/1", Some("token"), None, 1_700_000_000).unwrap();
/// assert_eq!(proof.split('.').count(), 3);
/// ```
#[derive(Debug)]
pub struct DpopKey {
    key: KeyPair,
}

impl DpopKey {
    /// A fresh key (ES256, ES384 or EdDSA).
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        Ok(Self { key: KeyPair::generate(alg)? })
    }

    /// Loads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Ok(Self { key: KeyPair::from_pem(pem)? })
    }

    /// The key pair (for its public JWK, thumbprint or PEM).
    pub fn key_pair(&self) -> &KeyPair {
        &self.key
    }

    /// RFC 7638 thumbprint: what the token's `cnf.jkt` will be.
    pub fn thumbprint(&self) -> &str {
        self.key.thumbprint()
    }

    /// A proof for one request with a fresh random `jti`. `access_token` sets
    /// `ath` (omit it at the token endpoint); `nonce` echoes a server nonce.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: i64,
    ) -> Result<String, KeyError> {
        let mut jti = [0u8; 16];
        openssl::rand::rand_bytes(&mut jti).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let mut claims = json!({ "jti": b64::encode(jti), "htm": method, "htu": url, "iat": iat });
        if let Some(t) = access_token {
            claims["ath"] = b64::sha256_b64(t).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        self.sign_proof(&claims)
    }

    /// Signs arbitrary proof claims with a correct `dpop+jwt` header (tests and
    /// conformance vectors build malformed proofs with this).
    pub fn sign_proof(&self, claims: &serde_json::Value) -> Result<String, KeyError> {
        let header =
            json!({ "typ": "dpop+jwt", "alg": self.key.algorithm().as_str(), "jwk": self.key.public_jwk().to_json() });
        self.sign_compact(&header, claims)
    }

    /// Signs any header and claims as a compact JWS with this key.
    pub fn sign_compact(&self, header: &serde_json::Value, claims: &serde_json::Value) -> Result<String, KeyError> {
        let input = format!("{}.{}", b64::encode(header.to_string()), b64::encode(claims.to_string()));
        let sig = self.key.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", b64::encode(sig)))
    }
}
