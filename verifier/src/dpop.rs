//! DPoP proof verification, all of RFC 9449 §4.3.

use crate::jose::alg::Algorithm;
use crate::jose::b64;
use crate::jose::json::{self, JsonError};
use crate::jose::jwk::{JwkError, PublicJwk};
use crate::jose::jws::{Compact, JwsError};
use crate::jose::key::VerifyingKey;
use crate::nonce::NonceSource;
use dashmap::DashMap;
use serde::Deserialize;
use std::sync::Arc;

/// Settings for proof checks. Every field documents its default.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// Proof algorithms accepted. Defaults to ES256, ES384, EdDSA, PS256.
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be, in seconds. Defaults to 60.
    pub max_age: u32,
    /// Clock skew allowed, in seconds, on both sides of the window. Defaults to 5.
    pub leeway: u32,
    /// Longest `jti` accepted, in bytes. Defaults to 128.
    pub max_jti_len: usize,
    /// Longest proof accepted, in bytes. Defaults to 8192.
    pub max_len: usize,
    /// When set, proofs must carry a nonce from this source. Defaults to `None` (off).
    pub nonce: Option<NonceSource>,
    /// Most public keys kept ready (one per client key). Defaults to 10 000.
    pub key_cache_capacity: usize,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            algorithms: vec![Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::PS256],
            max_age: 60,
            leeway: 5,
            max_jti_len: 128,
            max_len: 8192,
            nonce: None,
            key_cache_capacity: 10_000,
        }
    }
}

/// What the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofExpectations<'a> {
    /// The request method (`htm`).
    pub method: &'a str,
    /// The request's external URL, already normalised with [`crate::normalize_htu`].
    pub htu: &'a str,
    /// The access token presented with the proof (`ath`); `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// The thumbprint the token is bound to (`cnf.jkt`); `None` at the token endpoint.
    pub jkt: Option<&'a str>,
    /// Current time.
    pub now: i64,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// Thumbprint of the proof's key.
    pub jkt: String,
    /// The proof's `jti` (to record against replay).
    pub jti: String,
    /// The proof's `iat`.
    pub iat: i64,
}

/// Why a proof was refused. All map to `invalid_dpop_proof` except
/// [`ProofError::NonceRequired`] (`use_dpop_nonce`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// No `DPoP` header.
    #[error("DPoP proof missing")]
    Missing,
    /// More than one `DPoP` header.
    #[error("more than one DPoP header")]
    Multiple,
    /// Not a well-formed compact JWS with an acceptable header.
    #[error("malformed proof: {0}")]
    Malformed(#[from] JwsError),
    /// `alg` not in the allow-list.
    #[error("proof alg not allowed")]
    Algorithm,
    /// The header's `jwk` is missing, private, symmetric or unsupported.
    #[error("proof jwk: {0}")]
    Jwk(String),
    /// Signature does not verify with the header's `jwk`.
    #[error("proof signature invalid")]
    Signature,
    /// The payload is not a JSON object with the required claims.
    #[error("proof claims: {0}")]
    Claims(String),
    /// `htm` differs from the request method.
    #[error("htm does not match the request method")]
    Htm,
    /// `htu` differs from the request URL.
    #[error("htu does not match the request URL")]
    Htu,
    /// `iat` outside the accepted window.
    #[error("proof iat outside the accepted window")]
    Iat,
    /// `jti` missing, empty or too long.
    #[error("proof jti missing or too long")]
    Jti,
    /// `ath` missing or not the hash of the presented token.
    #[error("ath does not match the access token")]
    Ath,
    /// The proof's key is not the one the token is bound to.
    #[error("proof key does not match the token's cnf.jkt")]
    KeyMismatch,
    /// This proof was already used (its `jti` is recorded for this key).
    #[error("proof replayed")]
    Replayed,
    /// A nonce is required and was missing, stale or forged; carries a fresh one.
    #[error("a fresh DPoP nonce is required")]
    NonceRequired(String),
}

/// The claims we read. A claim set to `null` is refused, never read as
/// absent: `"nonce": null` is not "no nonce", `"ath": null` not "no ath".
#[derive(Deserialize)]
struct ProofClaims {
    #[serde(default, deserialize_with = "json::non_null")]
    jti: Option<String>,
    #[serde(default, deserialize_with = "json::non_null")]
    htm: Option<String>,
    #[serde(default, deserialize_with = "json::non_null")]
    htu: Option<String>,
    #[serde(default, deserialize_with = "json::non_null")]
    iat: Option<i64>,
    #[serde(default, deserialize_with = "json::non_null")]
    ath: Option<String>,
    #[serde(default, deserialize_with = "json::non_null")]
    nonce: Option<String>,
}

/// Checks DPoP proofs and keeps a verifier per client key, since building one
/// costs more than a signature check.
#[derive(Debug)]
pub struct ProofVerifier {
    settings: DpopSettings,
    keys: DashMap<(String, Algorithm), Arc<VerifyingKey>>,
}

impl ProofVerifier {
    /// A verifier with these settings.
    pub fn new(settings: DpopSettings) -> Self {
        Self { settings, keys: DashMap::new() }
    }

    /// The settings in force.
    pub fn settings(&self) -> &DpopSettings {
        &self.settings
    }

    /// Verifies the `DPoP` header values of one request against `expect`.
    pub fn verify(&self, headers: &[&str], expect: &ProofExpectations<'_>) -> Result<VerifiedProof, ProofError> {
        let proof = match headers {
            [] => return Err(ProofError::Missing),
            [one] => *one,
            _ => return Err(ProofError::Multiple),
        };
        let mut jws = Compact::parse(proof, self.settings.max_len)?;
        jws.header.refuse(true)?;
        jws.header.require_typ("dpop+jwt")?;
        let alg: Algorithm = jws.header.alg.parse().map_err(|_| ProofError::Algorithm)?;
        if !self.settings.algorithms.contains(&alg) {
            return Err(ProofError::Algorithm);
        }
        let raw_jwk = jws.header.jwk.take().ok_or_else(|| ProofError::Jwk("missing".into()))?;
        let jwk = PublicJwk::from_raw(raw_jwk).map_err(|e: JwkError| ProofError::Jwk(e.to_string()))?;
        // Compare the thumbprint before any signature work: a proof made with
        // another key is refused at the cost of one hash.
        if expect.jkt.is_some_and(|jkt| jkt != jwk.thumbprint()) {
            return Err(ProofError::KeyMismatch);
        }
        let key = self.key_for(&jwk, alg)?;
        if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
            return Err(ProofError::Signature);
        }
        let payload = jws.payload()?;
        let claims: ProofClaims =
            json::from_object_slice(&payload).map_err(|e: JsonError| ProofError::Claims(e.to_string()))?;
        self.check_claims(claims, jwk, expect)
    }

    fn check_claims(
        &self,
        c: ProofClaims,
        jwk: PublicJwk,
        expect: &ProofExpectations<'_>,
    ) -> Result<VerifiedProof, ProofError> {
        let s = &self.settings;
        let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= s.max_jti_len).ok_or(ProofError::Jti)?;
        if c.htm.as_deref() != Some(expect.method) {
            return Err(ProofError::Htm);
        }
        let htu = c.htu.ok_or(ProofError::Htu)?;
        match crate::htu::normalize_htu(&htu) {
            Ok(n) if n == expect.htu => {}
            _ => return Err(ProofError::Htu),
        }
        let iat = c.iat.ok_or(ProofError::Iat)?;
        let earliest = expect.now - i64::from(s.max_age) - i64::from(s.leeway);
        let latest = expect.now + i64::from(s.leeway);
        if !(earliest..=latest).contains(&iat) {
            return Err(ProofError::Iat);
        }
        if let Some(token) = expect.access_token {
            if c.ath.as_deref() != Some(b64::sha256_b64(token).as_str()) {
                return Err(ProofError::Ath);
            }
        }
        if let Some(nonces) = &s.nonce {
            if !c.nonce.as_deref().is_some_and(|n| nonces.is_valid(n, expect.now)) {
                return Err(ProofError::NonceRequired(nonces.current(expect.now)));
            }
        }
        Ok(VerifiedProof { jkt: jwk.thumbprint().to_owned(), jti, iat })
    }

    fn key_for(&self, jwk: &PublicJwk, alg: Algorithm) -> Result<Arc<VerifyingKey>, ProofError> {
        let id = (jwk.thumbprint().to_owned(), alg);
        if let Some(k) = self.keys.get(&id) {
            return Ok(Arc::clone(&k));
        }
        let key = Arc::new(VerifyingKey::new(jwk, alg).map_err(|e| ProofError::Jwk(e.to_string()))?);
        // Bounded: when full, keep serving without caching new keys.
        if self.keys.len() < self.settings.key_cache_capacity {
            self.keys.insert(id, Arc::clone(&key));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::DpopKey;
    use serde_json::{json, Value};

    const URL: &str = "https://api.example.com/payments/1";
    const NOW: i64 = 1_700_000_000;

    fn expect(access_token: Option<&str>) -> ProofExpectations<'_> {
        ProofExpectations { method: "POST", htu: URL, access_token, jkt: None, now: NOW }
    }

    fn claims() -> Value {
        json!({"jti": "j-1", "htm": "POST", "htu": URL, "iat": NOW, "ath": b64::sha256_b64("token")})
    }

    fn null_refused(verifier: &ProofVerifier, proof: &str, access_token: Option<&str>, what: &str) {
        match verifier.verify(&[proof], &expect(access_token)) {
            Err(ProofError::Claims(why)) => assert!(why.contains("null"), "{what}: {why}"),
            Err(ProofError::Malformed(JwsError::Header(JsonError::Malformed(why)))) => {
                assert!(why.contains("null"), "{what}: {why}")
            }
            other => panic!("{what}: null accepted or refused for another reason: {other:?}"),
        }
    }

    #[test]
    fn null_claims_and_header_members_refused_not_read_as_absent() {
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let plain = ProofVerifier::new(DpopSettings::default());
        plain.verify(&[&key.sign_proof(&claims()).unwrap()], &expect(Some("token"))).unwrap();
        for member in ["jti", "htm", "htu", "iat", "ath", "nonce"] {
            let mut c = claims();
            c[member] = Value::Null;
            let proof = key.sign_proof(&c).unwrap();
            null_refused(&plain, &proof, Some("token"), member);
            // At the token endpoint nothing needs ath, and here no nonce is required:
            // null is refused all the same.
            null_refused(&plain, &proof, None, member);
        }

        let nonces = NonceSource::new(b"a TEST-ONLY nonce secret of 32 bytes", 60).unwrap();
        let with_nonce = ProofVerifier::new(DpopSettings { nonce: Some(nonces.clone()), ..DpopSettings::default() });
        let mut c = claims();
        c["nonce"] = nonces.current(NOW).into();
        with_nonce.verify(&[&key.sign_proof(&c).unwrap()], &expect(Some("token"))).unwrap();
        c["nonce"] = Value::Null;
        null_refused(&with_nonce, &key.sign_proof(&c).unwrap(), Some("token"), "required nonce");

        for member in ["jwk", "crit", "b64", "jku", "kid"] {
            let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.key_pair().public_jwk().to_json()});
            header[member] = Value::Null;
            null_refused(&plain, &key.sign_compact(&header, &claims()).unwrap(), Some("token"), member);
        }
    }
}
