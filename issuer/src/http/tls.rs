//! TLS on the public listener (rustls, ring): TLS 1.3 only unless TLS 1.2 is
//! turned on, AES-GCM suites (ChaCha20-Poly1305 on request), no 0-RTT, ALPN
//! `h2` and `http/1.1` (the protocol chosen is reported in
//! [`ConnectionInfo::http2`]),
//! client certificates off / optional / required, and the certificate, key
//! and client CA bundle reloaded from their files without a restart.
//!
//! Reloading swaps the `Arc<ServerConfig>` new handshakes use; connections
//! already established keep the configuration they were made with.

use super::{Acceptor, ConnectionInfo};
use crate::config::{ClientCertMode, TlsConfig};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::net::TcpStream;

/// Why the TLS configuration could not be built. The message names the
/// config field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct TlsError {
    /// The config field, e.g. `server.tls.key`.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// ALPN protocol ids (RFC 7301).
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn err(field: &'static str, problem: impl Into<String>) -> TlsError {
    TlsError { field, problem: problem.into() }
}

/// What the TLS configuration is built from: the config section and the
/// registered self-signed client certificates (accepted without a CA).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `[server.tls]`.
    pub config: TlsConfig,
    /// SHA-256 of the DER of each registered self-signed client certificate.
    pub self_signed: Vec<[u8; 32]>,
}

/// The bytes of the files, to tell whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    fn read(c: &TlsConfig) -> Result<Self, TlsError> {
        let read = |field: &'static str, p: &Path| {
            std::fs::read(p).map_err(|e| err(field, format!("cannot read {}: {e}", p.display())))
        };
        Ok(Self {
            cert: read("server.tls.cert", &c.cert)?,
            key: read("server.tls.key", &c.key)?,
            client_ca: c.client_ca.as_deref().map(|p| read("server.tls.client_ca", p)).transpose()?,
        })
    }
}

#[derive(Debug)]
struct State {
    settings: TlsSettings,
    current: RwLock<(Arc<ServerConfig>, Arc<Files>)>,
}

/// Accepts TLS connections with the current configuration and reports the
/// verified client certificate in [`ConnectionInfo`].
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    state: Arc<State>,
}

impl TlsAcceptor {
    /// Reads the files and builds the configuration.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let files = Files::read(&settings.config)?;
        let config = build(&settings, &files)?;
        Ok(Self { state: Arc::new(State { settings, current: RwLock::new((config, Arc::new(files))) }) })
    }

    /// Re-reads the files; when they changed, builds and installs a new
    /// configuration for new connections. Returns whether it did. On error
    /// the current configuration stays in place.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let files = Files::read(&self.state.settings.config)?;
        if *self.current().1 == files {
            return Ok(false);
        }
        let config = build(&self.state.settings, &files)?;
        let mut current = self.state.current.write().unwrap_or_else(|p| p.into_inner());
        *current = (config, Arc::new(files));
        Ok(true)
    }

    fn current(&self) -> (Arc<ServerConfig>, Arc<Files>) {
        let guard = self.state.current.read().unwrap_or_else(|p| p.into_inner());
        (Arc::clone(&guard.0), Arc::clone(&guard.1))
    }

    /// Reloads every `interval` (when set) and on SIGHUP, until the
    /// acceptor is dropped. Failures are logged; the old certificate stays.
    /// The SIGHUP handler is installed before this returns (from then on
    /// SIGHUP no longer terminates the process). Call within a Tokio runtime.
    pub fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.state);
        let interval = self.state.settings.config.reload_interval;
        #[cfg(unix)]
        let hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files are reloaded by polling only");
                None
            }
        };
        tokio::spawn(reload_loop(
            weak,
            interval,
            #[cfg(unix)]
            hup,
        ))
    }
}

async fn reload_loop(
    weak: Weak<State>,
    interval: Option<Duration>,
    #[cfg(unix)] mut hup: Option<tokio::signal::unix::Signal>,
) {
    // Wakes at least every few seconds to notice that the acceptor is gone.
    let tick = interval.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    let mut last = tokio::time::Instant::now();
    loop {
        #[cfg(unix)]
        let hup_fired = {
            let hup_wait = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                fired = hup_wait => fired,
                _ = tokio::time::sleep(tick) => false,
            }
        };
        #[cfg(not(unix))]
        let hup_fired = {
            tokio::time::sleep(tick).await;
            false
        };
        let Some(state) = weak.upgrade() else { return };
        let due = interval.is_some_and(|i| last.elapsed() >= i);
        if !(hup_fired || due) {
            continue;
        }
        last = tokio::time::Instant::now();
        let acceptor = TlsAcceptor { state };
        match acceptor.reload() {
            Ok(true) => tracing::info!("TLS certificate, key or client CA reloaded"),
            Ok(false) if hup_fired => tracing::info!("SIGHUP: TLS files unchanged"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate"),
        }
    }
}

impl Acceptor for TlsAcceptor {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn accept(&self, tcp: TcpStream, peer: SocketAddr) -> io::Result<(Self::Io, ConnectionInfo)> {
        let (config, _) = self.current();
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        let mut info = ConnectionInfo::plain(peer);
        if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            info = info.with_peer_certificate(Arc::from(leaf.as_ref()));
        }
        if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
            info = info.with_http2();
        }
        Ok((tls, info))
    }
}

/// The cipher suites: TLS 1.3 AES-GCM, and for TLS 1.2 only ECDHE with
/// AES-GCM; ChaCha20-Poly1305 only when asked for.
fn provider(c: &TlsConfig) -> CryptoProvider {
    use ring::cipher_suite::*;
    let mut suites = vec![TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384];
    if c.chacha20 {
        suites.push(TLS13_CHACHA20_POLY1305_SHA256);
    }
    if c.tls12 {
        suites.extend([
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ]);
        if c.chacha20 {
            suites.extend([TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]);
        }
    }
    CryptoProvider { cipher_suites: suites, ..ring::default_provider() }
}

fn build(settings: &TlsSettings, files: &Files) -> Result<Arc<ServerConfig>, TlsError> {
    let c = &settings.config;
    let provider = Arc::new(provider(c));
    let chain = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("server.tls.cert", format!("{}: not a PEM certificate chain: {e}", c.cert.display())))?;
    if chain.is_empty() {
        return Err(err("server.tls.cert", format!("{}: no CERTIFICATE in the file", c.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| err("server.tls.key", format!("{}: not a PEM private key: {e}", c.key.display())))?;
    let versions: &[&rustls::SupportedProtocolVersion] =
        if c.tls12 { &[&rustls::version::TLS13, &rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| err("server.tls", e.to_string()))?;
    let builder = match c.client_auth {
        ClientCertMode::Off => builder.with_no_client_auth(),
        mode => builder.with_client_cert_verifier(client_verifier(settings, files, mode, &provider)?),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| err("server.tls.key", format!("the key does not fit the certificate: {e}")))?;
    // HTTP/2 first when on; a client that offers neither gets HTTP/1.1.
    config.alpn_protocols =
        if c.http2 { vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()] } else { vec![ALPN_HTTP11.to_vec()] };
    // No 0-RTT: early data is replayable.
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

fn client_verifier(
    settings: &TlsSettings,
    files: &Files,
    mode: ClientCertMode,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let ca = match &files.client_ca {
        None => None,
        Some(pem) => {
            let path = settings.config.client_ca.as_deref().unwrap_or(Path::new(""));
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    err("server.tls.client_ca", format!("{}: not PEM certificates: {e}", path.display()))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| err("server.tls.client_ca", format!("{}: unusable CA: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(err("server.tls.client_ca", format!("{}: no CERTIFICATE in the file", path.display())));
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
            let builder = if mode == ClientCertMode::Optional { builder.allow_unauthenticated() } else { builder };
            Some(builder.build().map_err(|e| err("server.tls.client_ca", e.to_string()))?)
        }
    };
    Ok(Arc::new(ClientVerifier {
        ca,
        self_signed: settings.self_signed.iter().copied().collect(),
        mandatory: mode == ClientCertMode::Required,
        algorithms: provider.signature_verification_algorithms,
    }))
}

/// A client certificate is accepted when it chains to the client CA bundle
/// (webpki: validity, `clientAuth` EKU, signatures), or when it is one of
/// the registered self-signed certificates, valid now and not restricted to
/// other uses.
#[derive(Debug)]
struct ClientVerifier {
    ca: Option<Arc<dyn ClientCertVerifier>>,
    self_signed: HashSet<[u8; 32]>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.as_ref().map_or(&[], |v| v.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let by_ca = match &self.ca {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        };
        match by_ca {
            Ok(v) => Ok(v),
            Err(_) if self.self_signed.contains(&openssl::sha::sha256(end_entity)) => {
                self_signed_usable(end_entity, now).map_err(|why| {
                    tracing::debug!(error = %why, "registered self-signed client certificate refused");
                    rustls::Error::InvalidCertificate(why)
                })?;
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A registered self-signed certificate must be within its validity period
/// and, if it has an extended key usage, allow client authentication.
fn self_signed_usable(der: &[u8], now: UnixTime) -> Result<(), rustls::CertificateError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| rustls::CertificateError::BadEncoding)?;
    let now = i64::try_from(now.as_secs()).map_err(|_| rustls::CertificateError::BadEncoding)?;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(rustls::CertificateError::NotValidYet);
    }
    if now > validity.not_after.timestamp() {
        return Err(rustls::CertificateError::Expired);
    }
    match cert.extended_key_usage() {
        Err(_) => return Err(rustls::CertificateError::BadEncoding),
        Ok(Some(eku)) if !eku.value.any && !eku.value.client_auth => {
            return Err(rustls::CertificateError::InvalidPurpose)
        }
        Ok(_) => {}
    }
    Ok(())
}
