//! Two gateway replicas sharing one real Redis (`[store] kind = "redis"`):
//! the usage limit and proof replay are enforced across the fleet.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

#[path = "../../verifier/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_harness;
mod support;

use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::StatusCode;
use support::{dpop_call, send, Gateway, GatewayOptions, Issuer};

const AUDIENCE: &str = "https://api.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limit_and_replay_through_redis() {
    let redis = redis_harness::RedisServer::start();
    let issuer = Issuer::new().unwrap();
    let opts = || GatewayOptions { redis_url: Some(redis.url()), ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) };
    let a = Gateway::start(&issuer, &opts()).await.unwrap();
    let b = Gateway::start(&issuer, &opts()).await.unwrap();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, "POST:/payments/:id", 3).unwrap();
    let url = "https://api.test/payments/9";
    let fwd = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.test"),
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/payments/9"),
    ];

    // A proof accepted by replica A is a replay at replica B.
    let (ans, proof) = dpop_call(a.addr, &client, &token, "POST", "/forward-auth", url, None, &fwd).await.unwrap();
    assert_eq!((ans.status, ans.header("x-ekey-remaining")), (StatusCode::OK, "2".into()), "{ans:?}");
    let auth = format!("DPoP {token}");
    let mut h = vec![("authorization", auth.as_str()), ("dpop", proof.as_str())];
    h.extend(fwd);
    let ans = send(b.addr, "POST", "/forward-auth", &h).await.unwrap();
    assert_eq!((ans.status, ans.header("x-ekey-reason")), (StatusCode::UNAUTHORIZED, "replay_blocked".into()));

    // Uses alternate between replicas: 3 in total, then exhausted on both.
    let mut remaining = Vec::new();
    for gw in [&b, &a, &b, &a] {
        let (ans, _) = dpop_call(gw.addr, &client, &token, "POST", "/forward-auth", url, None, &fwd).await.unwrap();
        remaining.push((ans.status.as_u16(), ans.header("x-ekey-remaining"), ans.header("x-ekey-reason")));
    }
    assert_eq!(
        remaining,
        vec![
            (200, "1".into(), String::new()),
            (200, "0".into(), String::new()),
            (401, String::new(), "exhausted".into()),
            (401, String::new(), "exhausted".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_with_503() {
    let redis = redis_harness::RedisServer::start();
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions { redis_url: Some(redis.url()), ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    drop(redis);
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, "POST:/payments/:id", 3).unwrap();
    let fwd = [("x-forwarded-method", "POST"), ("x-forwarded-uri", "/payments/9")];
    let url = format!("http://{}/payments/9", gw.addr);
    let (ans, _) = dpop_call(gw.addr, &client, &token, "POST", "/forward-auth", &url, None, &fwd).await.unwrap();
    assert_eq!(ans.status, StatusCode::SERVICE_UNAVAILABLE, "{ans:?}");
    assert_eq!((ans.header("retry-after"), ans.header("x-ekey-reason")), ("1".into(), "store_unavailable".into()));
    assert!(ans.headers.get("x-ekey-sub").is_none());
}

/// A revocation rule written to Redis (as the issuer's admin API does)
/// reaches the gateway within the feed's staleness bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_rule_in_redis_is_enforced() {
    use ekey_verifier::{RedisRevocations, RedisStoreSettings, RevocationRule};
    let redis = redis_harness::RedisServer::start();
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions { redis_url: Some(redis.url()), ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, "POST:/payments/:id", 100).unwrap();
    let fwd = [("x-forwarded-method", "POST"), ("x-forwarded-uri", "/payments/9")];
    let url = format!("http://{}/payments/9", gw.addr);
    let (ans, _) = dpop_call(gw.addr, &client, &token, "POST", "/forward-auth", &url, None, &fwd).await.unwrap();
    assert_eq!(ans.status, StatusCode::OK, "{ans:?}");

    let writer = RedisRevocations::connect(RedisStoreSettings::single(redis.url())).await.unwrap();
    writer.add_rule(&RevocationRule::sub("client-1", support::now())).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let (ans, _) = dpop_call(gw.addr, &client, &token, "POST", "/forward-auth", &url, None, &fwd).await.unwrap();
        if ans.status == StatusCode::UNAUTHORIZED {
            assert_eq!(ans.header("x-ekey-reason"), "revoked", "{ans:?}");
            break;
        }
        assert_eq!(ans.status, StatusCode::OK, "{ans:?}");
        assert!(std::time::Instant::now() < deadline, "revocation not enforced within 3 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
