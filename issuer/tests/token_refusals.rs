//! Refusals at the token endpoint, over loopback: each with its OAuth error
//! code, status and a description that says why.

// Test helpers outside #[test] functions panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ekey_issuer::dev::{DevIssuer, DevOptions};
use ekey_issuer::{Config, Providers, Server, SignError, Signer};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{b64_encode, Algorithm, KeyPair, PublicJwk};
use http::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn dev() -> (DevIssuer, String) {
    let dev = DevIssuer::start(DevOptions {
        port: 0,
        admin_port: 0,
        write_key_file: false,
        audit: ekey_telemetry::AuditConfig { sink: ekey_telemetry::AuditSinkKind::Off, path: None },
        ..DevOptions::default()
    })
    .await
    .unwrap();
    let endpoint = dev.server().urls().token_endpoint.clone();
    (dev, endpoint)
}

fn proof(key: &DpopKey, endpoint: &str) -> Option<String> {
    Some(key.proof("POST", endpoint, None, None, now()).unwrap())
}

fn details(v: serde_json::Value) -> String {
    v.to_string()
}

fn description(a: &Answer) -> String {
    a.json()["error_description"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn client_authentication_refusals() {
    bounded(async {
        let (dev, endpoint) = dev().await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let (id, secret) = dev.basic_client();
        let scope = [("scope", "payments.create")];

        let bad = token_request(&endpoint, Auth::Basic(id, "wrong-secret"), proof(&key, &endpoint), &scope).await;
        assert_eq!((bad.status.as_u16(), bad.error().as_str()), (401, "invalid_client"));
        assert!(bad.header("www-authenticate").unwrap().starts_with("Basic "));
        let unknown = token_request(&endpoint, Auth::Basic("nobody", secret), proof(&key, &endpoint), &scope).await;
        assert_eq!((unknown.status.as_u16(), description(&unknown)), (401, description(&bad)));

        let none = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &scope).await;
        assert_eq!((none.status.as_u16(), none.error().as_str()), (401, "invalid_client"));
        assert!(none.header("www-authenticate").is_none());

        // Replayed assertion.
        let (jwt_id, client_key) = dev.jwt_client();
        let jwt = assertion(client_key, jwt_id, &endpoint, "same-jti");
        let first =
            token_request(&endpoint, Auth::Assertion(jwt_id, jwt.clone()), proof(&key, &endpoint), &scope).await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        let again = token_request(&endpoint, Auth::Assertion(jwt_id, jwt), proof(&key, &endpoint), &scope).await;
        assert_eq!((again.status.as_u16(), again.error().as_str()), (401, "invalid_client"));
        assert!(description(&again).contains("replayed"), "{}", description(&again));

        // An assertion signed by a key that is not the client's.
        let stranger = KeyPair::generate(Algorithm::ES256).unwrap();
        let forged = assertion(&stranger, jwt_id, &endpoint, "forged");
        let res = token_request(&endpoint, Auth::Assertion(jwt_id, forged), proof(&key, &endpoint), &scope).await;
        assert_eq!((res.status.as_u16(), res.error().as_str()), (401, "invalid_client"));

        // Wrong audience.
        let elsewhere = assertion(client_key, jwt_id, "https://other.example.com/token", "aud");
        let res = token_request(&endpoint, Auth::Assertion(jwt_id, elsewhere), proof(&key, &endpoint), &scope).await;
        assert!(description(&res).contains("aud"), "{}", description(&res));

        // Two methods at once.
        let jwt = assertion(client_key, jwt_id, &endpoint, "two-methods");
        let mut form = vec![("scope", "payments.create"), ("client_assertion_type", ekey_issuer::JWT_BEARER)];
        form.push(("client_assertion", &jwt));
        let res = token_request(&endpoint, Auth::Basic(id, secret), proof(&key, &endpoint), &form).await;
        assert_eq!((res.status.as_u16(), res.error().as_str()), (400, "invalid_request"));
        dev.shutdown().await;
    })
    .await;
}

/// A `private_key_jwt` assertion with these claims and no `kid`.
fn assertion_without_kid(key: &KeyPair, claims: &serde_json::Value) -> String {
    let header = json!({"alg": key.algorithm().as_str(), "typ": "JWT"});
    let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(claims.to_string()));
    format!("{input}.{}", b64_encode(key.sign(input.as_bytes()).unwrap()))
}

/// The form of an assertion request without `client_id`.
fn assertion_form<'a>(jwt: &'a str, client_id: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("scope", "payments.create"),
        ("client_assertion_type", ekey_issuer::JWT_BEARER),
        ("client_assertion", jwt),
    ];
    form.extend(client_id.map(|id| ("client_id", id)));
    form
}

#[tokio::test]
async fn assertion_identifies_the_client_without_client_id() {
    bounded(async {
        let (dev, endpoint) = dev().await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let (jwt_id, client_key) = dev.jwt_client();
        let (basic_id, _) = dev.basic_client();
        let claims = |iss: &str, sub: &str, jti: &str| {
            json!({"iss": iss, "sub": sub, "aud": endpoint, "iat": now(), "exp": now() + 60, "jti": jti})
        };

        // Neither client_id nor kid: iss = sub names the client, its key verifies.
        let jwt = assertion_without_kid(client_key, &claims(jwt_id, jwt_id, "no-client-id"));
        let ok = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &assertion_form(&jwt, None)).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);
        let token = ok.json()["access_token"].as_str().unwrap().to_owned();
        let (_, payload) = ekey_verifier::dangerous::decode_unverified(&token).unwrap();
        assert_eq!(payload["sub"], jwt_id);

        // The same assertion again, with or without client_id: replayed.
        for client_id in [None, Some(jwt_id)] {
            let form = assertion_form(&jwt, client_id);
            let again = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &form).await;
            assert_eq!((again.status.as_u16(), again.error().as_str()), (401, "invalid_client"));
            assert!(description(&again).contains("replayed"), "{}", description(&again));
        }

        // client_id names another client than the assertion does.
        let jwt = assertion_without_kid(client_key, &claims(jwt_id, jwt_id, "mismatch"));
        let form = assertion_form(&jwt, Some(basic_id));
        let res = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &form).await;
        assert_eq!((res.status.as_u16(), res.error().as_str()), (400, "invalid_request"));
        assert!(description(&res).contains("client_id"), "{}", description(&res));
        // Refused before its jti was spent: the same assertion without client_id still works.
        let ok = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &assertion_form(&jwt, None)).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);

        // iss and sub disagree: nothing identifies the client.
        let jwt = assertion_without_kid(client_key, &claims(jwt_id, basic_id, "iss-not-sub"));
        let res = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &assertion_form(&jwt, None)).await;
        assert_eq!((res.status.as_u16(), res.error().as_str()), (401, "invalid_client"));
        assert!(description(&res).contains("iss and sub"), "{}", description(&res));

        // A client nobody registered, and a client_secret_basic client.
        for client in ["nobody", basic_id] {
            let jwt = assertion_without_kid(client_key, &claims(client, client, "unknown"));
            let form = assertion_form(&jwt, None);
            let res = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &form).await;
            assert_eq!((res.status.as_u16(), res.error().as_str()), (401, "invalid_client"));
            assert!(description(&res).contains("not registered for private_key_jwt"), "{}", description(&res));
        }

        // The client named, but another key signed.
        let stranger = KeyPair::generate(Algorithm::ES256).unwrap();
        let jwt = assertion_without_kid(&stranger, &claims(jwt_id, jwt_id, "stranger"));
        let res = token_request(&endpoint, Auth::None, proof(&key, &endpoint), &assertion_form(&jwt, None)).await;
        assert_eq!((res.status.as_u16(), res.error().as_str()), (401, "invalid_client"));
        assert!(description(&res).contains("signature"), "{}", description(&res));
        dev.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dpop_and_grant_refusals() {
    bounded(async {
        let (dev, endpoint) = dev().await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let (id, secret) = dev.basic_client();
        let scope = [("scope", "payments.create")];

        let missing = token_request(&endpoint, Auth::Basic(id, secret), None, &scope).await;
        assert_eq!((missing.status.as_u16(), missing.error().as_str()), (400, "invalid_request"));
        assert!(description(&missing).contains("DPoP proof is required"));

        for (why, p) in [
            ("garbage", "not-a-proof".to_string()),
            ("wrong htu", key.proof("POST", "http://127.0.0.1:1/token", None, None, now()).unwrap()),
            ("wrong htm", key.proof("GET", &endpoint, None, None, now()).unwrap()),
            ("stale", key.proof("POST", &endpoint, None, None, now() - 3600).unwrap()),
        ] {
            let res = token_request(&endpoint, Auth::Basic(id, secret), Some(p), &scope).await;
            assert_eq!((res.status.as_u16(), res.error().as_str()), (400, "invalid_dpop_proof"), "{why}");
        }

        let p = proof(&key, &endpoint);
        assert_eq!(token_request(&endpoint, Auth::Basic(id, secret), p.clone(), &scope).await.status, 200);
        let replay = token_request(&endpoint, Auth::Basic(id, secret), p, &scope).await;
        assert_eq!((replay.status.as_u16(), replay.error().as_str()), (400, "invalid_dpop_proof"));
        assert!(description(&replay).contains("replayed"));

        let grant = token_request(
            &endpoint,
            Auth::Basic(id, secret),
            proof(&key, &endpoint),
            &[("grant_type", "password"), ("scope", "payments.create")],
        )
        .await;
        assert_eq!((grant.status.as_u16(), grant.error().as_str()), (400, "unsupported_grant_type"));

        let huge = "x".repeat(20 * 1024);
        let big = token_request(&endpoint, Auth::Basic(id, secret), proof(&key, &endpoint), &[("scope", &huge)]).await;
        assert_eq!((big.status.as_u16(), big.error().as_str()), (400, "invalid_request"));

        let json =
            send(Method::POST, &endpoint, &[("content-type", "application/json".into())], Some("{}".into())).await;
        assert_eq!(json.error(), "invalid_request");
        dev.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn template_refusals() {
    bounded(async {
        let (dev, endpoint) = dev().await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let (id, secret) = dev.basic_client();
        let ask = |d: serde_json::Value| {
            let endpoint = endpoint.clone();
            let p = proof(&key, &endpoint);
            async move {
                token_request(&endpoint, Auth::Basic(id, secret), p, &[("authorization_details", &details(d))]).await
            }
        };

        let outside = ask(json!([{"type": "ekey_capability", "action": "DELETE:/payments/1"}])).await;
        assert_eq!((outside.status.as_u16(), outside.error().as_str()), (400, "invalid_authorization_details"));
        assert!(description(&outside).contains("no template allows"), "{}", description(&outside));

        let wider =
            ask(json!([{"type": "ekey_capability", "action": "POST:/:collection/1", "template": "payments.create"}]))
                .await;
        assert_eq!(wider.error(), "invalid_authorization_details");
        assert!(description(&wider).contains("outside template"));

        let too_many = ask(json!([{"type": "ekey_capability", "action": "POST:/payments/1", "limit": 4}])).await;
        assert_eq!(too_many.error(), "invalid_authorization_details");
        assert!(description(&too_many).contains("limit 4 exceeds the maximum of 3"), "{}", description(&too_many));

        let subcap =
            ask(json!([{"type": "ekey_capability", "action": "POST:/payments/1", "subcap": ["DELETE:/payments/1"]}]))
                .await;
        assert_eq!(subcap.error(), "invalid_authorization_details");

        let audience = ask(
            json!([{"type": "ekey_capability", "action": "POST:/payments/1", "locations": ["https://evil.example"]}]),
        )
        .await;
        assert_eq!(audience.error(), "invalid_authorization_details");

        // Literal segments that would "narrow" :id, but that a router reads
        // as another resource: never granted, as action or as subcap.
        for hostile in ["POST:/payments/1%2F..%2Fadmin", "POST:/payments/%2e%2e", "POST:/payments/1%00"] {
            let a = ask(json!([{"type": "ekey_capability", "action": hostile}])).await;
            assert_eq!((a.status.as_u16(), a.error().as_str()), (400, "invalid_authorization_details"), "{hostile}");
            assert!(description(&a).contains("normal form"), "{hostile}: {}", description(&a));
            let sub = hostile.replace("POST", "GET");
            let a = ask(json!([{"type": "ekey_capability", "action": "POST:/payments/1", "subcap": [sub]}])).await;
            assert_eq!(a.error(), "invalid_authorization_details", "subcap {hostile}");
        }

        let ty = ask(json!([{"type": "payment_initiation", "action": "POST:/payments/1"}])).await;
        assert_eq!(ty.error(), "invalid_authorization_details");

        let scope =
            token_request(&endpoint, Auth::Basic(id, secret), proof(&key, &endpoint), &[("scope", "admin.everything")])
                .await;
        assert_eq!((scope.status.as_u16(), scope.error().as_str()), (400, "invalid_scope"));

        let ok = ask(json!([{"type": "ekey_capability", "action": "POST:/payments/1", "limit": 3}])).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);
        dev.shutdown().await;
    })
    .await;
}

/// A config with a client in no template, server nonces, and a JWKS file.
fn custom_config(dir: &TempDir, client_key: &KeyPair, secret: &str) -> Config {
    dir.write("nonce.secret", b"0123456789abcdef0123456789abcdef0123456789\n");
    let jwks = json!({"keys": [client_key.public_jwk().to_json()]});
    dir.write("client.jwks.json", jwks.to_string().as_bytes());
    let toml = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [signing_key]
        generate = true
        algorithm = "ES384"
        [dpop]
        nonce_secret_file = "nonce.secret"
        [[clients]]
        id = "worker"
        auth = "private_key_jwt"
        jwks_file = "client.jwks.json"
        [[clients]]
        id = "lonely"
        auth = "client_secret_basic"
        secret_sha256 = "{}"
        [[templates]]
        name = "jobs.run"
        clients = ["worker"]
        actions = ["POST:/jobs/:id"]
        audience = "https://api.example.com"
        ttl = 30
        "#,
        sha256_hex(secret.as_bytes())
    );
    Config::from_toml(&toml, &dir.0, &|_| Ok(None)).unwrap()
}

#[tokio::test]
async fn nonce_retry_reuses_the_assertion_and_unlisted_clients_are_refused() {
    bounded(async {
        let dir = TempDir::new("nonce");
        let client_key = KeyPair::generate(Algorithm::ES256).unwrap();
        let secret = "a-long-enough-test-secret";
        let server = Server::start(custom_config(&dir, &client_key, secret)).await.unwrap();
        let endpoint = server.urls().token_endpoint.clone();
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let scope = [("scope", "jobs.run")];

        let jwt = assertion(&client_key, "worker", &endpoint, "nonce-flow");
        let first =
            token_request(&endpoint, Auth::Assertion("worker", jwt.clone()), proof(&key, &endpoint), &scope).await;
        assert_eq!((first.status.as_u16(), first.error().as_str()), (400, "use_dpop_nonce"));
        let nonce = first.header("dpop-nonce").expect("DPoP-Nonce header").to_owned();

        let p = key.proof("POST", &endpoint, None, Some(&nonce), now()).unwrap();
        let ok = token_request(&endpoint, Auth::Assertion("worker", jwt), Some(p), &scope).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);
        assert!(ok.header("dpop-nonce").is_some());
        assert_eq!(ok.json()["expires_in"], 30);
        let token = ok.json()["access_token"].as_str().unwrap().to_owned();
        let (header, _) = ekey_verifier::dangerous::decode_unverified(&token).unwrap();
        assert_eq!(header["alg"], "ES384");

        let p = key.proof("POST", &endpoint, None, Some(&nonce), now()).unwrap();
        let lonely = token_request(&endpoint, Auth::Basic("lonely", secret), Some(p), &scope).await;
        assert_eq!((lonely.status.as_u16(), lonely.error().as_str()), (400, "unauthorized_client"));
        server.shutdown().await;
    })
    .await;
}

#[derive(Debug)]
struct Throttled(PublicJwk);

#[async_trait::async_trait]
impl Signer for Throttled {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
    fn public_jwk(&self) -> &PublicJwk {
        &self.0
    }
    async fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
        Err(SignError::Unavailable { reason: "throttled".into(), retry_after: Some(Duration::from_secs(2)) })
    }
}

#[tokio::test]
async fn unavailable_signer_means_503_and_not_ready() {
    bounded(async {
        let dir = TempDir::new("throttled");
        let client_key = KeyPair::generate(Algorithm::ES256).unwrap();
        let config = custom_config(&dir, &client_key, "a-long-enough-test-secret");
        let providers = Providers::from_config(&config).await.unwrap();
        let public = KeyPair::generate(Algorithm::ES256).unwrap().public_jwk().clone();
        let providers = providers.with_signer(Arc::new(Throttled(public)));
        let server = Server::start_with(config, providers).await.unwrap();
        let endpoint = server.urls().token_endpoint.clone();
        let key = DpopKey::generate(Algorithm::ES256).unwrap();

        let jwt = assertion(&client_key, "worker", &endpoint, "throttled-1");
        let first = token_request(
            &endpoint,
            Auth::Assertion("worker", jwt.clone()),
            proof(&key, &endpoint),
            &[("scope", "jobs.run")],
        )
        .await;
        let nonce = first.header("dpop-nonce").unwrap().to_owned();
        let p = key.proof("POST", &endpoint, None, Some(&nonce), now()).unwrap();
        let res = token_request(&endpoint, Auth::Assertion("worker", jwt), Some(p), &[("scope", "jobs.run")]).await;
        assert_eq!((res.status.as_u16(), res.error().as_str()), (503, "temporarily_unavailable"));
        assert_eq!(res.header("retry-after"), Some("2"));

        let ready = send(Method::GET, &format!("http://{}/readyz", server.admin_addr()), &[], None).await;
        assert_eq!(ready.status, 503);
        assert!(String::from_utf8_lossy(&ready.body).contains("signer"), "{:?}", ready.body);
        server.shutdown().await;
    })
    .await;
}
