//! `ekey token` against a stand-in token endpoint that checks what the
//! issuer will check: form body, client authentication, DPoP proof and nonce.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use base64::Engine as _;
use bytes::Bytes;
use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    verify_compact_jws, Algorithm, DpopSettings, NonceSource, ProofError, ProofExpectations, ProofVerifier,
    VerifyingKey,
};
use http::request::Parts;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const CLIENT_ID: &str = "client one";
const SECRET: &str = "s3cr:et+%";

struct FakeIssuer {
    signer: TestIssuer,
    client_key: Option<ekey_verifier::PublicJwk>,
    proofs: ProofVerifier,
    seen_jtis: Mutex<HashSet<String>>,
    requests: Mutex<u32>,
    metadata: bool,
}

fn error(status: u16, code: &str, desc: &str) -> http::Response<http_body_util::Full<Bytes>> {
    respond_json(status, &[("cache-control", "no-store")], &json!({"error": code, "error_description": desc}))
}

impl FakeIssuer {
    async fn handle(&self, parts: Parts, body: Bytes) -> http::Response<http_body_util::Full<Bytes>> {
        let base = format!("http://{}", parts.headers["host"].to_str().unwrap());
        match (parts.method.as_str(), parts.uri.path()) {
            ("GET", "/.well-known/oauth-authorization-server") if self.metadata => respond_json(
                200,
                &[],
                &json!({"issuer": base, "token_endpoint": format!("{base}/oauth/token"),
                        "jwks_uri": format!("{base}/.well-known/jwks.json")}),
            ),
            ("GET", "/.well-known/jwks.json") => respond_json(200, &[], &self.signer.jwks()),
            ("POST", "/oauth/token") if self.metadata => self.token(parts, body, &format!("{base}/oauth/token")),
            ("POST", "/token") if !self.metadata => self.token(parts, body, &format!("{base}/token")),
            _ => respond(404, &[], "not found"),
        }
    }

    fn token(&self, parts: Parts, body: Bytes, endpoint: &str) -> http::Response<http_body_util::Full<Bytes>> {
        *self.requests.lock().unwrap() += 1;
        assert_eq!(parts.headers["content-type"], "application/x-www-form-urlencoded");
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("grant_type").as_deref() != Some("client_credentials") {
            return error(400, "unsupported_grant_type", "client_credentials only");
        }
        // Client authentication.
        let client = match (&self.client_key, parts.headers.get("authorization")) {
            (None, Some(h)) => {
                let b64 = h.to_str().unwrap().strip_prefix("Basic ").unwrap();
                let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
                let (id, secret) = raw.split_once(':').unwrap();
                let decode =
                    |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().unwrap().1.into_owned();
                if decode(id) != CLIENT_ID || decode(secret) != SECRET {
                    return error(401, "invalid_client", "client authentication failed");
                }
                decode(id)
            }
            (Some(jwk), None) => {
                assert_eq!(
                    get("client_assertion_type").as_deref(),
                    Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                );
                let vk = Arc::new(VerifyingKey::new(jwk, Algorithm::ES256).unwrap());
                let jws = verify_compact_jws::<Value>(
                    &get("client_assertion").unwrap(),
                    8192,
                    &[Algorithm::ES256],
                    None,
                    |_, kid| (kid == Some(jwk.thumbprint())).then_some(vk),
                );
                let Ok(jws) = jws else { return error(401, "invalid_client", "bad assertion") };
                let c = jws.payload;
                assert_eq!(c["iss"], CLIENT_ID);
                assert_eq!(c["sub"], CLIENT_ID);
                assert_eq!(c["aud"], endpoint);
                assert_eq!(get("client_id").as_deref(), Some(CLIENT_ID));
                let now = now();
                assert!(c["exp"].as_i64().unwrap() > now && c["exp"].as_i64().unwrap() <= now + 300);
                if !self.seen_jtis.lock().unwrap().insert(c["jti"].as_str().unwrap().to_owned()) {
                    return error(401, "invalid_client", "assertion replayed");
                }
                CLIENT_ID.to_owned()
            }
            _ => return error(401, "invalid_client", "unexpected client authentication"),
        };
        // DPoP proof, with a nonce required.
        let dpop: Vec<&str> = parts.headers.get_all("dpop").iter().map(|v| v.to_str().unwrap()).collect();
        let htu = ekey_verifier::normalize_htu(endpoint).unwrap();
        let expect = ProofExpectations { method: "POST", htu: &htu, access_token: None, jkt: None, now: now() };
        let proof = match self.proofs.verify(&dpop, &expect) {
            Ok(p) => p,
            Err(ProofError::NonceRequired(n)) => {
                let mut res = error(400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof");
                res.headers_mut().insert("dpop-nonce", n.parse().unwrap());
                return res;
            }
            Err(e) => return error(400, "invalid_dpop_proof", &e.to_string()),
        };
        let (cap, details) = match (get("scope"), get("authorization_details")) {
            (Some(tpl), None) if tpl == "pay" => (
                json!({"action": "POST:/payments/:id", "limit": 1}),
                json!([{"type": "ekey_capability", "action": "POST:/payments/:id", "limit": 1}]),
            ),
            (None, Some(d)) => {
                let d: Value = serde_json::from_str(&d).unwrap();
                let one = &d[0];
                assert_eq!(one["type"], "ekey_capability");
                let mut cap = json!({"action": one["action"], "limit": one.get("limit").cloned().unwrap_or(json!(1))});
                if let Some(s) = one.get("subcap") {
                    cap["subcap"] = s.clone();
                }
                (cap, d)
            }
            _ => return error(400, "invalid_scope", "unknown template"),
        };
        let mut claims = self.signer.claims(&proof.jkt, "GET:/", 1);
        claims["iss"] = format!("http://{}", parts.headers["host"].to_str().unwrap()).into();
        claims["sub"] = client.into();
        claims["cap"] = cap;
        let token = self.signer.sign(&claims);
        respond_json(
            200,
            &[("cache-control", "no-store")],
            &json!({
            "access_token": token, "token_type": "DPoP", "expires_in": 60, "authorization_details": details}),
        )
    }
}

fn fake_issuer(client_key: Option<&DpopKey>, metadata: bool) -> (String, Arc<FakeIssuer>) {
    let dpop = DpopSettings { nonce: Some(NonceSource::new(&[9u8; 32], 60).unwrap()), ..DpopSettings::default() };
    let fake = Arc::new(FakeIssuer {
        signer: TestIssuer::new("set per request"),
        client_key: client_key.map(|k| k.key_pair().public_jwk().clone()),
        proofs: ProofVerifier::new(dpop),
        seen_jtis: Mutex::new(HashSet::new()),
        requests: Mutex::new(0),
        metadata,
    });
    let handler = Arc::clone(&fake);
    let addr = serve(move |parts, body| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(parts, body).await }
    });
    (format!("http://{addr}"), fake)
}

#[test]
fn client_secret_basic_with_nonce_retry_then_verify() {
    let dir = scratch("token-basic");
    let (dpop, key) = keygen(&dir, "dpop.pem");
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let (issuer, fake) = fake_issuer(None, true);
    let run = ekey(&[
        "token",
        "--issuer",
        &issuer,
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        s(&secret),
        "--dpop-key",
        s(&dpop),
        "--scope",
        "pay",
    ]);
    run.expect_code(0);
    assert_eq!(*fake.requests.lock().unwrap(), 2, "one use_dpop_nonce, one retry");
    assert!(run.stderr.contains("nonce"), "{run:#?}");
    let j = run.json();
    assert_eq!((j["token_type"].as_str(), j["expires_in"].as_u64()), (Some("DPoP"), Some(60)));
    assert_eq!(j["authorization_details"][0]["action"], "POST:/payments/:id");
    let token = j["access_token"].as_str().unwrap();

    // The token is bound to the DPoP key and verifies with the issuer's discovered keys.
    let run = ekey(&[
        "verify",
        "--issuer",
        &issuer,
        "--audience",
        AUDIENCE,
        "--token",
        token,
        "--dpop-key",
        s(&dpop),
        "--method",
        "POST",
        "--url",
        &format!("{AUDIENCE}/payments/42"),
    ]);
    let v = run.expect_code(0).json();
    assert_eq!(v["binding"]["jkt"], key.thumbprint());
    assert_eq!(v["sub"], CLIENT_ID);
}

#[test]
fn secret_from_stdin_or_environment_and_raw_output() {
    let dir = scratch("token-env");
    let (dpop, _) = keygen(&dir, "dpop.pem");
    let (issuer, _) = fake_issuer(None, true);
    let base = ["token", "--issuer", &issuer, "--client-id", CLIENT_ID, "--dpop-key", s(&dpop), "--scope", "pay"];

    let run = ekey_with(&[&base[..], &["--client-secret-file", "-", "--raw"]].concat(), Some(SECRET.as_bytes()), &[]);
    run.expect_code(0);
    assert_eq!(run.stdout.lines().count(), 1);
    assert_eq!(run.stdout.trim().split('.').count(), 3);

    let run = ekey_with(&base, None, &[("EKEY_CLIENT_SECRET", SECRET)]);
    run.expect_code(0);

    let none = ekey(&base);
    none.expect_code(2);
    assert!(none.stderr.contains("EKEY_CLIENT_SECRET"), "{none:#?}");
}

#[test]
fn private_key_jwt_with_authorization_details_and_no_metadata() {
    let dir = scratch("token-pkjwt");
    let (dpop, key) = keygen(&dir, "dpop.pem");
    let (client_key_path, client_key) = keygen(&dir, "client.pem");
    let (issuer, fake) = fake_issuer(Some(&client_key), false);
    let run = ekey(&[
        "token",
        "--issuer",
        &issuer,
        "--client-id",
        CLIENT_ID,
        "--client-key",
        s(&client_key_path),
        "--dpop-key",
        s(&dpop),
        "--action",
        "POST:/payments/42",
        "--limit",
        "2",
        "--subcap",
        "GET:/payments/42",
        "--raw",
    ]);
    run.expect_code(0);
    assert!(run.stderr.contains("publishes no metadata"), "{run:#?}");
    assert_eq!(*fake.requests.lock().unwrap(), 2);
    assert_eq!(fake.seen_jtis.lock().unwrap().len(), 2, "the retry signs a fresh assertion");
    let inspect = ekey(&["inspect", run.stdout.trim()]).json();
    assert_eq!(
        inspect["claims"]["cap"],
        json!({"action": "POST:/payments/42", "limit": 2, "subcap": ["GET:/payments/42"]})
    );
    assert_eq!(inspect["claims"]["cnf"]["jkt"], key.thumbprint());
}

#[test]
fn issuer_errors_are_printed_and_exit_1() {
    let dir = scratch("token-error");
    let (dpop, _) = keygen(&dir, "dpop.pem");
    let (issuer, _) = fake_issuer(None, true);
    let base = ["token", "--issuer", &issuer, "--client-id", CLIENT_ID, "--dpop-key", s(&dpop)];

    let run = ekey(&[&base[..], &["--client-secret", "wrong", "--scope", "pay"]].concat());
    run.expect_code(1);
    assert_eq!(
        run.json(),
        json!({"status": 401, "error": "invalid_client", "error_description": "client authentication failed"})
    );
    assert!(run.stderr.contains("invalid_client: client authentication failed"), "{run:#?}");

    let run = ekey(&[&base[..], &["--client-secret", SECRET, "--scope", "nope"]].concat());
    run.expect_code(1);
    assert_eq!(run.json()["error"], "invalid_scope");

    // A bad action never leaves the machine.
    let run = ekey(&[&base[..], &["--client-secret", SECRET, "--action", "pay me"]].concat());
    run.expect_code(2);
    assert!(run.stderr.contains("METHOD:/path"), "{run:#?}");

    // Metadata naming another issuer is refused (RFC 8414 §3.3).
    let evil = serve(|_, _| async {
        respond_json(200, &[], &json!({"issuer": "http://evil.example", "token_endpoint": "http://evil.example/t"}))
    });
    let evil = format!("http://{evil}");
    let args = [&["token", "--issuer", &evil][..], &base[3..], &["--client-secret", SECRET, "--scope", "pay"]].concat();
    let run = ekey(&args);
    run.expect_code(3);
    assert!(run.stderr.contains("RFC 8414"), "{run:#?}");

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = ekey(
        &[
            &["token", "--issuer", &format!("http://127.0.0.1:{closed}")][..],
            &base[3..],
            &["--client-secret", SECRET, "--scope", "pay"],
        ]
        .concat(),
    );
    run.expect_code(3);
    assert!(run.stderr.contains("cannot reach"), "{run:#?}");
}
