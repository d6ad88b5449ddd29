//! Helpers shared by the verifier's API-level tests: an issuer key that signs
//! tokens, and a verifier wired to it.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    b64_encode, Algorithm, Capability, Claims, Confirmation, Jwks, KeyPair, ManualClock, MemoryStore, StaticKeys,
    Verifier, VerifierSettings,
};
use serde_json::json;
use std::sync::Arc;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://api.test";
pub const NOW: i64 = 1_800_000_000;

pub struct Issuer {
    pub key: KeyPair,
}

impl Issuer {
    pub fn new() -> Self {
        Self { key: KeyPair::generate(Algorithm::ES256).unwrap() }
    }

    pub fn kid(&self) -> &str {
        self.key.thumbprint()
    }

    pub fn jwks(&self) -> Jwks {
        Jwks::new(vec![self.key.public_jwk().clone().with_kid_and_alg(self.kid(), self.key.algorithm())]).unwrap()
    }

    pub fn claims(&self, jkt: &str, action: &str, limit: u32) -> Claims {
        let mut jti = [0u8; 16];
        openssl::rand::rand_bytes(&mut jti).unwrap();
        Claims {
            iss: ISSUER.into(),
            sub: "client-1".into(),
            aud: ekey_verifier::Audience::One(AUDIENCE.into()),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 60,
            jti: b64_encode(jti),
            cap: Capability { action: action.into(), scope: None, limit, subcap: vec![] },
            cnf: Confirmation::Jkt(jkt.into()),
            tpl: Some("t".into()),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = json!({"alg": self.key.algorithm().as_str(), "typ": "ekey+jwt", "kid": self.kid()});
        let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(serde_json::to_vec(claims).unwrap()));
        format!("{input}.{}", b64_encode(self.key.sign(input.as_bytes()).unwrap()))
    }

    pub fn token(&self, client: &DpopKey, action: &str, limit: u32) -> String {
        self.sign(&self.claims(client.thumbprint(), action, limit))
    }

    pub fn verifier(&self) -> (Verifier, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(NOW));
        let keys = Arc::new(StaticKeys::new(self.jwks()).unwrap());
        let v = Verifier::with_clock(
            VerifierSettings::new(ISSUER, AUDIENCE),
            keys,
            Arc::new(MemoryStore::default()),
            clock.clone(),
        );
        (v, clock)
    }
}

pub mod jwks;
pub mod redis;

/// Sends 1,000 requests of one `limit`-use token for `POST:/payments/:id`,
/// each with a fresh proof made up front (so the race is between
/// verifications only), all at once, spread over `verifiers` in turn.
/// Returns the sorted `used` numbers of the accepted requests; any refusal
/// other than `exhausted` fails the test.
pub async fn race_one_token(issuer: &Issuer, verifiers: &[Arc<Verifier>], limit: u32) -> Vec<u32> {
    use ekey_verifier::{PresentedRequest, Rejection, TokenError};
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "POST:/payments/:id", limit);
    let url = format!("{AUDIENCE}/payments/7");
    let proofs: Vec<String> = (0..1000).map(|_| client.proof("POST", &url, Some(&token), None, NOW).unwrap()).collect();
    let tasks: Vec<_> = proofs
        .into_iter()
        .enumerate()
        .map(|(i, proof)| {
            let (v, token, url) = (verifiers[i % verifiers.len()].clone(), token.clone(), url.clone());
            tokio::spawn(async move {
                let auth = format!("DPoP {token}");
                let req = PresentedRequest {
                    method: "POST",
                    url: &url,
                    authorization: Some(&auth),
                    dpop: vec![&proof],
                    ..Default::default()
                };
                v.verify(&req).await
            })
        })
        .collect();
    let mut used = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(cap) => used.push(cap.used),
            Err(Rejection::InvalidToken(TokenError::Exhausted)) => {}
            Err(other) => panic!("unexpected rejection {other:?}"),
        }
    }
    used.sort_unstable();
    used
}
