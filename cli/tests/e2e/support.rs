//! Helpers for the end-to-end tests: run the built `ekey`, scratch
//! directories, a token-signing test issuer key, and tiny HTTP servers on
//! 127.0.0.1:0.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ekey_verifier::client::DpopKey;
use ekey_verifier::{b64_encode, Algorithm, Jwks, KeyPair};
use http::request::Parts;
use http::Response;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

pub const AUDIENCE: &str = "https://api.example.com";
pub const ISSUER: &str = "http://issuer.test";

/// The outcome of one `ekey` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON (fails the test with both streams shown).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Asserts the exit status, showing everything when it differs, and that
    /// nothing panicked.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit status: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "ekey panicked: {self:#?}");
        self
    }
}

/// Runs `ekey ARGS`, with `stdin` as standard input and extra environment.
pub fn ekey_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ekey"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("EKEY_CLIENT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run ekey");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        input.write_all(data).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait for ekey");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `ekey ARGS` with empty standard input.
pub fn ekey(args: &[&str]) -> Run {
    ekey_with(args, None, &[])
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ekey-cli-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Path as &str (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `ekey keygen` into `dir/name`; returns the path and the loaded key.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, DpopKey) {
    let path = dir.join(name);
    ekey(&["keygen", "--out", s(&path)]).expect_code(0);
    let key = DpopKey::from_pem(&std::fs::read(&path).expect("key file")).expect("key loads");
    (path, key)
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A test issuer's signing key: signs ekey tokens and publishes its JWKS.
pub struct TestIssuer {
    pub key: KeyPair,
    pub iss: String,
}

impl TestIssuer {
    pub fn new(iss: &str) -> Self {
        Self { key: KeyPair::generate(Algorithm::ES256).expect("issuer key"), iss: iss.to_owned() }
    }

    pub fn jwks(&self) -> Value {
        let jwk = self.key.public_jwk().clone().with_kid_and_alg(self.key.thumbprint(), Algorithm::ES256);
        Jwks::new(vec![jwk]).expect("jwks").to_json()
    }

    /// Typical claims: `action`, `limit` uses, bound to `jkt`, live 60 s.
    pub fn claims(&self, jkt: &str, action: &str, limit: u32) -> Value {
        let now = now();
        json!({
            "iss": self.iss, "sub": "client-1", "aud": AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 60,
            "jti": b64_encode(unique16()),
            "cap": { "action": action, "limit": limit },
            "cnf": { "jkt": jkt },
            "tpl": "test-template",
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": "ES256", "typ": "ekey+jwt", "kid": self.key.thumbprint() });
        let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(claims.to_string()));
        let sig = self.key.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", b64_encode(sig))
    }
}

/// 16 bytes unique within and across test runs (not secret: tests only).
pub fn unique16() -> [u8; 16] {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
    out[8..12].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    out[12..].copy_from_slice(&std::process::id().to_be_bytes());
    out
}

/// A response with a body.
pub fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).expect("response")
}

/// A JSON response.
pub fn respond_json(status: u16, headers: &[(&str, &str)], body: &Value) -> Response<Full<Bytes>> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    respond(status, &all, body.to_string())
}

/// Serves `handler` on 127.0.0.1:0 from a background thread for the rest of
/// the test process; returns the address.
pub fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handler = Arc::clone(&handler);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(handler(parts, body).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}
