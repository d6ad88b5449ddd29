//! `private_key_jwt` (RFC 7523 §3, RFC 7521 §4.2): a JWT the client signs
//! with a key registered for it.
//!
//! The client is the one the assertion's `iss` and `sub` name (they must be
//! equal); `client_id` is optional and, when sent, must name the same client.
//! The key is that client's key for the `alg`, chosen by `kid` (the JWK's
//! `kid` or its RFC 7638 thumbprint) when the client has several. `iss` and
//! `sub` are read before the signature is checked only to choose that key;
//! every claim is checked again, and nothing is trusted, once it verified.

use super::{AuthError, ClientRegistry};
use crate::replay::ReplayKey;
use ekey_verifier::{non_null, verify_compact_jwt, Audience, CompactJwsError, MAX_NUMERIC_DATE};
use serde::Deserialize;
use std::sync::Arc;

/// Longest assertion accepted, in bytes.
const MAX_ASSERTION_LEN: usize = 8192;
/// Longest `jti` accepted, in bytes.
const MAX_JTI_LEN: usize = 256;

/// The claims we read. A claim set to `null` is refused, never read as
/// absent (`"nbf": null` is not "no nbf").
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    #[serde(default, deserialize_with = "non_null")]
    iss: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    sub: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    aud: Option<Audience>,
    #[serde(default, deserialize_with = "non_null")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "non_null")]
    nbf: Option<i64>,
    #[serde(default, deserialize_with = "non_null")]
    iat: Option<i64>,
    #[serde(default, deserialize_with = "non_null")]
    jti: Option<String>,
}

/// An assertion that verified; its `jti` still has to be recorded.
#[derive(Debug)]
pub(crate) struct VerifiedAssertion {
    pub client_id: String,
    pub replay: (ReplayKey, i64),
}

pub(crate) fn verify(
    registry: &ClientRegistry,
    assertion: &str,
    client_id: Option<&str>,
    audiences: &[&str],
    now: i64,
) -> Result<VerifiedAssertion, AuthError> {
    let s = &registry.settings;
    let mut owner: Option<usize> = None;
    let mut no_key: Option<AuthError> = None;
    let verified =
        verify_compact_jwt::<AssertionClaims>(assertion, MAX_ASSERTION_LEN, &s.algorithms, None, |hint| match registry
            .assertion_key(client_id, hint)
        {
            Ok((index, key)) => {
                owner = Some(index);
                Some(key)
            }
            Err(why) => {
                no_key = Some(why);
                None
            }
        })
        .map_err(|e| match e {
            CompactJwsError::NoKey => no_key.take().unwrap_or_else(|| AuthError::Assertion("no key".into())),
            CompactJwsError::Algorithm => AuthError::Assertion("assertion alg not allowed".into()),
            CompactJwsError::Signature => AuthError::Assertion("assertion signature invalid".into()),
            other => AuthError::Assertion(format!("malformed assertion: {other}")),
        })?;
    let owner = owner.and_then(|i| registry.keys.get(i)).map(|k| Arc::clone(&k.client));
    let owner = owner.ok_or_else(|| AuthError::Assertion("no key".into()))?;
    let c = verified.payload;

    if c.iss.as_deref() != Some(&*owner) || c.sub.as_deref() != Some(&*owner) {
        return Err(AuthError::Assertion("iss and sub must both be the client id".into()));
    }
    match c.aud {
        Some(aud) if audiences.iter().any(|a| aud.contains(a)) => {}
        _ => return Err(AuthError::Assertion("aud must name the token endpoint or the issuer".into())),
    }
    let leeway = i64::from(s.leeway);
    let in_range = |v: i64| (0..=MAX_NUMERIC_DATE).contains(&v);
    let exp = c.exp.ok_or_else(|| AuthError::Assertion("exp is required".into()))?;
    if !in_range(exp) || c.nbf.is_some_and(|v| !in_range(v)) || c.iat.is_some_and(|v| !in_range(v)) {
        return Err(AuthError::Assertion("a numeric date is out of range".into()));
    }
    if now >= exp + leeway {
        return Err(AuthError::Assertion("assertion expired".into()));
    }
    if exp > now + i64::from(s.max_lifetime) + leeway {
        return Err(AuthError::Assertion(format!(
            "exp is more than {} s in the future; make short-lived assertions",
            s.max_lifetime
        )));
    }
    if c.nbf.is_some_and(|nbf| nbf > now + leeway) || c.iat.is_some_and(|iat| iat > now + leeway) {
        return Err(AuthError::Assertion("assertion not yet valid (nbf or iat in the future)".into()));
    }
    let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN);
    let jti = jti.ok_or_else(|| AuthError::Assertion(format!("jti is required (1..={MAX_JTI_LEN} bytes)")))?;
    Ok(VerifiedAssertion { replay: (ReplayKey::assertion(&owner, &jti), exp + leeway), client_id: owner.to_string() })
}
