//! The capability is matched on the path the application routes, and only a
//! path already in normal form is matched at all: every spelling a router
//! might read differently (dot segments, `\`, encoded `/` `\` or controls,
//! encoded unreserved characters, empty segments) is refused with 400
//! `invalid_request` before the capability is looked at, and spends nothing.
//! The proof's `htu` still names the URL the client used; a proof that
//! matches after RFC 3986 normalisation is not enough to pass.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Issuer, AUDIENCE, NOW};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, Outcome, VerifiedCapability};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// Spellings of `POST /payments/42`-like requests that a router may resolve
/// to another resource (or to `/payments/:id` when it is not): each must be
/// refused, whatever the capability says.
const HOSTILE: &[(&str, &str)] = &[
    ("/admin/x/../../payments/42", "dot-dot segments"),
    ("/payments/./42", "a dot segment"),
    ("/payments/42/.", "a trailing dot segment"),
    ("/payments/%2e%2e/payments/42", "encoded dot-dot (lower case)"),
    ("/payments/%2E%2E/payments/42", "encoded dot-dot (upper case)"),
    ("/payments/.%2e/payments/42", "half-encoded dot-dot"),
    ("/payments/%2e/42", "an encoded dot segment"),
    ("/payments/..;/payments/42", "a dot-dot segment with a path parameter"),
    ("/payments/42%2F..%2Fadmin", "encoded slashes"),
    ("/payments/42%2f..%2fadmin", "encoded slashes (lower case)"),
    ("/payments/4%002", "an encoded NUL"),
    ("/payments/42%0A", "an encoded line feed"),
    ("/payments/42%7F", "an encoded DEL"),
    ("/payments/42%5C..%5Cadmin", "encoded backslashes"),
    ("/payments/42%5c..%5cadmin", "encoded backslashes (lower case)"),
    ("/payments//42", "an empty segment"),
    ("//payments/42", "an empty first segment"),
    ("/payments/%34%32", "encoded unreserved characters"),
    ("/payments/4%2", "a truncated percent-encoding"),
    ("/payments/4%zz", "a percent sign without hex digits"),
    ("/payments/caf%c3%a9", "lower-case hex digits"),
];

fn dpop_headers(client: &DpopKey, token: &str, method: &str, htu: &str) -> HeaderMap {
    let proof = client.proof(method, htu, Some(token), None, NOW).unwrap();
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_str(&format!("DPoP {token}")).unwrap());
    h.insert("dpop", HeaderValue::from_str(&proof).unwrap());
    h
}

#[tokio::test]
async fn paths_not_in_normal_form_are_refused_with_400_before_matching() {
    let issuer = Issuer::new();
    let (verifier, _) = issuer.verifier();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    for (path, what) in HOSTILE {
        // A token that any normalisation of these paths would satisfy.
        let mut claims = issuer.claims(client.thumbprint(), "POST:/payments/:id", 1);
        claims.cap.subcap = vec!["POST:/payments/:id/:x".into(), "POST:/admin".into()];
        let token = issuer.sign(&claims);
        let url = format!("{AUDIENCE}{path}");
        // The proof names the URL exactly as the client sent it.
        let headers = dpop_headers(&client, &token, "POST", &url);
        let got = verifier.verify_http(&Method::POST, &url, &headers, None).await;
        let r = got.expect_err(&format!("{path} ({what}) must be refused"));
        let res = verifier.reject(&r);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path} ({what}): {r}");
        assert_eq!(r.error_code(), Some("invalid_request"), "{path} ({what})");
        assert_eq!(r.reason(), "invalid_path", "{path} ({what})");
        let www = res.headers()["www-authenticate"].to_str().unwrap();
        assert!(www.contains("error=\"invalid_request\""), "{path}: {www}");
        // Nothing was spent: the same token still has its one use.
        let ok_url = format!("{AUDIENCE}/payments/42");
        let ok_headers = dpop_headers(&client, &token, "POST", &ok_url);
        let ok = verifier.verify_http(&Method::POST, &ok_url, &ok_headers, None).await;
        assert_eq!(ok.map(|c| c.used), Ok(1), "{path}: the refusal spent the token");
    }
}

#[tokio::test]
async fn a_proof_for_the_normalised_url_does_not_open_a_hostile_path() {
    let issuer = Issuer::new();
    let (verifier, _) = issuer.verifier();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "POST:/payments/:id", 5);
    // htu is compared normalised (RFC 9449 §4.3), so this proof matches the
    // request URL; the path the application routes is still not /payments/42.
    let headers = dpop_headers(&client, &token, "POST", &format!("{AUDIENCE}/payments/42"));
    for path in ["/admin/x/../../payments/42", "/payments/%34%32", "/payments/./42"] {
        let url = format!("{AUDIENCE}{path}");
        let r = verifier.verify_http(&Method::POST, &url, &headers, None).await.unwrap_err();
        assert_eq!((r.status(), r.outcome()), (StatusCode::BAD_REQUEST, Outcome::InvalidPath), "{path}");
    }
}

#[tokio::test]
async fn normal_paths_still_match_and_a_trailing_slash_is_another_path() {
    let issuer = Issuer::new();
    let (verifier, _) = issuer.verifier();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "POST:/payments/:id", 10);
    let call = |path: &str| {
        let url = format!("{AUDIENCE}{path}");
        let headers = dpop_headers(&client, &token, "POST", &url);
        let verifier = &verifier;
        async move { verifier.verify_http(&Method::POST, &url, &headers, None).await }
    };
    let accepted = |r: Result<VerifiedCapability, _>| r.map(|c| c.action);
    for path in [
        "/payments/42",
        "/payments/42?x=../../admin",
        "/payments/caf%C3%A9",
        "/payments/a%20b",
        "/payments/a%2Cb",
        "/payments/~user.name_1-2",
        "/payments/a:b@c!$&'()*+,;=",
        "/payments/...",
        "/payments/.hidden",
    ] {
        assert_eq!(accepted(call(path).await), Ok("POST:/payments/:id".to_owned()), "{path}");
    }
    // A trailing slash is a path of its own (not refused as non-normal),
    // with an empty last segment that no action pattern matches.
    let r = call("/payments/42/").await.unwrap_err();
    assert_eq!(r.outcome(), Outcome::InsufficientScope);
}
