//! RSA key limits (2048 ..= 4096 bits, odd exponent ≥ 3) on the paths keys
//! arrive by: a DPoP proof's `jwk` and the issuer's JWK set. (Client keys of
//! the issuer's `private_key_jwt` pass the same `PublicJwk` parser; the
//! issuer's config tests cover that path.)

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Issuer, AUDIENCE, NOW};
use ekey_verifier::{b64_encode, sha256_b64, Confirmation, Jwks, PresentedRequest, ProofError, Rejection, StaticKeys};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use serde_json::json;

struct RsaKey {
    pkey: PKey<Private>,
    jwk: serde_json::Value,
}

impl RsaKey {
    fn generate(bits: u32) -> Self {
        let rsa = Rsa::generate(bits).unwrap();
        assert_eq!(rsa.n().num_bits(), bits as i32);
        let jwk = json!({"kty": "RSA", "n": b64_encode(rsa.n().to_vec()), "e": b64_encode(rsa.e().to_vec())});
        Self { pkey: PKey::from_rsa(rsa).unwrap(), jwk }
    }

    /// RFC 7638 thumbprint, computed here: the verifier's parser refuses
    /// some of these keys.
    fn thumbprint(&self) -> String {
        sha256_b64(format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            self.jwk["e"].as_str().unwrap(),
            self.jwk["n"].as_str().unwrap()
        ))
    }

    fn ps256(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(claims.to_string()));
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey).unwrap();
        signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
        signer.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        signer.update(input.as_bytes()).unwrap();
        format!("{input}.{}", b64_encode(signer.sign_to_vec().unwrap()))
    }

    fn proof(&self, method: &str, url: &str, token: &str) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "PS256", "jwk": self.jwk});
        let claims = json!({"jti": sha256_b64(self.thumbprint() + url), "htm": method, "htu": url, "iat": NOW,
                            "ath": sha256_b64(token)});
        self.ps256(&header, &claims)
    }
}

async fn present(issuer: &Issuer, client: &RsaKey) -> Result<(), Rejection> {
    let (verifier, _clock) = issuer.verifier();
    let mut claims = issuer.claims("unused", "GET:/things", 1);
    claims.cnf = Confirmation::Jkt(client.thumbprint());
    let token = issuer.sign(&claims);
    let url = format!("{AUDIENCE}/things");
    let proof = client.proof("GET", &url, &token);
    let auth = format!("DPoP {token}");
    let req = PresentedRequest {
        method: "GET",
        url: &url,
        authorization: Some(&auth),
        dpop: vec![&proof],
        ..Default::default()
    };
    verifier.verify(&req).await.map(drop)
}

#[tokio::test]
async fn dpop_proof_rsa_key_from_2048_to_4096_bits() {
    let issuer = Issuer::new();
    for bits in [2048, 4096] {
        present(&issuer, &RsaKey::generate(bits)).await.unwrap_or_else(|r| panic!("{bits} bits: {r}"));
    }
    // 4097 cannot be had from openssl (it makes 4096); 4098 is the nearest above.
    for bits in [2047, 4098] {
        match present(&issuer, &RsaKey::generate(bits)).await {
            Err(Rejection::InvalidProof(ProofError::Jwk(why))) => {
                assert!(why.contains(&format!("{bits} bits")) && why.contains("2048 to 4096"), "{bits}: {why}")
            }
            other => panic!("{bits} bits: {other:?}"),
        }
    }
}

#[tokio::test]
async fn dpop_proof_rsa_exponent_odd_and_at_least_3() {
    let issuer = Issuer::new();
    let good = RsaKey::generate(2048);
    for e in [&[1u8][..], &[2], &[1, 0, 0]] {
        let mut key = RsaKey { pkey: good.pkey.clone(), jwk: good.jwk.clone() };
        key.jwk["e"] = b64_encode(e).into();
        match present(&issuer, &key).await {
            Err(Rejection::InvalidProof(ProofError::Jwk(why))) => assert!(why.contains("exponent"), "{e:?}: {why}"),
            other => panic!("e = {e:?}: {other:?}"),
        }
    }
}

/// An issuer key outside the bounds is left out of the set (RFC 7517 §5),
/// not a reason to refuse the set: tokens it signs are refused as an unknown
/// `kid`; the others verify.
#[test]
fn jwks_skips_out_of_bounds_rsa_keys() {
    let big = RsaKey::generate(4098);
    let mut big_jwk = big.jwk.clone();
    big_jwk["kid"] = "big".into();
    big_jwk["alg"] = "PS256".into();
    let ok = RsaKey::generate(2048);
    let mut ok_jwk = ok.jwk.clone();
    ok_jwk["kid"] = "ok".into();
    let set = json!({"keys": [big_jwk, ok_jwk]}).to_string();
    let jwks = Jwks::from_json(set.as_bytes()).unwrap();
    assert_eq!(jwks.keys().len(), 1);
    assert!(jwks.get("ok").is_some() && jwks.get("big").is_none());
    let skipped = jwks.skipped();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].kid.as_deref(), Some("big"));
    assert!(skipped[0].reason.to_string().contains("4098 bits"), "{}", skipped[0].reason);
    let keys = StaticKeys::new(jwks).unwrap();
    assert_eq!(keys.jwks().keys().len(), 1);
}
