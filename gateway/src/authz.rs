//! The authorization decision for one gateway sub-request, in each
//! gateway's dialect:
//!
//! | endpoint | gateway | original method / URL from |
//! |---|---|---|
//! | `/nginx` | nginx `auth_request` | `X-Original-Method`, `X-Original-URI` (+ `X-Forwarded-Proto/Host`) |
//! | `/forward-auth` | Traefik `forwardAuth`, Caddy `forward_auth` | `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Proto/Host` |
//! | `{envoy_prefix}/…` | Envoy `ext_authz` (HTTP) | the request's own method and path after the prefix, `Host` |
//!
//! Only a peer in `trusted_proxies` may say what the original request was:
//! from anyone else those headers are ignored, so `/nginx` and
//! `/forward-auth` have no original request and answer 403
//! (`X-Ekey-Reason: untrusted_peer`), and `/envoy` is checked against the
//! URL of the request itself.
//!
//! Certificate-bound tokens take the client certificate from the configured
//! header (`client_cert_header`: Envoy XFCC, nginx escaped PEM, PEM), again
//! only from a trusted proxy.
//!
//! Answers: 200 with `X-Ekey-Sub`, `X-Ekey-Trace`, `X-Ekey-Action`,
//! `X-Ekey-Remaining` for the upstream; or the verifier's rejection (401 +
//! `WWW-Authenticate` [+ `DPoP-Nonce`], 403, 503 + `Retry-After`), always
//! with `X-Ekey-Reason`.

use ekey_verifier::mtls::{ClientCert, ClientCertSource};
use ekey_verifier::{
    ExternalUrl, JwsError, NonceSource, PresentedRequest, ProofError, RedisRevocationFeed, Rejection, RequestOrigin,
    TokenError, VerifiedCapability, Verifier,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// Headers of a successful answer, for the upstream.
pub const SUB: &str = "x-ekey-sub";
/// The token's trace id.
pub const TRACE: &str = "x-ekey-trace";
/// The capability action that matched.
pub const ACTION: &str = "x-ekey-action";
/// Uses left after this one.
pub const REMAINING: &str = "x-ekey-remaining";
/// Why a request was refused (low-cardinality, see `Rejection::reason`).
pub const REASON: &str = "x-ekey-reason";

const PREFIX: &str = "x-forwarded-prefix";

/// Which gateway dialect a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// nginx `auth_request`.
    Nginx,
    /// Traefik `forwardAuth` / Caddy `forward_auth`.
    ForwardAuth,
    /// Envoy `ext_authz` HTTP service.
    Envoy,
}

/// Decides gateway sub-requests. Cheap to share.
#[derive(Debug)]
pub struct Authz {
    verifier: Arc<Verifier>,
    external: ExternalUrl,
    certs: ClientCertSource,
    listener_scheme: &'static str,
    envoy_prefix: String,
    nonce: Option<NonceSource>,
    /// Keeps the revocation rules fresh while the gateway runs.
    _feed: Option<RedisRevocationFeed>,
}

/// Characters escaped in identity header values (non-ASCII is always escaped).
const HEADER_UNSAFE: &AsciiSet = &CONTROLS.add(b'%').add(b'"');

impl Authz {
    /// `nonce` is the same source the verifier checks against, to hand the
    /// current nonce out on success.
    /// `certs` reads client certificates from a trusted proxy's header.
    pub fn new(
        verifier: Arc<Verifier>,
        external: ExternalUrl,
        certs: ClientCertSource,
        listener_scheme: &'static str,
        envoy_prefix: String,
        nonce: Option<NonceSource>,
    ) -> Self {
        Self { verifier, external, certs, listener_scheme, envoy_prefix, nonce, _feed: None }
    }

    /// Keeps `feed` (which refreshes the verifier's revocation rules) alive
    /// as long as this.
    pub fn keeping(mut self, feed: Option<RedisRevocationFeed>) -> Self {
        self._feed = feed;
        self
    }

    /// The dialect of a request path, if it is an authz endpoint.
    pub fn dialect(&self, path: &str) -> Option<Dialect> {
        match path {
            "/nginx" => Some(Dialect::Nginx),
            "/forward-auth" => Some(Dialect::ForwardAuth),
            p if p.strip_prefix(self.envoy_prefix.as_str()).is_some_and(|rest| rest.starts_with('/')) => {
                Some(Dialect::Envoy)
            }
            _ => None,
        }
    }

    /// The answer to one sub-request from `peer`.
    pub async fn decide(&self, dialect: Dialect, peer: IpAddr, head: &Parts) -> Response<()> {
        let trusted = self.external.is_trusted(Some(peer));
        let original = match dialect {
            Dialect::Nginx => original_from_headers(trusted, &head.headers, "x-original-method", "x-original-uri"),
            Dialect::ForwardAuth => {
                original_from_headers(trusted, &head.headers, "x-forwarded-method", "x-forwarded-uri")
            }
            Dialect::Envoy => {
                let pq = head.uri.path_and_query().map_or("", |p| p.as_str());
                match pq.strip_prefix(self.envoy_prefix.as_str()) {
                    Some(rest) if rest.starts_with('/') => Ok((head.method.clone(), rest.to_owned())),
                    _ => Err("no_original_request"),
                }
            }
        };
        let (method, uri) = match original {
            Ok(o) => o,
            Err(reason) => {
                tracing::info!(event = "verify", outcome = "refused", reason, %peer, "no usable original request");
                return refusal(StatusCode::FORBIDDEN, reason);
            }
        };
        // nginx, Traefik and Caddy set X-Forwarded-Proto/Host themselves but pass
        // a client's `Forwarded` and `X-Forwarded-Prefix` through untouched:
        // in their dialects those two never describe the original request.
        let headers = match dialect {
            Dialect::Nginx | Dialect::ForwardAuth
                if head.headers.contains_key(http::header::FORWARDED) || head.headers.contains_key(PREFIX) =>
            {
                let mut h = head.headers.clone();
                h.remove(http::header::FORWARDED);
                h.remove(PREFIX);
                Cow::Owned(h)
            }
            _ => Cow::Borrowed(&head.headers),
        };
        let origin = RequestOrigin {
            peer: Some(peer),
            listener_scheme: self.listener_scheme,
            authority: None,
            path_and_query: &uri,
            headers: &headers,
        };
        let url = match self.external.rebuild(&origin) {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(event = "verify", outcome = "refused", reason = "bad_original_url", error = %e, %peer);
                // nginx turns anything but 2xx/401/403 into a 500.
                let status = if dialect == Dialect::Nginx { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
                return refusal(status, "bad_original_url");
            }
        };
        match self.verify(&method, &url, peer, &head.headers).await {
            Ok(cap) => {
                tracing::info!(
                    event = "verify", outcome = "accepted", sub = %cap.sub, trace = %cap.trace,
                    action = %cap.action, remaining = cap.remaining, %url
                );
                self.accepted(&cap)
            }
            Err(rejection) => {
                tracing::info!(event = "verify", outcome = "refused", reason = rejection.reason(), %url, "{rejection}");
                self.rejected(&rejection)
            }
        }
    }

    /// The verifier's checks, with the client certificate from a trusted
    /// proxy's header (never from anyone else's).
    async fn verify(
        &self,
        method: &Method,
        url: &str,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<VerifiedCapability, Rejection> {
        let cert: Option<ClientCert> = self.certs.client_certificate(peer, headers, None)?;
        let authorization = match headers.get_all(http::header::AUTHORIZATION).iter().collect::<Vec<_>>()[..] {
            [] => None,
            [one] => Some(one.to_str().map_err(|_| TokenError::Binding("Authorization header is not ASCII"))?),
            _ => return Err(TokenError::Binding("more than one Authorization header").into()),
        };
        let dpop = headers
            .get_all("dpop")
            .iter()
            .map(|v| v.to_str().map_err(|_| Rejection::InvalidProof(ProofError::Malformed(JwsError::NotCompact))))
            .collect::<Result<Vec<_>, _>>()?;
        let req = PresentedRequest { method: method.as_str(), url, authorization, dpop: &dpop, peer_certificate: None };
        self.verifier.verify_with_client_cert(&req, cert.as_ref()).await
    }

    fn accepted(&self, cap: &VerifiedCapability) -> Response<()> {
        let mut res = Response::new(());
        let h = res.headers_mut();
        put(h, SUB, &cap.sub);
        put(h, TRACE, &cap.trace);
        put(h, ACTION, &cap.action);
        h.insert(REMAINING, HeaderValue::from(cap.remaining));
        if let Some(n) = &self.nonce {
            // A fresh nonce on every answer saves the client a 401 later (RFC 9449 §8.2).
            if let Ok(v) = HeaderValue::from_str(&n.current(self.verifier.clock().now())) {
                h.insert("dpop-nonce", v);
            }
        }
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    fn rejected(&self, rejection: &Rejection) -> Response<()> {
        let mut res = self.verifier.reject(rejection);
        res.headers_mut().insert(REASON, HeaderValue::from_static(rejection.reason()));
        res
    }
}

/// Method and request target from the gateway's headers, believed only from
/// a trusted peer.
fn original_from_headers(
    trusted: bool,
    headers: &HeaderMap,
    method_header: &str,
    uri_header: &str,
) -> Result<(Method, String), &'static str> {
    if !trusted {
        return Err("untrusted_peer");
    }
    let one = |name: &str| -> Option<&str> {
        let mut all = headers.get_all(name).iter();
        let v = all.next()?;
        all.next().is_none().then_some(v).and_then(|v| v.to_str().ok())
    };
    let method =
        one(method_header).and_then(|m| Method::from_bytes(m.trim().as_bytes()).ok()).ok_or("no_original_request")?;
    let uri = one(uri_header).map(str::trim).filter(|u| u.starts_with('/')).ok_or("no_original_request")?;
    Ok((method, uri.to_owned()))
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    let encoded = utf8_percent_encode(value, HEADER_UNSAFE).to_string();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn refusal(status: StatusCode, reason: &'static str) -> Response<()> {
    let mut res = Response::new(());
    *res.status_mut() = status;
    res.headers_mut().insert(REASON, HeaderValue::from_static(reason));
    res.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
