//! The vector file format, `ekey-vectors/1`: what `vectors/*.json` hold.
//!
//! One file is a [`VectorFile`]: a list of self-contained [`Case`]s. A case
//! gives the verifier settings, the issuer's JWKS, the time, and one or more
//! [`Step`]s run in order against ONE fresh usage store (so a case can show a
//! replayed proof or a spent usage limit). Each request step says what the
//! verifier must answer.
//!
//! Readers in other crates (the verifier's own tests) define their own copy
//! of these structs on purpose: the files are the contract, not this crate.

use serde::{Deserialize, Serialize};

/// The `format` value of every file in this version.
pub const FORMAT: &str = "ekey-vectors/1";

/// One `vectors/<name>.json` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// What the cases in this file exercise.
    pub description: String,
    /// The cases, in a stable order.
    pub cases: Vec<Case>,
}

/// One self-contained scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique across all files: `<file stem>/<name>`.
    pub id: String,
    /// What the case shows, in a sentence.
    pub description: String,
    /// The verifier rule it exercises, e.g. `token.aud` or `proof.htu`
    /// (see the README for the list).
    pub check: String,
    /// How the verifier is configured.
    pub settings: Settings,
    /// The verifier's clock, seconds since the epoch (steps may override it).
    pub now: i64,
    /// The issuer's JWKS (`{"keys":[…]}`), public keys with `kid` and `alg`.
    pub jwks: serde_json::Value,
    /// Run in order against one fresh store.
    pub steps: Vec<Step>,
}

/// Verifier settings. Every value is spelled out, defaults included, so a
/// case means the same thing to any implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Expected `iss`, compared exactly.
    pub issuer: String,
    /// Audiences this service answers to; `aud` must name one.
    pub audiences: Vec<String>,
    /// Token `alg` allow-list.
    pub token_algorithms: Vec<String>,
    /// Clock skew allowed for the token's `exp`/`nbf`/`iat`, seconds.
    pub leeway: u32,
    /// Longest token lifetime (`exp - iat`) accepted, seconds.
    pub max_ttl: u32,
    /// Longest token accepted, bytes.
    pub max_token_len: usize,
    /// Proof `alg` allow-list.
    pub dpop_algorithms: Vec<String>,
    /// Oldest proof `iat` accepted, seconds before now.
    pub dpop_max_age: u32,
    /// Clock skew allowed on both sides of the proof `iat` window, seconds.
    pub dpop_leeway: u32,
    /// Longest proof accepted, bytes.
    pub max_proof_len: usize,
    /// Longest proof `jti` accepted, bytes.
    pub max_jti_len: usize,
    /// When present, proofs must carry a server nonce from this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<NonceSettings>,
}

/// Stateless DPoP nonces (`ekey_verifier::NonceSource`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceSettings {
    /// The shared secret, base64url without padding (TEST-ONLY value).
    pub secret_b64url: String,
    /// Seconds per nonce window.
    pub window: u32,
}

/// One step: either a request and its expected answer, or a revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Sets the clock for this step and the ones after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<i64>,
    /// Revokes a trace in the store (no answer expected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Revoke>,
    /// A request to verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// What the verifier must answer to `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// `UsageStore::revoke_trace(trace, until)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The token's `jti`.
    pub trace: String,
    /// Revoked until this time.
    pub until: i64,
}

/// A request as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// HTTP method, as sent.
    pub method: String,
    /// The external URL the client addressed.
    pub url: String,
    /// The `Authorization` header; `null` when absent.
    pub authorization: Option<String>,
    /// Every `DPoP` header value, in order (usually zero or one).
    pub dpop: Vec<String>,
    /// The client's TLS certificate, DER in standard base64; absent without mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_certificate_b64: Option<String>,
    /// The path the application routes, exactly as it arrived (origin form,
    /// a query is ignored), when it is not the path of `url` as written (a
    /// proxy strips a prefix). Absent: the path of `url` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The answer a request must get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Expect {
    /// Every check passed and one use was consumed.
    Accepted {
        /// Uses so far, this one included.
        used: u32,
        /// Uses left.
        remaining: u32,
        /// The action pattern (from `cap.action` or `cap.subcap`) that matched.
        action: String,
        /// `dpop` or `mtls`.
        binding: String,
        /// The token's `jti`.
        trace: String,
        /// The token's `sub`.
        sub: String,
    },
    /// Refused.
    Rejected {
        /// HTTP status: 400, 401, 403 or 503.
        status: u16,
        /// The `error` of the `WWW-Authenticate: DPoP` challenge:
        /// `invalid_request`, `invalid_token`, `invalid_dpop_proof`,
        /// `use_dpop_nonce`, `insufficient_scope`, or `null` for a bare
        /// challenge (no credentials).
        error: Option<String>,
        /// `Rejection::reason()` (ekey's metric/audit label), when the case
        /// pins it; absent when more than one reason is correct.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// A fragment of ekey's `error_description`, naming the check that
        /// must fire. Advisory for other implementations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description_contains: Option<String>,
        /// The `DPoP-Nonce` the answer must carry (`use_dpop_nonce` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dpop_nonce: Option<String>,
    },
}
