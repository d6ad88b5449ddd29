// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]
use crate::support::*;
use ekey_verifier::{b64_encode, sha256_b64};
use serde_json::{json, Value};
use std::path::PathBuf;

const URL: &str = "https://api.example.com/payments/42";

struct Setup {
    dir: PathBuf,
    issuer: TestIssuer,
    jwks: PathBuf,
    dpop: PathBuf,
    jkt: String,
}

fn setup(name: &str) -> Setup {
    let dir = scratch(name);
    let issuer = TestIssuer::new(ISSUER);
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let (dpop, key) = keygen(&dir, "dpop.pem");
    Setup { jkt: key.thumbprint().to_owned(), dir, issuer, jwks, dpop }
}

impl Setup {
    fn token(&self, action: &str, limit: u32) -> String {
        self.issuer.sign(&self.issuer.claims(&self.jkt, action, limit))
    }

    fn proof(&self, method: &str, url: &str, token: &str) -> String {
        let run = ekey(&["proof", "--dpop-key", s(&self.dpop), "--method", method, "--url", url, "--token", token]);
        run.expect_code(0);
        assert_eq!(run.stdout.trim().split('.').count(), 3, "{run:#?}");
        assert_eq!(run.stdout.lines().count(), 1);
        run.stdout.trim().to_owned()
    }

    fn verify(&self, token: &str, binding: &[&str], method: &str) -> crate::support::Run {
        let mut args = vec!["verify", "--issuer", ISSUER, "--jwks-file", s(&self.jwks), "--audience", AUDIENCE];
        args.extend(["--token", token, "--method", method, "--url", URL]);
        args.extend_from_slice(binding);
        ekey(&args)
    }
}

fn expect_rejected(run: &crate::support::Run, status: u64, error: &str) -> Value {
    run.expect_code(1);
    let j = run.json();
    assert_eq!(j["outcome"], "rejected", "{run:#?}");
    assert_eq!((j["status"].as_u64(), j["error"].as_str()), (Some(status), Some(error)), "{run:#?}");
    assert!(run.stderr.contains("rejected"), "{run:#?}");
    j
}

#[test]
fn keygen_proof_verify_accepts() {
    let t = setup("verify-ok");
    let token = t.token("POST:/payments/:id", 3);
    let proof = t.proof("POST", URL, &token);
    let run = t.verify(&token, &["--proof", &proof], "POST");
    run.expect_code(0);
    let j = run.json();
    let trace = j["trace"].clone();
    assert_eq!(
        j,
        json!({"outcome": "accepted", "sub": "client-1", "trace": trace, "action": "POST:/payments/:id",
               "scope": null, "template": "test-template", "binding": {"type": "dpop", "jkt": t.jkt},
               "used": 1, "remaining": 2, "exp": j["exp"]})
    );
    assert_eq!(trace.as_str().map(str::len), Some(22));

    // A fresh proof made by `verify` itself from the key, token and proof from files.
    let token_file = t.dir.join("token.jwt");
    std::fs::write(&token_file, &token).unwrap();
    let run = t.verify(&format!("@{}", s(&token_file)), &["--dpop-key", s(&t.dpop)], "post");
    assert_eq!(run.expect_code(0).json()["outcome"], "accepted");
}

#[test]
fn tampered_token_is_invalid_token() {
    let t = setup("verify-tampered");
    let token = t.token("POST:/payments/:id", 1);
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = t.issuer.claims(&t.jkt, "POST:/payments/:id", 1000);
    claims["sub"] = "admin".into();
    let forged = format!("{}.{}.{}", parts[0], b64_encode(claims.to_string()), parts[2]);
    let proof = t.proof("POST", URL, &forged);
    let j = expect_rejected(&t.verify(&forged, &["--proof", &proof], "POST"), 401, "invalid_token");
    assert_eq!(j["reason"], "invalid_token");
    assert_eq!(j["description"], "invalid token: token signature invalid");
    assert!(j["www_authenticate"].as_str().unwrap().contains("error=\"invalid_token\""));
}

#[test]
fn wrong_method_is_refused() {
    let t = setup("verify-method");
    let token = t.token("POST:/payments/:id", 1);
    // Proof for POST presented on a GET: the proof does not match the request.
    let proof = t.proof("POST", URL, &token);
    let j = expect_rejected(&t.verify(&token, &["--proof", &proof], "GET"), 401, "invalid_dpop_proof");
    assert_eq!(j["description"], "invalid DPoP proof: htm does not match the request method");
    // A correct GET proof, but the token only allows POST.
    let proof = t.proof("GET", URL, &token);
    let j = expect_rejected(&t.verify(&token, &["--proof", &proof], "GET"), 403, "insufficient_scope");
    assert_eq!(j["reason"], "insufficient_scope");
}

#[test]
fn a_path_not_in_normal_form_is_refused_with_400() {
    let t = setup("verify-path");
    let token = t.token("POST:/payments/:id", 1);
    let hostile = "https://api.example.com/admin/../payments/42";
    let run = ekey(&[
        "verify",
        "--issuer",
        ISSUER,
        "--jwks-file",
        s(&t.jwks),
        "--audience",
        AUDIENCE,
        "--token",
        &token,
        "--method",
        "POST",
        "--url",
        hostile,
        "--dpop-key",
        s(&t.dpop),
    ]);
    let j = expect_rejected(&run, 400, "invalid_request");
    assert_eq!(j["reason"], "invalid_path");
}

#[test]
fn expired_wrong_audience_and_foreign_proof() {
    let t = setup("verify-claims");
    let mut claims = t.issuer.claims(&t.jkt, "POST:/payments/:id", 1);
    let past = now() - 600;
    claims["iat"] = past.into();
    claims["nbf"] = past.into();
    claims["exp"] = (past + 60).into();
    let expired = t.issuer.sign(&claims);
    let proof = t.proof("POST", URL, &expired);
    let j = expect_rejected(&t.verify(&expired, &["--proof", &proof], "POST"), 401, "invalid_token");
    assert_eq!(j["reason"], "expired");

    let mut claims = t.issuer.claims(&t.jkt, "POST:/payments/:id", 1);
    claims["aud"] = "https://other.example.com".into();
    let other = t.issuer.sign(&claims);
    let proof = t.proof("POST", URL, &other);
    let j = expect_rejected(&t.verify(&other, &["--proof", &proof], "POST"), 401, "invalid_token");
    assert_eq!(j["description"], "invalid token: wrong audience");

    let token = t.token("POST:/payments/:id", 1);
    let (stranger, _) = keygen(&t.dir, "stranger.pem");
    let run = t.verify(&token, &["--dpop-key", s(&stranger)], "POST");
    let j = expect_rejected(&run, 401, "invalid_dpop_proof");
    assert_eq!(j["description"], "invalid DPoP proof: proof key does not match the token's cnf.jkt");

    // A proof from the past, made with `ekey proof --iat`.
    let old = ekey(&[
        "proof",
        "--dpop-key",
        s(&t.dpop),
        "--method",
        "POST",
        "--url",
        URL,
        "--token",
        &token,
        "--iat",
        &(now() - 3600).to_string(),
    ]);
    let j = expect_rejected(&t.verify(&token, &["--proof", old.stdout.trim()], "POST"), 401, "invalid_dpop_proof");
    assert_eq!(j["description"], "invalid DPoP proof: proof iat outside the accepted window");
}

#[test]
fn jwks_by_url_and_by_discovery() {
    let t = setup("verify-jwks-url");
    let jwks = t.issuer.jwks();
    let addr = serve(move |parts, _| {
        let jwks = jwks.clone();
        async move {
            let base = format!("http://{}", parts.headers["host"].to_str().unwrap());
            match parts.uri.path() {
                "/.well-known/oauth-authorization-server" => respond_json(
                    200,
                    &[],
                    &json!({"issuer": base, "token_endpoint": format!("{base}/token"),
                            "jwks_uri": format!("{base}/keys")}),
                ),
                "/keys" => respond_json(200, &[("cache-control", "max-age=60")], &jwks),
                _ => respond(404, &[], ""),
            }
        }
    });
    let base = format!("http://{addr}");
    let mut claims = t.issuer.claims(&t.jkt, "GET:/payments/:id", 1);
    claims["iss"] = base.clone().into();
    let token = t.issuer.sign(&claims);
    let common = ["--audience", AUDIENCE, "--token", &token, "--method", "GET", "--url", URL];
    let key = ["--dpop-key", s(&t.dpop)];

    let url = format!("{base}/keys");
    let run = ekey(&[&["verify", "--issuer", &base, "--jwks-url", &url][..], &common, &key].concat());
    assert_eq!(run.expect_code(0).json()["outcome"], "accepted");

    let run = ekey(&[&["verify", "--issuer", &base][..], &common, &key].concat());
    assert_eq!(run.expect_code(0).json()["remaining"], 0);

    // Keys that cannot be fetched: the verifier fails closed with 503, exit 3.
    let gone = format!("{base}/missing");
    let run = ekey(&[&["verify", "--issuer", &base, "--jwks-url", &gone][..], &common, &key].concat());
    run.expect_code(3);
    let j = run.json();
    assert_eq!((j["outcome"].as_str(), j["status"].as_u64()), (Some("rejected"), Some(503)));
    assert_eq!(j["error"], Value::Null);
}

#[test]
fn certificate_bound_token() {
    use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
    let t = setup("verify-mtls");
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let pkey = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "client-1").unwrap();
    let name = name.build();
    let mut b = x509::X509Builder::new().unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&pkey).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
    b.sign(&pkey, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let pem = t.dir.join("client.crt");
    std::fs::write(&pem, cert.to_pem().unwrap()).unwrap();

    let mut claims = t.issuer.claims(&t.jkt, "POST:/payments/:id", 1);
    claims["cnf"] = json!({"x5t#S256": sha256_b64(cert.to_der().unwrap())});
    let token = t.issuer.sign(&claims);
    let run = t.verify(&token, &["--client-cert", s(&pem)], "POST");
    let j = run.expect_code(0).json();
    assert_eq!(j["binding"], json!({"type": "mtls", "x5t#S256": claims["cnf"]["x5t#S256"]}));

    let der = t.dir.join("other.der");
    std::fs::write(&der, b"\x30\x03\x02\x01\x01").unwrap();
    t.verify(&token, &["--client-cert", s(&der)], "POST").expect_code(2);
}

#[test]
fn usage_errors_exit_2() {
    let t = setup("verify-usage");
    let token = t.token("POST:/payments/:id", 1);
    // No binding at all.
    let run = ekey(&[
        "verify",
        "--issuer",
        ISSUER,
        "--jwks-file",
        s(&t.jwks),
        "--audience",
        AUDIENCE,
        "--token",
        &token,
        "--method",
        "POST",
        "--url",
        URL,
    ]);
    run.expect_code(2);
    // Not a JWKS.
    let bad = t.dir.join("bad.json");
    std::fs::write(&bad, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":\"x\"}]}").unwrap();
    let run = ekey(&[
        "verify",
        "--issuer",
        ISSUER,
        "--jwks-file",
        s(&bad),
        "--audience",
        AUDIENCE,
        "--token",
        &token,
        "--method",
        "POST",
        "--url",
        URL,
        "--dpop-key",
        s(&t.dpop),
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("private key material"), "{run:#?}");
    // Not a URL; not a method; a key file that is not a key.
    t.verify(&token, &["--dpop-key", s(&t.dpop)], "GE T").expect_code(2);
    t.verify(&token, &["--dpop-key", s(&t.jwks)], "POST").expect_code(2);
    let run = ekey(&[
        "verify",
        "--issuer",
        ISSUER,
        "--jwks-file",
        s(&t.jwks),
        "--audience",
        AUDIENCE,
        "--token",
        &token,
        "--method",
        "POST",
        "--url",
        "not a url",
        "--dpop-key",
        s(&t.dpop),
    ]);
    run.expect_code(2);
}
