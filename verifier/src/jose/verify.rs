//! Verifying a compact JWS with a key the caller picks: for JWTs other than
//! ekey tokens and proofs, e.g. `private_key_jwt` client assertions.

use super::alg::Algorithm;
use super::json::{self, JsonError};
use super::jws::{Compact, JwsError};
use super::key::VerifyingKey;
use serde::de::DeserializeOwned;
use serde::Deserialize;
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
/// headers (`jwk`, `jku`, `x5u`, `x5c`), no member set to `null`, `alg` in
/// `algorithms`, `typ` equal to `typ` when given. `key` picks the key from
/// `alg` and `kid`.
pub fn verify_compact_jws<T: DeserializeOwned>(
    input: &str,
    max_len: usize,
    algorithms: &[Algorithm],
    typ: Option<&'static str>,
    key: impl FnOnce(Algorithm, Option<&str>) -> Option<Arc<VerifyingKey>>,
) -> Result<VerifiedJws<T>, CompactJwsError> {
    verify(input, max_len, algorithms, typ, false, |hint| key(hint.alg, hint.kid))
}

/// What the key chooser of [`verify_compact_jwt`] may look at: the header's
/// `alg` and `kid`, and the `iss` and `sub` claims as sent. None of it is
/// verified yet: use it only to choose the key, and check the claims again
/// in the verified payload.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KeyHint<'a> {
    /// The header's `alg`, already in the allow-list.
    pub alg: Algorithm,
    /// The header's `kid`, if any.
    pub kid: Option<&'a str>,
    /// The payload's `iss` claim, if any, before the signature is checked.
    pub unverified_iss: Option<&'a str>,
    /// The payload's `sub` claim, if any, before the signature is checked.
    pub unverified_sub: Option<&'a str>,
}

/// [`verify_compact_jws`] for a JWT whose key depends on who sent it, such as
/// a `private_key_jwt` client assertion without `client_id` (RFC 7523 §3: the
/// client is its `iss` and `sub`). The payload must be a JSON object; its
/// shape is checked, and its `iss` and `sub` read, before the signature, so
/// that `key` can choose among the issuers' keys.
pub fn verify_compact_jwt<T: DeserializeOwned>(
    input: &str,
    max_len: usize,
    algorithms: &[Algorithm],
    typ: Option<&'static str>,
    key: impl FnOnce(&KeyHint<'_>) -> Option<Arc<VerifyingKey>>,
) -> Result<VerifiedJws<T>, CompactJwsError> {
    verify(input, max_len, algorithms, typ, true, key)
}

/// `iss` and `sub` of a payload not verified yet.
#[derive(Deserialize)]
struct Subject {
    #[serde(default, deserialize_with = "json::non_null")]
    iss: Option<String>,
    #[serde(default, deserialize_with = "json::non_null")]
    sub: Option<String>,
}

fn verify<T: DeserializeOwned>(
    input: &str,
    max_len: usize,
    algorithms: &[Algorithm],
    typ: Option<&'static str>,
    read_subject: bool,
    key: impl FnOnce(&KeyHint<'_>) -> Option<Arc<VerifyingKey>>,
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
    // The payload is read before the signature only when the key depends on it.
    let unverified = if read_subject { Some(jws.payload()?) } else { None };
    let subject = match &unverified {
        Some(payload) => json::from_object_slice::<Subject>(payload).map_err(CompactJwsError::Payload)?,
        None => Subject { iss: None, sub: None },
    };
    let hint = KeyHint {
        alg,
        kid: jws.header.kid.as_deref(),
        unverified_iss: subject.iss.as_deref(),
        unverified_sub: subject.sub.as_deref(),
    };
    let k = key(&hint).ok_or(CompactJwsError::NoKey)?;
    if k.algorithm() != alg || !k.verify(jws.signing_input.as_bytes(), &jws.signature) {
        return Err(CompactJwsError::Signature);
    }
    let payload = match unverified {
        Some(payload) => json::from_object_slice(&payload),
        None => json::from_slice(&jws.payload()?),
    }
    .map_err(CompactJwsError::Payload)?;
    Ok(VerifiedJws { kid: jws.header.kid, alg, payload })
}

/// Parses JSON as `T`, refusing duplicate member names at any depth, objects
/// of more than [`MAX_JSON_MEMBERS`](crate::MAX_JSON_MEMBERS) members and
/// nesting deeper than [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH).
pub fn from_json_strict<T: DeserializeOwned>(input: &[u8]) -> Result<T, JsonError> {
    json::from_slice(input)
}
