//! Verifying a compact JWS with a key the caller picks: for JWTs other than
//! ekey tokens and proofs, e.g. `private_key_jwt` client assertions.

use super::alg::Algorithm;
use super::json::{self, JsonError};
use super::jws::{Compact, JwsError};
use super::key::VerifyingKey;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Why [`verify_compact_jws`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactJwsError {
    /// Shape, encoding, header or `typ` problem.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `alg` not in the allow-list.
    #[error("alg not allowed")]
    Algorithm,
    /// The key chooser had no key for this `alg`/`kid`.
    #[error("no key for this JWS")]
    NoKey,
    /// The signature does not verify.
    #[error("signature invalid")]
    Signature,
    /// The payload is not the expected JSON.
    #[error("payload: {0}")]
    Payload(JsonError),
}

/// A JWS that verified: its `kid` and its payload parsed as `T`.
#[derive(Debug, Clone)]
pub struct VerifiedJws<T> {
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The algorithm used.
    pub alg: Algorithm,
    /// The payload.
    pub payload: T,
}

/// Verifies a compact JWS with the same strictness as tokens: size limit,
/// canonical base64url, no duplicate JSON members, no `crit`, no key-carrying
/// headers (`jwk`, `jku`, `x5u`, `x5c`), `alg` in `algorithms`, `typ` equal to
/// `typ` when given. `key` picks the key from `alg` and `kid`.
pub fn verify_compact_jws<T: DeserializeOwned>(
    input: &str,
    max_len: usize,
    algorithms: &[Algorithm],
    typ: Option<&'static str>,
    key: impl FnOnce(Algorithm, Option<&str>) -> Option<Arc<VerifyingKey>>,
) -> Result<VerifiedJws<T>, CompactJwsError> {
    let jws = Compact::parse(input, max_len)?;
    jws.header.refuse(false)?;
    if let Some(t) = typ {
        jws.header.require_typ(t)?;
    }
    let alg: Algorithm = jws.header.alg.parse().map_err(|_| CompactJwsError::Algorithm)?;
    if !algorithms.contains(&alg) {
        return Err(CompactJwsError::Algorithm);
    }
    let k = key(alg, jws.header.kid.as_deref()).ok_or(CompactJwsError::NoKey)?;
    if k.algorithm() != alg || !k.verify(jws.signing_input.as_bytes(), &jws.signature) {
        return Err(CompactJwsError::Signature);
    }
    let payload = json::from_slice(&jws.payload()?).map_err(CompactJwsError::Payload)?;
    Ok(VerifiedJws { kid: jws.header.kid, alg, payload })
}

/// Parses JSON as `T`, refusing duplicate member names at any depth.
pub fn from_json_strict<T: DeserializeOwned>(input: &[u8]) -> Result<T, JsonError> {
    json::from_slice(input)
}
