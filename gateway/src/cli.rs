//! The `ekey-gateway` command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// ekey-gateway: checks ekey capability tokens for nginx, Traefik, Caddy and Envoy.
#[derive(Debug, Parser)]
#[command(
    name = "ekey-gateway",
    version,
    about,
    after_help = "\
Endpoints: /nginx (auth_request), /forward-auth (Traefik forwardAuth, Caddy forward_auth),
{envoy_prefix}/... (Envoy ext_authz, default /envoy), /healthz.
Admin listener (server.admin_listen, default 127.0.0.1:9091): /healthz, /readyz, /metrics.

Environment overrides: EKEY_GATEWAY_LISTEN, EKEY_GATEWAY_ADMIN_LISTEN, EKEY_GATEWAY_TRUSTED_PROXIES,
EKEY_GATEWAY_PUBLIC_BASE_URL, EKEY_GATEWAY_MAX_CONNECTIONS, EKEY_GATEWAY_HEADER_READ_TIMEOUT,
EKEY_GATEWAY_DRAIN_TIMEOUT, EKEY_GATEWAY_ISSUER, EKEY_GATEWAY_AUDIENCES, EKEY_GATEWAY_JWKS_URL,
EKEY_GATEWAY_JWKS_CA_FILE, EKEY_GATEWAY_JWKS_SPKI_PINS, EKEY_GATEWAY_JWKS_MAX_STALENESS,
EKEY_GATEWAY_NONCE_SECRET_FILE, EKEY_GATEWAY_LOG_LEVEL, EKEY_GATEWAY_LOG_FORMAT, EKEY_GATEWAY_AUDIT_SINK,
EKEY_GATEWAY_AUDIT_PATH; OTEL_* for OTLP export ([telemetry]); RUST_LOG replaces log.level.

The issuer's JWKS is fetched over https:// ([verifier.jwks] ca_file, spki_pins, max_staleness).
The in-memory store has no revocation feed: it is refused unless [store] allow_without_revocation = true.

Exit status: 0 success; 1 runtime failure (e.g. a port in use); 2 bad configuration.

Examples:
  ekey-gateway check-config --config /etc/ekey/gateway.toml
  ekey-gateway serve --config /etc/ekey/gateway.toml"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the authz endpoints (prints `listening on ADDR`, then
    /// `admin listening on ADDR`, once bound).
    Serve(ConfigArgs),
    /// Load and check a configuration file and the files it names; serve nothing.
    CheckConfig(ConfigArgs),
}

/// `--config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}
