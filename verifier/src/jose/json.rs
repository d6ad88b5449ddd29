//! JSON objects with no duplicate member names, at any depth.
//!
//! serde_json keeps the last of duplicate members (and josekit inherits that:
//! `{"alg":"none","alg":"ES256"}` reads as ES256). RFC 7515 §4 lets a parser
//! reject such input, and we do, before any value is read.

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or not the expected shape.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A member name appears twice in one object.
    #[error("duplicate member name in JSON object")]
    DuplicateMember,
}

/// Parses `input` as `T` after checking that no object repeats a member name.
pub(crate) fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(input);
    match NoDuplicates.deserialize(&mut de) {
        Ok(()) => {}
        Err(e) if e.to_string().starts_with(DUPLICATE) => return Err(JsonError::DuplicateMember),
        Err(e) => return Err(JsonError::Malformed(e.to_string())),
    }
    de.end().map_err(|e| JsonError::Malformed(e.to_string()))?;
    serde_json::from_slice(input).map_err(|e| JsonError::Malformed(e.to_string()))
}

const DUPLICATE: &str = "ekey: duplicate member";

/// Walks any JSON value, failing on a repeated member name.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Objects in tokens are small: a linear scan beats hashing.
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if seen.iter().any(|k| *k == *key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            seen.push(key.into_owned());
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

/// Accepts any JSON value and keeps nothing (for members we only test presence of).
pub(crate) type Present = Option<IgnoredAny>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert_eq!(from_slice::<Value>(br#"{"alg":"none","alg":"ES256"}"#), Err(JsonError::DuplicateMember));
        assert_eq!(from_slice::<Value>(br#"{"a":[{"b":1,"b":2}]}"#), Err(JsonError::DuplicateMember));
        // Escaped spelling of the same name is still the same name.
        assert_eq!(from_slice::<Value>(br#"{"alg":"a","\u0061lg":"b"}"#), Err(JsonError::DuplicateMember));
        assert!(from_slice::<Value>(br#"{"a":{"b":1},"b":{"a":1}}"#).is_ok());
    }

    #[test]
    fn trailing_garbage_rejected() {
        assert!(matches!(from_slice::<Value>(br#"{} x"#), Err(JsonError::Malformed(_))));
        assert!(matches!(from_slice::<Value>(b"\xff"), Err(JsonError::Malformed(_))));
    }
}
