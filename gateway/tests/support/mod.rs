//! What the gateway tests and the benchmark run: a local issuer key that
//! mints tokens, the gateway in-process, a tiny upstream, real nginx and
//! Caddy child processes (killed on drop) and a small HTTP client. Loopback
//! only; every port is picked fresh. Errors are strings that say what to do.

#![allow(dead_code)]

use bytes::Bytes;
use ekey_gateway::observe::SERVICE_NAME;
use ekey_gateway::{build, Bound, Config};
use ekey_telemetry::Telemetry;
use ekey_verifier::client::DpopKey;
use ekey_verifier::{b64_encode, Algorithm, Audience, Capability, Claims, Confirmation, Jwks, KeyPair};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type Error = String;

pub const ISSUER: &str = "https://issuer.test";
pub const NGINX_CONF: &str = include_str!("../../../deploy/gateway/nginx.conf");
pub const CADDYFILE: &str = include_str!("../../../deploy/gateway/Caddyfile");
pub const NONCE_SECRET: &str = "gateway-test-nonce-secret-0123456789abcdef";

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// An issuer signing key; tokens minted here are what ekey-issuer mints.
pub struct Issuer {
    pub key: KeyPair,
}

impl Issuer {
    pub fn new() -> Result<Self, Error> {
        Ok(Self { key: KeyPair::generate(Algorithm::ES256).map_err(|e| e.to_string())? })
    }

    pub fn jwks_json(&self) -> Result<String, Error> {
        let jwk = self.key.public_jwk().clone().with_kid_and_alg(self.key.thumbprint(), self.key.algorithm());
        Ok(Jwks::new(vec![jwk]).map_err(|e| e.to_string())?.to_json().to_string())
    }

    /// A DPoP-bound token for `client` with `action` and `limit`, for `audience`.
    pub fn token(&self, client: &DpopKey, audience: &str, action: &str, limit: u32) -> Result<String, Error> {
        self.token_bound(Confirmation::Jkt(client.thumbprint().into()), audience, action, limit)
    }

    /// A token with the confirmation `cnf` (DPoP key or certificate).
    pub fn token_bound(&self, cnf: Confirmation, audience: &str, action: &str, limit: u32) -> Result<String, Error> {
        let mut jti = [0u8; 16];
        openssl_rand(&mut jti)?;
        let now = now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "client-1".into(),
            aud: Audience::One(audience.into()),
            iat: now,
            nbf: now,
            exp: now + 120,
            jti: b64_encode(jti),
            cap: Capability { action: action.into(), scope: None, limit, subcap: vec![] },
            cnf,
            tpl: Some("test".into()),
        };
        let header = serde_json::json!({"alg": "ES256", "typ": "ekey+jwt", "kid": self.key.thumbprint()});
        let payload = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
        let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(payload));
        let sig = self.key.sign(input.as_bytes()).map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", b64_encode(sig)))
    }
}

fn openssl_rand(buf: &mut [u8]) -> Result<(), Error> {
    openssl::rand::rand_bytes(buf).map_err(|e| e.to_string())
}

/// The gateway, in this process, on a fresh loopback port (and a fresh
/// admin port).
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub telemetry: Telemetry,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Gateway settings for a test.
pub struct GatewayOptions<'a> {
    pub audience: &'a str,
    pub trusted_proxies: &'a [&'a str],
    pub nonces: bool,
    pub public_base_url: Option<&'a str>,
    /// `[store.redis] url`; in-memory store when `None`.
    pub redis_url: Option<String>,
    /// `client_cert_header` and `client_cert_format`.
    pub client_cert: Option<(&'a str, &'a str)>,
    /// The body of `[telemetry]`. Defaults to `otlp = "off"`.
    pub telemetry: String,
    /// The body of `[audit]`. Defaults to `sink = "off"`.
    pub audit: String,
    /// `verifier.jwks_url` instead of a JWKS file.
    pub jwks_url: Option<String>,
    /// More `[server]` lines (e.g. `trust_forwarded_prefix = true`, limits).
    pub server: String,
    /// The body of `[verifier.jwks]` (with `jwks_url`). Defaults to none.
    pub jwks_table: Option<String>,
}

impl<'a> GatewayOptions<'a> {
    pub fn new(audience: &'a str, trusted_proxies: &'a [&'a str]) -> Self {
        Self {
            audience,
            trusted_proxies,
            nonces: false,
            public_base_url: None,
            redis_url: None,
            client_cert: None,
            telemetry: "otlp = \"off\"\n".into(),
            audit: "sink = \"off\"\n".into(),
            jwks_url: None,
            server: String::new(),
            jwks_table: None,
        }
    }
}

impl Gateway {
    pub async fn start(issuer: &Issuer, opts: &GatewayOptions<'_>) -> Result<Self, Error> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, issuer.jwks_json()?).map_err(|e| e.to_string())?;
        let proxies: Vec<String> = opts.trusted_proxies.iter().map(|p| format!("{p:?}")).collect();
        let mut toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntrusted_proxies = [{}]\n",
            proxies.join(", ")
        );
        if let Some(b) = opts.public_base_url {
            toml.push_str(&format!("public_base_url = {b:?}\n"));
        }
        toml.push_str(&opts.server);
        if let Some((header, format)) = opts.client_cert {
            toml.push_str(&format!("client_cert_header = {header:?}\nclient_cert_format = {format:?}\n"));
        }
        toml.push_str(&format!("[verifier]\nissuer = {ISSUER:?}\naudiences = [{:?}]\n", opts.audience));
        match &opts.jwks_url {
            Some(url) => toml.push_str(&format!("jwks_url = {url:?}\n")),
            None => toml.push_str(&format!("jwks_file = {:?}\n", jwks.display().to_string())),
        }
        if opts.nonces {
            let secret = dir.path().join("nonce.secret");
            std::fs::write(&secret, format!("{NONCE_SECRET}\n")).map_err(|e| e.to_string())?;
            toml.push_str(&format!("nonce_secret_file = {:?}\n", secret.display().to_string()));
        }
        if let Some(table) = &opts.jwks_table {
            toml.push_str(&format!("[verifier.jwks]\n{table}"));
        }
        match &opts.redis_url {
            Some(url) => toml.push_str(&format!("[store]\nkind = \"redis\"\n[store.redis]\nurl = {url:?}\n")),
            None => toml.push_str("[store]\nallow_without_revocation = true\n"),
        }
        toml.push_str("[log]\nlevel = \"warn\"\n");
        toml.push_str(&format!("[telemetry]\n{}[audit]\n{}", opts.telemetry, opts.audit));
        let config = Config::from_toml_str(&toml).map_err(|e| e.to_string())?;
        let telemetry =
            Telemetry::start(SERVICE_NAME, "test", &config.telemetry, &config.audit).map_err(|e| e.to_string())?;
        let service = Arc::new(build(&config, &telemetry).await.map_err(|e| e.to_string())?);
        let bound = Bound::bind(&config).await.map_err(|e| e.to_string())?;
        let (addr, admin) = (bound.local_addr(), bound.admin_addr());
        let task = tokio::spawn(bound.serve(service, std::future::pending()));
        Ok(Self { addr, admin, telemetry, dir, task })
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
}

/// A tiny upstream that records what reaches it and answers 200 "upstream".
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// `record` off keeps the benchmark's upstream free of locking.
    pub async fn start(record: bool) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        if record {
                            if let Ok(mut v) = s.lock() {
                                v.push(Seen {
                                    method: req.method().to_string(),
                                    path: req.uri().path().to_owned(),
                                    headers: req.headers().clone(),
                                });
                            }
                        }
                        async {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream"))))
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(Self { addr, seen, task })
    }

    pub fn count(&self) -> usize {
        self.seen.lock().map_or(0, |v| v.len())
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().ok().and_then(|v| v.last().cloned())
    }
}

/// A reverse proxy child process (nginx or Caddy), killed on drop.
pub struct Proxy {
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
    child: Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Nginx,
    Caddy,
}

impl Proxy {
    /// Starts `kind` with its deploy/gateway file in front of `upstream`,
    /// asking `authz`. Retries with a new port if the one picked was taken.
    pub fn start(kind: ProxyKind, authz: SocketAddr, upstream: SocketAddr) -> Result<Self, Error> {
        let template = match kind {
            ProxyKind::Nginx => NGINX_CONF,
            ProxyKind::Caddy => CADDYFILE,
        };
        Self::start_template(kind, template, authz, upstream)
    }

    /// The same with another configuration template.
    pub fn start_template(
        kind: ProxyKind,
        template: &str,
        authz: SocketAddr,
        upstream: SocketAddr,
    ) -> Result<Self, Error> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(kind, template, authz, upstream) {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(kind: ProxyKind, template: &str, authz: SocketAddr, upstream: SocketAddr) -> Result<Self, Error> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port()?;
        let prefix = dir.path().display().to_string();
        let render = |t: &str| {
            t.replace("{{PREFIX}}", &prefix)
                .replace("{{PORT}}", &port.to_string())
                .replace("{{AUTHZ}}", &authz.to_string())
                .replace("{{UPSTREAM}}", &upstream.to_string())
        };
        let log = dir.path().join(match kind {
            ProxyKind::Nginx => "error.log",
            ProxyKind::Caddy => "caddy.log",
        });
        let child = match kind {
            ProxyKind::Nginx => {
                let conf = dir.path().join("nginx.conf");
                std::fs::write(&conf, render(template)).map_err(|e| e.to_string())?;
                Command::new(find("nginx", &["/usr/sbin/nginx"])?)
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(&log)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start nginx: {e}"))?
            }
            ProxyKind::Caddy => {
                let conf = dir.path().join("Caddyfile");
                std::fs::write(&conf, render(template)).map_err(|e| e.to_string())?;
                let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
                Command::new(find("caddy", &["/usr/bin/caddy"])?)
                    .args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(&conf)
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path().join("data"))
                    .env("XDG_CONFIG_HOME", dir.path().join("config"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(out)
                    .spawn()
                    .map_err(|e| format!("cannot start caddy: {e}"))?
            }
        };
        let mut proxy = Self { port, dir, log, child };
        proxy.wait_ready()?;
        Ok(proxy)
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("proxy exited ({status}): {}", self.log_text()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("proxy did not listen within 10 s: {}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn find(name: &str, fallbacks: &[&str]) -> Result<PathBuf, Error> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    from_path
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
        .ok_or_else(|| format!("{name} is not installed: run `sudo apt-get install {name}` (scripts/test installs it)"))
}

pub fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// One answer as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

/// Sends one request on a fresh connection; `Host` is the address.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<Answer, Error> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Sends one request with the request line written byte for byte (no
/// client-side URI checks or normalisation), on a fresh connection that
/// closes after the answer. The answer's body is not read.
pub async fn send_raw(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Answer, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("no answer to {method} {target} within 10 s"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) =
                (http::HeaderName::from_bytes(k.trim().as_bytes()), http::HeaderValue::from_str(v.trim()))
            {
                headers.append(k, v);
            }
        }
    }
    Ok(Answer { status, headers, body: body.to_owned() })
}

/// A DPoP request: `Authorization: DPoP token` and a fresh proof for `url`.
#[allow(clippy::too_many_arguments)]
pub async fn dpop_call(
    addr: SocketAddr,
    client: &DpopKey,
    token: &str,
    method: &str,
    path: &str,
    url: &str,
    nonce: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<(Answer, String), Error> {
    let proof = client.proof(method, url, Some(token), nonce, now()).map_err(|e| e.to_string())?;
    let auth = format!("DPoP {token}");
    let mut headers = vec![("authorization", auth.as_str()), ("dpop", proof.as_str())];
    headers.extend_from_slice(extra);
    Ok((send(addr, method, path, &headers).await?, proof))
}

pub fn path_of(p: &Path) -> String {
    p.display().to_string()
}
