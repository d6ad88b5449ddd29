//! Wycheproof vectors run through `VerifyingKey::verify`, the exact path the
//! verifier uses for tokens and proofs.

// Test helpers outside #[test] functions panic on failure by design.
#![allow(clippy::unwrap_used)]
use ekey_verifier::{b64_encode, Algorithm, PublicJwk, VerifyingKey};
use serde_json::json;

fn key(jwk: serde_json::Value, alg: Algorithm) -> Option<VerifyingKey> {
    let jwk = PublicJwk::from_json(jwk.to_string().as_bytes()).ok()?;
    VerifyingKey::new(&jwk, alg).ok()
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    &b[n..]
}

/// Counts (checked, mismatches) and prints mismatches.
fn report(name: &str, results: Vec<(usize, bool, bool)>) {
    let bad: Vec<_> = results.iter().filter(|(_, expect, got)| expect != got).collect();
    assert!(!results.is_empty(), "{name}: no tests ran");
    assert!(bad.is_empty(), "{name}: {} of {} vectors disagree: {:?}", bad.len(), results.len(), bad);
}

fn ecdsa(set: wycheproof::ecdsa::TestName, alg: Algorithm, coord: usize, p1363: bool) {
    let ts = wycheproof::ecdsa::TestSet::load(set).unwrap();
    let mut results = Vec::new();
    for g in ts.test_groups {
        let point = &g.key.key[..];
        assert_eq!(point.len(), 1 + 2 * coord);
        let jwk = json!({"kty":"EC","crv": if coord == 32 {"P-256"} else {"P-384"},
            "x": b64_encode(&point[1..1 + coord]), "y": b64_encode(&point[1 + coord..])});
        let Some(k) = key(jwk, alg) else {
            // Keys the crypto library refuses (not on curve…) can verify nothing.
            let valid = |t: &&wycheproof::ecdsa::Test| t.result != wycheproof::TestResult::Acceptable;
            results.extend(
                g.tests
                    .iter()
                    .filter(valid)
                    .map(|t| (t.tc_id, p1363 && t.result == wycheproof::TestResult::Valid, false)),
            );
            continue;
        };
        for t in g.tests {
            let got = k.verify(&t.msg, &t.sig);
            // DER-encoded signatures must never verify where r‖s is expected.
            let expect = p1363 && t.result == wycheproof::TestResult::Valid;
            if t.result == wycheproof::TestResult::Acceptable {
                continue;
            }
            results.push((t.tc_id, expect, got));
        }
    }
    report(&format!("{set:?}"), results);
}

#[test]
fn es256_p1363() {
    ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256, 32, true);
}

#[test]
fn es384_p1363() {
    ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384, 48, true);
}

#[test]
fn es256_der_signatures_never_verify() {
    ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256, Algorithm::ES256, 32, false);
}

#[test]
fn eddsa() {
    let ts = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut results = Vec::new();
    for g in ts.test_groups {
        let k = key(json!({"kty":"OKP","crv":"Ed25519","x": b64_encode(&g.key.pk[..])}), Algorithm::EdDSA)
            .expect("Ed25519 test key");
        for t in g.tests {
            results.push((t.tc_id, t.result == wycheproof::TestResult::Valid, k.verify(&t.msg, &t.sig)));
        }
    }
    report("Ed25519", results);
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> serde_json::Value {
    json!({"kty":"RSA","n": b64_encode(strip_zeros(n)), "e": b64_encode(strip_zeros(e))})
}

#[test]
fn ps256() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let ts = TestSet::load(TestName::RsaPss2048Sha256Mgf1SaltLen32).unwrap();
    let mut results = Vec::new();
    for g in ts.test_groups {
        let k = key(rsa_jwk(&g.key.n, &g.key.e), Algorithm::PS256).expect("RSA test key");
        for t in g.tests {
            if t.result == wycheproof::TestResult::Acceptable {
                continue;
            }
            results.push((t.tc_id, t.result == wycheproof::TestResult::Valid, k.verify(&t.msg, &t.sig)));
        }
    }
    report("PS256", results);
}

#[test]
fn rs256() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let ts = TestSet::load(TestName::Rsa2048Sha256).unwrap();
    let mut results = Vec::new();
    for g in ts.test_groups {
        let k = key(rsa_jwk(&g.key.n, &g.key.e), Algorithm::RS256).expect("RSA test key");
        for t in g.tests {
            if t.result == wycheproof::TestResult::Acceptable {
                continue;
            }
            results.push((t.tc_id, t.result == wycheproof::TestResult::Valid, k.verify(&t.msg, &t.sig)));
        }
    }
    report("RS256", results);
}
