//! `ekey inspect`: header and claims of a compact JWS, decoded WITHOUT
//! verification, through the verifier's `dangerous` module.

use super::Context;
use crate::args::InspectArgs;
use crate::error::CliError;
use crate::input::compact;
use crate::{output, timefmt};
use ekey_verifier::dangerous::decode_unverified;
use serde::Serialize;
use serde_json::{Map, Value};

const WARNING: &str =
    "NOT VERIFIED: decoded only; the signature, issuer, audience, expiry and binding were not checked";

#[derive(Serialize)]
struct Inspected {
    verified: bool,
    warning: &'static str,
    header: Value,
    claims: Value,
    times: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<i64>,
}

pub fn run(args: &InspectArgs, ctx: &mut Context) -> Result<(), CliError> {
    let token = compact(&args.token, "TOKEN", &mut ctx.stdin)?;
    let (header, claims) =
        decode_unverified(&token).map_err(|e| CliError::usage(format!("cannot decode the token: {e}")))?;
    eprintln!("ekey: warning: {WARNING}");
    let now = timefmt::now();
    output::json(&Inspected {
        verified: false,
        warning: WARNING,
        times: times(&claims),
        expires_in: claims.get("exp").and_then(Value::as_i64).and_then(|exp| exp.checked_sub(now)),
        header,
        claims,
    })
}

/// `iat`/`nbf`/`exp` as `{"unix": …, "utc": "…Z"}`; `"utc": null` when the
/// number is not a date ekey would accept.
fn times(claims: &Value) -> Map<String, Value> {
    ["iat", "nbf", "exp"]
        .into_iter()
        .filter_map(|name| {
            let v = claims.get(name)?;
            let utc = v.as_i64().and_then(timefmt::rfc3339);
            Some((name.to_owned(), serde_json::json!({ "unix": v, "utc": utc })))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_claims() {
        let t = times(&json!({"iat": 1_700_000_000, "exp": 1e300, "nbf": "soon", "sub": "x"}));
        assert_eq!(t["iat"], json!({"unix": 1_700_000_000, "utc": "2023-11-14T22:13:20Z"}));
        assert_eq!(t["exp"]["utc"], Value::Null);
        assert_eq!(t["nbf"], json!({"unix": "soon", "utc": null}));
        assert!(times(&json!("not an object")).is_empty());
    }
}
