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
//! The capability is matched on the path of the original request target as
//! the gateway received it (raw, without the query), which the verifier
//! refuses unless it is in normal form; the DPoP proof is checked against
//! the external URL rebuilt around it.
//!
//! Answers: 200 with `X-Ekey-Sub`, `X-Ekey-Trace`, `X-Ekey-Action`,
//! `X-Ekey-Remaining` for the upstream; or the verifier's rejection (401 +
//! `WWW-Authenticate` [+ `DPoP-Nonce`], 400, 403, 503 + `Retry-After`),
//! always with `X-Ekey-Reason`. nginx's `auth_request` passes on only 2xx,
//! 401 and 403, so in its dialect a 400 is answered as 403.
//!
//! Every answer that looked at a token is a verify [`Decision`] (for the
//! audit event, the span and the logs) and is counted once in
//! `ekey.verify.decisions` by the verifier, which also says whose token it
//! refused once the token proved authentic. A request with no usable
//! original request (`untrusted_peer`, `no_original_request`,
//! `bad_original_url`) is not a verify decision: no token was looked at.

use ekey_verifier::mtls::ClientCertSource;
use ekey_verifier::{
    ExternalUrl, NonceSource, Outcome, PresentedRequest, RedisRevocationFeed, Refusal, Rejection, RequestOrigin,
    TokenIds, VerifiedCapability, Verifier,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
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

/// What one verify decision was about, for the audit event, the span and
/// the logs. Holds identifiers only, never a token, proof or header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `success` or the refusal class.
    pub outcome: Outcome,
    /// The token's subject, when known: on success, and on a refusal made
    /// after the verifier found the token authentic ([`Refusal::token`]).
    pub sub: Option<String>,
    /// The token's trace id (`jti`), when known.
    pub trace: Option<String>,
    /// On success the action that matched (`X-Ekey-Action`); on a refusal
    /// the token's `cap.action`, when known.
    pub action: Option<String>,
    /// The template named by the token, when known.
    pub template: Option<String>,
    /// The end client's address: from the trusted proxy's
    /// `X-Forwarded-For` when the peer is a trusted proxy, else the peer.
    pub client: IpAddr,
}

impl Decision {
    /// The fixed reason of a refusal (the `X-Ekey-Reason` value); `None` on success.
    pub fn reason(&self) -> Option<&'static str> {
        (self.outcome != Outcome::Success).then(|| self.outcome.as_str())
    }
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

    /// The Envoy endpoint's path prefix (its `http.route`).
    pub fn envoy_prefix(&self) -> &str {
        &self.envoy_prefix
    }

    /// The verifier.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The answer to one sub-request from `peer`, and the verify decision it
    /// made (`None` when there was no usable original request to check).
    pub async fn decide(&self, dialect: Dialect, peer: IpAddr, head: &Parts) -> (Response<()>, Option<Decision>) {
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
                tracing::info!(reason, %peer, "refused: no usable original request");
                return (refusal(StatusCode::FORBIDDEN, reason), None);
            }
        };
        let origin = RequestOrigin {
            peer: Some(peer),
            listener_scheme: self.listener_scheme,
            authority: None,
            path_and_query: &uri,
            headers: &head.headers,
        };
        let url = match self.external.rebuild(&origin) {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(reason = "bad_original_url", error = %e, %peer, "refused: no usable original URL");
                // nginx turns anything but 2xx/401/403 into a 500.
                let status = if dialect == Dialect::Nginx { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
                return (refusal(status, "bad_original_url"), None);
            }
        };
        let client = if trusted { forwarded_client(&self.external, &head.headers).unwrap_or(peer) } else { peer };
        match self.verify(&method, &url, &uri, peer, &head.headers).await {
            Ok(cap) => {
                let decision = Decision {
                    outcome: Outcome::Success,
                    sub: Some(cap.sub.clone()),
                    trace: Some(cap.trace.clone()),
                    action: Some(cap.action.clone()),
                    template: cap.template.clone(),
                    client,
                };
                (self.accepted(&cap), Some(decision))
            }
            Err(Refusal { rejection, token }) => {
                let outcome = rejection.outcome();
                // Rejection texts name the failed check; they never hold a
                // token or proof, but may quote decoded claims: debug only.
                tracing::debug!(reason = outcome.as_str(), detail = %rejection, "refusal detail");
                let (sub, trace, action, template) = match token {
                    Some(TokenIds { sub, trace, action, template }) => (Some(sub), Some(trace), Some(action), template),
                    None => (None, None, None, None),
                };
                let decision = Decision { outcome, sub, trace, action, template, client };
                (self.rejected(dialect, &rejection), Some(decision))
            }
        }
    }

    /// The verifier's decision on the original request: `target` is its
    /// request target as the gateway was told it (the capability is matched
    /// on its path), with the client certificate from a trusted proxy's
    /// header (never from anyone else's). Refusals of the certificate header
    /// are decisions like any other.
    async fn verify(
        &self,
        method: &Method,
        url: &str,
        target: &str,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<VerifiedCapability, Refusal> {
        let cert = self.certs.client_certificate(peer, headers, None).map_err(Rejection::from);
        let read = match &cert {
            Ok(cert) => PresentedRequest::from_http(method, url, headers, cert.as_ref()).map(|r| r.with_path(target)),
            Err(r) => Err(r.clone()),
        };
        self.verifier.decide(read).await
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

    fn rejected(&self, dialect: Dialect, rejection: &Rejection) -> Response<()> {
        let mut res = self.verifier.reject(rejection);
        // nginx turns anything but 2xx/401/403 into a 500 (and then a 503).
        if dialect == Dialect::Nginx && res.status() == StatusCode::BAD_REQUEST {
            *res.status_mut() = StatusCode::FORBIDDEN;
        }
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

/// The end client behind a trusted proxy: the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy (entries further left were
/// written by the client or untrusted hops and prove nothing). `None` when
/// there is no such header or that entry is not an IP address.
fn forwarded_client(external: &ExternalUrl, headers: &HeaderMap) -> Option<IpAddr> {
    let mut entries = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        entries.extend(v.to_str().ok()?.split(',').map(str::trim));
    }
    let mut last = None;
    for entry in entries.iter().rev() {
        let ip = node_ip(entry)?;
        last = Some(ip);
        if !external.is_trusted(Some(ip)) {
            return Some(ip);
        }
    }
    // Every hop is a trusted proxy: the left-most is the closest to the client.
    last
}

/// `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    node.parse().ok().or_else(|| node.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::ExternalUrlSettings;

    fn ext() -> ExternalUrl {
        ExternalUrl::new(&ExternalUrlSettings {
            trusted_proxies: vec!["10.0.0.0/8".into(), "127.0.0.1/32".into()],
            ..ExternalUrlSettings::default()
        })
        .unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn client_is_the_rightmost_untrusted_hop() {
        let e = ext();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_client(&e, &xff(&["192.0.2.7"])), ip("192.0.2.7"));
        // A client cannot pick its address by prepending entries.
        assert_eq!(forwarded_client(&e, &xff(&["198.51.100.1, 192.0.2.7, 10.0.0.5"])), ip("192.0.2.7"));
        assert_eq!(forwarded_client(&e, &xff(&["198.51.100.1", "192.0.2.7:5555"])), ip("192.0.2.7"));
        assert_eq!(forwarded_client(&e, &xff(&["[2001:db8::1]:443"])), ip("2001:db8::1"));
        assert_eq!(forwarded_client(&e, &xff(&["10.0.0.9, 127.0.0.1"])), ip("10.0.0.9"));
        assert_eq!(forwarded_client(&e, &xff(&["unknown"])), None);
        assert_eq!(forwarded_client(&e, &HeaderMap::new()), None);
    }
}
