//! Many concurrent uses of one token: exactly `limit` succeed.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::{race_one_token, Issuer, AUDIENCE, NOW};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, PresentedRequest};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_uses_exactly_limit_succeed() {
    for limit in [1u32, 7, 250] {
        let issuer = Issuer::new();
        let verifier = Arc::new(issuer.verifier().0);
        let used = race_one_token(&issuer, &[verifier], limit).await;
        assert_eq!(used, (1..=limit).collect::<Vec<_>>(), "limit {limit}: each use counted once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_proof_replayed_concurrently_is_accepted_once() {
    let issuer = Issuer::new();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "GET:/r", 1000);
    let (verifier, _) = issuer.verifier();
    let verifier = Arc::new(verifier);
    let url = format!("{AUDIENCE}/r");
    let proof = client.proof("GET", &url, Some(&token), None, NOW).unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (verifier, token, url, proof) = (verifier.clone(), token.clone(), url.clone(), proof.clone());
            tokio::spawn(async move {
                let auth = format!("DPoP {token}");
                let req = PresentedRequest {
                    method: "GET",
                    url: &url,
                    authorization: Some(&auth),
                    dpop: vec![&proof],
                    ..Default::default()
                };
                verifier.verify(&req).await.map(|c| c.used).map_err(|r| r.reason())
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(reason) => assert_eq!(reason, "replay_blocked"),
        }
    }
    assert_eq!(ok, 1);
}
