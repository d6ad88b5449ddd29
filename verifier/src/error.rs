//! The one error a verification returns, and its HTTP answer.

use crate::claims::Claims;
use crate::dpop::ProofError;
use crate::jose::alg::Algorithm;
use crate::outcome::Outcome;
use crate::path::PathError;
use crate::revocation::RevocationError;
use crate::store::StoreError;
use crate::token::TokenError;
use http::{header, HeaderValue, Response, StatusCode};

/// Why a request was refused. Each variant knows its HTTP answer
/// ([`Rejection::status`], [`Rejection::to_response`]): this is the one place
/// that maps verification errors to HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization` header, or not the DPoP/Bearer scheme: 401 with a
    /// bare challenge (RFC 6750 §3.1).
    #[error("no access token presented")]
    MissingCredentials,
    /// The token is invalid, expired, revoked, spent, or presented without its
    /// binding: 401 `invalid_token`.
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    /// The DPoP proof is invalid or replayed: 401 `invalid_dpop_proof`.
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(ProofError),
    /// A fresh server nonce is required: 401 `use_dpop_nonce` + `DPoP-Nonce`.
    #[error("use DPoP nonce")]
    UseDpopNonce(String),
    /// Valid token, but not for this method and path: 403 `insufficient_scope`.
    #[error("the token's capability does not cover this request")]
    InsufficientScope,
    /// The request path is not in normal form (dot segments in any spelling,
    /// `\`, encoded `/` `\` or controls, needless or lower-case
    /// percent-encodings, empty segments), so it is not matched against any
    /// capability: 400 `invalid_request` (RFC 6750 §3.1).
    #[error("the request path is not in normal form: {0}")]
    InvalidPath(PathError),
    /// The store or the issuer's keys cannot answer; refused (fail closed):
    /// 503 + `Retry-After`.
    #[error("temporarily unable to verify: {0}")]
    Unavailable(String),
}

impl From<TokenError> for Rejection {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::KeysUnavailable(why) => Self::Unavailable(format!("issuer keys: {why}")),
            other => Self::InvalidToken(other),
        }
    }
}

impl From<ProofError> for Rejection {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::NonceRequired(n) => Self::UseDpopNonce(n),
            other => Self::InvalidProof(other),
        }
    }
}

impl From<RevocationError> for Rejection {
    fn from(e: RevocationError) -> Self {
        match e {
            RevocationError::Revoked => Self::InvalidToken(TokenError::Revoked),
            RevocationError::Stale(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A refused request: the [`Rejection`] (which knows its HTTP answer) and,
/// once the token proved authentic, whose token it was.
///
/// `token` is `Some` only for refusals made after the token's signature,
/// issuer and audience were checked (an expired, unbound, out-of-scope,
/// replayed, spent or revoked token; a request path not in normal form; a
/// store that cannot answer). Before that, anything read from the token may
/// be forged, so nothing is handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, and the HTTP answer.
    pub rejection: Rejection,
    /// The identifiers of the refused token, when it was authentic.
    pub token: Option<TokenIds>,
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Self { rejection, token: None }
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Rejection::from(e).into()
    }
}

/// Identifiers of an authentic token, for audit logs: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    /// `sub`: the client or workload.
    pub sub: String,
    /// `jti`: the trace id.
    pub trace: String,
    /// `cap.action`.
    pub action: String,
    /// `tpl`, if the token names its template.
    pub template: Option<String>,
}

impl TokenIds {
    pub(crate) fn of(claims: &Claims) -> Self {
        Self {
            sub: claims.sub.clone(),
            trace: claims.jti.clone(),
            action: claims.cap.action.clone(),
            template: claims.tpl.clone(),
        }
    }
}

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

impl Rejection {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::InvalidPath(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The OAuth error code, if any (RFC 6750 §3.1, RFC 9449 §7.1, §8).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials | Self::Unavailable(_) => None,
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InvalidProof(_) => Some("invalid_dpop_proof"),
            Self::UseDpopNonce(_) => Some("use_dpop_nonce"),
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::InvalidPath(_) => Some("invalid_request"),
        }
    }

    /// The class of this rejection, as reported in metrics and audit logs.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::MissingCredentials => Outcome::MissingCredentials,
            Self::InvalidToken(TokenError::Exhausted) => Outcome::Exhausted,
            Self::InvalidToken(TokenError::Revoked) => Outcome::Revoked,
            Self::InvalidToken(TokenError::Expired) => Outcome::Expired,
            Self::InvalidToken(_) => Outcome::InvalidToken,
            Self::InvalidProof(ProofError::Replayed) => Outcome::ReplayBlocked,
            Self::InvalidProof(_) => Outcome::InvalidProof,
            Self::UseDpopNonce(_) => Outcome::UseDpopNonce,
            Self::InsufficientScope => Outcome::InsufficientScope,
            Self::InvalidPath(_) => Outcome::InvalidPath,
            Self::Unavailable(_) => Outcome::StoreUnavailable,
        }
    }

    /// A short, stable, low-cardinality reason for metrics and audit logs:
    /// [`Rejection::outcome`] as a word ([`Outcome::as_str`]).
    pub fn reason(&self) -> &'static str {
        self.outcome().as_str()
    }

    /// The `WWW-Authenticate` challenge: `DPoP` with `algs` and, when there is
    /// one, `error` and `error_description` (which never quotes the token).
    pub fn www_authenticate(&self, algs: &[Algorithm]) -> Option<String> {
        if matches!(self, Self::Unavailable(_)) {
            return None;
        }
        let algs = algs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" ");
        let mut v = format!("DPoP algs=\"{algs}\"");
        if let Some(code) = self.error_code() {
            let desc: String =
                self.to_string().chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
            v.push_str(&format!(", error=\"{code}\", error_description=\"{desc}\""));
        }
        Some(v)
    }

    /// The complete HTTP answer, with an empty body.
    pub fn to_response(&self, algs: &[Algorithm]) -> Response<()> {
        let mut res = Response::new(());
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        if let Some(v) = self.www_authenticate(algs).and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        match self {
            Self::UseDpopNonce(n) => {
                if let Ok(v) = HeaderValue::from_str(n) {
                    h.insert("dpop-nonce", v);
                }
            }
            Self::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_headers() {
        let algs = [Algorithm::ES256];
        let r = Rejection::InvalidToken(TokenError::Expired).to_response(&algs);
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"],
            "DPoP algs=\"ES256\", error=\"invalid_token\", error_description=\"invalid token: token expired\""
        );
        let r = Rejection::UseDpopNonce("n1".into()).to_response(&algs);
        assert_eq!(r.headers()["dpop-nonce"], "n1");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("use_dpop_nonce"));
        let r = Rejection::Unavailable("x".into()).to_response(&algs);
        assert_eq!(
            (r.status(), &r.headers()["retry-after"]),
            (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from(1u32))
        );
        assert_eq!(Rejection::InsufficientScope.status(), 403);
        let r = Rejection::InvalidPath(PathError::DotSegment).to_response(&algs);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()["www-authenticate"],
            "DPoP algs=\"ES256\", error=\"invalid_request\", error_description=\"the request path is not in normal \
             form: it has a '.' or '..' segment (in some spelling)\""
        );
        assert_eq!(
            Rejection::MissingCredentials.to_response(&algs).headers()["www-authenticate"],
            "DPoP algs=\"ES256\""
        );
    }
}
