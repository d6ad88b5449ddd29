//! `authorization_details` (RFC 9396) of type `ekey_capability`.

use crate::policy::{CapabilityRequest, RequestedVia};
use ekey_verifier::{from_json_strict, MAX_LIMIT};
use serde_json::{Map, Value};

/// The RFC 9396 `type` this issuer understands.
pub const CAPABILITY_TYPE: &str = "ekey_capability";

/// The members an `ekey_capability` object may have. Anything else is
/// refused rather than ignored, so a client never believes it got a
/// restriction (or a right) the issuer did not apply.
const MEMBERS: [&str; 7] = ["type", "action", "limit", "subcap", "template", "audience", "locations"];

const AT: &str = "authorization_details[0]";

/// Parses the parameter's JSON into one capability request. The error is the
/// `error_description` of an `invalid_authorization_details` answer.
pub(crate) fn parse(json: &str) -> Result<CapabilityRequest, String> {
    let list: Vec<Value> =
        from_json_strict(json.as_bytes()).map_err(|e| format!("authorization_details must be a JSON array: {e}"))?;
    let one = match list.as_slice() {
        [one] => one,
        [] => return Err("authorization_details is empty".into()),
        _ => return Err("authorization_details must hold exactly one object (one capability per token)".into()),
    };
    let obj = one.as_object().ok_or(format!("{AT} must be an object"))?;
    let ty = obj.get("type").ok_or(format!("{AT}.type is required"))?;
    if ty.as_str() != Some(CAPABILITY_TYPE) {
        let shown: String = ty.to_string().chars().take(64).collect();
        return Err(format!(
            "unsupported authorization_details type {shown}; this issuer supports \"{CAPABILITY_TYPE}\""
        ));
    }
    if let Some(unknown) = obj.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(format!("{AT}: unknown member {shown:?}"));
    }

    let action = string(obj, "action")?;
    let template = string(obj, "template")?;
    let limit = match obj.get("limit") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=u64::from(MAX_LIMIT)).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(format!("{AT}.limit must be a whole number from 1 to {MAX_LIMIT}"))?,
        ),
    };
    let subcap = strings(obj, "subcap")?;
    if subcap.as_ref().is_some_and(|s| s.len() > 16) {
        return Err(format!("{AT}.subcap: at most 16 actions"));
    }
    if action.is_none() && template.is_none() {
        return Err(format!("{AT} needs an action (or a template with a single action)"));
    }
    let audience = match (obj.get("audience"), strings(obj, "locations")?) {
        (Some(_), Some(_)) => return Err(format!("{AT}: use audience or locations, not both")),
        (Some(Value::String(a)), None) => Some(vec![a.clone()]),
        (Some(_), None) => strings(obj, "audience")?,
        (None, locations) => locations,
    };
    if audience.as_ref().is_some_and(|a| a.is_empty() || a.len() > 16) {
        return Err(format!("{AT}: 1..=16 audiences/locations"));
    }
    Ok(CapabilityRequest { via: RequestedVia::AuthorizationDetails, template, action, limit, subcap, audience })
}

fn string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{AT}.{name} must be a string")),
    }
}

fn strings(obj: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(format!("{AT}.{name} must be an array of strings")))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(format!("{AT}.{name} must be an array of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_capability() {
        let r = parse(r#"[{"type":"ekey_capability","action":"POST:/payments/42","limit":2,"subcap":["GET:/payments/42"],"locations":["https://api"]}]"#).unwrap();
        assert_eq!(r.action.as_deref(), Some("POST:/payments/42"));
        assert_eq!((r.limit, r.via), (Some(2), RequestedVia::AuthorizationDetails));
        assert_eq!(r.audience, Some(vec!["https://api".to_string()]));
        let r = parse(r#"[{"type":"ekey_capability","template":"t","audience":"https://api"}]"#).unwrap();
        assert_eq!((r.template.as_deref(), r.action), (Some("t"), None));
        assert_eq!(r.audience, Some(vec!["https://api".to_string()]));
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("{}", "must be a JSON array"),
            ("[]", "empty"),
            ("not json", "must be a JSON array"),
            (
                r#"[{"type":"ekey_capability","action":"GET:/a"},{"type":"ekey_capability","action":"GET:/b"}]"#,
                "exactly one",
            ),
            (r#"[{"type":"payment_initiation","action":"GET:/a"}]"#, "unsupported authorization_details type"),
            (r#"[{"action":"GET:/a"}]"#, "type is required"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","actions":["x"]}]"#, "unknown member \"actions\""),
            (r#"[{"type":"ekey_capability","action":3}]"#, "action must be a string"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","subcap":"GET:/b"}]"#, "subcap must be an array"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","limit":1000001}]"#, "limit must be"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","limit":0}]"#, "from 1 to"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","limit":-1}]"#, "limit"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","limit":1e300}]"#, "limit"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","action":"GET:/b"}]"#, "duplicate"),
            (r#"[{"type":"ekey_capability"}]"#, "needs an action"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","audience":"x","locations":["x"]}]"#, "not both"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","locations":[]}]"#, "audiences"),
            ("[1]", "must be an object"),
        ];
        for (input, expected) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn json_limits_apply_before_anything_is_read() {
        let wide: Vec<String> = (0..100_000).map(|i| format!(r#""m{i}":0"#)).collect();
        let wide = format!(r#"[{{"type":"ekey_capability","action":"GET:/a",{}}}]"#, wide.join(","));
        let deep =
            format!(r#"[{{"type":"ekey_capability","action":"GET:/a","x":{}0{}}}]"#, "[".repeat(20), "]".repeat(20));
        let cases = [
            (wide.as_str(), "more than 64 members"),
            (deep.as_str(), "nested deeper than 16"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","\u0061ction":"GET:/b"}]"#, "duplicate"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","limit":null}]"#, "limit must be"),
            (r#"[{"type":"ekey_capability","action":null,"template":"t"}]"#, "action must be a string"),
            (r#"[{"type":"ekey_capability","action":"GET:/a","audience":null}]"#, "audience must be"),
        ];
        for (input, expected) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(expected), "{:.80}: {err}", input);
        }
    }
}
