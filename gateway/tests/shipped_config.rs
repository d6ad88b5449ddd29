//! The shipped `deploy/gateway/gateway.toml`, run by the real `ekey-gateway`
//! binary with only its addresses and file paths replaced: it fetches the
//! keys of a real TLS issuer (`ekey-issuer`, in this process) over HTTPS
//! trusting the configured CA, counts uses in a TLS Redis with a password,
//! and decides a request end to end — a token from the issuer's `/token`, a
//! DPoP proof, 200 from the gateway — and refuses a replayed proof.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../../verifier/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_harness;

/// The issuer's test PKI and TLS client.
#[path = "../../issuer/tests/common/pki.rs"]
mod pki;

/// One HTTP answer, as the issuer's test PKI helpers return it.
#[derive(Debug)]
#[allow(dead_code)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

use base64::Engine as _;
use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::StatusCode;
use pki::{tls_connect, Pki};
use redis_harness::{RedisServer, ServerTls};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHIPPED: &str = include_str!("../../deploy/gateway/gateway.toml");
const AUDIENCE: &str = "https://api.example.com";
const CLIENT_SECRET: &str = "gateway-e2e-client-secret-0123456789";
const REDIS_PASSWORD: &str = "gateway-e2e-redis-password";
const WAIT: Duration = Duration::from_secs(20);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `text` with `from` replaced by `to`; `from` must be there (so a change
/// to the shipped file cannot silently skip a substitution).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "deploy/gateway/gateway.toml no longer contains {from:?}");
    text.replace(from, to)
}

/// The issuer: TLS from the test PKI, a generated key, one client and one
/// template for the shipped audience.
async fn issuer(pki: &Pki) -> ekey_issuer::ServerHandle {
    let secret_sha256: String =
        openssl::sha::sha256(CLIENT_SECRET.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [server.tls]
        cert = {cert:?}
        key = {key:?}
        [signing_key]
        generate = true
        [audit]
        sink = "off"
        [[clients]]
        id = "payments"
        auth = "client_secret_basic"
        secret_sha256 = "{secret_sha256}"
        [[templates]]
        name = "payments.create"
        clients = ["payments"]
        actions = ["POST:/payments/:id"]
        audience = "{AUDIENCE}"
        max_limit = 3
        "#,
        cert = pki.server.cert_path,
        key = pki.server.key_path,
    );
    ekey_issuer::Server::start(ekey_issuer::Config::from_toml_str(&config).unwrap()).await.unwrap()
}

/// A token for 3 uses of `POST:/payments/7` bound to `key`, from the
/// issuer's `/token` over TLS.
async fn token(pki: &Pki, issuer: &ekey_issuer::ServerHandle, key: &DpopKey) -> String {
    let endpoint = &issuer.urls().token_endpoint;
    let proof = key.proof("POST", endpoint, None, None, support::now()).unwrap();
    let details =
        serde_json::json!([{"type": "ekey_capability", "action": "POST:/payments/7", "limit": 3}]).to_string();
    let form = format!(
        "grant_type=client_credentials&authorization_details={}",
        percent_encoding::utf8_percent_encode(&details, percent_encoding::NON_ALPHANUMERIC)
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("payments:{CLIENT_SECRET}"));
    let mut conn = tls_connect(pki.anonymous_client(&[&rustls::version::TLS13]), issuer.public_addr()).await.unwrap();
    let headers = [
        ("content-type", "application/x-www-form-urlencoded".to_owned()),
        ("authorization", format!("Basic {basic}")),
        ("dpop", proof),
    ];
    let answer = conn.send(http::Method::POST, "/token", &headers, Some(form)).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["token_type"], "DPoP");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Waits for the binary's `listening on` lines in `stdout`.
fn addresses(stdout: &Path, child: &mut Killed, stderr: &Path) -> (SocketAddr, SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(stdout).unwrap_or_default();
        let find = |prefix: &str| {
            text.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|a| a.trim().parse::<SocketAddr>().ok())
        };
        if let (Some(a), Some(b)) = (find("listening on "), find("admin listening on ")) {
            return (a, b);
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("ekey-gateway exited ({status}): {}", std::fs::read_to_string(stderr).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "ekey-gateway did not listen within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_config_against_a_tls_issuer_end_to_end() {
    let pki = Pki::new();
    let issuer = issuer(&pki).await;
    let issuer_url = issuer.urls().issuer.clone();
    assert!(issuer_url.starts_with("https://127.0.0.1:"), "{issuer_url}");
    let tls = ServerTls {
        ca: pki.ca.cert_path.clone(),
        cert: pki.server.cert_path.clone(),
        key: pki.server.key_path.clone(),
        client_auth: false,
    };
    let redis = RedisServer::start_tls_with(&tls, &["--requirepass", REDIS_PASSWORD]);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("redis-password");
    std::fs::write(&password, format!("{REDIS_PASSWORD}\n")).unwrap();
    let ca = support::path_of(&pki.ca.cert_path);

    let mut conf = SHIPPED.to_owned();
    for (from, to) in [
        ("listen = \"127.0.0.1:9191\"", "listen = \"127.0.0.1:0\"".to_owned()),
        ("admin_listen = \"127.0.0.1:9091\"", "admin_listen = \"127.0.0.1:0\"".to_owned()),
        ("https://issuer.example.com", issuer_url.clone()),
        ("/etc/ekey/issuer-ca.pem", ca.clone()),
        ("rediss://redis.internal:6379", redis.url()),
        ("/etc/ekey/redis-ca.pem", ca.clone()),
        ("/run/secrets/ekey-redis", support::path_of(&password)),
    ] {
        conf = substitute(&conf, from, &to);
    }
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &conf).unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_ekey-gateway"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let (addr, admin) = addresses(&stdout, &mut child, &stderr);

    // Ready: Redis answers and the issuer's keys were fetched over TLS.
    let ready = support::send(admin, "GET", "/readyz", &[]).await.unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (StatusCode::OK, "ready\n"), "{ready:?}");

    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = token(&pki, &issuer, &client).await;
    let url = format!("{AUDIENCE}/payments/7");
    let original = [
        ("x-original-method", "POST"),
        ("x-original-uri", "/payments/7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example.com"),
    ];
    let (accepted, proof) =
        support::dpop_call(addr, &client, &token, "POST", "/nginx", &url, None, &original).await.unwrap();
    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
    assert_eq!(accepted.header("x-ekey-sub"), "payments");

    // The same proof again: a replay, refused through the Redis store.
    let auth = format!("DPoP {token}");
    let mut headers = vec![("authorization", auth.as_str()), ("dpop", proof.as_str())];
    headers.extend_from_slice(&original);
    let replay = support::send(addr, "POST", "/nginx", &headers).await.unwrap();
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{replay:?}");
    assert_eq!(replay.header("x-ekey-reason"), "replay_blocked", "{replay:?}");

    // A token the issuer did not sign (another key, same kid): refused.
    let forged = support::Issuer::new().unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let input = format!("{}.{}", parts[0], parts[1]);
    parts[2] = ekey_verifier::b64_encode(forged.key.sign(input.as_bytes()).unwrap());
    let forged_token = parts.join(".");
    let (refused, _) =
        support::dpop_call(addr, &client, &forged_token, "POST", "/nginx", &url, None, &original).await.unwrap();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert_eq!(refused.header("x-ekey-reason"), "invalid_token", "{refused:?}");
    issuer.shutdown().await;
}
