//! The CLI's one error type, and its exit status.

use std::process::ExitCode;

/// Exit status when the issuer, the verifier or the API answered no.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status for bad arguments or bad input (also clap's own usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when no usable answer could be had (network, timeout, an
/// unexpected reply, or a verifier that could not decide).
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Why a command failed. The message goes to standard error; any JSON result
/// has already been printed on standard output.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments, unreadable files, malformed keys or tokens.
    #[error("{0}")]
    Usage(String),
    /// The other side said no (OAuth error, rejection, non-2xx reply).
    #[error("{0}")]
    Refused(String),
    /// No usable answer.
    #[error("{0}")]
    Unavailable(String),
}

impl CliError {
    /// Shorthand for [`CliError::Usage`].
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::Usage(msg.into())
    }

    /// Shorthand for [`CliError::Unavailable`].
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into())
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused(_) => EXIT_REFUSED,
            Self::Usage(_) => EXIT_USAGE,
            Self::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }
}

impl From<&CliError> for ExitCode {
    fn from(e: &CliError) -> Self {
        ExitCode::from(e.exit_code())
    }
}

/// Makes text from a remote party or a file safe for a terminal: control
/// characters escaped, length bounded.
pub fn printable(s: &str) -> String {
    const MAX: usize = 400;
    let mut out = String::with_capacity(s.len().min(MAX));
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error and the chain of its causes, `a: b: c` (hyper's errors say little
/// at the top level).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !msg.ends_with(&next) {
            msg.push_str(": ");
            msg.push_str(&next);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::Refused("x".into()).exit_code(), 1);
        assert_eq!(CliError::unavailable("x").exit_code(), 3);
    }

    #[test]
    fn printable_escapes_controls_and_bounds_length() {
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(printable(&"x".repeat(1000)).chars().count(), 401);
    }

    #[test]
    fn chain_joins_sources() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(chain(&outer), "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("client error")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(chain(&e), "client error: refused");
    }
}
