//! `binding.json`: the Authorization scheme, downgrade attempts on DPoP-bound
//! tokens, the number of DPoP headers, and certificate-bound (mTLS) tokens.

use super::fixture::{
    accepted, accepted_as, bad_proof, bad_token, bad_token_unspecified, dpop_request, exhausted, jkt, no_credentials,
    Gen, ACTION, METHOD, NOW, URL,
};
use crate::format::{Case, Request};
use crate::Error;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

const FILE: &str = "binding";
pub(crate) const DESCRIPTION: &str =
    "How the token is presented: Authorization schemes, DPoP-bound tokens without their proof (downgrade), \
     zero or several DPoP headers, and certificate-bound (x5t#S256) tokens over mTLS.";

fn request(authorization: Option<String>, dpop: Vec<String>, cert: Option<&[u8]>) -> Request {
    Request {
        method: METHOD.into(),
        url: URL.into(),
        authorization,
        dpop,
        peer_certificate_b64: cert.map(|c| STANDARD.encode(c)),
        path: None,
    }
}

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let k = g.keys;
    let client = &k.client_es256;

    // --- schemes ---
    // Tokens that only show up through a proof's ath are signed with the
    // (deterministic) EdDSA key, so regenerating does not change them.
    let mut d = g.draft(FILE, "no-authorization", "binding.scheme", "No Authorization header: a bare challenge.");
    let token = g.token(&k.issuer_eddsa, &g.default_claims(&d))?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(request(None, vec![proof], None), no_credentials());
    out.push(d.done());

    let mut d = g.draft(FILE, "basic-scheme", "binding.scheme", "Authorization: Basic …: not a token scheme.");
    d.step(request(Some("Basic Y2xpZW50OnNlY3JldA==".into()), vec![], None), no_credentials());
    out.push(d.done());

    let mut d = g.draft(FILE, "scheme-without-token", "binding.scheme", "Authorization: DPoP with nothing after it.");
    d.step(request(Some("DPoP".into()), vec![], None), no_credentials());
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "scheme-lower-case",
        "binding.scheme",
        "Authorization: dpop <token>: schemes are case-insensitive.",
    );
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(request(Some(format!("dpop {token}")), vec![proof], None), accepted(&d, 1, 0));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "scheme-extra-spaces",
        "binding.scheme",
        "Authorization: DPoP followed by three spaces and the token (RFC 7235 allows 1*SP).",
    );
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(request(Some(format!("DPoP   {token}")), vec![proof], None), accepted(&d, 1, 0));
    out.push(d.done());

    let mut d = g.draft(FILE, "token-with-inner-space", "binding.scheme", "The token value contains a space.");
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    let (head, tail) = token.split_at(20);
    let spaced = format!("{head} {tail}");
    let proof = g.good_proof(&mut d, client, METHOD, URL, &spaced, NOW)?;
    d.step(request(Some(format!("DPoP {spaced}")), vec![proof], None), bad_token("not a compact JWS"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "proof-as-access-token",
        "binding.scheme",
        "A DPoP proof sent as the access token (and as the proof): wrong typ, and a jwk header.",
    );
    let token = g.token(&k.issuer_eddsa, &g.default_claims(&d))?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(request(Some(format!("DPoP {proof}")), vec![proof], None), bad_token_unspecified());
    out.push(d.done());

    // --- downgrade and DPoP header count ---
    let mut d = g.draft(
        FILE,
        "dpop-token-as-bearer-with-proof",
        "binding.downgrade",
        "A DPoP-bound token sent with the Bearer scheme (a correct proof alongside).",
    );
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(request(Some(format!("Bearer {token}")), vec![proof], None), bad_token("without the DPoP scheme"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "dpop-token-as-bearer",
        "binding.downgrade",
        "A DPoP-bound token sent as a plain Bearer token, no proof.",
    );
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    d.step(request(Some(format!("Bearer {token}")), vec![], None), bad_token("without the DPoP scheme"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "dpop-token-without-proof",
        "binding.downgrade",
        "Authorization: DPoP <token> but no DPoP header.",
    );
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    d.step(dpop_request(METHOD, URL, &token, vec![]), bad_proof("DPoP proof missing"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "two-dpop-headers",
        "binding.proof-count",
        "Two DPoP headers, each a correct proof for the request.",
    );
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    let p1 = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    let p2 = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(dpop_request(METHOD, URL, &token, vec![p1, p2]), bad_proof("more than one DPoP header"));
    out.push(d.done());

    let mut d =
        g.draft(FILE, "two-identical-dpop-headers", "binding.proof-count", "The same proof in two DPoP headers.");
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    let p = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(dpop_request(METHOD, URL, &token, vec![p.clone(), p]), bad_proof("more than one DPoP header"));
    out.push(d.done());

    let mut d = g.draft(FILE, "empty-dpop-header", "binding.proof-count", "One empty DPoP header.");
    let token = g.token(&k.issuer_es256, &g.default_claims(&d))?;
    d.step(dpop_request(METHOD, URL, &token, vec![String::new()]), bad_proof("not a compact JWS"));
    out.push(d.done());

    // --- certificate-bound tokens ---
    let x5t = ekey_verifier::sha256_b64(&k.client_cert);
    let mtls_claims = |d: &super::fixture::Draft, limit: u32| {
        let mut c = Gen::claims(&d.trace(), json!({ "x5t#S256": x5t }));
        c["cap"]["limit"] = limit.into();
        c
    };

    let mut d = g.draft(
        FILE,
        "mtls-right-certificate",
        "binding.mtls",
        "Bearer token bound to the client certificate presented.",
    );
    let token = g.token(&k.issuer_es256, &mtls_claims(&d, 1))?;
    d.step(
        request(Some(format!("Bearer {token}")), vec![], Some(&k.client_cert)),
        accepted_as(&d.trace(), 1, 0, ACTION, "mtls"),
    );
    out.push(d.done());

    let mut d = g.draft(FILE, "mtls-other-certificate", "binding.mtls", "Another client's certificate.");
    let token = g.token(&k.issuer_es256, &mtls_claims(&d, 1))?;
    d.step(
        request(Some(format!("Bearer {token}")), vec![], Some(&k.other_cert)),
        bad_token("client certificate does not match"),
    );
    out.push(d.done());

    let mut d = g.draft(FILE, "mtls-no-certificate", "binding.mtls", "No client certificate on the connection.");
    let token = g.token(&k.issuer_es256, &mtls_claims(&d, 1))?;
    d.step(request(Some(format!("Bearer {token}")), vec![], None), bad_token("without a client certificate"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "mtls-token-with-dpop-scheme",
        "binding.mtls",
        "A certificate-bound token sent with the DPoP scheme and a proof (the right certificate too).",
    );
    let token = g.token(&k.issuer_es256, &mtls_claims(&d, 1))?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    d.step(
        request(Some(format!("DPoP {token}")), vec![proof], Some(&k.client_cert)),
        bad_token("must use the Bearer scheme"),
    );
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "mtls-usage-limit",
        "binding.mtls",
        "limit 1 on a certificate-bound token: the second request is refused.",
    );
    let token = g.token(&k.issuer_es256, &mtls_claims(&d, 1))?;
    let r = request(Some(format!("Bearer {token}")), vec![], Some(&k.client_cert));
    d.step(r.clone(), accepted_as(&d.trace(), 1, 0, ACTION, "mtls"));
    d.step(r, exhausted());
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "dpop-token-with-certificate-only",
        "binding.downgrade",
        "A DPoP-bound token sent as Bearer over mTLS: a certificate is no substitute for the proof.",
    );
    let token = g.token(&k.issuer_es256, &Gen::claims(&d.trace(), jkt(client)))?;
    d.step(
        request(Some(format!("Bearer {token}")), vec![], Some(&k.client_cert)),
        bad_token("without the DPoP scheme"),
    );
    out.push(d.done());

    Ok(out)
}
