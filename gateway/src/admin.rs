//! The admin listener (`server.admin_listen`): `GET /healthz` (the process
//! answers), `GET /readyz` (the store answers and the issuer's keys are
//! loaded) and `GET /metrics` (Prometheus text).
//!
//! Plain HTTP without credentials: keep it on loopback or a private network.

use bytes::Bytes;
use ekey_telemetry::{Telemetry, PROMETHEUS_CONTENT_TYPE};
use ekey_verifier::{HttpJwks, UsageStore};
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long `/readyz` waits for the store and for a JWKS fetch, each.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks.
#[derive(Debug)]
pub struct Readiness {
    store: Arc<dyn UsageStore>,
    keys: KeysReady,
    shutting_down: AtomicBool,
}

/// Whether the verifier has keys to check tokens with.
#[derive(Debug)]
pub enum KeysReady {
    /// `verifier.jwks_file`: read at start; ready when it holds a key.
    File {
        /// Keys in the file.
        count: usize,
    },
    /// `verifier.jwks_url`: ready once a set has been fetched. Until then
    /// each `/readyz` tries one fetch (single-flight with the verifier's).
    Url {
        /// The verifier's key source.
        jwks: Arc<HttpJwks>,
        /// A fetch has succeeded (the set, once fetched, stays in use).
        fetched: AtomicBool,
    },
}

impl Readiness {
    /// Checks `store` and `keys`.
    pub fn new(store: Arc<dyn UsageStore>, keys: KeysReady) -> Self {
        Self { store, keys, shutting_down: AtomicBool::new(false) }
    }

    /// From now on `/readyz` answers 503 (`shutting down`).
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else every reason why not, `; `-separated, e.g.
    /// `store (redis): redis PING: unreachable: …`.
    pub async fn check(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        let (store, keys) = tokio::join!(self.check_store(), self.check_keys());
        let reasons: Vec<String> = [store, keys].into_iter().filter_map(Result::err).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    async fn check_store(&self) -> Result<(), String> {
        let backend = self.store.backend_name();
        match tokio::time::timeout(READY_TIMEOUT, self.store.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("store ({backend}): {e}")),
            Err(_) => Err(format!("store ({backend}): no answer within {} s", READY_TIMEOUT.as_secs())),
        }
    }

    async fn check_keys(&self) -> Result<(), String> {
        match &self.keys {
            KeysReady::File { count: 0 } => Err("keys: verifier.jwks_file holds no key".into()),
            KeysReady::File { .. } => Ok(()),
            KeysReady::Url { fetched, .. } if fetched.load(Ordering::Relaxed) => Ok(()),
            KeysReady::Url { jwks, fetched } => match tokio::time::timeout(READY_TIMEOUT, jwks.refresh()).await {
                Ok(Ok(())) => {
                    fetched.store(true, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Err(e)) => Err(format!("keys: {e}")),
                Err(_) => Err(format!("keys: JWKS fetch: no answer within {} s", READY_TIMEOUT.as_secs())),
            },
        }
    }
}

/// The answer to one admin request.
pub async fn handle(method: &Method, path: &str, ready: &Readiness, telemetry: &Telemetry) -> Response<Full<Bytes>> {
    let known = matches!(path, "/healthz" | "/readyz" | "/metrics");
    if known && method != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match ready.check().await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => {
                tracing::debug!(reason = %why, "not ready");
                text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"))
            }
        },
        "/metrics" => match telemetry.prometheus_text() {
            Ok(body) => {
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE));
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot render /metrics");
                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n".into())
            }
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
