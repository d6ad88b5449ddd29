//! `POST /token`: OAuth 2.0 client credentials grant that mints one bound
//! capability token per request: to the DPoP key of the request's proof, or,
//! without a `DPoP` header, to the TLS client certificate of the connection
//! (RFC 8705 §3; its thumbprint is taken from the TLS session, never from
//! the request).
//!
//! Order of work, cheapest and statelessest first: read the request, check
//! the grant type, authenticate the client, verify the DPoP proof, apply the
//! policy; only then record the assertion and proof `jti`s (so a retry after
//! `use_dpop_nonce` may reuse its assertion) and sign.

mod details;
mod error;
mod request;

pub use details::CAPABILITY_TYPE;
pub use error::{ErrorCode, OAuthError};
pub use request::{CLIENT_CREDENTIALS, JWT_BEARER};

use crate::clients::{AuthError, Authenticated, ClientRegistry};
use crate::dpop::{DpopError, TokenDpop};
use crate::http::{json_response, Body};
use crate::mint::{Minted, Minter};
use crate::policy::{Grant, OfferedBinding, Policy, RequestedVia};
use crate::replay::{ReplayCache, Seen};
use ekey_verifier::{b64_encode, Clock, Confirmation, ProofError};
use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, Response, StatusCode};
use request::TokenRequest;
use serde_json::json;
use std::sync::Arc;

/// Everything the token endpoint needs, built once at start.
#[derive(Debug)]
pub(crate) struct TokenEndpoint {
    pub issuer: String,
    pub token_endpoint: String,
    pub clients: Arc<ClientRegistry>,
    pub policy: Arc<Policy>,
    pub dpop: TokenDpop,
    pub minter: Minter,
    pub replay: Arc<dyn ReplayCache>,
    pub clock: Arc<dyn Clock>,
}

/// A request that was granted, with what the response needs.
struct Issued {
    client: Authenticated,
    grant: Grant,
    via: RequestedVia,
    minted: Minted,
}

impl TokenEndpoint {
    /// Answers one request; never fails (errors become OAuth error responses).
    /// `peer_certificate` is the DER of the connection's verified TLS
    /// client certificate, if any.
    pub(crate) async fn handle(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        peer_certificate: Option<&[u8]>,
    ) -> Response<Body> {
        let now = self.clock.now();
        let nonce = self.dpop.current_nonce(now);
        match self.issue(headers, body, peer_certificate, now).await {
            Ok(issued) => {
                let c = &issued.minted.claims;
                tracing::info!(
                    client = %issued.client.client_id,
                    auth = issued.client.method.as_str(),
                    binding = match c.cnf {
                        Confirmation::Jkt(_) => "dpop",
                        _ => "mtls",
                    },
                    template = %issued.grant.template.name,
                    trace = %c.jti,
                    action = %c.cap.action,
                    limit = c.cap.limit,
                    exp = c.exp,
                    "token issued"
                );
                self.success(issued, nonce)
            }
            Err(e) => {
                match e.code() {
                    ErrorCode::ServerError => tracing::error!(error = %e.code(), "token request failed"),
                    ErrorCode::TemporarilyUnavailable => {
                        tracing::warn!(error = %e.code(), description = e.description(), "token request deferred")
                    }
                    _ => tracing::info!(error = %e.code(), description = e.description(), "token request refused"),
                }
                e.with_nonce(nonce).to_response()
            }
        }
    }

    async fn issue(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        peer_certificate: Option<&[u8]>,
        now: i64,
    ) -> Result<Issued, OAuthError> {
        let req = TokenRequest::parse(headers, body)?;
        let audiences = [self.token_endpoint.as_str(), self.issuer.as_str()];
        let client = self.clients.authenticate(&req.credentials, &audiences, peer_certificate, now)?;
        // A DPoP header binds to its key; without one, the connection's
        // client certificate is the binding; with neither, the proof is
        // reported missing.
        let (offered, proof) = match peer_certificate {
            Some(_) if !headers.contains_key("dpop") => (OfferedBinding::Mtls, None),
            _ => (OfferedBinding::Dpop, Some(self.dpop.verify(headers, now)?)),
        };
        let via = req.capability.via;
        let grant = self
            .policy
            .grant(&client.client_id, &req.capability, offered)
            .map_err(|e| OAuthError::from_policy(&e, via))?;

        if let Some((key, until)) = client.replay {
            if self.replay.record(key, until, now).await? == Seen::Again {
                return Err(AuthError::Replayed.into());
            }
        }
        let cnf = match (proof, peer_certificate) {
            (Some(proof), _) => {
                let (key, until) = self.dpop.replay_entry(&proof);
                if self.replay.record(key, until, now).await? == Seen::Again {
                    return Err(DpopError::Invalid(ProofError::Replayed).into());
                }
                Confirmation::Jkt(proof.jkt)
            }
            (None, Some(der)) => Confirmation::X5tS256(b64_encode(openssl::sha::sha256(der))),
            (None, None) => return Err(DpopError::Missing.into()),
        };

        let minted = self.minter.mint(&client.client_id, &grant, cnf, now).await.map_err(|e| {
            tracing::error!(error = %e, "minting failed");
            OAuthError::from(e)
        })?;
        Ok(Issued { client, grant, via, minted })
    }

    fn success(&self, issued: Issued, nonce: Option<String>) -> Response<Body> {
        let Issued { grant, via, minted, .. } = issued;
        let mut detail = json!({
            "type": CAPABILITY_TYPE,
            "template": grant.template.name,
            "action": grant.action,
            "limit": grant.limit,
            "locations": grant.audience,
        });
        if !grant.subcap.is_empty() {
            detail["subcap"] = grant.subcap.clone().into();
        }
        let token_type = match minted.claims.cnf {
            Confirmation::Jkt(_) => "DPoP",
            _ => "Bearer",
        };
        let mut body = json!({
            "access_token": minted.token,
            "token_type": token_type,
            "expires_in": minted.claims.ttl(),
            "authorization_details": [detail],
        });
        if via == RequestedVia::Scope {
            body["scope"] = grant.template.name.clone().into();
        }
        let mut res = json_response(StatusCode::OK, &body);
        let h = res.headers_mut();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(v) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            h.insert("dpop-nonce", v);
        }
        res
    }
}
