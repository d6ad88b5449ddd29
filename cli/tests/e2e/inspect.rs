// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]
use crate::support::*;
use ekey_verifier::b64_encode;
use serde_json::json;

#[test]
fn decodes_without_verifying_and_labels_it() {
    let issuer = TestIssuer::new(ISSUER);
    let claims = issuer.claims("jkt-1", "POST:/payments/:id", 1);
    let token = issuer.sign(&claims);
    let run = ekey(&["inspect", &token]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["verified"], false);
    assert!(j["warning"].as_str().unwrap().starts_with("NOT VERIFIED"));
    assert!(run.stderr.contains("NOT VERIFIED"), "{run:#?}");
    assert_eq!(j["header"]["typ"], "ekey+jwt");
    assert_eq!(j["claims"], claims);
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(j["times"]["exp"]["unix"], exp);
    let utc = j["times"]["exp"]["utc"].as_str().unwrap();
    assert!(utc.len() == 20 && utc.ends_with('Z') && utc.as_bytes()[10] == b'T', "{utc}");
    let expires_in = j["expires_in"].as_i64().unwrap();
    assert!((55..=60).contains(&expires_in), "{expires_in}");
}

#[test]
fn reads_stdin_and_files_and_ignores_an_auth_scheme() {
    let issuer = TestIssuer::new(ISSUER);
    let token = issuer.sign(&issuer.claims("j", "GET:/", 1));
    let run = ekey_with(&["inspect", "-"], Some(format!("DPoP {token}\n").as_bytes()), &[]);
    assert_eq!(run.expect_code(0).json()["claims"]["sub"], "client-1");
    let dir = scratch("inspect");
    let file = dir.join("t.jwt");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let run = ekey(&["inspect", &format!("@{}", s(&file))]);
    assert_eq!(run.expect_code(0).json()["header"]["kid"], issuer.key.thumbprint());
}

#[test]
fn tampered_or_absurd_tokens_still_decode_and_nothing_panics() {
    let header = b64_encode(json!({"alg": "none"}).to_string());
    let payload = b64_encode(r#"{"exp":1e300,"iat":-99999999999999,"nbf":"x"}"#);
    let run = ekey(&["inspect", &format!("{header}.{payload}.sig")]);
    let j = run.expect_code(0).json();
    assert_eq!(j["times"]["exp"]["utc"], serde_json::Value::Null);
    assert_eq!(j["times"]["iat"]["utc"], serde_json::Value::Null);
    assert!(j.get("expires_in").is_none());
}

#[test]
fn garbage_is_a_clear_usage_error() {
    for bad in ["abc", "a.b.c", "....", "eyJ.eyJ.x"] {
        let run = ekey(&["inspect", bad]);
        run.expect_code(2);
        assert!(run.stderr.contains("cannot decode"), "{run:#?}");
        assert!(run.stdout.is_empty());
    }
    ekey(&["inspect", "-"]).expect_code(2); // empty stdin
    ekey(&["inspect", "@/nonexistent/ekey/token"]).expect_code(2);
}
