//! Building compact JWS by hand, including the malformed ones: non-canonical
//! base64url, DER or out-of-range ECDSA signatures, malleated twins.

use crate::Error;
use ekey_verifier::b64_encode;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::EcGroup;
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `BASE64URL(header) '.' BASE64URL(payload)` from raw JSON texts.
pub fn signing_input(header_json: &str, payload_json: &str) -> String {
    format!("{}.{}", b64_encode(header_json), b64_encode(payload_json))
}

/// `input '.' BASE64URL(signature)`.
pub fn compact(input: &str, signature: &[u8]) -> String {
    format!("{input}.{}", b64_encode(signature))
}

/// Base64url with `=` padding (refused by a canonical decoder).
pub fn padded(b64: &str) -> String {
    let mut s = b64.to_owned();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// The same bytes with the unused low bits of the last character set: decodes
/// leniently to the same value, but is not the canonical encoding.
/// `None` when the length leaves no unused bits.
pub fn with_trailing_bits(b64: &str) -> Option<String> {
    if b64.len().is_multiple_of(4) {
        return None;
    }
    let last = *b64.as_bytes().last()?;
    let index = ALPHABET.iter().position(|c| *c == last)?;
    let mut s = b64[..b64.len() - 1].to_owned();
    s.push(char::from(ALPHABET[index | 1]));
    Some(s)
}

/// The standard alphabet (`+` `/`) instead of the URL-safe one; `None` if the
/// text has neither `-` nor `_` (nothing would change).
pub fn standard_alphabet(b64: &str) -> Option<String> {
    b64.contains(['-', '_']).then(|| b64.replace('-', "+").replace('_', "/"))
}

fn order(raw_len: usize) -> Result<BigNum, Error> {
    let nid = match raw_len {
        64 => Nid::X9_62_PRIME256V1,
        96 => Nid::SECP384R1,
        n => return Err(Error::Invalid(format!("{n}-byte signature is not ES256/ES384"))),
    };
    let mut n = BigNum::new()?;
    let mut ctx = BigNumContext::new()?;
    EcGroup::from_curve_name(nid)?.order(&mut n, &mut ctx)?;
    Ok(n)
}

/// A JOSE `r‖s` ECDSA signature re-encoded as ASN.1 DER (what KMS returns).
pub fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, Error> {
    let (r, s) = raw.split_at(raw.len() / 2);
    Ok(EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?.to_der()?)
}

/// The malleated twin `r‖(n − s)` of an ECDSA signature: also valid.
pub fn ecdsa_high_s_twin(raw: &[u8]) -> Result<Vec<u8>, Error> {
    let half = raw.len() / 2;
    let n = order(raw.len())?;
    let s = BigNum::from_slice(&raw[half..])?;
    let mut twin = BigNum::new()?;
    twin.checked_sub(&n, &s)?;
    let mut out = raw[..half].to_vec();
    out.extend(twin.to_vec_padded(i32::try_from(half).map_err(|_| Error::Invalid("size".into()))?)?);
    Ok(out)
}

/// `r = s = n` (the group order): out of range, must never verify.
pub fn ecdsa_order_signature(raw_len: usize) -> Result<Vec<u8>, Error> {
    let half = i32::try_from(raw_len / 2).map_err(|_| Error::Invalid("size".into()))?;
    let n = order(raw_len)?.to_vec_padded(half)?;
    Ok([n.clone(), n].concat())
}

/// Ed25519 `R‖(S + L)`: the same equation holds, but RFC 8032 §5.1.7 requires
/// `S < L`, so it must be refused.
pub fn ed25519_s_plus_l(sig: &[u8]) -> Result<Vec<u8>, Error> {
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    if sig.len() != 64 {
        return Err(Error::Invalid("not an Ed25519 signature".into()));
    }
    let mut out = sig.to_vec();
    let mut carry = 0u16;
    for (i, l) in L.iter().enumerate() {
        let sum = u16::from(out[32 + i]) + u16::from(*l) + carry;
        out[32 + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    Ok(out)
}

/// HMAC-SHA256 (for the "HS256 keyed with the public key" confusion cases).
pub fn hmac_sha256(secret: &[u8], input: &[u8]) -> Result<Vec<u8>, Error> {
    let key = openssl::pkey::PKey::hmac(secret)?;
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
    s.update(input)?;
    Ok(s.sign_to_vec()?)
}

/// RFC 7638 thumbprint of a JWK given as JSON, computed here so that keys the
/// verifier refuses to parse still get one (tokens bound to them).
pub fn thumbprint(jwk: &serde_json::Value) -> Result<String, Error> {
    let m = |k: &str| jwk.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let canonical = match m("kty").as_str() {
        "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, m("crv"), m("x"), m("y")),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv"), m("x")),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e"), m("n")),
        other => return Err(Error::Invalid(format!("no thumbprint for kty {other:?}"))),
    };
    Ok(ekey_verifier::sha256_b64(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::{Algorithm, KeyPair, PublicJwk, VerifyingKey};

    #[test]
    fn encodings() {
        assert_eq!(padded("AQ"), "AQ==");
        assert_eq!(with_trailing_bits("AQ").as_deref(), Some("AR"));
        assert_eq!(with_trailing_bits("AQID"), None);
        assert_eq!(standard_alphabet("a-b_"), Some("a+b/".into()));
    }

    #[test]
    fn ecdsa_twins_and_der() {
        let kp = KeyPair::generate(Algorithm::ES256).unwrap();
        let vk = VerifyingKey::new(kp.public_jwk(), Algorithm::ES256).unwrap();
        let sig = kp.sign(b"m").unwrap();
        assert!(vk.verify(b"m", &ecdsa_high_s_twin(&sig).unwrap()));
        assert_eq!(ecdsa_high_s_twin(&ecdsa_high_s_twin(&sig).unwrap()).unwrap(), sig);
        let der = ecdsa_der(&sig).unwrap();
        let back = EcdsaSig::from_der(&der).unwrap();
        assert_eq!([back.r().to_vec_padded(32).unwrap(), back.s().to_vec_padded(32).unwrap()].concat(), sig);
        assert!(!vk.verify(b"m", &ecdsa_order_signature(64).unwrap()));
    }

    #[test]
    fn thumbprint_matches_the_verifier() {
        let kp = KeyPair::generate(Algorithm::EdDSA).unwrap();
        let json = kp.public_jwk().to_json();
        assert_eq!(thumbprint(&json).unwrap(), kp.thumbprint());
        let kp = KeyPair::generate(Algorithm::ES384).unwrap();
        let jwk = PublicJwk::from_json(kp.public_jwk().to_json().to_string().as_bytes()).unwrap();
        assert_eq!(thumbprint(&jwk.to_json()).unwrap(), kp.thumbprint());
    }
}
