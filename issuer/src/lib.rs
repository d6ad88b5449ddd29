//! # ekey-issuer
//!
//! Issues ekey capability tokens: short-lived (≤ 300 s) JWS tokens that let
//! one client do one action a bounded number of times, bound to the
//! client's DPoP key (RFC 9449). Policy is a set of reviewed **capability
//! templates**; anything outside them is refused.
//!
//! Endpoints (public listener):
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /token` | OAuth 2.0 `client_credentials`; `client_secret_basic`, `private_key_jwt`, `tls_client_auth` or `self_signed_tls_client_auth`; capability by `authorization_details` (RFC 9396, type `ekey_capability`) or `scope` = template name; bound to the DPoP proof's key, or without one to the TLS client certificate |
//! | `GET /.well-known/jwks.json` | public keys, `ETag`, `Cache-Control: public, max-age`, `304` |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |
//!
//! and `/healthz`, `/readyz`, `/metrics` (Prometheus text) and (with
//! `[revocation]`) `POST /admin/revocations`
//! on a separate admin listener.
//!
//! The pieces are traits injected at construction, so that production parts
//! (a KMS signer, a shared replay cache and rate limiter, a TLS acceptor)
//! fit without changes to the endpoints: [`Signer`], [`ReplayCache`],
//! [`RateLimiter`], [`Acceptor`], and the verifier's `Clock`.
//!
//! Starting an issuer in-process (tests, embedding):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ekey_issuer::dev::{DevIssuer, DevOptions};
//!
//! // Demo templates and clients, free ports on 127.0.0.1.
//! let dev = DevIssuer::start(DevOptions { port: 0, admin_port: 0, ..DevOptions::default() }).await?;
//! let token_endpoint = &dev.server().urls().token_endpoint;
//! # let _ = token_endpoint;
//! dev.shutdown().await;
//!
//! // Or any configuration.
//! let config = ekey_issuer::Config::load(std::path::Path::new("issuer.toml"))?;
//! let server = ekey_issuer::Server::start(config).await?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
pub mod cli;
mod clients;
mod config;
pub mod dev;
mod dpop;
mod fleet;
mod http;
mod keyset;
mod metadata;
mod mint;
mod policy;
mod providers;
mod ratelimit;
mod replay;
mod revocation;
mod routes;
mod server;
pub mod shutdown;
mod signer;
pub mod telemetry;
mod token;

pub use crate::clients::{
    AssertionSettings, AuthError, AuthMethod, Authenticated, ClientRegistry, Credentials, RegistryError,
};
pub use crate::config::PublishedKeyConfig;
pub use crate::config::{
    env_variables, process_env, BindingRequirement, CertificateName, ClientAuthConfig, ClientAuthMethod,
    ClientCertMode, ClientConfig, Config, ConfigError, DpopConfig, EndpointsConfig, EnvLookup, JwksSource, LogConfig,
    LogFormat, NonceConfig, ReplayConfig, SecretSource, SelfSignedSource, ServerConfig, SigningKeyConfig,
    SigningKeySource, TemplateConfig, TlsConfig,
};
pub use crate::dpop::DpopError;
pub use crate::http::{Acceptor, ConnectionInfo, PlainAcceptor, TlsAcceptor, TlsError, TlsSettings};
pub use crate::keyset::{check_schedule, load as load_keys, report as keys_report, KeyRole, KeySet, PublishedKey};
pub use crate::mint::MintError;
pub use crate::policy::{BindingName, CapabilityRequest, Grant, OfferedBinding, Policy, PolicyError, RequestedVia};
pub use crate::providers::{Providers, MIN_SECRET_LEN, SERVICE_NAME};
pub use crate::ratelimit::{Admission, MemoryRateLimiter, RateLimit, RateLimitError, RateLimiter, RedisRateLimiter};
pub use crate::replay::{MemoryReplayCache, RedisReplayCache, ReplayCache, ReplayError, ReplayKey, Seen};
pub use crate::revocation::AdminRevocations;
pub use crate::routes::{JWKS_PATH, METADATA_PATH, TOKEN_PATH};
pub use crate::server::{Bound, PublicUrls, Server, ServerHandle, StartError};
pub use crate::signer::{KmsClient, KmsError, KmsPublicKey, KmsSettings, KmsSigner, LocalSigner, SignError, Signer};
pub use crate::token::{ErrorCode, OAuthError, CAPABILITY_TYPE, CLIENT_CREDENTIALS, JWT_BEARER};
