//! # ekey-conformance
//!
//! Shared test vectors for ekey verifiers: tokens, DPoP proofs, the issuer's
//! JWKS and the answer each request must get, as JSON files in
//! `conformance/vectors/`. The verifier's tests read them (with their own copy
//! of the [`format`]); so can any other implementation.
//!
//! ```text
//! cargo run -p ekey-conformance --bin ekey-vectors -- --out conformance/vectors
//! ```
//!
//! regenerates them with [`generate::write`]. Times and keys are fixed
//! ([`keys`] holds the TEST-ONLY key files), and signatures from the previous
//! files are reused while they still verify ([`reuse`]), so a regeneration
//! changes only what really changed.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod format;
pub mod generate;
pub mod jws;
pub mod keys;
pub mod reuse;

use std::path::{Path, PathBuf};

/// Why vectors could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A key file is unusable.
    #[error("key: {0}")]
    Key(String),
    /// The verifier's key code refused a key.
    #[error(transparent)]
    KeyPair(#[from] ekey_verifier::KeyError),
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// JSON could not be written.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The generated set is inconsistent (duplicate id, too few cases, …).
    #[error("invalid vectors: {0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
