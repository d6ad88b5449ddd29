//! One module per subcommand; [`run`] dispatches.

mod call;
mod discovery;
mod inspect;
mod keygen;
mod proof;
mod token;
mod verify;

use crate::args::{Cli, Command};
use crate::error::CliError;
use crate::input::Stdin;
use crate::transport::{TlsOptions, Transport};
use std::time::Duration;

/// What every command may use.
#[derive(Debug)]
pub struct Context {
    /// The HTTP client.
    pub transport: Transport,
    /// Standard input, handed out once.
    pub stdin: Stdin,
    /// The per-exchange timeout.
    pub timeout: Duration,
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let timeout = Duration::from_secs(cli.timeout);
    let identity = match &cli.command {
        Command::Token(a) => a.client_cert.clone().zip(a.client_key.clone()),
        Command::Call(a) => a.client_cert.clone().zip(a.client_key.clone()),
        _ => None,
    };
    let tls = TlsOptions { ca: cli.ca.clone(), identity };
    let mut ctx = Context { transport: Transport::new(timeout, tls), stdin: Stdin::default(), timeout };
    match cli.command {
        Command::Keygen(a) => keygen::run(&a),
        Command::Token(a) => token::run(&a, &mut ctx).await,
        Command::Inspect(a) => inspect::run(&a, &mut ctx),
        Command::Proof(a) => proof::run(&a, &mut ctx),
        Command::Verify(a) => verify::run(&a, &mut ctx).await,
        Command::Call(a) => call::run(&a, &mut ctx).await,
    }
}

/// A request method: a valid HTTP token, upper-cased (capability actions and
/// `htm` compare exactly, and methods are upper case in practice).
pub fn method(m: &str) -> Result<http::Method, CliError> {
    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
        .map_err(|_| CliError::usage(format!("{:?} is not an HTTP method", crate::error::printable(m))))
}

/// The `htu` for a URL: normalised, query and fragment dropped.
pub fn htu(url: &str) -> Result<String, CliError> {
    ekey_verifier::normalize_htu(url).map_err(|e| CliError::usage(format!("{:?}: {e}", crate::error::printable(url))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_htu() {
        assert_eq!(method("post").unwrap(), http::Method::POST);
        assert_eq!(method("PURGE").unwrap().as_str(), "PURGE");
        assert!(method("GE T").is_err());
        assert!(method("").is_err());
        assert_eq!(htu("HTTP://A.example:80/x/../p?q=1#f").unwrap(), "http://a.example/p");
        assert!(htu("/p").is_err());
        assert!(htu("http://u@a/").is_err());
    }
}
