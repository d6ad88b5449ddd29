//! The admin listener (`server.admin_listen`): `GET /healthz` (the process
//! answers), `GET /readyz` (the store answers and the issuer's keys are
//! loaded; on the in-memory store it says that revocations do not reach this
//! gateway) and `GET /metrics` (Prometheus text).
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

/// The warning `/readyz` adds to `ready` on the in-memory store.
pub const NO_REVOCATION_FEED: &str = "in-memory store without a revocation feed (store.allow_without_revocation): \
     revocations made at the issuer do not reach this gateway, and each replica counts uses alone";

/// What `/readyz` checks.
#[derive(Debug)]
pub struct Readiness {
    store: Arc<dyn UsageStore>,
    keys: KeysReady,
    warning: Option<&'static str>,
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
    /// `verifier.jwks_url`: ready while a fetched set is in use (fresh, or
    /// stale for less than `max_staleness`). Otherwise each `/readyz` tries
    /// one fetch (single-flight with the verifier's).
    Url {
        /// The verifier's key source.
        jwks: Arc<HttpJwks>,
    },
}

impl Readiness {
    /// Checks `store` and `keys`.
    pub fn new(store: Arc<dyn UsageStore>, keys: KeysReady) -> Self {
        Self { store, keys, warning: None, shutting_down: AtomicBool::new(false) }
    }

    /// `/readyz` says `warning` with every `ready` (a risk the operator
    /// accepted in the config, e.g. [`NO_REVOCATION_FEED`]).
    pub fn with_warning(mut self, warning: &'static str) -> Self {
        self.warning = Some(warning);
        self
    }

    /// What `/readyz` adds to `ready`, if anything.
    pub fn warning(&self) -> Option<&'static str> {
        self.warning
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
            KeysReady::Url { jwks } if jwks.has_usable_set() => Ok(()),
            KeysReady::Url { jwks } => match tokio::time::timeout(READY_TIMEOUT, jwks.refresh()).await {
                Ok(Ok(())) => Ok(()),
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
            Ok(()) => match ready.warning() {
                None => text(StatusCode::OK, "ready\n".into()),
                Some(w) => text(StatusCode::OK, format!("ready; warning: {w}\n")),
            },
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
