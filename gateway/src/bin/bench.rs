//! `ekey-gateway-bench`: requests per second through real nginx with and
//! without ekey-gateway, and of the gateway alone, in one run on loopback;
//! prints one JSON line. See docs/gateway.md, "Benchmark".
//!
//! ```text
//! cargo run --release -p ekey-gateway --bin ekey-gateway-bench -- --requests 4000 --concurrency 16
//! ```
//!
//! Every measured request carries a real token and a fresh DPoP proof (made
//! before the clock starts), and every one must be accepted: a single
//! refusal makes the run fail rather than report a flattering number.

#[path = "../../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use clap::Parser;
use ekey_verifier::client::DpopKey;
use ekey_verifier::{Algorithm, KeyPair, VerifyingKey};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use support::{Gateway, GatewayOptions, Issuer, Proxy, ProxyKind, Upstream, NGINX_CONF};

/// Loopback benchmark of nginx → ekey-gateway → upstream.
#[derive(Debug, Parser)]
#[command(name = "ekey-gateway-bench", version, about)]
struct Args {
    /// Requests per measurement (1 ..= 200000).
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    requests: u32,
    /// Concurrent keep-alive connections (1 ..= 256).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
}

const AUDIENCE: &str = "https://api.test";
const USES_PER_TOKEN: u32 = 1000;

/// One prepared request: path and headers.
type Prepared = (String, Vec<(&'static str, String)>);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ekey-gateway-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<String, String> {
    let n = args.requests as usize;
    let issuer = Issuer::new()?;
    let gateway = Gateway::start(&issuer, &GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])).await?;
    let upstream = Upstream::start(false).await?;
    let with_auth = Proxy::start(ProxyKind::Nginx, gateway.addr, upstream.addr)?;
    let plain = Proxy::start_template(ProxyKind::Nginx, &without_auth(NGINX_CONF), gateway.addr, upstream.addr)?;
    let client = DpopKey::generate(Algorithm::ES256).map_err(|e| e.to_string())?;

    let baseline =
        measure(plain.addr(), (0..n).map(|i| (format!("/payments/{i}"), Vec::new())).collect(), args).await?;

    let through = prepare(&issuer, &client, n, |i| format!("http://{}/payments/{i}", with_auth.addr()))?;
    let with_authz = measure(with_auth.addr(), through, args).await?;

    let alone = prepare(&issuer, &client, n, |i| format!("http://127.0.0.1:1/payments/{i}"))?;
    let alone = alone
        .into_iter()
        .map(|(path, mut h)| {
            h.extend([
                ("x-original-method", "POST".to_owned()),
                ("x-original-uri", path),
                ("x-forwarded-host", "127.0.0.1:1".to_owned()),
                ("x-forwarded-proto", "http".to_owned()),
            ]);
            ("/nginx".to_owned(), h)
        })
        .collect();
    let authz_alone = measure(gateway.addr, alone, args).await?;

    let es256 = raw_es256_verify_rate()?;
    Ok(serde_json::json!({
        "requests": n,
        "concurrency": args.concurrency,
        "nginx_upstream_rps": round(baseline),
        "nginx_authz_upstream_rps": round(with_authz),
        "authz_alone_rps": round(authz_alone),
        "es256_verify_rps_one_core": round(es256),
        "authz_path_vs_plain_nginx": ratio(with_authz, baseline),
        "authz_alone_vs_es256_verify": ratio(authz_alone, es256),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
    .to_string())
}

/// The nginx configuration with the authorization lines removed: the same
/// proxy path, no sub-request.
fn without_auth(conf: &str) -> String {
    conf.lines()
        .filter(|l| !(l.contains("auth_request") || l.contains("X-Ekey") || l.contains("add_header")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `n` POSTs, each with a token (one per `USES_PER_TOKEN` uses) and a fresh proof for `url(i)`.
fn prepare(
    issuer: &Issuer,
    client: &DpopKey,
    n: usize,
    url: impl Fn(usize) -> String,
) -> Result<Vec<Prepared>, String> {
    let mut out = Vec::with_capacity(n);
    let mut token = String::new();
    for i in 0..n {
        if i % USES_PER_TOKEN as usize == 0 {
            token = issuer.token(client, AUDIENCE, "POST:/payments/:id", USES_PER_TOKEN)?;
        }
        let u = url(i);
        let proof = client.proof("POST", &u, Some(&token), None, support::now()).map_err(|e| e.to_string())?;
        let headers = vec![("authorization", format!("DPoP {token}")), ("dpop", proof)];
        out.push((format!("/payments/{i}"), headers));
    }
    Ok(out)
}

/// Sends every prepared request (POST) over `concurrency` keep-alive
/// connections; requests/s. Any non-200 answer fails the run.
async fn measure(addr: SocketAddr, requests: Vec<Prepared>, args: &Args) -> Result<f64, String> {
    let c = args.concurrency as usize;
    let mut lanes: Vec<Vec<Prepared>> = (0..c).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        lanes[i % c].push(r);
    }
    let total: usize = lanes.iter().map(Vec::len).sum();
    let mut senders = Vec::with_capacity(c);
    for _ in 0..c {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        senders.push(sender);
    }
    let host = Arc::new(addr.to_string());
    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .zip(lanes)
        .map(|(mut sender, lane)| {
            let host = Arc::clone(&host);
            tokio::spawn(async move {
                for (path, headers) in lane {
                    let mut b = Request::builder().method("POST").uri(&path).header("host", host.as_str());
                    for (k, v) in &headers {
                        b = b.header(*k, v);
                    }
                    let req = b.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
                    let status = res.status();
                    let reason = res.headers().get("x-ekey-reason").cloned();
                    res.into_body().collect().await.map_err(|e| e.to_string())?;
                    if status != http::StatusCode::OK {
                        return Err(format!("{path}: status {status}, reason {reason:?}"));
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// ES256 signature checks per second on one core, with the same library,
/// in this run: the floor every DPoP request pays once.
fn raw_es256_verify_rate() -> Result<f64, String> {
    let key = KeyPair::generate(Algorithm::ES256).map_err(|e| e.to_string())?;
    let msg = b"ekey benchmark signing input";
    let sig = key.sign(msg).map_err(|e| e.to_string())?;
    let verifier = VerifyingKey::new(key.public_jwk(), Algorithm::ES256).map_err(|e| e.to_string())?;
    let iterations = 2000;
    let start = Instant::now();
    for _ in 0..iterations {
        if !verifier.verify(msg, &sig) {
            return Err("ES256 self-check failed".into());
        }
    }
    Ok(f64::from(iterations) / start.elapsed().as_secs_f64())
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}
