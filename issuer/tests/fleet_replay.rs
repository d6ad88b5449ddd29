//! The replay cache shared by a fleet of issuers, against real redis-server
//! (one node, and a 3-master cluster): an assertion or DPoP proof used at
//! one replica is refused at the other; one `SET` per identifier; fixed-size
//! keys with TTLs; Redis paused or killed mid-run fails closed (503 +
//! `Retry-After`, counted and audited), nothing is accepted twice, and the
//! replicas recover without a restart; `check-config` warns about a fleet
//! that keeps its replay cache per process.

// Test helpers outside #[test] functions panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;
// The verifier's redis-server harness, shared rather than copied.
#[allow(dead_code)]
#[path = "../../verifier/tests/common/redis.rs"]
mod redis_harness;

use common::*;
use ekey_issuer::{Config, Server, ServerHandle};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, KeyPair};
use http::Method;
use redis_harness::{RedisCluster, RedisServer};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fleet's public URLs: every replica has the same, as behind a balancer.
const ISSUER: &str = "https://issuer.example.com";
const TOKEN_ENDPOINT: &str = "https://issuer.example.com/token";

/// Files every replica shares: the signing key and the `batch` client's keys.
struct Fleet {
    dir: TempDir,
    batch: KeyPair,
}

impl Fleet {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        dir.write("signing.pem", KeyPair::generate(Algorithm::ES256).unwrap().to_pem());
        let batch = KeyPair::generate(Algorithm::ES256).unwrap();
        dir.write(
            "batch.jwks.json",
            serde_json::json!({"keys": [batch.public_jwk().to_json()]}).to_string().as_bytes(),
        );
        Self { dir, batch }
    }

    /// Replica `n`'s config; `replay` is the `[replay.redis]` body, or none
    /// for the per-process cache.
    fn config(&self, n: usize, replay: Option<&str>) -> Config {
        let replay = replay.map(|r| format!("[replay.redis]\n{r}\nrequest_timeout_ms = 300\n")).unwrap_or_default();
        let toml = format!(
            r#"
            issuer = "{ISSUER}"
            [server]
            listen = "127.0.0.1:0"
            admin_listen = "127.0.0.1:0"
            replicas = 2
            [signing_key]
            file = "signing.pem"
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
            "#,
            sha256_hex(WORKER_SECRET.as_bytes())
        );
        Config::from_toml(&toml, &self.dir.0, &|_| Ok(None)).unwrap()
    }

    /// Two replicas sharing `replay` (or each with its own memory cache).
    async fn replicas(&self, replay: Option<&str>) -> (ServerHandle, ServerHandle) {
        let a = Server::start(self.config(0, replay)).await.unwrap();
        let b = Server::start(self.config(1, replay)).await.unwrap();
        (a, b)
    }

    fn assertion(&self, jti: &str) -> String {
        assertion(&self.batch, "batch", TOKEN_ENDPOINT, jti)
    }

    fn audit(&self, n: usize) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.0.join(format!("audit-{n}.jsonl"))).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn url(server: &ServerHandle) -> String {
    format!("http://{}/token", server.public_addr())
}

fn proof(key: &DpopKey) -> String {
    key.proof("POST", TOKEN_ENDPOINT, None, None, now()).unwrap()
}

/// `batch` asks `server` for a token with `assertion` and `proof`.
async fn by_assertion(server: &ServerHandle, assertion: &str, proof: &str) -> Answer {
    token_request(
        &url(server),
        Auth::Assertion("batch", assertion.to_owned()),
        Some(proof.to_owned()),
        &[("scope", "payments.create")],
    )
    .await
}

/// `worker` (Basic) asks `server` for a token with `proof`.
async fn by_secret(server: &ServerHandle, proof: &str) -> Answer {
    token_request(
        &url(server),
        Auth::Basic("worker", WORKER_SECRET),
        Some(proof.to_owned()),
        &[("scope", "payments.create")],
    )
    .await
}

fn reason(answer: &Answer, fleet: &Fleet, n: usize) -> (u16, String, String) {
    let last = fleet.audit(n).pop().unwrap_or_default();
    (answer.status.as_u16(), answer.error(), last["reason"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_refused_at_every_replica() {
    bounded(async {
        let fleet = Fleet::new("fleet-replay");
        let key = DpopKey::generate(Algorithm::ES256).unwrap();

        // Per process (the default): the second use of one assertion and
        // one proof is accepted at the other replica. This is what a shared
        // cache is for.
        let (a, b) = fleet.replicas(None).await;
        let (jwt, p) = (fleet.assertion("memory-1"), proof(&key));
        assert_eq!(by_assertion(&a, &jwt, &p).await.status, 200);
        assert_eq!(by_assertion(&b, &jwt, &p).await.status, 200, "per-process caches do not see each other");
        a.shutdown().await;
        b.shutdown().await;

        let redis = RedisServer::start();
        let (a, b) = fleet.replicas(Some(&format!("url = \"{}\"", redis.url()))).await;

        // An assertion used at A is refused at B, even with a fresh proof.
        let (jwt, p) = (fleet.assertion("shared-1"), proof(&key));
        let first = by_assertion(&a, &jwt, &p).await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        let again = by_assertion(&b, &jwt, &proof(&key)).await;
        assert_eq!(reason(&again, &fleet, 1), (401, "invalid_client".into(), "client_assertion_replayed".into()));
        // A proof used at A is refused at B, even with a fresh assertion.
        let again = by_assertion(&b, &fleet.assertion("shared-2"), &p).await;
        assert_eq!(reason(&again, &fleet, 1), (400, "invalid_dpop_proof".into(), "dpop_proof_replayed".into()));
        // The same for a client without an assertion: its proof is the
        // only one-time identifier.
        let p = proof(&key);
        assert_eq!(by_secret(&b, &p).await.status, 200);
        let again = by_secret(&a, &p).await;
        assert_eq!(reason(&again, &fleet, 0), (400, "invalid_dpop_proof".into(), "dpop_proof_replayed".into()));

        // A race: the same request sent 16 times at once, to both replicas.
        let (jwt, p) = (fleet.assertion("race"), proof(&key));
        let (a, b) = (Arc::new(a), Arc::new(b));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let server = Arc::clone(if i % 2 == 0 { &a } else { &b });
                let (jwt, p) = (jwt.clone(), p.clone());
                tokio::spawn(async move { by_assertion(&server, &jwt, &p).await.status.as_u16() })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| [200, 400, 401].contains(s)), "{statuses:?}");

        // Keys: fixed size, under the prefix, nothing of the request in
        // clear, and each with a TTL no longer than its identifier needs.
        let keys: Vec<String> = redis.cli(&["--scan", "--pattern", "ekey:jti:*"]).lines().map(str::to_owned).collect();
        assert!(keys.len() >= 6, "{keys:?}");
        for k in &keys {
            assert_eq!(k.len(), "ekey:jti:".len() + 43, "{k}");
            assert!(!k.contains("shared") && !k.contains("race"), "{k}");
            let ttl: i64 = redis.cli(&["PTTL", k]).parse().unwrap();
            // Assertions: exp (60 s) + leeway (5 s); proofs: iat + max_age
            // (60 s) + 2 × leeway.
            assert!((1..=70_000).contains(&ttl), "{k}: PTTL {ttl}");
        }

        // One round trip per identifier: a SET for the assertion and one
        // for the proof, nothing else.
        redis.cli(&["CONFIG", "RESETSTAT"]);
        for i in 0..10 {
            let server = if i % 2 == 0 { &a } else { &b };
            assert_eq!(by_assertion(server, &fleet.assertion(&format!("count-{i}")), &proof(&key)).await.status, 200);
        }
        let stats = redis.cli(&["INFO", "commandstats"]);
        let calls = |cmd: &str| -> u64 {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
                .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
        };
        assert_eq!(calls("set"), 20, "{stats}");
        let others: Vec<&str> = stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_"))
            .filter(|l| {
                !["cmdstat_set:", "cmdstat_info:", "cmdstat_config|resetstat:"].iter().any(|c| l.starts_with(c))
            })
            .collect();
        assert!(others.is_empty(), "commands besides SET: {others:?}");

        // The admin listener reports the shared cache.
        let ready = send(Method::GET, &format!("http://{}/readyz", a.admin_addr()), &[], None).await;
        assert_eq!(ready.status, 200);
        assert_eq!(ready.body, "ready: config loaded, signer ok, replay cache (redis) ok\n");
        Arc::try_unwrap(a).unwrap().shutdown().await;
        Arc::try_unwrap(b).unwrap().shutdown().await;
    })
    .await;
}

/// One request of the load loop: sent to A, then the very same to B.
#[derive(Debug, Clone)]
struct Sent {
    jwt: String,
    proof: String,
    a: Answer,
    b: Answer,
}

/// `redis-server`'s pid, for SIGSTOP / SIGCONT.
fn pid(redis: &RedisServer) -> String {
    let info = redis.cli(&["INFO", "server"]);
    info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().to_owned()
}

fn signal(pid: &str, sig: &str) {
    assert!(std::process::Command::new("kill").args([sig, pid]).status().unwrap().success());
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn metric(text: &str, outcome: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("ekey_issue_tokens_total{") && l.contains(&format!("ekey_outcome=\"{outcome}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_nothing_twice_and_recovers() {
    bounded(async {
        let fleet = Arc::new(Fleet::new("fleet-outage"));
        let mut redis = RedisServer::start();
        let (a, b) = fleet.replicas(Some(&format!("url = \"{}\"", redis.url()))).await;
        let (a, b) = (Arc::new(a), Arc::new(b));

        // Load: a fresh assertion and proof per request, sent to A and then,
        // unchanged, to B (a captured request replayed at another replica).
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let running = Arc::new(AtomicBool::new(true));
        let load = {
            let (fleet, sent, running, a, b) =
                (Arc::clone(&fleet), Arc::clone(&sent), Arc::clone(&running), Arc::clone(&a), Arc::clone(&b));
            tokio::spawn(async move {
                let key = DpopKey::generate(Algorithm::ES256).unwrap();
                let mut i = 0;
                while running.load(Ordering::SeqCst) {
                    let (jwt, proof) = (fleet.assertion(&format!("load-{i}")), proof(&key));
                    let first = by_assertion(&a, &jwt, &proof).await;
                    let second = by_assertion(&b, &jwt, &proof).await;
                    sent.lock().unwrap().push(Sent { jwt, proof, a: first, b: second });
                    i += 1;
                }
            })
        };
        let count = |status: u16| sent.lock().unwrap().iter().filter(|s| s.a.status == status).count();
        wait_until("requests served before the outage", || count(200) >= 5).await;
        let before: Vec<Sent> = sent.lock().unwrap().clone();

        // Redis stops answering (SIGSTOP): every request fails closed within
        // request_timeout_ms, and the replicas report not ready.
        let pid = pid(&redis);
        signal(&pid, "-STOP");
        let at_stop = sent.lock().unwrap().len();
        wait_until("503s while Redis is stopped", || {
            sent.lock().unwrap()[at_stop..].iter().filter(|s| s.a.status == 503).count() >= 3
        })
        .await;
        let ready = send(Method::GET, &format!("http://{}/readyz", b.admin_addr()), &[], None).await;
        assert_eq!(ready.status, 503);
        let text = String::from_utf8_lossy(&ready.body);
        assert!(text.starts_with("not ready: replay cache (redis): redis PING: "), "{text}");

        // Back: served again by the same processes, and what was accepted
        // before is still refused everywhere.
        signal(&pid, "-CONT");
        let at_cont = sent.lock().unwrap().len();
        wait_until("recovery after SIGCONT", || {
            sent.lock().unwrap()[at_cont..].iter().filter(|s| s.a.status == 200).count() >= 3
        })
        .await;
        for s in before.iter().filter(|s| s.a.status == 200).take(3) {
            for server in [&a, &b] {
                let again = by_assertion(server, &s.jwt, &s.proof).await;
                assert_eq!((again.status.as_u16(), again.error().as_str()), (401, "invalid_client"));
            }
        }
        assert_eq!(send(Method::GET, &format!("http://{}/readyz", b.admin_addr()), &[], None).await.status, 200);

        // Redis killed: refused at once (connection refused), then served
        // again once it is back, without restarting the issuers.
        redis.kill();
        let at_kill = sent.lock().unwrap().len();
        wait_until("503s while Redis is down", || {
            sent.lock().unwrap()[at_kill..].iter().filter(|s| s.a.status == 503).count() >= 3
        })
        .await;
        redis.restart();
        let at_restart = sent.lock().unwrap().len();
        wait_until("recovery after a restart", || {
            sent.lock().unwrap()[at_restart..].iter().filter(|s| s.a.status == 200).count() >= 3
        })
        .await;
        running.store(false, Ordering::SeqCst);
        load.await.unwrap();

        // Nothing accepted twice; every refusal is a replay refusal or a
        // fail-closed 503 with Retry-After.
        let sent = sent.lock().unwrap().clone();
        let unavailable = AtomicUsize::new(0);
        for (i, s) in sent.iter().enumerate() {
            assert!(!(s.a.status == 200 && s.b.status == 200), "request {i} accepted by both replicas");
            for (name, answer) in [("A", &s.a), ("B", &s.b)] {
                match answer.status.as_u16() {
                    200 => {}
                    401 => assert_eq!(answer.error(), "invalid_client", "{name} {i}"),
                    503 => {
                        assert_eq!(answer.error(), "temporarily_unavailable", "{name} {i}");
                        assert_eq!(answer.header("retry-after"), Some("1"), "{name} {i}");
                        if name == "A" {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => panic!("{name} {i}: status {other}: {:?}", answer.body),
                }
            }
        }
        // Counted and audited like every other refusal (replica A).
        let unavailable = unavailable.into_inner() as u64;
        let metrics = a.telemetry().prometheus_text().unwrap();
        assert_eq!(metric(&metrics, "temporarily_unavailable"), unavailable, "{metrics}");
        let audited = fleet.audit(0).iter().filter(|e| e["reason"] == "replay_cache_unavailable").count() as u64;
        assert_eq!(audited, unavailable);
        assert!(unavailable >= 6);
        Arc::try_unwrap(a).ok().unwrap().shutdown().await;
        Arc::try_unwrap(b).ok().unwrap().shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_refused_across_replicas_on_a_cluster() {
    bounded(async {
        let cluster = RedisCluster::start(3);
        let fleet = Fleet::new("fleet-cluster");
        let seeds: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
        let (a, b) = fleet.replicas(Some(&format!("cluster = [{}]", seeds.join(", ")))).await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();

        let (jwt, p) = (fleet.assertion("cluster-1"), proof(&key));
        assert_eq!(by_assertion(&a, &jwt, &p).await.status, 200);
        assert_eq!(by_assertion(&b, &jwt, &proof(&key)).await.error(), "invalid_client");
        assert_eq!(by_assertion(&b, &fleet.assertion("cluster-2"), &p).await.error(), "invalid_dpop_proof");

        // Keys carry no hash tag, so they spread over every primary.
        for i in 0..30 {
            let server = if i % 2 == 0 { &a } else { &b };
            assert_eq!(by_assertion(server, &fleet.assertion(&format!("spread-{i}")), &proof(&key)).await.status, 200);
        }
        for node in &cluster.nodes {
            let keys = node.cli(&["--scan", "--pattern", "ekey:jti:*"]);
            assert!(keys.lines().count() >= 3, "node {} holds {} keys", node.port, keys.lines().count());
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn check_config_warns_about_a_fleet_with_a_per_process_cache() {
    bounded(async {
        let fleet = Fleet::new("fleet-check");
        let redis = RedisServer::start();
        let check = |name: &str, extra: &str| {
            let text = format!(
                "issuer = \"{ISSUER}\"\n[server]\nlisten = \"0.0.0.0:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra}\n\
                 [signing_key]\nfile = \"signing.pem\"\n[audit]\nsink = \"off\"\n[telemetry]\notlp = \"off\"\n"
            );
            let path = fleet.dir.write(name, text.as_bytes());
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_ekey-issuer"))
                .args(["check-config", "--config"])
                .arg(path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let warning = "warning: replay: the replay cache and rate limits are per process, but this looks like a fleet";
        let out = check("public.toml", "");
        assert!(out.contains(&format!("{warning} (server.listen 0.0.0.0:0 is not loopback)")), "{out}");
        let out = check("three.toml", "replicas = 3");
        assert!(out.contains(&format!("{warning} (server.replicas = 3)")), "{out}");
        let out = check("single.toml", "replicas = 1");
        assert!(out.starts_with("config OK") && !out.contains("warning: replay"), "{out}");
        assert!(out.contains(", replay cache memory\n"), "{out}");
        let out = check("shared.toml", &format!("replicas = 3\n[replay.redis]\nurl = \"{}\"", redis.url()));
        assert!(out.starts_with("config OK") && !out.contains("warning: replay"), "{out}");
        assert!(out.contains(", replay cache redis\n"), "{out}");

        // A Redis that cannot be reached stops check-config, naming the field.
        let path = fleet.dir.write(
            "down.toml",
            b"[signing_key]\ngenerate = true\n[audit]\nsink = \"off\"\n[replay.redis]\nurl = \"redis://127.0.0.1:1\"\nconnect_timeout_ms = 200\n",
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ekey-issuer"))
            .args(["check-config", "--config"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("replay.redis: cannot connect to Redis"), "{stderr}");
    })
    .await;
}
