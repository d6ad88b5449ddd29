//! `capability.json`: the request's method and path against `cap.action`
//! and `cap.subcap`, with correct proofs for each request. (Paths that are
//! not in normal form are refused before matching: `request-path.json`.)

use super::fixture::{accepted_as, dpop_request, exhausted, forbidden, Gen, ACTION, NOW, SUBCAP};
use crate::format::Case;
use crate::Error;

const FILE: &str = "capability";
pub(crate) const DESCRIPTION: &str =
    "The capability check: method and path against cap.action (POST:/payments/:id) and cap.subcap \
     (GET:/payments/:id); the proofs are correct for each request, so only the capability decides.";

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let base = "https://api.example.com";
    // (name, description, method, path, matched action or None for 403)
    let requests: [(&str, &str, &str, &str, Option<&str>); 9] = [
        ("action-match", "POST /payments/42 matches cap.action.", "POST", "/payments/42", Some(ACTION)),
        ("subcap-match", "GET /payments/42 matches a subcap entry.", "GET", "/payments/42", Some(SUBCAP)),
        ("wrong-method", "PUT is neither the action's nor a subcap's method.", "PUT", "/payments/42", None),
        ("wrong-path", "Another collection.", "POST", "/refunds/42", None),
        ("extra-segment", "One segment more than the pattern.", "POST", "/payments/42/refund", None),
        ("missing-segment", "One segment less than the pattern.", "POST", "/payments", None),
        ("empty-parameter", "The :id segment is empty.", "POST", "/payments/", None),
        ("lower-case-method", "Method \"post\": methods are case-sensitive.", "post", "/payments/42", None),
        (
            "query-ignored",
            "A query string does not change the path.",
            "POST",
            "/payments/42?dry_run=true",
            Some(ACTION),
        ),
    ];
    for (name, description, method, path, action) in requests {
        let mut d = g.draft(FILE, name, "capability", description);
        let token = g.token(&g.keys.issuer_es256, &g.default_claims(&d))?;
        let url = format!("{base}{path}");
        let proof = g.good_proof(&mut d, &g.keys.client_es256, method, &url, &token, NOW)?;
        let expect = match action {
            Some(a) => accepted_as(&d.trace(), 1, 0, a, "dpop"),
            None => forbidden(),
        };
        d.step(dpop_request(method, &url, &token, vec![proof]), expect);
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "subcap-shares-the-limit",
        "capability",
        "limit 1: spent on the subcap (GET), then the action (POST) is refused: one budget for all entries.",
    );
    let token = g.token(&g.keys.issuer_es256, &g.default_claims(&d))?;
    for (method, expect) in [("GET", accepted_as(&d.trace(), 1, 0, SUBCAP, "dpop")), ("POST", exhausted())] {
        let url = format!("{base}/payments/42");
        let proof = g.good_proof(&mut d, &g.keys.client_es256, method, &url, &token, NOW)?;
        d.step(dpop_request(method, &url, &token, vec![proof]), expect);
    }
    out.push(d.done());

    Ok(out)
}
