//! `POST /admin/revocations` against a real issuer and a real redis-server:
//! authentication, each kind of revocation landing where verifiers read it,
//! bad requests, Redis down (503), and config errors naming their field.

// Test helpers outside #[test] functions panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;
// The verifier's redis-server harness, shared rather than copied.
#[allow(dead_code)]
#[path = "../../verifier/tests/common/redis.rs"]
mod redis_harness;

use common::*;
use ekey_issuer::{Config, Server, ServerHandle};
use ekey_verifier::{RedisRevocations, RedisStoreSettings, RevocationRule};
use http::Method;
use redis_harness::RedisServer;
use serde_json::json;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";

fn config(dir: &TempDir, redis_url: &str, token: &str) -> Result<Config, ekey_issuer::ConfigError> {
    dir.write("admin.token", format!("{token}\n").as_bytes());
    let toml = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [signing_key]
        generate = true
        [revocation]
        admin_token_file = "admin.token"
        [revocation.redis]
        url = "{redis_url}"
        request_timeout_ms = 300
        "#
    );
    Config::from_toml(&toml, &dir.0, &|_| Ok(None))
}

async fn post(server: &ServerHandle, token: Option<&str>, body: serde_json::Value) -> Answer {
    let url = format!("http://{}/admin/revocations", server.admin_addr());
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    send(Method::POST, &url, &headers, Some(body.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_authenticated_checked_and_written() {
    bounded(async {
        let mut redis = RedisServer::start();
        let dir = TempDir::new("revocation-api");
        let server = Server::start(config(&dir, &redis.url(), ADMIN_TOKEN).unwrap()).await.unwrap();
        let reader = RedisRevocations::connect(RedisStoreSettings::single(redis.url())).await.unwrap();

        // Authentication first: nothing is written without the admin token.
        for token in [None, Some("wrong"), Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])] {
            let res = post(&server, token, json!({"all": true})).await;
            assert_eq!(res.status, 401, "{token:?}");
            assert_eq!(res.header("www-authenticate"), Some("Bearer"));
        }
        assert!(reader.rules().await.unwrap().is_empty());
        let get = send(Method::GET, &format!("http://{}/admin/revocations", server.admin_addr()), &[], None).await;
        assert_eq!(get.status, 405);

        // A sub: a rule every verifier feed reads.
        let res = post(&server, Some(ADMIN_TOKEN), json!({"sub": "bob"})).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        let body = res.json();
        assert_eq!(body["revoked"]["sub"], "bob");
        assert_eq!(body["rules_in_force"], 1);
        let at = body["revoked"]["issued_before"].as_i64().unwrap();
        assert!((at - now()).abs() <= 2);
        assert_eq!(reader.rules().await.unwrap(), vec![RevocationRule::sub("bob", at)]);

        // A template with a time, and everything before a time.
        let res = post(&server, Some(ADMIN_TOKEN), json!({"template": "pay", "issued_before": at - 100})).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        let res = post(&server, Some(ADMIN_TOKEN), json!({"all": true, "issued_before": at - 10})).await;
        assert_eq!(res.json()["rules_in_force"], 3);
        let rules = reader.rules().await.unwrap();
        assert!(
            rules.contains(&RevocationRule::template("pay", at - 100)) && rules.contains(&RevocationRule::all(at - 10))
        );

        // A trace: the marker the consume script checks, with a TTL.
        let res = post(&server, Some(ADMIN_TOKEN), json!({"trace": "tr4ce"})).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        assert_eq!(redis.cli(&["EXISTS", "ekey:{tr4ce}:x"]), "1");
        let ttl: i64 = redis.cli(&["TTL", "ekey:{tr4ce}:x"]).parse().unwrap();
        assert!((300..=360).contains(&ttl), "{ttl}");

        // Bad requests say why.
        for bad in [
            json!({}),
            json!({"trace": "a", "sub": "b"}),
            json!({"sub": "a", "issued_before": now() + 3600}),
            json!({"subject": "a"}),
        ] {
            let res = post(&server, Some(ADMIN_TOKEN), bad.clone()).await;
            assert_eq!((res.status.as_u16(), res.error()), (400, "invalid_request".into()), "{bad}");
        }

        // Redis down: 503 + Retry-After, nothing pretends to have worked.
        redis.kill();
        let res = post(&server, Some(ADMIN_TOKEN), json!({"sub": "carol"})).await;
        assert_eq!(res.status, 503);
        assert_eq!(res.header("retry-after"), Some("1"));
        redis.restart();
        let mut ok = false;
        for _ in 0..100 {
            if post(&server, Some(ADMIN_TOKEN), json!({"sub": "carol"})).await.status == 200 {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(ok, "revocation API did not recover after Redis came back");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn config_errors_name_the_field() {
    let dir = TempDir::new("revocation-config");
    let err = config(&dir, "http://127.0.0.1:1", ADMIN_TOKEN).unwrap_err().to_string();
    assert!(err.starts_with("revocation.redis.url:"), "{err}");
    let err =
        Config::from_toml("[signing_key]\ngenerate = true\n[revocation]\nadmin_token_file = \"x\"\n", &dir.0, &|_| {
            Ok(None)
        })
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("revocation.redis:"), "{err}");
    let err = Config::from_toml(
        "[signing_key]\ngenerate = true\n[revocation.redis]\nurl = \"redis://127.0.0.1:1\"\n",
        &dir.0,
        &|_| Ok(None),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("revocation.admin_token_file:"), "{err}");

    // From the environment: the error names the variable too.
    let env = |name: &str| -> Result<Option<String>, ekey_issuer::ConfigError> {
        Ok(match name {
            "EKEY_REVOCATION_REDIS_URL" => Some("redis:/oops".into()),
            "EKEY_REVOCATION_ADMIN_TOKEN_FILE" => Some("admin.token".into()),
            _ => None,
        })
    };
    let err = Config::from_toml("[signing_key]\ngenerate = true\n", &dir.0, &env).unwrap_err().to_string();
    assert!(err.starts_with("revocation.redis.url (from EKEY_REVOCATION_REDIS_URL):"), "{err}");

    // A short admin token is refused at start.
    let redis = RedisServer::start();
    let short = config(&dir, &redis.url(), "short").unwrap();
    let err = Server::start(short).await.unwrap_err().to_string();
    assert!(err.starts_with("revocation.admin_token_file:"), "{err}");
}
