//! A fixed key set with its verifiers built once.

use super::{KeySource, KeySourceError};
use crate::jose::alg::Algorithm;
use crate::jose::jwk::{JwkError, Jwks, SkippedKey};
use crate::jose::key::{KeyError, VerifyingKey};
use std::collections::HashMap;
use std::sync::Arc;

/// A JWKS given at construction (from a file or config). Also the parsed form
/// that [`super::HttpJwks`] swaps in on each successful fetch.
#[derive(Debug, Default)]
pub struct StaticKeys {
    jwks: Jwks,
    keys: HashMap<(String, Algorithm), Arc<VerifyingKey>>,
    skipped: Vec<SkippedKey>,
}

impl StaticKeys {
    /// Builds a verifier for every (key, algorithm) pair the set allows. A
    /// key the crypto library refuses is left out (listed in
    /// [`StaticKeys::skipped`], with those the set's parser left out), not
    /// fatal to the set.
    pub fn new(jwks: Jwks) -> Result<Self, KeySourceError> {
        let mut keys = HashMap::new();
        let mut usable = Vec::with_capacity(jwks.keys().len());
        let mut skipped = jwks.skipped().to_vec();
        let parsed_positions = positions_in_set(jwks.skipped());
        for (jwk, index) in jwks.keys().iter().zip(parsed_positions) {
            let kid = jwk.kid().ok_or(KeySourceError::UnknownKid)?;
            let built: Result<Vec<_>, KeyError> = Algorithm::ALL
                .into_iter()
                .filter(|a| jwk.allows(*a))
                .map(|alg| VerifyingKey::new(jwk, alg).map(|k| (alg, k)))
                .collect();
            match built {
                Ok(built) => {
                    for (alg, key) in built {
                        keys.insert((kid.to_owned(), alg), Arc::new(key));
                    }
                    usable.push(jwk.clone());
                }
                Err(e) => skipped.push(SkippedKey::new(index, Some(kid), JwkError::Refused(e.to_string()))),
            }
        }
        skipped.sort_by_key(|s| s.index);
        // Every kid of `usable` is unique: it comes from a checked set.
        let jwks = Jwks::new(usable).map_err(|e| KeySourceError::Unavailable(e.to_string()))?;
        Ok(Self { jwks, keys, skipped })
    }

    /// The keys of the set that cannot be used, and why: left out by the
    /// parser ([`Jwks::skipped`]) or refused by the crypto library.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The key set.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    pub(crate) fn lookup(&self, kid: &str, alg: Algorithm) -> Option<Arc<VerifyingKey>> {
        // Avoid allocating a String per lookup: the map is tiny, scan it.
        self.keys.iter().find(|((k, a), _)| k == kid && *a == alg).map(|(_, v)| Arc::clone(v))
    }

    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.jwks.get(kid).is_some()
    }
}

/// The positions in the original `keys` array of the keys a parse kept:
/// every position not among the skipped ones.
fn positions_in_set(skipped: &[SkippedKey]) -> impl Iterator<Item = usize> + '_ {
    (0..).filter(move |i| !skipped.iter().any(|s| s.index == *i))
}

#[async_trait::async_trait]
impl KeySource for StaticKeys {
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<VerifyingKey>, KeySourceError> {
        match self.lookup(kid, alg) {
            Some(k) => Ok(k),
            None if self.has_kid(kid) => Err(KeySourceError::Key(crate::jose::key::KeyError::AlgorithmMismatch(alg))),
            None => Err(KeySourceError::UnknownKid),
        }
    }
}
