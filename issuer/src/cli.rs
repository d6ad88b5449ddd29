//! The `ekey-issuer` command line.

use crate::config::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// ekey-issuer: issues short-lived, DPoP-bound capability tokens.
#[derive(Debug, Parser)]
#[command(
    name = "ekey-issuer",
    version,
    about,
    after_help = "\
Exit status: 0 success; 1 runtime failure (e.g. a port in use); 2 bad configuration.

Examples:
  ekey-issuer dev
  ekey-issuer dev --port 0 --admin-port 0 --print-json
  ekey-issuer check-config --config /etc/ekey/issuer.toml
  ekey-issuer keys --config /etc/ekey/issuer.toml
  ekey-issuer keys --config /etc/ekey/issuer.toml --jwks > jwks-backup.json
  ekey-issuer serve --config /etc/ekey/issuer.toml"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve with a configuration file (EKEY_* variables override its scalar settings).
    Serve(ServeArgs),
    /// Load and check a configuration file, its keys, secrets, client keys and
    /// Redis connections; print its warnings (e.g. a fleet whose replay cache
    /// is per process); serve nothing.
    CheckConfig(ConfigArgs),
    /// Start a development issuer on loopback: in-memory key, demo clients and templates.
    Dev(DevArgs),
    /// Print the JWKS the configuration would publish and each key's state
    /// (active, next, previous; since when); exit 2 if the keys may not be
    /// used now (e.g. a key made active before a JWKS max-age has passed).
    Keys(KeysArgs),
}

/// `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print only the JWKS (JSON), e.g. to keep a copy for disaster recovery.
    #[arg(long)]
    pub jwks: bool,
}

/// Log line format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// For a terminal.
    Human,
    /// JSON lines.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// `--config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE", env = "EKEY_CONFIG")]
    pub config: PathBuf,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Log format; overrides log.format and EKEY_LOG_FORMAT.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
}

/// `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port of the public listener on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub port: u16,
    /// Port of the admin listener on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8081, value_name = "PORT")]
    pub admin_port: u16,
    /// Audience (API origin) of the demo templates.
    #[arg(long, default_value = crate::dev::DEV_AUDIENCE, value_name = "URL")]
    pub audience: String,
    /// Print one JSON line with the URLs and demo credentials on standard
    /// output (the human summary then goes to standard error).
    #[arg(long)]
    pub print_json: bool,
    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
    /// Log filter (tracing syntax).
    #[arg(long, default_value = "info", env = "EKEY_LOG", value_name = "FILTER")]
    pub log: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["ekey-issuer", "dev", "--port", "0", "--print-json"]).unwrap();
        let Command::Dev(d) = c.command else { panic!("not dev") };
        assert_eq!((d.port, d.admin_port, d.print_json), (0, 8081, true));
        let c = Cli::try_parse_from(["ekey-issuer", "serve", "--config", "f.toml", "--log-format", "json"]).unwrap();
        let Command::Serve(s) = c.command else { panic!("not serve") };
        assert_eq!(s.log_format, Some(LogFormatArg::Json));
        assert!(
            Cli::try_parse_from(["ekey-issuer", "check-config"]).is_err() || std::env::var_os("EKEY_CONFIG").is_some()
        );
        let c = Cli::try_parse_from(["ekey-issuer", "keys", "--config", "f.toml", "--jwks"]).unwrap();
        let Command::Keys(k) = c.command else { panic!("not keys") };
        assert!(k.jwks);
    }
}
