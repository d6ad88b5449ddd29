//! `dpop-proof.json`: the DPoP proof (RFC 9449 §4.3) with a valid token:
//! shape, header, key, signature, `htm`, `iat` window, `jti`, `ath`, and the
//! binding to `cnf.jkt`. (`htu` has its own file.)

use super::fixture::{accepted, any_bad_proof, bad_proof, bad_proof_unspecified, jkt, Draft, Gen, METHOD, NOW, URL};
use crate::format::Case;
use crate::jws::{self, compact, padded, signing_input};
use crate::keys::SigningKey;
use crate::Error;
use ekey_verifier::{b64_encode, sha256_b64, Algorithm};
use serde_json::{json, Value};

const FILE: &str = "dpop-proof";
pub(crate) const DESCRIPTION: &str =
    "DPoP proofs presented with a valid DPoP-bound token: size, shape, duplicate members, JSON limits, null \
     members, typ, alg allow-list, public jwk only, signature, htm, iat window (with leeway), jti, ath, and the \
     key thumbprint against cnf.jkt.";

/// A case whose token is bound to `key`, limit `limit`.
fn token_for(g: &Gen, d: &Draft, key: &SigningKey, limit: u32) -> Result<String, Error> {
    token_bound(g, d, jkt(key), limit)
}

fn token_bound(g: &Gen, d: &Draft, cnf: Value, limit: u32) -> Result<String, Error> {
    let mut claims = Gen::claims(&d.trace(), cnf);
    claims["cap"]["limit"] = limit.into();
    g.token(&g.keys.issuer_es256, &claims)
}

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let k = g.keys;
    let client = &k.client_es256;
    let client_jwk = client.public_jwk().to_json();

    // --- claim edits on an otherwise correct proof ---
    type Edit = fn(&mut Value, &str);
    let edits: Vec<(&str, &str, &str, Edit, Option<&str>)> = vec![
        (
            "htm-mismatch",
            "proof.htm",
            "htm GET for a POST request.",
            |c, _| c["htm"] = "GET".into(),
            Some("htm does not match"),
        ),
        (
            "htm-lower-case",
            "proof.htm",
            "htm \"post\" for a POST request: methods are case-sensitive.",
            |c, _| c["htm"] = "post".into(),
            Some("htm does not match"),
        ),
        ("htm-missing", "proof.htm", "No htm.", |c, _| remove(c, "htm"), Some("htm does not match")),
        (
            "iat-inside-window-past",
            "proof.iat",
            "iat 65 s ago: max age 60 s + 5 s leeway, accepted.",
            |c, _| c["iat"] = (NOW - 65).into(),
            None,
        ),
        (
            "iat-outside-window-past",
            "proof.iat",
            "iat 66 s ago: one second too old.",
            |c, _| c["iat"] = (NOW - 66).into(),
            Some("outside the accepted window"),
        ),
        (
            "iat-inside-window-future",
            "proof.iat",
            "iat 5 s ahead: inside the leeway.",
            |c, _| c["iat"] = (NOW + 5).into(),
            None,
        ),
        (
            "iat-outside-window-future",
            "proof.iat",
            "iat 6 s ahead: outside the leeway.",
            |c, _| c["iat"] = (NOW + 6).into(),
            Some("outside the accepted window"),
        ),
        ("iat-missing", "proof.iat", "No iat.", |c, _| remove(c, "iat"), Some("outside the accepted window")),
        ("iat-negative", "proof.iat", "iat is -1.", |c, _| c["iat"] = (-1).into(), Some("outside the accepted window")),
        (
            "iat-i64-max",
            "proof.iat",
            "iat is i64::MAX: now - iat would overflow.",
            |c, _| c["iat"] = i64::MAX.into(),
            Some("outside the accepted window"),
        ),
        (
            "iat-i64-min",
            "proof.iat",
            "iat is i64::MIN: now - iat would overflow.",
            |c, _| c["iat"] = i64::MIN.into(),
            Some("outside the accepted window"),
        ),
        ("iat-u64-max", "proof.iat", "iat is u64::MAX.", |c, _| c["iat"] = u64::MAX.into(), Some("proof claims")),
        ("iat-1e300", "proof.iat", "iat is 1e300.", |c, _| c["iat"] = json!(1e300), Some("proof claims")),
        (
            "iat-string",
            "proof.iat",
            "iat is a string of digits.",
            |c, _| c["iat"] = NOW.to_string().into(),
            Some("proof claims"),
        ),
        (
            "iat-fraction",
            "proof.iat",
            "iat has a fraction.",
            |c, _| c["iat"] = json!(NOW as f64 + 0.5),
            Some("proof claims"),
        ),
        ("jti-missing", "proof.jti", "No jti.", |c, _| remove(c, "jti"), Some("proof jti")),
        ("jti-empty", "proof.jti", "jti is the empty string.", |c, _| c["jti"] = "".into(), Some("proof jti")),
        (
            "jti-129-bytes",
            "proof.jti",
            "jti of 129 bytes: over the 128-byte limit.",
            |c, _| c["jti"] = "j".repeat(129).into(),
            Some("proof jti"),
        ),
        (
            "jti-128-bytes",
            "proof.jti",
            "jti of exactly 128 bytes: accepted.",
            |c, _| c["jti"] = "j".repeat(128).into(),
            None,
        ),
        ("jti-number", "proof.jti", "jti is a number.", |c, _| c["jti"] = 12345.into(), Some("proof claims")),
        (
            "ath-missing",
            "proof.ath",
            "No ath although a token is presented.",
            |c, _| remove(c, "ath"),
            Some("ath does not match"),
        ),
        (
            "ath-other-token",
            "proof.ath",
            "ath of another token.",
            |c, _| c["ath"] = sha256_b64("another token").into(),
            Some("ath does not match"),
        ),
        (
            "ath-padded",
            "proof.ath",
            "ath with '=' padding.",
            |c, t| c["ath"] = format!("{}=", sha256_b64(t)).into(),
            Some("ath does not match"),
        ),
        (
            "ath-hex",
            "proof.ath",
            "ath as hex instead of base64url.",
            |c, t| c["ath"] = hex(&openssl::sha::sha256(t.as_bytes())).into(),
            Some("ath does not match"),
        ),
        (
            "ath-of-header-value",
            "proof.ath",
            "ath over \"DPoP <token>\" instead of the token.",
            |c, t| c["ath"] = sha256_b64(format!("DPoP {t}")).into(),
            Some("ath does not match"),
        ),
        (
            "claims-not-object",
            "proof.json",
            "The payload is a JSON array.",
            |c, _| *c = json!(["POST"]),
            Some("proof claims"),
        ),
        (
            "unknown-claim-ignored",
            "proof.json",
            "An extra claim is ignored.",
            |c, _| c["x-note"] = "hello".into(),
            None,
        ),
        (
            "nonce-null",
            "proof.nonce",
            "nonce: null with no nonce required: refused, not read as no nonce.",
            |c, _| c["nonce"] = Value::Null,
            Some("invalid type: null"),
        ),
        ("ath-null", "proof.ath", "ath: null.", |c, _| c["ath"] = Value::Null, Some("invalid type: null")),
        ("htm-null", "proof.htm", "htm: null.", |c, _| c["htm"] = Value::Null, Some("invalid type: null")),
        ("htu-null", "proof.htu", "htu: null.", |c, _| c["htu"] = Value::Null, Some("invalid type: null")),
        ("iat-null", "proof.iat", "iat: null.", |c, _| c["iat"] = Value::Null, Some("invalid type: null")),
        ("jti-null", "proof.jti", "jti: null.", |c, _| c["jti"] = Value::Null, Some("invalid type: null")),
        (
            "claims-65-members",
            "proof.json",
            "Proof claims with 65 members (5 of the proof, 60 unknown ones): more than any object may have.",
            |c, _| {
                for i in 5..65 {
                    c[format!("x{i}")] = 0.into();
                }
            },
            Some("more than 64 members"),
        ),
        (
            "claims-64-members",
            "proof.json",
            "Proof claims with 64 members (5 of the proof, 59 unknown ones, ignored): accepted.",
            |c, _| {
                for i in 5..64 {
                    c[format!("x{i}")] = 0.into();
                }
            },
            None,
        ),
    ];
    for (name, check, description, edit, reject) in edits {
        let mut d = g.draft(FILE, name, check, description);
        let token = token_for(g, &d, client, 1)?;
        let mut claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
        edit(&mut claims, &token);
        let expect = reject.map_or_else(|| accepted(&d, 1, 0), bad_proof);
        d.send(&token, g.proof(client, &claims)?, expect);
        out.push(d.done());
    }

    // --- size and shape ---
    for (name, len) in [("size-exactly-8192", 8192), ("size-8193", 8193)] {
        let mut d = g.draft(FILE, name, "proof.size", &format!("A correct proof padded to {len} bytes."));
        let token = token_for(g, &d, client, 1)?;
        let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
        let proof = g.sized_jws(client, &Gen::proof_header(client), &claims, len)?;
        let expect = if len <= 8192 { accepted(&d, 1, 0) } else { bad_proof("longer than 8192 bytes") };
        d.send(&token, proof, expect);
        out.push(d.done());
    }

    let mut d = g.draft(FILE, "compact-two-parts", "proof.compact", "A proof without its signature part.");
    let token = token_for(g, &d, client, 1)?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    let cut = proof.rsplit_once('.').map(|(a, _)| a.to_owned()).unwrap_or_default();
    d.send(&token, cut, bad_proof("not a compact JWS"));
    out.push(d.done());

    let mut d = g.draft(FILE, "b64-signature-padding", "proof.base64url", "The proof signature carries '=' padding.");
    let token = token_for(g, &d, client, 1)?;
    let proof = g.good_proof(&mut d, client, METHOD, URL, &token, NOW)?;
    let (input, sig) = proof.rsplit_once('.').ok_or_else(|| Error::Invalid("proof".into()))?;
    d.send(&token, format!("{input}.{}", padded(sig)), bad_proof("signature is not canonical base64url"));
    out.push(d.done());

    // --- duplicate members (hand-built JSON) ---
    let jwk_text = client_jwk.to_string();
    let mut d = g.draft(
        FILE,
        "json-duplicate-alg",
        "proof.json",
        "Proof header {\"typ\":…,\"alg\":\"none\",\"jwk\":…,\"alg\":\"ES256\"}, validly signed.",
    );
    let token = token_for(g, &d, client, 1)?;
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"none","jwk":{jwk_text},"alg":"ES256"}}"#);
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    d.send(&token, g.jws_raw(client, &header, &claims.to_string())?, bad_proof("duplicate member"));
    out.push(d.done());

    let mut d = g.draft(FILE, "json-duplicate-in-jwk", "proof.json", "The header's jwk has x twice.");
    let token = token_for(g, &d, client, 1)?;
    let other_x = k.other_client_es256.public_jwk().to_json()["x"].clone();
    let jwk_dup = jwk_text.replacen('{', &format!(r#"{{"x":{other_x},"#), 1);
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk_dup}}}"#);
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    d.send(&token, g.jws_raw(client, &header, &claims.to_string())?, bad_proof("duplicate member"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "json-duplicate-htu",
        "proof.json",
        "The proof payload has htu twice (an attacker's URL first, the right one last).",
    );
    let token = token_for(g, &d, client, 1)?;
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string().replacen(
        '{',
        r#"{"htu":"https://attacker.example/pay","#,
        1,
    );
    let header = Gen::proof_header(client).to_string();
    d.send(&token, g.jws_raw(client, &header, &claims)?, bad_proof("duplicate member"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "json-duplicate-htu-escaped",
        "proof.json",
        "The proof payload has htu twice, the attacker's spelled \"\\u0068tu\": the same name.",
    );
    let token = token_for(g, &d, client, 1)?;
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string().replacen(
        '{',
        r#"{"\u0068tu":"https://attacker.example/pay","#,
        1,
    );
    let header = Gen::proof_header(client).to_string();
    d.send(&token, g.jws_raw(client, &header, &claims)?, bad_proof("duplicate member"));
    out.push(d.done());

    // --- header edits, signed by the client key ---
    type HeaderEdit = fn(&mut Value);
    let header_edits: Vec<(&str, &str, &str, HeaderEdit, Option<&str>)> = vec![
        ("typ-missing", "proof.typ", "No typ.", |h| remove(h, "typ"), Some("typ must be dpop+jwt")),
        ("typ-jwt", "proof.typ", "typ JWT.", |h| h["typ"] = "JWT".into(), Some("typ must be dpop+jwt")),
        (
            "typ-ekey-jwt",
            "proof.typ",
            "typ ekey+jwt (an access token's type).",
            |h| h["typ"] = "ekey+jwt".into(),
            Some("typ must be dpop+jwt"),
        ),
        (
            "typ-application-prefix",
            "proof.typ",
            "typ application/dpop+jwt: the same media type, accepted.",
            |h| h["typ"] = "application/dpop+jwt".into(),
            None,
        ),
        (
            "alg-none-with-signature",
            "proof.alg",
            "alg none (a valid ES256 signature attached).",
            |h| h["alg"] = "none".into(),
            Some("proof alg not allowed"),
        ),
        (
            "jwk-missing",
            "proof.jwk",
            "No jwk (a kid instead).",
            |h| {
                remove(h, "jwk");
                h["kid"] = "client-key".into();
            },
            Some("proof jwk"),
        ),
        (
            "jwk-alg-member-mismatch",
            "proof.jwk",
            "The P-256 jwk says alg ES384.",
            |h| h["jwk"]["alg"] = "ES384".into(),
            Some("proof jwk"),
        ),
        ("jwk-use-enc", "proof.jwk", "The jwk says use enc.", |h| h["jwk"]["use"] = "enc".into(), Some("proof jwk")),
        ("crit", "proof.crit", "crit [\"htu\"] in the proof header.", |h| h["crit"] = json!(["htu"]), Some("crit")),
        (
            "crit-null",
            "proof.crit",
            "crit: null in the proof header: refused, not read as no crit.",
            |h| h["crit"] = Value::Null,
            Some("invalid type: null"),
        ),
        (
            "b64-null",
            "proof.header",
            "b64: null in the proof header: refused, not read as no b64.",
            |h| h["b64"] = Value::Null,
            Some("invalid type: null"),
        ),
        (
            "jwk-null",
            "proof.jwk",
            "jwk: null (a kid instead): refused as malformed, not read as a missing jwk.",
            |h| {
                h["jwk"] = Value::Null;
                h["kid"] = "client-key".into();
            },
            Some("invalid type: null"),
        ),
        (
            "jwk-65-members",
            "proof.jwk",
            "The header's jwk has 65 members (its own 4 and 61 unknown ones).",
            |h| {
                for i in 4..65 {
                    h["jwk"][format!("x{i}")] = 0.into();
                }
            },
            Some("more than 64 members"),
        ),
        (
            "header-jku",
            "proof.header",
            "A jku in the proof header.",
            |h| h["jku"] = "https://attacker.example/jwks.json".into(),
            Some("is not allowed"),
        ),
        (
            "header-x5c",
            "proof.header",
            "An x5c in the proof header.",
            |h| h["x5c"] = json!(["MIIB"]),
            Some("is not allowed"),
        ),
    ];
    for (name, check, description, edit, reject) in header_edits {
        let mut d = g.draft(FILE, name, check, description);
        let token = token_for(g, &d, client, 1)?;
        let mut header = Gen::proof_header(client);
        edit(&mut header);
        let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
        let expect = reject.map_or_else(|| accepted(&d, 1, 0), bad_proof);
        d.send(&token, g.jws(client, &header, &claims)?, expect);
        out.push(d.done());
    }

    let mut d =
        g.draft(FILE, "jwk-private-d", "proof.jwk", "The jwk includes the private scalar d (of this TEST-ONLY key).");
    let token = token_for(g, &d, client, 1)?;
    let mut header = Gen::proof_header(client);
    header["jwk"]["d"] = private_scalar(client)?.into();
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    d.send(&token, g.jws(client, &header, &claims)?, bad_proof("private key material"));
    out.push(d.done());

    let mut d =
        g.draft(FILE, "typ-access-token-as-proof", "proof.typ", "The access token itself sent as the DPoP proof.");
    let token = token_for(g, &d, client, 1)?;
    d.send(&token.clone(), token, bad_proof("typ must be dpop+jwt"));
    out.push(d.done());

    // --- alg, with real signatures ---
    let mut d =
        g.draft(FILE, "alg-hs256-jwk-as-secret", "proof.alg", "HS256 keyed with the public jwk the header carries.");
    let token = token_for(g, &d, client, 1)?;
    let mut header = Gen::proof_header(client);
    header["alg"] = "HS256".into();
    let input =
        signing_input(&header.to_string(), &Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string());
    let proof = compact(&input, &jws::hmac_sha256(jwk_text.as_bytes(), input.as_bytes())?);
    d.send(&token, proof, bad_proof("proof alg not allowed"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "alg-rs256-not-allowed",
        "proof.alg",
        "A valid RS256 proof by an RSA 2048 key the token is bound to: RS256 is not in the allow-list.",
    );
    let rsa = &k.client_rsa;
    let token = token_for(g, &d, rsa, 1)?;
    let mut header = Gen::proof_header(rsa);
    header["alg"] = "RS256".into();
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    d.send(&token, g.jws(rsa, &header, &claims)?, bad_proof("proof alg not allowed"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "alg-not-in-configured-list",
        "proof.alg",
        "A valid EdDSA proof when the settings allow only ES256 proofs.",
    );
    d.case.settings.dpop_algorithms = vec!["ES256".into()];
    let eddsa = &k.client_eddsa;
    let token = token_for(g, &d, eddsa, 1)?;
    let proof = g.good_proof(&mut d, eddsa, METHOD, URL, &token, NOW)?;
    d.send(&token, proof, bad_proof("proof alg not allowed"));
    out.push(d.done());

    // --- jwk: symmetric, wrong curve, unsupported, weak, invalid points ---
    for (name, description, jwk, expect) in [
        (
            "jwk-oct-with-k",
            "An oct (symmetric) jwk with its secret k.",
            json!({"kty": "oct", "k": b64_encode(b"a shared secret of 32 bytes!!!!!")}),
            bad_proof("private key material"),
        ),
        ("jwk-oct-without-k", "An oct jwk without k.", json!({"kty": "oct"}), bad_proof("symmetric")),
        (
            "jwk-x25519",
            "An X25519 (key agreement) jwk with alg EdDSA.",
            json!({"kty": "OKP", "crv": "X25519", "x": k.client_eddsa.public_jwk().to_json()["x"]}),
            bad_proof("unsupported key"),
        ),
        (
            "jwk-p521",
            "A P-521 jwk (not supported).",
            json!({"kty": "EC", "crv": "P-521", "x": client_jwk["x"], "y": client_jwk["y"]}),
            bad_proof("unsupported key"),
        ),
    ] {
        let mut d = g.draft(FILE, name, "proof.jwk", description);
        let token = token_for(g, &d, client, 1)?;
        let mut header = Gen::proof_header(client);
        header["jwk"] = jwk;
        let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
        d.send(&token, g.jws(client, &header, &claims)?, expect);
        out.push(d.done());
    }

    // The token is bound to the odd key itself, so only the key check can refuse.
    for (name, description, signer, header_alg) in [
        (
            "jwk-wrong-curve-for-alg",
            "alg ES256 with a P-384 jwk (signed with that key; the token is bound to it).",
            &k.client_es384,
            "ES256",
        ),
        (
            "jwk-okp-with-es256",
            "alg ES256 with an Ed25519 jwk (signed with that key; the token is bound to it).",
            &k.client_eddsa,
            "ES256",
        ),
    ] {
        let mut d = g.draft(FILE, name, "proof.jwk", description);
        let token = token_for(g, &d, signer, 1)?;
        let mut header = Gen::proof_header(signer);
        header["alg"] = header_alg.into();
        let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
        d.send(&token, g.jws(signer, &header, &claims)?, bad_proof("proof jwk"));
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "jwk-rsa-1024",
        "proof.jwk",
        "A PS256 proof by a 1024-bit RSA key (the token is bound to it): too weak.",
    );
    let weak_jwk = crate::keys::rsa_public_json(&k.weak_rsa1024)?;
    let token = token_bound(g, &d, json!({"jkt": jws::thumbprint(&weak_jwk)?}), 1)?;
    let header = json!({"typ": "dpop+jwt", "alg": "PS256", "jwk": weak_jwk});
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    let input = signing_input(&header.to_string(), &claims.to_string());
    let weak = &k.weak_rsa1024;
    let sig = match g.reused(&input, |sig| crate::keys::rsa_verify(weak, Algorithm::PS256, input.as_bytes(), sig)) {
        Some(sig) => sig,
        None => crate::keys::rsa_sign(weak, Algorithm::PS256, input.as_bytes())?,
    };
    d.send(&token, compact(&input, &sig), bad_proof("proof jwk"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "jwk-point-not-on-curve",
        "proof.jwk",
        "A P-256 jwk whose point is not on the curve (invalid-curve attack); the token is bound to it.",
    );
    let mut bad_jwk = client_jwk.clone();
    let y = bad_jwk["y"].as_str().unwrap_or_default().to_owned();
    let mut y_bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &y)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(last) = y_bytes.last_mut() {
        *last ^= 1;
    }
    bad_jwk["y"] = b64_encode(&y_bytes).into();
    let token = token_bound(g, &d, json!({"jkt": jws::thumbprint(&bad_jwk)?}), 1)?;
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": bad_jwk});
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    d.send(&token, g.jws(client, &header, &claims)?, bad_proof_unspecified());
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "jwk-ed25519-small-order",
        "proof.jwk",
        "An Ed25519 jwk that is the identity point, with the signature R = identity, S = 0, which satisfies \
         the cofactorless equation for every message: anyone can make such a proof, so it proves nothing. \
         The token is bound to this key.",
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = json!({"kty": "OKP", "crv": "Ed25519", "x": b64_encode(identity)});
    let token = token_bound(g, &d, json!({"jkt": jws::thumbprint(&weak)?}), 1)?;
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": weak});
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let proof = compact(&signing_input(&header.to_string(), &claims.to_string()), &sig);
    d.send(&token, proof, bad_proof_unspecified());
    out.push(d.done());

    // --- signature ---
    let mut d = g.draft(
        FILE,
        "sig-other-key",
        "proof.signature",
        "The header carries the bound key's jwk, but another key signed.",
    );
    let token = token_for(g, &d, client, 1)?;
    let input = signing_input(
        &Gen::proof_header(client).to_string(),
        &Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string(),
    );
    let sig = g.sign(&k.other_client_es256, Algorithm::ES256, &input)?;
    d.send(&token, compact(&input, &sig), bad_proof("proof signature invalid"));
    out.push(d.done());

    for (name, description, fault) in [
        ("sig-der", "The proof's ES256 signature in DER instead of r‖s.", 0),
        ("sig-zero", "The proof's ES256 signature is r = s = 0.", 1),
    ] {
        let mut d = g.draft(FILE, name, "proof.signature", description);
        let token = token_for(g, &d, client, 1)?;
        let input = signing_input(
            &Gen::proof_header(client).to_string(),
            &Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string(),
        );
        let sig = g.sign(client, Algorithm::ES256, &input)?;
        let bad = if fault == 0 { jws::ecdsa_der(&sig)? } else { vec![0; 64] };
        d.send(&token, compact(&input, &bad), bad_proof("proof signature invalid"));
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "sig-eddsa-s-plus-l",
        "proof.signature",
        "An Ed25519 proof signature with S + L (RFC 8032 §5.1.7 requires S < L).",
    );
    let token = token_for(g, &d, eddsa, 1)?;
    let input = signing_input(
        &Gen::proof_header(eddsa).to_string(),
        &Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string(),
    );
    let sig = jws::ed25519_s_plus_l(&g.sign(eddsa, Algorithm::EdDSA, &input)?)?;
    d.send(&token, compact(&input, &sig), bad_proof("proof signature invalid"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "sig-tampered-claims",
        "proof.signature",
        "limit 2: a proof is accepted; the same proof with a new jti and the old signature is refused.",
    );
    let token = token_for(g, &d, client, 2)?;
    let claims = Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW);
    let proof = g.proof(client, &claims)?;
    d.send(&token, proof.clone(), accepted(&d, 1, 1));
    let mut changed = claims.clone();
    changed["jti"] = d.jti().into();
    let sig = proof.rsplit_once('.').map(|(_, s)| s.to_owned()).unwrap_or_default();
    let tampered = format!("{}.{sig}", signing_input(&Gen::proof_header(client).to_string(), &changed.to_string()));
    d.send(&token, tampered, bad_proof("proof signature invalid"));
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "sig-high-s-twin",
        "proof.signature",
        "limit 5: a proof is accepted; its malleated twin r‖(n−s) is refused (as a replay of the same jti, \
         or as a non-canonical signature).",
    );
    let token = token_for(g, &d, client, 5)?;
    let input = signing_input(
        &Gen::proof_header(client).to_string(),
        &Gen::proof_claims(&d.jti(), METHOD, URL, Some(&token), NOW).to_string(),
    );
    let sig = g.sign(client, Algorithm::ES256, &input)?;
    d.send(&token, compact(&input, &sig), accepted(&d, 1, 4));
    d.send(&token, compact(&input, &jws::ecdsa_high_s_twin(&sig)?), any_bad_proof());
    out.push(d.done());

    // --- binding to cnf.jkt ---
    let mut d = g.draft(
        FILE,
        "jkt-other-key",
        "proof.jkt",
        "A correct proof made with another client's key (as a thief holding the token would).",
    );
    let token = token_for(g, &d, client, 1)?;
    let proof = g.good_proof(&mut d, &k.other_client_es256, METHOD, URL, &token, NOW)?;
    d.send(&token, proof, bad_proof("does not match the token"));
    out.push(d.done());

    Ok(out)
}

fn remove(c: &mut Value, name: &str) {
    if let Some(o) = c.as_object_mut() {
        o.remove(name);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The private scalar `d` of an EC key, base64url (for the "private jwk" case).
fn private_scalar(key: &SigningKey) -> Result<String, Error> {
    let SigningKey::Local(kp) = key else {
        return Err(Error::Key("not an EC key".into()));
    };
    let ec = openssl::pkey::PKey::private_key_from_pem(kp.to_pem())?.ec_key()?;
    Ok(b64_encode(ec.private_key().to_vec_padded(32)?))
}
