//! The one place that speaks HTTP: `http://`, and `https://` on rustls
//! (ring) with the system's trust store or `--ca`, optionally presenting a
//! client certificate (`tls_client_auth` at the issuer, certificate-bound
//! tokens at APIs). One connection per exchange: the CLI makes few
//! requests, and each bounded by one timeout.

use crate::error::{chain, printable, CliError};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest reply body read from an issuer (metadata, token responses).
pub const MAX_ISSUER_BODY: usize = 1024 * 1024;
/// Largest reply body read by `ekey call`.
pub const MAX_CALL_BODY: usize = 16 * 1024 * 1024;

const USER_AGENT: &str = concat!("ekey/", env!("CARGO_PKG_VERSION"));

/// An HTTP reply, body read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// TLS settings for `https://` URLs.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM bundle of the CAs to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and its private key (PEM), presented to
    /// servers that ask.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// An HTTP client with one timeout for each whole exchange.
#[derive(Debug)]
pub struct Transport {
    timeout: Duration,
    options: TlsOptions,
    /// Built on the first `https://` exchange (so plain-HTTP commands never
    /// read the system's trust store).
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Transport {
    /// A client; `timeout` bounds connect + handshake + send + reading the reply.
    pub fn new(timeout: Duration, options: TlsOptions) -> Self {
        Self { timeout, options, tls: OnceLock::new() }
    }

    /// The `--ca` bundle, if given (for clients this transport does not
    /// carry, e.g. the verifier's JWKS fetcher).
    pub fn ca(&self) -> Option<&std::path::Path> {
        self.options.ca.as_deref()
    }

    /// Sends one request and reads the reply, at most `max_body` bytes of it.
    /// Redirects are not followed.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        max_body: usize,
    ) -> Result<Reply, CliError> {
        let uri = http_uri(url)?;
        let https = uri.scheme_str() == Some("https");
        if !https && self.options.identity.is_some() {
            return Err(CliError::usage(format!(
                "{}: a client certificate is only presented over https://",
                printable(url)
            )));
        }
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .body(Full::new(body))
            .map_err(|e| CliError::usage(format!("cannot build a request for {}: {e}", printable(url))))?;
        *req.headers_mut() = headers;
        let h = req.headers_mut();
        h.insert(
            header::HOST,
            HeaderValue::from_str(&authority).map_err(|_| CliError::usage(format!("{}: bad host", printable(url))))?,
        );
        h.entry(header::USER_AGENT).or_insert(HeaderValue::from_static(USER_AGENT));

        // TLS files are read before any connection, so their errors come first.
        let tls = if https { Some(self.tls_config()?) } else { None };
        let exchange = async {
            let unreachable = |e: &(dyn std::error::Error + 'static)| {
                CliError::unavailable(format!("cannot reach {}: {}", printable(url), chain(e)))
            };
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| unreachable(&e))?;
            let _ = tcp.set_nodelay(true);
            if let Some(config) = tls {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| CliError::usage(format!("{}: not a TLS server name", printable(url))))?;
                let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| {
                    CliError::unavailable(format!("TLS handshake with {} failed: {}", printable(url), chain(&e)))
                })?;
                exchange(tls, req, max_body, url).await
            } else {
                exchange(tcp, req, max_body, url).await
            }
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            CliError::unavailable(format!("no answer from {} within {} s", printable(url), self.timeout.as_secs()))
        })?
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, CliError> {
        self.tls
            .get_or_init(|| client_config(&self.options).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(CliError::usage)
    }
}

async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>, max_body: usize, url: &str) -> Result<Reply, CliError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: &(dyn std::error::Error + 'static)| {
        CliError::unavailable(format!("cannot reach {}: {}", printable(url), chain(e)))
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| failed(&e))?;
    let driver = tokio::spawn(connection);
    let res = sender.send_request(req).await.map_err(|e| failed(&e))?;
    let (parts, body) = res.into_parts();
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| CliError::unavailable(format!("reading the reply from {}: {}", printable(url), chain(&*e))))?
        .to_bytes();
    driver.abort();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, CliError> {
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca {
        Some(path) => {
            for cert in read_pem_certs(path, "--ca")? {
                roots.add(cert).map_err(|e| CliError::usage(format!("--ca {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Some system bundles hold certificates webpki cannot use; skip them.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(CliError::usage(
                    "no trusted CA certificates found in the system's store; give --ca FILE (PEM)",
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::usage(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let mut config = match &options.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_pem_certs(cert, "--client-cert")?;
            let key_pem = std::fs::read(key)
                .map_err(|e| CliError::usage(format!("--client-key {}: cannot read: {e}", key.display())))?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| CliError::usage(format!("--client-key {}: not a PEM private key: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                CliError::usage(format!("--client-cert/--client-key: the key does not fit the certificate: {e}"))
            })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_pem_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let pem =
        std::fs::read(path).map_err(|e| CliError::usage(format!("{flag} {}: cannot read: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::usage(format!("{flag} {}: not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::usage(format!("{flag} {}: no CERTIFICATE in the file", path.display())));
    }
    Ok(certs)
}

/// Parses an absolute `http://` or `https://` URL; other schemes are refused clearly.
pub fn http_uri(url: &str) -> Result<Uri, CliError> {
    let parsed = url::Url::parse(url).map_err(|e| CliError::usage(format!("invalid URL {:?}: {e}", printable(url))))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(CliError::usage(format!("{}: unsupported scheme {other:?}", printable(url)))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(CliError::usage(format!("{}: URL has no host", printable(url))));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CliError::usage(format!("{}: credentials in URLs are not supported", printable(url))));
    }
    let mut without_fragment = parsed;
    without_fragment.set_fragment(None);
    without_fragment.as_str().parse().map_err(|e| CliError::usage(format!("invalid URL {:?}: {e}", printable(url))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls() {
        assert_eq!(http_uri("http://127.0.0.1:8080/a?b=1#f").unwrap().to_string(), "http://127.0.0.1:8080/a?b=1");
        assert_eq!(http_uri("http://Example.COM").unwrap().to_string(), "http://example.com/");
        assert_eq!(http_uri("https://example.com/x").unwrap().to_string(), "https://example.com/x");
        assert!(http_uri("ftp://x/").is_err());
        assert!(http_uri("http://u:p@x/").is_err());
        assert!(http_uri("/relative").is_err());
        assert!(http_uri("").is_err());
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = Transport::new(Duration::from_secs(5), TlsOptions::default());
        let err = t
            .send(Method::GET, &format!("http://127.0.0.1:{port}/"), HeaderMap::new(), Bytes::new(), 10)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_UNAVAILABLE);
        assert!(err.to_string().starts_with("cannot reach"), "{err}");
    }

    #[tokio::test]
    async fn tls_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("ekey-cli-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, b"not pem").unwrap();
        let send = |options: TlsOptions, url: &'static str| async move {
            Transport::new(Duration::from_secs(5), options)
                .send(Method::GET, url, HeaderMap::new(), Bytes::new(), 10)
                .await
                .unwrap_err()
                .to_string()
        };
        let e = send(TlsOptions { ca: Some(junk.clone()), identity: None }, "https://127.0.0.1:1/").await;
        assert!(e.starts_with("--ca ") && e.contains("no CERTIFICATE"), "{e}");
        let identity = Some((junk.clone(), junk.clone()));
        let e = send(TlsOptions { ca: None, identity: identity.clone() }, "http://127.0.0.1:1/").await;
        assert!(e.contains("only presented over https://"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
