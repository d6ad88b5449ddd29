//! The common ground of every case: fixed time and names, the default token,
//! proof and settings, signing (with signature reuse), and expectations.

use crate::format::{Case, Expect, Request, Revoke, Settings, Step};
use crate::jws;
use crate::keys::{SigningKey, TestKeys};
use crate::reuse::SignatureReuse;
use crate::Error;
use ekey_verifier::{b64_encode, Algorithm};
use serde_json::{json, Value};

/// The verifier's clock in every case unless a step moves it: 2026-01-01T00:00:00Z.
pub(crate) const NOW: i64 = 1_767_225_600;
pub(crate) const ISSUER: &str = "https://issuer.example.com";
pub(crate) const AUDIENCE: &str = "https://api.example.com";
pub(crate) const URL: &str = "https://api.example.com/payments/42";
pub(crate) const METHOD: &str = "POST";
pub(crate) const ACTION: &str = "POST:/payments/:id";
pub(crate) const SUBCAP: &str = "GET:/payments/:id";
pub(crate) const SUB: &str = "spiffe://example.org/ns/shop/sa/payments-worker";
/// Default token times: issued 10 s ago, lives 60 s.
pub(crate) const IAT: i64 = NOW - 10;
pub(crate) const EXP: i64 = IAT + 60;

/// An id of 128 bits derived from `seed`: stable across regenerations.
pub(crate) fn derive_id(seed: &str) -> String {
    b64_encode(&openssl::sha::sha256(seed.as_bytes())[..16])
}

/// The settings every case starts from: the verifier's defaults, spelled out.
pub(crate) fn default_settings() -> Settings {
    let algs = || ["ES256", "ES384", "EdDSA", "PS256"].map(String::from).to_vec();
    Settings {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        token_algorithms: algs(),
        leeway: 5,
        max_ttl: 300,
        max_token_len: 8192,
        dpop_algorithms: algs(),
        dpop_max_age: 60,
        dpop_leeway: 5,
        max_proof_len: 8192,
        max_jti_len: 128,
        nonce: None,
    }
}

/// `{"jkt": <thumbprint>}`.
pub(crate) fn jkt(key: &SigningKey) -> Value {
    json!({ "jkt": key.thumbprint() })
}

/// Signs, builds and presents; every helper a case file needs.
#[derive(Debug)]
pub(crate) struct Gen<'a> {
    pub keys: &'a TestKeys,
    reuse: &'a SignatureReuse,
}

impl<'a> Gen<'a> {
    pub(crate) fn new(keys: &'a TestKeys, reuse: &'a SignatureReuse) -> Self {
        Self { keys, reuse }
    }

    /// A signature over `input`: an earlier one if it still verifies, else fresh.
    pub(crate) fn sign(&self, key: &SigningKey, alg: Algorithm, input: &str) -> Result<Vec<u8>, Error> {
        self.sign_where(key, alg, input, |_| true)
    }

    /// Like [`Gen::sign`], for a signature that `accept`s (randomised keys retry).
    pub(crate) fn sign_where(
        &self,
        key: &SigningKey,
        alg: Algorithm,
        input: &str,
        accept: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, Error> {
        let alg = match key {
            SigningKey::Local(k) => k.algorithm(),
            SigningKey::Rsa { .. } => alg,
        };
        if let Some(vk) = key.verifier(alg) {
            if let Some(sig) = self.reuse.find(input, |sig| vk.verify(input.as_bytes(), sig) && accept(sig)) {
                return Ok(sig);
            }
        }
        for _ in 0..64 {
            let sig = key.sign(alg, input.as_bytes())?;
            if accept(&sig) {
                return Ok(sig);
            }
        }
        Err(Error::Invalid(format!("no acceptable {alg} signature over {input:.40}…")))
    }

    /// An earlier signature over `input` that `good` accepts, if any.
    pub(crate) fn reused(&self, input: &str, good: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        self.reuse.find(input, good)
    }

    /// A compact JWS of raw JSON texts, signed with `key`'s own algorithm.
    pub(crate) fn jws_raw(&self, key: &SigningKey, header_json: &str, payload_json: &str) -> Result<String, Error> {
        let input = jws::signing_input(header_json, payload_json);
        Ok(jws::compact(&input, &self.sign(key, key.algorithm(), &input)?))
    }

    /// A compact JWS; an RSA key signs with the header's `alg` (PS256 or RS256).
    pub(crate) fn jws(&self, key: &SigningKey, header: &Value, payload: &Value) -> Result<String, Error> {
        let alg = header["alg"].as_str().and_then(|a| a.parse().ok()).unwrap_or(key.algorithm());
        let input = jws::signing_input(&header.to_string(), &payload.to_string());
        Ok(jws::compact(&input, &self.sign(key, alg, &input)?))
    }

    /// A compact JWS of exactly `len` bytes: a `pad` claim fills the payload,
    /// and a space in the header JSON fixes lengths base64 cannot reach.
    pub(crate) fn sized_jws(
        &self,
        key: &SigningKey,
        header: &Value,
        payload: &Value,
        len: usize,
    ) -> Result<String, Error> {
        let b64_len = |n: usize| (4 * n).div_ceil(3);
        let sig_len = match key.algorithm() {
            Algorithm::ES384 => 96,
            Algorithm::ES256 | Algorithm::EdDSA => 64,
            other => return Err(Error::Invalid(format!("sized_jws: {other} has no fixed signature size"))),
        };
        let header = header.to_string();
        for spaces in 0..3 {
            let h = format!("{{{}{}", " ".repeat(spaces), &header[1..]);
            let mut p = payload.clone();
            p["pad"] = "".into();
            let base = p.to_string().len();
            for pad in 0..len {
                if b64_len(h.len()) + b64_len(base + pad) + b64_len(sig_len) + 2 == len {
                    p["pad"] = "x".repeat(pad).into();
                    return self.jws_raw(key, &h, &p.to_string());
                }
            }
        }
        Err(Error::Invalid(format!("no JWS of exactly {len} bytes")))
    }

    /// `{"alg","typ":"ekey+jwt","kid"}` for an issuer key.
    pub(crate) fn token_header(key: &SigningKey) -> Value {
        json!({ "alg": key.algorithm().as_str(), "typ": "ekey+jwt", "kid": key.thumbprint() })
    }

    /// The claims the issuer writes, bound by `cnf`.
    pub(crate) fn claims(trace: &str, cnf: Value) -> Value {
        json!({
            "iss": ISSUER,
            "sub": SUB,
            "aud": AUDIENCE,
            "iat": IAT,
            "nbf": IAT,
            "exp": EXP,
            "jti": trace,
            "cap": { "action": ACTION, "scope": "create:payment", "limit": 1, "subcap": [SUBCAP] },
            "cnf": cnf,
            "tpl": "payments",
        })
    }

    /// The default token of a case: issuer ES256, bound to the client's ES256 key.
    pub(crate) fn default_claims(&self, d: &Draft) -> Value {
        Self::claims(&d.trace(), jkt(&self.keys.client_es256))
    }

    /// A token with the standard header.
    pub(crate) fn token(&self, key: &SigningKey, claims: &Value) -> Result<String, Error> {
        self.jws(key, &Self::token_header(key), claims)
    }

    /// `{"typ":"dpop+jwt","alg","jwk"}` for a client key.
    pub(crate) fn proof_header(key: &SigningKey) -> Value {
        json!({ "typ": "dpop+jwt", "alg": key.algorithm().as_str(), "jwk": key.public_jwk().to_json() })
    }

    /// Proof claims for one request; `ath` when a token is given.
    pub(crate) fn proof_claims(jti: &str, method: &str, url: &str, token: Option<&str>, iat: i64) -> Value {
        let mut c = json!({ "jti": jti, "htm": method, "htu": url, "iat": iat });
        if let Some(t) = token {
            c["ath"] = ekey_verifier::sha256_b64(t).into();
        }
        c
    }

    /// A proof with the standard header.
    pub(crate) fn proof(&self, key: &SigningKey, claims: &Value) -> Result<String, Error> {
        self.jws(key, &Self::proof_header(key), claims)
    }

    /// A correct proof for `method url` with `token`, at `iat`.
    pub(crate) fn good_proof(
        &self,
        d: &mut Draft,
        key: &SigningKey,
        method: &str,
        url: &str,
        token: &str,
        iat: i64,
    ) -> Result<String, Error> {
        self.proof(key, &Self::proof_claims(&d.jti(), method, url, Some(token), iat))
    }

    /// The issuer's JWKS entry for `key`: `kid` = thumbprint, `alg` = its algorithm.
    pub(crate) fn jwk_entry(key: &SigningKey, alg: Algorithm) -> Value {
        key.public_jwk().clone().with_kid_and_alg(key.thumbprint(), alg).to_json()
    }

    /// The issuer's JWKS with the given keys.
    pub(crate) fn jwks(keys: &[(&SigningKey, Algorithm)]) -> Value {
        json!({ "keys": keys.iter().map(|(k, a)| Self::jwk_entry(k, *a)).collect::<Vec<_>>() })
    }

    /// The default JWKS: the issuer's ES256, ES384 and EdDSA keys.
    pub(crate) fn default_jwks(&self) -> Value {
        let k = self.keys;
        Self::jwks(&[
            (&k.issuer_es256, Algorithm::ES256),
            (&k.issuer_es384, Algorithm::ES384),
            (&k.issuer_eddsa, Algorithm::EdDSA),
        ])
    }

    /// The default JWKS plus the issuer's RSA key for PS256.
    pub(crate) fn jwks_with_rsa(&self) -> Value {
        let mut v = self.default_jwks();
        if let Some(keys) = v["keys"].as_array_mut() {
            keys.push(Self::jwk_entry(&self.keys.issuer_rsa, Algorithm::PS256));
        }
        v
    }

    /// Starts a case `<file>/<name>` with the defaults.
    pub(crate) fn draft(&self, file: &str, name: &str, check: &str, description: &str) -> Draft {
        Draft {
            case: Case {
                id: format!("{file}/{name}"),
                description: description.into(),
                check: check.into(),
                settings: default_settings(),
                now: NOW,
                jwks: self.default_jwks(),
                steps: Vec::new(),
            },
            proofs: 0,
            clock: NOW,
        }
    }
}

/// A case being built.
#[derive(Debug)]
pub(crate) struct Draft {
    pub case: Case,
    proofs: u32,
    /// The clock as the steps so far left it.
    clock: i64,
}

impl Draft {
    /// The trace (`jti`) of the case's token.
    pub(crate) fn trace(&self) -> String {
        self.trace_n(0)
    }

    /// The trace of the case's `n`th token (cases with several tokens).
    pub(crate) fn trace_n(&self, n: u32) -> String {
        derive_id(&format!("trace {} {n}", self.case.id))
    }

    /// A fresh proof `jti`, stable across regenerations.
    pub(crate) fn jti(&mut self) -> String {
        self.proofs += 1;
        derive_id(&format!("proof {} {}", self.case.id, self.proofs))
    }

    pub(crate) fn step(&mut self, request: Request, expect: Expect) {
        self.case.steps.push(Step { now: None, revoke: None, request: Some(request), expect: Some(expect) });
    }

    /// A step at time `at`; the clock stays there for later steps.
    pub(crate) fn step_at(&mut self, at: i64, request: Request, expect: Expect) {
        let now = (at != self.clock).then_some(at);
        self.clock = at;
        self.case.steps.push(Step { now, revoke: None, request: Some(request), expect: Some(expect) });
    }

    pub(crate) fn revoke(&mut self, trace: &str, until: i64) {
        self.case.steps.push(Step {
            now: None,
            revoke: Some(Revoke { trace: trace.into(), until }),
            request: None,
            expect: None,
        });
    }

    /// Adds a step: `token` with a correct proof by the client's ES256 key for
    /// `POST URL` at the current clock.
    pub(crate) fn present(&mut self, g: &Gen, token: &str, expect: Expect) -> Result<(), Error> {
        let proof = g.good_proof(self, &g.keys.client_es256, METHOD, URL, token, self.clock)?;
        self.step(dpop_request(METHOD, URL, token, vec![proof]), expect);
        Ok(())
    }

    /// Signs `claims` with the issuer's ES256 key and presents the result.
    pub(crate) fn present_claims(&mut self, g: &Gen, claims: &Value, expect: Expect) -> Result<(), Error> {
        let token = g.token(&g.keys.issuer_es256, claims)?;
        self.present(g, &token, expect)
    }

    /// Adds a step: `token` with `proof` for `POST URL`.
    pub(crate) fn send(&mut self, token: &str, proof: String, expect: Expect) {
        self.step(dpop_request(METHOD, URL, token, vec![proof]), expect);
    }

    pub(crate) fn done(self) -> Case {
        self.case
    }
}

/// `Authorization: DPoP <token>` plus these `DPoP` headers.
pub(crate) fn dpop_request(method: &str, url: &str, token: &str, proofs: Vec<String>) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        authorization: Some(format!("DPoP {token}")),
        dpop: proofs,
        peer_certificate_b64: None,
        path: None,
    }
}

/// Accepted on `cap.action` with a DPoP binding.
pub(crate) fn accepted(d: &Draft, used: u32, remaining: u32) -> Expect {
    accepted_as(&d.trace(), used, remaining, ACTION, "dpop")
}

pub(crate) fn accepted_as(trace: &str, used: u32, remaining: u32, action: &str, binding: &str) -> Expect {
    Expect::Accepted {
        used,
        remaining,
        action: action.into(),
        binding: binding.into(),
        trace: trace.into(),
        sub: SUB.into(),
    }
}

fn rejected(status: u16, error: Option<&str>, reason: Option<&str>, description: Option<&str>) -> Expect {
    Expect::Rejected {
        status,
        error: error.map(Into::into),
        reason: reason.map(Into::into),
        description_contains: description.map(Into::into),
        dpop_nonce: None,
    }
}

/// 401 `invalid_token`, for the check named by `description`.
pub(crate) fn bad_token(description: &str) -> Expect {
    rejected(401, Some("invalid_token"), Some("invalid_token"), Some(description))
}

/// 401 `invalid_token`, reason `expired`.
pub(crate) fn expired() -> Expect {
    rejected(401, Some("invalid_token"), Some("expired"), Some("token expired"))
}

/// 401 `invalid_token`, reason `exhausted`.
pub(crate) fn exhausted() -> Expect {
    rejected(401, Some("invalid_token"), Some("exhausted"), Some("usage limit reached"))
}

/// 401 `invalid_token`, reason `revoked`.
pub(crate) fn revoked() -> Expect {
    rejected(401, Some("invalid_token"), Some("revoked"), Some("token revoked"))
}

/// 401 `invalid_token`, reason `invalid_token`, whichever token check fires.
pub(crate) fn bad_token_unspecified() -> Expect {
    rejected(401, Some("invalid_token"), Some("invalid_token"), None)
}

/// 401 `invalid_token` where more than one reason is right.
pub(crate) fn any_bad_token() -> Expect {
    rejected(401, Some("invalid_token"), None, None)
}

/// 401 `invalid_dpop_proof`, for the check named by `description`.
pub(crate) fn bad_proof(description: &str) -> Expect {
    rejected(401, Some("invalid_dpop_proof"), Some("invalid_proof"), Some(description))
}

/// 401 `invalid_dpop_proof`, reason `invalid_proof`, whichever proof check fires.
pub(crate) fn bad_proof_unspecified() -> Expect {
    rejected(401, Some("invalid_dpop_proof"), Some("invalid_proof"), None)
}

/// 401 `invalid_dpop_proof` where more than one reason is right.
pub(crate) fn any_bad_proof() -> Expect {
    rejected(401, Some("invalid_dpop_proof"), None, None)
}

/// 401 `invalid_dpop_proof`, reason `replay_blocked`.
pub(crate) fn replayed() -> Expect {
    rejected(401, Some("invalid_dpop_proof"), Some("replay_blocked"), Some("proof replayed"))
}

/// 401 `use_dpop_nonce` carrying `nonce`.
pub(crate) fn use_nonce(nonce: &str) -> Expect {
    Expect::Rejected {
        status: 401,
        error: Some("use_dpop_nonce".into()),
        reason: Some("use_dpop_nonce".into()),
        description_contains: None,
        dpop_nonce: Some(nonce.into()),
    }
}

/// 400 `invalid_request`, reason `invalid_path`: a request path not in normal form.
pub(crate) fn bad_path() -> Expect {
    rejected(400, Some("invalid_request"), Some("invalid_path"), Some("not in normal form"))
}

/// 403 `insufficient_scope`.
pub(crate) fn forbidden() -> Expect {
    rejected(403, Some("insufficient_scope"), Some("insufficient_scope"), Some("capability does not cover"))
}

/// 401 with a bare challenge: no usable credentials.
pub(crate) fn no_credentials() -> Expect {
    rejected(401, None, Some("missing_credentials"), None)
}
