//! Log output: `tracing` to standard error, human or JSON lines.
//!
//! What is logged never includes tokens, proofs, assertions or secrets: the
//! token endpoint logs the client id, template, action and the token's trace
//! id (`jti`), which is what audits need.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Fails when `log.level` is not a filter or
/// a subscriber is already installed.
pub fn init(log: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&log.level).map_err(|e| format!("log.level: {e}"))?;
    // Colours only on a terminal: log files and pipelines get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    }
    .map_err(|e| e.to_string())
}
