//! `RedisStore` against a real single `redis-server`: exact limits under a
//! race between two verifier instances, proof replay, idempotent retries,
//! TTLs on every key, fail-closed faults and recovery, the eviction check.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::redis::RedisServer;
use common::{race_one_token, Issuer, AUDIENCE, ISSUER, NOW};
use ekey_verifier::{
    ConsumeOutcome, ConsumeRequest, EvictionCheck, ManualClock, ProofId, RedisStore, RedisStoreError,
    RedisStoreSettings, StaticKeys, StoreError, UsageStore, Verifier, VerifierSettings,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn store(server: &RedisServer) -> Arc<RedisStore> {
    Arc::new(RedisStore::connect(RedisStoreSettings::single(server.url())).await.unwrap())
}

/// A store for the 1,000-request races: they test atomicity, not latency, and
/// 1,000 scripts in flight at once on a busy 2-core machine can take longer
/// than the default 500 ms request timeout (a refusal the race would report
/// as a failure).
async fn race_store(server: &RedisServer) -> Arc<RedisStore> {
    let settings = RedisStoreSettings { request_timeout_ms: 10_000, ..RedisStoreSettings::single(server.url()) };
    Arc::new(RedisStore::connect(settings).await.unwrap())
}

fn proof(n: u64) -> ProofId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    ProofId(id)
}

fn req(trace: &str, limit: u32, proof: Option<ProofId>) -> ConsumeRequest<'_> {
    ConsumeRequest { trace, limit, proof, now: NOW, retain_until: NOW + 120 }
}

fn verifier(issuer: &Issuer, store: Arc<RedisStore>) -> Verifier {
    Verifier::with_clock(
        VerifierSettings::new(ISSUER, AUDIENCE),
        Arc::new(StaticKeys::new(issuer.jwks()).unwrap()),
        store,
        Arc::new(ManualClock::new(NOW)),
    )
}

/// Two verifier instances, each with its own store client and connections,
/// 1,000 concurrent requests of one token: exactly `limit` accepted, each
/// use number handed out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_verifiers_race_exactly_limit_accepted() {
    let server = RedisServer::start();
    let issuer = Issuer::new();
    let verifiers = [
        Arc::new(verifier(&issuer, race_store(&server).await)),
        Arc::new(verifier(&issuer, race_store(&server).await)),
    ];
    for limit in [1u32, 37] {
        let used = race_one_token(&issuer, &verifiers, limit).await;
        assert_eq!(used, (1..=limit).collect::<Vec<_>>(), "limit {limit}");
    }
}

/// The same proof sent 1,000 times at once through two clients: one use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_proof_accepted_once() {
    let server = RedisServer::start();
    let stores = [race_store(&server).await, race_store(&server).await];
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let s = stores[i % 2].clone();
            tokio::spawn(async move { s.consume(&req("replayed", 1000, Some(proof(7)))).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            ConsumeOutcome::Accepted { used: 1, remaining: 999 } => accepted += 1,
            ConsumeOutcome::ReplayedProof => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 1);
}

/// Same order of checks as the in-memory store: revoked, exhausted, replay.
#[tokio::test]
async fn semantics_match_the_memory_store() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let m = ekey_verifier::MemoryStore::default();
    let steps: Vec<(&str, u32, Option<ProofId>)> = vec![
        ("t", 2, Some(proof(1))),
        ("t", 2, Some(proof(1))),
        ("t", 2, Some(proof(2))),
        ("t", 2, Some(proof(3))),
        ("t", 2, Some(proof(1))),
        ("m", 2, None),
        ("m", 2, None),
        ("m", 2, None),
    ];
    for (trace, limit, p) in steps {
        let r = req(trace, limit, p);
        assert_eq!(s.consume(&r).await, m.consume(&r).await, "{trace} {p:?}");
    }
    s.revoke_trace("r", NOW + 100).await.unwrap();
    m.revoke_trace("r", NOW + 100).await.unwrap();
    assert_eq!(s.consume(&req("r", 5, Some(proof(9)))).await, Ok(ConsumeOutcome::Revoked));
    assert_eq!(m.consume(&req("r", 5, Some(proof(9)))).await, Ok(ConsumeOutcome::Revoked));
}

/// The script answers a repeated request id with its first outcome and
/// does not count it again; a different request with the same proof is a
/// replay. (This is what makes retrying after a lost reply safe.)
#[tokio::test]
async fn same_request_id_is_idempotent() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(include_str!("../src/store/consume.lua"));
    let run = |c: &mut redis::aio::MultiplexedConnection, field: &'static [u8], rid: &'static [u8]| {
        let mut c = c.clone();
        let script = script.clone();
        async move {
            let r: (i64, i64) = script
                .key("ekey:{x}:u")
                .key("ekey:{x}:x")
                .arg(1)
                .arg(60)
                .arg(field)
                .arg(rid)
                .invoke_async(&mut c)
                .await
                .unwrap();
            r
        }
    };
    assert_eq!(run(&mut c, b"pAAAA", b"request-id-00001").await, (1, 1));
    // The retry of that request: same answer, still one use (the limit is 1).
    assert_eq!(run(&mut c, b"pAAAA", b"request-id-00001").await, (1, 1));
    // The same proof in another request: exhausted first (limit 1 reached).
    assert_eq!(run(&mut c, b"pAAAA", b"request-id-00002").await, (2, 1));
    // Room left (limit 5) but the proof was used by another request: replay.
    let mut c2 = c.clone();
    let r: (i64, i64) = script
        .key("ekey:{z}:u")
        .key("ekey:{z}:x")
        .arg(5)
        .arg(60)
        .arg("pCCCC")
        .arg("request-id-00004")
        .invoke_async(&mut c2)
        .await
        .unwrap();
    assert_eq!(r, (1, 1));
    let r: (i64, i64) = script
        .key("ekey:{z}:u")
        .key("ekey:{z}:x")
        .arg(5)
        .arg(60)
        .arg("pCCCC")
        .arg("request-id-00005")
        .invoke_async(&mut c2)
        .await
        .unwrap();
    assert_eq!(r, (3, 1));
    let used: i64 = redis::cmd("HGET").arg("ekey:{x}:u").arg("n").query_async(&mut c).await.unwrap();
    assert_eq!(used, 1);
    // Bad arguments are a script error, never a silent accept.
    let bad: redis::RedisResult<redis::Value> =
        script.key("ekey:{y}:u").key("ekey:{y}:x").arg(0).arg(60).arg("p").arg("short").invoke_async(&mut c).await;
    assert!(bad.is_err());
}

/// Every key the store writes has a TTL no longer than asked for.
#[tokio::test]
async fn every_key_has_a_ttl() {
    let server = RedisServer::start();
    let s = store(&server).await;
    for i in 0..50u64 {
        let trace = format!("trace-{}", i % 7);
        let p = if i % 3 == 0 { None } else { Some(proof(i)) };
        s.consume(&req(&trace, 5, p)).await.unwrap();
    }
    s.revoke_trace("soon", unix_now() + 30).await.unwrap();
    s.revoke_trace("far", unix_now() + 1_000_000).await.unwrap();
    let keys = server.cli(&["--scan", "--pattern", "*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 9, "{keys:?}");
    for k in keys {
        let ttl: i64 = server.cli(&["TTL", k]).parse().unwrap();
        let max = if k.ends_with(":x") { 3600 } else { 120 };
        assert!((1..=max).contains(&ttl), "{k}: TTL {ttl}");
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Redis killed in the middle of a load loop: every request during the
/// outage is refused within the timeout bound, nothing is accepted beyond
/// the limit, and the same store works again once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_closed_and_recovers() {
    let mut server = RedisServer::start();
    let settings = RedisStoreSettings {
        request_timeout_ms: 300,
        response_timeout_ms: 200,
        ..RedisStoreSettings::single(server.url())
    };
    let s = Arc::new(RedisStore::connect(settings).await.unwrap());
    let limit = 400;
    let mut accepted = 0u32;
    let mut refused_in_outage = 0;
    let mut outage_time = Duration::ZERO;
    for i in 0..160u64 {
        if i == 100 {
            server.kill();
        }
        let started = Instant::now();
        let r = s.consume(&req("load", limit, Some(proof(i)))).await;
        assert!(started.elapsed() < Duration::from_millis(1500), "request {i} took {:?}", started.elapsed());
        match r {
            Ok(ConsumeOutcome::Accepted { .. }) => {
                assert!(i < 100, "request {i} accepted while Redis was down");
                accepted += 1;
            }
            Err(StoreError::Unavailable(_)) => {
                assert!(i >= 100, "request {i} refused while Redis was up");
                refused_in_outage += 1;
                outage_time += started.elapsed();
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((accepted, refused_in_outage), (100, 60));
    println!("refused during the outage in {:?} on average", outage_time / 60);
    assert!(s.failures() >= 60);
    server.restart();
    // Back without a new store: the connection is re-established by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.consume(&req("after", 1, Some(proof(1)))).await {
            Ok(ConsumeOutcome::Accepted { used: 1, .. }) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("no recovery: {other:?}"),
        }
    }
    assert_eq!(s.consume(&req("after", 1, Some(proof(2)))).await, Ok(ConsumeOutcome::Exhausted));
}

/// `SCRIPT FLUSH` between requests: `EVALSHA` fails with `NOSCRIPT`, the
/// store falls back to `EVAL`, and counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_mid_run_stays_correct() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut accepted = 0;
    for i in 0..60u64 {
        if i % 10 == 5 {
            assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        }
        if let ConsumeOutcome::Accepted { used, .. } = s.consume(&req("flush", 40, Some(proof(i)))).await.unwrap() {
            accepted += 1;
            assert_eq!(used, accepted);
        }
    }
    assert_eq!(accepted, 40);
}

/// A long-running script makes Redis answer `BUSY`: refused, not waited
/// out or accepted; after `SCRIPT KILL` the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_redis_is_refused() {
    let server = RedisServer::start_with(&["--busy-reply-threshold", "50"]);
    let s = store(&server).await;
    assert!(matches!(s.consume(&req("busy", 3, Some(proof(1)))).await, Ok(ConsumeOutcome::Accepted { .. })));
    let port = server.port.to_string();
    let mut spin = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port, "EVAL", "while true do end", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Busy once other clients get BUSY (the script ran past the threshold).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::redis::raw_command(server.port, &["PING"]).is_ok_and(|r| r.starts_with("-BUSY")) {
        assert!(Instant::now() < deadline, "Redis never became busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = s.consume(&req("busy", 3, Some(proof(2)))).await;
    assert!(matches!(&r, Err(StoreError::Unavailable(why)) if why.contains("BUSY") || why.contains("busy")), "{r:?}");
    assert_eq!(server.cli(&["SCRIPT", "KILL"]), "OK");
    let _ = spin.wait();
    assert_eq!(
        s.consume(&req("busy", 3, Some(proof(3)))).await,
        Ok(ConsumeOutcome::Accepted { used: 2, remaining: 1 })
    );
}

/// An evicting `maxmemory-policy` stops start-up, or only warns, as configured.
#[tokio::test]
async fn eviction_policy_checked_at_start() {
    let server = RedisServer::start_with(&["--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lru"]);
    let refuse = RedisStore::connect(RedisStoreSettings::single(server.url())).await;
    match refuse {
        Err(RedisStoreError::Eviction(why)) => assert!(why.contains("allkeys-lru"), "{why}"),
        other => panic!("{other:?}"),
    }
    let warn = RedisStoreSettings { eviction_check: EvictionCheck::Warn, ..RedisStoreSettings::single(server.url()) };
    assert!(RedisStore::connect(warn).await.is_ok());
    // volatile-* evicts our keys too: every one of them has a TTL.
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"]);
    assert!(matches!(
        RedisStore::connect(RedisStoreSettings::single(server.url())).await,
        Err(RedisStoreError::Eviction(_))
    ));
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert!(RedisStore::connect(RedisStoreSettings::single(server.url())).await.is_ok());
}

/// Managed Redis often disables `CONFIG` (renamed away or denied by ACL):
/// then nothing shows the policy is `noeviction`, and `refuse` must refuse
/// rather than assume; `warn` and `off` start.
#[tokio::test]
async fn eviction_check_refuses_when_config_get_is_unavailable() {
    let server = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    assert!(server.cli(&["CONFIG", "GET", "maxmemory"]).contains("unknown command"), "CONFIG still answers");
    match RedisStore::connect(RedisStoreSettings::single(server.url())).await {
        Err(e @ RedisStoreError::EvictionUnchecked(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("maxmemory-policy") && msg.contains("eviction_check"), "{msg}");
        }
        other => panic!("started without knowing the eviction policy: {other:?}"),
    }
    let feed = ekey_verifier::RedisRevocationFeed::start(
        RedisStoreSettings::single(server.url()),
        ekey_verifier::RevocationFeedSettings::default(),
    )
    .await;
    assert!(matches!(feed, Err(RedisStoreError::EvictionUnchecked(_))), "{feed:?}");
    for check in [EvictionCheck::Warn, EvictionCheck::Off] {
        let s = RedisStoreSettings { eviction_check: check, ..RedisStoreSettings::single(server.url()) };
        assert!(RedisStore::connect(s).await.is_ok(), "{check:?}");
    }
}

/// The readiness probe: `check()` answers while Redis is up, refuses within
/// the request timeout while it is down, and answers again once it is back.
#[tokio::test]
async fn check_follows_redis_down_and_up() {
    let mut server = RedisServer::start();
    let store = store(&server).await;
    store.check().await.unwrap();
    server.kill();
    let started = Instant::now();
    let down = store.check().await;
    assert!(matches!(&down, Err(StoreError::Unavailable(m)) if m.contains("PING")), "{down:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.check().await.is_err() {
        assert!(Instant::now() < deadline, "check() did not recover after Redis came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unreachable at start: a clear error within the connect timeout.
#[tokio::test]
async fn unreachable_at_start_is_an_error() {
    let mut server = RedisServer::start();
    server.kill();
    let started = Instant::now();
    let r = RedisStore::connect(RedisStoreSettings::single(server.url())).await;
    assert!(matches!(r, Err(RedisStoreError::Connect(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Password from a file; a wrong one is refused at start.
#[tokio::test]
async fn password_file() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-for-test"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret-for-test\n").unwrap();
    let ok = RedisStoreSettings { password_file: Some(file.clone()), ..RedisStoreSettings::single(server.url()) };
    let s = RedisStore::connect(ok).await.unwrap();
    assert!(matches!(s.consume(&req("pw", 1, None)).await, Ok(ConsumeOutcome::Accepted { .. })));
    std::fs::write(&file, "wrong").unwrap();
    let bad = RedisStoreSettings { password_file: Some(file), ..RedisStoreSettings::single(server.url()) };
    assert!(RedisStore::connect(bad).await.is_err());
}

/// `WAIT` for one replica: accepted while a replica acknowledges; with the
/// replica gone the use is refused (deny on timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replica_then_deny_without_it() {
    let server = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let port = server.port.to_string();
    let mut replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.cli(&["INFO", "replication"]).contains("state=online")
        || !replica.cli(&["INFO", "replication"]).contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "replica did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Generous: other test binaries may load the machine.
    let settings = RedisStoreSettings {
        wait_replicas: 1,
        wait_timeout_ms: 1000,
        response_timeout_ms: 1500,
        request_timeout_ms: 2000,
        ..RedisStoreSettings::single(server.url())
    };
    let s = RedisStore::connect(settings).await.unwrap();
    assert_eq!(s.consume(&req("w", 5, Some(proof(1)))).await, Ok(ConsumeOutcome::Accepted { used: 1, remaining: 4 }));
    // The acknowledged use is on the replica.
    assert_eq!(replica.cli(&["HGET", &s.usage_key("w"), "n"]), "1");
    replica.kill();
    let r = s.consume(&req("w", 5, Some(proof(2)))).await;
    assert!(matches!(&r, Err(StoreError::Unavailable(why)) if why.contains("WAIT")), "{r:?}");
}

/// Bytes per trace and per proof, as `MEMORY USAGE` reports them (printed
/// for docs/replay-store.md; bounded so a layout change that bloats keys fails).
#[tokio::test]
async fn memory_per_trace_and_proof() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let trace = "Zm9vYmFyYmF6cXV4cXV1eA"; // 22 characters, like a 128-bit trace
    s.consume(&req(trace, 100, Some(proof(0)))).await.unwrap();
    let key = s.usage_key(trace);
    let one: i64 = server.cli(&["MEMORY", "USAGE", &key, "SAMPLES", "0"]).parse().unwrap();
    for i in 1..=10u64 {
        s.consume(&req(trace, 100, Some(proof(i)))).await.unwrap();
    }
    let eleven: i64 = server.cli(&["MEMORY", "USAGE", &key, "SAMPLES", "0"]).parse().unwrap();
    let per_proof = (eleven - one) / 10;
    println!("MEMORY USAGE: trace with 1 proof {one} B, per further proof {per_proof} B");
    assert!(one < 300 && per_proof < 80, "{one} {per_proof}");
}

/// `INFO commandstats` between two points: calls per command.
fn command_calls(server: &RedisServer) -> std::collections::HashMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

/// One round trip per use: N consumes are N `EVALSHA` calls and nothing
/// else (the script's own commands are not client round trips).
#[tokio::test]
async fn one_round_trip_per_consume() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.consume(&req("warm", 1, None)).await.unwrap();
    assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");
    for i in 0..200u64 {
        s.consume(&req("rt", 150, Some(proof(i)))).await.unwrap();
    }
    let mut calls = command_calls(&server);
    calls.retain(|c, _| !matches!(c.as_str(), "info" | "config|resetstat"));
    // Commands run inside the script are counted too; they are exactly what
    // the script does for 150 accepted and 50 exhausted uses, so any extra
    // client command (a second round trip) would show.
    let expected: std::collections::HashMap<String, u64> = [
        ("evalsha", 200),
        ("hget", 400),
        ("exists", 200),
        ("hincrby", 150),
        ("hset", 150),
        ("ttl", 150),
        ("expire", 1),
    ]
    .into_iter()
    .map(|(c, n)| (c.to_owned(), n))
    .collect();
    assert_eq!(calls, expected);
}

/// Consume operations per second at 1 and 32 concurrent requests, beside
/// `redis-benchmark` running `EVALSHA` of a trivial script against the same
/// server in the same run. Run with
/// `cargo test --release -p ekey-verifier --features redis --test redis_store -- --ignored --nocapture bench`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly, in release mode"]
async fn bench_consume_vs_redis_benchmark() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let sha = server.cli(&["SCRIPT", "LOAD", "return 1"]);
    for concurrency in [1usize, 32] {
        let total = 40_000u64;
        server.cli(&["CONFIG", "RESETSTAT"]);
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks: Vec<_> = (0..concurrency)
            .map(|w| {
                let (s, next) = (s.clone(), next.clone());
                tokio::spawn(async move {
                    let trace = format!("bench-{concurrency}-{w}");
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let r = s.consume(&req(&trace, 1_000_000, Some(proof(i)))).await.unwrap();
                        assert!(matches!(r, ConsumeOutcome::Accepted { .. }));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let ours = total as f64 / started.elapsed().as_secs_f64();
        let evalsha = command_calls(&server).get("evalsha").copied().unwrap_or(0);
        let out = std::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-n", "100000", "-c", &concurrency.to_string()])
            .args(["-q", "EVALSHA", &sha, "0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let baseline: f64 = text
            .split_whitespace()
            .zip(text.split_whitespace().skip(1))
            .find(|(_, unit)| unit.starts_with("requests"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("redis-benchmark output: {text}"));
        println!(
            "concurrency {concurrency}: consume {ours:.0}/s, redis-benchmark EVALSHA 'return 1' {baseline:.0}/s, \
             ratio {:.2}; EVALSHA calls {evalsha} for {total} consumes",
            ours / baseline
        );
        assert_eq!(evalsha, total, "one round trip per consume");
    }
}

mod pki {
    //! A throwaway CA, a server certificate for 127.0.0.1 and a client
    //! certificate, as PEM files.
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509NameBuilder, X509};
    use std::path::{Path, PathBuf};

    fn key() -> PKey<Private> {
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
    }

    fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, role: &str) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name())).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        match role {
            "ca" => {
                b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
                b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
            }
            "server" => {
                let ctx = b.x509v3_context(issuer.map(|(c, _)| &**c), None);
                let san = SubjectAlternativeName::new().ip("127.0.0.1").build(&ctx).unwrap();
                b.append_extension(san).unwrap();
                b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
            }
            _ => b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap()).unwrap(),
        }
        b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).unwrap();
        b.build()
    }

    /// (ca, server cert, server key, client cert, client key) in `dir`.
    pub fn write(dir: &Path) -> [PathBuf; 5] {
        let (ca_key, srv_key, cli_key) = (key(), key(), key());
        let ca = cert("ekey test CA", &ca_key, None, "ca");
        let srv = cert("127.0.0.1", &srv_key, Some((&ca, &ca_key)), "server");
        let cli = cert("ekey verifier", &cli_key, Some((&ca, &ca_key)), "client");
        let files = [
            ("ca.pem", ca.to_pem().unwrap()),
            ("server.pem", srv.to_pem().unwrap()),
            ("server.key", srv_key.private_key_to_pem_pkcs8().unwrap()),
            ("client.pem", cli.to_pem().unwrap()),
            ("client.key", cli_key.private_key_to_pem_pkcs8().unwrap()),
        ];
        files.map(|(name, pem)| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        })
    }
}

/// `rediss://` with the CA from `ca_file`: works; without it (system trust
/// store) the server is not trusted and start-up fails.
#[tokio::test]
async fn tls_to_redis() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, ..] = pki::write(dir.path());
    let server = RedisServer::start_tls(&common::redis::ServerTls { ca: ca.clone(), cert, key, client_auth: false });
    let ok = RedisStoreSettings { ca_file: Some(ca), ..RedisStoreSettings::single(server.url()) };
    let s = RedisStore::connect(ok).await.unwrap();
    assert_eq!(s.consume(&req("tls", 2, Some(proof(1)))).await, Ok(ConsumeOutcome::Accepted { used: 1, remaining: 1 }));
    assert_eq!(server.cli(&["HGET", &s.usage_key("tls"), "n"]), "1");
    let untrusted = RedisStore::connect(RedisStoreSettings::single(server.url())).await;
    assert!(matches!(untrusted, Err(RedisStoreError::Connect(_))), "{untrusted:?}");
}

/// TLS client authentication to Redis: with the client certificate it
/// works; without it Redis refuses the connection.
#[tokio::test]
async fn tls_client_certificate_to_redis() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, client_cert, client_key] = pki::write(dir.path());
    let server = RedisServer::start_tls(&common::redis::ServerTls { ca: ca.clone(), cert, key, client_auth: true });
    let with_cert = RedisStoreSettings {
        ca_file: Some(ca.clone()),
        client_cert_file: Some(client_cert),
        client_key_file: Some(client_key),
        ..RedisStoreSettings::single(server.url())
    };
    let s = RedisStore::connect(with_cert).await.unwrap();
    assert!(matches!(s.consume(&req("mtls", 1, None)).await, Ok(ConsumeOutcome::Accepted { .. })));
    let without = RedisStoreSettings { ca_file: Some(ca), ..RedisStoreSettings::single(server.url()) };
    assert!(RedisStore::connect(without).await.is_err());
}

/// A TCP proxy in front of Redis that can swallow the next reply and cut
/// the connection: the script ran, the client never heard.
async fn reply_dropping_proxy(upstream: u16) -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let drop_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = drop_next.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
            let flag = flag.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let mut buf = vec![0u8; 16_384];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if flag.swap(false, Ordering::SeqCst) {
                        break; // the reply is lost with the connection
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    (port, drop_next)
}

/// The reply of an accepted use is lost with its connection: the store
/// sends the same request again, and the script answers the first outcome
/// instead of counting a second use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reply_retried_without_counting_twice() {
    let server = RedisServer::start();
    let (port, drop_next) = reply_dropping_proxy(server.port).await;
    let s = RedisStore::connect(RedisStoreSettings::single(format!("redis://127.0.0.1:{port}"))).await.unwrap();
    s.consume(&req("warm-up", 1, None)).await.unwrap();
    drop_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = s.consume(&req("lost", 3, Some(proof(1)))).await;
    assert_eq!(r, Ok(ConsumeOutcome::Accepted { used: 1, remaining: 2 }));
    assert!(!drop_next.load(std::sync::atomic::Ordering::SeqCst), "no reply was dropped");
    assert_eq!(server.cli(&["HGET", &s.usage_key("lost"), "n"]), "1", "counted twice");
    assert_eq!(
        s.consume(&req("lost", 3, Some(proof(2)))).await,
        Ok(ConsumeOutcome::Accepted { used: 2, remaining: 1 })
    );
}
