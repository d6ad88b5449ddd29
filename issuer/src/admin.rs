//! The admin listener: liveness and readiness, apart from the public one so
//! that probes never compete with token traffic and are never exposed; and
//! the revocation API (`POST /admin/revocations`) when configured.

use crate::http::{text_response, Body, ConnectionInfo, Handler};
use crate::revocation::AdminRevocations;
use crate::signer::Signer;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The path of the revocation API.
pub(crate) const REVOCATIONS_PATH: &str = "/admin/revocations";

/// `/healthz`, `/readyz` and `/admin/revocations`.
#[derive(Debug)]
pub(crate) struct AdminApp {
    pub signer: Arc<dyn Signer>,
    /// Set when shutdown starts, so load balancers stop sending traffic
    /// while in-flight requests drain.
    pub draining: Arc<AtomicBool>,
    pub probe_timeout: Duration,
    /// The revocation API; `None` when `[revocation]` is not configured.
    pub revocations: Option<Arc<AdminRevocations>>,
}

impl Handler for AdminApp {
    async fn handle(&self, req: Request<Incoming>, _conn: &ConnectionInfo) -> Response<Body> {
        if req.uri().path() == REVOCATIONS_PATH {
            return match &self.revocations {
                Some(api) => api.handle(req).await,
                None => text_response(StatusCode::NOT_FOUND, "revocation API not configured ([revocation])\n"),
            };
        }
        self.route(req.method(), req.uri().path()).await
    }
}

impl AdminApp {
    pub(crate) async fn route(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match path {
            // Alive: the process answers. Nothing else is checked, so a
            // signer outage never gets the process restarted.
            "/healthz" => text_response(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness().await {
                Ok(()) => text_response(StatusCode::OK, "ready: config loaded, signer ok\n"),
                Err(why) => {
                    tracing::warn!(reason = %why, "not ready");
                    text_response(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"))
                }
            },
            _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        match tokio::time::timeout(self.probe_timeout, self.signer.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("signer: {e}")),
            Err(_) => Err(format!("signer: no answer within {:?}", self.probe_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{LocalSigner, SignError};
    use ekey_verifier::{Algorithm, PublicJwk};
    use http_body_util::BodyExt;

    #[derive(Debug)]
    struct Down(PublicJwk);

    #[async_trait::async_trait]
    impl Signer for Down {
        fn algorithm(&self) -> Algorithm {
            Algorithm::ES256
        }
        fn public_jwk(&self) -> &PublicJwk {
            &self.0
        }
        async fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
            Err(SignError::Unavailable { reason: "throttled".into(), retry_after: None })
        }
    }

    async fn text(res: Response<Body>) -> String {
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn ready_until_draining_or_signer_down() {
        let local = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let draining = Arc::new(AtomicBool::new(false));
        let app = AdminApp {
            signer: local.clone(),
            draining: draining.clone(),
            probe_timeout: Duration::from_secs(1),
            revocations: None,
        };
        assert_eq!(app.route(&Method::GET, "/healthz").await.status(), 200);
        assert_eq!(app.route(&Method::GET, "/readyz").await.status(), 200);
        draining.store(true, Ordering::SeqCst);
        let res = app.route(&Method::GET, "/readyz").await;
        assert_eq!(res.status(), 503);
        assert_eq!(text(res).await, "not ready: shutting down\n");
        assert_eq!(app.route(&Method::GET, "/healthz").await.status(), 200);

        let down = AdminApp {
            signer: Arc::new(Down(local.public_jwk().clone())),
            draining: Arc::new(AtomicBool::new(false)),
            probe_timeout: Duration::from_secs(1),
            revocations: None,
        };
        let res = down.route(&Method::GET, "/readyz").await;
        assert_eq!(res.status(), 503);
        assert!(text(res).await.contains("signer unavailable: throttled"));
        assert_eq!(down.route(&Method::POST, "/readyz").await.status(), 405);
        assert_eq!(down.route(&Method::GET, "/nope").await.status(), 404);
    }
}
