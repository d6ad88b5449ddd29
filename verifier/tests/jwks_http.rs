//! `HttpJwks` against a real HTTP(S) server on loopback: caching by
//! `Cache-Control`/`ETag`, single-flight refetch with cooldown, bounded
//! stale-if-error, TLS with a CA bundle and SPKI pins, plain HTTP only to
//! loopback, and keys it cannot use skipped, not fatal to the set.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::jwks::{jwks_of, serve, serve_tls, Pki, Server};
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

/// RFC 7517 §5: keys the verifier cannot use are skipped; the good key next
/// to them still verifies tokens (through the whole verifier).
#[tokio::test]
async fn unusable_keys_are_skipped_and_the_good_one_still_verifies() {
    use common::{Issuer, AUDIENCE, ISSUER, NOW};
    use ekey_verifier::client::DpopKey;
    use ekey_verifier::{ManualClock, MemoryStore, PresentedRequest, Verifier, VerifierSettings};
    let issuer = Issuer::new();
    let good = issuer.key.public_jwk().clone().with_kid_and_alg(issuer.kid(), Algorithm::ES256).to_json();
    let mut not_on_curve = good.clone();
    not_on_curve["kid"] = "not-on-curve".into();
    not_on_curve["y"] = ekey_verifier::b64_encode([7u8; 32]).into();
    let rsa1024 = openssl::rsa::Rsa::generate(1024).unwrap();
    let unusable = serde_json::json!([
        {"kty": "OKP", "crv": "Ed448", "x": "AAAA", "kid": "ed448"},
        {"kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA", "kid": "p521"},
        {"kty": "PQ", "kid": "from-the-future"},
        {"kid": "no-kty"},
        {"kty": "EC", "crv": "P-256", "x": "short", "y": "short", "kid": "malformed"},
        {"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"], "alg": "ES512", "kid": "unknown-alg"},
        {"kty": "RSA", "n": ekey_verifier::b64_encode(rsa1024.n().to_vec()), "e": "AQAB", "kid": "rsa1024"},
        {"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"]},
        {"kty": 7, "kid": 8},
        not_on_curve,
    ]);
    let mut keys = unusable.as_array().unwrap().clone();
    keys.insert(3, good);
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = serde_json::json!({ "keys": keys }).to_string();
    let (url, server) = serve(state.clone()).await;
    let jwks = Arc::new(HttpJwks::new(settings(&url)).unwrap());
    let verifier = Verifier::with_clock(
        VerifierSettings::new(ISSUER, AUDIENCE),
        jwks.clone(),
        Arc::new(MemoryStore::default()),
        Arc::new(ManualClock::new(NOW)),
    );
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "GET:/things", 5);
    let url = format!("{AUDIENCE}/things");
    let proof = client.proof("GET", &url, Some(&token), None, NOW).unwrap();
    let auth = format!("DPoP {token}");
    let req = PresentedRequest {
        method: "GET",
        url: &url,
        authorization: Some(&auth),
        dpop: vec![&proof],
        ..Default::default()
    };
    let cap = verifier.verify(&req).await.unwrap_or_else(|r| panic!("the good key no longer verifies: {r}"));
    assert_eq!(cap.used, 1);
    for kid in ["ed448", "rsa1024", "not-on-curve", "unknown-alg"] {
        assert_eq!(jwks.key(kid, Algorithm::ES256).await.unwrap_err(), KeySourceError::UnknownKid, "{kid}");
    }
    server.abort();
}

async fn https_server(key: &KeyPair) -> (Pki, Arc<Server>, String, tokio::task::JoinHandle<()>) {
    let pki = Pki::new();
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = jwks_of(&[key]);
    *state.max_age.lock().unwrap() = 300;
    let (url, server) = serve_tls(state.clone(), &pki).await;
    (pki, state, url, server)
}

/// The TLS failure reported for `settings`' first fetch.
async fn tls_refusal(settings: HttpJwksSettings, kid: &str) -> String {
    let jwks = HttpJwks::new(settings).unwrap();
    match jwks.key(kid, Algorithm::ES256).await {
        Err(KeySourceError::Unavailable(why)) => why,
        other => panic!("fetched over a connection that should be refused: {other:?}"),
    }
}

#[tokio::test]
async fn https_with_the_ca_bundle_and_refused_with_another_ca_or_the_system_roots() {
    let key = KeyPair::generate(Algorithm::ES256).unwrap();
    let (pki, state, url, server) = https_server(&key).await;
    assert!(url.starts_with("https://127.0.0.1:"));

    let mut trusted = settings(&url);
    trusted.ca_file = Some(pki.ca_file.clone());
    let jwks = HttpJwks::new(trusted).unwrap();
    jwks.key(key.thumbprint(), Algorithm::ES256).await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 1);

    let mut other = settings(&url);
    other.ca_file = Some(pki.other_ca_file.clone());
    let why = tls_refusal(other, key.thumbprint()).await;
    assert!(why.contains("certificate"), "{why}");
    // The system's store does not hold the test CA.
    let why = tls_refusal(settings(&url), key.thumbprint()).await;
    assert!(why.contains("certificate"), "{why}");
    assert_eq!(state.requests.load(Ordering::SeqCst), 1, "no request went over a refused connection");
    server.abort();
}

#[tokio::test]
async fn spki_pin_of_the_leaf_must_match() {
    let key = KeyPair::generate(Algorithm::ES256).unwrap();
    let (pki, state, url, server) = https_server(&key).await;
    let pinned = |pins: Vec<String>| {
        let mut s = settings(&url);
        s.ca_file = Some(pki.ca_file.clone());
        s.spki_pins = pins;
        s
    };
    let leaf = Pki::spki_pin(&pki.server_cert);
    let other = Pki::spki_pin(&openssl_cert_der());

    // The leaf's key among the pins (a rotation lists old and new): accepted,
    // in standard base64 or base64url.
    let jwks = HttpJwks::new(pinned(vec![other.clone(), leaf.clone()])).unwrap();
    jwks.key(key.thumbprint(), Algorithm::ES256).await.unwrap();
    let url_safe = leaf.replace('+', "-").replace('/', "_").trim_end_matches('=').to_owned();
    HttpJwks::new(pinned(vec![url_safe])).unwrap().key(key.thumbprint(), Algorithm::ES256).await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 2);

    // A valid chain is not enough without the pinned key; nor is the CA's key.
    let why = tls_refusal(pinned(vec![other]), key.thumbprint()).await;
    assert!(why.contains("pin"), "{why}");
    let why = tls_refusal(pinned(vec![Pki::spki_pin(&pki.ca_der)]), key.thumbprint()).await;
    assert!(why.contains("pin"), "{why}");
    assert_eq!(state.requests.load(Ordering::SeqCst), 2, "no request went over a refused connection");

    // Pins that are not a SHA-256 in base64 are refused at construction.
    for bad in ["", "not base64!", "AAAA"] {
        assert!(HttpJwks::new(pinned(vec![bad.into()])).is_err(), "{bad:?}");
    }
    server.abort();
}

/// A throwaway self-signed certificate (another key than the server's).
fn openssl_cert_der() -> Vec<u8> {
    use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
    let key =
        PKey::from_ec_key(ec::EcKey::generate(&ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
            .unwrap();
    let mut b = x509::X509Builder::new().unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

#[test]
fn plain_http_only_to_loopback_unless_allowed() {
    for ok in
        ["http://127.0.0.1:8080/jwks", "http://127.8.9.10/jwks", "http://localhost:1/jwks", "http://[::1]:80/jwks"]
    {
        assert!(HttpJwks::new(HttpJwksSettings::new(ok)).is_ok(), "{ok}");
    }
    for refused in [
        "http://issuer.example.com/jwks",
        "http://10.0.0.1/jwks",
        "http://[2001:db8::1]/jwks",
        "http://localhost.example.com/jwks",
    ] {
        let err = HttpJwks::new(HttpJwksSettings::new(refused)).unwrap_err().to_string();
        assert!(err.contains("allow_insecure_http"), "{refused}: {err}");
        let mut allowed = HttpJwksSettings::new(refused);
        allowed.allow_insecure_http = true;
        assert!(HttpJwks::new(allowed).is_ok(), "{refused}");
    }
    for bad in ["ftp://issuer.example.com/jwks", "https:///jwks", "/jwks", "not a url"] {
        assert!(HttpJwks::new(HttpJwksSettings::new(bad)).is_err(), "{bad}");
    }
    // A CA file that cannot be read, or holds no certificate, is refused at construction.
    let mut missing = HttpJwksSettings::new("https://issuer.example.com/jwks");
    missing.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(HttpJwks::new(missing).unwrap_err().to_string().contains("ca_file"));
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut no_cert = HttpJwksSettings::new("https://issuer.example.com/jwks");
    no_cert.ca_file = Some(empty.path().to_owned());
    assert!(HttpJwks::new(no_cert).unwrap_err().to_string().contains("ca_file"));
}

/// Tokens live at most 5 minutes; a set the issuer may have withdrawn a key
/// from is not trusted much longer than that while the JWKS is unreachable.
#[test]
fn staleness_is_bounded_by_default() {
    let s = HttpJwksSettings::new("https://issuer.example.com/jwks");
    assert!(s.max_staleness <= Duration::from_secs(300), "{:?}", s.max_staleness);
    assert!(s.spki_pins.is_empty() && s.ca_file.is_none() && !s.allow_insecure_http);
}

/// The staleness bound over HTTPS: the last good set serves while the issuer
/// is down, up to `max_staleness` past its freshness, then verification fails
/// closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_stale_set_refused_after_max_staleness() {
    let key = KeyPair::generate(Algorithm::ES256).unwrap();
    let (pki, state, url, server) = https_server(&key).await;
    *state.max_age.lock().unwrap() = 1;
    let mut s = settings(&url);
    s.ca_file = Some(pki.ca_file.clone());
    s.max_staleness = Duration::from_millis(1500);
    let jwks = HttpJwks::new(s).unwrap();
    jwks.key(key.thumbprint(), Algorithm::ES256).await.unwrap();
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // past max-age, within staleness
    jwks.key(key.thumbprint(), Algorithm::ES256).await.expect("stale set used while the issuer is down");
    tokio::time::sleep(Duration::from_millis(1600)).await; // past max-age + max_staleness
    match jwks.key(key.thumbprint(), Algorithm::ES256).await {
        Err(KeySourceError::Unavailable(why)) => assert!(why.contains("max_staleness"), "{why}"),
        other => panic!("a stale set is still trusted: {other:?}"),
    }
}

/// A token already verified (its signature check is cached) still depends
/// on its key: once the issuer withdraws the key it is refused, and once the
/// set is stale beyond `max_staleness` it gets 503 like any other token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_tokens_follow_the_key_set() {
    use common::{Issuer, AUDIENCE, ISSUER, NOW};
    use ekey_verifier::client::DpopKey;
    use ekey_verifier::{
        ManualClock, MemoryStore, PresentedRequest, Rejection, TokenError, Verifier, VerifierSettings,
    };
    let issuer = Issuer::new();
    let other = KeyPair::generate(Algorithm::ES256).unwrap();
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = jwks_of(&[&issuer.key, &other]);
    *state.max_age.lock().unwrap() = 1;
    let (url, server) = serve(state.clone()).await;
    let mut s = settings(&url);
    s.max_staleness = Duration::from_millis(1500);
    let verifier = Verifier::with_clock(
        VerifierSettings::new(ISSUER, AUDIENCE),
        Arc::new(HttpJwks::new(s).unwrap()),
        Arc::new(MemoryStore::default()),
        Arc::new(ManualClock::new(NOW)),
    );
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "GET:/things", 10);
    let target = format!("{AUDIENCE}/things");
    let present = || async {
        let proof = client.proof("GET", &target, Some(&token), None, NOW).unwrap();
        let auth = format!("DPoP {token}");
        let req = PresentedRequest {
            method: "GET",
            url: &target,
            authorization: Some(&auth),
            dpop: vec![&proof],
            ..Default::default()
        };
        verifier.verify(&req).await.map(|c| c.used)
    };
    assert_eq!(present().await.unwrap(), 1);
    assert_eq!(present().await.unwrap(), 2, "served from the cache");

    // The issuer withdraws the key; after max-age the verifier refetches.
    *state.jwks.lock().unwrap() = jwks_of(&[&other]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    match present().await {
        Err(Rejection::InvalidToken(TokenError::UnknownKey)) => {}
        other => panic!("a cached token outlived its withdrawn key: {other:?}"),
    }

    // Key back; then the JWKS goes away for longer than max_staleness.
    *state.jwks.lock().unwrap() = jwks_of(&[&issuer.key, &other]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(present().await.unwrap(), 3);
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(2800)).await;
    match present().await {
        Err(Rejection::Unavailable(why)) => assert!(why.contains("max_staleness"), "{why}"),
        other => panic!("a cached token was accepted on a set stale beyond max_staleness: {other:?}"),
    }
}
