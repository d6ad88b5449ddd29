// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]
use crate::support::*;
use bytes::Bytes;
use ekey_verifier::Jwks;
use ekey_verifier::{
    dangerous::decode_unverified, sha256_b64, MemoryStore, NonceSource, StaticKeys, Verifier, VerifierSettings,
};
use http::request::Parts;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    authorization: Option<String>,
    dpop: Vec<String>,
    content_type: Option<String>,
    custom: Option<String>,
    body: Bytes,
}

/// An API protected by the real verifier, with DPoP nonces required.
fn api(issuer: &TestIssuer) -> (std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let jwks = Jwks::from_json(issuer.jwks().to_string().as_bytes()).unwrap();
    let mut settings = VerifierSettings::new(&issuer.iss, AUDIENCE);
    settings.dpop.nonce = Some(NonceSource::new(&[7u8; 32], 60).unwrap());
    let verifier =
        Arc::new(Verifier::new(settings, Arc::new(StaticKeys::new(jwks).unwrap()), Arc::new(MemoryStore::default())));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let addr = serve(move |parts: Parts, body: Bytes| {
        let verifier = Arc::clone(&verifier);
        let log = Arc::clone(&log);
        async move {
            let header = |n: &str| parts.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
            log.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                authorization: header("authorization"),
                dpop: parts.headers.get_all("dpop").iter().map(|v| v.to_str().unwrap().to_owned()).collect(),
                content_type: header("content-type"),
                custom: header("x-test"),
                body: body.clone(),
            });
            // The URL the client addressed (no proxy in between).
            let url = format!("http://{}{}", parts.headers["host"].to_str().unwrap(), parts.uri);
            match verifier.verify_http(&parts.method, &url, &parts.headers, None).await {
                Ok(cap) => respond_json(
                    200,
                    &[("x-ekey-remaining", &cap.remaining.to_string())],
                    &json!({"sub": cap.sub, "remaining": cap.remaining, "echo": String::from_utf8_lossy(&body)}),
                ),
                Err(rejection) => {
                    let (head, ()) = verifier.reject(&rejection).into_parts();
                    let mut res = respond(head.status.as_u16(), &[], "refused");
                    *res.headers_mut() = head.headers;
                    res
                }
            }
        }
    });
    (addr, seen)
}

#[test]
fn call_sends_token_and_proof_and_retries_once_for_a_nonce() {
    let dir = scratch("call");
    let issuer = TestIssuer::new(ISSUER);
    let (dpop, key) = keygen(&dir, "dpop.pem");
    let token = issuer.sign(&issuer.claims(key.thumbprint(), "POST:/payments/:id", 2));
    let (addr, seen) = api(&issuer);
    let url = format!("http://{addr}/payments/42?trace=1");

    let run = ekey(&[
        "call",
        "--dpop-key",
        s(&dpop),
        "--token",
        &token,
        "--method",
        "POST",
        "--url",
        &url,
        "-H",
        "X-Test: yes",
        "--data",
        r#"{"amount":10}"#,
    ]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["status"], 200);
    assert_eq!(j["nonce_retry"], true);
    assert_eq!(j["json"], json!({"sub": "client-1", "remaining": 1, "echo": "{\"amount\":10}"}));
    assert_eq!(j["headers"]["x-ekey-remaining"], "1");
    assert_eq!(j["headers"]["content-type"], "application/json");
    assert!(j["headers"].get("date").is_none());
    assert!(run.stderr.contains("nonce"), "{run:#?}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one nonce challenge, one retry: {seen:#?}");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.authorization.as_deref(), Some(format!("DPoP {token}").as_str()));
        assert_eq!(s.dpop.len(), 1);
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
        assert_eq!(s.custom.as_deref(), Some("yes"));
        assert_eq!(&s.body[..], br#"{"amount":10}"#);
    }
    let (h0, c0) = decode_unverified(&seen[0].dpop[0]).unwrap();
    let (_, c1) = decode_unverified(&seen[1].dpop[0]).unwrap();
    assert_eq!(h0["typ"], "dpop+jwt");
    assert_eq!(c0["htm"], "POST");
    assert_eq!(c0["htu"], format!("http://{addr}/payments/42"), "no query in htu");
    assert_eq!(c0["ath"], sha256_b64(&token));
    assert!(c0.get("nonce").is_none());
    assert!(c1["nonce"].is_string(), "the retry echoes the server's nonce");
    assert_ne!(c0["jti"], c1["jti"], "a fresh proof for the retry");
}

#[test]
fn refusals_exit_1_and_raw_prints_the_body() {
    let dir = scratch("call-refused");
    let issuer = TestIssuer::new(ISSUER);
    let (dpop, key) = keygen(&dir, "dpop.pem");
    let token = issuer.sign(&issuer.claims(key.thumbprint(), "GET:/payments/:id", 1));
    let (addr, _) = api(&issuer);
    let url = format!("http://{addr}/payments/7");
    let args = ["call", "--dpop-key", s(&dpop), "--token", &token, "--url", &url];

    let raw = ekey(&[&args[..], &["--raw"]].concat());
    raw.expect_code(0);
    let body: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(body["remaining"], 0);

    // The single use is spent.
    let run = ekey(&args);
    run.expect_code(1);
    let j = run.json();
    assert_eq!(j["status"], 401);
    assert!(j["headers"]["www-authenticate"].as_str().unwrap().contains("usage limit reached"), "{j}");
    assert!(run.stderr.contains("HTTP 401"), "{run:#?}");

    // Wrong method for the capability: 403.
    let run = ekey(&[&args[..], &["-X", "DELETE"]].concat());
    run.expect_code(1);
    assert_eq!(run.json()["status"], 403);
}

#[test]
fn transport_and_usage_errors() {
    let dir = scratch("call-errors");
    let (dpop, _) = keygen(&dir, "dpop.pem");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed}/x");
    let run = ekey(&["call", "--dpop-key", s(&dpop), "--token", "a.b.c", "--url", &url]);
    run.expect_code(3);
    assert!(run.stderr.contains("cannot reach"), "{run:#?}");

    let ftp = ekey(&["call", "--dpop-key", s(&dpop), "--token", "a.b.c", "--url", "ftp://api.example.com/"]);
    ftp.expect_code(2);
    assert!(ftp.stderr.contains("unsupported scheme"), "{ftp:#?}");

    let own = ekey(&["call", "--dpop-key", s(&dpop), "--token", "a.b.c", "--url", &url, "-H", "DPoP: x"]);
    own.expect_code(2);

    let both =
        ekey_with(&["call", "--dpop-key", s(&dpop), "--token", "-", "--url", &url, "--data", "-"], Some(b"x"), &[]);
    both.expect_code(2);
    assert!(both.stderr.contains("standard input"), "{both:#?}");
}
