//! A JWKS server on loopback for `HttpJwks` tests: serves a settable set
//! with an `ETag` and `Cache-Control: max-age`, answers `If-None-Match` with
//! 304, and counts what it did. Plain HTTP, or HTTPS with a test PKI made
//! fresh by rcgen ([`Pki`]).

use bytes::Bytes;
use ekey_verifier::{Jwks, KeyPair};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
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

/// A CA, a server certificate from it for 127.0.0.1/::1/localhost, and a
/// second, unrelated CA; PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA's certificate (PEM file): what a client should trust.
    pub ca_file: PathBuf,
    /// Another CA's certificate (PEM file): trusting it must not be enough.
    pub other_ca_file: PathBuf,
    /// The server's certificate and key.
    pub server_cert: CertificateDer<'static>,
    pub server_key: PrivateKeyDer<'static>,
    /// The CA certificate's DER.
    pub ca_der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
        let dir = tempfile::tempdir().unwrap();
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
        };
        let (issuer, other) = (ca("ekey JWKS test CA"), ca("another CA"));
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.subject_alt_names.push(SanType::IpAddress("::1".parse().unwrap()));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        let ca_file = dir.path().join("ca.pem");
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        std::fs::write(&other_ca_file, other.pem()).unwrap();
        Self {
            ca_file,
            other_ca_file,
            server_cert: cert.der().clone(),
            server_key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            ca_der: issuer.der().clone(),
            dir,
        }
    }

    /// base64 SHA-256 of a certificate's SubjectPublicKeyInfo, as
    /// `openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`.
    pub fn spki_pin(der: &[u8]) -> String {
        use base64::Engine as _;
        let cert = openssl::x509::X509::from_der(der).unwrap();
        let spki = cert.public_key().unwrap().public_key_to_der().unwrap();
        base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(&spki))
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], self.server_key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// Serves the JWKS over plain HTTP until the returned handle is aborted.
pub async fn serve(state: Arc<Server>) -> (String, tokio::task::JoinHandle<()>) {
    serve_on(state, None).await
}

/// Serves the JWKS over HTTPS with `pki`'s server certificate.
pub async fn serve_tls(state: Arc<Server>, pki: &Pki) -> (String, tokio::task::JoinHandle<()>) {
    serve_on(state, Some(pki.acceptor())).await
}

async fn serve_on(state: Arc<Server>, tls: Option<tokio_rustls::TlsAcceptor>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        // Connections live in this set, so aborting the server closes them too
        // (otherwise a pooled keep-alive connection would outlive it).
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let state = state.clone();
            let tls = tls.clone();
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
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => drop(http.serve_connection(TokioIo::new(stream), svc).await),
                    // A refused handshake (the client does not trust us) ends here.
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                }
            });
        }
    });
    (url, handle)
}
