//! Where the issuer's public keys come from: a [`KeySource`] chosen by `kid`.

#[cfg(feature = "http-jwks")]
mod http;
mod set;
#[cfg(feature = "http-jwks")]
mod tls;

#[cfg(feature = "http-jwks")]
pub use http::{HttpJwks, HttpJwksSettings};
pub use set::StaticKeys;

use crate::jose::alg::Algorithm;
use crate::jose::key::{KeyError, VerifyingKey};
use std::sync::Arc;

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// No key with this `kid` (after any refetch the source allows).
    #[error("unknown kid")]
    UnknownKid,
    /// The key exists but cannot verify this algorithm.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key set cannot be fetched and no usable copy is held.
    #[error("{0}")]
    Unavailable(String),
    /// A setting of the key source is unusable (from its constructor).
    #[error("{field}: {problem}")]
    Config {
        /// The setting, e.g. `url` or `ca_file`.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Provides verifying keys by `kid` and algorithm (biscuit's `RootKeyProvider`
/// idea): rotation is the source's business, not the verifier's.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The key named `kid`, ready to verify `alg`.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<VerifyingKey>, KeySourceError>;
}
