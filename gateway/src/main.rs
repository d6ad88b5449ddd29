//! `ekey-gateway`: wiring only — config → tracing → verifier → bind → serve →
//! drain. A config error goes to standard error with exit status 2.

use clap::Parser;
use ekey_gateway::cli::{Cli, Command};
use ekey_gateway::config::{KeysConfig, StoreConfig};
use ekey_gateway::{build, Bound, Config, StartError};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const DRAIN: Duration = Duration::from_secs(10);

type Failure = (u8, String);

fn failure(e: StartError) -> Failure {
    match e {
        StartError::Config(e) => (EXIT_CONFIG, e.to_string()),
        other => (EXIT_RUNTIME, other.to_string()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(&args.config).await,
        Command::CheckConfig(args) => check_config(&args.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("ekey-gateway: {message}");
            ExitCode::from(code)
        }
    }
}

fn init_tracing(level: &str, json: bool) -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| (EXIT_CONFIG, format!("log.level: {level:?} is not a filter: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let done = if json { builder.json().try_init() } else { builder.try_init() };
    done.map_err(|e| (EXIT_RUNTIME, format!("cannot start logging: {e}")))
}

async fn serve(path: &std::path::Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    init_tracing(&config.log.level, config.log.json)?;
    let authz = Arc::new(build(&config).await.map_err(failure)?);
    let bound = Bound::bind(&config).await.map_err(failure)?;
    println!("listening on {}", bound.local_addr());
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %bound.local_addr(), "ekey-gateway serving");
    bound.serve(authz, shutdown_signal(), DRAIN).await;
    Ok(())
}

/// Everything but connecting: files are read and checked, Redis settings
/// validated (not dialled).
async fn check_config(path: &std::path::Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let mut offline = config.clone();
    offline.store = StoreConfig::Memory { max_traces: 1, max_proofs: 1 };
    build(&offline).await.map_err(failure)?;
    let keys = match &config.verifier.keys {
        KeysConfig::Url(u) => format!("JWKS from {u}"),
        KeysConfig::File(f) => format!("JWKS file {}", f.display()),
    };
    let store = match &config.store {
        StoreConfig::Memory { .. } => "in-memory store (per process)".to_owned(),
        StoreConfig::Redis(r, _) => match &r.url {
            Some(_) => "Redis store (one node)".to_owned(),
            None => format!("Redis Cluster store ({} seed node(s))", r.cluster.len()),
        },
    };
    println!(
        "config OK: listen {}, issuer {}, {} audience(s), {keys}, {} trusted proxy entr(ies), {store}, nonces {}",
        config.server.listen,
        config.verifier.issuer,
        config.verifier.audiences.len(),
        config.server.trusted_proxies.len(),
        if config.verifier.nonce.is_some() { "on" } else { "off" }
    );
    if config.server.trusted_proxies.is_empty() {
        println!("warning: no trusted_proxies: /nginx and /forward-auth will refuse every request");
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
