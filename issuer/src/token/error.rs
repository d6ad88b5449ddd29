//! The token endpoint's errors (RFC 6749 §5.2, RFC 9449 §5 and §8, RFC 9396
//! §5) and their HTTP answers: the one place that maps issuer errors to HTTP.

use super::request::RequestError;
use crate::clients::AuthError;
use crate::dpop::DpopError;
use crate::http::{json_response, Body};
use crate::mint::MintError;
use crate::policy::{PolicyError, RequestedVia};
use crate::replay::ReplayError;
use crate::signer::SignError;
use ekey_verifier::ProofError;
use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use std::fmt;

/// An OAuth error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed or contradictory request.
    InvalidRequest,
    /// Client authentication failed or is missing (401).
    InvalidClient,
    /// The grant is invalid (not produced by `client_credentials`; kept for
    /// grant types to come).
    InvalidGrant,
    /// The client may not have this capability.
    UnauthorizedClient,
    /// Only `client_credentials` is served.
    UnsupportedGrantType,
    /// `scope` names nothing this client can have.
    InvalidScope,
    /// The DPoP proof is invalid (RFC 9449 §5).
    InvalidDpopProof,
    /// A fresh DPoP nonce is required (RFC 9449 §8).
    UseDpopNonce,
    /// `authorization_details` unusable or outside the templates (RFC 9396 §5).
    InvalidAuthorizationDetails,
    /// Something broke on our side (500).
    ServerError,
    /// Try again later (503 + `Retry-After`).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The `error` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InvalidAuthorizationDetails => "invalid_authorization_details",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds a client should wait when no better value is known.
const DEFAULT_RETRY_AFTER: u64 = 1;

/// A refused token request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    code: ErrorCode,
    reason: &'static str,
    description: String,
    basic_challenge: bool,
    dpop_nonce: Option<String>,
    retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with `code` and a description (characters RFC 6749 §5.2 does
    /// not allow in `error_description` are replaced).
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description
            .into()
            .chars()
            .map(|c| if matches!(c, ' '..='~') && c != '"' && c != '\\' { c } else { '\'' })
            .take(512)
            .collect();
        Self { code, reason: code.as_str(), description, basic_challenge: false, dpop_nonce: None, retry_after: None }
    }

    /// The same error with a finer `reason` (see [`OAuthError::reason`]).
    pub(crate) fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Why, in a few fixed words (`bad_client_credentials`,
    /// `dpop_proof_replayed`, `limit_too_high`, ...), for audit events, logs
    /// and span attributes. Unlike the description it never carries request
    /// text. Defaults to the error code.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The `error_description`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The `Retry-After` seconds, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The HTTP answer: status, JSON body, `Cache-Control: no-store`, and
    /// `WWW-Authenticate`, `DPoP-Nonce` or `Retry-After` where they apply.
    pub fn to_response(&self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.code.as_str(), "error_description": self.description });
        let mut res = json_response(self.code.status(), &body);
        let h = res.headers_mut();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ekey\", charset=\"UTF-8\""));
        }
        if let Some(v) = self.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
            h.insert("dpop-nonce", v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }

    fn unavailable(description: impl Into<String>, retry_after: Option<u64>) -> Self {
        let mut e = Self::new(ErrorCode::TemporarilyUnavailable, description);
        e.retry_after = Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER).max(1));
        e
    }

    /// The answer for a policy refusal; the code depends on how the
    /// capability was asked for.
    pub(crate) fn from_policy(e: &PolicyError, via: RequestedVia) -> Self {
        let code = match e {
            PolicyError::ClientNotAllowed { .. } | PolicyError::NoTemplates(_) => ErrorCode::UnauthorizedClient,
            _ => match via {
                RequestedVia::Scope => ErrorCode::InvalidScope,
                RequestedVia::AuthorizationDetails => ErrorCode::InvalidAuthorizationDetails,
            },
        };
        let reason = match e {
            PolicyError::UnknownTemplate(_) => "unknown_template",
            PolicyError::ClientNotAllowed { .. } => "client_not_allowed",
            PolicyError::NoTemplates(_) => "no_templates_for_client",
            PolicyError::NoTemplateForAction { .. } => "no_template_for_action",
            PolicyError::InvalidAction { .. } => "invalid_action",
            PolicyError::ActionRequired(_) => "action_required",
            PolicyError::ActionOutside { .. } => "action_outside_template",
            PolicyError::LimitTooHigh { .. } => "limit_too_high",
            PolicyError::SubcapOutside { .. } => "subcap_outside_template",
            PolicyError::AudienceOutside { .. } => "audience_outside_template",
            PolicyError::Binding { .. } => "binding_required",
        };
        Self::new(code, e.to_string()).with_reason(reason)
    }
}

impl From<RequestError> for OAuthError {
    fn from(e: RequestError) -> Self {
        let (code, reason) = match e {
            RequestError::Invalid(_) => (ErrorCode::InvalidRequest, "malformed_request"),
            RequestError::GrantType(_) => (ErrorCode::UnsupportedGrantType, "unsupported_grant_type"),
            RequestError::Scope(_) => (ErrorCode::InvalidScope, "malformed_scope"),
            RequestError::Details(_) => (ErrorCode::InvalidAuthorizationDetails, "malformed_authorization_details"),
        };
        Self::new(code, e.to_string()).with_reason(reason)
    }
}

impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        let client = ErrorCode::InvalidClient;
        let (code, reason) = match e {
            AuthError::Missing => (client, "client_authentication_missing"),
            AuthError::Basic => (client, "bad_client_credentials"),
            AuthError::Assertion(_) => (client, "bad_client_assertion"),
            AuthError::Replayed => (client, "client_assertion_replayed"),
            AuthError::NoCertificate(_) => (client, "client_certificate_missing"),
            AuthError::Certificate => (client, "bad_client_certificate"),
            // Two different clients named in one request: a contradictory
            // request (RFC 6749 §5.2), as for client_id against Basic.
            AuthError::ClientIdMismatch => (ErrorCode::InvalidRequest, "client_id_mismatch"),
        };
        let mut out = Self::new(code, e.to_string()).with_reason(reason);
        // RFC 6749 §5.2: a failed Basic attempt gets a Basic challenge.
        out.basic_challenge = matches!(e, AuthError::Basic);
        out
    }
}

impl From<DpopError> for OAuthError {
    fn from(e: DpopError) -> Self {
        match e {
            DpopError::Missing => Self::new(ErrorCode::InvalidRequest, e.to_string()).with_reason("dpop_proof_missing"),
            DpopError::Invalid(ProofError::Replayed) => {
                Self::new(ErrorCode::InvalidDpopProof, e.to_string()).with_reason("dpop_proof_replayed")
            }
            DpopError::Invalid(_) => {
                Self::new(ErrorCode::InvalidDpopProof, e.to_string()).with_reason("dpop_proof_invalid")
            }
            DpopError::UseNonce(ref nonce) => {
                let mut out = Self::new(ErrorCode::UseDpopNonce, e.to_string()).with_reason("dpop_nonce_required");
                out.dpop_nonce = Some(nonce.clone());
                out
            }
        }
    }
}

impl From<ReplayError> for OAuthError {
    fn from(e: ReplayError) -> Self {
        // Fail closed: without the replay cache, no token.
        Self::unavailable(format!("cannot check replay right now ({e})"), None).with_reason("replay_cache_unavailable")
    }
}

impl From<MintError> for OAuthError {
    fn from(e: MintError) -> Self {
        match e {
            MintError::Sign(SignError::Unavailable { retry_after, .. }) => Self::unavailable(
                "the signing service is unavailable; retry later",
                retry_after.map(|d| d.as_secs_f64().ceil() as u64),
            )
            .with_reason("signer_unavailable"),
            MintError::Timeout(_) => {
                Self::unavailable("the signing service timed out; retry later", None).with_reason("signer_timeout")
            }
            // The detail is logged, not sent: it is about our keys.
            _ => Self::new(ErrorCode::ServerError, "the issuer could not sign the token").with_reason("signing_failed"),
        }
    }
}

impl OAuthError {
    /// Adds a `DPoP-Nonce` header unless the error already carries one.
    pub(crate) fn with_nonce(mut self, nonce: Option<String>) -> Self {
        if self.dpop_nonce.is_none() {
            self.dpop_nonce = nonce;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    async fn body(res: Response<Body>) -> serde_json::Value {
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn json_body_and_headers() {
        let res = OAuthError::from(AuthError::Basic).to_response();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"ekey\", charset=\"UTF-8\"");
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(
            body(res).await,
            serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"})
        );

        let res = OAuthError::from(AuthError::Assertion("assertion expired".into())).to_response();
        assert_eq!(res.status(), 401);
        assert!(res.headers().get("www-authenticate").is_none());

        let res = OAuthError::from(DpopError::UseNonce("n-1".into())).to_response();
        assert_eq!(
            (res.status(), &res.headers()["dpop-nonce"]),
            (StatusCode::BAD_REQUEST, &HeaderValue::from_static("n-1"))
        );
        assert_eq!(body(res).await["error"], "use_dpop_nonce");

        let sign =
            SignError::Unavailable { reason: "throttled".into(), retry_after: Some(Duration::from_millis(2500)) };
        let res = OAuthError::from(MintError::Sign(sign)).to_response();
        assert_eq!(
            (res.status(), &res.headers()["retry-after"]),
            (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from(3u64))
        );
        assert_eq!(body(res).await["error"], "temporarily_unavailable");

        let res = OAuthError::from(MintError::Sign(SignError::Failed("key disabled".into()))).to_response();
        assert_eq!(res.status(), 500);
        let b = body(res).await;
        assert_eq!(b["error"], "server_error");
        assert!(!b["error_description"].as_str().unwrap().contains("disabled"));
    }

    #[test]
    fn codes_and_statuses() {
        let grant = OAuthError::from(RequestError::GrantType("password".into()));
        assert_eq!((grant.code(), grant.code().status()), (ErrorCode::UnsupportedGrantType, StatusCode::BAD_REQUEST));
        assert_eq!(OAuthError::from(DpopError::Missing).code(), ErrorCode::InvalidRequest);
        let p = PolicyError::UnknownTemplate("x".into());
        assert_eq!(OAuthError::from_policy(&p, RequestedVia::Scope).code(), ErrorCode::InvalidScope);
        assert_eq!(
            OAuthError::from_policy(&p, RequestedVia::AuthorizationDetails).code(),
            ErrorCode::InvalidAuthorizationDetails
        );
        let p = PolicyError::NoTemplates("c".into());
        assert_eq!(OAuthError::from_policy(&p, RequestedVia::Scope).code(), ErrorCode::UnauthorizedClient);
        assert_eq!(OAuthError::from(ReplayError::Full).code(), ErrorCode::TemporarilyUnavailable);
    }

    #[test]
    fn reasons_are_fixed_words() {
        assert_eq!(OAuthError::from(AuthError::Basic).reason(), "bad_client_credentials");
        assert_eq!(OAuthError::from(AuthError::Assertion("exp in the past".into())).reason(), "bad_client_assertion");
        let mismatch = OAuthError::from(AuthError::ClientIdMismatch);
        assert_eq!((mismatch.code(), mismatch.reason()), (ErrorCode::InvalidRequest, "client_id_mismatch"));
        assert_eq!(OAuthError::from(DpopError::Invalid(ProofError::Replayed)).reason(), "dpop_proof_replayed");
        let p = PolicyError::UnknownTemplate("secret-looking-input".into());
        let e = OAuthError::from_policy(&p, RequestedVia::Scope);
        assert_eq!(e.reason(), "unknown_template");
        assert!(e.description().contains("secret-looking-input"));
        assert_eq!(OAuthError::new(ErrorCode::InvalidRequest, "x").reason(), "invalid_request");
        assert_eq!(OAuthError::from(ReplayError::Full).reason(), "replay_cache_unavailable");
    }

    #[test]
    fn description_characters_are_restricted() {
        let e = OAuthError::new(ErrorCode::InvalidRequest, "a \"quoted\" \\ é\nline");
        assert_eq!(e.description(), "a 'quoted' ' ''line");
    }
}
