//! `dpop-nonce.json`: server nonces (RFC 9449 §8/§9) from the stateless
//! `NonceSource` (HMAC of the time window under a shared secret).

use super::fixture::{
    accepted, bad_proof, default_settings, dpop_request, jkt, use_nonce, Draft, Gen, IAT, METHOD, NOW, URL,
};
use crate::format::{Case, Expect, NonceSettings};
use crate::Error;
use ekey_verifier::{b64_encode, NonceSource};

const FILE: &str = "dpop-nonce";
pub(crate) const DESCRIPTION: &str =
    "With a nonce secret configured (TEST-ONLY value in the settings), proofs must carry a nonce of the current \
     or previous window; otherwise the answer is use_dpop_nonce with a fresh DPoP-Nonce.";

const WINDOW: u32 = 60;

fn source(seed: &str) -> Result<(Vec<u8>, NonceSource), Error> {
    let secret = openssl::sha::sha256(seed.as_bytes()).to_vec();
    let source = NonceSource::new(&secret, WINDOW).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((secret, source))
}

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let (secret, nonces) = source("ekey conformance TEST-ONLY DPoP nonce secret")?;
    let (_, forger) = source("some other secret")?;
    let client = &g.keys.client_es256;

    let draft = |name: &str, description: &str| {
        let mut d = g.draft(FILE, name, "proof.nonce", description);
        d.case.settings.nonce = Some(NonceSettings { secret_b64url: b64_encode(&secret), window: WINDOW });
        d
    };
    // A token that outlives the clock moves below.
    let token = |d: &Draft, limit: u32| {
        let mut c = Gen::claims(&d.trace(), jkt(client));
        c["exp"] = (IAT + 210).into();
        c["cap"]["limit"] = limit.into();
        g.token(&g.keys.issuer_es256, &c)
    };
    let send = |d: &mut Draft, token: &str, nonce: Option<&str>, at: i64, expect: Expect| -> Result<(), Error> {
        let mut claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(token), at);
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        let request = dpop_request(METHOD, URL, token, vec![g.proof(client, &claims)?]);
        d.step_at(at, request, expect);
        Ok(())
    };

    let current = nonces.current(NOW);
    for (name, description, nonce, ok) in [
        ("missing", "No nonce in the proof.", None, false),
        ("current", "The nonce of the current window.", Some(current.clone()), true),
        ("previous-window", "The nonce of the previous window: still valid.", Some(nonces.current(NOW - 60)), true),
        ("stale", "The nonce of two windows ago.", Some(nonces.current(NOW - 120)), false),
        ("future-window", "The nonce of the next window.", Some(nonces.current(NOW + 60)), false),
        ("forged", "A nonce made with another secret.", Some(forger.current(NOW)), false),
        ("malformed", "A nonce that is not one.", Some("not-a-nonce".to_owned()), false),
    ] {
        let mut d = draft(name, description);
        let t = token(&d, 1)?;
        let expect = if ok { accepted(&d, 1, 0) } else { use_nonce(&current) };
        send(&mut d, &t, nonce.as_deref(), NOW, expect)?;
        out.push(d.done());
    }

    let mut d = draft(
        "null",
        "nonce: null where a nonce is required: a malformed proof (invalid_dpop_proof), not a missing nonce.",
    );
    let t = token(&d, 1)?;
    let mut claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&t), NOW);
    claims["nonce"] = serde_json::Value::Null;
    let request = dpop_request(METHOD, URL, &t, vec![g.proof(client, &claims)?]);
    d.step(request, bad_proof("invalid type: null"));
    out.push(d.done());

    let mut d = draft(
        "flow",
        "The usual exchange: a proof without nonce gets use_dpop_nonce and a nonce; the retry with it is accepted \
         (the refused request used nothing).",
    );
    let t = token(&d, 1)?;
    send(&mut d, &t, None, NOW, use_nonce(&current))?;
    let e = accepted(&d, 1, 0);
    send(&mut d, &t, Some(&current), NOW, e)?;
    out.push(d.done());

    let mut d = draft(
        "across-windows",
        "limit 3: a nonce used now and again 70 s later (next window: still valid), then 130 s later (stale).",
    );
    let t = token(&d, 3)?;
    let e = accepted(&d, 1, 2);
    send(&mut d, &t, Some(&current), NOW, e)?;
    let e = accepted(&d, 2, 1);
    send(&mut d, &t, Some(&current), NOW + 70, e)?;
    send(&mut d, &t, Some(&current), NOW + 130, use_nonce(&nonces.current(NOW + 130)))?;
    out.push(d.done());

    let mut d =
        g.draft(FILE, "not-required", "proof.nonce", "No nonce secret configured: a nonce in the proof is ignored.");
    d.case.settings = default_settings();
    let t = token(&d, 1)?;
    let e = accepted(&d, 1, 0);
    send(&mut d, &t, Some("whatever"), NOW, e)?;
    out.push(d.done());

    Ok(out)
}
