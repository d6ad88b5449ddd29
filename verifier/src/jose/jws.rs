//! Compact JWS (RFC 7515 §7.1) split into its parts, with the header parsed
//! strictly. No JSON serialization, no unencoded payloads, no compression.

use super::b64;
use super::json::{self, JsonError, Present};
use super::jwk::RawJwk;
use serde::Deserialize;

/// Why a compact JWS could not be split or its header read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than the configured limit.
    #[error("longer than {0} bytes")]
    TooLarge(usize),
    /// Not three base64url parts separated by dots.
    #[error("not a compact JWS")]
    NotCompact,
    /// A part is not canonical base64url.
    #[error("{0} is not canonical base64url")]
    Encoding(&'static str),
    /// The header is not a JSON object of the expected shape.
    #[error("header: {0}")]
    Header(JsonError),
    /// The header carries a member ekey never honours.
    #[error("header member {0:?} is not allowed")]
    ForbiddenHeader(&'static str),
    /// `crit` is present: ekey understands no extensions, so any `crit` is unknown or malformed.
    #[error("header has crit")]
    Crit,
    /// `typ` is absent or another type.
    #[error("typ must be {0}")]
    Typ(&'static str),
}

/// The members a header may carry that we look at. A member set to `null` is
/// refused, never read as absent: `"crit": null` or `"jwk": null` must not
/// pass the checks that their absence passes.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default, deserialize_with = "json::non_null")]
    pub typ: Option<String>,
    #[serde(default, deserialize_with = "json::non_null")]
    pub kid: Option<String>,
    #[serde(default, deserialize_with = "json::non_null_object")]
    pub jwk: Option<RawJwk>,
    #[serde(default, deserialize_with = "json::non_null")]
    jku: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    x5u: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    x5c: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    x5t: Present,
    #[serde(rename = "x5t#S256", default, deserialize_with = "json::non_null")]
    x5t_s256: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    crit: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    zip: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    enc: Present,
    #[serde(default, deserialize_with = "json::non_null")]
    b64: Present,
}

impl Header {
    /// Rejects `crit` and any of `names` (members this kind of JWS must not carry).
    pub(crate) fn refuse(&self, jwk_allowed: bool) -> Result<(), JwsError> {
        if self.crit.is_some() {
            return Err(JwsError::Crit);
        }
        let present = [
            ("jwk", self.jwk.is_some() && !jwk_allowed),
            ("jku", self.jku.is_some()),
            ("x5u", self.x5u.is_some()),
            ("x5c", self.x5c.is_some()),
            ("x5t", self.x5t.is_some()),
            ("x5t#S256", self.x5t_s256.is_some()),
            ("zip", self.zip.is_some()),
            ("enc", self.enc.is_some()),
            ("b64", self.b64.is_some()),
        ];
        match present.iter().find(|(_, p)| *p) {
            Some((name, _)) => Err(JwsError::ForbiddenHeader(name)),
            None => Ok(()),
        }
    }

    /// Checks explicit typing: `typ` equals `expected` (media-type rules: case
    /// insensitive, optional `application/` prefix).
    pub(crate) fn require_typ(&self, expected: &'static str) -> Result<(), JwsError> {
        let typ = self.typ.as_deref().ok_or(JwsError::Typ(expected))?;
        let bare = match typ.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        if bare.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(JwsError::Typ(expected))
        }
    }
}

/// A compact JWS whose parts decode; nothing in it is trusted yet.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'a str,
    pub header: Header,
    payload_b64: &'a str,
    pub signature: Vec<u8>,
}

impl<'a> Compact<'a> {
    /// Splits and decodes `input`, rejecting anything over `max_len` bytes first.
    pub(crate) fn parse(input: &'a str, max_len: usize) -> Result<Self, JwsError> {
        if input.len() > max_len {
            return Err(JwsError::TooLarge(max_len));
        }
        let mut parts = input.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwsError::NotCompact);
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(JwsError::NotCompact);
        }
        let header_json = b64::decode(h).ok_or(JwsError::Encoding("header"))?;
        // Decode the signature before parsing JSON: cheap checks first.
        let signature = b64::decode(s).ok_or(JwsError::Encoding("signature"))?;
        if p.bytes().any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
            return Err(JwsError::Encoding("payload"));
        }
        let header = json::from_object_slice(&header_json).map_err(JwsError::Header)?;
        Ok(Self { signing_input: &input[..h.len() + 1 + p.len()], header, payload_b64: p, signature })
    }

    /// Decodes the payload: after the signature checked out, or before it
    /// only to choose the key (see [`super::verify::KeyHint`]).
    pub(crate) fn payload(&self) -> Result<Vec<u8>, JwsError> {
        b64::decode(self.payload_b64).ok_or(JwsError::Encoding("payload"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64::encode(header), b64::encode(payload), b64::encode([1u8; 64]))
    }

    #[test]
    fn splits_three_parts() {
        let t = jws(r#"{"alg":"ES256","typ":"ekey+jwt"}"#, "{}");
        let c = Compact::parse(&t, 8192).unwrap();
        assert_eq!(c.header.alg, "ES256");
        assert_eq!(c.payload().unwrap(), b"{}");
        assert!(t.starts_with(c.signing_input));
        c.header.require_typ("ekey+jwt").unwrap();
        c.header.refuse(false).unwrap();
    }

    #[test]
    fn shape_errors() {
        assert_eq!(Compact::parse("a.b", 100).unwrap_err(), JwsError::NotCompact);
        assert_eq!(Compact::parse("a.b.c.d", 100).unwrap_err(), JwsError::NotCompact);
        assert_eq!(Compact::parse("..", 100).unwrap_err(), JwsError::NotCompact);
        assert_eq!(Compact::parse(&"a".repeat(101), 100).unwrap_err(), JwsError::TooLarge(100));
        for not_object in [r#"["ES256"]"#, r#"["ES256","ekey+jwt","k"]"#, r#"{"alg":"ES256","jwk":["EC"]}"#] {
            let t = jws(not_object, "{}");
            assert!(matches!(Compact::parse(&t, 8192), Err(JwsError::Header(JsonError::Malformed(_)))), "{not_object}");
        }
        let t = jws(r#"{"alg":"ES256","alg":"none"}"#, "{}");
        assert_eq!(Compact::parse(&t, 8192).unwrap_err(), JwsError::Header(JsonError::DuplicateMember));
    }

    #[test]
    fn typ_rules() {
        for (typ, ok) in [("ekey+jwt", true), ("application/EKEY+JWT", true), ("JWT", false), ("dpop+jwt", false)] {
            let t = jws(&format!(r#"{{"alg":"ES256","typ":"{typ}"}}"#), "{}");
            assert_eq!(Compact::parse(&t, 8192).unwrap().header.require_typ("ekey+jwt").is_ok(), ok, "{typ}");
        }
    }

    #[test]
    fn null_members_refused_not_read_as_absent() {
        for member in ["crit", "b64", "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "zip", "enc", "typ", "kid", "alg"]
        {
            let mut header = serde_json::json!({"alg": "ES256", "typ": "ekey+jwt", "kid": "k"});
            header[member] = serde_json::Value::Null;
            let t = jws(&header.to_string(), "{}");
            match Compact::parse(&t, 8192) {
                Err(JwsError::Header(JsonError::Malformed(why))) => assert!(why.contains("null"), "{member}: {why}"),
                other => panic!("{member}: null accepted or wrong error: {other:?}"),
            }
        }
    }

    #[test]
    fn crit_and_key_headers_refused() {
        for (extra, err) in [
            (r#""crit":["exp"]"#, JwsError::Crit),
            (r#""crit":[]"#, JwsError::Crit),
            (r#""jku":"https://evil""#, JwsError::ForbiddenHeader("jku")),
            (r#""x5u":"https://evil""#, JwsError::ForbiddenHeader("x5u")),
            (r#""x5c":["AA"]"#, JwsError::ForbiddenHeader("x5c")),
            (r#""zip":"DEF""#, JwsError::ForbiddenHeader("zip")),
        ] {
            let t = jws(&format!(r#"{{"alg":"ES256",{extra}}}"#), "{}");
            assert_eq!(Compact::parse(&t, 8192).unwrap().header.refuse(false).unwrap_err(), err, "{extra}");
        }
    }
}
