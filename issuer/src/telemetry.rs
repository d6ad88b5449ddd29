//! Log output: `tracing` to standard error, human or JSON lines, through
//! [`ekey_telemetry::logging`]. Metrics, traces and audit events are started
//! with the server ([`crate::Providers`]), not here.
//!
//! What is logged never includes tokens, proofs, assertions or secrets: the
//! token endpoint logs the client id, template, action and the token's trace
//! id (`jti`), which is what audits need. Every line logged while a request
//! is handled carries its `request_id` (a field of the `request` span).

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber: `log.level` as the filter (`RUST_LOG`,
/// when set, replaces it), `human` as text, `json` as JSON lines with the
/// current span's fields. Fails when the filter is invalid or a subscriber
/// is already installed.
pub fn init(log: &LogConfig) -> Result<(), String> {
    let format = match log.format {
        LogFormat::Human => ekey_telemetry::LogFormat::Text,
        LogFormat::Json => ekey_telemetry::LogFormat::Json,
    };
    ekey_telemetry::logging::init(format, &log.level).map_err(|e| match e {
        ekey_telemetry::TelemetryError::Config { field, problem } if field == "log filter" => {
            format!("log.level: {problem}")
        }
        other => other.to_string(),
    })
}
