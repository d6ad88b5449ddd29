//! `request-path.json`: the path the capability is matched on is the path
//! the application routes, as it arrived, and only a path already in normal
//! form is matched at all. Every other spelling is refused with 400
//! `invalid_request` and spends nothing, even with a valid token and a proof
//! for exactly that URL.

use super::fixture::{accepted, bad_path, dpop_request, forbidden, Draft, Gen, METHOD, NOW, URL};
use crate::format::{Case, Expect};
use crate::Error;

const FILE: &str = "request-path";
pub(crate) const DESCRIPTION: &str =
    "The request path against the normal-form rule, before any capability is matched: dot segments in any \
     spelling, backslashes, encoded slashes, backslashes and controls, needless or lower-case percent-encodings, \
     empty segments are refused with 400 invalid_request (and spend nothing); normal paths with encoded octets, \
     a trailing slash, a query, and a routed path that differs from the URL's are matched as they are.";

const BASE: &str = "https://api.example.com";

/// The expectation of a case, which may name its trace.
type ExpectFor = fn(&Draft) -> Expect;

/// (name, description, path as sent): refused, whatever the capability.
const REFUSED: &[(&str, &str, &str)] = &[
    ("dot-dot", "`..` segments that a router resolves to /payments/42.", "/admin/x/../../payments/42"),
    ("dot", "A `.` segment.", "/payments/./42"),
    ("dot-last", "A `.` as the last segment.", "/payments/42/."),
    ("dot-dot-encoded-lower", "`%2e%2e`: an encoded `..`.", "/payments/%2e%2e/payments/42"),
    ("dot-dot-encoded-upper", "`%2E%2E`: an encoded `..`.", "/payments/%2E%2E/payments/42"),
    ("dot-dot-encoded-mixed-case", "`%2E%2e`.", "/payments/%2E%2e/payments/42"),
    ("dot-dot-half-encoded", "`.%2e`.", "/payments/.%2e/payments/42"),
    ("dot-dot-half-encoded-first", "`%2E.`.", "/payments/%2E./payments/42"),
    ("dot-encoded", "`%2e`: an encoded `.`.", "/payments/%2e/42"),
    ("dot-dot-path-parameter", "`..;`, which some servers read as `..`.", "/payments/..;/payments/42"),
    ("backslash", "A raw backslash, which some servers read as `/`.", "/payments/42\\..\\admin"),
    ("backslash-encoded-upper", "`%5C`: an encoded backslash.", "/payments/42%5C..%5Cadmin"),
    ("backslash-encoded-lower", "`%5c`.", "/payments/42%5c..%5cadmin"),
    ("slash-encoded-upper", "`%2F` inside what would match `:id`.", "/payments/42%2F..%2Fadmin"),
    ("slash-encoded-lower", "`%2f`.", "/payments/42%2f..%2fadmin"),
    ("nul-encoded", "`%00` inside what would match `:id`.", "/payments/4%002"),
    ("line-feed-encoded", "`%0A`.", "/payments/42%0A"),
    ("control-encoded", "`%1F`.", "/payments/42%1F"),
    ("del-encoded", "`%7F`.", "/payments/42%7F"),
    ("control-raw", "A raw DEL.", "/payments/42\u{7f}"),
    ("empty-segment", "`//` in the middle.", "/payments//42"),
    ("empty-first-segment", "`//` at the start.", "//payments/42"),
    ("unreserved-encoded", "`%34%32` for `42`: routers differ on decoding it.", "/payments/%34%32"),
    ("tilde-encoded", "`%7E` for `~`.", "/payments/%7Euser"),
    ("hex-lower-case", "`%c3%a9`: percent-encodings are written with upper-case hex.", "/payments/caf%c3%a9"),
    ("percent-truncated", "`%2` without its second digit.", "/payments/4%2"),
    ("percent-not-hex", "`%zz`.", "/payments/4%zz"),
    ("character-not-allowed", "A raw `{`: it must be percent-encoded.", "/payments/{42}"),
];

/// (name, description, path as sent, accepted on `cap.action`): normal form.
const NORMAL: &[(&str, &str, &str, bool)] = &[
    ("encoded-reserved", "`%2C` is a `,` that stays encoded: `:id` matches `a%2Cb`.", "/payments/a%2Cb", true),
    ("encoded-non-ascii", "`%C3%A9`, upper-case hex.", "/payments/caf%C3%A9", true),
    ("encoded-percent", "`%25` is a `%`.", "/payments/100%25", true),
    ("three-dots", "`...` is not a dot segment.", "/payments/...", true),
    ("leading-dot", "`.42` is not a dot segment.", "/payments/.42", true),
    ("sub-delims", "Sub-delimiters, `:` and `@` are allowed raw.", "/payments/a;b=c:d@e", true),
    (
        "query-not-the-path",
        "Dots and encoded slashes in the query are not the path's.",
        "/payments/42?next=..%2F..%2Fadmin",
        true,
    ),
    ("trailing-slash", "A trailing `/` is a path of its own, which `:id` does not match.", "/payments/42/", false),
];

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    for (name, description, path) in REFUSED {
        let mut d = g.draft(FILE, name, "request.path", &format!("{description} Refused, then the plain path works."));
        let token = g.token(&g.keys.issuer_es256, &g.default_claims(&d))?;
        // The proof names the URL exactly as the client sent it.
        let url = format!("{BASE}{path}");
        let proof = g.good_proof(&mut d, &g.keys.client_es256, METHOD, &url, &token, NOW)?;
        d.step(dpop_request(METHOD, &url, &token, vec![proof]), bad_path());
        // Nothing was spent: the token's one use is still there.
        let proof = g.good_proof(&mut d, &g.keys.client_es256, METHOD, URL, &token, NOW)?;
        let expect = accepted(&d, 1, 0);
        d.step(dpop_request(METHOD, URL, &token, vec![proof]), expect);
        out.push(d.done());
    }
    for (name, description, path, ok) in NORMAL {
        let mut d = g.draft(FILE, name, "request.path", description);
        let token = g.token(&g.keys.issuer_es256, &g.default_claims(&d))?;
        let url = format!("{BASE}{path}");
        let proof = g.good_proof(&mut d, &g.keys.client_es256, METHOD, &url, &token, NOW)?;
        let expect = if *ok { accepted(&d, 1, 0) } else { forbidden() };
        d.step(dpop_request(METHOD, &url, &token, vec![proof]), expect);
        out.push(d.done());
    }

    // The routed path given apart from the URL (a proxy strips a prefix, or
    // hands over the request target as it arrived).
    let routed: [(&str, &str, &str, &str, ExpectFor); 3] = [
        (
            "routed-path-behind-a-prefix",
            "The URL has a /v1 prefix the application does not route: matched on the routed /payments/42.",
            "/v1/payments/42",
            "/payments/42",
            |d| accepted(d, 1, 0),
        ),
        (
            "routed-path-outside-the-capability",
            "The URL reads /payments/42 but the application routes /42: outside the capability.",
            "/payments/42",
            "/42",
            |_| forbidden(),
        ),
        (
            "routed-path-not-normal",
            "A clean URL does not launder a routed path that is not in normal form.",
            "/payments/42",
            "/admin/../payments/42",
            |_| bad_path(),
        ),
    ];
    for (name, description, url_path, path, expect) in routed {
        let mut d = g.draft(FILE, name, "request.path", description);
        let token = g.token(&g.keys.issuer_es256, &g.default_claims(&d))?;
        let url = format!("{BASE}{url_path}");
        let proof = g.good_proof(&mut d, &g.keys.client_es256, METHOD, &url, &token, NOW)?;
        let mut request = dpop_request(METHOD, &url, &token, vec![proof]);
        request.path = Some(path.into());
        let expect = expect(&d);
        d.step(request, expect);
        out.push(d.done());
    }
    Ok(out)
}
