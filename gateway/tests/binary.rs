//! The `ekey-gateway` binary itself: `serve` with environment overrides,
//! answering, and a clean exit on SIGTERM.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod support;

use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::StatusCode;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{dpop_call, send, Issuer};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks_json().unwrap()).unwrap();
    let conf = dir.path().join("gateway.toml");
    // The file says a port that is not used: the environment overrides it.
    std::fs::write(
        &conf,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[store]\nallow_without_revocation = true\n\
             [verifier]\nissuer = \"https://issuer.test\"\naudiences = [\"https://api.test\"]\njwks_file = {:?}\n",
            support::path_of(&jwks)
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ekey-gateway"))
        .args(["serve", "--config"])
        .arg(&conf)
        .env("EKEY_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("EKEY_GATEWAY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("EKEY_GATEWAY_TRUSTED_PROXIES", "127.0.0.1/32")
        .env("EKEY_GATEWAY_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    // Kept open until the end: the gateway goes on writing to standard output.
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();

    assert_eq!(send(addr, "GET", "/healthz", &[]).await.unwrap().status, StatusCode::OK);
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, "https://api.test", "GET:/reports/:id", 1).unwrap();
    let h = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/reports/7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.test"),
    ];
    let (a, _) =
        dpop_call(addr, &client, &token, "GET", "/nginx", "https://api.test/reports/7", None, &h).await.unwrap();
    assert_eq!((a.status, a.header("x-ekey-sub")), (StatusCode::OK, "client-1".into()), "{a:?}");

    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "ekey-gateway did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The in-memory store has no revocation feed: the binary refuses to start
/// on it unless the config says `allow_without_revocation = true`, and says
/// why, naming the field.
#[test]
fn memory_store_without_consent_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks_json().unwrap()).unwrap();
    let conf = dir.path().join("gateway.toml");
    std::fs::write(
        &conf,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[store]\nkind = \"memory\"\n\
             [verifier]\nissuer = \"https://issuer.test\"\naudiences = [\"https://api.test\"]\njwks_file = {:?}\n",
            support::path_of(&jwks)
        ),
    )
    .unwrap();
    for command in ["serve", "check-config"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ekey-gateway"))
            .args([command, "--config"])
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("store.allow_without_revocation") && stderr.contains("revocation"), "{stderr}");
    }
}
