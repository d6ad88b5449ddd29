//! # ekey-verifier
//!
//! Verifies ekey capability tokens ("E-Keys"): short-lived JWS tokens that say
//! who may do one action, how many times, bound to the client's DPoP key
//! (RFC 9449) or mTLS certificate (RFC 8705). A [`Verifier`] checks, cheapest
//! first and trusting nothing before its signature is checked:
//!
//! 1. size and shape of the token, `alg` allow-list, `typ: ekey+jwt`, `kid`;
//!    `jku`/`x5u`/`jwk`/`x5c` and any `crit` refused, duplicate JSON members refused;
//! 2. the key by `kid` from a [`KeySource`] ([`StaticKeys`], [`HttpJwks`]);
//! 3. signature, then `iss`, `aud`, `exp`/`nbf`/`iat` with leeway, TTL cap;
//! 4. the binding: DPoP proof ([`ProofVerifier`]) or client certificate;
//! 5. the capability: method and path against `cap.action` / `cap.subcap`,
//!    where the path is the one the application routes, refused with 400
//!    ([`PathError`]) unless it is already in normal form;
//! 6. one atomic [`UsageStore::consume`]: proof replay, usage limit, revocation.
//!
//! The result is a [`VerifiedCapability`] or a [`Rejection`] that knows its HTTP
//! answer (401 + `WWW-Authenticate: DPoP …`, 400, 403, or 503 + `Retry-After`).
//! [`Verifier::decide`] answers a [`Refusal`] instead, which also names the
//! token ([`TokenIds`]) once it proved authentic, for audit logs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ekey_verifier::{HttpJwks, HttpJwksSettings, MemoryStore, PresentedRequest, Verifier, VerifierSettings};
//!
//! let keys = HttpJwks::new(HttpJwksSettings::new("http://127.0.0.1:8080/.well-known/jwks.json"))?;
//! let verifier = Verifier::new(
//!     VerifierSettings::new("http://127.0.0.1:8080", "https://api.example.com"),
//!     Arc::new(keys),
//!     Arc::new(MemoryStore::default()),
//! );
//! let request = PresentedRequest {
//!     method: "POST",
//!     url: "https://api.example.com/payments/42",
//!     authorization: Some("DPoP eyJ…"),
//!     dpop: vec!["eyJ…"],
//!     ..PresentedRequest::default()
//! };
//! match verifier.verify(&request).await {
//!     Ok(cap) => println!("{} may {} ({} uses left)", cap.sub, cap.action, cap.remaining),
//!     Err(rejection) => println!("refused: {}", verifier.reject(&rejection).status()),
//! }
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `http-jwks` | yes | [`HttpJwks`]: the issuer's JWKS over HTTP, cached |
//! | `redis` | no | `RedisStore`: the fleet-wide usage store on Redis / Redis Cluster; `RedisRevocationFeed`; `RedisConnection`, its connection pool, for other components' fleet-wide state |
//! | `tower` | no | [`tower::VerifyLayer`]: verifies each request, puts the [`VerifiedCapability`] into its extensions |
//! | `axum` | no | `tower`, and [`VerifiedCapability`] as an axum extractor |
//! | `tokio-rustls` | no | `mtls::peer_certificate_der`: the client certificate of a tokio-rustls connection |
//! | `metrics` | no | `VerifierMetrics`: OpenTelemetry instruments for decisions, store round trips and JWKS refreshes, on a `Meter` you pass (API crate only; no SDK, no global provider) |
//!
//! Without tower, hyper services call [`Verifier::verify_http`] with the URL
//! from [`ExternalUrl::rebuild`] (see `examples/hyper_service.rs` and
//! `docs/gateway.md`), or [`PresentedRequest::from_http`] and
//! [`Verifier::decide`] when the path the application routes is not the
//! path of that URL.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
mod axum_extract;
mod capability;
mod claims;
pub mod client;
mod clock;
pub mod dangerous;
mod dpop;
mod error;
mod external_url;
mod htu;
mod jose;
mod keys;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod mtls;
mod nonce;
mod outcome;
mod path;
mod request;
mod revocation;
mod store;
mod token;
#[cfg(feature = "tower")]
pub mod tower;
mod verifier;

#[cfg(feature = "axum")]
pub use crate::axum_extract::MissingCapability;
pub use crate::capability::{ActionError, ActionPattern};
pub use crate::claims::{
    Audience, Capability, Claims, ClaimsError, Confirmation, MAX_LIMIT, MAX_NUMERIC_DATE, MAX_TTL_SECS,
};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::dpop::{DpopSettings, ProofError, ProofExpectations, ProofVerifier, VerifiedProof};
pub use crate::error::{Refusal, Rejection, TokenIds, RETRY_AFTER_SECS};
pub use crate::external_url::{ExternalUrl, ExternalUrlError, ExternalUrlSettings, RequestOrigin};
pub use crate::htu::{normalize_htu, HtuError};
pub use crate::jose::alg::{Algorithm, UnknownAlgorithm};
pub use crate::jose::b64::{encode as b64_encode, sha256_b64};
pub use crate::jose::json::{non_null, JsonError, MAX_JSON_DEPTH, MAX_JSON_MEMBERS};
pub use crate::jose::jwk::{JwkError, Jwks, PublicJwk, SkippedKey};
pub use crate::jose::jws::JwsError;
pub use crate::jose::key::{KeyError, KeyPair, VerifyingKey};
pub use crate::jose::verify::{
    from_json_strict, verify_compact_jws, verify_compact_jwt, CompactJwsError, KeyHint, VerifiedJws,
};
#[cfg(feature = "http-jwks")]
pub use crate::keys::{HttpJwks, HttpJwksSettings};
pub use crate::keys::{KeySource, KeySourceError, StaticKeys};
#[cfg(feature = "metrics")]
pub use crate::metrics::VerifierMetrics;
pub use crate::nonce::{NonceConfigError, NonceSource};
pub use crate::outcome::Outcome;
pub use crate::path::PathError;
pub use crate::request::PresentedRequest;
#[cfg(feature = "redis")]
pub use crate::revocation::{RedisRevocationFeed, RedisRevocations, RevocationFeedSettings};
pub use crate::revocation::{RevocationCheck, RevocationError, RevocationRule, RevocationRules, RULE_MARGIN_SECS};
#[cfg(feature = "redis")]
pub use crate::store::{
    redis_error_reason, EvictionCheck, RedisConnection, RedisStore, RedisStoreError, RedisStoreSettings,
};
pub use crate::store::{
    ConsumeOutcome, ConsumeRequest, MemoryStore, MemoryStoreSettings, ProofId, StoreError, UsageStore,
};
pub use crate::token::{TokenError, TokenSettings};
pub use crate::verifier::{Binding, VerifiedCapability, Verifier, VerifierSettings};
