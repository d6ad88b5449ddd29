//! Property tests over the token and proof parsers: arbitrary input never
//! panics, is never accepted, and is handled in bounded time.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Issuer, AUDIENCE, NOW};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{b64_encode, normalize_htu, ActionPattern, Algorithm, Jwks, PresentedRequest, PublicJwk, Verifier};
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// Far above any legitimate cost (microseconds), far below a hang.
const BOUND: Duration = Duration::from_secs(2);

struct Fixture {
    verifier: Verifier,
    token: String,
    proof: String,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let issuer = Issuer::new();
        let client = DpopKey::generate(Algorithm::ES256).unwrap();
        let token = issuer.token(&client, "GET:/x", 1_000_000);
        let proof = client.proof("GET", &format!("{AUDIENCE}/x"), Some(&token), None, NOW).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Fixture { verifier: issuer.verifier().0, token, proof, rt }
    })
}

/// Runs one verification; returns whether it was accepted.
fn verify(token: &str, proof: &str) -> bool {
    let f = fixture();
    let auth = format!("DPoP {token}");
    let url = format!("{AUDIENCE}/x");
    let started = Instant::now();
    let req = PresentedRequest {
        method: "GET",
        url: &url,
        authorization: Some(&auth),
        dpop: vec![proof],
        ..Default::default()
    };
    let accepted = f.rt.block_on(f.verifier.verify(&req)).is_ok();
    assert!(started.elapsed() < BOUND, "verification took {:?}", started.elapsed());
    accepted
}

fn mutate(s: &str, pos: usize, byte: u8, kind: u8) -> String {
    let mut b = s.as_bytes().to_vec();
    let pos = pos % (b.len() + 1);
    match kind % 3 {
        0 if pos < b.len() => b[pos] = byte,
        1 => b.insert(pos, byte),
        _ => b.truncate(pos),
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_are_rejected(token in "\\PC{0,300}", proof in "\\PC{0,300}") {
        prop_assert!(!verify(&token, &proof));
    }

    #[test]
    fn arbitrary_jws_shaped_input_is_rejected(h in proptest::collection::vec(any::<u8>(), 0..200),
                                              p in proptest::collection::vec(any::<u8>(), 0..200),
                                              s in proptest::collection::vec(any::<u8>(), 0..80)) {
        let jws = format!("{}.{}.{}", b64_encode(&h), b64_encode(&p), b64_encode(&s));
        prop_assert!(!verify(&jws, &fixture().proof));
        prop_assert!(!verify(&fixture().token, &jws));
    }

    #[test]
    fn mutated_tokens_and_proofs_are_rejected(pos in any::<usize>(), byte in any::<u8>(), kind in any::<u8>()) {
        let f = fixture();
        let token = mutate(&f.token, pos, byte, kind);
        let proof = mutate(&f.proof, pos, byte, kind);
        if token != f.token {
            prop_assert!(!verify(&token, &f.proof));
        }
        if proof != f.proof {
            prop_assert!(!verify(&f.token, &proof));
        }
    }

    #[test]
    fn other_parsers_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let started = Instant::now();
        let _ = PublicJwk::from_json(&input);
        let _ = Jwks::from_json(&input);
        let text = String::from_utf8_lossy(&input);
        let _ = normalize_htu(&text);
        let _ = ActionPattern::parse(&text);
        let _ = ekey_verifier::dangerous::decode_unverified(&text);
        prop_assert!(started.elapsed() < BOUND);
    }
}

#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let jws = format!("{}.{}.{}", b64_encode(&deep), b64_encode("{}"), b64_encode([0u8; 64]));
    // Over the size limit: refused before parsing.
    assert!(!verify(&jws, &fixture().proof));
    let header = format!("{{\"alg\":\"ES256\",\"x\":{}{}}}", "[".repeat(2000), "]".repeat(2000));
    let jws = format!("{}.{}.{}", b64_encode(&header), b64_encode("{}"), b64_encode([0u8; 64]));
    assert!(!verify(&jws, &fixture().proof));
}

#[test]
fn the_fixture_itself_is_accepted() {
    // Guards the properties above: they would pass vacuously if nothing could be accepted.
    let f = fixture();
    assert!(verify(&f.token, &f.proof));
}
