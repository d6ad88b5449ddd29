//! `POST /token`: OAuth 2.0 client credentials grant that mints one bound
//! capability token per request: to the DPoP key of the request's proof, or,
//! without a `DPoP` header, to the TLS client certificate of the connection
//! (RFC 8705 §3; its thumbprint is taken from the TLS session, never from
//! the request).
//!
//! Order of work, cheapest and statelessest first: read the request, check
//! the grant type, authenticate the client, verify the DPoP proof, apply the
//! policy; only then record the assertion and proof `jti`s (so a retry after
//! `use_dpop_nonce` may reuse its assertion), spend one token of the
//! client's rate limit for the template (after the replay check, so that a
//! replayed request never spends a client's budget) and sign.
//!
//! Every request ends in one decision, which is recorded once: the metrics
//! `ekey.issue.tokens` and `ekey.issue.duration` (by `ekey.template` and
//! `ekey.outcome`), the request span's attributes, one log line and one
//! audit event (`token.issue`). None of them holds a token, proof,
//! assertion, secret or request text: outcomes are error codes, reasons
//! fixed words, and templates configured names only.

mod details;
mod error;
mod metrics;
mod request;

pub use details::CAPABILITY_TYPE;
pub use error::{ErrorCode, OAuthError};
pub(crate) use metrics::IssueMetrics;
pub use request::{CLIENT_CREDENTIALS, JWT_BEARER};

use crate::clients::{AuthError, Authenticated, ClientRegistry};
use crate::dpop::{DpopError, TokenDpop};
use crate::http::{json_response, Body, ConnectionInfo};
use crate::mint::{Minted, Minter};
use crate::policy::{Grant, OfferedBinding, Policy, RequestedVia};
use crate::ratelimit::{Admission, RateLimit, RateLimiter};
use crate::replay::{ReplayCache, Seen};
use bytes::Bytes;
use ekey_telemetry::audit::{AuditEvent, EVENT_ISSUE};
use ekey_telemetry::{AuditSink, RequestObservation, Tracer};
use ekey_verifier::{b64_encode, Clock, Confirmation, ProofError};
use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, Response, StatusCode};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use request::TokenRequest;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

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
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Per-client limits by template name.
    pub rate_limits: BTreeMap<String, RateLimit>,
    pub clock: Arc<dyn Clock>,
    pub metrics: IssueMetrics,
    pub audit: AuditSink,
    /// For the signing span, a child of the request's span.
    pub tracer: Tracer,
}

/// What is known about a request when it is decided, for the records. Every
/// field is an identifier the issuer vouches for, never raw request text.
#[derive(Debug, Default)]
struct Known {
    /// The authenticated client (the token's `sub`).
    sub: Option<String>,
    /// A configured template's name.
    template: Option<String>,
    /// The granted action.
    action: Option<String>,
    /// The issued token's `jti`.
    trace: Option<String>,
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
    /// `body` is the request body, or why it could not be read; `conn`
    /// gives the peer's address and TLS client certificate. The decision is
    /// recorded on `obs`, the metrics, the log and the audit sink.
    pub(crate) async fn handle(
        &self,
        headers: &HeaderMap,
        body: Result<Bytes, OAuthError>,
        conn: &ConnectionInfo,
        obs: &mut RequestObservation,
    ) -> Response<Body> {
        let started = Instant::now();
        let now = self.clock.now();
        let nonce = self.dpop.current_nonce(now);
        let mut known = Known::default();
        let result = match body {
            Ok(body) => {
                let parent = obs.context();
                self.issue(headers, &body, conn.peer_certificate.as_deref(), now, &mut known, &parent).await
            }
            Err(e) => Err(e),
        };
        let (response, refusal) = match result {
            Ok(issued) => {
                known.trace = Some(issued.minted.claims.jti.clone());
                (self.answer(issued, nonce), None)
            }
            Err(e) => {
                let res = e.clone().with_nonce(nonce).to_response();
                (res, Some(e))
            }
        };
        self.record(&known, refusal.as_ref(), started, conn, obs);
        response
    }

    /// The metrics, span attributes and audit event of one decision.
    fn record(
        &self,
        known: &Known,
        refusal: Option<&OAuthError>,
        started: Instant,
        conn: &ConnectionInfo,
        obs: &mut RequestObservation,
    ) {
        let outcome = refusal.map_or("issued", |e| e.code().as_str());
        let template = known.template.as_deref().unwrap_or(metrics::UNKNOWN_TEMPLATE);
        self.metrics.record(template, outcome, started.elapsed());
        obs.set_attribute(KeyValue::new("ekey.outcome", outcome));
        obs.set_attribute(KeyValue::new("ekey.template", template.to_owned()));
        if let Some(trace) = &known.trace {
            obs.set_attribute(KeyValue::new("ekey.trace", trace.clone()));
        }
        let mut event = AuditEvent::now(EVENT_ISSUE, crate::SERVICE_NAME, outcome)
            .with_client(conn.peer.ip())
            .with_request_id(obs.request_id())
            .with_trace_id(obs.trace_id());
        if let Some(e) = refusal {
            Self::log_refusal(e, known);
            obs.set_attribute(KeyValue::new("ekey.reason", e.reason()));
            event = event.with_reason(e.reason());
        }
        event.sub = known.sub.clone();
        event.trace = known.trace.clone();
        event.action = known.action.clone();
        event.template = known.template.clone();
        self.audit.emit(&event);
    }

    /// Logs the issued token (identifiers only) and builds the answer.
    fn answer(&self, issued: Issued, nonce: Option<String>) -> Response<Body> {
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

    /// Logs a refusal: code and reason at info (warn/error for our own
    /// failures); the description, which may quote request text, at debug.
    fn log_refusal(e: &OAuthError, known: &Known) {
        let client = known.sub.as_deref().unwrap_or("-");
        match e.code() {
            ErrorCode::ServerError => {
                tracing::error!(error = %e.code(), reason = e.reason(), client, "token request failed")
            }
            ErrorCode::TemporarilyUnavailable => {
                tracing::warn!(error = %e.code(), reason = e.reason(), client, "token request deferred")
            }
            _ => tracing::info!(error = %e.code(), reason = e.reason(), client, "token request refused"),
        }
        tracing::debug!(error = %e.code(), description = e.description(), "token request refusal described");
    }

    async fn issue(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        peer_certificate: Option<&[u8]>,
        now: i64,
        known: &mut Known,
        parent: &Context,
    ) -> Result<Issued, OAuthError> {
        let req = TokenRequest::parse(headers, body)?;
        // A template asked for by name is named in the records only if it
        // is configured: request text never becomes a label.
        known.template = req
            .capability
            .template
            .as_deref()
            .and_then(|name| self.policy.templates().iter().find(|t| t.name == name))
            .map(|t| t.name.clone());
        let audiences = [self.token_endpoint.as_str(), self.issuer.as_str()];
        let client = self.clients.authenticate(&req.credentials, &audiences, peer_certificate, now)?;
        known.sub = Some(client.client_id.clone());
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
        known.template = Some(grant.template.name.clone());
        known.action = Some(grant.action.clone());

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
        if let Some(limit) = self.rate_limits.get(&grant.template.name) {
            let name = &grant.template.name;
            if let Admission::Limited { retry_after } = self.rate_limiter.admit(&client.client_id, name, limit).await? {
                return Err(OAuthError::rate_limited(name, retry_after));
            }
        }

        let span = self
            .tracer
            .span_builder(format!("{}.sign", self.minter.signer_kind()))
            .with_kind(SpanKind::Internal)
            .start_with_context(&self.tracer, parent);
        let cx = parent.with_span(span);
        let minted = self.minter.mint(&client.client_id, &grant, cnf, now).await;
        match &minted {
            Ok(_) => cx.span().set_attribute(KeyValue::new("ekey.result", "ok")),
            Err(e) => {
                cx.span().set_attribute(KeyValue::new("ekey.result", "error"));
                cx.span().set_status(Status::error(e.to_string()));
            }
        }
        cx.span().end();
        let minted = minted.map_err(|e| {
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
