//! `POST /token`: OAuth 2.0 client credentials grant that mints one
//! DPoP-bound capability token per request.
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
use ekey_verifier::{Clock, Confirmation, ProofError};
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
    pub(crate) async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
        let now = self.clock.now();
        let nonce = self.dpop.current_nonce(now);
        match self.issue(headers, body, now).await {
            Ok(issued) => {
                let c = &issued.minted.claims;
                tracing::info!(
                    client = %issued.client.client_id,
                    auth = issued.client.method.as_str(),
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

    async fn issue(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Issued, OAuthError> {
        let req = TokenRequest::parse(headers, body)?;
        let audiences = [self.token_endpoint.as_str(), self.issuer.as_str()];
        let client = self.clients.authenticate(&req.credentials, &audiences, now)?;
        let proof = self.dpop.verify(headers, now)?;
        let via = req.capability.via;
        let grant = self
            .policy
            .grant(&client.client_id, &req.capability, OfferedBinding::Dpop)
            .map_err(|e| OAuthError::from_policy(&e, via))?;

        if let Some((key, until)) = client.replay {
            if self.replay.record(key, until, now).await? == Seen::Again {
                return Err(AuthError::Replayed.into());
            }
        }
        let (key, until) = self.dpop.replay_entry(&proof);
        if self.replay.record(key, until, now).await? == Seen::Again {
            return Err(DpopError::Invalid(ProofError::Replayed).into());
        }

        let minted =
            self.minter.mint(&client.client_id, &grant, Confirmation::Jkt(proof.jkt), now).await.map_err(|e| {
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
        let mut body = json!({
            "access_token": minted.token,
            "token_type": "DPoP",
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
