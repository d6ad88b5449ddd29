//! A JWKS server on loopback for `HttpJwks` tests: serves a settable set
//! with an `ETag` and `Cache-Control: max-age`, answers `If-None-Match` with
//! 304, and counts what it did.

use bytes::Bytes;
use ekey_verifier::{Jwks, KeyPair};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Server {
    /// The JWKS JSON served.
    pub jwks: Mutex<String>,
    /// `Cache-Control: max-age` in seconds.
    pub max_age: Mutex<u64>,
    /// Requests answered.
    pub requests: AtomicUsize,
    /// Requests answered with 304.
    pub not_modified: AtomicUsize,
}

pub fn jwks_of(keys: &[&KeyPair]) -> String {
    let jwks = Jwks::new(
        keys.iter().map(|k| k.public_jwk().clone().with_kid_and_alg(k.thumbprint(), k.algorithm())).collect(),
    )
    .unwrap();
    jwks.to_json().to_string()
}

/// Serves the JWKS until the returned handle is aborted.
pub async fn serve(state: Arc<Server>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        // Connections live in this set, so aborting the server closes them too
        // (otherwise a pooled keep-alive connection would outlive it).
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let state = state.clone();
            connections.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        state.requests.fetch_add(1, Ordering::SeqCst);
                        let body = state.jwks.lock().unwrap().clone();
                        let etag = format!("\"{}\"", ekey_verifier::sha256_b64(&body));
                        let max_age = *state.max_age.lock().unwrap();
                        let mut res = Response::builder()
                            .header("etag", &etag)
                            .header("cache-control", format!("public, max-age={max_age}"));
                        if req.headers().get("if-none-match").is_some_and(|v| v == etag.as_str()) {
                            state.not_modified.fetch_add(1, Ordering::SeqCst);
                            res = res.status(304);
                            return Ok::<_, hyper::Error>(res.body(Full::new(Bytes::new())).unwrap());
                        }
                        Ok(res.body(Full::new(Bytes::from(body))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (url, handle)
}
