//! Runs the shared conformance vectors (`conformance/vectors/*.json`, format
//! `ekey-vectors/1`, described in the README there) through the real
//! [`Verifier`]: per case a fresh `MemoryStore`, a `ManualClock` at the case's
//! time, `StaticKeys` from its JWKS and its settings. Every request step must
//! get exactly the expected answer: accepted with the expected use counts, or
//! refused with the expected status, OAuth error code, reason and
//! `error_description` fragment.
//!
//! The format structs are defined here, not imported from the conformance
//! crate: the files are the contract, and the verifier does not depend on the
//! crate that generates them.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ekey_verifier::mtls::ClientCert;
use ekey_verifier::{
    Algorithm, Binding, Jwks, ManualClock, MemoryStore, NonceSource, PresentedRequest, Rejection, StaticKeys,
    UsageStore, VerifiedCapability, Verifier, VerifierSettings,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

const FORMAT: &str = "ekey-vectors/1";
/// Fewer cases than this means the files went missing or were cut down.
const MIN_CASES: usize = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    format: String,
    #[allow(dead_code)]
    description: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    #[allow(dead_code)]
    description: String,
    check: String,
    settings: Settings,
    now: i64,
    jwks: serde_json::Value,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    issuer: String,
    audiences: Vec<String>,
    token_algorithms: Vec<String>,
    leeway: u32,
    max_ttl: u32,
    max_token_len: usize,
    dpop_algorithms: Vec<String>,
    dpop_max_age: u32,
    dpop_leeway: u32,
    max_proof_len: usize,
    max_jti_len: usize,
    #[serde(default)]
    nonce: Option<NonceSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NonceSettings {
    secret_b64url: String,
    window: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    now: Option<i64>,
    #[serde(default)]
    revoke: Option<Revoke>,
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    expect: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    trace: String,
    until: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    method: String,
    url: String,
    authorization: Option<String>,
    dpop: Vec<String>,
    #[serde(default)]
    peer_certificate_b64: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Expect {
    Accepted {
        used: u32,
        remaining: u32,
        action: String,
        binding: String,
        trace: String,
        sub: String,
    },
    Rejected {
        status: u16,
        error: Option<String>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        description_contains: Option<String>,
        #[serde(default)]
        dpop_nonce: Option<String>,
    },
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/vectors")
}

/// Every case of every `*.json` file, in file-name order.
fn load() -> Vec<Case> {
    let dir = vectors_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let file: VectorFile =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: not a vector file: {e}", path.display()));
        assert_eq!(file.format, FORMAT, "{}", path.display());
        cases.extend(file.cases);
    }
    cases
}

fn algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    names.iter().map(|n| n.parse().map_err(|e| format!("settings: {e}"))).collect()
}

fn verifier_settings(s: &Settings, token_cache: bool) -> Result<VerifierSettings, String> {
    let first = s.audiences.first().ok_or("settings: no audience")?;
    let mut v = VerifierSettings::new(s.issuer.clone(), first.clone());
    v.token.audiences = s.audiences.clone();
    v.token.algorithms = algorithms(&s.token_algorithms)?;
    v.token.leeway = s.leeway;
    v.token.max_ttl = s.max_ttl;
    v.token.max_len = s.max_token_len;
    if !token_cache {
        v.token.cache_capacity = 0;
    }
    v.dpop.algorithms = algorithms(&s.dpop_algorithms)?;
    v.dpop.max_age = s.dpop_max_age;
    v.dpop.leeway = s.dpop_leeway;
    v.dpop.max_len = s.max_proof_len;
    v.dpop.max_jti_len = s.max_jti_len;
    if let Some(n) = &s.nonce {
        let secret = URL_SAFE_NO_PAD.decode(&n.secret_b64url).map_err(|e| format!("nonce secret: {e}"))?;
        v.dpop.nonce = Some(NonceSource::new(&secret, n.window).map_err(|e| format!("nonce: {e}"))?);
    }
    Ok(v)
}

/// Verifies one request on its own task, so a panic in the verifier fails
/// this case with a message instead of aborting the whole run.
async fn verify(verifier: Arc<Verifier>, req: Request) -> Result<Result<VerifiedCapability, Rejection>, String> {
    let cert = match &req.peer_certificate_b64 {
        Some(b64) => Some(ClientCert::Der(STANDARD.decode(b64).map_err(|e| format!("peer_certificate_b64: {e}"))?)),
        None => None,
    };
    tokio::spawn(async move {
        let dpop: Vec<&str> = req.dpop.iter().map(String::as_str).collect();
        let presented = PresentedRequest {
            method: &req.method,
            url: &req.url,
            authorization: req.authorization.as_deref(),
            path: req.path.as_deref(),
            dpop,
            client_cert: cert.as_ref(),
        };
        verifier.verify(&presented).await
    })
    .await
    .map_err(|e| if e.is_panic() { "the verifier PANICKED".to_owned() } else { e.to_string() })
}

fn check(verifier: &Verifier, got: Result<VerifiedCapability, Rejection>, expect: &Expect) -> Result<(), String> {
    match (expect, got) {
        (Expect::Accepted { used, remaining, action, binding, trace, sub }, Ok(cap)) => {
            let got_binding = match cap.binding {
                Binding::Dpop { .. } => "dpop",
                Binding::Mtls { .. } => "mtls",
            };
            let want = (*used, *remaining, action.as_str(), binding.as_str(), trace.as_str(), sub.as_str());
            let got = (cap.used, cap.remaining, cap.action.as_str(), got_binding, cap.trace.as_str(), cap.sub.as_str());
            if want == got {
                Ok(())
            } else {
                Err(format!(
                    "accepted as expected, but (used, remaining, action, binding, trace, sub) = {got:?}, want {want:?}"
                ))
            }
        }
        (Expect::Accepted { .. }, Err(r)) => {
            Err(format!("expected acceptance, got {} {:?} ({}): {r}", r.status().as_u16(), r.error_code(), r.reason()))
        }
        (Expect::Rejected { status, error, .. }, Ok(cap)) => Err(format!(
            "ACCEPTED (used {}, remaining {}, action {}), expected {status} {error:?}",
            cap.used, cap.remaining, cap.action
        )),
        (Expect::Rejected { status, error, reason, description_contains, dpop_nonce }, Err(r)) => {
            let response = verifier.reject(&r);
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let nonce = response.headers().get("dpop-nonce").map(|v| v.to_str().unwrap_or_default().to_owned());
            let mut wrong = Vec::new();
            if response.status().as_u16() != *status {
                wrong.push(format!("status {} (want {status})", response.status().as_u16()));
            }
            if r.error_code() != error.as_deref() {
                wrong.push(format!("error {:?} (want {error:?})", r.error_code()));
            }
            let challenge_ok = match error {
                Some(code) => challenge.contains(&format!("error=\"{code}\"")),
                None => challenge.starts_with("DPoP") && !challenge.contains("error="),
            };
            // Every refusal but a 503 carries the DPoP challenge (RFC 6750 §3.1).
            if *status != 503 && !challenge_ok {
                wrong.push(format!("WWW-Authenticate {challenge:?}"));
            }
            if let Some(want) = reason.as_deref().filter(|w| *w != r.reason()) {
                wrong.push(format!("reason {:?} (want {want:?})", r.reason()));
            }
            if let Some(want) = description_contains.as_deref().filter(|w| !challenge.contains(*w)) {
                wrong.push(format!("error_description lacks {want:?}"));
            }
            if let Some(want) = dpop_nonce.as_deref().filter(|w| nonce.as_deref() != Some(*w)) {
                wrong.push(format!("DPoP-Nonce {nonce:?} (want {want:?})"));
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(format!("{} — refused with: {r}", wrong.join(", ")))
            }
        }
    }
}

/// Runs every step of `case` against one fresh store; the first wrong answer fails it.
async fn run(case: &Case, token_cache: bool) -> Result<(), String> {
    let settings = verifier_settings(&case.settings, token_cache)?;
    let jwks = Jwks::from_json(case.jwks.to_string().as_bytes()).map_err(|e| format!("jwks: {e}"))?;
    let keys = StaticKeys::new(jwks).map_err(|e| format!("jwks: {e}"))?;
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(ManualClock::new(case.now));
    let verifier = Arc::new(Verifier::with_clock(settings, Arc::new(keys), store.clone(), clock.clone()));
    for (i, step) in case.steps.iter().enumerate() {
        let n = i + 1;
        if let Some(now) = step.now {
            clock.set(now);
        }
        match (&step.revoke, &step.request, &step.expect) {
            (Some(r), None, None) => {
                store.revoke_trace(&r.trace, r.until).await.map_err(|e| format!("step {n}: revoke: {e}"))?;
            }
            (None, Some(req), Some(expect)) => {
                let got = verify(Arc::clone(&verifier), req.clone()).await.map_err(|e| format!("step {n}: {e}"))?;
                check(&verifier, got, expect).map_err(|e| format!("step {n}: {e}"))?;
            }
            _ => return Err(format!("step {n}: neither request + expect nor revoke")),
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_vector_gets_its_expected_answer() {
    let cases = load();
    assert!(
        cases.len() >= MIN_CASES,
        "only {} vector cases in {} (at least {MIN_CASES} expected)",
        cases.len(),
        vectors_dir().display()
    );
    let mut failures = Vec::new();
    let mut per_check: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        *per_check.entry(case.check.as_str()).or_default() += 1;
        // Once with the verified-token cache (the default), once without:
        // the answers must not depend on it.
        for token_cache in [true, false] {
            if let Err(why) = run(case, token_cache).await {
                let mode = if token_cache { "" } else { " [token cache off]" };
                failures.push(format!("{}{mode}: {why}", case.id));
                break;
            }
        }
    }
    eprintln!("{} vector cases; per check: {per_check:?}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} vector cases got the wrong answer:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[test]
fn vector_ids_are_unique_and_every_case_has_steps() {
    let cases = load();
    let mut ids = HashSet::new();
    for case in &cases {
        assert!(ids.insert(case.id.as_str()), "duplicate case id {}", case.id);
        assert!(!case.steps.is_empty(), "{} has no steps", case.id);
        assert!(!case.check.is_empty(), "{} names no check", case.id);
    }
}
