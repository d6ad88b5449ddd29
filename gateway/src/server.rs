//! Building the verifier from the config, binding, serving HTTP/1.1 to the
//! gateways (and the admin endpoints), and draining on shutdown.

use crate::admin::{KeysReady, Readiness};
use crate::authz::{Authz, Dialect};
use crate::config::{Config, KeysConfig, SecretSource, StoreConfig};
use crate::observe::{Observer, OTHER_ROUTE};
use bytes::Bytes;
use ekey_telemetry::{Telemetry, REQUEST_ID_HEADER};
use ekey_verifier::{
    DpopSettings, HttpJwks, HttpJwksSettings, Jwks, KeySource, MemoryStore, MemoryStoreSettings, NonceSource,
    RedisRevocationFeed, RedisStore, StaticKeys, UsageStore, Verifier, VerifierMetrics, VerifierSettings,
};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument as _;

/// How long a connection may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration (or a file it names) is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The Redis store cannot be reached or is unsafe to use.
    #[error("store.redis: {0}")]
    Store(String),
    /// The listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn invalid(field: &str, problem: impl Into<String>) -> StartError {
    StartError::Config(crate::config::ConfigError::Invalid { field: field.into(), problem: problem.into() })
}

/// Everything the two listeners serve: the authz decisions with their
/// telemetry, readiness, and the telemetry itself (for `/metrics`).
#[derive(Debug)]
pub struct Service {
    authz: Authz,
    observer: Observer,
    ready: Readiness,
    telemetry: Telemetry,
}

impl Service {
    /// The authz decision maker.
    pub fn authz(&self) -> &Authz {
        &self.authz
    }

    /// What `/readyz` checks.
    pub fn readiness(&self) -> &Readiness {
        &self.ready
    }

    /// The telemetry the service records on.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }
}

/// Builds the service: key source, store (connecting to Redis when
/// configured), nonce source, and the verifier with metrics on `telemetry`
/// (meter scope `ekey-verifier`; the JWKS refreshes too).
pub async fn build(config: &Config, telemetry: &Telemetry) -> Result<Service, StartError> {
    let v = &config.verifier;
    let metrics = VerifierMetrics::new(&telemetry.meter("ekey-verifier"));
    let (keys, keys_ready): (Arc<dyn KeySource>, KeysReady) = match &v.keys {
        KeysConfig::Url(url) => {
            let jwks = Arc::new(
                HttpJwks::new(HttpJwksSettings::new(url.clone()))
                    .map_err(|e| invalid("verifier.jwks_url", e.to_string()))?
                    .with_metrics(metrics.clone()),
            );
            (jwks.clone(), KeysReady::Url { jwks, fetched: false.into() })
        }
        KeysConfig::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| invalid("verifier.jwks_file", format!("cannot read {}: {e}", path.display())))?;
            let jwks = Jwks::from_json(&bytes).map_err(|e| invalid("verifier.jwks_file", e.to_string()))?;
            let count = jwks.keys().len();
            let keys = StaticKeys::new(jwks).map_err(|e| invalid("verifier.jwks_file", e.to_string()))?;
            (Arc::new(keys), KeysReady::File { count })
        }
    };
    let store: Arc<dyn UsageStore> = match &config.store {
        StoreConfig::Memory { max_traces, max_proofs } => {
            Arc::new(MemoryStore::new(MemoryStoreSettings { max_traces: *max_traces, max_proofs: *max_proofs }))
        }
        StoreConfig::Redis(settings, _) => {
            Arc::new(RedisStore::connect(settings.clone()).await.map_err(|e| StartError::Store(e.to_string()))?)
        }
    };
    let feed = match &config.store {
        StoreConfig::Redis(settings, feed) => Some(
            RedisRevocationFeed::start(settings.clone(), feed.clone())
                .await
                .map_err(|e| StartError::Store(format!("revocation feed: {e}")))?,
        ),
        StoreConfig::Memory { .. } => None,
    };
    let nonce = match &v.nonce {
        None => None,
        Some(n) => {
            let (field, secret) = match &n.secret {
                SecretSource::File(p) => (
                    "verifier.nonce_secret_file",
                    std::fs::read(p).map_err(|e| {
                        invalid("verifier.nonce_secret_file", format!("cannot read {}: {e}", p.display()))
                    })?,
                ),
                SecretSource::Env(var) => (
                    "verifier.nonce_secret_env",
                    std::env::var(var)
                        .map_err(|_| invalid("verifier.nonce_secret_env", format!("{var} is not set")))?
                        .into_bytes(),
                ),
            };
            let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
            Some(NonceSource::new(secret, n.window).map_err(|e| invalid(field, e.to_string()))?)
        }
    };
    let mut settings = VerifierSettings::new(v.issuer.clone(), v.audiences[0].clone());
    settings.token.audiences = v.audiences.clone();
    settings.token.leeway = v.leeway;
    settings.dpop =
        DpopSettings { max_age: v.proof_max_age, leeway: v.leeway, nonce: nonce.clone(), ..Default::default() };
    let mut verifier = Verifier::new(settings, keys, Arc::clone(&store)).with_metrics(metrics);
    if let Some(f) = &feed {
        verifier = verifier.with_revocation(f.rules());
    }
    let verifier = Arc::new(verifier);
    let authz = Authz::new(
        verifier,
        config.external_url()?,
        config.client_cert_source()?,
        config.server.listener_scheme,
        config.server.envoy_prefix.clone(),
        nonce,
    )
    .keeping(feed);
    Ok(Service {
        authz,
        observer: Observer::new(telemetry),
        ready: Readiness::new(store, keys_ready),
        telemetry: telemetry.clone(),
    })
}

/// The two bound, not yet serving, listeners: authz and admin.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    admin: TcpListener,
    admin_addr: SocketAddr,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, addr))
}

impl Bound {
    /// Binds `config.server.listen` and `config.server.admin_listen`.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let (listener, addr) = bind(config.server.listen).await?;
        let (admin, admin_addr) = bind(config.server.admin_listen).await?;
        Ok(Self { listener, addr, admin, admin_addr })
    }

    /// The bound authz address (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` completes, then drains open authz connections
    /// for at most `drain`. From the moment shutdown starts, `/readyz`
    /// answers 503; the admin listener keeps answering until the drain ends.
    pub async fn serve(self, service: Arc<Service>, shutdown: impl Future<Output = ()>, drain: Duration) {
        let graceful = GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        // A peer that sends its headers slowly gets cut off, not a task forever.
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let Some((stream, peer)) = accepted_or_pause(accepted).await else { continue };
                    let service = Arc::clone(&service);
                    let svc = service_fn(move |req| handle(Arc::clone(&service), peer, req));
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    });
                }
                accepted = self.admin.accept() => serve_admin(&builder, &service, accepted).await,
                () = &mut shutdown => break,
            }
        }
        service.ready.shutting_down();
        drop(self.listener);
        let drained = async {
            if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
                tracing::warn!("connections still open after the drain period; closing");
            }
        };
        tokio::pin!(drained);
        loop {
            tokio::select! {
                () = &mut drained => break,
                accepted = self.admin.accept() => serve_admin(&builder, &service, accepted).await,
            }
        }
    }
}

async fn accepted_or_pause(
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match accepted {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, peer))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

async fn serve_admin(
    builder: &hyper::server::conn::http1::Builder,
    service: &Arc<Service>,
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
) {
    let Some((stream, _)) = accepted_or_pause(accepted).await else { return };
    let service = Arc::clone(service);
    let svc = service_fn(move |req: Request<Incoming>| {
        let service = Arc::clone(&service);
        async move {
            let res = crate::admin::handle(req.method(), req.uri().path(), &service.ready, &service.telemetry).await;
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::spawn(async move {
        let _ = conn.await;
    });
}

/// The `http.route` of a request path: `/nginx`, `/forward-auth`, the Envoy
/// prefix, `/healthz`, or [`OTHER_ROUTE`].
fn route<'a>(service: &'a Service, dialect: Option<Dialect>, path: &str) -> &'a str {
    match dialect {
        Some(Dialect::Nginx) => "/nginx",
        Some(Dialect::ForwardAuth) => "/forward-auth",
        Some(Dialect::Envoy) => service.authz.envoy_prefix(),
        None if path == "/healthz" => "/healthz",
        None => OTHER_ROUTE,
    }
}

async fn handle(
    service: Arc<Service>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, std::convert::Infallible> {
    let (head, _body) = req.into_parts();
    let path = head.uri.path();
    let dialect = service.authz.dialect(path);
    let route = route(&service, dialect, path);
    let mut obs = service.observer.start(&head.method, route, &head.headers);
    let span = tracing::info_span!("request", request_id = obs.request_id(), route);
    let mut res = async {
        match dialect {
            Some(dialect) => {
                let (res, decision) = service.authz.decide(dialect, peer.ip(), &head).await;
                if let Some(d) = &decision {
                    service.observer.decided(&mut obs, d);
                }
                res
            }
            None if path == "/healthz" && head.method == http::Method::GET => Response::new(()),
            None => {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        }
    }
    .instrument(span)
    .await;
    res.headers_mut().insert(REQUEST_ID_HEADER, obs.request_id_header());
    obs.finish(res.status());
    Ok(res.map(|()| Empty::new()))
}
