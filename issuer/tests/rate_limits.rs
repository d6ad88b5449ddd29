//! Per-client rate limits at `/token`: `429 rate_limited` + `Retry-After`
//! across two replicas sharing a real redis-server, counted and audited;
//! replays never spend a budget; one `EVALSHA` per limited request; the
//! GCRA bound held exactly by two limiters (two replicas) over 10 000
//! clients on one Redis and on a 3-master cluster, and with refill; the
//! per-process limiter at 100 000 clients (fixed memory, no lock, no sweep).

// Test helpers outside #[test] functions panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;
// The verifier's redis-server harness, shared rather than copied.
#[allow(dead_code)]
#[path = "../../verifier/tests/common/redis.rs"]
mod redis_harness;

use common::*;
use ekey_issuer::{
    Admission, Config, MemoryRateLimiter, RateLimit, RateLimiter, RedisRateLimiter, Server, ServerHandle,
};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, KeyPair, RedisConnection, RedisStoreSettings};
use redis_harness::{RedisCluster, RedisServer};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://issuer.example.com";
const TOKEN_ENDPOINT: &str = "https://issuer.example.com/token";

struct Setup {
    dir: TempDir,
    batch: KeyPair,
    key: DpopKey,
}

impl Setup {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        let batch = KeyPair::generate(Algorithm::ES256).unwrap();
        dir.write(
            "batch.jwks.json",
            serde_json::json!({"keys": [batch.public_jwk().to_json()]}).to_string().as_bytes(),
        );
        Self { dir, batch, key: DpopKey::generate(Algorithm::ES256).unwrap() }
    }

    /// A replica: `payments.create` limited to 1/m with a burst of 2 for
    /// each of `worker` and `batch`, `reports.read` unlimited.
    async fn replica(&self, n: usize, redis: Option<&str>) -> ServerHandle {
        let replay = redis.map(|url| format!("[replay.redis]\nurl = \"{url}\"\n")).unwrap_or_default();
        let toml = format!(
            r#"
            issuer = "{ISSUER}"
            [server]
            listen = "127.0.0.1:0"
            admin_listen = "127.0.0.1:0"
            [signing_key]
            generate = true
            [telemetry]
            otlp = "off"
            [audit]
            sink = "file"
            path = "audit-{n}.jsonl"
            {replay}
            [[clients]]
            id = "worker"
            auth = "client_secret_basic"
            secret_sha256 = "{}"
            [[clients]]
            id = "batch"
            auth = "private_key_jwt"
            jwks_file = "batch.jwks.json"
            [[templates]]
            name = "payments.create"
            clients = ["worker", "batch"]
            actions = ["POST:/payments/:id"]
            audience = "https://api.example.com"
            rate = "1/m"
            burst = 2
            [[templates]]
            name = "reports.read"
            clients = ["worker"]
            actions = ["GET:/reports/:id"]
            audience = "https://api.example.com"
            "#,
            sha256_hex(WORKER_SECRET.as_bytes())
        );
        Server::start(Config::from_toml(&toml, &self.dir.0, &|_| Ok(None)).unwrap()).await.unwrap()
    }

    fn proof(&self) -> String {
        self.key.proof("POST", TOKEN_ENDPOINT, None, None, now()).unwrap()
    }

    async fn worker(&self, server: &ServerHandle, template: &str) -> Answer {
        let url = format!("http://{}/token", server.public_addr());
        token_request(&url, Auth::Basic("worker", WORKER_SECRET), Some(self.proof()), &[("scope", template)]).await
    }

    async fn batch(&self, server: &ServerHandle, jwt: &str, proof: &str) -> Answer {
        let url = format!("http://{}/token", server.public_addr());
        token_request(
            &url,
            Auth::Assertion("batch", jwt.to_owned()),
            Some(proof.to_owned()),
            &[("scope", "payments.create")],
        )
        .await
    }

    fn audit(&self, n: usize) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.0.join(format!("audit-{n}.jsonl"))).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// `calls=` of `cmdstat_<cmd>` in `INFO commandstats`.
fn calls(stats: &str, cmd: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

fn assert_limited(answer: &Answer) {
    assert_eq!(answer.status, 429, "{:?}", answer.body);
    assert_eq!(answer.error(), "rate_limited");
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    // The third token of a 1/m, burst 2 budget: earned back one minute after
    // the first, i.e. now (minus the time the test took) + 60 s.
    assert!((55..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let description = answer.json()["error_description"].as_str().unwrap().to_owned();
    assert!(description.contains("payments.create") && description.contains("retry after"), "{description}");
    assert!(answer.json().get("access_token").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_replicas_and_are_counted_and_audited() {
    bounded(async {
        let s = Setup::new("rate-fleet");
        let redis = RedisServer::start();
        let (a, b) = (s.replica(0, Some(&redis.url())).await, s.replica(1, Some(&redis.url())).await);

        // Two tokens (the burst), one from each replica; the third, from
        // either, is refused.
        assert_eq!(s.worker(&a, "payments.create").await.status, 200);
        assert_eq!(s.worker(&b, "payments.create").await.status, 200);
        assert_limited(&s.worker(&a, "payments.create").await);
        assert_limited(&s.worker(&b, "payments.create").await);
        // Other templates and other clients have their own budgets.
        assert_eq!(s.worker(&a, "reports.read").await.status, 200);
        let (jwt, proof) = (assertion(&s.batch, "batch", TOKEN_ENDPOINT, "b-1"), s.proof());
        assert_eq!(s.batch(&a, &jwt, &proof).await.status, 200);

        // A replay is refused before it can spend the client's budget: five
        // replays of batch's request, then batch still gets its second token.
        for _ in 0..5 {
            assert_eq!(s.batch(&b, &jwt, &proof).await.error(), "invalid_client");
        }
        let second = s.batch(&b, &assertion(&s.batch, "batch", TOKEN_ENDPOINT, "b-2"), &s.proof()).await;
        assert_eq!(second.status, 200, "{:?}", second.body);
        let (jwt, proof) = (assertion(&s.batch, "batch", TOKEN_ENDPOINT, "b-3"), s.proof());
        assert_limited(&s.batch(&a, &jwt, &proof).await);
        // The refused request's proof and assertion were spent: a retry
        // needs fresh ones.
        assert_eq!(s.batch(&a, &jwt, &proof).await.error(), "invalid_client");

        // Counted and audited (replica A: worker once, batch once).
        let metrics = a.telemetry().prometheus_text().unwrap();
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("ekey_issue_tokens_total{")
                    && l.contains("ekey_outcome=\"rate_limited\"")
                    && l.contains("ekey_template=\"payments.create\"")
            })
            .unwrap_or_else(|| panic!("no rate_limited series:\n{metrics}"));
        assert!(line.ends_with(" 2"), "{line}");
        let limited: Vec<Value> = s.audit(0).into_iter().filter(|e| e["outcome"] == "rate_limited").collect();
        assert_eq!(limited.len(), 2);
        assert_eq!(limited[0]["reason"], "client_rate_limited");
        assert_eq!((limited[0]["sub"].as_str(), limited[1]["sub"].as_str()), (Some("worker"), Some("batch")));
        assert!(limited.iter().all(|e| e["template"] == "payments.create" && e["trace"].is_null()));

        // One script call per limited request and nothing else besides the
        // replay cache's SETs (none for an unlimited template).
        redis.cli(&["CONFIG", "RESETSTAT"]);
        for server in [&a, &b, &a] {
            s.worker(server, "payments.create").await;
        }
        s.worker(&b, "reports.read").await;
        let stats = redis.cli(&["INFO", "commandstats"]);
        assert_eq!((calls(&stats, "evalsha"), calls(&stats, "eval"), calls(&stats, "set")), (3, 0, 4), "{stats}");

        // Keys: one per (client, template), the client's hash tag, a TTL no
        // longer than the burst window (2 min).
        let keys: Vec<String> = redis.cli(&["--scan", "--pattern", "ekey:rate:*"]).lines().map(str::to_owned).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        for k in &keys {
            let (tag, template) = k.strip_prefix("ekey:rate:{").unwrap().split_once("}:").unwrap();
            assert_eq!((tag.len(), template), (43, "payments.create"), "{k}");
            let ttl: i64 = redis.cli(&["PTTL", k]).parse().unwrap();
            assert!((1..=120_000).contains(&ttl), "{k}: PTTL {ttl}");
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn without_redis_each_process_has_its_own_budget() {
    bounded(async {
        let s = Setup::new("rate-memory");
        let (a, b) = (s.replica(0, None).await, s.replica(1, None).await);
        for server in [&a, &b] {
            assert_eq!(s.worker(server, "payments.create").await.status, 200);
            assert_eq!(s.worker(server, "payments.create").await.status, 200);
            assert_limited(&s.worker(server, "payments.create").await);
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// Two limiters (two replicas) spend the budgets of `clients` clients from
/// 8 tasks: 5 attempts each, burst 3, one token per hour. Every client gets
/// exactly 3.
async fn exact_bound_over_many_clients(a: Arc<dyn RateLimiter>, b: Arc<dyn RateLimiter>, clients: usize) {
    let limit = RateLimit::parse("1/h", Some(3)).unwrap();
    let admitted: Arc<Vec<AtomicU32>> = Arc::new((0..clients).map(|_| AtomicU32::new(0)).collect());
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (a, b, admitted) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&admitted));
            tokio::spawn(async move {
                let mut retry_after = Vec::new();
                for attempt in 0..5 {
                    for c in (0..clients).filter(|c| (c + attempt) % 8 == t) {
                        let limiter = if (c + attempt) % 2 == 0 { &a } else { &b };
                        match limiter.admit(&format!("client-{c}"), "payments.create", &limit).await.unwrap() {
                            Admission::Admitted => {
                                admitted[c].fetch_add(1, Ordering::Relaxed);
                            }
                            Admission::Limited { retry_after: r } => retry_after.push(r),
                        }
                    }
                }
                retry_after
            })
        })
        .collect();
    let started = Instant::now();
    let mut refusals = Vec::new();
    for t in tasks {
        refusals.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    for (c, n) in admitted.iter().enumerate() {
        assert_eq!(n.load(Ordering::Relaxed), 3, "client-{c}");
    }
    assert_eq!(refusals.len(), clients * 2);
    // The fourth token is one hour after the first.
    let earliest = Duration::from_secs(3600).saturating_sub(elapsed + Duration::from_secs(1));
    assert!(refusals.iter().all(|r| (earliest..=Duration::from_secs(3600)).contains(r)), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_across_two_replicas_on_one_redis() {
    bounded(async {
        let redis = RedisServer::start();
        let connect = || async {
            Arc::new(RedisRateLimiter::new(Arc::new(
                RedisConnection::connect(RedisStoreSettings::single(redis.url())).await.unwrap(),
            )))
        };
        let (a, b) = (connect().await, connect().await);
        // Warm the script cache so that the count below is exact.
        let warm = RateLimit::parse("1/s", None).unwrap();
        a.admit("warm-up", "t", &warm).await.unwrap();
        redis.cli(&["CONFIG", "RESETSTAT"]);

        exact_bound_over_many_clients(a.clone(), b.clone(), 10_000).await;
        let stats = redis.cli(&["INFO", "commandstats"]);
        assert_eq!((calls(&stats, "evalsha"), calls(&stats, "eval")), (50_000, 0), "{stats}");
        let keys = redis.cli(&["--scan", "--pattern", "ekey:rate:*:payments.create"]).lines().count();
        assert_eq!(keys, 10_000);
        assert_eq!(a.failures() + b.failures(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_across_two_replicas_on_a_cluster() {
    bounded(async {
        let cluster = RedisCluster::start(3);
        let connect = || async {
            Arc::new(RedisRateLimiter::new(Arc::new(
                RedisConnection::connect(RedisStoreSettings::cluster(cluster.urls())).await.unwrap(),
            )))
        };
        let (a, b) = (connect().await, connect().await);
        exact_bound_over_many_clients(a.clone(), b.clone(), 10_000).await;
        // Clients spread over every primary; each client's buckets in one slot.
        let mut total = 0;
        for node in &cluster.nodes {
            let n = node.cli(&["--scan", "--pattern", "ekey:rate:*"]).lines().count();
            assert!(n > 2_000, "node {} holds {n} buckets", node.port);
            total += n;
        }
        assert_eq!(total, 10_000);
        let key = a.key("client-7", "payments.create");
        let other = a.key("client-7", "reports.read");
        let slot = |k: &str| cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", k]);
        assert_eq!(slot(&key), slot(&other));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refill_stays_within_the_bound_on_redis() {
    bounded(async {
        let redis = RedisServer::start();
        let conn = Arc::new(RedisConnection::connect(RedisStoreSettings::single(redis.url())).await.unwrap());
        let (a, b) = (Arc::new(RedisRateLimiter::new(conn.clone())), Arc::new(RedisRateLimiter::new(conn)));
        let limit = RateLimit::parse("20/s", Some(5)).unwrap(); // T = 50 ms
        const CLIENTS: usize = 50;
        let admitted: Arc<Vec<AtomicU32>> = Arc::new((0..CLIENTS).map(|_| AtomicU32::new(0)).collect());
        let started = Instant::now();
        let run_for = Duration::from_millis(1200);
        let tasks: Vec<_> = (0..6)
            .map(|t| {
                let (a, b, admitted) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&admitted));
                tokio::spawn(async move {
                    let mut i = t;
                    while started.elapsed() < run_for {
                        let c = i % CLIENTS;
                        let limiter = if i % 2 == 0 { &a } else { &b };
                        if limiter.admit(&format!("c{c}"), "t", &limit).await.unwrap() == Admission::Admitted {
                            admitted[c].fetch_add(1, Ordering::Relaxed);
                        }
                        i += 7;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        // GCRA: from a rested bucket, at most burst + elapsed / T in any
        // interval of length `elapsed`; and, hammered all along, close to it.
        let bound = 5 + (elapsed.as_micros() / 50_000) as u32;
        for (c, n) in admitted.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            assert!(n <= bound, "c{c}: {n} admitted, bound {bound} over {elapsed:?}");
            assert!(n >= bound / 2, "c{c}: only {n} admitted, bound {bound} over {elapsed:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limiter_at_a_hundred_thousand_clients() {
    bounded(async {
        const CLIENTS: usize = 100_000;
        let ids: Vec<String> = (0..CLIENTS).map(|c| format!("client-{c}")).collect();
        let limiter = Arc::new(MemoryRateLimiter::new([("payments.create", ids.iter().map(String::as_str))]));
        assert_eq!(limiter.buckets(), CLIENTS);
        exact_bound_over_many_clients(limiter.clone(), limiter.clone(), CLIENTS).await;
        // Nothing was added or evicted on the request path.
        assert_eq!(limiter.buckets(), CLIENTS);

        // The cost of a request does not grow with the number of clients:
        // the same 200 000 requests against 100 clients and against 100 000.
        let small_ids: Vec<String> = (0..100).map(|c| format!("client-{c}")).collect();
        let small = MemoryRateLimiter::new([("payments.create", small_ids.iter().map(String::as_str))]);
        let limit = RateLimit::parse("1000000/s", Some(1_000_000)).unwrap();
        let time = |l: &MemoryRateLimiter, ids: &[String]| {
            let started = Instant::now();
            for i in 0..200_000usize {
                let id = &ids[(i * 7919) % ids.len()];
                futures_block(l.admit(id, "payments.create", &limit)).unwrap();
            }
            started.elapsed()
        };
        let base = time(&small, &small_ids);
        let large = time(&limiter, &ids);
        let ratio = large.as_secs_f64() / base.as_secs_f64();
        println!("memory limiter: cost per request at 100 000 clients / at 100 clients = {ratio:.2}");
        assert!(ratio < 20.0, "per-request cost grew {ratio:.1}× with the number of clients");
    })
    .await;
}

/// Polls a future that never waits (the memory limiter's) to completion.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the memory limiter waited"),
    }
}
