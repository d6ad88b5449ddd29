//! The per-process replay cache: bounded, swept by the requests themselves.

use super::{ReplayCache, ReplayError, ReplayKey, Seen};
use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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
