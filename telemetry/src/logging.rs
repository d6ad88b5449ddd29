//! Log output: `tracing` to standard error, as text or JSON lines.
//!
//! Logs never carry tokens, proofs, assertions or secrets; audit events do
//! not go through this logger at all (see [`crate::audit`]).
//!
//! # Example
//!
//! ```
//! use ekey_telemetry::logging::{self, LogFormat};
//!
//! // Once, first thing in main. RUST_LOG, when set, replaces the filter.
//! let _ = logging::init(LogFormat::Json, "info");
//! let span = tracing::info_span!("request", request_id = "3f2a");
//! let _entered = span.enter();
//! // {"timestamp":…,"level":"INFO","message":"token issued","span":{"request_id":"3f2a","name":"request"},…}
//! tracing::info!("token issued");
//! ```

use crate::TelemetryError;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the current span.
    Json,
}

/// Installs the global subscriber writing to standard error. `filter` is a
/// `tracing` filter such as `info` or `ekey_issuer=debug,info`; `RUST_LOG`,
/// when set and not empty, is used instead. Fails when the filter is invalid
/// or a global subscriber is already installed (e.g. on a second call).
pub fn init(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()) {
        Some(env) => EnvFilter::try_new(&env).map_err(|e| TelemetryError::config("RUST_LOG", e.to_string()))?,
        None => EnvFilter::try_new(filter).map_err(|e| TelemetryError::config("log filter", e.to_string()))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    }
    .map_err(|e| TelemetryError::Logging(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_init_is_an_error_not_a_panic() {
        // Unit tests share one process: whichever call comes first may win.
        let first = init(LogFormat::Json, "info");
        let second = init(LogFormat::Text, "debug");
        assert!(first.is_ok() || second.is_err());
        assert!(matches!(second, Err(TelemetryError::Logging(_))), "{second:?}");
    }

    #[test]
    fn bad_filter_names_the_setting() {
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        let e = init(LogFormat::Text, "info,[[[").unwrap_err().to_string();
        assert!(e.starts_with("log filter: "), "{e}");
    }
}
