//! `ekey-issuer`: wiring only. tracing settings come from the config, so the
//! order is config → tracing → providers → bind → serve → drain; a config
//! error goes straight to standard error.

use clap::Parser;
use ekey_issuer::cli::{Cli, Command, DevArgs, KeysArgs, ServeArgs};
use ekey_issuer::dev::{banner, DevIssuer, DevOptions};
use ekey_issuer::{telemetry, Config, LogConfig, LogFormat, Providers, Server, StartError};
use ekey_verifier::Clock as _;
use std::io::Write as _;
use std::process::ExitCode;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::CheckConfig(args) => check_config(&args.config).await,
        Command::Dev(args) => dev(args).await,
        Command::Keys(args) => keys(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("ekey-issuer: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn failure(e: StartError) -> Failure {
    match e {
        StartError::Config(e) => (EXIT_CONFIG, e.to_string()),
        other => (EXIT_RUNTIME, other.to_string()),
    }
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut config = Config::load(&args.config.config).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    if let Some(f) = args.log_format {
        config.log.format = f.into();
    }
    telemetry::init(&config.log).map_err(|e| (EXIT_CONFIG, e))?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let providers = Providers::from_config(&config).await.map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let bound = Server::bind(&config).await.map_err(failure)?;
    let server = Server::serve_configured(config, providers, bound).map_err(failure)?;
    server.run_until(ekey_issuer::shutdown::signal()).await;
    Ok(())
}

async fn check_config(path: &std::path::Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let providers = Providers::from_config(&config).await.map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    if let Some(tls) = &config.server.tls {
        // Certificate, key and client CA must load, as at start.
        let self_signed = providers.clients.self_signed_thumbprints();
        ekey_issuer::TlsAcceptor::new(ekey_issuer::TlsSettings { config: tls.clone(), self_signed })
            .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    }
    // Telemetry was started to check it ([telemetry], [audit], OTEL_*).
    providers.telemetry.shutdown().await;
    let key = providers.keys.active();
    println!(
        "config OK: issuer {}, {} client(s), {} template(s) ({} rate-limited), signing key {} kid {}, replay cache {}",
        config.issuer.as_deref().unwrap_or("(derived from server.listen)"),
        config.clients.len(),
        config.templates.len(),
        config.rate_limits.len(),
        key.algorithm(),
        key.kid(),
        providers.replay.backend()
    );
    for w in &config.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

/// The key set as the config describes it now; the JWKS on standard output
/// (alone with `--jwks`), the state of each key before it.
async fn keys(args: KeysArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config.config).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let now = ekey_verifier::SystemClock.now();
    let max_age = config.endpoints.jwks_max_age;
    let (set, warnings) =
        ekey_issuer::load_keys(&config.signing_key, max_age, now).await.map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let jwks = serde_json::to_string_pretty(&set.jwks().to_json()).map_err(|e| (EXIT_RUNTIME, e.to_string()))?;
    if !args.jwks {
        print!("{}", ekey_issuer::keys_report(&set, &config.signing_key, max_age, now));
        for w in &warnings {
            println!("warning: {w}");
        }
        println!();
    }
    println!("{jwks}");
    Ok(())
}

async fn dev(args: DevArgs) -> Result<(), Failure> {
    let log = LogConfig { level: args.log.clone(), format: args.log_format.map_or(LogFormat::Human, Into::into) };
    telemetry::init(&log).map_err(|e| (EXIT_CONFIG, e))?;
    let opts =
        DevOptions { port: args.port, admin_port: args.admin_port, audience: args.audience, ..DevOptions::default() };
    let dev = DevIssuer::start(opts).await.map_err(failure)?;
    let info = dev.info();
    if args.print_json {
        let line = serde_json::to_string(&info).map_err(|e| (EXIT_RUNTIME, e.to_string()))?;
        println!("{line}");
        eprint!("{}", banner(&info));
    } else {
        print!("{}", banner(&info));
    }
    let _ = std::io::stdout().flush();
    ekey_issuer::shutdown::signal().await;
    dev.shutdown().await;
    Ok(())
}
