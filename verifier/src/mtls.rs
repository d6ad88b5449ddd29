//! Certificate-bound tokens (RFC 8705): where the client certificate comes
//! from, and what can be learnt from it.
//!
//! A token with `cnf: {"x5t#S256": …}` is accepted only over a connection
//! whose client certificate has that SHA-256 thumbprint. The certificate
//! reaches the service one of two ways:
//!
//! - the service terminates TLS itself: the leaf certificate of the rustls
//!   connection (`peer_certificate_der` with the `tokio-rustls` feature);
//! - a proxy terminates TLS and forwards the certificate in a header: PEM,
//!   URL-escaped PEM (nginx `$ssl_client_escaped_cert`) or Envoy's
//!   `x-forwarded-client-cert`. Such a header is believed **only** when the
//!   connection comes from one of the configured [`TrustedProxies`];
//!   from anyone else it is ignored, so a client cannot claim another's
//!   certificate by sending the header itself.
//!
//! [`ClientCertSource`] makes that choice per request:
//!
//! ```
//! use ekey_verifier::mtls::{CertHeaderFormat, ClientCertSource, TrustedProxies};
//! use http::HeaderMap;
//!
//! let proxies = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1"]).unwrap();
//! let source = ClientCertSource::behind_proxy(proxies, "x-ssl-client-cert", CertHeaderFormat::EscapedPem).unwrap();
//! // A request from an untrusted address: the header is ignored.
//! let mut headers = HeaderMap::new();
//! headers.insert("x-ssl-client-cert", "garbage".parse().unwrap());
//! let cert = source.client_certificate("192.0.2.7".parse().unwrap(), &headers, None).unwrap();
//! assert!(cert.is_none());
//! ```

use crate::error::Rejection;
use crate::jose::b64;
use crate::token::TokenError;
use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use std::net::IpAddr;

/// Longest certificate header accepted, in bytes (a chain of a few
/// certificates, URL-escaped, fits well within it).
pub const MAX_CERT_HEADER_LEN: usize = 32 * 1024;

/// `x5t#S256` of a certificate: base64url SHA-256 of its DER.
pub fn x5t_s256(der: &[u8]) -> String {
    b64::sha256_b64(der)
}

/// A client certificate as the service learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCert {
    /// The certificate itself (DER).
    Der(Vec<u8>),
    /// Only its SHA-256 (Envoy's `Hash=` without `Cert=`).
    Sha256([u8; 32]),
}

impl ClientCert {
    /// The SHA-256 of the certificate's DER.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            Self::Der(der) => openssl::sha::sha256(der),
            Self::Sha256(d) => *d,
        }
    }

    /// The `x5t#S256` a token bound to this certificate carries.
    pub fn x5t_s256(&self) -> String {
        b64::encode(self.sha256())
    }

    /// The DER, when known.
    pub fn der(&self) -> Option<&[u8]> {
        match self {
            Self::Der(der) => Some(der),
            Self::Sha256(_) => None,
        }
    }
}

/// Why a trusted proxy's certificate header could not be read. The request
/// is refused (`invalid_token`): a proxy that sends garbage must not turn
/// into "no certificate".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertHeaderError {
    /// More than one header line.
    #[error("more than one client certificate header")]
    Multiple,
    /// Longer than [`MAX_CERT_HEADER_LEN`].
    #[error("client certificate header too long")]
    TooLong,
    /// Not a certificate in the configured format.
    #[error("malformed client certificate header: {0}")]
    Malformed(&'static str),
    /// Envoy's `Hash=` and `Cert=` disagree.
    #[error("x-forwarded-client-cert Hash does not match its Cert")]
    HashMismatch,
}

impl From<CertHeaderError> for Rejection {
    fn from(_: CertHeaderError) -> Self {
        TokenError::Binding("the proxy's client certificate header is malformed").into()
    }
}

/// A configured proxy address list is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8)")]
pub struct ProxyListError(pub String);

/// Addresses whose forwarded headers are believed: single addresses or CIDR
/// networks. Defaults to none. IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`)
/// match the IPv4 entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
}

impl TrustedProxies {
    /// Nobody: forwarded headers are always ignored.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses entries like `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse<I, S>(entries: I) -> Result<Self, ProxyListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = entries
            .into_iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<ipnet::IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| ProxyListError(e.chars().take(64).collect()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Whether `peer` is one of them.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.nets.iter().any(|n| n.contains(&peer))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// How a proxy puts the client certificate in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertHeaderFormat {
    /// PEM, with its line breaks replaced by spaces or tabs as header
    /// folding requires (nginx `$ssl_client_cert`), or bare base64 DER.
    Pem,
    /// URL-escaped PEM (nginx `$ssl_client_escaped_cert`, Traefik, HAProxy).
    EscapedPem,
    /// Envoy's `x-forwarded-client-cert`: the last element's `Cert=`
    /// (URL-escaped PEM) and/or `Hash=` (hex SHA-256 of the DER).
    Xfcc,
}

/// Where this service gets a request's client certificate from.
#[derive(Debug, Clone)]
pub struct ClientCertSource {
    proxies: TrustedProxies,
    header: Option<(HeaderName, CertHeaderFormat)>,
}

impl Default for ClientCertSource {
    fn default() -> Self {
        Self::direct()
    }
}

impl ClientCertSource {
    /// The service terminates TLS itself: only the connection's own
    /// certificate counts; no header is ever read.
    pub fn direct() -> Self {
        Self { proxies: TrustedProxies::none(), header: None }
    }

    /// Behind a TLS-terminating proxy: from `proxies`, the certificate is
    /// read from `header` (and the connection's own certificate, which would
    /// be the proxy's, is ignored); from anyone else, the header is ignored.
    pub fn behind_proxy(
        proxies: TrustedProxies,
        header: &str,
        format: CertHeaderFormat,
    ) -> Result<Self, http::header::InvalidHeaderName> {
        Ok(Self { proxies, header: Some((HeaderName::try_from(header)?, format)) })
    }

    /// The trusted proxies.
    pub fn proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// The client certificate of a request that arrived from `peer` with
    /// `headers`, over a connection whose TLS client certificate (if any) is
    /// `tls_peer`. `Ok(None)` means "no certificate".
    pub fn client_certificate(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        tls_peer: Option<&[u8]>,
    ) -> Result<Option<ClientCert>, CertHeaderError> {
        match &self.header {
            Some((name, format)) if self.proxies.contains(peer) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => Ok(None),
                    (Some(_), Some(_)) => Err(CertHeaderError::Multiple),
                    (Some(v), None) => {
                        if v.len() > MAX_CERT_HEADER_LEN {
                            return Err(CertHeaderError::TooLong);
                        }
                        let text = v.to_str().map_err(|_| CertHeaderError::Malformed("not visible ASCII"))?;
                        parse_header(text, *format).map(Some)
                    }
                }
            }
            _ => Ok(tls_peer.map(|der| ClientCert::Der(der.to_vec()))),
        }
    }
}

/// Reads one header value in `format`.
pub fn parse_header(value: &str, format: CertHeaderFormat) -> Result<ClientCert, CertHeaderError> {
    match format {
        CertHeaderFormat::Pem => pem_to_der(value).map(ClientCert::Der),
        CertHeaderFormat::EscapedPem => pem_to_der(&unescape(value)?).map(ClientCert::Der),
        CertHeaderFormat::Xfcc => xfcc(value),
    }
}

fn unescape(value: &str) -> Result<String, CertHeaderError> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| CertHeaderError::Malformed("URL escapes do not decode to text"))
}

/// The first certificate of a PEM text (line breaks may be any whitespace),
/// or bare base64 DER; checked to parse as X.509.
fn pem_to_der(text: &str) -> Result<Vec<u8>, CertHeaderError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = text.trim();
    let body = match text.find(BEGIN) {
        Some(start) => {
            let rest = &text[start + BEGIN.len()..];
            let end = rest.find(END).ok_or(CertHeaderError::Malformed("PEM without an END line"))?;
            &rest[..end]
        }
        None => text,
    };
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| CertHeaderError::Malformed("certificate is not base64"))?;
    openssl::x509::X509::from_der(&der).map_err(|_| CertHeaderError::Malformed("not an X.509 certificate"))?;
    Ok(der)
}

/// Envoy's `x-forwarded-client-cert`: comma-separated elements (one per
/// proxy hop; the last was added by the proxy next to us), each
/// `;`-separated `Key=Value` pairs, values optionally double-quoted.
fn xfcc(value: &str) -> Result<ClientCert, CertHeaderError> {
    let element = split_unquoted(value, ',').pop().ok_or(CertHeaderError::Malformed("empty"))?;
    let mut hash = None;
    let mut cert = None;
    for pair in split_unquoted(element, ';') {
        let (key, raw) = pair.split_once('=').ok_or(CertHeaderError::Malformed("pair without '='"))?;
        let value = unquote(raw.trim())?;
        if key.trim().eq_ignore_ascii_case("hash") {
            hash = Some(value);
        } else if key.trim().eq_ignore_ascii_case("cert") {
            cert = Some(value);
        }
    }
    let hash = hash
        .map(|h| {
            let mut out = [0u8; 32];
            let bytes = h.as_bytes();
            if bytes.len() != 64 {
                return Err(CertHeaderError::Malformed("Hash is not 64 hex digits"));
            }
            for (i, o) in out.iter_mut().enumerate() {
                let pair =
                    std::str::from_utf8(&bytes[2 * i..2 * i + 2]).map_err(|_| CertHeaderError::Malformed("Hash"))?;
                *o = u8::from_str_radix(pair, 16).map_err(|_| CertHeaderError::Malformed("Hash is not hex"))?;
            }
            Ok(out)
        })
        .transpose()?;
    match (cert, hash) {
        (Some(c), h) => {
            let der = pem_to_der(&unescape(&c)?)?;
            if h.is_some_and(|h| h != openssl::sha::sha256(&der)) {
                return Err(CertHeaderError::HashMismatch);
            }
            Ok(ClientCert::Der(der))
        }
        (None, Some(h)) => Ok(ClientCert::Sha256(h)),
        (None, None) => Err(CertHeaderError::Malformed("x-forwarded-client-cert has neither Cert nor Hash")),
    }
}

/// Splits on `sep` outside double quotes (a backslash escapes inside them).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn unquote(v: &str) -> Result<String, CertHeaderError> {
    let Some(inner) = v.strip_prefix('"') else { return Ok(v.to_owned()) };
    let inner = inner.strip_suffix('"').ok_or(CertHeaderError::Malformed("unterminated quote"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().ok_or(CertHeaderError::Malformed("dangling escape"))? } else { c });
    }
    Ok(out)
}

/// Why a SPIFFE check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    /// The DER is not an X.509 certificate.
    #[error("the client certificate does not parse")]
    Certificate,
    /// No `spiffe://` URI SAN, or more than one URI SAN (an X.509-SVID has exactly one).
    #[error("the client certificate is not an X.509-SVID (exactly one spiffe:// URI SAN)")]
    NotSvid,
    /// The SPIFFE ID is not the token's `sub`.
    #[error("the client's SPIFFE ID is not the token's subject")]
    Mismatch,
}

impl From<SpiffeError> for Rejection {
    fn from(_: SpiffeError) -> Self {
        TokenError::Binding("the client certificate's SPIFFE ID does not match the token's subject").into()
    }
}

/// The SPIFFE ID of an X.509-SVID: its one URI SAN, which must be `spiffe://`.
pub fn spiffe_id(der: &[u8]) -> Result<String, SpiffeError> {
    let cert = openssl::x509::X509::from_der(der).map_err(|_| SpiffeError::Certificate)?;
    let uris: Vec<String> = cert
        .subject_alt_names()
        .map(|names| names.iter().filter_map(|n| n.uri().map(str::to_owned)).collect())
        .unwrap_or_default();
    match uris.as_slice() {
        [one] if one.starts_with("spiffe://") && one.len() > "spiffe://".len() => Ok(one.clone()),
        _ => Err(SpiffeError::NotSvid),
    }
}

/// Checks that the client certificate's SPIFFE ID equals `sub` (for
/// workloads whose tokens are issued to their SPIFFE ID). Call after
/// [`crate::Verifier::verify`] with the same certificate.
pub fn require_spiffe_sub(der: &[u8], sub: &str) -> Result<(), SpiffeError> {
    if spiffe_id(der)? == sub {
        Ok(())
    } else {
        Err(SpiffeError::Mismatch)
    }
}

/// The leaf client certificate (DER) of a tokio-rustls server connection,
/// for services that terminate TLS themselves:
///
/// ```ignore
/// let tls = acceptor.accept(tcp).await?;
/// let cert = ekey_verifier::mtls::peer_certificate_der(&tls).map(|der| ClientCert::Der(der.to_vec()));
/// // … per request: PresentedRequest { client_cert: cert.as_ref(), .. }
/// ```
#[cfg(feature = "tokio-rustls")]
pub fn peer_certificate_der<IO>(conn: &tokio_rustls::server::TlsStream<IO>) -> Option<&[u8]> {
    server_connection_certificate(conn.get_ref().1)
}

/// The leaf client certificate (DER) of a rustls server connection.
#[cfg(feature = "tokio-rustls")]
pub fn server_connection_certificate(conn: &tokio_rustls::rustls::ServerConnection) -> Option<&[u8]> {
    conn.peer_certificates().and_then(|chain| chain.first()).map(|c| c.as_ref())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    fn cert(uris: &[&str]) -> Vec<u8> {
        let key =
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
                .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "client").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        if !uris.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for u in uris {
                san.uri(u);
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    fn pem(der: &[u8]) -> String {
        String::from_utf8(openssl::x509::X509::from_der(der).unwrap().to_pem().unwrap()).unwrap()
    }

    fn escaped(der: &[u8]) -> String {
        percent_encoding::utf8_percent_encode(&pem(der), percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    fn hex(d: [u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn header_formats() {
        let der = cert(&[]);
        let folded = pem(&der).replace('\n', " ");
        assert_eq!(parse_header(&folded, CertHeaderFormat::Pem).unwrap(), ClientCert::Der(der.clone()));
        let tabbed = pem(&der).replace('\n', "\n\t");
        assert_eq!(parse_header(&tabbed, CertHeaderFormat::Pem).unwrap().der(), Some(&der[..]));
        assert_eq!(parse_header(&escaped(&der), CertHeaderFormat::EscapedPem).unwrap().der(), Some(&der[..]));
        let xfcc = format!(
            "By=spiffe://a/b;Hash={};Cert=\"{}\";Subject=\"CN=client,O=x\";URI=",
            hex(openssl::sha::sha256(&der)),
            escaped(&der)
        );
        assert_eq!(parse_header(&xfcc, CertHeaderFormat::Xfcc).unwrap().der(), Some(&der[..]));
        // The last element is the one the nearest proxy added.
        let other = cert(&[]);
        let two = format!("Cert=\"{}\",Hash={}", escaped(&other), hex(openssl::sha::sha256(&der)));
        let only_hash = parse_header(&two, CertHeaderFormat::Xfcc).unwrap();
        assert_eq!((only_hash.der(), only_hash.x5t_s256()), (None, x5t_s256(&der)));
        let mismatch = format!("Hash={};Cert=\"{}\"", hex(openssl::sha::sha256(&der)), escaped(&other));
        assert_eq!(parse_header(&mismatch, CertHeaderFormat::Xfcc), Err(CertHeaderError::HashMismatch));
        for bad in ["", "Subject=\"CN=x\"", "Hash=zz", "Cert=\"unterminated", "Cert=notbase64!"] {
            assert!(parse_header(bad, CertHeaderFormat::Xfcc).is_err(), "{bad}");
        }
        assert!(parse_header("-----BEGIN CERTIFICATE----- AAAA", CertHeaderFormat::Pem).is_err());
        assert!(parse_header("aGVsbG8=", CertHeaderFormat::Pem).is_err());
        assert!(parse_header("%ZZ", CertHeaderFormat::EscapedPem).is_err());
    }

    #[test]
    fn header_only_from_trusted_proxies() {
        let der = cert(&[]);
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap();
        assert!(proxies.contains("10.2.3.4".parse().unwrap()));
        assert!(proxies.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(proxies.contains("::1".parse().unwrap()));
        assert!(!proxies.contains("11.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["proxy.local"]).is_err());

        let source = ClientCertSource::behind_proxy(proxies, "x-client-cert", CertHeaderFormat::EscapedPem).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-client-cert", escaped(&der).parse().unwrap());
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        let tls = cert(&[]);
        assert_eq!(source.client_certificate(proxy, &headers, Some(&tls)).unwrap(), Some(ClientCert::Der(der)));
        assert_eq!(source.client_certificate(stranger, &headers, None).unwrap(), None);
        assert_eq!(source.client_certificate(stranger, &headers, Some(&tls)).unwrap(), Some(ClientCert::Der(tls)));
        assert_eq!(source.client_certificate(proxy, &HeaderMap::new(), None).unwrap(), None);
        headers.append("x-client-cert", "x".parse().unwrap());
        assert_eq!(source.client_certificate(proxy, &headers, None), Err(CertHeaderError::Multiple));
        let mut garbage = HeaderMap::new();
        garbage.insert("x-client-cert", "garbage".parse().unwrap());
        assert!(source.client_certificate(proxy, &garbage, None).is_err());
        // Direct: headers are never read.
        assert_eq!(ClientCertSource::direct().client_certificate(proxy, &garbage, None).unwrap(), None);
    }

    #[test]
    fn spiffe() {
        let svid = cert(&["spiffe://example.org/ns/payments/sa/api"]);
        assert_eq!(spiffe_id(&svid).unwrap(), "spiffe://example.org/ns/payments/sa/api");
        assert!(require_spiffe_sub(&svid, "spiffe://example.org/ns/payments/sa/api").is_ok());
        assert_eq!(require_spiffe_sub(&svid, "spiffe://example.org/ns/other"), Err(SpiffeError::Mismatch));
        assert_eq!(spiffe_id(&cert(&[])), Err(SpiffeError::NotSvid));
        assert_eq!(spiffe_id(&cert(&["https://example.org"])), Err(SpiffeError::NotSvid));
        assert_eq!(spiffe_id(&cert(&["spiffe://a/x", "spiffe://a/y"])), Err(SpiffeError::NotSvid));
        assert_eq!(spiffe_id(b"junk"), Err(SpiffeError::Certificate));
    }
}
