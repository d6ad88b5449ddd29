//! The TLS client of [`super::HttpJwks`]: rustls with *ring*, the system's
//! trust store or a CA bundle, and optional SPKI pins on the server's leaf
//! certificate.

use super::KeySourceError;
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn config_error(field: &'static str, problem: impl Into<String>) -> KeySourceError {
    KeySourceError::Config { field, problem: problem.into() }
}

/// A client configuration for `https://` JWKS URLs.
pub(super) fn client_config(
    ca_file: Option<&Path>,
    spki_pins: &[String],
) -> Result<rustls::ClientConfig, KeySourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(match ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    });
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("url", format!("TLS: {e}")))?;
    // ALPN (http/1.1) is set by the connector.
    let config = if spki_pins.is_empty() {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let pins = spki_pins.iter().map(|p| parse_pin(p)).collect::<Result<Vec<_>, _>>()?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| config_error("ca_file", format!("TLS: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedLeaf { webpki, pins }))
            .with_no_client_auth()
    };
    Ok(config)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, KeySourceError> {
    let pem =
        std::fs::read(path).map_err(|e| config_error("ca_file", format!("cannot read {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| config_error("ca_file", format!("{}: not PEM certificates: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| config_error("ca_file", format!("{}: unusable CA certificate: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(config_error("ca_file", format!("{} holds no PEM certificate", path.display())));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, KeySourceError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // Some system bundles hold certificates webpki cannot use; skip those.
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(config_error("ca_file", "no trusted CA certificate in the system's store; give a CA bundle (PEM)"));
    }
    Ok(roots)
}

/// A pin: SHA-256 of a SubjectPublicKeyInfo (DER), base64 (standard, as
/// HPKP and `openssl … | base64` write it) or base64url.
pub(super) fn parse_pin(pin: &str) -> Result<[u8; 32], KeySourceError> {
    let pin = pin.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(pin)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(pin));
    decoded.ok().and_then(|d| <[u8; 32]>::try_from(d).ok()).ok_or_else(|| {
        config_error("spki_pins", format!("{pin:?} is not the base64 of a SHA-256 (32 bytes, 44 characters)"))
    })
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo.
fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let x509 = openssl::x509::X509::from_der(cert).ok()?;
    let spki = x509.public_key().ok()?.public_key_to_der().ok()?;
    Some(openssl::sha::sha256(&spki))
}

/// The usual WebPKI checks (chain to a trusted root, name, validity), then
/// the leaf's key must be one of the pins. Only the leaf is compared: the
/// other certificates a server sends need not be on the path webpki
/// validated, so a pin matched there would prove nothing. A rotation lists
/// the current and the next key's pins.
#[derive(Debug)]
struct PinnedLeaf {
    webpki: Arc<WebPkiServerVerifier>,
    pins: Vec<[u8; 32]>,
}

impl ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        match spki_sha256(end_entity) {
            Some(hash) if self.pins.contains(&hash) => Ok(verified),
            _ => Err(rustls::Error::General("the server's certificate key matches no spki_pins entry".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_sha256_in_base64() {
        let hash = [0xfbu8; 32];
        let std = base64::engine::general_purpose::STANDARD.encode(hash);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash);
        assert_eq!((parse_pin(&std).unwrap(), parse_pin(&url).unwrap()), (hash, hash));
        for bad in ["", "AAAA", "!!", &std[1..]] {
            assert!(matches!(parse_pin(bad), Err(KeySourceError::Config { field: "spki_pins", .. })), "{bad:?}");
        }
    }
}
