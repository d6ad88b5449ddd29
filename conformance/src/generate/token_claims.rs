//! `token-claims.json`: `iss`, `aud`, times with leeway, the TTL cap, bounds
//! on numeric dates, `cnf`, `jti` and `cap` shape.

use super::fixture::{accepted, bad_token, dpop_request, expired, Gen, AUDIENCE, IAT, METHOD, NOW, URL};
use crate::format::Case;
use crate::Error;
use serde_json::{json, Value};

const FILE: &str = "token-claims";
pub(crate) const DESCRIPTION: &str =
    "The access token's claims, validly signed: iss, aud (required), exp/nbf/iat with leeway, the TTL cap, \
     numeric dates out of range or of the wrong type (refused, never a panic), cnf, jti and cap.";

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    // (name, check, description, edit of the default claims, expected description or None = accepted)
    type Edit = fn(&mut Value);
    let edits: Vec<(&str, &str, &str, Edit, Option<&str>)> = vec![
        (
            "iss-wrong",
            "token.iss",
            "iss names another issuer.",
            |c| c["iss"] = "https://evil.example.com".into(),
            Some("wrong issuer"),
        ),
        (
            "iss-trailing-slash",
            "token.iss",
            "iss with a trailing slash: compared exactly.",
            |c| c["iss"] = "https://issuer.example.com/".into(),
            Some("wrong issuer"),
        ),
        ("iss-missing", "token.iss", "No iss.", |c| remove(c, "iss"), Some("claims")),
        (
            "aud-missing",
            "token.aud",
            "No aud: required even though josekit would not insist.",
            |c| remove(c, "aud"),
            Some("claims"),
        ),
        (
            "aud-wrong",
            "token.aud",
            "aud names another API.",
            |c| c["aud"] = "https://other-api.example.com".into(),
            Some("wrong audience"),
        ),
        (
            "aud-trailing-slash",
            "token.aud",
            "aud with a trailing slash: compared exactly.",
            |c| c["aud"] = "https://api.example.com/".into(),
            Some("wrong audience"),
        ),
        (
            "aud-array-with-ours",
            "token.aud",
            "aud is an array that names this API among others.",
            |c| c["aud"] = json!(["https://other-api.example.com", AUDIENCE]),
            None,
        ),
        (
            "aud-array-without-ours",
            "token.aud",
            "aud is an array of other APIs.",
            |c| c["aud"] = json!(["https://other-api.example.com"]),
            Some("wrong audience"),
        ),
        ("aud-empty-array", "token.aud", "aud is an empty array.", |c| c["aud"] = json!([]), Some("wrong audience")),
        ("aud-null", "token.aud", "aud is null.", |c| c["aud"] = Value::Null, Some("claims")),
        ("exp-missing", "token.time", "No exp: required.", |c| remove(c, "exp"), Some("claims")),
        ("iat-missing", "token.time", "No iat: required (the TTL cap needs it).", |c| remove(c, "iat"), Some("claims")),
        (
            "exp-inside-leeway",
            "token.time",
            "exp was 4 s ago: inside the 5 s leeway.",
            |c| set_times(c, NOW - 64, NOW - 4),
            None,
        ),
        (
            "nbf-inside-leeway",
            "token.time",
            "nbf is 5 s ahead: inside the leeway.",
            |c| c["nbf"] = (NOW + 5).into(),
            None,
        ),
        (
            "nbf-future",
            "token.time",
            "nbf is 6 s ahead: outside the leeway.",
            |c| c["nbf"] = (NOW + 6).into(),
            Some("not yet valid"),
        ),
        (
            "iat-inside-leeway",
            "token.time",
            "iat (= nbf) is 5 s ahead: inside the leeway.",
            |c| set_times(c, NOW + 5, NOW + 65),
            None,
        ),
        (
            "iat-future",
            "token.time",
            "iat (= nbf) is 6 s ahead: outside the leeway.",
            |c| set_times(c, NOW + 6, NOW + 66),
            Some("not yet valid"),
        ),
        ("exp-before-nbf", "token.time", "exp before nbf.", |c| c["exp"] = (IAT - 1).into(), Some("out of range")),
        (
            "ttl-at-cap",
            "token.ttl",
            "exp - iat = 300 s: the hard cap, accepted.",
            |c| set_times(c, NOW - 10, NOW + 290),
            None,
        ),
        (
            "ttl-over-cap",
            "token.ttl",
            "exp - iat = 301 s: over the 300 s hard cap.",
            |c| set_times(c, NOW - 10, NOW + 291),
            Some("lifetime exceeds"),
        ),
        ("numeric-exp-1e300", "token.numeric", "exp is 1e300.", |c| c["exp"] = json!(1e300), Some("claims")),
        ("numeric-exp-negative-1e300", "token.numeric", "exp is -1e300.", |c| c["exp"] = json!(-1e300), Some("claims")),
        (
            "numeric-exp-u64-max",
            "token.numeric",
            "exp is 18446744073709551615 (u64::MAX).",
            |c| c["exp"] = json!(u64::MAX),
            Some("claims"),
        ),
        (
            "numeric-exp-i64-max",
            "token.numeric",
            "exp is 9223372036854775807 (i64::MAX): exp + leeway would overflow.",
            |c| c["exp"] = json!(i64::MAX),
            Some("out of range"),
        ),
        (
            "numeric-exp-above-year-5000",
            "token.numeric",
            "exp is 100000000001, above the numeric date bound.",
            |c| c["exp"] = json!(100_000_000_001_i64),
            Some("out of range"),
        ),
        (
            "numeric-exp-string",
            "token.numeric",
            "exp is a string of digits.",
            |c| c["exp"] = json!((NOW + 50).to_string()),
            Some("claims"),
        ),
        (
            "numeric-exp-fraction",
            "token.numeric",
            "exp has a fraction: the profile uses whole seconds.",
            |c| c["exp"] = json!(NOW as f64 + 50.5),
            Some("claims"),
        ),
        ("numeric-exp-negative", "token.numeric", "exp is -1.", |c| c["exp"] = json!(-1), Some("out of range")),
        (
            "numeric-iat-negative",
            "token.numeric",
            "iat (= nbf) is -1, so exp - iat is huge.",
            |c| set_times(c, -1, NOW + 50),
            Some("out of range"),
        ),
        (
            "numeric-iat-i64-min",
            "token.numeric",
            "iat is -9223372036854775808 (i64::MIN): exp - iat would overflow.",
            |c| c["iat"] = json!(i64::MIN),
            Some("out of range"),
        ),
        ("numeric-iat-u64-max", "token.numeric", "iat is u64::MAX.", |c| c["iat"] = json!(u64::MAX), Some("claims")),
        ("numeric-nbf-1e300", "token.numeric", "nbf is 1e300.", |c| c["nbf"] = json!(1e300), Some("claims")),
        ("numeric-nbf-null", "token.numeric", "nbf is null.", |c| c["nbf"] = Value::Null, Some("claims")),
        (
            "cnf-missing",
            "token.cnf",
            "No cnf: unbound tokens are never accepted.",
            |c| remove(c, "cnf"),
            Some("claims"),
        ),
        (
            "cnf-both",
            "token.cnf",
            "cnf has both jkt and x5t#S256.",
            |c| c["cnf"]["x5t#S256"] = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2".into(),
            Some("cnf has both"),
        ),
        ("cnf-empty", "token.cnf", "cnf is an empty object.", |c| c["cnf"] = json!({}), Some("cnf has neither")),
        ("cnf-jkt-not-string", "token.cnf", "cnf.jkt is a number.", |c| c["cnf"]["jkt"] = json!(1), Some("claims")),
        (
            "cnf-x5t-null-beside-jkt",
            "token.cnf",
            "cnf is {\"jkt\": …, \"x5t#S256\": null}: null is not absence.",
            |c| c["cnf"]["x5t#S256"] = Value::Null,
            Some("invalid type: null"),
        ),
        (
            "cnf-jkt-null-beside-x5t",
            "token.cnf",
            "cnf is {\"jkt\": null, \"x5t#S256\": …}: not a certificate binding.",
            |c| c["cnf"] = json!({"jkt": null, "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            Some("invalid type: null"),
        ),
        ("cnf-null", "token.cnf", "cnf is null.", |c| c["cnf"] = Value::Null, Some("claims")),
        (
            "cnf-array",
            "token.cnf",
            "cnf is [<jkt>], an array holding the right thumbprint: cnf is an object.",
            |c| c["cnf"] = json!([c["cnf"]["jkt"].clone()]),
            Some("claims"),
        ),
        (
            "cap-array",
            "token.claims",
            "cap is [action, scope, limit], an array: cap is an object.",
            |c| c["cap"] = json!([c["cap"]["action"].clone(), c["cap"]["scope"].clone(), 1]),
            Some("claims"),
        ),
        ("numeric-exp-null", "token.numeric", "exp is null.", |c| c["exp"] = Value::Null, Some("claims")),
        (
            "tpl-null",
            "token.claims",
            "tpl (optional) is null: left out when absent, never null.",
            |c| c["tpl"] = Value::Null,
            Some("invalid type: null"),
        ),
        (
            "cap-scope-null",
            "token.claims",
            "cap.scope (optional) is null: left out when absent, never null.",
            |c| c["cap"]["scope"] = Value::Null,
            Some("invalid type: null"),
        ),
        (
            "cap-subcap-null",
            "token.claims",
            "cap.subcap (optional) is null.",
            |c| c["cap"]["subcap"] = Value::Null,
            Some("invalid type: null"),
        ),
        ("jti-missing", "token.claims", "No jti (the trace id).", |c| remove(c, "jti"), Some("claims")),
        (
            "jti-too-short",
            "token.claims",
            "jti of 8 characters: fewer than 128 bits.",
            |c| c["jti"] = "AAAAAAAA".into(),
            Some("jti must be"),
        ),
        (
            "jti-not-base64url",
            "token.claims",
            "jti of 22 characters that are not base64url.",
            |c| c["jti"] = "!!!!!!!!!!!!!!!!!!!!!!".into(),
            Some("jti must be"),
        ),
        ("sub-missing", "token.claims", "No sub.", |c| remove(c, "sub"), Some("claims")),
        ("cap-missing", "token.claims", "No cap.", |c| remove(c, "cap"), Some("claims")),
        ("cap-limit-zero", "token.claims", "cap.limit is 0.", |c| c["cap"]["limit"] = 0.into(), Some("cap:")),
        ("cap-limit-negative", "token.claims", "cap.limit is -1.", |c| c["cap"]["limit"] = (-1).into(), Some("claims")),
        (
            "cap-action-malformed",
            "token.claims",
            "cap.action is not METHOD:/path.",
            |c| c["cap"]["action"] = "post /payments".into(),
            Some("cap:"),
        ),
        (
            "unknown-claim-ignored",
            "token.claims",
            "An extra claim nobody defined is ignored.",
            |c| c["x-note"] = json!({"any": ["thing", 1]}),
            None,
        ),
    ];
    for (name, check, description, edit, reject) in edits {
        let mut d = g.draft(FILE, name, check, description);
        let mut claims = g.default_claims(&d);
        edit(&mut claims);
        let expect = match reject {
            None => accepted(&d, 1, 0),
            Some(why) => bad_token(why),
        };
        d.present_claims(g, &claims, expect)?;
        out.push(d.done());
    }

    // Cases that also change the settings or the clock.
    let mut d = g.draft(
        FILE,
        "aud-second-configured",
        "token.aud",
        "The verifier answers to two audiences; aud names the second.",
    );
    d.case.settings.audiences = vec!["https://other-api.example.com".into(), AUDIENCE.into()];
    let claims = g.default_claims(&d);
    d.present_claims(g, &claims, accepted(&d, 1, 0))?;
    out.push(d.done());

    let mut d =
        g.draft(FILE, "exp-at-leeway", "token.time", "exp was 5 s ago: the leeway is used up (now ≥ exp + leeway).");
    let mut claims = g.default_claims(&d);
    set_times(&mut claims, NOW - 65, NOW - 5);
    d.present_claims(g, &claims, expired())?;
    out.push(d.done());

    let mut d = g.draft(FILE, "exp-long-ago", "token.time", "A token that expired an hour ago.");
    let mut claims = g.default_claims(&d);
    set_times(&mut claims, NOW - 3660, NOW - 3600);
    d.present_claims(g, &claims, expired())?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "exp-while-in-use",
        "token.time",
        "limit 3: used at now and at exp + 4 s, then refused at exp + 5 s (a token already verified once \
         is still checked against the clock).",
    );
    let mut claims = g.default_claims(&d);
    claims["cap"]["limit"] = 3.into();
    let token = g.token(&g.keys.issuer_es256, &claims)?;
    let exp = IAT + 60;
    d.present(g, &token, accepted(&d, 1, 2))?;
    for (at, expect) in [(exp + 4, accepted(&d, 2, 1)), (exp + 5, expired())] {
        let proof = g.good_proof(&mut d, &g.keys.client_es256, METHOD, URL, &token, at)?;
        d.step_at(at, dpop_request(METHOD, URL, &token, vec![proof]), expect);
    }
    out.push(d.done());

    let mut d = g.draft(FILE, "ttl-over-configured", "token.ttl", "max_ttl is 60 s; exp - iat = 61 s.");
    d.case.settings.max_ttl = 60;
    let mut claims = g.default_claims(&d);
    set_times(&mut claims, NOW - 10, NOW + 51);
    d.present_claims(g, &claims, bad_token("lifetime exceeds"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "ttl-hard-cap-beats-settings",
        "token.ttl",
        "max_ttl is set to 600 s, but the 300 s hard cap still applies: exp - iat = 301 s.",
    );
    d.case.settings.max_ttl = 600;
    let mut claims = g.default_claims(&d);
    set_times(&mut claims, NOW - 10, NOW + 291);
    d.present_claims(g, &claims, bad_token("lifetime exceeds"))?;
    out.push(d.done());

    Ok(out)
}

fn remove(c: &mut Value, name: &str) {
    if let Some(o) = c.as_object_mut() {
        o.remove(name);
    }
}

/// iat = nbf = `iat`, and `exp`.
fn set_times(c: &mut Value, iat: i64, exp: i64) {
    c["iat"] = iat.into();
    c["nbf"] = iat.into();
    c["exp"] = exp.into();
}
