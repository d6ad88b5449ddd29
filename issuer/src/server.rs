//! Binding the listeners, assembling the endpoints and running them, with a
//! handle to stop them: what `main` and the tests share.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ekey_issuer::{Config, Server};
//!
//! let config = Config::from_toml_str(r#"
//!     [server]
//!     listen = "127.0.0.1:0"
//!     admin_listen = "127.0.0.1:0"
//!     [signing_key]
//!     generate = true
//! "#)?;
//! let server = Server::start(config).await?;
//! println!("issuer at {}", server.urls().issuer);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use crate::admin::AdminApp;
use crate::config::{ClientCertMode, Config, ConfigError};
use crate::dpop::TokenDpop;
use crate::http::{serve, Acceptor, Limits, Observer, PlainAcceptor, TlsAcceptor, TlsSettings};
use crate::metadata::Document;
use crate::mint::Minter;
use crate::policy::Policy;
use crate::providers::Providers;
use crate::routes::{PublicApp, JWKS_PATH, METADATA_PATH, TOKEN_PATH};
use crate::token::{IssueMetrics, TokenEndpoint, CAPABILITY_TYPE, CLIENT_CREDENTIALS};
use ekey_telemetry::Telemetry;
use ekey_verifier::DpopSettings;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration (or a file it names) is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("{field}: cannot listen on {addr}: {source}")]
    Bind {
        /// The config field of the address.
        field: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The URLs clients use, as published in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrls {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The token endpoint (DPoP `htu`).
    pub token_endpoint: String,
    /// The JWKS.
    pub jwks_uri: String,
    /// The RFC 8414 metadata document.
    pub metadata: String,
}

impl PublicUrls {
    fn new(config: &Config, public_addr: SocketAddr) -> Self {
        let scheme = if config.server.tls.is_some() { "https" } else { "http" };
        let issuer = config.issuer.clone().unwrap_or_else(|| format!("{scheme}://{public_addr}"));
        Self {
            token_endpoint: config.endpoints.token_endpoint.clone().unwrap_or_else(|| format!("{issuer}{TOKEN_PATH}")),
            jwks_uri: config.endpoints.jwks_uri.clone().unwrap_or_else(|| format!("{issuer}{JWKS_PATH}")),
            metadata: format!("{issuer}{METADATA_PATH}"),
            issuer,
        }
    }
}

/// Both listeners, bound.
#[derive(Debug)]
pub struct Bound {
    public: TcpListener,
    admin: TcpListener,
}

impl Bound {
    /// The public listener's address (the real port when 0 was asked for).
    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// Starts and assembles the issuer.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Everything at once for the common case: providers from the config,
    /// bind, serve (TLS when `[server.tls]` is set).
    pub async fn start(config: Config) -> Result<ServerHandle, StartError> {
        let providers = Providers::from_config(&config).await?;
        Self::start_with(config, providers).await
    }

    /// Binds and serves with the given providers (e.g. a test's failing
    /// signer or manual clock); TLS when `[server.tls]` is set.
    pub async fn start_with(config: Config, providers: Providers) -> Result<ServerHandle, StartError> {
        let bound = Self::bind(&config).await?;
        Self::serve_configured(config, providers, bound)
    }

    /// Serves `bound` with the acceptor the config asks for: plain HTTP, or
    /// TLS (rustls) from `[server.tls]` with the files polled for changes
    /// and reloaded on SIGHUP.
    pub fn serve_configured(config: Config, providers: Providers, bound: Bound) -> Result<ServerHandle, StartError> {
        match config.server.tls.clone() {
            None => Self::serve(config, providers, bound, PlainAcceptor),
            Some(tls) => {
                let self_signed = providers.clients.self_signed_thumbprints();
                let acceptor = TlsAcceptor::new(TlsSettings { config: tls, self_signed })
                    .map_err(|e| ConfigError::invalid(e.field, e.problem))?;
                acceptor.spawn_reloader();
                Self::serve(config, providers, bound, acceptor)
            }
        }
    }

    /// Binds both listeners.
    pub async fn bind(config: &Config) -> Result<Bound, StartError> {
        let listen = |field: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| StartError::Bind { field, addr, source })
        };
        Ok(Bound {
            public: listen("server.listen", config.server.listen).await?,
            admin: listen("server.admin_listen", config.server.admin_listen).await?,
        })
    }

    /// Assembles the endpoints and serves both listeners on the current Tokio
    /// runtime, the public one through `acceptor`. The JWKS and metadata
    /// documents are built here, once.
    pub fn serve<A: Acceptor>(
        config: Config,
        providers: Providers,
        bound: Bound,
        acceptor: A,
    ) -> Result<ServerHandle, StartError> {
        let addr_err = |field: &'static str, addr: SocketAddr| move |source| StartError::Bind { field, addr, source };
        let public_addr = bound.public.local_addr().map_err(addr_err("server.listen", config.server.listen))?;
        let admin_addr =
            bound.admin.local_addr().map_err(addr_err("server.admin_listen", config.server.admin_listen))?;
        let urls = PublicUrls::new(&config, public_addr);

        let dpop_settings = DpopSettings {
            algorithms: config.dpop.algorithms.clone(),
            max_age: config.dpop.max_age,
            leeway: config.dpop.leeway,
            nonce: providers.dpop_nonce.clone(),
            ..DpopSettings::default()
        };
        let dpop = TokenDpop::new(dpop_settings, &urls.token_endpoint).map_err(|e| {
            ConfigError::invalid(
                "endpoints.token_endpoint",
                format!("{:?} cannot be a DPoP htu: {e}", urls.token_endpoint),
            )
        })?;
        let signer = Arc::clone(providers.keys.active());
        let policy = Policy::new(config.templates.iter().cloned());
        let max_age = config.endpoints.jwks_max_age;
        let metadata = Document::new(&metadata_json(&urls, &config, &policy), "application/json", max_age);
        let jwks = Document::new(&providers.keys.jwks().to_json(), "application/jwk-set+json", max_age);
        let telemetry = providers.telemetry.clone();
        let observer = Observer::new(&telemetry);
        let token = TokenEndpoint {
            issuer: urls.issuer.clone(),
            token_endpoint: urls.token_endpoint.clone(),
            clients: Arc::new(providers.clients),
            policy: Arc::new(policy),
            dpop,
            minter: Minter::new(Arc::clone(&signer), urls.issuer.clone(), config.signing_key.timeout),
            replay: Arc::clone(&providers.replay),
            rate_limiter: Arc::clone(&providers.rate_limiter),
            rate_limits: config.rate_limits.clone(),
            clock: providers.clock,
            metrics: IssueMetrics::new(&telemetry.meter(crate::SERVICE_NAME)),
            audit: telemetry.audit().clone(),
            tracer: telemetry.tracer(),
        };
        let s = &config.server;
        let public_app = Arc::new(PublicApp {
            token,
            jwks,
            metadata,
            max_body: s.max_body_bytes,
            body_timeout: s.request_timeout,
            observer: observer.clone(),
        });
        let draining = Arc::new(AtomicBool::new(false));
        let admin_app = Arc::new(AdminApp {
            signer,
            replay: Arc::clone(&providers.replay),
            draining: Arc::clone(&draining),
            probe_timeout: config.signing_key.timeout,
            revocations: providers.revocations.clone(),
            telemetry: telemetry.clone(),
            observer,
        });
        let limits = Limits {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout,
            handshake_timeout: s.header_read_timeout,
            drain_timeout: s.drain_timeout,
            max_concurrent_streams: s.max_concurrent_streams,
        };
        // The admin listener is small and local: a fixed modest limit.
        let admin_limits = Limits { max_connections: 64, ..limits };

        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(serve("public", bound.public, acceptor, public_app, limits, stopped.clone())),
            tokio::spawn(serve("admin", bound.admin, PlainAcceptor, admin_app, admin_limits, stopped)),
        ];
        tracing::info!(
            issuer = %urls.issuer,
            listen = %public_addr,
            admin = %admin_addr,
            kid = %providers.keys.active().kid(),
            alg = %providers.keys.active().algorithm(),
            templates = config.templates.len(),
            clients = config.clients.len(),
            replay = providers.replay.backend(),
            rate_limits = config.rate_limits.len(),
            "ekey issuer serving"
        );
        Ok(ServerHandle { public_addr, admin_addr, urls, stop, draining, tasks, telemetry })
    }
}

/// RFC 8414 metadata.
fn metadata_json(urls: &PublicUrls, config: &Config, policy: &Policy) -> serde_json::Value {
    let certificates = config.server.tls.as_ref().is_some_and(|t| t.client_auth != ClientCertMode::Off);
    let mut auth_methods = vec!["private_key_jwt", "client_secret_basic"];
    if certificates {
        auth_methods.extend(["tls_client_auth", "self_signed_tls_client_auth"]);
    }
    json!({
        "issuer": urls.issuer,
        "token_endpoint": urls.token_endpoint,
        "jwks_uri": urls.jwks_uri,
        "grant_types_supported": [CLIENT_CREDENTIALS],
        // Required by RFC 8414 §2; there is no authorization endpoint.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": config.client_auth.assertion_algorithms,
        "dpop_signing_alg_values_supported": config.dpop.algorithms,
        "authorization_details_types_supported": [CAPABILITY_TYPE],
        "scopes_supported": policy.templates().iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "tls_client_certificate_bound_access_tokens": certificates,
    })
}

/// A running issuer. Dropping it stops the listeners too (without waiting).
#[derive(Debug)]
pub struct ServerHandle {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    urls: PublicUrls,
    stop: watch::Sender<bool>,
    draining: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    telemetry: Telemetry,
}

impl ServerHandle {
    /// The public listener's address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The published URLs.
    pub fn urls(&self) -> &PublicUrls {
        &self.urls
    }

    /// The server's telemetry: meters, tracer, Prometheus text, audit sink.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Stops accepting, reports not-ready, waits for in-flight requests
    /// (up to `server.drain_timeout`), then exports what telemetry is left
    /// and stops the exporters (bounded by [`ekey_telemetry::SHUTDOWN_TIMEOUT`]
    /// per exporter).
    pub async fn shutdown(self) {
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.telemetry.shutdown().await;
    }

    /// Serves until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}
