//! Shared test harness: an HTTP client over loopback, token requests, client
//! assertions, and a small API protected by the real verifier.

#![allow(dead_code, clippy::unwrap_used)]

pub mod kms;
pub mod pki;
pub mod process;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use ekey_verifier::{
    b64_encode, Clock, HttpJwks, HttpJwksSettings, KeyPair, MemoryStore, SystemClock, Verifier, VerifierSettings,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Every test body runs under this bound.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `f` with a time bound.
pub async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The OAuth `error` code of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request over a fresh client.
pub async fn send(method: Method, url: &str, headers: &[(&str, String)], body: Option<String>) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
    let res = client.request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

/// How a token request authenticates.
pub enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Assertion(&'a str, String),
}

/// `POST /token` with `form` (grant_type added unless present) and an
/// optional DPoP proof.
pub async fn token_request(endpoint: &str, auth: Auth<'_>, dpop: Option<String>, form: &[(&str, &str)]) -> Answer {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !form.iter().any(|(k, _)| *k == "grant_type") {
        pairs.push(("grant_type".into(), "client_credentials".into()));
    }
    pairs.extend(form.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded".to_string())];
    match auth {
        Auth::None => {}
        Auth::Basic(id, secret) => {
            headers.push(("authorization", format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))))
        }
        Auth::Assertion(id, jwt) => {
            pairs.push(("client_id".into(), id.into()));
            pairs.push(("client_assertion_type".into(), ekey_issuer::JWT_BEARER.into()));
            pairs.push(("client_assertion".into(), jwt));
        }
    }
    if let Some(p) = dpop {
        headers.push(("dpop", p));
    }
    let body = serde_urlencoded::to_string(&pairs).unwrap();
    send(Method::POST, endpoint, &headers, Some(body)).await
}

pub fn now() -> i64 {
    SystemClock.now()
}

/// A `private_key_jwt` assertion with `jti`.
pub fn assertion(key: &KeyPair, client_id: &str, aud: &str, jti: &str) -> String {
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now(), "exp": now() + 60, "jti": jti});
    sign_jwt(key, &claims)
}

/// Signs `claims` as a compact JWS with `kid` = thumbprint.
pub fn sign_jwt(key: &KeyPair, claims: &Value) -> String {
    let header = json!({"alg": key.algorithm().as_str(), "typ": "JWT", "kid": key.thumbprint()});
    let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(claims.to_string()));
    format!("{input}.{}", b64_encode(key.sign(input.as_bytes()).unwrap()))
}

/// Binds the API's listener first, so its origin can be the issuer's audience.
pub struct ApiListener {
    listener: TcpListener,
    pub origin: String,
}

pub async fn api_listener() -> ApiListener {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    ApiListener { listener, origin }
}

/// A small API behind the real verifier: answers 200 with the verified
/// capability as JSON, or the verifier's rejection.
pub struct Api {
    pub origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiListener {
    pub fn serve(self, issuer: &str, jwks_uri: &str) -> Api {
        let keys = HttpJwks::new(HttpJwksSettings::new(jwks_uri)).unwrap();
        let verifier = Arc::new(Verifier::new(
            VerifierSettings::new(issuer, &self.origin),
            Arc::new(keys),
            Arc::new(MemoryStore::default()),
        ));
        let origin = self.origin.clone();
        let listener = self.listener;
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let verifier = Arc::clone(&verifier);
                let origin = origin.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let verifier = Arc::clone(&verifier);
                        let url = format!("{origin}{}", req.uri().path());
                        async move {
                            let res = match verifier.verify_http(req.method(), &url, req.headers(), None).await {
                                Ok(cap) => {
                                    let body = json!({"sub": cap.sub, "action": cap.action, "used": cap.used, "remaining": cap.remaining, "trace": cap.trace});
                                    Response::new(Full::new(Bytes::from(body.to_string())))
                                }
                                Err(rejection) => verifier.reject(&rejection).map(|()| Full::new(Bytes::new())),
                            };
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Api { origin: self.origin, task }
    }
}

impl Api {
    /// A request with `Authorization: DPoP <token>` and a fresh proof.
    pub async fn call(&self, key: &ekey_verifier::client::DpopKey, token: &str, method: Method, path: &str) -> Answer {
        let url = format!("{}{path}", self.origin);
        let proof = key.proof(method.as_str(), &url, Some(token), None, now()).unwrap();
        self.call_with_proof(token, proof, method, path).await
    }

    /// A request with the given proof.
    pub async fn call_with_proof(&self, token: &str, proof: String, method: Method, path: &str) -> Answer {
        let url = format!("{}{path}", self.origin);
        send(method, &url, &[("authorization", format!("DPoP {token}")), ("dpop", proof)], None).await
    }
}

/// A directory under the system temp directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let mut tag = [0u8; 6];
        openssl::rand::rand_bytes(&mut tag).unwrap();
        let dir = std::env::temp_dir().join(format!("ekey-test-{name}-{}-{}", std::process::id(), b64_encode(tag)));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, data: &[u8]) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lower-case hex of SHA-256, as `secret_sha256` wants it.
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret of the `worker` client of [`worker_toml`].
pub const WORKER_SECRET: &str = "worker-test-client-secret-0123456789";

/// Config text for a `worker` client (`client_secret_basic` with
/// [`WORKER_SECRET`]) and a `payments.create` template (`POST:/payments/:id`)
/// for `audience`; goes after the `[server]` and `[signing_key]` sections.
pub fn worker_toml(audience: &str) -> String {
    format!(
        r#"
        [[clients]]
        id = "worker"
        auth = "client_secret_basic"
        secret_sha256 = "{}"
        [[templates]]
        name = "payments.create"
        clients = ["worker"]
        actions = ["POST:/payments/:id"]
        audience = "{audience}"
        "#,
        sha256_hex(WORKER_SECRET.as_bytes())
    )
}

/// An issuer on loopback whose only signing key is `signer`, with the
/// `worker` client of [`worker_toml`].
pub async fn issuer_with_signer(signer: Arc<dyn ekey_issuer::Signer>, audience: &str) -> ekey_issuer::ServerHandle {
    let config = ekey_issuer::Config::from_toml_str(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [signing_key]
        generate = true
        timeout = 3
        [audit]
        sink = "off"
        {}
        "#,
        worker_toml(audience)
    ))
    .unwrap();
    let providers = ekey_issuer::Providers::from_config(&config).await.unwrap().with_signer(signer);
    ekey_issuer::Server::start_with(config, providers).await.unwrap()
}

/// A token for `POST:/payments/7` from `server`, as the `worker` client
/// with a proof by `key`.
pub async fn worker_token(server: &ekey_issuer::ServerHandle, key: &ekey_verifier::client::DpopKey) -> Answer {
    let endpoint = &server.urls().token_endpoint;
    let proof = key.proof("POST", endpoint, None, None, now()).unwrap();
    let details = json!([{"type": "ekey_capability", "action": "POST:/payments/7"}]).to_string();
    token_request(endpoint, Auth::Basic("worker", WORKER_SECRET), Some(proof), &[("authorization_details", &details)])
        .await
}
