//! In-memory store on dashmap, for one process.
//!
//! Per process: two processes with their own `MemoryStore` each allow the full
//! limit. Use the Redis store for a fleet.
//!
//! Bounded and without background threads: each request evicts a few expired
//! entries on its way in, through an expiry wheel (see [`table`]), before it
//! locks anything; the work per request is bounded whatever the size of the
//! store. See docs/replay-store.md, "The in-memory store".

mod table;

use super::{ConsumeOutcome, ConsumeRequest, ProofId, StoreError, UsageStore};
use dashmap::mapref::entry::{Entry, VacantEntry};
use dashmap::mapref::one::RefMut;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use table::{Expiring, Slot, Table};

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

#[derive(Debug, Clone, Copy)]
struct Trace {
    used: u32,
    revoked: bool,
    expires: i64,
}

impl Expiring for Trace {
    fn expires(&self) -> i64 {
        self.expires
    }
}

/// A proof id is held until this.
#[derive(Debug, Clone, Copy)]
struct ProofExpiry(i64);

impl Expiring for ProofExpiry {
    fn expires(&self) -> i64 {
        self.0
    }
}

/// Attempts of one request. Room is made at most once per map (the slot it
/// yields is kept until the request ends), so the third attempt decides.
const ATTEMPTS: usize = 3;

/// The bounded usage store of one process. Never holds more than
/// `max_traces` traces and `max_proofs` proof ids; when full of live entries
/// it answers [`StoreError::Full`] rather than forget a use.
#[derive(Debug)]
pub struct MemoryStore {
    traces: Table<Arc<str>, Trace>,
    proofs: Table<ProofId, ProofExpiry>,
    /// The latest `now` a request brought, for evicting on revocations
    /// (which carry no time).
    latest: AtomicI64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(MemoryStoreSettings::default())
    }
}

/// The trace entry a request works on: one already held, or a vacant one
/// with a slot reserved for it.
enum TraceEntry<'a> {
    Held(RefMut<'a, Arc<str>, Trace>),
    New(VacantEntry<'a, Arc<str>, Trace>, Slot<'a>),
}

/// Slots a request obtained by evicting, kept across its attempts.
#[derive(Default)]
struct Slots<'a> {
    trace: Option<Slot<'a>>,
    proof: Option<Slot<'a>>,
}

enum Attempt {
    Done(ConsumeOutcome),
    NeedTrace,
    NeedProof,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(settings: MemoryStoreSettings) -> Self {
        Self {
            traces: Table::new(settings.max_traces),
            proofs: Table::new(settings.max_proofs),
            latest: AtomicI64::new(i64::MIN),
        }
    }

    /// Traces and proofs currently held (expired ones included until
    /// evicted), never more than the settings allow.
    pub fn len(&self) -> (usize, usize) {
        (self.traces.len(), self.proofs.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    fn observe(&self, now: i64) {
        // A write only when time moves on: no contention on a shared line.
        if self.latest.load(Ordering::Relaxed) < now {
            self.latest.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn consume_sync(&self, req: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        self.observe(req.now);
        // Before any guard is taken: eviction locks map shards itself.
        self.traces.evict(req.now);
        self.proofs.evict(req.now);
        let mut slots = Slots::default();
        for _ in 0..ATTEMPTS {
            match self.attempt(req, &mut slots) {
                Attempt::Done(outcome) => return Ok(outcome),
                // Every guard of the attempt is released here.
                Attempt::NeedTrace => slots.trace = Some(self.traces.make_room(req.now).ok_or(StoreError::Full)?),
                Attempt::NeedProof => slots.proof = Some(self.proofs.make_room(req.now).ok_or(StoreError::Full)?),
            }
        }
        Err(StoreError::Full)
    }

    /// The whole decision under the trace entry's lock. Records nothing
    /// unless the use is accepted.
    fn attempt<'a>(&'a self, req: &ConsumeRequest<'_>, slots: &mut Slots<'a>) -> Attempt {
        let now = req.now;
        let fresh = Trace { used: 0, revoked: false, expires: req.retain_until };
        // The trace entry's shard lock is held for the whole decision; the
        // proof map is only ever locked after it, so there is no lock cycle.
        let entry = match self.traces.map().get_mut(req.trace) {
            Some(held) => TraceEntry::Held(held),
            None => match self.traces.map().entry(Arc::from(req.trace)) {
                Entry::Occupied(o) => TraceEntry::Held(o.into_ref()),
                Entry::Vacant(v) => match slots.trace.take().or_else(|| self.traces.try_reserve()) {
                    Some(slot) => TraceEntry::New(v, slot),
                    None => return Attempt::NeedTrace,
                },
            },
        };
        let mut trace = match &entry {
            // An expired entry for the same id: only possible for an expired token.
            TraceEntry::Held(t) if t.expires > now => **t,
            _ => fresh,
        };
        if trace.revoked {
            return Attempt::Done(ConsumeOutcome::Revoked);
        }
        if trace.used >= req.limit {
            return Attempt::Done(ConsumeOutcome::Exhausted);
        }
        if let Some(id) = req.proof {
            match self.proofs.map().entry(id) {
                Entry::Occupied(o) if o.get().0 > now => return Attempt::Done(ConsumeOutcome::ReplayedProof),
                Entry::Occupied(mut o) => {
                    o.insert(ProofExpiry(req.retain_until));
                }
                Entry::Vacant(v) => match slots.proof.take().or_else(|| self.proofs.try_reserve()) {
                    Some(slot) => self.proofs.insert(slot, v, ProofExpiry(req.retain_until)),
                    None => {
                        if let TraceEntry::New(_, slot) = entry {
                            slots.trace = Some(slot);
                        }
                        return Attempt::NeedProof;
                    }
                },
            }
        }
        trace.used += 1;
        trace.expires = trace.expires.max(req.retain_until);
        match entry {
            TraceEntry::Held(mut t) => *t = trace,
            TraceEntry::New(v, slot) => self.traces.insert(slot, v, trace),
        }
        Attempt::Done(ConsumeOutcome::Accepted { used: trace.used, remaining: req.limit - trace.used })
    }

    fn revoke_sync(&self, trace: &str, until: i64) -> Result<(), StoreError> {
        let now = self.latest.load(Ordering::Relaxed);
        let mut slot = None;
        for _ in 0..2 {
            match self.traces.map().entry(Arc::from(trace)) {
                Entry::Occupied(mut o) => {
                    let t = o.get_mut();
                    t.revoked = true;
                    t.expires = t.expires.max(until);
                    return Ok(());
                }
                Entry::Vacant(v) => {
                    if let Some(slot) = slot.take().or_else(|| self.traces.try_reserve()) {
                        self.traces.insert(slot, v, Trace { used: 0, revoked: true, expires: until });
                        return Ok(());
                    }
                }
            }
            // The guard is gone; a revocation must not be dropped silently.
            slot = Some(self.traces.make_room(now).ok_or(StoreError::Full)?);
        }
        Err(StoreError::Full)
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

    /// Fails with [`StoreError::Full`] if the trace is not held and the store
    /// is full of live traces: the revocation is not recorded.
    async fn revoke_trace(&self, trace: &str, until: i64) -> Result<(), StoreError> {
        self.revoke_sync(trace, until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
            let (traces, proofs) = s.len();
            assert!(traces <= 2 && proofs <= 3, "{traces} traces, {proofs} proofs");
        });
    }

    /// Runs `f` on its own thread; a hang (a deadlock in the store) fails
    /// the test after `secs` instead of blocking the run.
    fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
            Ok(()) => t.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(t.join().expect_err("the thread ended without reporting"))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("still running after {secs} s: deadlock?"),
        }
    }

    /// What the store must answer, from the definition: entries live while
    /// `expires > now`; a new entry fits while fewer live ones are held
    /// than the bound.
    #[derive(Default)]
    struct Model {
        traces: std::collections::HashMap<String, Trace>,
        proofs: std::collections::HashMap<ProofId, i64>,
    }

    impl Model {
        fn live_traces(&self, now: i64) -> usize {
            self.traces.values().filter(|t| t.expires > now).count()
        }

        fn live_trace(&self, trace: &str, now: i64) -> Option<Trace> {
            self.traces.get(trace).filter(|t| t.expires > now).copied()
        }

        fn consume(&mut self, r: &ConsumeRequest<'_>, max: &MemoryStoreSettings) -> Result<ConsumeOutcome, StoreError> {
            let live = self.live_trace(r.trace, r.now);
            if live.is_none() && self.live_traces(r.now) >= max.max_traces {
                return Err(StoreError::Full);
            }
            let mut t = live.unwrap_or(Trace { used: 0, revoked: false, expires: r.retain_until });
            if t.revoked {
                return Ok(ConsumeOutcome::Revoked);
            }
            if t.used >= r.limit {
                return Ok(ConsumeOutcome::Exhausted);
            }
            if let Some(id) = r.proof {
                if self.proofs.get(&id).is_some_and(|e| *e > r.now) {
                    return Ok(ConsumeOutcome::ReplayedProof);
                }
                if self.proofs.values().filter(|e| **e > r.now).count() >= max.max_proofs {
                    return Err(StoreError::Full);
                }
                self.proofs.insert(id, r.retain_until);
            }
            t.used += 1;
            t.expires = t.expires.max(r.retain_until);
            self.traces.insert(r.trace.to_owned(), t);
            Ok(ConsumeOutcome::Accepted { used: t.used, remaining: r.limit - t.used })
        }

        fn revoke(&mut self, trace: &str, until: i64, now: i64, max: &MemoryStoreSettings) -> Result<(), StoreError> {
            let t = match self.live_trace(trace, now) {
                Some(t) => Trace { revoked: true, expires: t.expires.max(until), ..t },
                None if self.live_traces(now) >= max.max_traces => return Err(StoreError::Full),
                None => Trace { used: 0, revoked: true, expires: until },
            };
            self.traces.insert(trace.to_owned(), t);
            Ok(())
        }
    }

    /// A small xorshift generator: the same sequence on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn assert_consistent(s: &MemoryStore, max: &MemoryStoreSettings) {
        let (traces, proofs) = s.len();
        assert!(traces <= max.max_traces && proofs <= max.max_proofs, "{traces}, {proofs}");
        // One ticket per entry, and the count is the map's.
        assert_eq!((s.traces.tickets(), s.traces.map().len()), (traces, traces));
        assert_eq!((s.proofs.tickets(), s.proofs.map().len()), (proofs, proofs));
    }

    /// Thousands of eviction cycles through a store of 32 traces and 64
    /// proofs, every answer compared with the model: no count of a live
    /// trace lost, replays refused while the proof lives, room made only
    /// from expired entries (`Full` exactly when the live ones fill it).
    #[test]
    fn thousands_of_eviction_cycles_keep_every_answer() {
        within(120, || {
            let max = MemoryStoreSettings { max_traces: 32, max_proofs: 64 };
            let s = MemoryStore::new(max.clone());
            let mut m = Model::default();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (mut now, mut next_trace, mut next_proof) = (1_000i64, 0u64, 0u64);
            let mut last_consume = now;
            let (mut accepted, mut full, mut replayed) = (0, 0, 0);
            let fresh = |n: &mut u64| {
                *n += 1;
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&n.to_le_bytes());
                ProofId(id)
            };
            for step in 0..60_000u64 {
                let live: Vec<String> =
                    m.traces.iter().filter(|(_, t)| t.expires > now).map(|(k, _)| k.clone()).collect();
                let trace = match rng.below(3) {
                    0 if !live.is_empty() => live[rng.below(live.len() as u64) as usize].clone(),
                    _ => {
                        next_trace += 1;
                        format!("t{next_trace}")
                    }
                };
                let retain_until = now + 1 + rng.below(20) as i64;
                if rng.below(40) == 0 {
                    // A revocation carries no time: the store evicts by the
                    // latest `now` a consume brought.
                    let want = m.revoke(&trace, retain_until, last_consume, &max);
                    assert_eq!(rt.block_on(s.revoke_trace(&trace, retain_until)), want, "step {step}: revoke {trace}");
                } else {
                    let live_proofs: Vec<ProofId> =
                        m.proofs.iter().filter(|(_, e)| **e > now).map(|(k, _)| *k).collect();
                    let proof = match rng.below(8) {
                        0 => None,
                        1 if !live_proofs.is_empty() => Some(live_proofs[rng.below(live_proofs.len() as u64) as usize]),
                        _ => Some(fresh(&mut next_proof)),
                    };
                    let r = ConsumeRequest { trace: &trace, limit: 1 + rng.below(3) as u32, proof, now, retain_until };
                    let want = m.consume(&r, &max);
                    let got = rt.block_on(s.consume(&r));
                    last_consume = now;
                    assert_eq!(got, want, "step {step}: {r:?}");
                    match got {
                        Ok(ConsumeOutcome::Accepted { .. }) => accepted += 1,
                        Ok(ConsumeOutcome::ReplayedProof) => replayed += 1,
                        Err(_) => full += 1,
                        _ => {}
                    }
                }
                assert_consistent(&s, &max);
                now += rng.below(4) as i64 / 3;
                // Expired entries are absent by definition: keep the model small.
                let oldest = now.min(last_consume);
                m.traces.retain(|_, t| t.expires > oldest);
                m.proofs.retain(|_, e| *e > oldest);
            }
            // The run went through many turnovers, and hit the bounds.
            assert!(next_trace > 1_000 * 32, "{next_trace} traces");
            assert!(accepted > 20_000 && full > 100 && replayed > 100, "{accepted} {full} {replayed}");
        });
    }

    /// Full of live entries, the store refuses (`Full`), from any number of
    /// threads at once, rather than evict one: every live trace keeps its
    /// count and every live proof stays a replay. Room is made once entries
    /// expire, from those only.
    #[test]
    fn live_entries_are_never_evicted_to_make_room() {
        within(120, || {
            let max = MemoryStoreSettings { max_traces: 64, max_proofs: 128 };
            let s = Arc::new(MemoryStore::new(max.clone()));
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let proof = |trace: usize, n: u8| {
                let mut id = [n; 32];
                id[..8].copy_from_slice(&trace.to_le_bytes());
                ProofId(id)
            };
            let use_at = |trace: usize, n: u8, now: i64| {
                let name = format!("live{trace}");
                // Half the traces are kept until 600, half until 1000 (and
                // those made again after 600 until 900).
                let retain_until = if now >= 600 && trace < 32 {
                    900
                } else if trace < 32 {
                    600
                } else {
                    1_000
                };
                let r = ConsumeRequest { trace: &name, limit: 5, proof: Some(proof(trace, n)), now, retain_until };
                rt.block_on(s.consume(&r))
            };
            for t in 0..64 {
                assert_eq!(use_at(t, 1, 10), Ok(ConsumeOutcome::Accepted { used: 1, remaining: 4 }));
            }
            let threads: Vec<_> = (0..4)
                .map(|k| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                        for i in 0..2_000 {
                            let name = format!("new{k}-{i}");
                            let r = ConsumeRequest { trace: &name, limit: 1, proof: None, now: 500, retain_until: 900 };
                            assert_eq!(rt.block_on(s.consume(&r)), Err(StoreError::Full), "{name}");
                            if i % 100 == 0 {
                                assert_eq!(rt.block_on(s.revoke_trace(&name, 900)), Err(StoreError::Full), "{name}");
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(s.len(), (64, 64));
            for t in 0..64 {
                assert_eq!(use_at(t, 1, 500), Ok(ConsumeOutcome::ReplayedProof), "live{t}");
                assert_eq!(use_at(t, 2, 500), Ok(ConsumeOutcome::Accepted { used: 2, remaining: 3 }), "live{t}");
            }
            // Now full of live proofs too.
            assert_eq!(use_at(40, 3, 500), Err(StoreError::Full));
            assert_eq!(use_at(40, 2, 500), Ok(ConsumeOutcome::ReplayedProof));
            assert_consistent(&s, &max);
            // At 700 the first half (and their proofs) has expired: room again,
            // made from those, and the second half still counts.
            for t in 32..64 {
                assert_eq!(use_at(t, 1, 700), Ok(ConsumeOutcome::ReplayedProof), "live{t}");
                assert_eq!(use_at(t, 3, 700), Ok(ConsumeOutcome::Accepted { used: 3, remaining: 2 }), "live{t}");
            }
            for t in 0..32 {
                // A new trace under the old name: its counts are gone with it.
                assert_eq!(use_at(t, 1, 700), Ok(ConsumeOutcome::Accepted { used: 1, remaining: 4 }), "live{t}");
            }
            let r = ConsumeRequest { trace: "one more", limit: 1, proof: None, now: 700, retain_until: 900 };
            assert_eq!(rt.block_on(s.consume(&r)), Err(StoreError::Full));
            assert_consistent(&s, &max);
        });
    }
}
