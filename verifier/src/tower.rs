//! A tower middleware that verifies every request (feature `tower`).
//!
//! [`VerifyLayer`] wraps a service: each request is read with
//! [`PresentedRequest::from_http`] and decided by [`Verifier::decide`]. The
//! DPoP proof is checked against the request's external URL (rebuilt by
//! [`ExternalUrl`]: public base URL, trusted proxy headers, or the
//! connection); the capability is matched on the request's own path, the
//! one the inner service routes, which must be in normal form. The request
//! either reaches the inner service with the [`VerifiedCapability`] in its
//! extensions or is answered right here with the mapped rejection (401 +
//! `WWW-Authenticate: DPoP …`, 400, 403, 503 + `Retry-After`; 400 also when
//! no external URL can be built). The inner service is not called for
//! refused requests.
//!
//! The layer reads from the request's extensions, when present:
//! - [`PeerAddr`] (or, with feature `axum`, `axum::extract::ConnectInfo<SocketAddr>`):
//!   the TCP peer, needed to believe a trusted proxy's forwarding headers;
//! - [`PeerCertificate`]: the DER of the client's TLS certificate, for
//!   certificate-bound tokens (behind a TLS-terminating proxy, see
//!   [`VerifyLayer::client_certs`]).
//!
//! # Example
//!
//! ```
//! # fn demo(verifier: ekey_verifier::Verifier) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ekey_verifier::{tower::VerifyLayer, ExternalUrl, ExternalUrlSettings, VerifiedCapability};
//! use tower::{service_fn, Layer};
//!
//! let external = ExternalUrl::new(&ExternalUrlSettings {
//!     trusted_proxies: vec!["127.0.0.1/32".into()],
//!     ..ExternalUrlSettings::default()
//! })?;
//! let service = VerifyLayer::new(Arc::new(verifier), external).layer(service_fn(
//!     |req: http::Request<String>| async move {
//!         let cap = req.extensions().get::<VerifiedCapability>().expect("set by the layer");
//!         Ok::<_, std::convert::Infallible>(http::Response::new(format!("hello {}", cap.sub)))
//!     },
//! ));
//! # let _ = service;
//! # Ok(()) }
//! ```

use crate::error::Rejection;
use crate::external_url::{ExternalUrl, RequestOrigin};
use crate::mtls::{ClientCert, ClientCertSource};
use crate::request::PresentedRequest;
use crate::verifier::{VerifiedCapability, Verifier};
use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The TCP peer of a request, put into its extensions by the server (hyper
/// users: `req.extensions_mut().insert(PeerAddr(addr))`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The DER of the client's TLS certificate, put into the request's extensions
/// by the TLS acceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate(pub Arc<[u8]>);

/// Wraps services in [`VerifyService`].
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    verifier: Arc<Verifier>,
    external: ExternalUrl,
    listener_scheme: &'static str,
    certs: ClientCertSource,
}

impl VerifyLayer {
    /// A layer for a plain-HTTP listener.
    pub fn new(verifier: Arc<Verifier>, external: ExternalUrl) -> Self {
        Self {
            shared: Arc::new(Shared { verifier, external, listener_scheme: "http", certs: ClientCertSource::direct() }),
        }
    }

    /// The same for a TLS listener: external URLs built from the connection
    /// say `https`.
    pub fn https(verifier: Arc<Verifier>, external: ExternalUrl) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                external,
                listener_scheme: "https",
                certs: ClientCertSource::direct(),
            }),
        }
    }

    /// Where client certificates come from, for certificate-bound tokens.
    /// Defaults to [`ClientCertSource::direct`]: the [`PeerCertificate`]
    /// extension only. Behind a TLS-terminating proxy, a
    /// [`ClientCertSource::behind_proxy`] reads the proxy's header — only
    /// from its trusted addresses.
    pub fn client_certs(self, certs: ClientCertSource) -> Self {
        let s = &self.shared;
        Self {
            shared: Arc::new(Shared {
                verifier: Arc::clone(&s.verifier),
                external: s.external.clone(),
                listener_scheme: s.listener_scheme,
                certs,
            }),
        }
    }

    /// Verifies one request head: the capability, or the complete answer to
    /// send instead (with an empty body).
    pub async fn check(&self, head: &Parts) -> Result<VerifiedCapability, Response<()>> {
        self.shared.check(head).await
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService { inner, shared: Arc::clone(&self.shared) }
    }
}

/// Verifies each request, then calls the inner service with the
/// [`VerifiedCapability`] in the request's extensions.
#[derive(Debug, Clone)]
pub struct VerifyService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The future of [`VerifyService`].
pub type VerifyFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = VerifyFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service that was driven to readiness is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (mut head, body) = req.into_parts();
            match shared.check(&head).await {
                Ok(cap) => {
                    head.extensions.insert(cap);
                    inner.call(Request::from_parts(head, body)).await
                }
                Err(refusal) => Ok(refusal.map(|()| ResBody::default())),
            }
        })
    }
}

impl Shared {
    async fn check(&self, head: &Parts) -> Result<VerifiedCapability, Response<()>> {
        let peer = peer_addr(&head.extensions).map(|a| a.ip());
        let origin = RequestOrigin {
            peer,
            listener_scheme: self.listener_scheme,
            authority: head.uri.authority().map(|a| a.as_str()),
            path_and_query: head.uri.path_and_query().map_or("", |p| p.as_str()),
            headers: &head.headers,
        };
        let url = self.external.rebuild(&origin).map_err(|e| {
            tracing::debug!(error = %e, "no external URL for the request");
            bad_request()
        })?;
        let tls = head.extensions.get::<PeerCertificate>().map(|c| &c.0[..]);
        let cert = match peer {
            Some(ip) => self.certs.client_certificate(ip, &head.headers, tls).map_err(Rejection::from),
            // No peer address: no proxy can be trusted.
            None => Ok(tls.map(|der| ClientCert::Der(der.to_vec()))),
        };
        let read = match &cert {
            Ok(cert) => PresentedRequest::from_http(&head.method, &url, &head.headers, cert.as_ref())
                .map(|r| r.with_path(head.uri.path())),
            Err(r) => Err(r.clone()),
        };
        self.verifier.decide(read).await.map_err(|r| {
            tracing::debug!(reason = r.rejection.reason(), %url, "request refused");
            self.verifier.reject(&r.rejection)
        })
    }
}

fn peer_addr(ext: &http::Extensions) -> Option<SocketAddr> {
    if let Some(p) = ext.get::<PeerAddr>() {
        return Some(p.0);
    }
    #[cfg(feature = "axum")]
    if let Some(ci) = ext.get::<::axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(ci.0);
    }
    None
}

fn bad_request() -> Response<()> {
    let mut res = Response::new(());
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
