//! A bounded concurrent map whose expired entries are evicted a few at a time
//! by the requests themselves, through an expiry wheel.
//!
//! Every entry has exactly one *ticket* in the wheel: its key, filed under
//! the second at or before which it expires. Inserting files the ticket;
//! nothing else does, so the wheel never holds more tickets than the map
//! holds entries. Eviction takes tickets whose second has passed and, for
//! each, looks at the entry: expired → removed; extended since (a later use
//! moved its expiry) → the ticket is filed again under the new second. An
//! entry is removed only when its own expiry has passed, so a live entry is
//! never evicted.
//!
//! Locks: eviction holds no map guard while it takes a wheel lock and no
//! wheel lock while it takes a map guard, and nothing is ever locked while a
//! wheel lock is held. Callers must not hold a guard of this map when they
//! call [`Table::evict`] or [`Table::make_room`] (the store calls them before
//! it locks anything): dashmap's shard locks are not re-entrant.

use dashmap::mapref::entry::{Entry, VacantEntry};
use dashmap::DashMap;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Wheel shards per table. One lock for the whole wheel serialises every
/// insert of every request; with this many, two inserts meet on a wheel lock
/// as rarely as on one of dashmap's shards.
const SHARDS: usize = 16;

/// Tickets a request takes from one wheel shard on its way in: four times
/// the (at most one) entry it adds to this table, so eviction outpaces
/// expiry even when the shard drawn has nothing due, and the store stays
/// near its live size. Larger steps clear a backlog sooner but make the
/// slowest requests slower (the benchmark's p99).
pub(super) const STEP: usize = 4;

/// Most tickets one request looks at to make room when the table is full.
const ROOM_BUDGET: usize = 256;

/// Tickets taken from a wheel shard under one lock.
const BATCH: usize = 32;

/// Entries per map shard at the bound, at most (for bounds above 4 096 ×
/// the default shard count). A hash table now and then rebuilds itself
/// whole: when it grows, and, under churn, to clear the tombstones that
/// removals leave. That pause is proportional to one shard, so the shards
/// are kept this small whatever the bound.
const ENTRIES_PER_SHARD: usize = 4_096;

/// Most map shards (dashmap needs a power of two).
const MAX_MAP_SHARDS: usize = 1 << 12;

/// Map shards for a table of at most `max` entries: dashmap's default (four
/// per core), or more so that no shard exceeds [`ENTRIES_PER_SHARD`].
fn map_shards(max: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores * 4).max(max.div_ceil(ENTRIES_PER_SHARD)).next_power_of_two().clamp(2, MAX_MAP_SHARDS)
}

/// A value that knows until when (seconds) it must be kept.
pub(super) trait Expiring {
    /// The entry is expired once `now` reaches this.
    fn expires(&self) -> i64;
}

type Wheel<K> = BTreeMap<i64, Vec<K>>;

#[derive(Debug)]
pub(super) struct Table<K: Eq + Hash, V> {
    map: DashMap<K, V>,
    wheel: Box<[Mutex<Wheel<K>>]>,
    /// Entries plus reserved slots: every insert reserves first, so this
    /// never exceeds `max`, and the map never holds more than this.
    held: AtomicUsize,
    max: usize,
}

/// The right to add one entry, taken from the table's bound. Dropping it
/// gives it back.
#[derive(Debug)]
pub(super) struct Slot<'a> {
    held: &'a AtomicUsize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A wheel shard for this thread's next ticket or sweep. Any shard is right
/// for any ticket; choosing at random (per thread, so nothing is shared)
/// spreads tickets and sweeps evenly, costs no hashing of the key, and
/// cannot be steered by whoever picks the keys.
fn any_shard() -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        // xorshift64: the state is never 0.
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 32) as usize % SHARDS
    })
}

fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) | 1
}

impl<K: Eq + Hash + Clone, V: Expiring> Table<K, V> {
    /// An empty table of at most `max` entries.
    pub(super) fn new(max: usize) -> Self {
        Self {
            map: DashMap::with_shard_amount(map_shards(max)),
            wheel: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
            held: AtomicUsize::new(0),
            max,
        }
    }

    /// The map, for lookups and updates in place.
    pub(super) fn map(&self) -> &DashMap<K, V> {
        &self.map
    }

    /// Entries held plus slots reserved right now (≤ `max`).
    pub(super) fn len(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// A slot if the table is below its bound.
    pub(super) fn try_reserve(&self) -> Option<Slot<'_>> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| Slot { held: &self.held })
    }

    /// Inserts `value` into a vacant entry, using `slot`, and files its
    /// ticket. Other map guards the caller holds are fine: the wheel lock is
    /// taken after the entry's guard is released and locks nothing itself.
    pub(super) fn insert(&self, slot: Slot<'_>, entry: VacantEntry<'_, K, V>, value: V) {
        let key = entry.key().clone();
        let expires = value.expires();
        drop(entry.insert(value));
        std::mem::forget(slot);
        self.file(key, expires);
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Wheel<K>> {
        // A panic elsewhere cannot leave a wheel half-updated: every change
        // is a single push or pop.
        self.wheel[shard].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file(&self, key: K, expires: i64) {
        self.lock(any_shard()).entry(expires).or_default().push(key);
    }

    /// Up to `n` tickets of `shard` due at `now`.
    fn take_due(&self, shard: usize, now: i64, n: usize) -> Vec<K> {
        let mut due = Vec::new();
        let mut wheel = self.lock(shard);
        while due.len() < n {
            let Some(mut bucket) = wheel.first_entry() else { break };
            if *bucket.key() > now {
                break;
            }
            let keys = bucket.get_mut();
            let from = keys.len().saturating_sub(n - due.len());
            due.extend(keys.drain(from..));
            if keys.is_empty() {
                bucket.remove();
            }
        }
        due
    }

    /// Settles the tickets in `due`: removes the entries that expired, files
    /// the others again. With `want`, the first slot freed is handed to the
    /// caller instead of back to the table, so that no other request can
    /// take it in between. Returns how many entries were removed.
    fn settle(&self, due: Vec<K>, now: i64, want: bool) -> (usize, Option<Slot<'_>>) {
        let (mut removed, mut slot) = (0, None);
        for key in due {
            let refile = match self.map.entry(key) {
                Entry::Occupied(o) if o.get().expires() <= now => {
                    o.remove();
                    removed += 1;
                    if want && slot.is_none() {
                        slot = Some(Slot { held: &self.held });
                    } else {
                        self.held.fetch_sub(1, Ordering::AcqRel);
                    }
                    None
                }
                Entry::Occupied(o) => Some((o.key().clone(), o.get().expires())),
                // Every entry has one ticket and only its holder removes the
                // entry, so this does not happen; nothing to do if it did.
                Entry::Vacant(_) => None,
            };
            // Filed after the entry's guard is gone: see the module docs.
            if let Some((key, expires)) = refile {
                self.file(key, expires);
            }
        }
        (removed, slot)
    }

    /// The bounded eviction every request does on its way in: at most
    /// [`STEP`] tickets of one wheel shard. Returns how many entries were
    /// removed.
    pub(super) fn evict(&self, now: i64) -> usize {
        let shard = any_shard();
        let due = self.take_due(shard, now, STEP);
        if due.is_empty() {
            return 0;
        }
        self.settle(due, now, false).0
    }

    /// A slot, evicting expired entries if the table is full: looks at most
    /// at [`ROOM_BUDGET`] tickets, over all wheel shards. `None` if nothing
    /// held has expired (or the budget went on entries that were extended).
    pub(super) fn make_room(&self, now: i64) -> Option<Slot<'_>> {
        if let Some(slot) = self.try_reserve() {
            return Some(slot);
        }
        let start = any_shard();
        let mut budget = ROOM_BUDGET;
        for i in 0..SHARDS {
            let shard = (start + i) % SHARDS;
            while budget > 0 {
                let due = self.take_due(shard, now, budget.min(BATCH));
                if due.is_empty() {
                    break;
                }
                budget -= due.len();
                if let (_, Some(slot)) = self.settle(due, now, true) {
                    return Some(slot);
                }
            }
        }
        // Another request may have evicted meanwhile.
        self.try_reserve()
    }

    /// Tickets in the wheel (for tests: equals the entries held).
    #[cfg(test)]
    pub(super) fn tickets(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).values().map(Vec::len).sum::<usize>()).sum()
    }
}
