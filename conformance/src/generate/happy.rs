//! `happy-path.json`: correct requests for every issuer and proof algorithm.

use super::fixture::{accepted, dpop_request, jkt, Gen, METHOD, NOW, URL};
use crate::format::Case;
use crate::keys::SigningKey;
use crate::Error;

const FILE: &str = "happy-path";
pub(crate) const DESCRIPTION: &str =
    "Correct DPoP requests that must be accepted, for each issuer key algorithm (ES256, ES384, EdDSA, PS256) and \
     each proof key algorithm (ES256, ES384, EdDSA, PS256).";

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let k = g.keys;
    let short = |key: &SigningKey| key.algorithm().as_str().to_ascii_lowercase();
    let mut pairs: Vec<(&SigningKey, &SigningKey)> = Vec::new();
    for issuer in [&k.issuer_es256, &k.issuer_es384, &k.issuer_eddsa] {
        for client in [&k.client_es256, &k.client_es384, &k.client_eddsa] {
            pairs.push((issuer, client));
        }
    }
    pairs.push((&k.issuer_rsa, &k.client_es256));
    pairs.push((&k.issuer_es256, &k.client_rsa));

    let mut out = Vec::new();
    for (issuer, client) in pairs {
        let name = format!("token-{}-proof-{}", short(issuer), short(client));
        let description = format!(
            "A {} token bound to a {} DPoP key, presented with a correct proof.",
            issuer.algorithm(),
            client.algorithm()
        );
        let mut d = g.draft(FILE, &name, "accept", &description);
        d.case.jwks = g.jwks_with_rsa();
        let token = g.token(issuer, &Gen::claims(&d.trace(), jkt(client)))?;
        let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
        let expect = accepted(&d, 1, 0);
        d.step(dpop_request(METHOD, URL, &token, vec![proof]), expect);
        out.push(d.done());
    }
    Ok(out)
}
