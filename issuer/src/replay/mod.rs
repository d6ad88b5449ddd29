//! One-time identifiers seen at the token endpoint: client assertion `jti`s
//! (RFC 7523 §3 item 7) and DPoP proof `jti`s (RFC 9449 §11.1), each kept
//! until it could no longer be accepted anyway.
//!
//! A fleet of issuers shares [`RedisReplayCache`] (one `SET NX` per
//! identifier, so a replay sent to another replica is refused too); one
//! process may use [`MemoryReplayCache`]. Both answer through
//! [`ReplayCache`].

mod fleet;
mod memory;

pub use fleet::RedisReplayCache;
pub use memory::MemoryReplayCache;

use async_trait::async_trait;

/// A replay-cache key: a SHA-256 over a domain label and the identifier, so
/// assertion and proof ids never collide and entries have a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The `jti` of a client assertion by `client_id`.
    pub fn assertion(client_id: &str, jti: &str) -> Self {
        Self::labelled(b"ekey assertion", client_id, jti)
    }

    /// The `jti` of a DPoP proof made with the key whose thumbprint is `jkt`.
    pub fn proof(jkt: &str, jti: &str) -> Self {
        Self::labelled(b"ekey dpop proof", jkt, jti)
    }

    fn labelled(label: &[u8], scope: &str, jti: &str) -> Self {
        let mut h = openssl::sha::Sha256::new();
        h.update(label);
        h.update(&[0]);
        // Length-prefixed so ("a", "bc") and ("ab", "c") differ.
        h.update(&(scope.len() as u64).to_be_bytes());
        h.update(scope.as_bytes());
        h.update(jti.as_bytes());
        Self(h.finish())
    }

    /// The raw 32 bytes (e.g. as a store key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The cache cannot answer; the request must be refused (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// At capacity with nothing expired to evict.
    #[error("replay cache full")]
    Full,
    /// The backend is unreachable or answered badly.
    #[error("replay cache unavailable: {0}")]
    Unavailable(String),
}

/// Whether an identifier is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use: now recorded.
    First,
    /// Recorded before and not yet expired: a replay.
    Again,
}

/// Records one-time identifiers.
#[async_trait]
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `key` until `until` (seconds) unless it is already recorded
    /// and unexpired at `now`. Atomic: of two concurrent calls with one key,
    /// exactly one gets [`Seen::First`].
    async fn record(&self, key: ReplayKey, until: i64, now: i64) -> Result<Seen, ReplayError>;

    /// `memory` or `redis`, for logs and readiness.
    fn backend(&self) -> &'static str {
        "memory"
    }

    /// Whether the cache can answer now (readiness): a shared cache checks
    /// its backend with one round trip that changes nothing. Defaults to Ok.
    async fn check(&self) -> Result<(), ReplayError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_separated_by_kind_and_scope() {
        assert_ne!(ReplayKey::assertion("a", "bc"), ReplayKey::assertion("ab", "c"));
        assert_ne!(ReplayKey::assertion("k", "j"), ReplayKey::proof("k", "j"));
        assert_eq!(ReplayKey::proof("k", "j"), ReplayKey::proof("k", "j"));
    }
}
