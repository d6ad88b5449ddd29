//! `ekey-gateway`: wiring only — config → logging → telemetry → verifier →
//! bind → serve → drain → telemetry flush. A config error goes to standard
//! error with exit status 2.

use clap::Parser;
use ekey_gateway::cli::{Cli, Command};
use ekey_gateway::config::{KeysConfig, StoreConfig};
use ekey_gateway::observe::SERVICE_NAME;
use ekey_gateway::{build, Bound, Config, StartError};
use ekey_telemetry::logging::{self, LogFormat};
use ekey_telemetry::{AuditConfig, AuditSinkKind, OtlpMode, Telemetry, TelemetryConfig, TelemetryError};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

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

fn init_logging(level: &str, json: bool) -> Result<(), Failure> {
    let format = if json { LogFormat::Json } else { LogFormat::Text };
    logging::init(format, level).map_err(|e| match e {
        TelemetryError::Config { field, problem } if field == "log filter" => {
            (EXIT_CONFIG, format!("log.level: {level:?} is not a filter: {problem}"))
        }
        TelemetryError::Config { field, problem } => (EXIT_CONFIG, format!("{field}: {problem}")),
        other => (EXIT_RUNTIME, format!("cannot start logging: {other}")),
    })
}

fn telemetry_failure(e: TelemetryError) -> Failure {
    match e {
        e @ (TelemetryError::Config { .. } | TelemetryError::AuditFile { .. }) => (EXIT_CONFIG, e.to_string()),
        other => (EXIT_RUNTIME, other.to_string()),
    }
}

async fn serve(path: &std::path::Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    init_logging(&config.log.level, config.log.json)?;
    let telemetry = Telemetry::start(SERVICE_NAME, env!("CARGO_PKG_VERSION"), &config.telemetry, &config.audit)
        .map_err(telemetry_failure)?;
    let result = run(&config, &telemetry).await;
    telemetry.shutdown().await;
    result
}

async fn run(config: &Config, telemetry: &Telemetry) -> Result<(), Failure> {
    let service = Arc::new(build(config, telemetry).await.map_err(failure)?);
    let bound = Bound::bind(config).await.map_err(failure)?;
    // Not println!: a closed standard output must not stop the server.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}\nadmin listening on {}", bound.local_addr(), bound.admin_addr());
    let _ = out.flush();
    drop(out);
    let (otlp_metrics, otlp_traces) = telemetry.otlp_endpoints();
    tracing::info!(
        addr = %bound.local_addr(), admin = %bound.admin_addr(), otlp_metrics, otlp_traces,
        audit = ?config.audit.sink, "ekey-gateway serving"
    );
    bound.serve(service, shutdown_signal()).await;
    Ok(())
}

/// Everything but connecting: files are read and checked, Redis settings
/// validated (not dialled).
async fn check_config(path: &std::path::Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let mut offline = config.clone();
    offline.store = StoreConfig::Memory { max_traces: 1, max_proofs: 1 };
    // Nothing exported, no audit file created: only checked.
    let quiet = TelemetryConfig { otlp: OtlpMode::Off, ..config.telemetry.clone() };
    let telemetry = Telemetry::start(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        &quiet,
        &AuditConfig { sink: AuditSinkKind::Off, path: None },
    )
    .map_err(telemetry_failure)?;
    let built = build(&offline, &telemetry).await.map_err(failure);
    telemetry.shutdown().await;
    built?;
    let keys = match &config.verifier.keys {
        KeysConfig::Url(u) => format!("JWKS from {u}"),
        KeysConfig::File(f) => format!("JWKS file {}", f.display()),
    };
    let store = match &config.store {
        StoreConfig::Memory { .. } => {
            "in-memory store (per process, no revocation feed: allow_without_revocation = true)".to_owned()
        }
        StoreConfig::Redis(r, _) => match &r.url {
            Some(_) => "Redis store (one node)".to_owned(),
            None => format!("Redis Cluster store ({} seed node(s))", r.cluster.len()),
        },
    };
    let audit = match (config.audit.sink, &config.audit.path) {
        (AuditSinkKind::File, Some(p)) => format!("audit to {}", p.display()),
        (AuditSinkKind::Off, _) => "audit off".to_owned(),
        _ => "audit to stdout".to_owned(),
    };
    println!(
        "config OK: listen {}, admin {}, issuer {}, {} audience(s), {keys}, {} trusted proxy entr(ies), {store}, nonces {}",
        config.server.listen,
        config.server.admin_listen,
        config.verifier.issuer,
        config.verifier.audiences.len(),
        config.server.trusted_proxies.len(),
        if config.verifier.nonce.is_some() { "on" } else { "off" }
    );
    println!("{audit}");
    if matches!(config.store, StoreConfig::Memory { .. }) {
        println!("warning: {}", ekey_gateway::admin::NO_REVOCATION_FEED);
    }
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
