//! The issuer's keys: the one that signs, and the ones only published.
//!
//! Rotation (design: "keyset") needs three roles: the *active* key signs; the
//! *next* key is published at least one JWKS cache lifetime before it becomes
//! active, so verifiers already hold it; *previous* keys stay published until
//! every token they signed has expired. Only the active key needs a
//! [`Signer`]; the others are public JWKs.

use crate::signer::Signer;
use ekey_verifier::{Algorithm, JwkError, Jwks, PublicJwk};
use std::sync::Arc;

/// Why a key is in the JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRole {
    /// Signs new tokens.
    Active,
    /// Will sign after the next rotation.
    Next,
    /// Signed tokens that may still be alive.
    Previous,
}

/// A key as published: `kid` = thumbprint, `alg`, `use: sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    /// The public key with `kid` and `alg` set.
    pub jwk: PublicJwk,
    /// Its role.
    pub role: KeyRole,
}

/// The active signer plus any further published keys.
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ekey_issuer::{KeyRole, KeySet, LocalSigner, Signer};
/// use ekey_verifier::Algorithm;
///
/// let active = Arc::new(LocalSigner::generate(Algorithm::ES256)?);
/// let next = LocalSigner::generate(Algorithm::ES256)?;
/// let keys = KeySet::new(active)
///     .with_published(next.public_jwk().clone(), next.algorithm(), KeyRole::Next)?;
/// assert_eq!(keys.jwks().keys().len(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeySet {
    active: Arc<dyn Signer>,
    published: Vec<PublishedKey>,
    jwks: Jwks,
}

impl KeySet {
    /// A set whose only key is `active`.
    pub fn new(active: Arc<dyn Signer>) -> Self {
        let jwk = active.public_jwk().clone().with_kid_and_alg(active.kid(), active.algorithm());
        let published = vec![PublishedKey { jwk: jwk.clone(), role: KeyRole::Active }];
        // One key with a kid: `Jwks::new` cannot fail.
        let jwks = Jwks::new(vec![jwk]).unwrap_or_default();
        Self { active, published, jwks }
    }

    /// Also publishes `jwk` (for `alg`) as a next or previous key. Fails when
    /// its thumbprint is already published or the key cannot do `alg`.
    pub fn with_published(mut self, jwk: PublicJwk, alg: Algorithm, role: KeyRole) -> Result<Self, JwkError> {
        if !jwk.allows(alg) {
            return Err(JwkError::InvalidMember("alg"));
        }
        let kid = jwk.thumbprint().to_owned();
        self.published.push(PublishedKey { jwk: jwk.with_kid_and_alg(kid, alg), role });
        self.jwks = Jwks::new(self.published.iter().map(|k| k.jwk.clone()).collect())?;
        Ok(self)
    }

    /// The key that signs.
    pub fn active(&self) -> &Arc<dyn Signer> {
        &self.active
    }

    /// Every published key, the active one first.
    pub fn published(&self) -> &[PublishedKey] {
        &self.published
    }

    /// The public JWK set.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalSigner;

    #[test]
    fn kid_is_thumbprint_and_duplicates_are_refused() {
        let active = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let keys = KeySet::new(active.clone());
        let json = keys.jwks().to_json();
        assert_eq!(json["keys"][0]["kid"], active.kid());
        assert_eq!(json["keys"][0]["alg"], "ES256");
        assert_eq!(json["keys"][0]["use"], "sig");
        assert!(json["keys"][0].get("d").is_none());
        let dup = keys.clone().with_published(active.public_jwk().clone(), Algorithm::ES256, KeyRole::Previous);
        assert!(matches!(dup, Err(JwkError::DuplicateKid(_))));
        let wrong_alg = keys.with_published(active.public_jwk().clone(), Algorithm::EdDSA, KeyRole::Next);
        assert!(wrong_alg.is_err());
    }
}
