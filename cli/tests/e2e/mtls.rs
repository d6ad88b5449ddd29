//! `ekey` over https:// with a client certificate, against the real issuer
//! (TLS, `tls_client_auth` by SPIFFE URI SAN) and an mTLS API stand-in:
//! `token` gets a certificate-bound token, `verify --client-cert` checks it,
//! `call --client-cert` presents the certificate with `Bearer`.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SPIFFE_ID: &str = "spiffe://example.org/ns/payments/sa/cli";

struct Files {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf, Vec<u8>),
    other: (PathBuf, PathBuf, Vec<u8>),
}

fn pki(dir: &Path) -> Files {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "ekey cli test CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    let leaf = |name: &str, p: CertificateParams| {
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().to_vec())
    };
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = leaf("server", server);
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.subject_alt_names = vec![SanType::URI(SPIFFE_ID.try_into().unwrap())];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let mut other = client.clone();
    other.subject_alt_names = vec![SanType::URI("spiffe://example.org/other".try_into().unwrap())];
    Files {
        ca: dir.join("ca.crt"),
        server: (server.0, server.1),
        client: leaf("client", client),
        other: leaf("other", other),
    }
}

/// The real issuer with TLS and optional client certificates, on a
/// background thread for the rest of the test process.
fn issuer(f: &Files) -> String {
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [server.tls]
        cert = {:?}
        key = {:?}
        client_ca = {:?}
        client_auth = "optional"
        [signing_key]
        generate = true
        [[clients]]
        id = "{SPIFFE_ID}"
        auth = "tls_client_auth"
        tls_client_auth_san_uri = "{SPIFFE_ID}"
        [[templates]]
        name = "payments.mtls"
        clients = ["{SPIFFE_ID}"]
        actions = ["POST:/payments/:id"]
        audience = "{AUDIENCE}"
        binding = "mtls"
        "#,
        f.server.0, f.server.1, f.ca
    );
    let config = ekey_issuer::Config::from_toml_str(&config).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let server = ekey_issuer::Server::start(config).await.unwrap();
            tx.send(server.urls().issuer.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// An API stand-in that requires a client certificate from the CA and
/// answers with what it saw: the Authorization scheme and the certificate's
/// `x5t#S256`.
fn mtls_api(f: &Files) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&f.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .unwrap();
    let chain = CertificateDer::pem_file_iter(&f.server.0).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&f.server.1).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let scheme = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.split(' ').next())
                            .unwrap_or_default()
                            .to_owned();
                        let x5t = cert.as_deref().map(ekey_verifier::mtls::x5t_s256);
                        let body =
                            json!({"scheme": scheme, "x5t#S256": x5t, "dpop": req.headers().contains_key("dpop")});
                        async move { Ok::<_, std::convert::Infallible>(respond_json(200, &[], &body)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    addr
}

#[test]
fn certificate_bound_token_from_the_issuer_verified_and_used() {
    let dir = scratch("mtls");
    let f = pki(&dir);
    let issuer = issuer(&f);
    let (cert, key, der) = (s(&f.client.0), s(&f.client.1), &f.client.2);
    let ca = s(&f.ca);

    // token: tls_client_auth, no DPoP key → bound to the certificate.
    let run = ekey(&[
        "token",
        "--issuer",
        &issuer,
        "--ca",
        ca,
        "--client-id",
        SPIFFE_ID,
        "--client-cert",
        cert,
        "--client-key",
        key,
        "--scope",
        "payments.mtls",
    ]);
    let body = run.expect_code(0).json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims: Value = ekey_verifier::dangerous::decode_unverified(&token).unwrap().1;
    assert_eq!(claims["cnf"], json!({"x5t#S256": ekey_verifier::mtls::x5t_s256(der)}));
    assert_eq!(claims["sub"], SPIFFE_ID);

    // Without --ca the private CA is not trusted.
    let run = ekey(&[
        "token",
        "--issuer",
        &issuer,
        "--client-id",
        SPIFFE_ID,
        "--client-cert",
        cert,
        "--client-key",
        key,
        "--scope",
        "payments.mtls",
    ]);
    // (Exit 3 after the handshake fails; 2 on a machine without a system trust store.)
    assert!(
        (run.code == 3 && run.stderr.contains("TLS handshake"))
            || (run.code == 2 && run.stderr.contains("no trusted CA")),
        "{run:#?}"
    );
    // Another certificate: the issuer refuses the client.
    let run = ekey(&[
        "token",
        "--issuer",
        &issuer,
        "--ca",
        ca,
        "--client-id",
        SPIFFE_ID,
        "--client-cert",
        s(&f.other.0),
        "--client-key",
        s(&f.other.1),
        "--scope",
        "payments.mtls",
    ]);
    run.expect_code(1);
    assert_eq!(run.json()["error"], "invalid_client");
    // Neither DPoP key nor certificate: usage error.
    let run = ekey(&["token", "--issuer", &issuer, "--client-id", "x", "--client-secret", "y", "--scope", "s"]);
    run.expect_code(2);

    // verify: keys discovered over https with --ca; the certificate decides.
    let url = format!("{AUDIENCE}/payments/7");
    let verify = |client_cert: &str| {
        ekey(&[
            "verify",
            "--issuer",
            &issuer,
            "--ca",
            ca,
            "--audience",
            AUDIENCE,
            "--token",
            &token,
            "--client-cert",
            client_cert,
            "--method",
            "POST",
            "--url",
            &url,
        ])
    };
    let ok = verify(cert);
    let out = ok.expect_code(0).json();
    assert_eq!(out["binding"], json!({"type": "mtls", "x5t#S256": ekey_verifier::mtls::x5t_s256(der)}));
    let other = verify(s(&f.other.0));
    assert_eq!(other.expect_code(1).json()["error"], "invalid_token");

    // call: Bearer over mTLS, no DPoP proof.
    let api = mtls_api(&f);
    let run = ekey(&[
        "call",
        "--ca",
        ca,
        "--client-cert",
        cert,
        "--client-key",
        key,
        "--token",
        &token,
        "--method",
        "POST",
        "--url",
        &format!("https://127.0.0.1:{}/payments/7", api.port()),
    ]);
    let seen = &run.expect_code(0).json()["json"];
    assert_eq!(seen["scheme"], "Bearer");
    assert_eq!(seen["dpop"], false);
    assert_eq!(seen["x5t#S256"], ekey_verifier::mtls::x5t_s256(der));
    // The API requires a certificate: without one the exchange fails.
    let run = ekey(&[
        "call",
        "--ca",
        ca,
        "--dpop-key",
        s(&keygen(&dir, "d.pem").0),
        "--token",
        &token,
        "--url",
        &format!("https://127.0.0.1:{}/payments/7", api.port()),
    ]);
    run.expect_code(3);
    // A client certificate over plain http is refused before connecting.
    let run =
        ekey(&["call", "--client-cert", cert, "--client-key", key, "--token", &token, "--url", "http://127.0.0.1:1/"]);
    run.expect_code(2);
    let _ = std::fs::remove_dir_all(&dir);
}
