//! Hours of churn through `MemoryStore`, compressed into seconds.
//!
//! Four threads share one store and a simulated clock, each advancing it one
//! second per round, meeting every 10 simulated seconds (so they are never
//! more than 10 s apart). Each thread starts 64 traces per second, each used at +0, +10, +20
//! and +30 s with a fresh proof (limit 4); for one trace in 8 the last use is
//! preceded by a replay of the first proof and followed by one use too many.
//! One trace in 64 is revoked before its second use. Entries are kept 120 s after each
//! use, so about 38 000 traces and 120 000 proofs are live at any time while
//! 1 024 000 traces and 4 048 000 proof ids pass through over 4 000 simulated
//! seconds: the store only keeps up if it evicts what has expired.
//!
//! Checks: every answer is exactly the expected one (so no live entry was
//! ever evicted and no request that fits after expiry was refused as `Full`),
//! `len()` never exceeds the settings, and the process's resident memory
//! stops growing once the store has turned over. A watchdog turns a stall
//! (a deadlock in the store) into a failure instead of a hung CI job.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use ekey_verifier::{ConsumeOutcome, ConsumeRequest, MemoryStore, MemoryStoreSettings, ProofId, UsageStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const THREADS: u64 = 4;
const SECONDS: i64 = 4_000;
const NEW_PER_SECOND: u64 = 64;
/// When each use of a trace happens, relative to its creation.
const USES: [i64; 4] = [0, 10, 20, 30];
const LIMIT: u32 = USES.len() as u32;
const RETAIN: i64 = 120;
const START: i64 = 1_800_000_000;
/// Simulated seconds between two meetings of the threads.
const EPOCH: i64 = 10;
/// Live at once: traces for 150 s (last use + 120), proofs for 120 s, plus
/// what the threads being up to `EPOCH` apart adds: at most 40 320 traces
/// and 129 480 proofs.
const SETTINGS: MemoryStoreSettings = MemoryStoreSettings { max_traces: 43_000, max_proofs: 136_000 };
/// No progress for this long means the store is stuck.
const STALL: Duration = Duration::from_secs(30);
/// Whole-run bound, far above the debug-build run time on a 2-core machine.
const DEADLINE: Duration = Duration::from_secs(400);
/// Resident memory may grow at most this much once the store has turned over
/// several times: leaking every expired entry would add hundreds of MiB.
const RSS_GROWTH_BOUND: u64 = 64 << 20;

struct Shared {
    store: MemoryStore,
    barrier: Barrier,
    /// Consumes answered so far, for the watchdog.
    progress: AtomicU64,
    /// Resident bytes after 1 000 s (several turnovers) and at the end.
    rss: Mutex<(u64, u64)>,
}

fn trace_id(thread: u64, created: i64, i: u64) -> String {
    format!("t{thread}-{created}-{i}")
}

fn proof_id(thread: u64, created: i64, i: u64, use_no: u8) -> ProofId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&thread.to_le_bytes());
    id[8..16].copy_from_slice(&created.to_le_bytes());
    id[16..24].copy_from_slice(&i.to_le_bytes());
    id[24] = use_no;
    ProofId(id)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

async fn consume(s: &Shared, trace: &str, proof: ProofId, now: i64) -> ConsumeOutcome {
    let req = ConsumeRequest { trace, limit: LIMIT, proof: Some(proof), now, retain_until: now + RETAIN };
    let out = s.store.consume(&req).await;
    s.progress.fetch_add(1, Ordering::Relaxed);
    match out {
        Ok(o) => o,
        Err(e) => panic!("{trace} at {now}: {e} (held: {:?})", s.store.len()),
    }
}

/// One thread's share of simulated second `now`.
async fn second(s: &Shared, thread: u64, now: i64) {
    for (k, offset) in USES.iter().enumerate() {
        let created = now - offset;
        if created < START {
            continue;
        }
        let use_no = k as u8 + 1;
        for i in 0..NEW_PER_SECOND {
            let trace = trace_id(thread, created, i);
            let revoked = i == 0 && k >= 1;
            if i == 0 && k == 1 {
                s.store.revoke_trace(&trace, now + RETAIN).await.unwrap();
            }
            if revoked {
                let out = consume(s, &trace, proof_id(thread, created, i, use_no), now).await;
                assert_eq!(out, ConsumeOutcome::Revoked, "{trace} use {use_no}");
                continue;
            }
            let probe = i % 8 == 1;
            if probe && u32::from(use_no) == LIMIT {
                // The first proof is still held (kept 120 s, used 30 s ago).
                let out = consume(s, &trace, proof_id(thread, created, i, 1), now).await;
                assert_eq!(out, ConsumeOutcome::ReplayedProof, "{trace}: replay of its first proof");
            }
            let out = consume(s, &trace, proof_id(thread, created, i, use_no), now).await;
            let used = u32::from(use_no);
            assert_eq!(out, ConsumeOutcome::Accepted { used, remaining: LIMIT - used }, "{trace} use {use_no}");
            if probe && u32::from(use_no) == LIMIT {
                let out = consume(s, &trace, proof_id(thread, created, i, 0), now).await;
                assert_eq!(out, ConsumeOutcome::Exhausted, "{trace}: one use too many");
            }
        }
    }
}

fn worker(s: &Shared, thread: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        for now in START..START + SECONDS {
            second(s, thread, now).await;
            if (now - START) % EPOCH != EPOCH - 1 {
                continue;
            }
            // One thread samples while the others wait: nothing is in flight.
            if s.barrier.wait().is_leader() {
                let (traces, proofs) = s.store.len();
                assert!(traces <= SETTINGS.max_traces, "{traces} traces held at {now}");
                assert!(proofs <= SETTINGS.max_proofs, "{proofs} proofs held at {now}");
                if now == START + 1_000 - 1 {
                    s.rss.lock().unwrap().0 = resident_bytes();
                }
            }
            s.barrier.wait();
        }
    });
    if thread == 0 {
        s.rss.lock().unwrap().1 = resident_bytes();
    }
}

#[test]
fn a_million_traces_churn_through_a_bounded_store() {
    let shared = Arc::new(Shared {
        store: MemoryStore::new(SETTINGS),
        barrier: Barrier::new(THREADS as usize),
        progress: AtomicU64::new(0),
        rss: Mutex::new((0, 0)),
    });
    let (done_tx, done) = mpsc::channel();
    for thread in 0..THREADS {
        let (s, done_tx) = (shared.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker(&s, thread)));
            let _ = done_tx.send(r.map_err(|p| {
                p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            }));
        });
    }
    let started = Instant::now();
    let (mut last, mut last_change) = (0, Instant::now());
    let mut finished = 0;
    while finished < THREADS {
        match done.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(())) => finished += 1,
            Ok(Err(msg)) => panic!("worker failed: {}", msg.unwrap_or_default()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("the test holds a sender"),
        }
        let now = shared.progress.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        assert!(
            last_change.elapsed() < STALL,
            // Not `len()` here: it would wait on the very lock a deadlock holds.
            "stalled: no consume answered for {STALL:?} after {now} consumes"
        );
        assert!(started.elapsed() < DEADLINE, "not done within {DEADLINE:?}: {now} consumes answered");
    }
    let total = shared.progress.load(Ordering::Relaxed);
    let (warm, end) = *shared.rss.lock().unwrap();
    eprintln!(
        "{total} consumes in {:.1} s; resident {} MiB after 1000 s, {} MiB at the end",
        started.elapsed().as_secs_f64(),
        warm >> 20,
        end >> 20
    );
    assert!(total >= 4_000_000, "the whole workload ran: {total}");
    if warm > 0 && end > 0 {
        assert!(end <= warm + RSS_GROWTH_BOUND, "resident memory grew from {warm} to {end} bytes");
    }
}
