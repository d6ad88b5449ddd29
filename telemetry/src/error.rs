//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong when configuring or starting telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A configuration field or environment variable has an unusable value.
    #[error("{field}: {problem}")]
    Config {
        /// The field, e.g. `telemetry.otlp_protocol`, or the environment variable.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The audit file cannot be opened.
    #[error("audit.path: cannot open {path}: {source}")]
    AuditFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An exporter (Prometheus or OTLP) cannot be built.
    #[error("cannot build the {what} exporter: {message}")]
    Exporter {
        /// Which exporter, e.g. `OTLP metrics`.
        what: &'static str,
        /// The exporter's own message.
        message: String,
    },
    /// The Prometheus registry cannot be rendered as text.
    #[error("cannot render Prometheus text: {0}")]
    Prometheus(String),
    /// The global log subscriber cannot be installed (bad filter, or one is
    /// already installed).
    #[error("cannot install the log subscriber: {0}")]
    Logging(String),
    /// A test receiver cannot bind or serve (feature `receiver`).
    #[error("OTLP receiver: {0}")]
    Receiver(String),
}

impl TelemetryError {
    /// A [`TelemetryError::Config`] for `field`.
    pub fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Config { field: field.into(), problem: problem.into() }
    }
}
