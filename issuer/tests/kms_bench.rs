//! Issuance rate: the raw ES256 sign rate of the crypto library, tokens per
//! second through the whole issuer (HTTP, client auth, DPoP, policy, one
//! signature) with the local signer, and with a KMS stand-in that adds a
//! fixed 10 ms to every signature. Printed for the record; the assertion is
//! the property that matters: signatures run concurrently, so a 10 ms
//! signer still issues many more than 100 tokens per second.
//!
//! `cargo test -p ekey-issuer --release --test kms_bench -- --nocapture`

#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::*;
use ekey_issuer::{Config, LocalSigner, Providers, Server, ServerHandle, SignError, Signer};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, PublicJwk};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-client-secret-0123456789ab";
const CONCURRENCY: usize = 16;
const RUN: Duration = Duration::from_millis(1500);
const KMS_LATENCY: Duration = Duration::from_millis(10);

/// A local key behind a fixed network-like delay, as a remote KMS would be.
#[derive(Debug)]
struct Delayed(LocalSigner, Duration);

#[async_trait]
impl Signer for Delayed {
    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
    fn public_jwk(&self) -> &PublicJwk {
        self.0.public_jwk()
    }
    async fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        tokio::time::sleep(self.1).await;
        self.0.sign(input).await
    }
}

async fn issuer(signer: Arc<dyn Signer>) -> ServerHandle {
    let config = Config::from_toml_str(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [signing_key]
        generate = true
        [[clients]]
        id = "worker"
        auth = "client_secret_basic"
        secret_sha256 = "{}"
        [[templates]]
        name = "payments.create"
        clients = ["worker"]
        actions = ["POST:/payments/:id"]
        audience = "https://api.example"
        "#,
        sha256_hex(SECRET.as_bytes())
    ))
    .unwrap();
    let providers = Providers::from_config(&config).await.unwrap().with_signer(signer);
    Server::start_with(config, providers).await.unwrap()
}

/// Tokens per second from `CONCURRENCY` clients for `RUN`; every answer must be 200.
async fn issuance_rate(server: &ServerHandle) -> f64 {
    let endpoint = server.urls().token_endpoint.clone();
    let details = json!([{"type": "ekey_capability", "action": "POST:/payments/1"}]).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (endpoint, details, stop, issued) = (endpoint.clone(), details.clone(), stop.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let key = DpopKey::generate(Algorithm::ES256).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let proof = key.proof("POST", &endpoint, None, None, now()).unwrap();
                let res = token_request(
                    &endpoint,
                    Auth::Basic("worker", SECRET),
                    Some(proof),
                    &[("authorization_details", &details)],
                )
                .await;
                assert_eq!(res.status, 200, "{:?}", res.body);
                issued.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    issued.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_rate_local_and_with_a_10ms_signer() {
    bounded(async {
        let local = LocalSigner::generate(Algorithm::ES256).unwrap();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_millis(500) {
            local.sign(b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ").await.unwrap();
            n += 1;
        }
        let raw = f64::from(n) / started.elapsed().as_secs_f64();

        let server = issuer(Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap())).await;
        let with_local = issuance_rate(&server).await;
        server.shutdown().await;

        let delayed = Delayed(LocalSigner::generate(Algorithm::ES256).unwrap(), KMS_LATENCY);
        let server = issuer(Arc::new(delayed)).await;
        let with_kms = issuance_rate(&server).await;
        server.shutdown().await;

        eprintln!(
            "issuance ({CONCURRENCY} concurrent clients, HTTP/1.1, a new connection per request): \
             raw ES256 sign {raw:.0}/s (one thread); local signer {with_local:.0} tokens/s; \
             {} ms signer {with_kms:.0} tokens/s",
            KMS_LATENCY.as_millis()
        );
        // One signature at a time would cap a 10 ms signer at 100 tokens/s.
        let serial_cap = 1.0 / KMS_LATENCY.as_secs_f64();
        assert!(with_kms > 2.0 * serial_cap, "signatures are not concurrent: {with_kms:.0} tokens/s");
    })
    .await;
}
