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
}

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
                // Minimal big-endian integers; 2048..=8192-bit modulus.
                if nb.first() == Some(&0) || !(256..=1024).contains(&nb.len()) {
                    return Err(JwkError::InvalidMember("n"));
                }
                if eb.first().is_none_or(|b| *b == 0) || eb.len() > 8 {
                    return Err(JwkError::InvalidMember("e"));
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
        Ok(Self { keys })
    }

    /// Parses `{"keys":[…]}`. Every key must be public, supported and have a
    /// unique `kid`. (A set with one bad key is refused whole: a JWKS is
    /// produced by our issuer, so a bad member means something is wrong.)
    pub fn from_json(input: &[u8]) -> Result<Self, JwkError> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<RawJwk>,
        }
        let set: Set = json::from_slice(input)?;
        Self::new(set.keys.into_iter().map(PublicJwk::from_raw).collect::<Result<_, _>>()?)
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
