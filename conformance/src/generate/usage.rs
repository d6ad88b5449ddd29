//! `usage.json`: the stateful checks of the one atomic store operation:
//! usage limit, proof replay (scoped to the key), and revocation.

use super::fixture::{
    accepted, accepted_as, dpop_request, exhausted, jkt, replayed, revoked, Draft, Gen, ACTION, METHOD, NOW, URL,
};
use crate::format::Case;
use crate::keys::SigningKey;
use crate::Error;

const FILE: &str = "usage";
pub(crate) const DESCRIPTION: &str =
    "Multi-step cases against one store: cap.limit consumed one use per accepted request, proof jti replay \
     (scoped to the client key), and revocation of a trace.";

fn token(g: &Gen, d: &Draft, n: u32, key: &SigningKey, limit: u32) -> Result<String, Error> {
    let mut claims = Gen::claims(&d.trace_n(n), jkt(key));
    claims["cap"]["limit"] = limit.into();
    g.token(&g.keys.issuer_es256, &claims)
}

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let k = g.keys;
    let client = &k.client_es256;

    let mut d = g.draft(FILE, "limit-2", "usage.limit", "limit 2: two requests accepted, the third refused.");
    let t = token(g, &d, 0, client, 2)?;
    for expect in [accepted(&d, 1, 1), accepted(&d, 2, 0), exhausted()] {
        d.present(g, &t, expect)?;
    }
    out.push(d.done());

    let mut d = g.draft(FILE, "limit-1", "usage.limit", "limit 1 (one task, one key): the second request is refused.");
    let t = token(g, &d, 0, client, 1)?;
    for expect in [accepted(&d, 1, 0), exhausted()] {
        d.present(g, &t, expect)?;
    }
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "replay-same-proof",
        "usage.replay",
        "limit 5: the same proof sent twice; the second is a replay.",
    );
    let t = token(g, &d, 0, client, 5)?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &t, NOW)?;
    d.step(dpop_request(METHOD, URL, &t, vec![proof.clone()]), accepted(&d, 1, 4));
    d.step(dpop_request(METHOD, URL, &t, vec![proof]), replayed());
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "replay-jti-new-request",
        "usage.replay",
        "limit 5: a second, different proof (GET, subcap) by the same key reusing the first proof's jti.",
    );
    let t = token(g, &d, 0, client, 5)?;
    let jti = d.jti();
    let p1 = g.proof(client, &Gen::proof_claims(&jti, METHOD, URL, Some(&t), NOW))?;
    let p2 = g.proof(client, &Gen::proof_claims(&jti, "GET", URL, Some(&t), NOW + 1))?;
    d.step(dpop_request(METHOD, URL, &t, vec![p1]), accepted(&d, 1, 4));
    d.step(dpop_request("GET", URL, &t, vec![p2]), replayed());
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "replay-jti-other-token",
        "usage.replay",
        "Two tokens bound to the same key; the proof for the second reuses the first proof's jti.",
    );
    let (t1, t2) = (token(g, &d, 1, client, 1)?, token(g, &d, 2, client, 1)?);
    let jti = d.jti();
    let p1 = g.proof(client, &Gen::proof_claims(&jti, METHOD, URL, Some(&t1), NOW))?;
    let p2 = g.proof(client, &Gen::proof_claims(&jti, METHOD, URL, Some(&t2), NOW))?;
    d.step(dpop_request(METHOD, URL, &t1, vec![p1]), accepted_as(&d.trace_n(1), 1, 0, ACTION, "dpop"));
    d.step(dpop_request(METHOD, URL, &t2, vec![p2]), replayed());
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "same-jti-other-key",
        "usage.replay",
        "Two tokens bound to two different keys, proofs with the same jti: replay detection is per key, both accepted.",
    );
    let other = &k.client_eddsa;
    let (t1, t2) = (token(g, &d, 1, client, 1)?, token(g, &d, 2, other, 1)?);
    let jti = d.jti();
    let p1 = g.proof(client, &Gen::proof_claims(&jti, METHOD, URL, Some(&t1), NOW))?;
    let p2 = g.proof(other, &Gen::proof_claims(&jti, METHOD, URL, Some(&t2), NOW))?;
    d.step(dpop_request(METHOD, URL, &t1, vec![p1]), accepted_as(&d.trace_n(1), 1, 0, ACTION, "dpop"));
    d.step(dpop_request(METHOD, URL, &t2, vec![p2]), accepted_as(&d.trace_n(2), 1, 0, ACTION, "dpop"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "replay-after-rejection-is-not-a-use",
        "usage.limit",
        "limit 1: a request refused for its capability (403) consumes nothing; the next correct one is accepted.",
    );
    let t = token(g, &d, 0, client, 1)?;
    let other_url = "https://api.example.com/refunds/42";
    let p = g.good_proof(&mut d, client, METHOD, other_url, &t, NOW)?;
    d.step(dpop_request(METHOD, other_url, &t, vec![p]), super::fixture::forbidden());
    d.present(g, &t, accepted(&d, 1, 0))?;
    out.push(d.done());

    let mut d = g.draft(FILE, "revoked-before-use", "usage.revocation", "The trace is revoked before its first use.");
    let t = token(g, &d, 0, client, 3)?;
    d.revoke(&d.trace(), NOW + 600);
    d.present(g, &t, revoked())?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "revoked-after-use",
        "usage.revocation",
        "limit 3: one use, then the trace is revoked; the next request is refused.",
    );
    let t = token(g, &d, 0, client, 3)?;
    d.present(g, &t, accepted(&d, 1, 2))?;
    d.revoke(&d.trace(), NOW + 600);
    d.present(g, &t, revoked())?;
    out.push(d.done());

    Ok(out)
}
