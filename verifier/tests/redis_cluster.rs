//! `RedisStore` against a real 3-master Redis Cluster: exact limits under a
//! race between two verifier instances, proof replay, one slot per trace,
//! `MOVED` after a reshard, `SCRIPT FLUSH` on every node, TTLs, the
//! eviction check per node.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::redis::RedisCluster;
use common::{race_one_token, Issuer, AUDIENCE, ISSUER, NOW};
use ekey_verifier::{
    ConsumeOutcome, ConsumeRequest, ManualClock, ProofId, RedisStore, RedisStoreError, RedisStoreSettings, StaticKeys,
    UsageStore, Verifier, VerifierSettings,
};
use std::sync::Arc;

async fn store(cluster: &RedisCluster) -> Arc<RedisStore> {
    Arc::new(RedisStore::connect(RedisStoreSettings::cluster(cluster.urls())).await.unwrap())
}

/// A store for the 1,000-request races: they test atomicity, not latency, and
/// 1,000 scripts in flight at once on a busy 2-core machine can take longer
/// than the default 500 ms request timeout.
async fn race_store(cluster: &RedisCluster) -> Arc<RedisStore> {
    let settings = RedisStoreSettings { request_timeout_ms: 10_000, ..RedisStoreSettings::cluster(cluster.urls()) };
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

/// Redis Cluster's key slot: CRC16/XMODEM of the hash tag, mod 16384.
fn slot_of_tag(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}

/// One cluster for every check of this file (starting one takes seconds);
/// the checks use distinct traces, so they do not interfere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store() {
    let cluster = RedisCluster::start(3);
    let a = store(&cluster).await;
    let b = store(&cluster).await;

    // The CRC16 here agrees with the server's, so the reshard check below
    // targets the right slot.
    for t in ["abc", "Zm9vYmFy", "x"] {
        let server: u16 = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", t]).parse().unwrap();
        assert_eq!(slot_of_tag(t), server, "{t}");
    }

    let (race_a, race_b) = (race_store(&cluster).await, race_store(&cluster).await);
    race_between_two_verifiers(&cluster, &race_a, &race_b).await;
    replayed_proof_once(&race_a, &race_b).await;
    one_slot_per_trace_spread_over_nodes(&cluster, &a).await;
    script_flush_everywhere(&cluster, &a).await;
    follows_moved_after_reshard(&cluster, &a, &b).await;
    every_key_has_a_ttl(&cluster);
    eviction_checked_on_every_master(&cluster).await;
    let mut cluster = cluster;
    primary_down_fails_closed_and_recovers(&mut cluster, &a).await;
}

async fn race_between_two_verifiers(cluster: &RedisCluster, a: &Arc<RedisStore>, b: &Arc<RedisStore>) {
    let issuer = Issuer::new();
    let v = |s: &Arc<RedisStore>| {
        Arc::new(Verifier::with_clock(
            VerifierSettings::new(ISSUER, AUDIENCE),
            Arc::new(StaticKeys::new(issuer.jwks()).unwrap()),
            s.clone(),
            Arc::new(ManualClock::new(NOW)),
        ))
    };
    let verifiers = [v(a), v(b)];
    let limit = 37;
    let used = race_one_token(&issuer, &verifiers, limit).await;
    assert_eq!(used, (1..=limit).collect::<Vec<_>>());
    let _ = cluster;
}

async fn replayed_proof_once(a: &Arc<RedisStore>, b: &Arc<RedisStore>) {
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.consume(&req("cluster-replay", 1000, Some(proof(3)))).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            ConsumeOutcome::Accepted { used: 1, .. } => accepted += 1,
            ConsumeOutcome::ReplayedProof => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 1);
}

async fn one_slot_per_trace_spread_over_nodes(cluster: &RedisCluster, a: &Arc<RedisStore>) {
    for i in 0..30 {
        let trace = format!("spread{i}");
        a.consume(&req(&trace, 2, Some(proof(i)))).await.unwrap();
        a.revoke_trace(&trace, unix_now() + 60).await.unwrap();
        let (u, x) = (a.usage_key(&trace), a.revocation_key(&trace));
        let su = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", &u]);
        assert_eq!(su, cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", &x]));
        assert_eq!(cluster.node_for(&u).cli(&["EXISTS", &u, &x]), "2");
        assert_eq!(a.consume(&req(&trace, 2, Some(proof(100 + i)))).await, Ok(ConsumeOutcome::Revoked));
    }
    for n in &cluster.nodes {
        let keys: u64 = n.cli(&["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "node {} holds no trace", n.port);
    }
}

async fn script_flush_everywhere(cluster: &RedisCluster, a: &Arc<RedisStore>) {
    let mut accepted = 0;
    for i in 0..90u64 {
        if i % 15 == 7 {
            for n in &cluster.nodes {
                assert_eq!(n.cli(&["SCRIPT", "FLUSH"]), "OK");
            }
        }
        let trace = format!("flush{}", i % 3);
        if let ConsumeOutcome::Accepted { .. } = a.consume(&req(&trace, 20, Some(proof(1000 + i)))).await.unwrap() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 60);
}

/// A slot moves to another master while in use: the store follows `MOVED`
/// and the counter, migrated with the slot, stays exact.
async fn follows_moved_after_reshard(cluster: &RedisCluster, a: &Arc<RedisStore>, b: &Arc<RedisStore>) {
    let ids: Vec<(String, u16)> = cluster.nodes.iter().map(|n| (n.cli(&["CLUSTER", "MYID"]), n.port)).collect();
    // `--cluster reshard` moves the source's lowest slots first: find a trace in
    // the lowest slot of node 0.
    let nodes = cluster.nodes[0].cli(&["CLUSTER", "NODES"]);
    let me = nodes.lines().find(|l| l.contains("myself")).unwrap();
    let lowest = me
        .split_whitespace()
        .skip(8)
        .filter_map(|r| r.split('-').next().and_then(|a| a.parse::<u16>().ok()))
        .min()
        .unwrap();
    let trace = (0u64..).map(|i| format!("mv{i}")).find(|t| slot_of_tag(t) == lowest).unwrap();
    for i in 0..3 {
        assert!(matches!(
            a.consume(&req(&trace, 10, Some(proof(5000 + i)))).await,
            Ok(ConsumeOutcome::Accepted { .. })
        ));
    }
    let to = &ids[1];
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &cluster.nodes[0].addr()])
        .args(["--cluster-from", &ids[0].0, "--cluster-to", &to.0, "--cluster-slots", "1", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let usage = a.usage_key(&trace);
    assert_eq!(cluster.node_for(&usage).port, to.1, "slot {lowest} did not move");
    for (i, s) in [a, b, a].into_iter().enumerate() {
        let r = s.consume(&req(&trace, 10, Some(proof(6000 + i as u64)))).await.unwrap();
        assert_eq!(r, ConsumeOutcome::Accepted { used: 4 + i as u32, remaining: 6 - i as u32 });
    }
}

fn every_key_has_a_ttl(cluster: &RedisCluster) {
    let mut total = 0;
    for n in &cluster.nodes {
        let keys = n.cli(&["--scan", "--pattern", "*"]);
        for k in keys.lines() {
            let ttl: i64 = n.cli(&["TTL", k]).parse().unwrap();
            assert!((1..=3600).contains(&ttl), "{k}: TTL {ttl}");
            total += 1;
        }
    }
    assert!(total >= 60, "{total}");
}

async fn eviction_checked_on_every_master(cluster: &RedisCluster) {
    let n = &cluster.nodes[2];
    n.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    match RedisStore::connect(RedisStoreSettings::cluster(cluster.urls())).await {
        Err(RedisStoreError::Eviction(why)) => {
            assert!(why.contains("allkeys-lfu") && why.contains(&n.port.to_string()), "{why}")
        }
        other => panic!("{other:?}"),
    }
    n.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert!(RedisStore::connect(RedisStoreSettings::cluster(cluster.urls())).await.is_ok());
}

/// One primary killed (no replica to promote): its traces are refused
/// within the timeout bound, the other primaries' traces keep working, and
/// once it is back (same port, same node id, empty) the same store serves
/// its slots again.
async fn primary_down_fails_closed_and_recovers(cluster: &mut RedisCluster, a: &Arc<RedisStore>) {
    let down_port = cluster.nodes[2].port;
    let on =
        |port: u16| (0..).map(|i| format!("down{i}")).find(|t| cluster.node_for(&a.usage_key(t)).port == port).unwrap();
    let (lost, kept) = (on(down_port), on(cluster.nodes[0].port));
    assert!(matches!(a.consume(&req(&lost, 5, Some(proof(9000)))).await, Ok(ConsumeOutcome::Accepted { .. })));
    cluster.nodes[2].kill();
    for i in 0..5u64 {
        let started = std::time::Instant::now();
        let r = a.consume(&req(&lost, 5, Some(proof(9100 + i)))).await;
        assert!(matches!(r, Err(ekey_verifier::StoreError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "{:?}", started.elapsed());
        let r = a.consume(&req(&kept, 10, Some(proof(9200 + i)))).await;
        assert!(matches!(r, Ok(ConsumeOutcome::Accepted { .. })), "{r:?}");
    }
    cluster.nodes[2].restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match a.consume(&req(&lost, 5, Some(proof(9300)))).await {
            // The node came back empty (no persistence, no replica): the
            // earlier use is gone, as docs/replay-store.md says of failover.
            Ok(ConsumeOutcome::Accepted { used: 1, .. }) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => panic!("no recovery: {other:?}"),
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
