//! # ekey-gateway
//!
//! An authorization server that gateways call before they forward a request:
//! nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` and
//! Envoy `ext_authz` (HTTP). It rebuilds the client's original method and
//! external URL from the gateway's headers — believed only from
//! `trusted_proxies` — verifies the ekey token and its DPoP proof with
//! [`ekey_verifier::Verifier`], consumes one use, and answers 200 with
//! identity headers for the upstream or the mapped rejection.
//!
//! A second, admin listener serves `/healthz`, `/readyz` and Prometheus
//! `/metrics`; every request is observed (request id, OpenTelemetry span and
//! metrics) and every verify decision is written as one `token.verify` audit
//! event (see `docs/observability.md`).
//!
//! `docs/gateway.md` has the configuration of every gateway and the meaning
//! of every header.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod authz;
pub mod cli;
pub mod config;
pub mod observe;
pub mod server;

pub use admin::Readiness;
pub use authz::{Authz, Decision, Dialect};
pub use config::{Config, ConfigError};
pub use server::{build, Bound, Service, StartError};
