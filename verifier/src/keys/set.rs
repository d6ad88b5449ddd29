//! A fixed key set with its verifiers built once.

use super::{KeySource, KeySourceError};
use crate::jose::alg::Algorithm;
use crate::jose::jwk::Jwks;
use crate::jose::key::VerifyingKey;
use std::collections::HashMap;
use std::sync::Arc;

/// A JWKS given at construction (from a file or config). Also the parsed form
/// that [`super::HttpJwks`] swaps in on each successful fetch.
#[derive(Debug, Default)]
pub struct StaticKeys {
    jwks: Jwks,
    keys: HashMap<(String, Algorithm), Arc<VerifyingKey>>,
}

impl StaticKeys {
    /// Builds a verifier for every (key, algorithm) pair the set allows.
    pub fn new(jwks: Jwks) -> Result<Self, KeySourceError> {
        let mut keys = HashMap::new();
        for jwk in jwks.keys() {
            let kid = jwk.kid().ok_or(KeySourceError::UnknownKid)?;
            for alg in Algorithm::ALL.into_iter().filter(|a| jwk.allows(*a)) {
                keys.insert((kid.to_owned(), alg), Arc::new(VerifyingKey::new(jwk, alg)?));
            }
        }
        Ok(Self { jwks, keys })
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
