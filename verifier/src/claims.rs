//! The claims of an ekey token (the token profile), shared by the issuer that
//! writes them and the verifier that reads them.

use crate::capability::ActionPattern;
use crate::jose::json::{non_null, object};
use serde::{Deserialize, Serialize};

/// Upper bound for any numeric date: year 5138. Larger values are refused
/// before any arithmetic (josekit's own accessors panic near `i64::MAX`).
pub const MAX_NUMERIC_DATE: i64 = 100_000_000_000;
/// Hard cap on `cap.limit`.
pub const MAX_LIMIT: u32 = 1_000_000;
/// Hard cap on a token's lifetime, `exp - iat`.
pub const MAX_TTL_SECS: i64 = 300;

/// What the token allows: one action, how many times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// `METHOD:/path/:param`, e.g. `POST:/payments/:id`.
    pub action: String,
    /// An OAuth-style scope string, informative.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "non_null")]
    pub scope: Option<String>,
    /// How many uses in total (≥ 1).
    pub limit: u32,
    /// Further actions the same uses may be spent on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subcap: Vec<String>,
}

/// The key the token is bound to (RFC 7800 `cnf`): exactly one of a DPoP key
/// thumbprint or a client certificate thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// `{"jkt": …}`: RFC 7638 thumbprint of the client's DPoP key (RFC 9449).
    Jkt(String),
    /// `{"x5t#S256": …}`: SHA-256 of the client certificate's DER (RFC 8705).
    X5tS256(String),
}

/// `null` is refused, not read as absent, so `{"jkt": null, "x5t#S256": …}`
/// is not a certificate binding.
#[derive(Serialize, Deserialize)]
struct RawCnf {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "non_null")]
    jkt: Option<String>,
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none", deserialize_with = "non_null")]
    x5t_s256: Option<String>,
}

impl Serialize for Confirmation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Jkt(t) => RawCnf { jkt: Some(t.clone()), x5t_s256: None },
            Self::X5tS256(t) => RawCnf { jkt: None, x5t_s256: Some(t.clone()) },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Confirmation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match object::<_, RawCnf>(d)? {
            RawCnf { jkt: Some(j), x5t_s256: None } => Ok(Self::Jkt(j)),
            RawCnf { jkt: None, x5t_s256: Some(x) } => Ok(Self::X5tS256(x)),
            RawCnf { jkt: Some(_), x5t_s256: Some(_) } => {
                Err(serde::de::Error::custom("cnf has both jkt and x5t#S256"))
            }
            RawCnf { jkt: None, x5t_s256: None } => Err(serde::de::Error::custom("cnf has neither jkt nor x5t#S256")),
        }
    }
}

/// `aud`: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `candidate`.
    pub fn contains(&self, candidate: &str) -> bool {
        match self {
            Self::One(a) => a == candidate,
            Self::Many(v) => v.iter().any(|a| a == candidate),
        }
    }
}

/// The payload of an ekey token. No member may be `null`: required members
/// need their value, and optional ones are left out rather than set to `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer URL.
    pub iss: String,
    /// Client / workload id.
    pub sub: String,
    /// The API origin(s) this token is for.
    pub aud: Audience,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// The trace id: ≥ 128 random bits, base64url.
    pub jti: String,
    /// What the token allows.
    #[serde(deserialize_with = "object")]
    pub cap: Capability,
    /// The key it is bound to.
    pub cnf: Confirmation,
    /// The template it was minted from.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "non_null")]
    pub tpl: Option<String>,
}

/// A claim is missing, malformed or out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The payload is not a JSON object of the token profile's shape (a claim
    /// missing, of the wrong type, a number out of range, duplicate members…).
    #[error("claims: {0}")]
    Malformed(String),
    /// A numeric date outside `0..=MAX_NUMERIC_DATE`, or not `iat ≤ nbf < exp`.
    #[error("claim {0} out of range")]
    OutOfRange(&'static str),
    /// `cap` is not usable.
    #[error("cap: {0}")]
    Capability(String),
    /// `jti` is not 128..=512 bits of base64url.
    #[error("jti must be 22..=86 base64url characters")]
    Jti,
}

impl Claims {
    /// Checks everything about the claims that does not depend on time or on
    /// the verifier's settings. Run by the issuer before signing and by the
    /// verifier after the signature checked out.
    pub fn check_shape(&self) -> Result<(), ClaimsError> {
        for (name, v) in [("iat", self.iat), ("nbf", self.nbf), ("exp", self.exp)] {
            if !(0..=MAX_NUMERIC_DATE).contains(&v) {
                return Err(ClaimsError::OutOfRange(name));
            }
        }
        if self.nbf < self.iat {
            return Err(ClaimsError::OutOfRange("nbf"));
        }
        if self.exp <= self.nbf {
            return Err(ClaimsError::OutOfRange("exp"));
        }
        if !(22..=86).contains(&self.jti.len()) || crate::jose::b64::decode(&self.jti).is_none() {
            return Err(ClaimsError::Jti);
        }
        if self.cap.limit == 0 || self.cap.limit > MAX_LIMIT {
            return Err(ClaimsError::Capability(format!("limit must be 1..={MAX_LIMIT}")));
        }
        if self.cap.subcap.len() > 16 {
            return Err(ClaimsError::Capability("at most 16 subcap entries".into()));
        }
        for a in std::iter::once(&self.cap.action).chain(&self.cap.subcap) {
            ActionPattern::parse(a).map_err(|e| ClaimsError::Capability(e.to_string()))?;
        }
        Ok(())
    }

    /// The lifetime the issuer gave the token, `exp - iat`.
    pub fn ttl(&self) -> i64 {
        self.exp - self.iat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        serde_json::from_str(
            r#"{"iss":"https://issuer","sub":"c","aud":"https://api","iat":100,"nbf":100,"exp":160,
            "jti":"AAAAAAAAAAAAAAAAAAAAAA","cap":{"action":"GET:/a/:id","limit":2},"cnf":{"jkt":"x"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn cnf_exactly_one() {
        assert_eq!(claims().cnf, Confirmation::Jkt("x".into()));
        for bad in [r#"{"jkt":"a","x5t#S256":"b"}"#, "{}"] {
            assert!(serde_json::from_str::<Confirmation>(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Confirmation::X5tS256("t".into())).unwrap();
        assert_eq!(json, r#"{"x5t#S256":"t"}"#);
    }

    #[test]
    fn null_members_refused_not_read_as_absent() {
        let good = serde_json::to_value(claims()).unwrap();
        let mut with_optionals = good.clone();
        with_optionals["tpl"] = "payments".into();
        with_optionals["cap"]["scope"] = "payments.create".into();
        assert!(serde_json::from_value::<Claims>(with_optionals).is_ok());
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 9] = [
            ("tpl", |c| c["tpl"] = serde_json::Value::Null),
            ("cap.scope", |c| c["cap"]["scope"] = serde_json::Value::Null),
            ("cap.subcap", |c| c["cap"]["subcap"] = serde_json::Value::Null),
            ("cnf.x5t#S256 beside jkt", |c| c["cnf"]["x5t#S256"] = serde_json::Value::Null),
            ("cnf.jkt beside x5t#S256", |c| c["cnf"] = serde_json::json!({"jkt": null, "x5t#S256": "t"})),
            ("cnf", |c| c["cnf"] = serde_json::Value::Null),
            ("aud", |c| c["aud"] = serde_json::Value::Null),
            ("exp", |c| c["exp"] = serde_json::Value::Null),
            ("cap", |c| c["cap"] = serde_json::Value::Null),
        ];
        for (what, edit) in edits {
            let mut c = good.clone();
            edit(&mut c);
            assert!(serde_json::from_value::<Claims>(c).is_err(), "{what}: null accepted");
        }
    }

    #[test]
    fn cap_and_cnf_are_objects() {
        let good = serde_json::to_value(claims()).unwrap();
        for (member, array) in [("cnf", serde_json::json!(["x"])), ("cap", serde_json::json!(["GET:/a/:id", "s", 2]))] {
            let mut c = good.clone();
            c[member] = array;
            assert!(serde_json::from_value::<Claims>(c).is_err(), "{member} as an array accepted");
        }
    }

    #[test]
    fn shape_bounds() {
        claims().check_shape().unwrap();
        let mut c = claims();
        c.exp = MAX_NUMERIC_DATE + 1;
        assert_eq!(c.check_shape(), Err(ClaimsError::OutOfRange("exp")));
        let mut c = claims();
        c.cap.limit = 0;
        assert!(matches!(c.check_shape(), Err(ClaimsError::Capability(_))));
        let mut c = claims();
        c.jti = "short".into();
        assert_eq!(c.check_shape(), Err(ClaimsError::Jti));
        let mut c = claims();
        c.cap.action = "nonsense".into();
        assert!(matches!(c.check_shape(), Err(ClaimsError::Capability(_))));
    }

    #[test]
    fn huge_numbers_are_parse_errors_not_panics() {
        for n in ["1e300", "18446744073709551615", "\"100\"", "-1e300"] {
            let json = format!(
                r#"{{"iss":"i","sub":"s","aud":"a","iat":{n},"nbf":1,"exp":2,"jti":"j","cap":{{"action":"GET:/","limit":1}},"cnf":{{"jkt":"x"}}}}"#
            );
            assert!(serde_json::from_str::<Claims>(&json).is_err(), "{n}");
        }
    }
}
