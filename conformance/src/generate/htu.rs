//! `dpop-htu.json`: the proof's `htu` against the request's external URL,
//! both normalised per RFC 3986 §6.2.2–6.2.3, query and fragment ignored.

use super::fixture::{accepted, bad_proof, dpop_request, jkt, Gen, METHOD, NOW, URL};
use crate::format::Case;
use crate::Error;
use serde_json::Value;

const FILE: &str = "dpop-htu";
pub(crate) const DESCRIPTION: &str =
    "The proof's htu compared with the request URL after RFC 3986 normalisation: equivalent spellings that must \
     be accepted, and different resources that must be refused.";

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let q = format!("{URL}?amount=10&currency=EUR");
    let f = format!("{URL}#receipt");
    let slash = format!("{URL}/");
    // (name, description, request URL, htu or None to leave it out, accepted)
    let pairs: Vec<(&str, &str, &str, Option<Value>, bool)> = vec![
        (
            "scheme-host-case",
            "Scheme and host in upper case.",
            URL,
            Some("HTTPS://API.EXAMPLE.COM/payments/42".into()),
            true,
        ),
        (
            "default-port-explicit",
            "The default port :443 spelled out.",
            URL,
            Some("https://api.example.com:443/payments/42".into()),
            true,
        ),
        (
            "percent-encoded-unreserved",
            "Unreserved characters percent-encoded (%34%32 = 42).",
            URL,
            Some("https://api.example.com/payments/%34%32".into()),
            true,
        ),
        ("query-ignored", "htu carries a query the request URL has not.", URL, Some(q.clone().into()), true),
        ("fragment-ignored", "htu carries a fragment.", URL, Some(f.into()), true),
        ("dot-segment-single", "A ./ segment.", URL, Some("https://api.example.com/payments/./42".into()), true),
        ("dot-segment-double", "A ../ segment.", URL, Some("https://api.example.com/v1/../payments/42".into()), true),
        (
            "request-url-non-canonical",
            "The request URL is the odd spelling (scheme and host case, :443, query); htu is plain. (An odd \
             spelling of the request path is refused before the proof is looked at: request-path.json.)",
            "HTTPS://API.example.com:443/payments/42?x=1",
            Some(URL.into()),
            true,
        ),
        ("request-query-only", "The request URL has a query; htu has none.", &q, Some(URL.into()), true),
        (
            "percent-hex-case",
            "%2c in htu and %2C in the request URL are the same octet.",
            "https://api.example.com/payments/a%2Cb",
            Some("https://api.example.com/payments/a%2cb".into()),
            true,
        ),
        (
            "non-default-port-both",
            "A non-default port on both sides.",
            "https://api.example.com:8443/payments/42",
            Some("https://api.example.com:8443/payments/42".into()),
            true,
        ),
        ("other-host", "Another host.", URL, Some("https://api.example.org/payments/42".into()), false),
        (
            "host-suffix",
            "The host followed by an attacker's domain.",
            URL,
            Some("https://api.example.com.attacker.example/payments/42".into()),
            false,
        ),
        ("other-port", "Another port.", URL, Some("https://api.example.com:8443/payments/42".into()), false),
        ("other-path", "Another resource.", URL, Some("https://api.example.com/payments/43".into()), false),
        ("other-scheme", "http instead of https.", URL, Some("http://api.example.com/payments/42".into()), false),
        ("trailing-slash", "A trailing slash.", URL, Some(slash.into()), false),
        (
            "path-case",
            "The path in another case: paths are case-sensitive.",
            URL,
            Some("https://api.example.com/Payments/42".into()),
            false,
        ),
        (
            "encoded-slash",
            "%2F is not a path separator.",
            URL,
            Some("https://api.example.com/payments%2F42".into()),
            false,
        ),
        ("userinfo", "user@ in the htu.", URL, Some("https://client@api.example.com/payments/42".into()), false),
        ("relative", "A relative reference.", URL, Some("/payments/42".into()), false),
        ("missing", "No htu.", URL, None, false),
    ];
    for (name, description, url, htu, ok) in pairs {
        let mut d = g.draft(FILE, name, "proof.htu", description);
        let client = &g.keys.client_es256;
        let token = g.token(&g.keys.issuer_es256, &Gen::claims(&d.trace(), jkt(client)))?;
        let mut claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
        match htu {
            Some(h) => claims["htu"] = h,
            None => {
                if let Some(o) = claims.as_object_mut() {
                    o.remove("htu");
                }
            }
        }
        let expect = if ok { accepted(&d, 1, 0) } else { bad_proof("htu does not match") };
        d.step(dpop_request(METHOD, url, &token, vec![g.proof(client, &claims)?]), expect);
        out.push(d.done());
    }

    let mut d = g.draft(FILE, "not-a-string", "proof.htu", "htu is a number.");
    let client = &g.keys.client_es256;
    let token = g.token(&g.keys.issuer_es256, &Gen::claims(&d.trace(), jkt(client)))?;
    let mut claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    claims["htu"] = 42.into();
    d.step(dpop_request(METHOD, URL, &token, vec![g.proof(client, &claims)?]), bad_proof("proof claims"));
    out.push(d.done());

    Ok(out)
}
