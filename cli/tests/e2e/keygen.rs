// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]
use crate::support::*;
use ekey_verifier::client::DpopKey;

#[test]
fn writes_a_private_pem_and_prints_only_the_public_key() {
    let dir = scratch("keygen");
    let out = dir.join("dpop.pem");
    let run = ekey(&["keygen", "--out", s(&out)]);
    run.expect_code(0);
    let j = run.json();
    let key = DpopKey::from_pem(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(j["alg"], "ES256");
    assert_eq!(j["thumbprint"], key.thumbprint());
    assert_eq!(j["jwk"]["kty"], "EC");
    assert_eq!(j["jwk"]["crv"], "P-256");
    assert!(j["jwk"].get("d").is_none(), "private member printed: {}", run.stdout);
    assert_eq!(j["out"], s(&out));
    assert!(!run.stdout.contains("PRIVATE"), "{}", run.stdout);
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn refuses_to_overwrite_without_force() {
    let dir = scratch("keygen-force");
    let out = dir.join("dpop.pem");
    let first = ekey(&["keygen", "--out", s(&out)]).json();
    let before = std::fs::read(&out).unwrap();

    let again = ekey(&["keygen", "--out", s(&out)]);
    again.expect_code(2);
    assert!(again.stderr.contains("--force"), "{again:#?}");
    assert!(again.stdout.is_empty());
    assert_eq!(std::fs::read(&out).unwrap(), before, "the existing key must survive");

    let forced = ekey(&["keygen", "--alg", "EdDSA", "--out", s(&out), "--force"]);
    forced.expect_code(0);
    let j = forced.json();
    assert_eq!((j["alg"].as_str(), j["jwk"]["crv"].as_str()), (Some("EdDSA"), Some("Ed25519")));
    assert_ne!(j["thumbprint"], first["thumbprint"]);
    assert_eq!(DpopKey::from_pem(&std::fs::read(&out).unwrap()).unwrap().thumbprint(), j["thumbprint"]);
}

#[test]
fn es384_and_bad_algorithms() {
    let dir = scratch("keygen-alg");
    let run = ekey(&["keygen", "--alg", "ES384", "--out", s(&dir.join("k.pem"))]);
    assert_eq!(run.expect_code(0).json()["jwk"]["crv"], "P-384");
    ekey(&["keygen", "--alg", "RS256", "--out", s(&dir.join("r.pem"))]).expect_code(2);
    let missing_dir = ekey(&["keygen", "--out", s(&dir.join("no/such/dir/k.pem"))]);
    missing_dir.expect_code(2);
    assert!(missing_dir.stderr.contains("cannot write"), "{missing_dir:#?}");
}
