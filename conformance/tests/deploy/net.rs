//! Loopback networking for the deploy tests: free ports, a test TLS
//! certificate, and one-shot HTTP/1.1 GETs over plain TCP or TLS.

#![allow(dead_code)]

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A loopback port that is free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A private key and a self-signed certificate for `issuer.example.com`, PEM.
pub fn tls_pair() -> (Vec<u8>, Vec<u8>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "issuer.example.com").expect("CN");
    let name = name.build();
    let mut cert = X509::builder().expect("X509");
    cert.set_version(2).expect("v3");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("key");
    cert.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).expect("now")).expect("not before");
    cert.set_not_after(&openssl::asn1::Asn1Time::days_from_now(2).expect("later")).expect("not after");
    let serial = openssl::bn::BigNum::from_u32(1).expect("bn").to_asn1_integer().expect("serial");
    cert.set_serial_number(&serial).expect("serial");
    let san =
        SubjectAlternativeName::new().dns("issuer.example.com").ip("127.0.0.1").build(&cert.x509v3_context(None, None));
    cert.append_extension(san.expect("SAN")).expect("extension");
    cert.sign(&key, openssl::hash::MessageDigest::sha256()).expect("sign");
    (key.private_key_to_pem_pkcs8().expect("PKCS#8"), cert.build().to_pem().expect("PEM"))
}

/// One plain HTTP/1.1 GET to `addr` (`ip:port`): status and body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    parse_response(&text)
}

/// The same over TLS (certificate not checked: it is the test's own).
pub fn https_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut connector = SslConnector::builder(SslMethod::tls_client()).ok()?;
    connector.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut tls = connector.build().connect("issuer.example.com", tcp).ok()?;
    write!(tls, "GET {path} HTTP/1.1\r\nHost: issuer.example.com\r\nConnection: close\r\n\r\n").ok()?;
    let mut bytes = Vec::new();
    let _ = tls.read_to_end(&mut bytes);
    parse_response(&String::from_utf8_lossy(&bytes))
}

fn parse_response(text: &str) -> Option<(u16, String)> {
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
