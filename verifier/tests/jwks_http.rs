//! `HttpJwks` against a real HTTP server on loopback: caching by
//! `Cache-Control`/`ETag`, single-flight refetch with cooldown, stale-if-error.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::jwks::{jwks_of, serve, Server};
use ekey_verifier::{Algorithm, HttpJwks, HttpJwksSettings, KeyPair, KeySource, KeySourceError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

fn settings(url: &str) -> HttpJwksSettings {
    let mut s = HttpJwksSettings::new(url);
    s.cooldown = Duration::from_millis(600);
    s.max_staleness = Duration::from_secs(2);
    s.timeout = Duration::from_secs(2);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_and_refetches_unknown_kid_once_per_cooldown() {
    let a = KeyPair::generate(Algorithm::ES256).unwrap();
    let b = KeyPair::generate(Algorithm::ES256).unwrap();
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = jwks_of(&[&a]);
    *state.max_age.lock().unwrap() = 300;
    let (url, server) = serve(state.clone()).await;
    let jwks = Arc::new(HttpJwks::new(settings(&url)).unwrap());

    for _ in 0..10 {
        jwks.key(a.thumbprint(), Algorithm::ES256).await.unwrap();
    }
    assert_eq!(state.requests.load(Ordering::SeqCst), 1, "fresh set served from memory");

    // Right after a fetch, unknown kids cause no fetch at all (cooldown).
    assert_eq!(jwks.key("unknown", Algorithm::ES256).await.unwrap_err(), KeySourceError::UnknownKid);
    assert_eq!(state.requests.load(Ordering::SeqCst), 1);

    // After the cooldown, a flood of random kids, concurrently: one shared fetch.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let flood: Vec<_> = (0..300)
        .map(|i| {
            let jwks = jwks.clone();
            tokio::spawn(async move { jwks.key(&format!("random-{i}"), Algorithm::ES256).await })
        })
        .collect();
    for f in flood {
        assert_eq!(f.await.unwrap().unwrap_err(), KeySourceError::UnknownKid);
    }
    assert_eq!(state.requests.load(Ordering::SeqCst), 2, "one shared refetch for the whole flood");

    // Rotation: the issuer publishes a new key; after the cooldown an unknown kid refetches.
    *state.jwks.lock().unwrap() = jwks_of(&[&a, &b]);
    assert_eq!(jwks.key(b.thumbprint(), Algorithm::ES256).await.unwrap_err(), KeySourceError::UnknownKid);
    tokio::time::sleep(Duration::from_millis(700)).await;
    jwks.key(b.thumbprint(), Algorithm::ES256).await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 3);
    assert_eq!(jwks.fetch_count(), 3);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_refresh_and_stale_if_error() {
    let a = KeyPair::generate(Algorithm::ES256).unwrap();
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = jwks_of(&[&a]);
    *state.max_age.lock().unwrap() = 1;
    let (url, server) = serve(state.clone()).await;
    let jwks = HttpJwks::new(settings(&url)).unwrap();
    jwks.key(a.thumbprint(), Algorithm::ES256).await.unwrap();

    // Expired: a conditional request, answered 304, keeps the set.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    jwks.key(a.thumbprint(), Algorithm::ES256).await.unwrap();
    assert_eq!(state.not_modified.load(Ordering::SeqCst), 1);

    // Issuer gone: the last good set is used until max_staleness, then refused.
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    jwks.key(a.thumbprint(), Algorithm::ES256).await.expect("stale set used while the issuer is down");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(matches!(jwks.key(a.thumbprint(), Algorithm::ES256).await, Err(KeySourceError::Unavailable(_))));
}

#[tokio::test]
async fn unreachable_issuer_without_a_set_is_unavailable() {
    // Bind then drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let jwks = HttpJwks::new(settings(&format!("http://127.0.0.1:{port}/jwks"))).unwrap();
    assert!(matches!(jwks.key("k", Algorithm::ES256).await, Err(KeySourceError::Unavailable(_))));
    assert!(HttpJwks::new(HttpJwksSettings::new("not a url")).is_err());
}

#[tokio::test]
async fn bad_sets_are_refused() {
    let a = KeyPair::generate(Algorithm::ES256).unwrap();
    let state = Arc::new(Server::default());
    let one = a.public_jwk().clone().with_kid_and_alg("dup", Algorithm::ES256).to_json();
    *state.jwks.lock().unwrap() = serde_json::json!({"keys": [one.clone(), one]}).to_string();
    let (url, server) = serve(state.clone()).await;
    let jwks = HttpJwks::new(settings(&url)).unwrap();
    assert!(matches!(jwks.key("dup", Algorithm::ES256).await, Err(KeySourceError::Unavailable(_))));
    server.abort();
}

#[tokio::test]
async fn a_set_with_private_members_is_refused_and_the_last_good_set_kept() {
    let a = KeyPair::generate(Algorithm::ES256).unwrap();
    let b = KeyPair::generate(Algorithm::ES256).unwrap();
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = jwks_of(&[&a]);
    let (url, server) = serve(state.clone()).await;
    let jwks = HttpJwks::new(settings(&url)).unwrap();
    assert!(jwks.key(a.thumbprint(), Algorithm::ES256).await.is_ok());

    // The issuer now serves b with a private member ("d"): refused as a
    // whole, so b stays unknown, and a keeps working from the last good set.
    let mut leaked = b.public_jwk().clone().with_kid_and_alg(b.thumbprint(), Algorithm::ES256).to_json();
    leaked["d"] = serde_json::json!("AAAA");
    let good_a = a.public_jwk().clone().with_kid_and_alg(a.thumbprint(), Algorithm::ES256).to_json();
    *state.jwks.lock().unwrap() = serde_json::json!({"keys": [good_a, leaked]}).to_string();
    let before = state.requests.load(Ordering::SeqCst);
    assert!(jwks.key(b.thumbprint(), Algorithm::ES256).await.is_err());
    assert_eq!(state.requests.load(Ordering::SeqCst), before + 1, "the unknown kid caused one fetch");
    assert!(jwks.key(a.thumbprint(), Algorithm::ES256).await.is_ok());
    server.abort();
}
