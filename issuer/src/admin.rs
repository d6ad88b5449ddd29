//! The admin listener: liveness, readiness and Prometheus metrics, apart
//! from the public one so that probes and scrapes never compete with token
//! traffic and are never exposed; and the revocation API
//! (`POST /admin/revocations`) when configured. Its requests are observed
//! like the public listener's (request id, duration, server span).

use crate::http::{finish_observation, text_response, Body, ConnectionInfo, Handler, Observer, OTHER_ROUTE};
use crate::replay::ReplayCache;
use crate::revocation::AdminRevocations;
use crate::signer::Signer;
use ekey_telemetry::{Telemetry, PROMETHEUS_CONTENT_TYPE};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// The path of the revocation API.
pub(crate) const REVOCATIONS_PATH: &str = "/admin/revocations";
/// Liveness.
pub(crate) const HEALTHZ_PATH: &str = "/healthz";
/// Readiness.
pub(crate) const READYZ_PATH: &str = "/readyz";
/// Prometheus text.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// `/healthz`, `/readyz`, `/metrics` and `/admin/revocations`.
#[derive(Debug)]
pub(crate) struct AdminApp {
    pub signer: Arc<dyn Signer>,
    /// The replay cache (and, on the same Redis, the rate limits): a
    /// shared one must answer for the replica to be ready.
    pub replay: Arc<dyn ReplayCache>,
    /// Set when shutdown starts, so load balancers stop sending traffic
    /// while in-flight requests drain.
    pub draining: Arc<AtomicBool>,
    pub probe_timeout: Duration,
    /// The revocation API; `None` when `[revocation]` is not configured.
    pub revocations: Option<Arc<AdminRevocations>>,
    /// The metrics of `/metrics`.
    pub telemetry: Telemetry,
    pub observer: Observer,
}

impl Handler for AdminApp {
    async fn handle(&self, req: Request<Incoming>, _conn: &ConnectionInfo) -> Response<Body> {
        let (obs, span) = self.observer.start(req.method(), route_label(req.uri().path()), req.headers());
        let res = async {
            if req.uri().path() == REVOCATIONS_PATH {
                return match &self.revocations {
                    Some(api) => api.handle(req).await,
                    None => text_response(StatusCode::NOT_FOUND, "revocation API not configured ([revocation])\n"),
                };
            }
            self.route(req.method(), req.uri().path()).await
        }
        .instrument(span.clone())
        .await;
        finish_observation(obs, &span, res)
    }
}

/// The `http.route` of a path on this listener.
fn route_label(path: &str) -> &'static str {
    match path {
        HEALTHZ_PATH => HEALTHZ_PATH,
        READYZ_PATH => READYZ_PATH,
        METRICS_PATH => METRICS_PATH,
        REVOCATIONS_PATH => REVOCATIONS_PATH,
        _ => OTHER_ROUTE,
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
            HEALTHZ_PATH => text_response(StatusCode::OK, "ok\n"),
            // The config was loaded and checked before the listener was
            // bound, so a process that answers has it; what can change is
            // the signer, the shared replay cache and shutdown.
            READYZ_PATH => match self.readiness().await {
                Ok(()) if self.replay.backend() == "memory" => {
                    text_response(StatusCode::OK, "ready: config loaded, signer ok\n")
                }
                Ok(()) => text_response(
                    StatusCode::OK,
                    format!("ready: config loaded, signer ok, replay cache ({}) ok\n", self.replay.backend()),
                ),
                Err(why) => {
                    tracing::warn!(reason = %why, "not ready");
                    text_response(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"))
                }
            },
            METRICS_PATH => match self.telemetry.prometheus_text() {
                Ok(text) => {
                    let mut res = text_response(StatusCode::OK, text);
                    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE));
                    res
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot render /metrics");
                    text_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n")
                }
            },
            _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Every reason not to be ready, checked at once (the signer and the
    /// replay cache concurrently, each bounded).
    async fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        let signer = async {
            match tokio::time::timeout(self.probe_timeout, self.signer.ready()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("signer: {e}")),
                Err(_) => Some(format!("signer: no answer within {:?}", self.probe_timeout)),
            }
        };
        let replay = async {
            // The cache bounds its own check (request_timeout_ms); this
            // bound is for a cache that does not.
            match tokio::time::timeout(self.probe_timeout, self.replay.check()).await {
                Ok(Ok(())) => None,
                Ok(Err(crate::replay::ReplayError::Unavailable(why))) => {
                    Some(format!("replay cache ({}): {why}", self.replay.backend()))
                }
                Ok(Err(e)) => Some(format!("replay cache ({}): {e}", self.replay.backend())),
                Err(_) => {
                    Some(format!("replay cache ({}): no answer within {:?}", self.replay.backend(), self.probe_timeout))
                }
            }
        };
        let (signer, replay) = tokio::join!(signer, replay);
        let reasons: Vec<String> = signer.into_iter().chain(replay).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
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

    fn admin_app(signer: Arc<dyn Signer>, draining: Arc<AtomicBool>) -> AdminApp {
        let telemetry = Telemetry::start(
            "test",
            "0",
            &ekey_telemetry::TelemetryConfig { otlp: ekey_telemetry::OtlpMode::Off, ..Default::default() },
            &ekey_telemetry::AuditConfig { sink: ekey_telemetry::AuditSinkKind::Off, path: None },
        )
        .unwrap();
        AdminApp {
            signer,
            replay: Arc::new(crate::replay::MemoryReplayCache::new(100)),
            draining,
            probe_timeout: Duration::from_secs(1),
            revocations: None,
            observer: Observer::new(&telemetry),
            telemetry,
        }
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let local = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let app = admin_app(local, Arc::new(AtomicBool::new(false)));
        let (obs, span) = app.observer.start(&Method::GET, READYZ_PATH, &http::HeaderMap::new());
        finish_observation(obs, &span, text_response(StatusCode::OK, ""));
        let res = app.route(&Method::GET, METRICS_PATH).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[CONTENT_TYPE], PROMETHEUS_CONTENT_TYPE);
        let body = text(res).await;
        assert!(body.contains("http_server_request_duration_seconds_bucket{"), "{body}");
        assert!(body.contains("http_route=\"/readyz\""), "{body}");
        assert_eq!(route_label("/metrics?x"), OTHER_ROUTE);
        assert_eq!(route_label(REVOCATIONS_PATH), REVOCATIONS_PATH);
    }

    #[tokio::test]
    async fn ready_until_draining_or_signer_down() {
        let local = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let draining = Arc::new(AtomicBool::new(false));
        let app = admin_app(local.clone(), draining.clone());
        assert_eq!(app.route(&Method::GET, "/healthz").await.status(), 200);
        assert_eq!(app.route(&Method::GET, "/readyz").await.status(), 200);
        draining.store(true, Ordering::SeqCst);
        let res = app.route(&Method::GET, "/readyz").await;
        assert_eq!(res.status(), 503);
        assert_eq!(text(res).await, "not ready: shutting down\n");
        assert_eq!(app.route(&Method::GET, "/healthz").await.status(), 200);

        let down = admin_app(Arc::new(Down(local.public_jwk().clone())), Arc::new(AtomicBool::new(false)));
        let res = down.route(&Method::GET, "/readyz").await;
        assert_eq!(res.status(), 503);
        assert_eq!(text(res).await, "not ready: signer: signer unavailable: throttled\n");
        assert_eq!(down.route(&Method::POST, "/readyz").await.status(), 405);
        assert_eq!(down.route(&Method::GET, "/nope").await.status(), 404);
    }
}
