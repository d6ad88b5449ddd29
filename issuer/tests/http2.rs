//! HTTP/2 on the issuer's TLS listener with a real client (hyper's HTTP/2
//! client over rustls, ALPN): `/token`, the JWKS and the metadata over h2;
//! ALPN fallback to HTTP/1.1; the stream limit per connection; idle and
//! silent connections closed while slow requests in progress are not; the
//! plain listener stays HTTP/1.1; and SIGTERM to the real binary drains an
//! in-flight h2 request to completion.

#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use common::pki::{full, h2_connect, streamed, H2Connection, Pki};
use common::process::IssuerProcess;
use common::*;
use ekey_issuer::{Config, Server, ServerHandle};
use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::Method;
use rustls::version::TLS13;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const FORM: &str = "grant_type=client_credentials&scope=payments.create";

/// The config text: TLS with the test PKI's server certificate, the
/// `worker` client and `payments.create`; `server` and `tls` add fields.
fn config_text(pki: &Pki, server: &str, tls: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n\
         [server.tls]\ncert = {:?}\nkey = {:?}\n{tls}\n[signing_key]\ngenerate = true\n\
         [audit]\nsink = \"off\"\n[telemetry]\notlp = \"off\"\n{}",
        pki.server.cert_path,
        pki.server.key_path,
        worker_toml("https://api.example.com")
    )
}

async fn start(pki: &Pki, server: &str, tls: &str) -> ServerHandle {
    Server::start(Config::from_toml_str(&config_text(pki, server, tls)).unwrap()).await.unwrap()
}

async fn connect(pki: &Pki, addr: SocketAddr) -> H2Connection {
    let conn = h2_connect(pki.anonymous_client(&[&TLS13]), addr, H2_AND_H1).await.unwrap();
    assert_eq!(conn.negotiated.as_deref(), Some(&b"h2"[..]));
    conn
}

/// The headers of a token request by `worker` with a fresh proof for `endpoint`.
fn token_headers(endpoint: &str, key: &DpopKey) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/x-www-form-urlencoded".to_owned()),
        ("authorization", format!("Basic {}", STANDARD.encode(format!("worker:{WORKER_SECRET}")))),
        ("dpop", key.proof("POST", endpoint, None, None, now()).unwrap()),
    ]
}

#[tokio::test]
async fn token_and_metadata_over_http2() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, "", "").await;
        let urls = server.urls().clone();
        let conn = connect(&pki, server.public_addr()).await;

        let metadata = conn.get(&urls.metadata).await.unwrap();
        assert_eq!(metadata.status, 200);
        assert_eq!(metadata.json()["token_endpoint"], urls.token_endpoint.as_str());
        let jwks = conn.get(&urls.jwks_uri).await.unwrap();
        assert_eq!((jwks.status.as_u16(), jwks.header("content-type")), (200, Some("application/jwk-set+json")));
        let etag = jwks.header("etag").unwrap().to_owned();
        let cached = conn.send(Method::GET, &urls.jwks_uri, &[("if-none-match", etag)], full("")).await.unwrap();
        assert_eq!(cached.status, 304);

        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let endpoint = &urls.token_endpoint;
        let res = conn.send(Method::POST, endpoint, &token_headers(endpoint, &key), full(FORM)).await.unwrap();
        assert_eq!(res.status, 200, "{:?}", res.body);
        assert_eq!(res.json()["token_type"], "DPoP");
        assert!(res.header("x-request-id").is_some());
        // A refusal is the same JSON over h2.
        let res = conn.send(Method::POST, endpoint, &token_headers(endpoint, &key)[..1], full(FORM)).await.unwrap();
        assert_eq!((res.status.as_u16(), res.error().as_str()), (401, "invalid_client"));

        // Many requests at once on the one connection.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (sender, uri) = (conn.sender.clone(), if i % 2 == 0 { &urls.metadata } else { &urls.jwks_uri });
                let one = H2Connection { negotiated: None, sender, closed: tokio::spawn(async {}) };
                let uri = uri.clone();
                tokio::spawn(async move { one.get(&uri).await.unwrap().status })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }

        // A client that offers only HTTP/1.1 gets it.
        let h1 = h2_connect(pki.anonymous_client(&[&TLS13]), server.public_addr(), &[b"http/1.1"]).await.unwrap();
        assert_eq!(h1.negotiated.as_deref(), Some(&b"http/1.1"[..]));
        server.shutdown().await;

        // With http2 = false, ALPN offers HTTP/1.1 only.
        let server = start(&pki, "", "http2 = false").await;
        let conn = h2_connect(pki.anonymous_client(&[&TLS13]), server.public_addr(), H2_AND_H1).await.unwrap();
        assert_eq!(conn.negotiated.as_deref(), Some(&b"http/1.1"[..]));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn streams_per_connection_are_bounded() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, "max_concurrent_streams = 2", "").await;
        let urls = server.urls().clone();
        let conn = connect(&pki, server.public_addr()).await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();

        // Two token requests whose bodies are still on the way hold both streams.
        let mut held = Vec::new();
        for _ in 0..2 {
            let (mut tx, body) = streamed();
            tx.send_data(Bytes::from_static(b"grant_type=client_credentials&")).await.unwrap();
            let (sender, endpoint) = (conn.sender.clone(), urls.token_endpoint.clone());
            let headers = token_headers(&endpoint, &key);
            let req = tokio::spawn(async move {
                let one = H2Connection { negotiated: None, sender, closed: tokio::spawn(async {}) };
                one.send(Method::POST, &endpoint, &headers, body).await
            });
            held.push((tx, req));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A third request waits for a free stream...
        let third = {
            let (sender, uri) = (conn.sender.clone(), urls.metadata.clone());
            tokio::spawn(async move {
                H2Connection { negotiated: None, sender, closed: tokio::spawn(async {}) }.get(&uri).await
            })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!third.is_finished(), "a third stream was served while two were in flight");
        // ...and is served as soon as one ends.
        let (mut tx, req) = held.remove(0);
        tx.send_data(Bytes::from_static(b"scope=payments.create")).await.unwrap();
        drop(tx);
        assert_eq!(req.await.unwrap().unwrap().status, 200);
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), third).await.unwrap().unwrap().unwrap().status, 200);
        let (mut tx, req) = held.remove(0);
        tx.send_data(Bytes::from_static(b"scope=payments.create")).await.unwrap();
        drop(tx);
        assert_eq!(req.await.unwrap().unwrap().status, 200);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed_slow_requests_are_not() {
    bounded(async {
        let pki = Pki::new();
        let server = start(&pki, "header_read_timeout = 1", "").await;
        let urls = server.urls().clone();

        // A request in progress for longer than the timeout keeps its
        // connection: its body arrives in pieces over 2.4 s.
        let conn = connect(&pki, server.public_addr()).await;
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let (mut tx, body) = streamed();
        let (sender, endpoint) = (conn.sender.clone(), urls.token_endpoint.clone());
        let headers = token_headers(&endpoint, &key);
        let slow = tokio::spawn(async move {
            H2Connection { negotiated: None, sender, closed: tokio::spawn(async {}) }
                .send(Method::POST, &endpoint, &headers, body)
                .await
        });
        for piece in ["grant_type=", "client_credentials", "&scope=", "payments.create"] {
            tokio::time::sleep(Duration::from_millis(600)).await;
            tx.send_data(Bytes::from(piece)).await.unwrap();
        }
        drop(tx);
        assert_eq!(slow.await.unwrap().unwrap().status, 200);

        // Then, idle: closed after the timeout (GOAWAY), well within 3 s.
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(3), conn.closed).await.expect("idle h2 connection left open").unwrap();
        assert!(started.elapsed() >= Duration::from_millis(900), "closed too early: {:?}", started.elapsed());

        // A connection that negotiates h2 and then says nothing at all.
        let tcp = tokio::net::TcpStream::connect(server.public_addr()).await.unwrap();
        let mut config = pki.anonymous_client(&[&TLS13]);
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::IpAddress(server.public_addr().ip().into());
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let ended = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "a silent h2 connection was kept open");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn plain_listener_stays_http1() {
    bounded(async {
        let server = issuer_with_signer(
            std::sync::Arc::new(ekey_issuer::LocalSigner::generate(Algorithm::ES256).unwrap()),
            "https://api.example.com",
        )
        .await;
        let tcp = tokio::net::TcpStream::connect(server.public_addr()).await.unwrap();
        let handshake = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await;
        let served = match handshake {
            Err(_) => false,
            Ok((mut sender, connection)) => {
                tokio::spawn(connection);
                let req =
                    http::Request::get(&server.urls().metadata).body(http_body_util::Empty::<Bytes>::new()).unwrap();
                matches!(tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await, Ok(Ok(_)))
            }
        };
        assert!(!served, "h2c (prior knowledge) served on the plain listener");
        let h1 = send(Method::GET, &server.urls().metadata, &[], None).await;
        assert_eq!(h1.status, 200);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_http2_request() {
    bounded(async {
        let pki = Pki::new();
        let dir = TempDir::new("h2-drain");
        let config = dir.write("issuer.toml", config_text(&pki, "drain_timeout = 20", "").as_bytes());
        let mut issuer = IssuerProcess::serve(&config, &dir.0.join("stdout.log"), &dir.0.join("stderr.log"));
        let (listen, admin) = issuer.serving_addresses().await;
        let addr: SocketAddr = listen.parse().unwrap();
        let endpoint = format!("https://{listen}/token");
        let conn = connect(&pki, addr).await;
        assert_eq!(conn.get(&format!("https://{listen}/.well-known/jwks.json")).await.unwrap().status, 200);

        // A token request whose body is half sent.
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let (mut tx, body) = streamed();
        tx.send_data(Bytes::from_static(b"grant_type=client_credentials&")).await.unwrap();
        let (sender, uri, headers) = (conn.sender.clone(), endpoint.clone(), token_headers(&endpoint, &key));
        let in_flight = tokio::spawn(async move {
            H2Connection { negotiated: None, sender, closed: tokio::spawn(async {}) }
                .send(Method::POST, &uri, &headers, body)
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;

        // SIGTERM: no new connections (the admin listener, and with it
        // /readyz, stops too)...
        issuer.terminate();
        let mut refused = false;
        for _ in 0..100 {
            let public = h2_connect(pki.anonymous_client(&[&TLS13]), addr, H2_AND_H1).await.is_err();
            let admin = tokio::net::TcpStream::connect(&admin).await.is_err();
            if public && admin {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "new connections still accepted while draining");
        assert!(!in_flight.is_finished());

        // ...and the request in flight completes with its token.
        tx.send_data(Bytes::from_static(b"scope=payments.create")).await.unwrap();
        drop(tx);
        let res = in_flight.await.unwrap().unwrap();
        assert_eq!(res.status, 200, "{:?}", res.body);
        assert!(res.json()["access_token"].as_str().is_some_and(|t| t.len() > 100));
        let status = issuer.exited(Duration::from_secs(15)).await;
        assert!(status.success(), "{status}");
    })
    .await;
}
