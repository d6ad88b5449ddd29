//! Standard output: results only (JSON, or one raw value). A closed pipe
//! (`ekey … | head`) ends the output quietly instead of panicking.

use crate::error::CliError;
use serde::Serialize;
use std::io::Write;

/// Prints `value` as pretty JSON and a newline.
pub fn json(value: &impl Serialize) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::unavailable(format!("cannot encode the result as JSON: {e}")))?;
    text.push('\n');
    bytes(text.as_bytes())
}

/// Prints one line.
pub fn line(text: &str) -> Result<(), CliError> {
    bytes(format!("{text}\n").as_bytes())
}

/// Prints bytes as they are.
pub fn bytes(data: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::unavailable(format!("cannot write to standard output: {e}"))),
    }
}
