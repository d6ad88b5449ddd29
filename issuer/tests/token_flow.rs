//! End to end over loopback: tokens from the issuer (both client
//! authentication methods), used at an API protected by the real verifier.

// Test helpers outside #[test] functions panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ekey_issuer::dev::{DevIssuer, DevOptions};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{dangerous, Algorithm};
use http::Method;
use serde_json::json;

async fn setup() -> (DevIssuer, Api) {
    let api = api_listener().await;
    let dev = DevIssuer::start(DevOptions {
        port: 0,
        admin_port: 0,
        audience: api.origin.clone(),
        write_key_file: false,
        audit: ekey_telemetry::AuditConfig { sink: ekey_telemetry::AuditSinkKind::Off, path: None },
    })
    .await
    .unwrap();
    let urls = dev.server().urls().clone();
    (dev, api.serve(&urls.issuer, &urls.jwks_uri))
}

fn proof(key: &DpopKey, endpoint: &str) -> Option<String> {
    Some(key.proof("POST", endpoint, None, None, now()).unwrap())
}

#[tokio::test]
async fn basic_client_token_works_once_per_use_and_only_for_its_action() {
    bounded(async {
        let (dev, api) = setup().await;
        let endpoint = dev.server().urls().token_endpoint.clone();
        let (id, secret) = dev.basic_client();
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let details = json!([{"type": "ekey_capability", "action": "POST:/payments/42", "limit": 3, "subcap": ["GET:/payments/42"]}]).to_string();
        let res = token_request(&endpoint, Auth::Basic(id, secret), proof(&key, &endpoint), &[("authorization_details", &details)]).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let body = res.json();
        assert_eq!(body["token_type"], "DPoP");
        assert_eq!(body["expires_in"], 60);
        assert_eq!(body["authorization_details"][0]["action"], "POST:/payments/42");
        assert_eq!(body["authorization_details"][0]["limit"], 3);
        assert_eq!(body["authorization_details"][0]["locations"], json!([api.origin]));
        let token = body["access_token"].as_str().unwrap().to_owned();

        let (header, claims) = dangerous::decode_unverified(&token).unwrap();
        assert_eq!(header["typ"], "ekey+jwt");
        assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
        assert_eq!(claims["sub"], id);
        assert_eq!(claims["tpl"], "payments.create");
        assert_eq!(claims["cap"]["scope"], "create:payment");

        // Accepted.
        let ok = api.call(&key, &token, Method::POST, "/payments/42").await;
        assert_eq!(ok.status, 200, "{:?}", ok.headers);
        assert_eq!(ok.json()["remaining"], 2);

        // The same proof twice: the second is a replay.
        let url = format!("{}/payments/42", api.origin);
        let p = key.proof("POST", &url, Some(&token), None, now()).unwrap();
        assert_eq!(api.call_with_proof(&token, p.clone(), Method::POST, "/payments/42").await.status, 200);
        let replay = api.call_with_proof(&token, p, Method::POST, "/payments/42").await;
        assert_eq!(replay.status, 401);
        assert!(replay.header("www-authenticate").unwrap().contains("invalid_dpop_proof"), "{:?}", replay.headers);

        // The subcap spends the last use; then the limit is exhausted.
        let sub = api.call(&key, &token, Method::GET, "/payments/42").await;
        assert_eq!((sub.status.as_u16(), &sub.json()["remaining"]), (200, &json!(0)));
        let spent = api.call(&key, &token, Method::GET, "/payments/42").await;
        assert_eq!(spent.status, 401);
        assert!(spent.header("www-authenticate").unwrap().contains("invalid_token"), "{:?}", spent.headers);

        dev.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn jwt_client_token_and_capability_mismatch() {
    bounded(async {
        let (dev, api) = setup().await;
        let endpoint = dev.server().urls().token_endpoint.clone();
        let (id, client_key) = dev.jwt_client();
        let key = DpopKey::generate(Algorithm::EdDSA).unwrap();
        let jwt = assertion(client_key, id, &endpoint, "assertion-1");
        let res =
            token_request(&endpoint, Auth::Assertion(id, jwt), proof(&key, &endpoint), &[("scope", "payments.create")])
                .await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        let body = res.json();
        assert_eq!(body["scope"], "payments.create");
        let token = body["access_token"].as_str().unwrap().to_owned();

        // Another action than the token's: 403.
        let wrong = api.call(&key, &token, Method::DELETE, "/payments/7").await;
        assert_eq!(wrong.status, 403);
        assert!(wrong.header("www-authenticate").unwrap().contains("insufficient_scope"));

        // Its own action (the template's pattern), once: limit 1 by default.
        assert_eq!(api.call(&key, &token, Method::POST, "/payments/7").await.status, 200);
        let exhausted = api.call(&key, &token, Method::POST, "/payments/8").await;
        assert_eq!(exhausted.status, 401);
        assert!(exhausted.header("www-authenticate").unwrap().contains("invalid_token"));

        // A proof made with another key: refused.
        let thief = DpopKey::generate(Algorithm::ES256).unwrap();
        let stolen = api.call(&thief, &token, Method::POST, "/payments/7").await;
        assert_eq!(stolen.status, 401);

        // The assertion's audience may also be the issuer URL.
        let issuer = dev.server().urls().issuer.clone();
        let jwt = assertion(client_key, id, &issuer, "assertion-2");
        let res =
            token_request(&endpoint, Auth::Assertion(id, jwt), proof(&key, &endpoint), &[("scope", "reports.read")])
                .await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        let token = res.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(api.call(&key, &token, Method::GET, "/reports/1").await.status, 200);

        dev.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn published_documents() {
    bounded(async {
        let (dev, _api) = setup().await;
        let urls = dev.server().urls().clone();
        let jwks = send(Method::GET, &urls.jwks_uri, &[], None).await;
        assert_eq!(jwks.status, 200);
        assert_eq!(jwks.header("cache-control"), Some("public, max-age=300"));
        let etag = jwks.header("etag").unwrap().to_owned();
        let keys = jwks.json();
        assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
        assert!(keys["keys"][0].get("d").is_none());
        assert_eq!(keys["keys"][0]["use"], "sig");
        let again = send(Method::GET, &urls.jwks_uri, &[("if-none-match", etag.clone())], None).await;
        assert_eq!((again.status.as_u16(), again.body.len()), (304, 0));
        assert_eq!(again.header("etag"), Some(etag.as_str()));

        let meta = send(Method::GET, &urls.metadata, &[], None).await.json();
        assert_eq!(meta["issuer"], urls.issuer);
        assert_eq!(meta["token_endpoint"], urls.token_endpoint);
        assert_eq!(meta["jwks_uri"], urls.jwks_uri);
        assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(meta["authorization_details_types_supported"], json!(["ekey_capability"]));
        assert_eq!(meta["tls_client_certificate_bound_access_tokens"], false);
        assert!(meta["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));

        let admin = format!("http://{}", dev.server().admin_addr());
        assert_eq!(send(Method::GET, &format!("{admin}/healthz"), &[], None).await.status, 200);
        assert_eq!(send(Method::GET, &format!("{admin}/readyz"), &[], None).await.status, 200);
        assert_eq!(send(Method::GET, &format!("{}/nope", urls.issuer), &[], None).await.status, 404);
        let get_token = send(Method::GET, &urls.token_endpoint, &[], None).await;
        assert_eq!((get_token.status.as_u16(), get_token.header("allow")), (405, Some("POST")));
        dev.shutdown().await;
    })
    .await;
}
