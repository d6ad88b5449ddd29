//! ECDSA signatures from DER (what KMS returns) to JOSE's fixed-size `r‖s`
//! (RFC 7518 §3.4). The DER parsing is OpenSSL's; this module only insists
//! on strict DER and fits the integers into their fixed width.

use openssl::ecdsa::EcdsaSig;

/// Converts a DER `ECDSA-Sig-Value` into `r‖s`, each left-padded with zeros
/// to `field_len` bytes (32 for P-256, 48 for P-384).
///
/// Refuses anything but the one canonical DER encoding (trailing bytes,
/// long-form lengths, superfluous leading zeros), zero values, and integers
/// wider than the field.
pub(crate) fn der_to_jose(der: &[u8], field_len: usize) -> Result<Vec<u8>, String> {
    let sig = EcdsaSig::from_der(der).map_err(|e| format!("not a DER ECDSA signature: {e}"))?;
    // d2i stops at the end of the SEQUENCE; re-encoding shows trailing data
    // and any non-canonical form.
    let canonical = sig.to_der().map_err(|e| format!("cannot re-encode the signature: {e}"))?;
    if canonical != der {
        return Err("the ECDSA signature is not canonical DER".into());
    }
    let width = i32::try_from(field_len).map_err(|_| "field size out of range".to_string())?;
    let mut out = Vec::with_capacity(2 * field_len);
    for (name, n) in [("r", sig.r()), ("s", sig.s())] {
        if n.num_bits() == 0 || n.is_negative() {
            return Err(format!("ECDSA {name} is not positive"));
        }
        if n.num_bytes() > width {
            return Err(format!("ECDSA {name} is {} bytes, wider than the {field_len}-byte field", n.num_bytes()));
        }
        out.extend(n.to_vec_padded(width).map_err(|e| format!("cannot encode {name}: {e}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openssl::bn::BigNum;
    use proptest::prelude::*;

    fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
        let sig =
            EcdsaSig::from_private_components(BigNum::from_slice(r).unwrap(), BigNum::from_slice(s).unwrap()).unwrap();
        sig.to_der().unwrap()
    }

    fn padded(v: &[u8], len: usize) -> Vec<u8> {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        let mut out = vec![0u8; len - v.len()];
        out.extend(v);
        out
    }

    /// A non-zero big-endian integer of `len` bytes whose top `zeros` bytes
    /// are zero: short values (DER shorter than the field) and, when the
    /// top bit is set, DER's extra 0x00 sign byte.
    fn int(len: usize) -> impl Strategy<Value = Vec<u8>> {
        (proptest::collection::vec(any::<u8>(), len), 0..len).prop_map(move |(mut bytes, zeros)| {
            bytes.iter_mut().take(zeros).for_each(|b| *b = 0);
            if bytes.iter().all(|b| *b == 0) {
                bytes[len - 1] = 1;
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn round_trips_p256(r in int(32), s in int(32)) {
            let out = der_to_jose(&der(&r, &s), 32).unwrap();
            prop_assert_eq!(out.len(), 64);
            prop_assert_eq!(&out[..32], &padded(&r, 32)[..]);
            prop_assert_eq!(&out[32..], &padded(&s, 32)[..]);
        }

        #[test]
        fn round_trips_p384(r in int(48), s in int(48)) {
            let out = der_to_jose(&der(&r, &s), 48).unwrap();
            prop_assert_eq!(out.len(), 96);
            prop_assert_eq!(&out[..48], &padded(&r, 48)[..]);
            prop_assert_eq!(&out[48..], &padded(&s, 48)[..]);
        }

        #[test]
        fn trailing_or_missing_bytes_are_refused(r in int(32), s in int(32), extra in 1u8..=255) {
            let mut d = der(&r, &s);
            d.push(extra);
            prop_assert!(der_to_jose(&d, 32).is_err());
            d.truncate(d.len() - 2);
            prop_assert!(der_to_jose(&d, 32).is_err());
        }

        #[test]
        fn never_panics_on_noise(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = der_to_jose(&bytes, 32);
        }
    }

    #[test]
    fn explicit_edge_cases() {
        // r with its top bit set: DER adds a 0x00 sign byte (33 bytes on the wire).
        let high = [0x80u8; 32];
        let d = der(&high, &[1]);
        assert_eq!(d[3], 33, "DER r length includes the sign byte");
        let out = der_to_jose(&d, 32).unwrap();
        assert_eq!(&out[..32], &high[..]);
        assert_eq!(&out[32..], &padded(&[1], 32)[..]);
        // A one-byte s and a 31-byte r.
        let mut short = [0x11u8; 32];
        short[0] = 0;
        let out = der_to_jose(&der(&short, &[7]), 32).unwrap();
        assert_eq!(out[0], 0);
        assert_eq!(out[63], 7);
        // Too wide for P-256 but fine for P-384.
        let wide = [0x42u8; 33];
        assert!(der_to_jose(&der(&wide, &[1]), 32).unwrap_err().contains("wider"));
        assert!(der_to_jose(&der(&wide, &[1]), 48).is_ok());
        // Hand-made: superfluous leading zero in r (non-minimal INTEGER).
        let bad = [0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01];
        assert!(der_to_jose(&bad, 32).is_err());
        // Zero r.
        let zero = [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01];
        assert!(der_to_jose(&zero, 32).is_err());
        // Negative r.
        let neg = [0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01];
        assert!(der_to_jose(&neg, 32).is_err());
        assert!(der_to_jose(&[], 32).is_err());
    }

    /// Wycheproof's DER ECDSA vectors: a valid signature converts and
    /// verifies; an invalid one (BER, wrong lengths, r or s out of range,
    /// wrong value) is refused here or fails verification.
    #[test]
    fn wycheproof_der_vectors() {
        use ekey_verifier::{b64_encode, Algorithm, PublicJwk, VerifyingKey};
        use wycheproof::ecdsa::{TestName, TestSet};
        use wycheproof::TestResult;
        for (name, alg, len, crv) in [
            (TestName::EcdsaSecp256r1Sha256, Algorithm::ES256, 32, "P-256"),
            (TestName::EcdsaSecp384r1Sha384, Algorithm::ES384, 48, "P-384"),
        ] {
            let (mut checked, mut disagree) = (0, Vec::new());
            for g in TestSet::load(name).unwrap().test_groups {
                let p = &g.key.key[..];
                let jwk = serde_json::json!({"kty": "EC", "crv": crv,
                    "x": b64_encode(&p[1..1 + len]), "y": b64_encode(&p[1 + len..])});
                let Some(key) =
                    PublicJwk::from_json(jwk.to_string().as_bytes()).ok().and_then(|j| VerifyingKey::new(&j, alg).ok())
                else {
                    continue;
                };
                for t in g.tests.iter().filter(|t| t.result != TestResult::Acceptable) {
                    let got = der_to_jose(&t.sig, len).is_ok_and(|jose| key.verify(&t.msg, &jose));
                    checked += 1;
                    if got != (t.result == TestResult::Valid) {
                        disagree.push(t.tc_id);
                    }
                }
            }
            assert!(checked > 300, "{name:?}: only {checked} vectors");
            assert!(disagree.is_empty(), "{name:?}: vectors {disagree:?} disagree");
        }
    }

    #[test]
    fn real_signatures_verify_after_conversion() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::hash::MessageDigest;
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        for (nid, md, len) in
            [(Nid::X9_62_PRIME256V1, MessageDigest::sha256(), 32), (Nid::SECP384R1, MessageDigest::sha384(), 48)]
        {
            let key = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap();
            for i in 0..64u8 {
                let msg = [i; 17];
                let mut signer = openssl::sign::Signer::new(md, &key).unwrap();
                let der = signer.sign_oneshot_to_vec(&msg).unwrap();
                let jose = der_to_jose(&der, len).unwrap();
                assert_eq!(jose.len(), 2 * len);
                // Back to DER from the fixed form, and verify with OpenSSL.
                let back = EcdsaSig::from_private_components(
                    BigNum::from_slice(&jose[..len]).unwrap(),
                    BigNum::from_slice(&jose[len..]).unwrap(),
                )
                .unwrap();
                assert_eq!(back.to_der().unwrap(), der);
                let mut v = openssl::sign::Verifier::new(md, &key).unwrap();
                assert!(v.verify_oneshot(&der, &msg).unwrap());
            }
        }
    }
}
