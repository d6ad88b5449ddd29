//! Building the verifier from the config, binding, serving HTTP/1.1 to the
//! gateways, and draining on shutdown.

use crate::authz::Authz;
use crate::config::{Config, KeysConfig, SecretSource, StoreConfig};
use bytes::Bytes;
use ekey_verifier::{
    DpopSettings, HttpJwks, HttpJwksSettings, Jwks, KeySource, MemoryStore, MemoryStoreSettings, NonceSource,
    RedisRevocationFeed, RedisStore, StaticKeys, UsageStore, Verifier, VerifierSettings,
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

/// Builds the authz decision maker: key source, store (connecting to Redis
/// when configured), nonce source, verifier.
pub async fn build(config: &Config) -> Result<Authz, StartError> {
    let v = &config.verifier;
    let keys: Arc<dyn KeySource> = match &v.keys {
        KeysConfig::Url(url) => Arc::new(
            HttpJwks::new(HttpJwksSettings::new(url.clone()))
                .map_err(|e| invalid("verifier.jwks_url", e.to_string()))?,
        ),
        KeysConfig::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| invalid("verifier.jwks_file", format!("cannot read {}: {e}", path.display())))?;
            let jwks = Jwks::from_json(&bytes).map_err(|e| invalid("verifier.jwks_file", e.to_string()))?;
            Arc::new(StaticKeys::new(jwks).map_err(|e| invalid("verifier.jwks_file", e.to_string()))?)
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
    let mut verifier = Verifier::new(settings, keys, store);
    if let Some(f) = &feed {
        verifier = verifier.with_revocation(f.rules());
    }
    let verifier = Arc::new(verifier);
    Ok(Authz::new(
        verifier,
        config.external_url()?,
        config.client_cert_source()?,
        config.server.listener_scheme,
        config.server.envoy_prefix.clone(),
        nonce,
    )
    .keeping(feed))
}

/// A bound, not yet serving, listener.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    /// Binds `config.server.listen`.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self { listener, addr })
    }

    /// The bound address (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then drains open connections for
    /// at most `drain`.
    pub async fn serve(self, authz: Arc<Authz>, shutdown: impl Future<Output = ()>, drain: Duration) {
        let graceful = GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        // A peer that sends its headers slowly gets cut off, not a task forever.
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let authz = Arc::clone(&authz);
                    let svc = service_fn(move |req| handle(Arc::clone(&authz), peer, req));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after the drain period; closing");
        }
    }
}

async fn handle(
    authz: Arc<Authz>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, std::convert::Infallible> {
    let (head, _body) = req.into_parts();
    let res = match head.uri.path() {
        "/healthz" if head.method == http::Method::GET => Response::new(()),
        path => match authz.dialect(path) {
            Some(dialect) => authz.decide(dialect, peer.ip(), &head).await,
            None => {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        },
    };
    Ok(res.map(|()| Empty::new()))
}
