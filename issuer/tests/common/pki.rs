//! Test PKI, generated fresh for each test with rcgen (no key is checked
//! in): a CA, a server certificate for 127.0.0.1/localhost, and client
//! certificates — good, expired, not yet valid, server-only EKU, from
//! another CA, a SPIFFE workload, a self-signed one — written as PEM files
//! into a temporary directory.

#![allow(dead_code, clippy::unwrap_used)]

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::path::PathBuf;
use std::sync::Arc;

/// A certificate with its key, as PEM, DER and files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Leaf {
    /// A rustls client configuration presenting this certificate.
    pub fn client_config(
        &self,
        trust: &Leaf,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        client_config(trust, versions, Some(self), None)
    }

    /// base64url SHA-256 of the DER: the `x5t#S256` of tokens bound to it.
    pub fn x5t_s256(&self) -> String {
        ekey_verifier::mtls::x5t_s256(&self.der)
    }
}

/// The whole test PKI.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (the client CA bundle and the server's trust anchor).
    pub ca: Leaf,
    /// Server certificate for 127.0.0.1, ::1 and localhost.
    pub server: Leaf,
    /// A client from the CA: CN=client, DNS SAN client.example.org.
    pub client: Leaf,
    /// Another good client (for "a different certificate").
    pub client2: Leaf,
    /// Expired in 2001.
    pub expired: Leaf,
    /// Valid from 4000.
    pub not_yet_valid: Leaf,
    /// EKU serverAuth only.
    pub server_eku: Leaf,
    /// Issued by another CA.
    pub other_ca: Leaf,
    /// A SPIFFE workload: URI SAN spiffe://example.org/ns/payments/sa/api.
    pub spiffe: Leaf,
    /// Self-signed, with the clientAuth EKU.
    pub self_signed: Leaf,
    ca_issuer: CertifiedIssuer<'static, KeyPair>,
}

pub const SPIFFE_ID: &str = "spiffe://example.org/ns/payments/sa/api";

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_issuer = ca("ekey test CA");
        let other_issuer = ca("some other CA");
        let ca = write(&dir, "ca", ca_issuer.pem(), ca_issuer.key().serialize_pem(), ca_issuer.der().to_vec());

        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.subject_alt_names.push(SanType::IpAddress("::1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "ekey test server");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = issue(&dir, "server", p, &ca_issuer);

        let client = issue(&dir, "client", client_params("client", "client.example.org"), &ca_issuer);
        let client2 = issue(&dir, "client2", client_params("client2", "client2.example.org"), &ca_issuer);
        let mut p = client_params("expired", "expired.example.org");
        (p.not_before, p.not_after) = (date_time_ymd(2000, 1, 1), date_time_ymd(2001, 1, 1));
        let expired = issue(&dir, "expired", p, &ca_issuer);
        let mut p = client_params("future", "future.example.org");
        (p.not_before, p.not_after) = (date_time_ymd(4000, 1, 1), date_time_ymd(4001, 1, 1));
        let not_yet_valid = issue(&dir, "future", p, &ca_issuer);
        let mut p = client_params("server-eku", "server-eku.example.org");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_eku = issue(&dir, "server-eku", p, &ca_issuer);
        let other_ca = issue(&dir, "other-ca", client_params("client", "client.example.org"), &other_issuer);
        let mut p = client_params("payments-api", "unused.example.org");
        p.subject_alt_names = vec![SanType::URI(SPIFFE_ID.try_into().unwrap())];
        let spiffe = issue(&dir, "spiffe", p, &ca_issuer);

        let key = KeyPair::generate().unwrap();
        let cert = client_params("self-signed", "self.example.org").self_signed(&key).unwrap();
        let self_signed = write(&dir, "self-signed", cert.pem(), key.serialize_pem(), cert.der().to_vec());

        Self {
            dir,
            ca,
            server,
            client,
            client2,
            expired,
            not_yet_valid,
            server_eku,
            other_ca,
            spiffe,
            self_signed,
            ca_issuer,
        }
    }

    /// A fresh server certificate from the same CA (for reload tests).
    pub fn new_server_cert(&self, name: &str) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        issue(&self.dir, name, p, &self.ca_issuer)
    }

    /// A rustls client trusting this PKI's CA, without a client certificate.
    pub fn anonymous_client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> rustls::ClientConfig {
        client_config(&self.ca, versions, None, None)
    }

    /// The same, offering only `suites`.
    pub fn anonymous_client_with_suites(&self, suites: &[rustls::CipherSuite]) -> rustls::ClientConfig {
        client_config(&self.ca, &[&rustls::version::TLS13, &rustls::version::TLS12], None, Some(suites))
    }

    /// A path inside the PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn client_params(cn: &str, dns: &str) -> CertificateParams {
    let mut p = CertificateParams::new(vec![dns.to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "Example");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

fn issue(dir: &tempfile::TempDir, name: &str, p: CertificateParams, ca: &CertifiedIssuer<'_, KeyPair>) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    write(dir, name, cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn write(dir: &tempfile::TempDir, name: &str, cert_pem: String, key_pem: String, der: Vec<u8>) -> Leaf {
    let cert_path = dir.path().join(format!("{name}.crt"));
    let key_path = dir.path().join(format!("{name}.key"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    Leaf { cert_pem, key_pem, der, cert_path, key_path }
}

fn client_config(
    trust: &Leaf,
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<&Leaf>,
    suites: Option<&[rustls::CipherSuite]>,
) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(trust.der.clone())).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites.retain(|s| suites.contains(&s.suite()));
    }
    let provider = Arc::new(provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let chain = vec![CertificateDer::from(leaf.der.clone())];
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// One HTTP/1.1 connection over TLS, kept open for several requests.
pub struct TlsConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    /// The server's leaf certificate (DER).
    pub server_cert: Vec<u8>,
    /// The negotiated protocol version and suite.
    pub version: rustls::ProtocolVersion,
    pub suite: rustls::CipherSuite,
}

/// Connects and handshakes. TLS 1.3 servers report a refused client
/// certificate only after the client's side is done, so callers that test
/// refusals should also send a request.
pub async fn tls_connect(config: rustls::ClientConfig, addr: std::net::SocketAddr) -> Result<TlsConnection, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let server_cert = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let version = conn.protocol_version().ok_or("no protocol version")?;
    let suite = conn.negotiated_cipher_suite().ok_or("no cipher suite")?.suite();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(TlsConnection { sender, server_cert, version, suite })
}

impl TlsConnection {
    /// One request; the answer read whole, or why there was none.
    pub async fn send(
        &mut self,
        method: http::Method,
        uri: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<super::Answer, String> {
        use http_body_util::BodyExt as _;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder().method(method).uri(uri).header("host", "127.0.0.1");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or_default()))).unwrap();
        let res = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(super::Answer { status: parts.status, headers: parts.headers, body })
    }

    pub async fn get(&mut self, path: &str) -> Result<super::Answer, String> {
        self.send(http::Method::GET, path, &[], None).await
    }
}

/// Connects, and GETs `path` on a fresh connection.
pub async fn tls_get(
    config: rustls::ClientConfig,
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<super::Answer, String> {
    tls_connect(config, addr).await?.get(path).await
}

/// `x5t#S256` as the openssl command line computes it:
/// `openssl x509 -outform DER | openssl dgst -sha256 -binary | base64url`.
pub fn openssl_x5t_s256(cert_path: &std::path::Path) -> String {
    use base64::Engine as _;
    let der = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(cert_path)
        .output()
        .expect("the openssl command line is needed (Debian package openssl)");
    assert!(der.status.success(), "openssl x509: {}", String::from_utf8_lossy(&der.stderr));
    let mut dgst = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        dgst.stdin.take().unwrap().write_all(&der.stdout).unwrap();
    }
    let out = dgst.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 32);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out.stdout)
}

/// A request body for HTTP/2 tests: whole, or fed piece by piece (an
/// in-flight upload).
pub type H2Body = http_body_util::Either<
    http_body_util::Full<bytes::Bytes>,
    http_body_util::channel::Channel<bytes::Bytes, std::convert::Infallible>,
>;

/// One TLS connection offering ALPN `alpn`, speaking HTTP/2 if the server
/// chose `h2` (else `negotiated` says what it chose and `sender` is `None`).
pub struct H2Connection {
    pub negotiated: Option<Vec<u8>>,
    pub sender: Option<hyper::client::conn::http2::SendRequest<H2Body>>,
    /// Completes when the server closes the connection.
    pub closed: tokio::task::JoinHandle<()>,
}

/// Connects with a client that offers `alpn` (e.g. `[b"h2", b"http/1.1"]`)
/// and, when `h2` was negotiated, does the HTTP/2 handshake.
pub async fn h2_connect(
    mut config: rustls::ClientConfig,
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> Result<H2Connection, String> {
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if negotiated.as_deref() != Some(b"h2") {
        return Ok(H2Connection { negotiated, sender: None, closed: tokio::spawn(async {}) });
    }
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    let closed = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(H2Connection { negotiated, sender: Some(sender), closed })
}

impl H2Connection {
    /// One request on the connection (`uri` absolute: HTTP/2 sends its
    /// scheme and authority as pseudo-headers); the answer read whole.
    pub async fn send(
        &self,
        method: http::Method,
        uri: &str,
        headers: &[(&str, String)],
        body: H2Body,
    ) -> Result<super::Answer, String> {
        use http_body_util::BodyExt as _;
        let mut sender = self.sender.clone().ok_or("HTTP/2 was not negotiated")?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = sender.send_request(req.body(body).unwrap()).await.map_err(|e| e.to_string())?;
        assert_eq!(res.version(), http::Version::HTTP_2);
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(super::Answer { status: parts.status, headers: parts.headers, body })
    }

    /// A GET of `uri`.
    pub async fn get(&self, uri: &str) -> Result<super::Answer, String> {
        self.send(http::Method::GET, uri, &[], full("")).await
    }
}

/// A whole body.
pub fn full(text: impl Into<bytes::Bytes>) -> H2Body {
    http_body_util::Either::Left(http_body_util::Full::new(text.into()))
}

/// A body fed through the returned sender; it ends when the sender is dropped.
pub fn streamed() -> (http_body_util::channel::Sender<bytes::Bytes>, H2Body) {
    let (tx, body) = http_body_util::channel::Channel::new(4);
    (tx, http_body_util::Either::Right(body))
}
