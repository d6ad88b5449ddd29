//! In-memory store on dashmap, for one process.
//!
//! Per process: two processes with their own `MemoryStore` each allow the full
//! limit. Use the Redis store for a fleet.

use super::{ConsumeOutcome, ConsumeRequest, ProofId, StoreError, UsageStore};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Limits of the in-memory store.
#[derive(Debug, Clone)]
pub struct MemoryStoreSettings {
    /// Most traces held at once. Defaults to 1 000 000.
    pub max_traces: usize,
    /// Most proof ids held at once. Defaults to 4 000 000.
    pub max_proofs: usize,
}

impl Default for MemoryStoreSettings {
    fn default() -> Self {
        Self { max_traces: 1_000_000, max_proofs: 4_000_000 }
    }
}

#[derive(Debug)]
struct Trace {
    used: u32,
    revoked: bool,
    expires: i64,
}

/// Bounded, without background threads: expired entries are swept by the
/// requests themselves (every `sweep_every` inserts, and whenever full).
#[derive(Debug)]
pub struct MemoryStore {
    settings: MemoryStoreSettings,
    traces: DashMap<String, Trace>,
    proofs: DashMap<ProofId, i64>,
    inserts: AtomicU64,
    sweep_every: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(MemoryStoreSettings::default())
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new(settings: MemoryStoreSettings) -> Self {
        let sweep_every = (settings.max_traces / 8).clamp(64, 65_536) as u64;
        Self { settings, traces: DashMap::new(), proofs: DashMap::new(), inserts: AtomicU64::new(0), sweep_every }
    }

    /// Traces and proofs currently held (expired ones included until swept).
    pub fn len(&self) -> (usize, usize) {
        (self.traces.len(), self.proofs.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty() && self.proofs.is_empty()
    }

    fn sweep(&self, now: i64) {
        self.traces.retain(|_, t| t.expires > now);
        self.proofs.retain(|_, e| *e > now);
    }

    fn maybe_sweep(&self, now: i64) {
        if self.inserts.fetch_add(1, Ordering::Relaxed) % self.sweep_every == self.sweep_every - 1 {
            self.sweep(now);
        }
    }

    fn room(&self, now: i64, len: impl Fn(&Self) -> usize, max: usize) -> Result<(), StoreError> {
        if len(self) >= max {
            self.sweep(now);
            if len(self) >= max {
                return Err(StoreError::Full);
            }
        }
        Ok(())
    }

    fn consume_sync(&self, req: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        let now = req.now;
        if !self.traces.contains_key(req.trace) {
            self.room(now, |s| s.traces.len(), self.settings.max_traces)?;
        }
        if req.proof.is_some() {
            self.room(now, |s| s.proofs.len(), self.settings.max_proofs)?;
        }
        // The trace entry's shard lock is held for the whole decision; the
        // proof map is only ever locked after it, so there is no lock cycle.
        let mut trace = match self.traces.entry(req.trace.to_owned()) {
            Entry::Occupied(o) => o.into_ref(),
            Entry::Vacant(v) => {
                self.maybe_sweep(now);
                v.insert(Trace { used: 0, revoked: false, expires: req.retain_until })
            }
        };
        if trace.expires <= now {
            // An old entry for the same id: only possible for an expired token.
            *trace = Trace { used: 0, revoked: false, expires: req.retain_until };
        }
        if trace.revoked {
            return Ok(ConsumeOutcome::Revoked);
        }
        if trace.used >= req.limit {
            return Ok(ConsumeOutcome::Exhausted);
        }
        if let Some(id) = req.proof {
            match self.proofs.entry(id) {
                Entry::Occupied(o) if *o.get() > now => return Ok(ConsumeOutcome::ReplayedProof),
                Entry::Occupied(mut o) => {
                    o.insert(req.retain_until);
                }
                Entry::Vacant(v) => {
                    v.insert(req.retain_until);
                }
            }
        }
        trace.used += 1;
        trace.expires = trace.expires.max(req.retain_until);
        Ok(ConsumeOutcome::Accepted { used: trace.used, remaining: req.limit - trace.used })
    }
}

#[async_trait::async_trait]
impl UsageStore for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn consume(&self, req: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        self.consume_sync(req)
    }

    async fn revoke_trace(&self, trace: &str, until: i64) -> Result<(), StoreError> {
        let mut t = self.traces.entry(trace.to_owned()).or_insert(Trace { used: 0, revoked: true, expires: until });
        t.revoked = true;
        t.expires = t.expires.max(until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(trace: &str, proof: u8, now: i64) -> ConsumeRequest<'_> {
        ConsumeRequest { trace, limit: 2, proof: Some(ProofId([proof; 32])), now, retain_until: now + 120 }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn check_always_answers() {
        let s = MemoryStore::new(MemoryStoreSettings { max_traces: 1, max_proofs: 1 });
        block_on(async {
            assert_eq!(s.check().await, Ok(()));
            s.consume(&req("t", 1, 0)).await.unwrap();
            // Full is a per-request answer, not an outage.
            assert_eq!(s.consume(&req("u", 2, 0)).await, Err(StoreError::Full));
            assert_eq!(s.check().await, Ok(()));
        });
    }

    #[test]
    fn limit_replay_and_revocation() {
        let s = MemoryStore::default();
        block_on(async {
            assert_eq!(s.consume(&req("t", 1, 0)).await, Ok(ConsumeOutcome::Accepted { used: 1, remaining: 1 }));
            assert_eq!(s.consume(&req("t", 1, 0)).await, Ok(ConsumeOutcome::ReplayedProof));
            assert_eq!(s.consume(&req("t", 2, 0)).await, Ok(ConsumeOutcome::Accepted { used: 2, remaining: 0 }));
            assert_eq!(s.consume(&req("t", 3, 0)).await, Ok(ConsumeOutcome::Exhausted));
            s.revoke_trace("u", 100).await.unwrap();
            assert_eq!(s.consume(&req("u", 4, 0)).await, Ok(ConsumeOutcome::Revoked));
        });
    }

    #[test]
    fn bounded_and_expired_entries_evicted() {
        let s = MemoryStore::new(MemoryStoreSettings { max_traces: 2, max_proofs: 10 });
        block_on(async {
            s.consume(&req("a", 1, 0)).await.unwrap();
            s.consume(&req("b", 2, 0)).await.unwrap();
            assert_eq!(s.consume(&req("c", 3, 0)).await, Err(StoreError::Full));
            // Once a and b have expired, room is made by the request itself.
            assert!(matches!(s.consume(&req("c", 3, 500)).await, Ok(ConsumeOutcome::Accepted { .. })));
            assert_eq!(s.len(), (1, 1));
        });
    }
}
