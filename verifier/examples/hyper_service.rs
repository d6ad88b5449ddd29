//! A hyper service that verifies with the plain async API — no tower:
//! [`ExternalUrl::rebuild`] for the URL the client used, then
//! [`Verifier::verify_http`], and [`Verifier::reject`] for the answer.
//!
//! ```text
//! cargo run -p ekey-issuer -- dev
//! cargo run -p ekey-verifier --example hyper_service -- \
//!     http://127.0.0.1:8080 http://127.0.0.1:9090 127.0.0.1:9090
//! ```

use bytes::Bytes;
use ekey_verifier::{
    ExternalUrl, ExternalUrlSettings, HttpJwks, HttpJwksSettings, MemoryStore, RequestOrigin, Verifier,
    VerifierSettings,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

async fn handle(
    verifier: Arc<Verifier>,
    external: Arc<ExternalUrl>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let origin = RequestOrigin {
        peer: Some(peer.ip()),
        listener_scheme: "http",
        authority: req.uri().authority().map(|a| a.as_str()),
        path_and_query: req.uri().path_and_query().map_or("", |p| p.as_str()),
        headers: req.headers(),
    };
    let Ok(url) = external.rebuild(&origin) else {
        return Ok(answer(StatusCode::BAD_REQUEST, "no usable Host\n".into()));
    };
    match verifier.verify_http(req.method(), &url, req.headers(), None).await {
        Ok(cap) => {
            Ok(answer(StatusCode::OK, format!("hello {}: {} ({} uses left)\n", cap.sub, cap.action, cap.remaining)))
        }
        // The mapped answer: status, WWW-Authenticate, DPoP-Nonce, Retry-After.
        Err(rejection) => Ok(verifier.reject(&rejection).map(|()| Full::new(Bytes::new()))),
    }
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let issuer = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let audience = args.next().unwrap_or_else(|| "http://127.0.0.1:9090".into());
    let listen: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:9090").parse()?;

    let keys = HttpJwks::new(HttpJwksSettings::new(format!("{issuer}/.well-known/jwks.json")))?;
    let verifier = Arc::new(Verifier::new(
        VerifierSettings::new(issuer, audience.clone()),
        Arc::new(keys),
        Arc::new(MemoryStore::default()),
    ));
    let external =
        Arc::new(ExternalUrl::new(&ExternalUrlSettings { public_base_url: Some(audience), ..Default::default() })?);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("hyper_service listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        let (verifier, external) = (verifier.clone(), external.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(verifier.clone(), external.clone(), peer, req));
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
