//! JSON with no duplicate member names at any depth, within size limits.
//!
//! serde_json keeps the last of duplicate members (and josekit inherits that:
//! `{"alg":"none","alg":"ES256"}` reads as ES256). RFC 7515 §4 lets a parser
//! reject such input, and we do, before any value is read.
//!
//! This runs on unauthenticated input (token and proof headers before the
//! signature, `authorization_details` before client authentication), so its
//! cost is linear in the input: one hash set of names per object, and caps on
//! members per object and on nesting that stop a hostile text early.

use serde::de::value::MapAccessDeserializer;
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor,
};
use serde::Deserialize;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

/// Most members one JSON object may have.
///
/// The widest legitimate objects are a public JWK with every member RFC 7517
/// defines (14) and a JWS header with every registered member (11, plus `typ`
/// and the DPoP or unencoded-payload extensions); token claims have 10, DPoP
/// proof claims 6, an `ekey_capability` authorization detail 7. 64 leaves
/// room four times over and stops a hostile object after 64 names.
pub const MAX_JSON_MEMBERS: usize = 64;

/// Deepest nesting of arrays and objects, the outermost value counting as 1.
///
/// The deepest legitimate text is a JWK set with certificates
/// (`{"keys":[{"x5c":["…"]}]}`: 4); token claims and `authorization_details`
/// reach 3. serde_json's own limit (128) is far above what anyone needs.
pub const MAX_JSON_DEPTH: usize = 16;

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON, or not the expected shape (including `null` for a member
    /// that may only be absent or have a value).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A member name appears twice in one object (escaped spellings count as
    /// the same name).
    #[error("duplicate member name in JSON object")]
    DuplicateMember,
    /// An object has more than [`MAX_JSON_MEMBERS`] members.
    #[error("a JSON object has more than {0} members")]
    TooManyMembers(usize),
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Parses `input` as `T` after checking its shape: no object repeats a member
/// name or has more than [`MAX_JSON_MEMBERS`] members, nothing is nested
/// deeper than [`MAX_JSON_DEPTH`], no text follows the value.
pub(crate) fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, JsonError> {
    check(input, MAX_JSON_MEMBERS)?;
    serde_json::from_slice(input).map_err(|e| JsonError::Malformed(e.to_string()))
}

/// [`from_slice`] for a JSON object only: serde's derived structs also read
/// arrays (`["ES256"]` as a header whose `alg` is ES256), and no JOSE header,
/// JWT claims set or proof is one.
pub(crate) fn from_object_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, JsonError> {
    check(input, MAX_JSON_MEMBERS)?;
    let mut de = serde_json::Deserializer::from_slice(input);
    let value = object(&mut de).map_err(|e| JsonError::Malformed(e.to_string()))?;
    de.end().map_err(|e| JsonError::Malformed(e.to_string()))?;
    Ok(value)
}

/// A serde `deserialize_with` helper: `T` from a JSON object only (see
/// [`from_object_slice`]), for members such as `cap` and `cnf`.
pub(crate) fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    struct ObjectVisitor<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectVisitor(PhantomData))
}

/// [`object`] for an optional member that may be absent (with `default`) but
/// never `null`.
pub(crate) fn non_null_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    object(d).map(Some)
}

/// The shape check of [`from_slice`], with the member cap as a parameter so
/// that tests can measure the duplicate check on its own.
fn check(input: &[u8], max_members: usize) -> Result<(), JsonError> {
    let fault = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(input);
    let walk = Walk { depth: 0, max_members, fault: &fault };
    let result = walk.deserialize(&mut de).and_then(|()| de.end());
    match (result, fault.take()) {
        (_, Some(fault)) => Err(fault),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(JsonError::Malformed(e.to_string())),
    }
}

/// Walks any JSON value; a refusal of ours is kept in `fault`, since serde
/// errors carry only text.
#[derive(Clone, Copy)]
struct Walk<'f> {
    depth: usize,
    max_members: usize,
    fault: &'f Cell<Option<JsonError>>,
}

impl Walk<'_> {
    fn fail<E: serde::de::Error>(self, fault: JsonError) -> E {
        let e = E::custom(&fault);
        self.fault.set(Some(fault));
        e
    }

    /// The walker for the values of an array or object at this level.
    fn enter<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(self.fail(JsonError::TooDeep(MAX_JSON_DEPTH)));
        }
        Ok(Self { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
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
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        // Names arrive unescaped, so "\u0061" and "a" are the same entry.
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.len() >= self.max_members {
                return Err(self.fail(JsonError::TooManyMembers(self.max_members)));
            }
            if !seen.insert(name) {
                return Err(self.fail(JsonError::DuplicateMember));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Any JSON value except `null`, kept as nothing: for members we only test
/// the presence of (`crit`, `jku`, a JWK's `d`, ...).
#[derive(Debug)]
pub(crate) struct NotNull;

impl<'de> Deserialize<'de> for NotNull {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NotNullVisitor)
    }
}

struct NotNullVisitor;

impl<'de> Visitor<'de> for NotNullVisitor {
    type Value = NotNull;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value other than null (leave the member out instead)")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<NotNull, E> {
        Err(E::invalid_type(Unexpected::Unit, &self))
    }
    fn visit_bool<E>(self, _: bool) -> Result<NotNull, E> {
        Ok(NotNull)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NotNull, E> {
        Ok(NotNull)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NotNull, E> {
        Ok(NotNull)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NotNull, E> {
        Ok(NotNull)
    }
    fn visit_str<E>(self, _: &str) -> Result<NotNull, E> {
        Ok(NotNull)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NotNull, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(NotNull)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NotNull, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(NotNull)
    }
}

/// Accepts any JSON value but `null` and keeps nothing (for members we only
/// test the presence of). In a struct field, `null` still reads as absent
/// unless the field also says `deserialize_with = "json::non_null"`.
pub(crate) type Present = Option<NotNull>;

/// A serde `deserialize_with` helper for an optional member that may be
/// absent but never `null`: JOSE and OAuth define no member whose value is
/// `null`, and reading `"crit": null` or `"nonce": null` as "absent" would
/// let a sender skip a check by spelling a member it must not send. Use it
/// with `default`:
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Claims {
///     #[serde(default, deserialize_with = "ekey_verifier::non_null")]
///     nbf: Option<i64>,
/// }
/// assert_eq!(ekey_verifier::from_json_strict::<Claims>(b"{}").unwrap().nbf, None);
/// assert_eq!(ekey_verifier::from_json_strict::<Claims>(br#"{"nbf":5}"#).unwrap().nbf, Some(5));
/// assert!(ekey_verifier::from_json_strict::<Claims>(br#"{"nbf":null}"#).is_err());
/// ```
///
/// `T` must itself refuse `null` (strings, numbers, structs, sequences do;
/// `Option`, `serde_json::Value` and `IgnoredAny` do not).
pub fn non_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert_eq!(from_slice::<Value>(br#"{"alg":"none","alg":"ES256"}"#), Err(JsonError::DuplicateMember));
        assert_eq!(from_slice::<Value>(br#"{"a":[{"b":1,"b":2}]}"#), Err(JsonError::DuplicateMember));
        assert_eq!(from_slice::<Value>(br#"[[[{"x":{"y":[{"c":1,"d":2,"c":3}]}}]]]"#), Err(JsonError::DuplicateMember));
        // Escaped spelling of the same name is still the same name, in any position.
        assert_eq!(from_slice::<Value>(br#"{"alg":"a","\u0061lg":"b"}"#), Err(JsonError::DuplicateMember));
        assert_eq!(from_slice::<Value>(br#"{"a":1,"\u0061":2}"#), Err(JsonError::DuplicateMember));
        assert_eq!(from_slice::<Value>(br#"{"x":{"\u0061":1,"a":2}}"#), Err(JsonError::DuplicateMember));
        assert_eq!(from_slice::<Value>(br#"{"x5t#S256":1,"x5t\u0023S256":2}"#), Err(JsonError::DuplicateMember));
        // The same name in sibling or nested objects is not a duplicate.
        assert!(from_slice::<Value>(br#"{"a":{"b":1},"b":{"a":1}}"#).is_ok());
        assert!(from_slice::<Value>(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    /// `{"m0":0,"m1":0,…}` with `n` members.
    fn wide_object(n: usize) -> Vec<u8> {
        let members: Vec<String> = (0..n).map(|i| format!(r#""m{i}":0"#)).collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    }

    /// Seconds per run of `f`, best of three (the least disturbed by other work).
    fn best_of_three(f: impl Fn()) -> f64 {
        (0..3)
            .map(|_| {
                let started = std::time::Instant::now();
                f();
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn member_cap() {
        assert!(from_slice::<Value>(&wide_object(MAX_JSON_MEMBERS)).is_ok());
        assert_eq!(from_slice::<Value>(&wide_object(MAX_JSON_MEMBERS + 1)), Err(JsonError::TooManyMembers(64)));
        // Per object, not per text.
        let nested = format!(r#"{{"a":{},"b":{}}}"#, String::from_utf8_lossy(&wide_object(64)), "[1,2,3]");
        assert!(from_slice::<Value>(nested.as_bytes()).is_ok());
        let many: Vec<String> = (0..1000).map(|_| String::from_utf8_lossy(&wide_object(64)).into_owned()).collect();
        assert!(from_slice::<Value>(format!("[{}]", many.join(",")).as_bytes()).is_ok());
    }

    #[test]
    fn wide_objects_refused_in_time_independent_of_their_width() {
        let (n, four_n) = (wide_object(100_000), wide_object(400_000));
        assert_eq!(from_slice::<Value>(&n), Err(JsonError::TooManyMembers(MAX_JSON_MEMBERS)));
        assert_eq!(from_slice::<Value>(&four_n), Err(JsonError::TooManyMembers(MAX_JSON_MEMBERS)));
        let t_n = best_of_three(|| assert!(from_slice::<Value>(&n).is_err()));
        let t_4n = best_of_three(|| assert!(from_slice::<Value>(&four_n).is_err()));
        let ratio = t_4n / t_n.max(1e-9);
        println!("refusing 400k vs 100k members: {ratio:.2}x the time");
        assert!(ratio < 16.0, "4x the members took {ratio:.1}x the time");
    }

    #[test]
    fn duplicate_check_is_linear_without_the_member_cap() {
        let (n, four_n) = (wide_object(20_000), wide_object(80_000));
        let t_n = best_of_three(|| assert_eq!(check(&n, usize::MAX), Ok(())));
        let t_4n = best_of_three(|| assert_eq!(check(&four_n, usize::MAX), Ok(())));
        let ratio = t_4n / t_n.max(1e-9);
        println!("checking 80k vs 20k distinct members: {ratio:.2}x the time");
        // Linear gives about 4, a pairwise scan 16.
        assert!(ratio < 10.0, "4x the members took {ratio:.1}x the time");
        let mut last_repeats_first = four_n.clone();
        last_repeats_first.truncate(four_n.len() - 1);
        last_repeats_first.extend_from_slice(br#","m0":1}"#);
        assert_eq!(check(&last_repeats_first, usize::MAX), Err(JsonError::DuplicateMember));
    }

    #[test]
    fn depth_cap() {
        let nest = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
        assert!(from_slice::<Value>(nest(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert_eq!(from_slice::<Value>(nest(MAX_JSON_DEPTH + 1).as_bytes()), Err(JsonError::TooDeep(16)));
        let objects = |n: usize| format!("{}0{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        assert!(from_slice::<Value>(objects(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert_eq!(from_slice::<Value>(objects(MAX_JSON_DEPTH + 1).as_bytes()), Err(JsonError::TooDeep(16)));
        // Far past serde_json's own limit: our error, no stack overflow.
        assert_eq!(from_slice::<Value>(nest(100_000).as_bytes()), Err(JsonError::TooDeep(16)));
        // The deepest legitimate text: a JWK set with a certificate chain.
        assert!(from_slice::<Value>(br#"{"keys":[{"kty":"EC","x5c":["MII"]}]}"#).is_ok());
    }

    #[test]
    fn null_is_not_absence() {
        #[derive(Debug, Deserialize)]
        struct Members {
            #[serde(default, deserialize_with = "non_null")]
            s: Option<String>,
            #[serde(default, deserialize_with = "non_null")]
            p: Present,
            q: Present,
        }
        let m: Members = from_slice(b"{}").unwrap();
        assert!(m.s.is_none() && m.p.is_none() && m.q.is_none());
        let m: Members = from_slice(br#"{"s":"x","p":[null],"q":{"a":null}}"#).unwrap();
        assert!(m.s.is_some() && m.p.is_some() && m.q.is_some());
        for null in [r#"{"s":null}"#, r#"{"p":null}"#] {
            let err = from_slice::<Members>(null.as_bytes()).unwrap_err();
            assert!(matches!(&err, JsonError::Malformed(m) if m.contains("invalid type: null")), "{null}: {err}");
        }
    }

    #[test]
    fn structs_only_from_objects() {
        #[derive(Debug, Deserialize)]
        struct Header {
            alg: String,
            #[serde(default, deserialize_with = "non_null")]
            typ: Option<String>,
            #[serde(default, deserialize_with = "non_null_object")]
            jwk: Option<std::collections::BTreeMap<String, String>>,
        }
        let h: Header = from_object_slice(br#"{"alg":"ES256","jwk":{"kty":"EC"}}"#).unwrap();
        assert_eq!((h.alg.as_str(), h.typ, h.jwk.map(|j| j.len())), ("ES256", None, Some(1)));
        // serde's derived structs read arrays too; a header or claims set is never one.
        assert!(from_slice::<Header>(br#"["ES256"]"#).is_ok());
        for bad in
            [r#"["ES256"]"#, r#"["ES256","x"]"#, r#"{"alg":"ES256","jwk":["EC"]}"#, r#"{"alg":"ES256","jwk":null}"#]
        {
            assert!(matches!(from_object_slice::<Header>(bad.as_bytes()), Err(JsonError::Malformed(_))), "{bad}");
        }
        assert!(matches!(from_object_slice::<Header>(br#"{"alg":"ES256"} {}"#), Err(JsonError::Malformed(_))));
        assert_eq!(
            from_object_slice::<Header>(br#"{"alg":"ES256","alg":"x"}"#).unwrap_err(),
            JsonError::DuplicateMember
        );
    }

    #[test]
    fn trailing_garbage_rejected() {
        assert!(matches!(from_slice::<Value>(br#"{} x"#), Err(JsonError::Malformed(_))));
        assert!(matches!(from_slice::<Value>(b"\xff"), Err(JsonError::Malformed(_))));
    }
}
