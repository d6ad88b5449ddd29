//! Issuance rate: the raw ES256 sign rate of the crypto library, tokens per
//! second through the whole issuer (HTTP, client auth, DPoP, policy, one
//! signature) with the local signer, and with a KMS stand-in that adds a
//! fixed 10 ms to every signature. Figures are printed as ratios to the raw
//! sign rate measured in the same run; nothing is asserted on time. The
//! assertion is the property that matters: signatures run concurrently (the
//! stand-in counts how many were in flight at once), so a slow KMS does not
//! serialise issuance.
//!
//! `cargo test -p ekey-issuer --release --test kms_bench -- --nocapture`

#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::*;
use ekey_issuer::{LocalSigner, ServerHandle, SignError, Signer};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, PublicJwk};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AUDIENCE: &str = "https://api.example";
const CONCURRENCY: usize = 16;
const RUN: Duration = Duration::from_millis(1500);
const KMS_LATENCY: Duration = Duration::from_millis(10);

/// A local key behind a fixed network-like delay, as a remote KMS would be,
/// counting the signatures in flight and the most seen at once.
#[derive(Debug)]
struct Delayed {
    key: LocalSigner,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: Arc<AtomicUsize>,
}

#[async_trait]
impl Signer for Delayed {
    fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }
    fn public_jwk(&self) -> &PublicJwk {
        self.key.public_jwk()
    }
    async fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let signed = self.key.sign(input).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        signed
    }
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
                    Auth::Basic("worker", WORKER_SECRET),
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

        let server = issuer_with_signer(Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap()), AUDIENCE).await;
        let with_local = issuance_rate(&server).await;
        server.shutdown().await;

        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let delayed = Delayed {
            key: LocalSigner::generate(Algorithm::ES256).unwrap(),
            delay: KMS_LATENCY,
            in_flight: AtomicUsize::new(0),
            max_in_flight: max_in_flight.clone(),
        };
        let server = issuer_with_signer(Arc::new(delayed), AUDIENCE).await;
        let with_kms = issuance_rate(&server).await;
        server.shutdown().await;

        let serial_cap = 1.0 / KMS_LATENCY.as_secs_f64();
        let max_in_flight = max_in_flight.load(Ordering::SeqCst);
        eprintln!(
            "issuance ({CONCURRENCY} concurrent clients, HTTP/1.1, a new connection per request): \
             raw ES256 sign {raw:.0}/s (one thread); local signer {with_local:.0} tokens/s; \
             {} ms signer {with_kms:.0} tokens/s, at most {max_in_flight} signatures in flight",
            KMS_LATENCY.as_millis()
        );
        println!(
            "{}",
            json!({
                "bench": "issuance",
                "raw_sign_per_s": raw,
                "local_ratio_to_raw_sign": with_local / raw,
                "delayed_ratio_to_serial_cap": with_kms / serial_cap,
                "max_signatures_in_flight": max_in_flight,
            })
        );
        // One signature at a time would be a serial bottleneck behind a slow KMS.
        assert!(max_in_flight >= 2, "signatures are not concurrent: at most {max_in_flight} in flight");
    })
    .await;
}
