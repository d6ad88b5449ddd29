//! Building the verifier from the config, binding, serving HTTP/1.1 to the
//! gateways (and the admin endpoints), and draining on shutdown. Both
//! listeners run the accept loop the issuer runs too
//! (`ekey_telemetry::server`): a connection cap, a deadline for each request
//! head (slow and idle peers are cut off), bounded heads, a drain.

use crate::admin::{KeysReady, Readiness, NO_REVOCATION_FEED};
use crate::authz::{Authz, Dialect};
use crate::config::{Config, KeysConfig, SecretSource, StoreConfig};
use crate::observe::{Observer, OTHER_ROUTE};
use bytes::Bytes;
use ekey_telemetry::server::{serve, ConnectionInfo, Handler, Limits, PlainAcceptor};
use ekey_telemetry::{Telemetry, REQUEST_ID_HEADER};
use ekey_verifier::{
    DpopSettings, HttpJwks, HttpJwksSettings, Jwks, KeySource, KeySourceError, MemoryStore, MemoryStoreSettings,
    NonceSource, RedisRevocationFeed, RedisStore, StaticKeys, UsageStore, Verifier, VerifierMetrics, VerifierSettings,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument as _;

/// Connections the admin listener serves at once: it is small and local.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

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
            let mut settings = HttpJwksSettings::new(url.clone());
            settings.ca_file = v.jwks.ca_file.clone();
            settings.spki_pins = v.jwks.spki_pins.clone();
            settings.max_staleness = v.jwks.max_staleness;
            settings.allow_insecure_http = v.jwks.allow_insecure_http;
            let jwks = HttpJwks::new(settings).map_err(|e| match e {
                KeySourceError::Config { field: "url", problem } => invalid("verifier.jwks_url", problem),
                KeySourceError::Config { field, problem } => invalid(&format!("verifier.jwks.{field}"), problem),
                other => invalid("verifier.jwks_url", other.to_string()),
            })?;
            let jwks = Arc::new(jwks.with_metrics(metrics.clone()));
            (jwks.clone(), KeysReady::Url { jwks })
        }
        KeysConfig::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| invalid("verifier.jwks_file", format!("cannot read {}: {e}", path.display())))?;
            let jwks = Jwks::from_json(&bytes).map_err(|e| invalid("verifier.jwks_file", e.to_string()))?;
            let keys = StaticKeys::new(jwks).map_err(|e| invalid("verifier.jwks_file", e.to_string()))?;
            for skipped in keys.skipped() {
                tracing::warn!(file = %path.display(), key = %skipped, "JWKS file: a key this verifier cannot use is skipped");
            }
            let count = keys.jwks().keys().len();
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
    let mut ready = Readiness::new(store, keys_ready);
    if matches!(config.store, StoreConfig::Memory { .. }) {
        tracing::warn!("{NO_REVOCATION_FEED}");
        ready = ready.with_warning(NO_REVOCATION_FEED);
    }
    Ok(Service { authz, observer: Observer::new(telemetry), ready, telemetry: telemetry.clone() })
}

/// The two bound, not yet serving, listeners: authz and admin.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    admin: TcpListener,
    admin_addr: SocketAddr,
    limits: Limits,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, addr))
}

impl Bound {
    /// Binds `config.server.listen` and `config.server.admin_listen`, with
    /// the connection limits of `[server]`.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let (listener, addr) = bind(config.server.listen).await?;
        let (admin, admin_addr) = bind(config.server.admin_listen).await?;
        let s = &config.server;
        let limits = Limits {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout,
            handshake_timeout: s.header_read_timeout,
            drain_timeout: s.drain_timeout,
            // Plain HTTP/1.1 only: no HTTP/2 streams.
            ..Limits::default()
        };
        Ok(Self { listener, addr, admin, admin_addr, limits })
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
    /// for at most `server.drain_timeout`. From the moment shutdown starts,
    /// `/readyz` answers 503; the admin listener keeps answering until the
    /// drain ends.
    pub async fn serve(self, service: Arc<Service>, shutdown: impl Future<Output = ()>) {
        let (stop_authz, authz_stopped) = watch::channel(false);
        let (stop_admin, admin_stopped) = watch::channel(false);
        let admin_limits = Limits { max_connections: ADMIN_MAX_CONNECTIONS, ..self.limits };
        let authz = tokio::spawn(serve(
            "authz",
            self.listener,
            PlainAcceptor,
            Arc::new(AuthzHandler(Arc::clone(&service))),
            self.limits,
            authz_stopped,
        ));
        let admin = tokio::spawn(serve(
            "admin",
            self.admin,
            PlainAcceptor,
            Arc::new(AdminHandler(Arc::clone(&service))),
            admin_limits,
            admin_stopped,
        ));
        shutdown.await;
        service.ready.shutting_down();
        stop_authz.send_replace(true);
        if let Err(e) = authz.await {
            tracing::warn!(error = %e, "the authz listener ended abnormally");
        }
        stop_admin.send_replace(true);
        let _ = admin.await;
    }
}

/// The authz listener's requests.
struct AuthzHandler(Arc<Service>);

impl Handler for AuthzHandler {
    async fn handle(&self, req: Request<Incoming>, conn: &ConnectionInfo) -> Response<Full<Bytes>> {
        handle(&self.0, conn.peer, req).await.map(|()| Full::new(Bytes::new()))
    }
}

/// The admin listener's requests.
struct AdminHandler(Arc<Service>);

impl Handler for AdminHandler {
    async fn handle(&self, req: Request<Incoming>, _: &ConnectionInfo) -> Response<Full<Bytes>> {
        crate::admin::handle(req.method(), req.uri().path(), &self.0.ready, &self.0.telemetry).await
    }
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

async fn handle(service: &Service, peer: SocketAddr, req: Request<Incoming>) -> Response<()> {
    let (head, _body) = req.into_parts();
    let path = head.uri.path();
    let dialect = service.authz.dialect(path);
    let route = route(service, dialect, path);
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
    res
}
