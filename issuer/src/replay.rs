//! One-time identifiers seen at the token endpoint: client assertion `jti`s
//! (RFC 7523 §3 item 7) and DPoP proof `jti`s (RFC 9449 §11.1), each kept
//! until it could no longer be accepted anyway.
//!
//! A fleet of issuers needs a shared cache (Redis); one process uses
//! [`MemoryReplayCache`]. Both answer through [`ReplayCache`].

use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

/// A bounded in-memory cache for one process. Expired entries are swept by
/// the requests themselves (every few thousand inserts, and whenever full),
/// so no background task is needed.
#[derive(Debug)]
pub struct MemoryReplayCache {
    entries: DashMap<ReplayKey, i64>,
    capacity: usize,
    inserts: AtomicU64,
    sweep_every: u64,
}

impl MemoryReplayCache {
    /// An empty cache holding at most `capacity` identifiers.
    pub fn new(capacity: usize) -> Self {
        let sweep_every = (capacity / 8).clamp(64, 65_536) as u64;
        Self { entries: DashMap::new(), capacity, inserts: AtomicU64::new(0), sweep_every }
    }

    /// Identifiers held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn sweep(&self, now: i64) {
        self.entries.retain(|_, until| *until > now);
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn record(&self, key: ReplayKey, until: i64, now: i64) -> Result<Seen, ReplayError> {
        if self.inserts.fetch_add(1, Ordering::Relaxed) % self.sweep_every == self.sweep_every - 1 {
            self.sweep(now);
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.sweep(now);
            if self.entries.len() >= self.capacity {
                return Err(ReplayError::Full);
            }
        }
        match self.entries.entry(key) {
            Entry::Occupied(o) if *o.get() > now => Ok(Seen::Again),
            Entry::Occupied(mut o) => {
                o.insert(until);
                Ok(Seen::First)
            }
            Entry::Vacant(v) => {
                v.insert(until);
                Ok(Seen::First)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_use_is_a_replay_until_expiry() {
        let c = MemoryReplayCache::new(100);
        let k = ReplayKey::assertion("client", "jti-1");
        assert_eq!(c.record(k, 110, 100).await, Ok(Seen::First));
        assert_eq!(c.record(k, 110, 105).await, Ok(Seen::Again));
        assert_eq!(c.record(k, 130, 110).await, Ok(Seen::First));
        assert_ne!(ReplayKey::assertion("a", "bc"), ReplayKey::assertion("ab", "c"));
        assert_ne!(ReplayKey::assertion("k", "j"), ReplayKey::proof("k", "j"));
    }

    #[tokio::test]
    async fn full_cache_refuses_until_entries_expire() {
        let c = MemoryReplayCache::new(2);
        c.record(ReplayKey::proof("k", "1"), 110, 100).await.unwrap();
        c.record(ReplayKey::proof("k", "2"), 120, 100).await.unwrap();
        assert_eq!(c.record(ReplayKey::proof("k", "3"), 120, 100).await, Err(ReplayError::Full));
        assert_eq!(c.record(ReplayKey::proof("k", "3"), 130, 111).await, Ok(Seen::First));
        assert_eq!(c.len(), 2);
    }
}
