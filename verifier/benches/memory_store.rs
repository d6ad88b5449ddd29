//! `MemoryStore::consume` latency under churn, beside the same operation
//! without churn, measured in the same run.
//!
//! `cargo bench -p ekey-verifier --bench memory_store`. Each request is a
//! single-use token's first use: a new trace and a new proof id, kept 120 s.
//!
//! - churn: the simulated clock advances so that about 95 % of `max_traces`
//!   is live; every request evicts what has expired (after two retention
//!   periods of warm-up, one period of requests is timed, one by one);
//! - steady: the same store size, the clock frozen, nothing expiring (fresh
//!   stores filled to 95 %, then 4 % more timed per store).
//!
//! Both at `max_traces` = 100 000 and 1 000 000 (`max_proofs` = 4 ×). The
//! last line is one JSON object: per size, p50/p99/p99.9/max in nanoseconds
//! for both, and the churn/steady ratios; the two churn maxima side by side
//! and their ratio (a sweep over the whole map would make the 1 M maximum
//! about ten times the 100 k one); consumes per second under churn from one
//! and two threads (wheel-lock contention); and resident bytes per trace and
//! per proof id. Latencies include two `Instant::now()` calls.
//!
//! A raw wall-clock maximum includes whatever the OS did to the thread, so
//! two steadier figures sit beside it: `min_slice_max_ns` (the timed
//! requests cut into three slices, the smallest of the three maxima: a
//! periodic pause survives that, a one-off preemption does not) and
//! `cpu_per_64_max_ns` (the most CPU time this thread spent on any 64
//! consecutive requests: real work such as a sweep counts, waiting for a
//! core does not). The top-level `cpu_max_1m_to_100k` compares the latter
//! across the two sizes, and `sweep_cpu_ns_*` is what one pass over a map of
//! that size costs (`retain` over the traces and as many proofs), the pause
//! a sweeping design would add.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use ekey_verifier::{ConsumeOutcome, ConsumeRequest, MemoryStore, MemoryStoreSettings, ProofId, UsageStore};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

const START: i64 = 1_800_000_000;
const RETAIN: i64 = 120;

/// The memory store answers without ever waiting: poll once.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory store never waits"),
    }
}

fn settings(max_traces: usize) -> MemoryStoreSettings {
    MemoryStoreSettings { max_traces, max_proofs: 4 * max_traces }
}

/// Request number `i` of a run: a new 22-character trace (the issuer's
/// length) and a new proof id.
struct Requests {
    run: u64,
    trace: String,
}

impl Requests {
    fn new(run: u64) -> Self {
        Self { run, trace: String::with_capacity(22) }
    }

    fn consume(&mut self, store: &MemoryStore, i: u64, now: i64, retain_until: i64) -> ConsumeOutcome {
        self.trace.clear();
        write!(self.trace, "{:06x}{i:016x}", self.run).unwrap();
        let mut proof = [0u8; 32];
        proof[..8].copy_from_slice(&i.to_le_bytes());
        proof[8..16].copy_from_slice(&self.run.to_le_bytes());
        let req = ConsumeRequest { trace: &self.trace, limit: 1, proof: Some(ProofId(proof)), now, retain_until };
        ready(store.consume(&req)).unwrap()
    }
}

/// Requests per CPU-time sample.
const CHUNK: usize = 64;

/// Wall time of each request, and CPU time of this thread per [`CHUNK`]
/// requests: a pause of real work (a sweep) costs CPU time, a preemption by
/// the OS does not.
#[derive(Default)]
struct Timings {
    wall: Vec<u64>,
    cpu: Vec<u64>,
    chunk: Option<(u64, usize)>,
}

impl Timings {
    fn record(&mut self, f: impl FnOnce() -> ConsumeOutcome) {
        let (cpu_start, n) = match self.chunk {
            Some(c) => c,
            None => (thread_cpu_ns().unwrap_or(0), 0),
        };
        let t = Instant::now();
        let out = f();
        self.wall.push(t.elapsed().as_nanos() as u64);
        assert!(matches!(out, ConsumeOutcome::Accepted { .. }), "{out:?}");
        self.chunk = Some((cpu_start, n + 1));
        if n + 1 == CHUNK {
            if let Some(end) = thread_cpu_ns() {
                self.cpu.push(end.saturating_sub(cpu_start));
            }
            self.chunk = None;
        }
    }

    /// Drops a partial chunk: what follows is not timed.
    fn pause(&mut self) {
        self.chunk = None;
    }
}

#[cfg(unix)]
fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

#[cfg(not(unix))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// Requests per simulated second that keep 95 % of `max_traces` live.
fn rate(max_traces: usize) -> u64 {
    (max_traces as u64 * 95 / 100) / RETAIN as u64
}

/// Latencies of one retention period of requests on a store kept at 95 %
/// by expiry, after two periods of warm-up.
fn churn(max_traces: usize, run: u64) -> Timings {
    let store = MemoryStore::new(settings(max_traces));
    let mut r = Requests::new(run);
    let per_sec = rate(max_traces);
    let warm = 2 * RETAIN as u64 * per_sec;
    let total = warm + RETAIN as u64 * per_sec;
    let mut lat = Timings::default();
    for i in 0..total {
        let now = START + (i / per_sec) as i64;
        if i < warm {
            r.consume(&store, i, now, now + RETAIN);
        } else {
            lat.record(|| r.consume(&store, i, now, now + RETAIN));
        }
    }
    let (traces, _) = store.len();
    assert!(traces <= max_traces && traces >= max_traces * 9 / 10, "the store ran near its bound: {traces}");
    lat
}

/// Latencies of requests on stores at 95 %, nothing expiring: fresh stores
/// until there are as many samples as `want`.
fn steady(max_traces: usize, want: usize, run: u64) -> Timings {
    let mut lat = Timings::default();
    let (fill, measure) = (max_traces as u64 * 95 / 100, max_traces as u64 * 4 / 100);
    let mut round = 0;
    while lat.wall.len() < want {
        let store = MemoryStore::new(settings(max_traces));
        let mut r = Requests::new(run + round);
        round += 1;
        for i in 0..fill + measure {
            if i < fill {
                r.consume(&store, i, START, START + RETAIN);
            } else {
                lat.record(|| r.consume(&store, i, START, START + RETAIN));
            }
        }
        lat.pause();
    }
    lat
}

/// Percentiles, and the smallest of the maxima of three equal slices: a
/// pause that recurs (a periodic sweep) shows in every slice, a preemption
/// by the OS usually in one.
fn summary(t: Timings) -> Value {
    let (mut lat, mut cpu) = (t.wall, t.cpu);
    cpu.sort_unstable();
    let slice = lat.len().div_ceil(3);
    let max_of_3 = lat.chunks(slice).map(|c| c.iter().max().copied().unwrap_or(0)).min().unwrap_or(0);
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    json!({
        "requests": lat.len(),
        "p50_ns": q(0.5),
        "p99_ns": q(0.99),
        "p999_ns": q(0.999),
        "max_ns": q(1.0),
        "min_slice_max_ns": max_of_3,
        "cpu_per_64_p50_ns": cpu.get(cpu.len() / 2),
        "cpu_per_64_p999_ns": cpu.get(cpu.len() * 999 / 1000),
        "cpu_per_64_max_ns": cpu.last(),
    })
}

fn ratio(a: &Value, b: &Value, field: &str) -> Value {
    quotient(&a[field], &b[field])
}

/// `a / b` to two decimals; null without both figures.
fn quotient(a: &Value, b: &Value) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 100.0).round() / 100.0),
        _ => Value::Null,
    }
}

/// Consumes per second under churn at `max_traces`, from `threads` threads
/// sharing the store, each with its own stream of requests.
fn throughput(max_traces: usize, threads: u64, run: u64) -> f64 {
    let store = MemoryStore::new(settings(max_traces));
    let per_sec = rate(max_traces) / threads;
    let total = 4 * RETAIN as u64 * per_sec;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = &store;
            s.spawn(move || {
                let mut r = Requests::new(run + t);
                for i in 0..total {
                    let now = START + (i / per_sec) as i64;
                    r.consume(store, i, now, now + RETAIN);
                }
            });
        }
    });
    (threads * total) as f64 / started.elapsed().as_secs_f64()
}

/// What one sweep over the whole store costs, for reference: the CPU time
/// of `retain` over a dashmap of `n` trace-like entries plus one of `n`
/// proof-like entries, all expired (the pause the store took every
/// `max_traces / 8` new traces before the expiry wheel).
fn sweep_reference(n: u64) -> Option<u64> {
    let traces: dashmap::DashMap<String, (u32, bool, i64)> =
        (0..n).map(|i| (format!("{i:022x}"), (1, false, START))).collect();
    let proofs: dashmap::DashMap<[u8; 32], i64> = (0..n)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            (id, START)
        })
        .collect();
    let start = thread_cpu_ns()?;
    traces.retain(|_, t| t.2 > START);
    proofs.retain(|_, e| *e > START);
    assert!(traces.is_empty() && proofs.is_empty());
    Some(thread_cpu_ns()? - start)
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resident bytes per trace (1 000 000 traces, no proof) and per proof id
/// (4 000 000 proofs of one trace), both stores held at once so that no
/// freed memory is reused.
fn bytes_per_entry() -> (Option<u64>, Option<u64>) {
    let before = resident_bytes();
    let traces = MemoryStore::default();
    let mut trace = String::new();
    for i in 0..1_000_000u64 {
        trace.clear();
        write!(trace, "{i:022x}").unwrap();
        let req = ConsumeRequest { trace: &trace, limit: 1, proof: None, now: START, retain_until: START + RETAIN };
        ready(traces.consume(&req)).unwrap();
    }
    let mid = resident_bytes();
    let proofs = MemoryStore::default();
    for i in 0..4_000_000u64 {
        let mut id = [7u8; 32];
        id[..8].copy_from_slice(&i.to_le_bytes());
        let req = ConsumeRequest {
            trace: "one-trace-of-22-chars.",
            limit: u32::MAX,
            proof: Some(ProofId(id)),
            now: START,
            retain_until: START + RETAIN,
        };
        ready(proofs.consume(&req)).unwrap();
    }
    let after = resident_bytes();
    assert_eq!((traces.len(), proofs.len()), ((1_000_000, 0), (1, 4_000_000)));
    let per = |a: Option<u64>, b: Option<u64>, n: u64| Some(b?.saturating_sub(a?) / n);
    (per(before, mid, 1_000_000), per(mid, after, 4_000_000))
}

fn main() {
    let (per_trace, per_proof) = bytes_per_entry();
    let mut sizes = vec![];
    let mut churn_max = vec![];
    for (k, max_traces) in [100_000usize, 1_000_000].into_iter().enumerate() {
        let run = k as u64 * 1_000;
        let c = churn(max_traces, run);
        let s = summary(steady(max_traces, c.wall.len(), run + 100));
        let c = summary(c);
        eprintln!("max_traces {max_traces}: churn {c}, steady {s}");
        churn_max.push((c["min_slice_max_ns"].clone(), c["cpu_per_64_max_ns"].clone()));
        sizes.push(json!({
            "max_traces": max_traces,
            "churn": c,
            "steady": s,
            "p50_ratio": ratio(&c, &s, "p50_ns"),
            "p99_ratio": ratio(&c, &s, "p99_ns"),
            "p999_ratio": ratio(&c, &s, "p999_ns"),
        }));
    }
    let one = throughput(100_000, 1, 10_000);
    let two = throughput(100_000, 2, 20_000);
    let line = json!({
        "bench": "memory_store",
        "sizes": sizes,
        "churn_min_slice_max_ns_100k": churn_max[0].0,
        "churn_min_slice_max_ns_1m": churn_max[1].0,
        "churn_cpu_per_64_max_ns_100k": churn_max[0].1,
        "churn_cpu_per_64_max_ns_1m": churn_max[1].1,
        "cpu_max_1m_to_100k": quotient(&churn_max[1].1, &churn_max[0].1),
        "sweep_cpu_ns_100k": sweep_reference(100_000),
        "sweep_cpu_ns_1m": sweep_reference(1_000_000),
        "churn_per_sec_1_thread": one.round(),
        "churn_per_sec_2_threads": two.round(),
        "two_threads_to_one": (two / one * 100.0).round() / 100.0,
        "bytes_per_trace": per_trace,
        "bytes_per_proof": per_proof,
    });
    println!("{line}");
}
