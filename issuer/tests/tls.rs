//! The issuer's TLS listener with a real rustls client: protocol versions,
//! cipher suites, client-certificate modes, and certificate reload.

#![allow(clippy::unwrap_used)]

mod common;

use common::pki::{tls_connect, tls_get, Pki};
use common::{bounded, Answer};
use ekey_issuer::{Config, Server, ServerHandle};
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ProtocolVersion};
use std::net::SocketAddr;
use std::time::Duration;

const JWKS: &str = "/.well-known/jwks.json";

async fn start(pki: &Pki, tls: &str, clients: &str) -> ServerHandle {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\ncert = {:?}\nkey = {:?}\n{tls}\n\
         [signing_key]\ngenerate = true\n{clients}",
        pki.server.cert_path, pki.server.key_path
    );
    Server::start(Config::from_toml_str(&config).unwrap()).await.unwrap()
}

/// A GET on a fresh connection must fail somewhere: handshake, or (TLS 1.3,
/// where the server refuses a client certificate after the client's side is
/// done) the first request.
async fn refused(config: rustls::ClientConfig, addr: SocketAddr, what: &str) {
    if let Ok(answer) = tls_get(config, addr, JWKS).await {
        panic!("{what}: served with status {}", answer.status);
    }
}

async fn served(config: rustls::ClientConfig, addr: SocketAddr, what: &str) -> Answer {
    let a = tls_get(config, addr, JWKS).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(a.status, 200, "{what}");
    a
}

#[tokio::test]
async fn tls13_only_by_default_with_aes_gcm() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, "", "").await;
        let addr = server.public_addr();
        assert!(server.urls().issuer.starts_with("https://127.0.0.1:"), "{}", server.urls().issuer);

        let mut conn = tls_connect(pki.anonymous_client(&[&TLS13]), addr).await.unwrap();
        assert_eq!(conn.version, ProtocolVersion::TLSv1_3);
        assert!(
            matches!(conn.suite, CipherSuite::TLS13_AES_128_GCM_SHA256 | CipherSuite::TLS13_AES_256_GCM_SHA384),
            "{:?}",
            conn.suite
        );
        assert_eq!(conn.server_cert, pki.server.der);
        assert_eq!(conn.get(JWKS).await.unwrap().status, 200);

        assert!(tls_connect(pki.anonymous_client(&[&TLS12]), addr).await.is_err(), "TLS 1.2 accepted by default");
        let chacha = pki.anonymous_client_with_suites(&[CipherSuite::TLS13_CHACHA20_POLY1305_SHA256]);
        assert!(tls_connect(chacha, addr).await.is_err(), "ChaCha20 accepted by default");
        let aes256 = pki.anonymous_client_with_suites(&[CipherSuite::TLS13_AES_256_GCM_SHA384]);
        assert_eq!(tls_connect(aes256, addr).await.unwrap().suite, CipherSuite::TLS13_AES_256_GCM_SHA384);
        // Plain HTTP on the TLS port gets nothing.
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
        assert!(!reply.starts_with(b"HTTP/1.1"), "plain HTTP served on the TLS port");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tls12_when_enabled_only_ecdhe_aes_gcm() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, "tls12 = true", "").await;
        let addr = server.public_addr();
        let mut conn = tls_connect(pki.anonymous_client(&[&TLS12]), addr).await.unwrap();
        assert_eq!(conn.version, ProtocolVersion::TLSv1_2);
        assert!(
            matches!(
                conn.suite,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            ),
            "{:?}",
            conn.suite
        );
        assert_eq!(conn.get(JWKS).await.unwrap().status, 200);
        let chacha12 = pki.anonymous_client_with_suites(&[CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]);
        assert!(tls_connect(chacha12, addr).await.is_err(), "TLS 1.2 ChaCha20 accepted without chacha20 = true");
        // TLS 1.3 still preferred.
        assert_eq!(
            tls_connect(pki.anonymous_client(&[&TLS13, &TLS12]), addr).await.unwrap().version,
            ProtocolVersion::TLSv1_3
        );
        server.shutdown().await;

        let server = start(&pki, "tls12 = true\nchacha20 = true", "").await;
        let chacha = pki.anonymous_client_with_suites(&[CipherSuite::TLS13_CHACHA20_POLY1305_SHA256]);
        assert_eq!(
            tls_connect(chacha, server.public_addr()).await.unwrap().suite,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        server.shutdown().await;
    })
    .await;
}

/// `openssl s_client` with one protocol version; the output, and whether a
/// session was established.
fn s_client(addr: SocketAddr, version_flag: &str, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), version_flag, "-brief"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the openssl command line is needed (Debian package openssl)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text.contains("CONNECTION ESTABLISHED"), text)
}

#[tokio::test]
async fn tls11_and_older_always_refused() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, "tls12 = true", "").await;
        let addr = server.public_addr();
        let (ok13, text) = tokio::task::spawn_blocking(move || s_client(addr, "-tls1_3", &[])).await.unwrap();
        assert!(ok13, "openssl TLS 1.3 control failed: {text}");
        // SECLEVEL=0 lets this openssl client offer TLS 1.1 at all, so the
        // refusal comes from the server.
        for flag in ["-tls1_1", "-tls1"] {
            let (ok, text) =
                tokio::task::spawn_blocking(move || s_client(addr, flag, &["-cipher", "DEFAULT@SECLEVEL=0"]))
                    .await
                    .unwrap();
            assert!(!ok, "{flag} accepted: {text}");
            // The refusal is the server's alert, not a local one.
            assert!(
                text.contains("alert protocol version") || text.contains("alert handshake failure"),
                "{flag}: {text}"
            );
        }
        server.shutdown().await;
    })
    .await;
}

fn ca_clause(pki: &Pki, mode: &str) -> String {
    format!("client_auth = \"{mode}\"\nclient_ca = {:?}", pki.ca.cert_path)
}

#[tokio::test]
async fn client_certificates_required() {
    bounded(async {
        let pki = Pki::new();
        let self_signed = format!(
            "[[clients]]\nid = \"self\"\nauth = \"self_signed_tls_client_auth\"\ncertificate_thumbprints = [\"{}\"]",
            pki.self_signed.x5t_s256()
        );
        let server = start(&pki, &ca_clause(&pki, "required"), &self_signed).await;
        let addr = server.public_addr();
        for v in [&TLS13] {
            served(pki.client.client_config(&pki.ca, &[v]), addr, "good client").await;
            served(pki.spiffe.client_config(&pki.ca, &[v]), addr, "SPIFFE client").await;
            served(pki.self_signed.client_config(&pki.ca, &[v]), addr, "registered self-signed").await;
            refused(pki.anonymous_client(&[v]), addr, "no certificate").await;
            refused(pki.expired.client_config(&pki.ca, &[v]), addr, "expired").await;
            refused(pki.not_yet_valid.client_config(&pki.ca, &[v]), addr, "not yet valid").await;
            refused(pki.server_eku.client_config(&pki.ca, &[v]), addr, "serverAuth EKU only").await;
            refused(pki.other_ca.client_config(&pki.ca, &[v]), addr, "another CA").await;
        }
        server.shutdown().await;

        // An unregistered self-signed certificate; and TLS 1.2 with a bad one.
        let server = start(&pki, &format!("{}\ntls12 = true", ca_clause(&pki, "required")), "").await;
        let addr = server.public_addr();
        refused(pki.self_signed.client_config(&pki.ca, &[&TLS13]), addr, "unregistered self-signed").await;
        refused(pki.other_ca.client_config(&pki.ca, &[&TLS12]), addr, "another CA over TLS 1.2").await;
        served(pki.client.client_config(&pki.ca, &[&TLS12]), addr, "good client over TLS 1.2").await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_certificates_optional_and_off() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, &ca_clause(&pki, "optional"), "").await;
        let addr = server.public_addr();
        served(pki.anonymous_client(&[&TLS13]), addr, "no certificate").await;
        served(pki.client.client_config(&pki.ca, &[&TLS13]), addr, "good client").await;
        refused(pki.expired.client_config(&pki.ca, &[&TLS13]), addr, "expired").await;
        refused(pki.other_ca.client_config(&pki.ca, &[&TLS13]), addr, "another CA").await;
        server.shutdown().await;

        // Off: no certificate is asked for, so any client connects and none
        // is ever seen (the token endpoint then refuses certificate clients).
        let server = start(&pki, "", "").await;
        served(pki.other_ca.client_config(&pki.ca, &[&TLS13]), server.public_addr(), "off").await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_files_name_the_field() {
    let pki = Pki::new();
    let start_err = |tls: String| async move {
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\n{tls}\n[signing_key]\ngenerate = true\n"
        );
        Server::start(Config::from_toml_str(&config).unwrap()).await.unwrap_err().to_string()
    };
    let cert = format!("cert = {:?}", pki.server.cert_path);
    let key = format!("key = {:?}", pki.server.key_path);
    let e = start_err(format!("cert = {:?}\n{key}", pki.path("missing.crt"))).await;
    assert!(e.starts_with("server.tls.cert: cannot read"), "{e}");
    let e = start_err(format!("cert = {:?}\n{key}", pki.server.key_path)).await;
    assert!(e.starts_with("server.tls.cert: "), "{e}");
    let e = start_err(format!("{cert}\nkey = {:?}", pki.client.key_path)).await;
    assert!(e.starts_with("server.tls.key: the key does not fit"), "{e}");
    let e =
        start_err(format!("{cert}\n{key}\nclient_auth = \"required\"\nclient_ca = {:?}", pki.server.key_path)).await;
    assert!(e.starts_with("server.tls.client_ca: "), "{e}");
}

#[tokio::test]
async fn certificate_reload_keeps_old_connections_and_loses_no_request() {
    bounded(async {
        let pki = Pki::new();
        // The server reads its certificate from its own files, replaced below.
        let cert_path = pki.path("live.crt");
        let key_path = pki.path("live.key");
        std::fs::write(&cert_path, &pki.server.cert_pem).unwrap();
        std::fs::write(&key_path, &pki.server.key_pem).unwrap();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\ncert = {cert_path:?}\n\
             key = {key_path:?}\nreload_interval = 1\n[signing_key]\ngenerate = true\n"
        );
        let server = Server::start(Config::from_toml_str(&config).unwrap()).await.unwrap();
        let addr = server.public_addr();
        let client = || pki.anonymous_client(&[&TLS13]);

        let mut old = tls_connect(client(), addr).await.unwrap();
        assert_eq!(old.server_cert, pki.server.der);
        assert_eq!(old.get(JWKS).await.unwrap().status, 200);

        // Traffic on fresh connections all through the reload.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let traffic = {
            let config = client();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut certs) = (0u32, Vec::new(), std::collections::HashSet::new());
                while !*stop_rx.borrow() {
                    match tls_connect(config.clone(), addr).await {
                        Ok(mut c) => match c.get(JWKS).await {
                            Ok(a) if a.status == 200 => {
                                ok += 1;
                                certs.insert(c.server_cert.clone());
                            }
                            other => failed.push(format!("{:?}", other.map(|a| a.status))),
                        },
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed, certs)
            })
        };

        tokio::time::sleep(Duration::from_millis(300)).await;
        let next = pki.new_server_cert("reloaded server");
        // Key first, then certificate: in between, the pair does not match
        // and the reload must keep the old one rather than fail.
        std::fs::write(&key_path, &next.key_pem).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::write(&cert_path, &next.cert_pem).unwrap();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let c = tls_connect(client(), addr).await.unwrap();
            if c.server_cert == next.der {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "new certificate not served within 15 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(true).unwrap();
        let (ok, failed, certs) = traffic.await.unwrap();
        assert!(failed.is_empty(), "{} requests failed across the reload: {failed:?}", failed.len());
        assert!(ok >= 5 && certs.len() == 2, "{ok} requests, {} certificates seen", certs.len());

        // The connection made before the reload still works, with its old certificate.
        assert_eq!(old.get(JWKS).await.unwrap().status, 200);
        assert_eq!(old.server_cert, pki.server.der);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn sighup_reloads_at_once() {
    bounded(async {
        let pki = Pki::new();
        let cert_path = pki.path("hup.crt");
        let key_path = pki.path("hup.key");
        std::fs::write(&cert_path, &pki.server.cert_pem).unwrap();
        std::fs::write(&key_path, &pki.server.key_pem).unwrap();
        // Polling off: only the signal can reload.
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[server.tls]\ncert = {cert_path:?}\n\
             key = {key_path:?}\nreload_interval = 0\n[signing_key]\ngenerate = true\n"
        );
        let server = Server::start(Config::from_toml_str(&config).unwrap()).await.unwrap();
        let addr = server.public_addr();
        let next = pki.new_server_cert("after sighup");
        std::fs::write(&key_path, &next.key_pem).unwrap();
        std::fs::write(&cert_path, &next.cert_pem).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = tls_connect(pki.anonymous_client(&[&TLS13]), addr).await.unwrap();
        assert_eq!(before.server_cert, pki.server.der, "reloaded without a signal");

        // The handler is installed by Server::start, so this signal cannot
        // terminate the test process.
        let pid = std::process::id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let c = tls_connect(pki.anonymous_client(&[&TLS13]), addr).await.unwrap();
            if c.server_cert == next.der {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not reload within 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.shutdown().await;
    })
    .await;
}
