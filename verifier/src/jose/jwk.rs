//! Public JSON Web Keys (RFC 7517), parsed strictly, with their RFC 7638
//! thumbprints.

use super::alg::Algorithm;
use super::b64;
use super::json::{self, JsonError, Present};
use serde::Deserialize;
use serde_json::{json, Value};

/// Why a JWK or JWK set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// Not a JSON object of the JWK shape.
    #[error("malformed JWK: {0}")]
    Malformed(#[from] JsonError),
    /// Contains private or symmetric key material.
    #[error("JWK contains private key material ({0})")]
    PrivateMember(&'static str),
    /// A symmetric (`oct`) key where a public key is required.
    #[error("symmetric (oct) keys are not accepted")]
    Symmetric,
    /// A key type or curve ekey does not accept.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// A member is missing or has the wrong length or encoding.
    #[error("invalid JWK member {0}")]
    InvalidMember(&'static str),
    /// Two keys of one set share a `kid`.
    #[error("duplicate kid {0:?} in JWK set")]
    DuplicateKid(String),
    /// A key of a set has no `kid`.
    #[error("JWK in a set has no kid")]
    MissingKid,
    /// An RSA modulus outside 2048 ..= 4096 bits: weaker keys are breakable,
    /// larger ones only cost verification time (an attacker's DPoP key could
    /// make every proof check slow).
    #[error("RSA modulus of {0} bits: ekey accepts 2048 to 4096 bits")]
    RsaModulusSize(usize),
    /// The crypto library refused the key (e.g. an EC point not on its curve).
    #[error("key refused by the crypto library: {0}")]
    Refused(String),
    /// An RSA public exponent that is even or below 3 (RFC 8017 §3.1).
    #[error("RSA public exponent must be odd and at least 3")]
    RsaExponent,
}

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const RSA_MAX_BITS: usize = 4096;

/// The raw members of a JWK as they arrive; only [`PublicJwk`] escapes this module.
#[derive(Debug, Deserialize)]
pub(crate) struct RawJwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    d: Present,
    p: Present,
    q: Present,
    dp: Present,
    dq: Present,
    qi: Present,
    oth: Present,
    k: Present,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Ec { p384: bool, x: String, y: String },
    Ed25519 { x: String },
    Rsa { n: String, e: String },
}

/// A validated public key: supported type and curve, exact member lengths, no
/// private members. Its thumbprint is computed once, at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    material: Material,
    alg: Option<Algorithm>,
    kid: Option<String>,
    thumbprint: String,
}

impl PublicJwk {
    /// Parses one JWK from JSON.
    ///
    /// ```
    /// # use ekey_verifier::PublicJwk;
    /// let jwk = PublicJwk::from_json(br#"{"kty":"OKP","crv":"Ed25519",
    ///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#).unwrap();
    /// // RFC 8037 §A.3
    /// assert_eq!(jwk.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    /// ```
    pub fn from_json(input: &[u8]) -> Result<Self, JwkError> {
        Self::from_raw(json::from_slice(input)?)
    }

    pub(crate) fn from_raw(raw: RawJwk) -> Result<Self, JwkError> {
        let private = [
            ("d", &raw.d),
            ("p", &raw.p),
            ("q", &raw.q),
            ("dp", &raw.dp),
            ("dq", &raw.dq),
            ("qi", &raw.qi),
            ("oth", &raw.oth),
            ("k", &raw.k),
        ];
        if let Some((name, _)) = private.iter().find(|(_, v)| v.is_some()) {
            return Err(JwkError::PrivateMember(name));
        }
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(JwkError::Unsupported("use other than sig".into()));
        }
        let material = match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let len = if crv == "P-256" { 32 } else { 48 };
                Material::Ec { p384: len == 48, x: exact(raw.x, "x", len)?, y: exact(raw.y, "y", len)? }
            }
            ("OKP", Some("Ed25519")) => {
                if raw.y.is_some() {
                    return Err(JwkError::InvalidMember("y"));
                }
                let x = exact(raw.x, "x", 32)?;
                if !ed25519_point_acceptable(&x) {
                    return Err(JwkError::InvalidMember("x"));
                }
                Material::Ed25519 { x }
            }
            ("RSA", _) => {
                let n = raw.n.ok_or(JwkError::InvalidMember("n"))?;
                let e = raw.e.ok_or(JwkError::InvalidMember("e"))?;
                let nb = b64::decode(&n).ok_or(JwkError::InvalidMember("n"))?;
                let eb = b64::decode(&e).ok_or(JwkError::InvalidMember("e"))?;
                // Minimal big-endian integers (no leading zero byte).
                let Some(&top) = nb.first().filter(|b| **b != 0) else {
                    return Err(JwkError::InvalidMember("n"));
                };
                if eb.first().is_none_or(|b| *b == 0) || eb.len() > 8 {
                    return Err(JwkError::InvalidMember("e"));
                }
                // Every RSA key (token signers, DPoP proofs, client
                // assertions) passes here: the one place for its limits.
                let bits = nb.len() * 8 - top.leading_zeros() as usize;
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(JwkError::RsaModulusSize(bits));
                }
                let odd = eb.last().is_some_and(|b| b & 1 == 1);
                if !odd || (eb.len() == 1 && eb[0] < 3) {
                    return Err(JwkError::RsaExponent);
                }
                Material::Rsa { n, e }
            }
            ("oct", _) => return Err(JwkError::Symmetric),
            (kty, crv) => {
                return Err(JwkError::Unsupported(format!("kty {:?} crv {:?}", truncate(kty), crv.map(truncate))))
            }
        };
        let alg = match raw.alg {
            Some(a) => Some(a.parse().map_err(|_| JwkError::InvalidMember("alg"))?),
            None => None,
        };
        let thumbprint = b64::sha256_b64(canonical(&material));
        let jwk = PublicJwk { material, alg, kid: raw.kid, thumbprint };
        if let Some(a) = jwk.alg {
            if !jwk.fits(a) {
                return Err(JwkError::InvalidMember("alg"));
            }
        }
        Ok(jwk)
    }

    /// RFC 7638 SHA-256 thumbprint, base64url: the `kid` of issuer keys and the
    /// `cnf.jkt` of DPoP-bound tokens.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The `kid` member, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg` member, if any.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Whether this key can verify `alg` (key type, curve and any `alg` member agree).
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (&self.material, alg),
            (Material::Ec { p384: false, .. }, Algorithm::ES256)
                | (Material::Ec { p384: true, .. }, Algorithm::ES384)
                | (Material::Ed25519 { .. }, Algorithm::EdDSA)
                | (Material::Rsa { .. }, Algorithm::PS256 | Algorithm::RS256)
        )
    }

    /// Returns the same key with `kid` and `alg` set (as published in a JWKS).
    pub fn with_kid_and_alg(mut self, kid: impl Into<String>, alg: Algorithm) -> Self {
        self.kid = Some(kid.into());
        self.alg = Some(alg);
        self
    }

    /// The key as a JSON object: required members, plus `kid`, `alg` and
    /// `use: "sig"` when set. Never has private members.
    pub fn to_json(&self) -> Value {
        let mut v = self.required_members();
        let obj = v.as_object_mut().expect("required_members builds an object");
        if let Some(kid) = &self.kid {
            obj.insert("kid".into(), kid.clone().into());
        }
        if let Some(alg) = self.alg {
            obj.insert("alg".into(), alg.as_str().into());
            obj.insert("use".into(), "sig".into());
        }
        v
    }

    /// Only the members the thumbprint covers (what josekit needs to build a key).
    pub(crate) fn required_members(&self) -> Value {
        match &self.material {
            Material::Ec { p384, x, y } => {
                json!({"kty": "EC", "crv": if *p384 { "P-384" } else { "P-256" }, "x": x, "y": y})
            }
            Material::Ed25519 { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            Material::Rsa { n, e } => json!({"kty": "RSA", "n": n, "e": e}),
        }
    }
}

impl<'de> Deserialize<'de> for PublicJwk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PublicJwk::from_raw(RawJwk::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PublicJwk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// RFC 7638 §3: required members, lexicographic order, no whitespace. Every
/// value is base64url or a fixed name, so none needs escaping.
fn canonical(m: &Material) -> String {
    match m {
        Material::Ec { p384, x, y } => {
            format!(r#"{{"crv":"{}","kty":"EC","x":"{x}","y":"{y}"}}"#, if *p384 { "P-384" } else { "P-256" })
        }
        Material::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        Material::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
    }
}

fn exact(v: Option<String>, name: &'static str, len: usize) -> Result<String, JwkError> {
    let v = v.ok_or(JwkError::InvalidMember(name))?;
    match b64::decode(&v) {
        Some(b) if b.len() == len => Ok(v),
        _ => Err(JwkError::InvalidMember(name)),
    }
}

/// The `y` coordinates (little-endian, sign bit cleared) of the Ed25519 points of
/// small order: 1 (identity), p − 1 (order 2), 0 (order 4) and the two of order 8.
/// A public key at one of them lets a forged signature verify for every message
/// under some libraries; such keys are refused (as libsodium does).
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    [0; 32],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
];

/// Whether a 32-byte Ed25519 public key encoding (base64url, length already checked)
/// is canonical (y < p = 2^255 − 19) and not a point of small order.
fn ed25519_point_acceptable(x_b64: &str) -> bool {
    let Some(bytes) = b64::decode(x_b64) else { return false };
    let Ok(mut y) = <[u8; 32]>::try_from(bytes.as_slice()) else { return false };
    y[31] &= 0x7f;
    // y ≥ p: bytes 1..=30 all 0xff, top byte 0x7f, low byte ≥ 0xed.
    let non_canonical = y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    !non_canonical && !ED25519_SMALL_ORDER_Y.contains(&y)
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

/// A JWK set (RFC 7517 §5) of public signing keys, each with a unique `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<PublicJwk>,
    skipped: Vec<SkippedKey>,
}

/// A member of a JWK set left out because ekey cannot use it (RFC 7517 §5:
/// keys of an unknown type, with missing members or values out of the
/// supported ranges are ignored, not fatal to the set).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedKey {
    /// Position in the set's `keys` array.
    pub index: usize,
    /// Its `kid`, when it has a string one (at most 64 characters, for logs).
    pub kid: Option<String>,
    /// Why it cannot be used.
    pub reason: JwkError,
}

impl SkippedKey {
    pub(crate) fn new(index: usize, kid: Option<&str>, reason: JwkError) -> Self {
        Self { index, kid: kid.map(|k| k.chars().take(64).collect()), reason }
    }
}

impl std::fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "keys[{}] (kid {kid:?}): {}", self.index, self.reason),
            None => write!(f, "keys[{}]: {}", self.index, self.reason),
        }
    }
}

impl Jwks {
    /// Builds a set; fails on a missing or duplicate `kid`.
    pub fn new(keys: Vec<PublicJwk>) -> Result<Self, JwkError> {
        for (i, k) in keys.iter().enumerate() {
            let kid = k.kid().ok_or(JwkError::MissingKid)?;
            if keys[..i].iter().any(|o| o.kid() == Some(kid)) {
                return Err(JwkError::DuplicateKid(truncate(kid)));
            }
        }
        Ok(Self { keys, skipped: Vec::new() })
    }

    /// Parses `{"keys":[…]}`, keeping the keys ekey can use and listing the
    /// others in [`Jwks::skipped`] (RFC 7517 §5): an unknown `kty`, `crv`
    /// or `alg`, a malformed or missing member, an RSA key outside
    /// 2048 ..= 4096 bits, a key without `kid` (a token cannot name it).
    ///
    /// Refused whole: input that is not a JSON object with a `keys` array,
    /// duplicate JSON members, a key with private members (the publisher
    /// leaks secrets: trust nothing new from it), and two usable keys with
    /// one `kid` (which one a token means is unknowable).
    ///
    /// ```
    /// # use ekey_verifier::Jwks;
    /// let set = br#"{"keys":[
    ///     {"kty":"OKP","crv":"Ed448","x":"AAAA","kid":"future"},
    ///     {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"now"}]}"#;
    /// let jwks = Jwks::from_json(set).unwrap();
    /// assert!(jwks.get("now").is_some());
    /// assert_eq!(jwks.skipped()[0].kid.as_deref(), Some("future"));
    /// ```
    pub fn from_json(input: &[u8]) -> Result<Self, JwkError> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set = json::from_slice(input)?;
        let mut keys: Vec<PublicJwk> = Vec::with_capacity(set.keys.len());
        let mut skipped = Vec::new();
        for (index, value) in set.keys.into_iter().enumerate() {
            let kid = value.get("kid").and_then(Value::as_str).map(str::to_owned);
            let parsed = RawJwk::deserialize(value)
                .map_err(|e| JwkError::Malformed(JsonError::Malformed(e.to_string())))
                .and_then(PublicJwk::from_raw);
            match parsed {
                Err(e @ JwkError::PrivateMember(_)) => return Err(e),
                Err(reason) => skipped.push(SkippedKey::new(index, kid.as_deref(), reason)),
                Ok(jwk) => match jwk.kid() {
                    None => skipped.push(SkippedKey::new(index, None, JwkError::MissingKid)),
                    Some(k) if keys.iter().any(|o| o.kid() == Some(k)) => {
                        return Err(JwkError::DuplicateKid(truncate(k)))
                    }
                    Some(_) => keys.push(jwk),
                },
            }
        }
        Ok(Self { keys, skipped })
    }

    /// The members of the parsed set that were left out, and why (empty
    /// for a set built with [`Jwks::new`]).
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// All keys, in order.
    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }

    /// `{"keys":[…]}`.
    pub fn to_json(&self) -> Value {
        json!({ "keys": self.keys.iter().map(PublicJwk::to_json).collect::<Vec<_>>() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn rfc7638_rsa_example() {
        let jwk = PublicJwk::from_json(include_bytes!("../../tests/data/rfc7638_rsa.json")).unwrap();
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert!(jwk.allows(Algorithm::RS256) && !jwk.allows(Algorithm::PS256));
        assert!(!jwk.allows(Algorithm::ES256));
    }

    #[test]
    fn ed25519_small_order_and_non_canonical_keys_rejected() {
        let okp = |x: &[u8]| format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64::encode(x));
        // RFC 8037 A.2 public key: accepted.
        let good = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert!(PublicJwk::from_json(good.as_bytes()).is_ok());
        for y in ED25519_SMALL_ORDER_Y {
            for sign in [0u8, 0x80] {
                let mut k = y;
                k[31] |= sign;
                assert_eq!(PublicJwk::from_json(okp(&k).as_bytes()), Err(JwkError::InvalidMember("x")), "{k:02x?}");
            }
        }
        // y = p and y = p + 1 (non-canonical encodings of 0 and 1), y = 2^255 - 1.
        let mut y = [0xffu8; 32];
        y[31] = 0x7f;
        for low in [0xed, 0xee, 0xff] {
            y[0] = low;
            assert_eq!(PublicJwk::from_json(okp(&y).as_bytes()), Err(JwkError::InvalidMember("x")));
        }
        // y = p − 2 is canonical; the check stops at the field size.
        y[0] = 0xeb;
        assert!(ed25519_point_acceptable(&b64::encode(y)));
    }

    #[test]
    fn private_and_symmetric_rejected() {
        let with_d = P256.replace('}', r#","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#);
        assert_eq!(PublicJwk::from_json(with_d.as_bytes()), Err(JwkError::PrivateMember("d")));
        assert_eq!(PublicJwk::from_json(br#"{"kty":"oct","k":"AAAA"}"#), Err(JwkError::PrivateMember("k")));
        assert_eq!(PublicJwk::from_json(br#"{"kty":"oct"}"#), Err(JwkError::Symmetric));
    }

    #[test]
    fn wrong_curve_and_lengths_rejected() {
        let p521 = P256.replace("P-256", "P-521");
        assert!(matches!(PublicJwk::from_json(p521.as_bytes()), Err(JwkError::Unsupported(_))));
        let p384 = P256.replace("P-256", "P-384");
        assert_eq!(PublicJwk::from_json(p384.as_bytes()), Err(JwkError::InvalidMember("x")));
        let es384 = P256.replace('}', r#","alg":"ES384"}"#);
        assert_eq!(PublicJwk::from_json(es384.as_bytes()), Err(JwkError::InvalidMember("alg")));
    }

    fn rsa_jwk(bits: u32) -> (String, String) {
        let k = openssl::rsa::Rsa::generate(bits).unwrap();
        assert_eq!(k.n().num_bits(), bits as i32, "openssl made another size");
        (b64::encode(k.n().to_vec()), b64::encode(k.e().to_vec()))
    }

    fn rsa(n: &str, e: &str) -> Result<PublicJwk, JwkError> {
        PublicJwk::from_json(format!(r#"{{"kty":"RSA","n":"{n}","e":"{e}"}}"#).as_bytes())
    }

    #[test]
    fn rsa_modulus_from_2048_to_4096_bits() {
        for bits in [2048, 4096] {
            let (n, e) = rsa_jwk(bits);
            assert!(rsa(&n, &e).is_ok(), "{bits} bits refused");
        }
        // openssl makes 2047-bit keys, but 4096 bits when asked for 4097:
        // 4098 is the nearest real key above the bound.
        for bits in [1024, 2047, 4098] {
            let (n, e) = rsa_jwk(bits);
            assert_eq!(rsa(&n, &e), Err(JwkError::RsaModulusSize(bits as usize)), "{bits} bits");
        }
        // And a 4097-bit modulus (top byte 0x01 of 513).
        let mut n4097 = vec![0xabu8; 513];
        n4097[0] = 0x01;
        assert_eq!(rsa(&b64::encode(&n4097), "AQAB"), Err(JwkError::RsaModulusSize(4097)));
        let msg = JwkError::RsaModulusSize(4097).to_string();
        assert!(msg.contains("4097") && msg.contains("2048") && msg.contains("4096"), "{msg}");
        // 8192 bits (accepted before): as costly to verify as it is useless here.
        let big = b64::encode([0xffu8; 1024]);
        assert_eq!(rsa(&big, "AQAB"), Err(JwkError::RsaModulusSize(8192)));
    }

    #[test]
    fn rsa_exponent_odd_and_at_least_3() {
        let (n, _) = rsa_jwk(2048);
        for e in [3u64, 65_537, (1 << 32) + 1] {
            let bytes = e.to_be_bytes();
            let start = bytes.iter().position(|b| *b != 0).unwrap();
            assert!(rsa(&n, &b64::encode(&bytes[start..])).is_ok(), "e = {e}");
        }
        for e in [&[1u8][..], &[2], &[0x01, 0x00, 0x00], &[0x01, 0x00, 0x02]] {
            assert_eq!(rsa(&n, &b64::encode(e)), Err(JwkError::RsaExponent), "e = {e:?}");
        }
        assert!(JwkError::RsaExponent.to_string().contains("odd"));
        // Not minimal encodings stay malformed.
        assert_eq!(rsa(&n, &b64::encode([0u8, 1, 0, 1])), Err(JwkError::InvalidMember("e")));
    }

    #[test]
    fn jwks_rejects_duplicate_kid() {
        let k = PublicJwk::from_json(P256.as_bytes()).unwrap();
        let a = k.clone().with_kid_and_alg("a", Algorithm::ES256);
        assert!(Jwks::new(vec![a.clone(), k.clone().with_kid_and_alg("b", Algorithm::ES256)]).is_ok());
        assert_eq!(Jwks::new(vec![a.clone(), a]), Err(JwkError::DuplicateKid("a".into())));
        let json = serde_json::to_vec(&Jwks::new(vec![]).unwrap().to_json()).unwrap();
        assert_eq!(Jwks::from_json(&json).unwrap().keys().len(), 0);
    }
}
