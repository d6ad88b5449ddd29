//! `token-format.json`: size, compact shape, base64url, JSON and header of the
//! access token, and its signature encoding.

use super::fixture::{accepted, any_bad_token, bad_token, Gen};
use crate::format::Case;
use crate::jws::{self, compact, padded, signing_input};
use crate::Error;
use ekey_verifier::{b64_encode, Algorithm};
use serde_json::{json, Value};

const FILE: &str = "token-format";
pub(crate) const DESCRIPTION: &str =
    "The access token as a compact JWS: size limit, shape, canonical base64url, duplicate JSON members, \
     JSON limits (64 members per object, 16 levels), header (alg allow-list, typ, kid, forbidden key headers, \
     crit, null members) and signature encodings.";

pub(crate) fn cases(g: &Gen) -> Result<Vec<Case>, Error> {
    let mut out = Vec::new();
    let k = g.keys;
    let issuer = &k.issuer_es256;
    let kid = issuer.thumbprint().to_owned();
    let std_header = Gen::token_header(issuer).to_string();

    // --- size ---
    let mut d = g.draft(FILE, "size-exactly-8192", "token.size", "A token of exactly 8192 bytes is accepted.");
    let token = g.sized_jws(issuer, &Gen::token_header(issuer), &g.default_claims(&d), 8192)?;
    d.present(g, &token, accepted(&d, 1, 0))?;
    out.push(d.done());

    let mut d =
        g.draft(FILE, "size-8193", "token.size", "A validly signed token of 8193 bytes is refused before parsing.");
    let token = g.sized_jws(issuer, &Gen::token_header(issuer), &g.default_claims(&d), 8193)?;
    d.present(g, &token, bad_token("longer than 8192 bytes"))?;
    out.push(d.done());

    // --- compact shape ---
    for (name, description, make) in [
        ("compact-two-parts", "Only header.payload, no signature part.", 0),
        ("compact-four-parts", "A fourth part after the signature.", 1),
        ("compact-empty-signature", "header.payload. with an empty signature.", 2),
    ] {
        let mut d = g.draft(FILE, name, "token.compact", description);
        let t = g.token(issuer, &g.default_claims(&d))?;
        let (input, sig) = t.rsplit_once('.').ok_or_else(|| Error::Invalid("token".into()))?;
        let token = match make {
            0 => input.to_owned(),
            1 => format!("{t}.{sig}"),
            _ => format!("{input}."),
        };
        d.present(g, &token, bad_token("not a compact JWS"))?;
        out.push(d.done());
    }

    // --- base64url ---
    let mut d = g.draft(
        FILE,
        "b64-header-padding",
        "token.base64url",
        "The header part carries '=' padding; the signature is valid over the padded text.",
    );
    let header = if b64_encode(&std_header).len().is_multiple_of(4) {
        format!("{{ {}", &std_header[1..])
    } else {
        std_header.clone()
    };
    let input = format!("{}.{}", padded(&b64_encode(&header)), b64_encode(g.default_claims(&d).to_string()));
    let token = compact(&input, &g.sign(issuer, Algorithm::ES256, &input)?);
    d.present(g, &token, bad_token("header is not canonical base64url"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "b64-payload-padding",
        "token.base64url",
        "The payload part carries '=' padding; the signature is valid over the padded text.",
    );
    let claims = padded_friendly(g.default_claims(&d), |p| p.len() % 4 != 0);
    let input = format!("{}.{}", b64_encode(&std_header), padded(&b64_encode(claims.to_string())));
    let token = compact(&input, &g.sign(issuer, Algorithm::ES256, &input)?);
    d.present(g, &token, bad_token("payload is not canonical base64url"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "b64-payload-trailing-bits",
        "token.base64url",
        "The payload's last character has non-zero unused bits (decodes leniently to the same JSON); \
         the signature is valid over that text.",
    );
    let claims = padded_friendly(g.default_claims(&d), |p| p.len() % 4 != 0);
    let payload = jws::with_trailing_bits(&b64_encode(claims.to_string()))
        .ok_or_else(|| Error::Invalid("payload length".into()))?;
    let input = format!("{}.{payload}", b64_encode(&std_header));
    let token = compact(&input, &g.sign(issuer, Algorithm::ES256, &input)?);
    d.present(g, &token, bad_token("payload is not canonical base64url"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "b64-payload-standard-alphabet",
        "token.base64url",
        "The payload uses the standard alphabet ('+', '/'); the signature is valid over that text.",
    );
    let claims = padded_friendly(g.default_claims(&d), |p| p.contains(['-', '_']));
    let payload = jws::standard_alphabet(&b64_encode(claims.to_string()))
        .ok_or_else(|| Error::Invalid("payload alphabet".into()))?;
    let input = format!("{}.{payload}", b64_encode(&std_header));
    let token = compact(&input, &g.sign(issuer, Algorithm::ES256, &input)?);
    d.present(g, &token, bad_token("payload is not canonical base64url"))?;
    out.push(d.done());

    for (name, description, fault) in [
        ("b64-signature-padding", "The signature part carries '=' padding.", 0),
        ("b64-signature-trailing-bits", "The signature's last character has non-zero unused bits.", 1),
        ("b64-signature-standard-alphabet", "The signature uses the standard alphabet ('+', '/').", 2),
    ] {
        let mut d = g.draft(FILE, name, "token.base64url", description);
        let input = signing_input(&std_header, &g.default_claims(&d).to_string());
        let sig = g.sign_where(issuer, Algorithm::ES256, &input, |s| b64_encode(s).contains(['-', '_']))?;
        let sig = b64_encode(sig);
        let sig = match fault {
            0 => Some(padded(&sig)),
            1 => jws::with_trailing_bits(&sig),
            _ => jws::standard_alphabet(&sig),
        }
        .ok_or_else(|| Error::Invalid("signature encoding".into()))?;
        d.present(g, &format!("{input}.{sig}"), bad_token("signature is not canonical base64url"))?;
        out.push(d.done());
    }

    // --- JSON ---
    let dup_headers = [
        (
            "json-duplicate-alg",
            "Header {\"alg\":\"none\",\"alg\":\"ES256\",…}: last-wins parsers read ES256 and accept.",
            format!(r#"{{"alg":"none","alg":"ES256","typ":"ekey+jwt","kid":"{kid}"}}"#),
        ),
        (
            "json-duplicate-alg-escaped",
            "The second alg is spelled \"\\u0061lg\": still the same member name.",
            format!(r#"{{"alg":"none","\u0061lg":"ES256","typ":"ekey+jwt","kid":"{kid}"}}"#),
        ),
        (
            "json-duplicate-kid",
            "Two kid members in the header.",
            format!(r#"{{"alg":"ES256","typ":"ekey+jwt","kid":"unknown","kid":"{kid}"}}"#),
        ),
    ];
    for (name, description, header) in dup_headers {
        let mut d = g.draft(FILE, name, "token.json", description);
        let token = g.jws_raw(issuer, &header, &g.default_claims(&d).to_string())?;
        d.present(g, &token, bad_token("duplicate member"))?;
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "json-duplicate-claim-aud",
        "token.json",
        "Payload with aud twice (another API first, ours last), validly signed.",
    );
    let claims = g.default_claims(&d).to_string().replacen('{', r#"{"aud":"https://other-api.example.com","#, 1);
    let token = g.jws_raw(issuer, &std_header, &claims)?;
    d.present(g, &token, bad_token("duplicate member"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "json-duplicate-claim-nested",
        "token.json",
        "cap.action twice inside the cap object, validly signed.",
    );
    let claims =
        g.default_claims(&d).to_string().replacen(r#""cap":{"#, r#""cap":{"action":"DELETE:/payments/:id","#, 1);
    let token = g.jws_raw(issuer, &std_header, &claims)?;
    d.present(g, &token, bad_token("duplicate member"))?;
    out.push(d.done());

    for (name, description, header) in [
        ("json-header-array", "The header is a JSON array.", r#"["ES256"]"#.to_owned()),
        ("json-header-trailing-data", "The header object is followed by more text.", format!("{std_header} {{}}")),
        (
            "json-header-deep-nesting",
            "A header member nested 2000 arrays deep: refused, no stack overflow.",
            format!(
                r#"{{"alg":"ES256","typ":"ekey+jwt","kid":"{kid}","x":{}0{}}}"#,
                "[".repeat(2000),
                "]".repeat(2000)
            ),
        ),
    ] {
        let mut d = g.draft(FILE, name, "token.json", description);
        let token = g.jws_raw(issuer, &header, &g.default_claims(&d).to_string())?;
        d.present(g, &token, bad_token("header"))?;
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "json-duplicate-claim-escaped-nested",
        "token.json",
        "cap has \"action\" and \"\\u0061ction\" (the same name, escaped), validly signed.",
    );
    let claims =
        g.default_claims(&d).to_string().replacen(r#""cap":{"#, r#""cap":{"\u0061ction":"DELETE:/payments/:id","#, 1);
    let token = g.jws_raw(issuer, &std_header, &claims)?;
    d.present(g, &token, bad_token("duplicate member"))?;
    out.push(d.done());

    // --- JSON limits: 64 members per object, 16 levels ---
    for (name, description, members, expect) in [
        (
            "json-header-64-members",
            "A header of 64 members (61 unknown ones, ignored): the most one object may have, accepted.",
            64,
            None,
        ),
        (
            "json-header-65-members",
            "A header of 65 members: refused before any member is read.",
            65,
            Some("more than 64 members"),
        ),
    ] {
        let mut d = g.draft(FILE, name, "token.json", description);
        let mut header = Gen::token_header(issuer);
        for i in 3..members {
            header[format!("x{i}")] = 0.into();
        }
        let token = g.jws(issuer, &header, &g.default_claims(&d))?;
        d.present(g, &token, expect.map_or_else(|| accepted(&d, 1, 0), bad_token))?;
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "json-claims-65-members",
        "token.json",
        "Validly signed claims with 65 members (the token's own 10 and 55 unknown ones).",
    );
    let mut claims = g.default_claims(&d);
    for i in 10..65 {
        claims[format!("x{i}")] = 0.into();
    }
    d.present_claims(g, &claims, bad_token("more than 64 members"))?;
    out.push(d.done());

    for (name, levels, expect) in
        [("json-claims-depth-16", 16, None), ("json-claims-depth-17", 17, Some("nested deeper"))]
    {
        let mut d = g.draft(
            FILE,
            name,
            "token.json",
            &format!(
                "Validly signed claims nested {levels} levels deep (an unknown claim of arrays): at most 16 levels{}.",
                if expect.is_none() { ", accepted" } else { "" }
            ),
        );
        let claims = g.default_claims(&d).to_string().replacen(
            '{',
            &format!(r#"{{"x":{}0{},"#, "[".repeat(levels - 1), "]".repeat(levels - 1)),
            1,
        );
        let token = g.jws_raw(issuer, &std_header, &claims)?;
        d.present(g, &token, expect.map_or_else(|| accepted(&d, 1, 0), bad_token))?;
        out.push(d.done());
    }

    let mut d = g.draft(FILE, "json-payload-not-json", "token.json", "A validly signed payload that is not JSON.");
    let token = g.jws_raw(issuer, &std_header, "this is not JSON")?;
    d.present(g, &token, bad_token("claims"))?;
    out.push(d.done());

    // --- alg ---
    let claims_for = |d: &super::fixture::Draft| g.default_claims(d).to_string();
    let mut d = g.draft(FILE, "alg-none-empty-signature", "token.alg", "alg none with an empty signature part.");
    let input = signing_input(&format!(r#"{{"alg":"none","typ":"ekey+jwt","kid":"{kid}"}}"#), &claims_for(&d));
    d.present(g, &format!("{input}."), bad_token("not a compact JWS"))?;
    out.push(d.done());

    for (name, alg) in [("alg-none-with-signature", "none"), ("alg-none-upper-case", "NONE")] {
        let mut d = g.draft(
            FILE,
            name,
            "token.alg",
            &format!("alg {alg:?} with a (valid ES256) signature attached: not in the allow-list."),
        );
        let header = format!(r#"{{"alg":"{alg}","typ":"ekey+jwt","kid":"{kid}"}}"#);
        let token = g.jws_raw(issuer, &header, &claims_for(&d))?;
        d.present(g, &token, bad_token("token alg not allowed"))?;
        out.push(d.done());
    }

    let published = Gen::jwk_entry(issuer, Algorithm::ES256).to_string();
    for (name, description, secret) in [
        (
            "alg-hs256-public-jwk-as-secret",
            "HS256 keyed with the issuer's public JWK (as published in the JWKS): the key-confusion attack.",
            published.into_bytes(),
        ),
        (
            "alg-hs256-public-pem-as-secret",
            "HS256 keyed with the issuer's public key PEM (SubjectPublicKeyInfo): the key-confusion attack.",
            issuer.public_pem()?,
        ),
    ] {
        let mut d = g.draft(FILE, name, "token.alg", description);
        let input = signing_input(&format!(r#"{{"alg":"HS256","typ":"ekey+jwt","kid":"{kid}"}}"#), &claims_for(&d));
        let token = compact(&input, &jws::hmac_sha256(&secret, input.as_bytes())?);
        d.present(g, &token, bad_token("token alg not allowed"))?;
        out.push(d.done());
    }

    let mut d = g.draft(
        FILE,
        "alg-rs256-not-allowed",
        "token.alg",
        "RS256 token, validly signed by an RSA key the JWKS publishes for RS256; RS256 is not in the allow-list.",
    );
    let rsa = &k.issuer_rsa;
    d.case.jwks = json!({"keys": [Gen::jwk_entry(rsa, Algorithm::RS256)]});
    let header = json!({"alg": "RS256", "typ": "ekey+jwt", "kid": rsa.thumbprint()});
    let token = g.jws(rsa, &header, &g.default_claims(&d))?;
    d.present(g, &token, bad_token("token alg not allowed"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "alg-not-in-configured-list",
        "token.alg",
        "A valid EdDSA token when the settings allow only ES256.",
    );
    d.case.settings.token_algorithms = vec!["ES256".into()];
    let token = g.token(&k.issuer_eddsa, &g.default_claims(&d))?;
    d.present(g, &token, bad_token("token alg not allowed"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "alg-key-mismatch",
        "token.alg",
        "Header says ES384 with the kid of the issuer's P-256 key (signature made with that key).",
    );
    let header = json!({"alg": "ES384", "typ": "ekey+jwt", "kid": kid});
    let token = g.jws(issuer, &header, &g.default_claims(&d))?;
    d.present(g, &token, bad_token("unknown signing key"))?;
    out.push(d.done());

    // --- typ ---
    for (name, typ, ok) in [
        ("typ-missing", None, false),
        ("typ-jwt", Some("JWT"), false),
        ("typ-at-jwt", Some("at+jwt"), false),
        ("typ-dpop-jwt", Some("dpop+jwt"), false),
        ("typ-application-prefix-upper-case", Some("application/EKEY+JWT"), true),
    ] {
        let description = match (typ, ok) {
            (None, _) => "No typ header: explicit typing is required.".to_owned(),
            (Some(t), false) => format!("typ {t:?} instead of ekey+jwt."),
            (Some(t), true) => format!("typ {t:?}: the same media type (RFC 7515 §4.1.9), accepted."),
        };
        let mut d = g.draft(FILE, name, "token.typ", &description);
        let mut header = json!({"alg": "ES256", "kid": kid});
        if let Some(t) = typ {
            header["typ"] = t.into();
        }
        let token = g.jws(issuer, &header, &g.default_claims(&d))?;
        let expect = if ok { accepted(&d, 1, 0) } else { bad_token("typ must be ekey+jwt") };
        d.present(g, &token, expect)?;
        out.push(d.done());
    }

    // --- kid ---
    let mut d = g.draft(FILE, "kid-unknown", "token.kid", "A kid the JWKS does not have.");
    let token =
        g.jws(issuer, &json!({"alg": "ES256", "typ": "ekey+jwt", "kid": "no-such-key"}), &g.default_claims(&d))?;
    d.present(g, &token, bad_token("unknown signing key"))?;
    out.push(d.done());

    let mut d = g.draft(FILE, "kid-missing", "token.kid", "No kid header.");
    let token = g.jws(issuer, &json!({"alg": "ES256", "typ": "ekey+jwt"}), &g.default_claims(&d))?;
    d.present(g, &token, bad_token("unknown signing key"))?;
    out.push(d.done());

    // --- key-carrying headers ---
    let rogue = &k.rogue_es256;
    let cert = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &k.client_cert);
    for (name, description, member, value) in [
        (
            "header-jwk",
            "A token signed by an unknown key that carries its own public key in jwk (and its kid).",
            "jwk",
            rogue.public_jwk().to_json(),
        ),
        ("header-jku", "A jku pointing at an attacker's JWKS.", "jku", json!("https://attacker.example/jwks.json")),
        (
            "header-x5u",
            "An x5u pointing at an attacker's certificate.",
            "x5u",
            json!("https://attacker.example/cert.pem"),
        ),
        ("header-x5c", "An x5c certificate chain in the header.", "x5c", json!([cert])),
    ] {
        let mut d = g.draft(FILE, name, "token.header", description);
        let mut header = Gen::token_header(rogue);
        header[member] = value;
        let token = g.jws(rogue, &header, &g.default_claims(&d))?;
        d.present(g, &token, bad_token("is not allowed"))?;
        out.push(d.done());
    }

    // --- null is not absence ---
    for member in ["crit", "b64", "jwk", "jku", "x5c"] {
        let mut d = g.draft(
            FILE,
            &format!("header-{member}-null"),
            "token.header",
            &format!("{member}: null in the header of a validly signed token: refused, not read as no {member}."),
        );
        let mut header = Gen::token_header(issuer);
        header[member] = Value::Null;
        let token = g.jws(issuer, &header, &g.default_claims(&d))?;
        d.present(g, &token, bad_token("invalid type: null"))?;
        out.push(d.done());
    }

    // --- crit ---
    for (name, crit) in [
        ("crit-exp", json!(["exp"])),
        ("crit-string", json!("x")),
        ("crit-empty", json!([])),
        ("crit-number", json!([1])),
    ] {
        let mut d = g.draft(
            FILE,
            name,
            "token.crit",
            &format!("crit {crit}: no extension is understood, and malformed crit is refused too."),
        );
        let mut header = Gen::token_header(issuer);
        header["crit"] = crit;
        let token = g.jws(issuer, &header, &g.default_claims(&d))?;
        d.present(g, &token, bad_token("crit"))?;
        out.push(d.done());
    }

    // --- signature ---
    let sig_cases: [(&str, &str, u8); 5] = [
        ("sig-der-es256", "ES256 signature in ASN.1 DER (as KMS returns it) instead of r‖s.", 0),
        ("sig-der-es384", "ES384 signature in ASN.1 DER instead of r‖s.", 1),
        ("sig-zero", "ES256 signature r = s = 0.", 2),
        ("sig-order", "ES256 signature r = s = n (the group order).", 3),
        ("sig-truncated", "Ed25519 signature missing its last byte.", 4),
    ];
    for (name, description, fault) in sig_cases {
        let mut d = g.draft(FILE, name, "token.signature", description);
        let key = match fault {
            1 => &k.issuer_es384,
            4 => &k.issuer_eddsa,
            _ => issuer,
        };
        let input = signing_input(&Gen::token_header(key).to_string(), &g.default_claims(&d).to_string());
        let sig = g.sign(key, key.algorithm(), &input)?;
        let bad = match fault {
            0 | 1 => jws::ecdsa_der(&sig)?,
            2 => vec![0; 64],
            3 => jws::ecdsa_order_signature(64)?,
            _ => sig[..63].to_vec(),
        };
        d.present(g, &compact(&input, &bad), bad_token("token signature invalid"))?;
        out.push(d.done());
    }

    let mut d = g.draft(FILE, "sig-rogue-key", "token.signature", "The issuer's kid, but signed by another key.");
    let input = signing_input(&std_header, &g.default_claims(&d).to_string());
    let token = compact(&input, &g.sign(rogue, Algorithm::ES256, &input)?);
    d.present(g, &token, bad_token("token signature invalid"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "sig-eddsa-s-plus-l",
        "token.signature",
        "Ed25519 signature with S + L: satisfies the equation, but RFC 8032 §5.1.7 requires S < L.",
    );
    let eddsa = &k.issuer_eddsa;
    let input = signing_input(&Gen::token_header(eddsa).to_string(), &g.default_claims(&d).to_string());
    let sig = jws::ed25519_s_plus_l(&g.sign(eddsa, Algorithm::EdDSA, &input)?)?;
    d.present(g, &compact(&input, &sig), bad_token("token signature invalid"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "sig-tampered-payload",
        "token.signature",
        "The client raises cap.limit in its own token and keeps the signature.",
    );
    let claims = g.default_claims(&d);
    let token = g.token(issuer, &claims)?;
    d.present(g, &token, accepted(&d, 1, 0))?;
    let mut more = claims.clone();
    more["cap"]["limit"] = 1000.into();
    let (_, sig) = token.rsplit_once('.').ok_or_else(|| Error::Invalid("token".into()))?;
    let tampered = format!("{}.{sig}", signing_input(&std_header, &more.to_string()));
    d.present(g, &tampered, bad_token("token signature invalid"))?;
    out.push(d.done());

    let mut d = g.draft(
        FILE,
        "sig-high-s-twin",
        "token.signature",
        "The malleated twin r‖(n−s) of a spent token's signature, with a fresh proof: the same token as another \
         string must not get another use (refused as spent, or as a non-canonical signature).",
    );
    let input = signing_input(&std_header, &g.default_claims(&d).to_string());
    let sig = g.sign(issuer, Algorithm::ES256, &input)?;
    d.present(g, &compact(&input, &sig), accepted(&d, 1, 0))?;
    d.present(g, &compact(&input, &jws::ecdsa_high_s_twin(&sig)?), any_bad_token())?;
    out.push(d.done());

    Ok(out)
}

/// Adds a `pad` claim of 0–3 characters until the payload's encoding has the
/// property a base64url case needs.
fn padded_friendly(mut claims: Value, want: impl Fn(&str) -> bool) -> Value {
    for n in 0..12 {
        claims["pad"] = "~".repeat(n).into();
        if want(&b64_encode(claims.to_string())) {
            break;
        }
    }
    claims
}
