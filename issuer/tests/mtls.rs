//! End to end over mTLS: tokens from the issuer's TLS listener by
//! `tls_client_auth` (SPIFFE URI SAN) and `self_signed_tls_client_auth`,
//! bound to the client certificate (`cnf.x5t#S256`, cross-checked with the
//! openssl command line), used at a verifier-protected service that
//! terminates TLS itself or sits behind a proxy.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::pki::{openssl_x5t_s256, tls_connect, Leaf, Pki, SPIFFE_ID};
use common::{bounded, Answer};
use ekey_issuer::{Acceptor as _, ClientCertMode, Config, Server, ServerHandle, TlsAcceptor, TlsConfig, TlsSettings};
use ekey_verifier::client::DpopKey;
use ekey_verifier::mtls::{require_spiffe_sub, CertHeaderFormat, ClientCertSource, TrustedProxies};
use ekey_verifier::{
    dangerous, Algorithm, Jwks, MemoryStore, PresentedRequest, Rejection, StaticKeys, Verifier, VerifierSettings,
};
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::version::TLS13;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

const API: &str = "https://api.example.com";
const CERT_HEADER: &str = "x-ssl-client-cert";

async fn issuer(pki: &Pki) -> ServerHandle {
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [server.tls]
        cert = {server_cert:?}
        key = {server_key:?}
        client_ca = {ca:?}
        client_auth = "optional"
        [signing_key]
        generate = true
        [[clients]]
        id = "{SPIFFE_ID}"
        auth = "tls_client_auth"
        tls_client_auth_san_uri = "{SPIFFE_ID}"
        [[clients]]
        id = "client-dn"
        auth = "tls_client_auth"
        tls_client_auth_subject_dn = "CN=client, O=Example"
        [[clients]]
        id = "self"
        auth = "self_signed_tls_client_auth"
        certificate_thumbprints = ["{self_thumb}"]
        [[clients]]
        id = "basic"
        auth = "client_secret_basic"
        secret_sha256 = "{basic}"
        [[templates]]
        name = "payments.mtls"
        clients = ["{SPIFFE_ID}", "client-dn"]
        actions = ["POST:/payments/:id"]
        max_limit = 5
        default_limit = 3
        audience = "{API}"
        binding = "mtls"
        [[templates]]
        name = "payments.any"
        clients = ["self", "basic", "client-dn"]
        actions = ["POST:/payments/:id"]
        max_limit = 5
        audience = "{API}"
        "#,
        server_cert = pki.server.cert_path,
        server_key = pki.server.key_path,
        ca = pki.ca.cert_path,
        self_thumb = pki.self_signed.x5t_s256(),
        basic = common::sha256_hex(b"0123456789abcdef"),
    );
    Server::start(Config::from_toml_str(&config).unwrap()).await.unwrap()
}

/// `POST /token` over a TLS connection presenting `cert` (or none).
async fn token(
    pki: &Pki,
    server: &ServerHandle,
    cert: Option<&Leaf>,
    form: &[(&str, &str)],
    headers: &[(&str, String)],
) -> Answer {
    let config = match cert {
        Some(c) => c.client_config(&pki.ca, &[&TLS13]),
        None => pki.anonymous_client(&[&TLS13]),
    };
    let mut conn = tls_connect(config, server.public_addr()).await.unwrap();
    let mut pairs = vec![("grant_type", "client_credentials")];
    pairs.extend_from_slice(form);
    let mut h = vec![("content-type", "application/x-www-form-urlencoded".to_owned())];
    h.extend_from_slice(headers);
    conn.send(Method::POST, "/token", &h, Some(serde_urlencoded::to_string(&pairs).unwrap())).await.unwrap()
}

/// A protected API: the real verifier, the client certificate from the
/// TLS connection (via `mtls::peer_certificate_der`) or from a trusted
/// proxy's header, and the SPIFFE check for SPIFFE subjects.
struct Api {
    tls_addr: SocketAddr,
    proxied_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn handle(
    verifier: &Verifier,
    source: &ClientCertSource,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls_cert: Option<&[u8]>,
) -> Result<Value, Rejection> {
    let cert = source.client_certificate(peer.ip(), req.headers(), tls_cert)?;
    let url = format!("{API}{}", req.uri().path());
    let presented = PresentedRequest::from_http(req.method(), &url, req.headers(), cert.as_ref())?;
    let cap = verifier.verify(&presented).await?;
    if cap.sub.starts_with("spiffe://") {
        let der = cert.as_ref().and_then(|c| c.der()).ok_or(Rejection::MissingCredentials)?;
        require_spiffe_sub(der, &cap.sub)?;
    }
    Ok(json!({"sub": cap.sub, "remaining": cap.remaining}))
}

fn respond(verifier: &Verifier, r: Result<Value, Rejection>) -> Response<Full<Bytes>> {
    match r {
        Ok(v) => Response::new(Full::new(Bytes::from(v.to_string()))),
        Err(rejection) => verifier.reject(&rejection).map(|()| Full::new(Bytes::new())),
    }
}

async fn api(pki: &Pki, issuer: &ServerHandle) -> Api {
    let mut jwks = tls_connect(pki.anonymous_client(&[&TLS13]), issuer.public_addr()).await.unwrap();
    let jwks = jwks.get("/.well-known/jwks.json").await.unwrap();
    let keys = StaticKeys::new(Jwks::from_json(&jwks.body).unwrap()).unwrap();
    let verifier = Arc::new(Verifier::new(
        VerifierSettings::new(&issuer.urls().issuer, API),
        Arc::new(keys),
        Arc::new(MemoryStore::default()),
    ));

    // Terminates TLS itself; the only trusted proxy is elsewhere, so a
    // certificate header from a client here is ignored.
    let acceptor = TlsAcceptor::new(TlsSettings {
        config: TlsConfig {
            cert: pki.server.cert_path.clone(),
            key: pki.server.key_path.clone(),
            client_ca: Some(pki.ca.cert_path.clone()),
            client_auth: ClientCertMode::Optional,
            tls12: false,
            chacha20: false,
            reload_interval: None,
        },
        self_signed: vec![openssl::sha::sha256(&pki.self_signed.der)],
    })
    .unwrap();
    let elsewhere = TrustedProxies::parse(["192.0.2.1"]).unwrap();
    let direct =
        Arc::new(ClientCertSource::behind_proxy(elsewhere, CERT_HEADER, CertHeaderFormat::EscapedPem).unwrap());
    let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = tls_listener.local_addr().unwrap();
    let v = Arc::clone(&verifier);
    let tls_task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = tls_listener.accept().await else { return };
            let (acceptor, v, source) = (acceptor.clone(), Arc::clone(&v), Arc::clone(&direct));
            tokio::spawn(async move {
                let Ok((tls, _info)) = acceptor.accept(tcp, peer).await else { return };
                let cert = ekey_verifier::mtls::peer_certificate_der(&tls).map(<[u8]>::to_vec);
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (v, source, cert) = (Arc::clone(&v), Arc::clone(&source), cert.clone());
                    async move {
                        let r = handle(&v, &source, req, peer, cert.as_deref()).await;
                        Ok::<_, Infallible>(respond(&v, r))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });

    // Behind a TLS-terminating proxy on 127.0.0.1: the header is believed.
    let proxy = TrustedProxies::parse(["127.0.0.1"]).unwrap();
    let proxied = Arc::new(ClientCertSource::behind_proxy(proxy, CERT_HEADER, CertHeaderFormat::EscapedPem).unwrap());
    let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxied_addr = plain_listener.local_addr().unwrap();
    let plain_task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = plain_listener.accept().await else { return };
            let (v, source) = (Arc::clone(&verifier), Arc::clone(&proxied));
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (v, source) = (Arc::clone(&v), Arc::clone(&source));
                    async move {
                        let r = handle(&v, &source, req, peer, None).await;
                        Ok::<_, Infallible>(respond(&v, r))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    Api { tls_addr, proxied_addr, tasks: vec![tls_task, plain_task] }
}

impl Api {
    /// `POST /payments/7` over TLS with `cert` (or none), `Bearer token`, and extra headers.
    async fn call(&self, pki: &Pki, cert: Option<&Leaf>, token: &str, extra: &[(&str, String)]) -> Answer {
        let mut h = vec![("authorization", format!("Bearer {token}"))];
        h.extend_from_slice(extra);
        self.call_with(pki, cert, &h).await
    }

    async fn call_with(&self, pki: &Pki, cert: Option<&Leaf>, headers: &[(&str, String)]) -> Answer {
        let config = match cert {
            Some(c) => c.client_config(&pki.ca, &[&TLS13]),
            None => pki.anonymous_client(&[&TLS13]),
        };
        let mut conn = tls_connect(config, self.tls_addr).await.unwrap();
        conn.send(Method::POST, "/payments/7", headers, None).await.unwrap()
    }

    /// The same through the "proxy": plain HTTP from 127.0.0.1 with the certificate header.
    async fn call_proxied(&self, token: &str, cert_header: Option<String>) -> Answer {
        let mut h = vec![("authorization", format!("Bearer {token}"))];
        if let Some(c) = cert_header {
            h.push((CERT_HEADER, c));
        }
        common::send(Method::POST, &format!("http://{}/payments/7", self.proxied_addr), &h, None).await
    }
}

fn escaped_pem(leaf: &Leaf) -> String {
    percent_encoding::utf8_percent_encode(&leaf.cert_pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn claims(answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    dangerous::decode_unverified(&token).unwrap().1
}

fn www_authenticate(a: &Answer) -> &str {
    a.header("www-authenticate").unwrap_or_default()
}

#[tokio::test]
async fn spiffe_client_gets_a_certificate_bound_token_that_only_its_certificate_can_use() {
    bounded(async {
        let pki = Pki::new();
        let server = issuer(&pki).await;
        let api = api(&pki, &server).await;

        let meta = tls_connect(pki.anonymous_client(&[&TLS13]), server.public_addr())
            .await
            .unwrap()
            .get("/.well-known/oauth-authorization-server")
            .await
            .unwrap()
            .json();
        assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
        assert!(meta["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("tls_client_auth")));

        // A thumbprint in the body is never used: the binding comes from the TLS session.
        let form = [
            ("client_id", SPIFFE_ID),
            ("scope", "payments.mtls"),
            ("x5t#S256", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ("cnf", "{\"x5t#S256\":\"AAAA\"}"),
        ];
        let issued = token(&pki, &server, Some(&pki.spiffe), &form, &[]).await;
        let body = issued.json();
        assert_eq!(body["token_type"], "Bearer", "{body}");
        let c = claims(&issued);
        assert_eq!(c["sub"], SPIFFE_ID);
        assert_eq!(c["cnf"], json!({"x5t#S256": pki.spiffe.x5t_s256()}));
        assert_eq!(c["cnf"]["x5t#S256"], openssl_x5t_s256(&pki.spiffe.cert_path), "differs from the openssl CLI");
        let token_str = body["access_token"].as_str().unwrap().to_owned();

        // The right certificate: accepted (and the SPIFFE ID matches sub).
        let ok = api.call(&pki, Some(&pki.spiffe), &token_str, &[]).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);
        assert_eq!(ok.json()["sub"], SPIFFE_ID);
        // Another certificate, no certificate: invalid_token.
        for (what, cert) in [("another certificate", Some(&pki.client)), ("no certificate", None)] {
            let a = api.call(&pki, cert, &token_str, &[]).await;
            assert_eq!(a.status, 401, "{what}");
            assert!(www_authenticate(&a).contains("invalid_token"), "{what}: {}", www_authenticate(&a));
        }
        // The right certificate in a header from an untrusted address: ignored.
        let spoofed = api.call(&pki, None, &token_str, &[(CERT_HEADER, escaped_pem(&pki.spiffe))]).await;
        assert_eq!(spoofed.status, 401);
        assert!(www_authenticate(&spoofed).contains("invalid_token"));
        // As DPoP: refused, the token is certificate-bound.
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let url = format!("{API}/payments/7");
        let proof = key.proof("POST", &url, Some(&token_str), None, common::now()).unwrap();
        let dpop = api
            .call_with(&pki, Some(&pki.spiffe), &[("authorization", format!("DPoP {token_str}")), ("dpop", proof)])
            .await;
        assert_eq!(dpop.status, 401);

        // Through the trusted proxy: the header carries the certificate.
        let proxied = api.call_proxied(&token_str, Some(escaped_pem(&pki.spiffe))).await;
        assert_eq!(proxied.status, 200, "{:?}", proxied.body);
        let wrong = api.call_proxied(&token_str, Some(escaped_pem(&pki.client))).await;
        assert_eq!(wrong.status, 401);
        assert_eq!(api.call_proxied(&token_str, None).await.status, 401);
        assert_eq!(api.call_proxied(&token_str, Some("garbage".into())).await.status, 401);

        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn self_signed_client_and_subject_dn_client() {
    bounded(async {
        let pki = Pki::new();
        let server = issuer(&pki).await;
        let api = api(&pki, &server).await;

        let issued =
            token(&pki, &server, Some(&pki.self_signed), &[("client_id", "self"), ("scope", "payments.any")], &[])
                .await;
        let c = claims(&issued);
        assert_eq!(
            (c["sub"].as_str(), c["cnf"]["x5t#S256"].as_str()),
            (Some("self"), Some(pki.self_signed.x5t_s256().as_str()))
        );
        assert_eq!(c["cnf"]["x5t#S256"], openssl_x5t_s256(&pki.self_signed.cert_path));
        let t = issued.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(api.call(&pki, Some(&pki.self_signed), &t, &[]).await.status, 200);
        assert_eq!(api.call(&pki, Some(&pki.client), &t, &[]).await.status, 401);
        assert_eq!(api.call(&pki, None, &t, &[]).await.status, 401);

        // Subject DN registration.
        let issued =
            token(&pki, &server, Some(&pki.client), &[("client_id", "client-dn"), ("scope", "payments.mtls")], &[])
                .await;
        assert_eq!(claims(&issued)["cnf"]["x5t#S256"], pki.client.x5t_s256());

        // A DPoP header on an mTLS connection binds to the DPoP key instead;
        // an mtls-only template then refuses.
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let htu = server.urls().token_endpoint.clone();
        let proof = || key.proof("POST", &htu, None, None, common::now()).unwrap();
        let dpop = token(
            &pki,
            &server,
            Some(&pki.client),
            &[("client_id", "client-dn"), ("scope", "payments.any")],
            &[("dpop", proof())],
        )
        .await;
        assert_eq!(dpop.json()["token_type"], "DPoP");
        assert_eq!(claims(&dpop)["cnf"], json!({"jkt": key.thumbprint()}));
        let refused = token(
            &pki,
            &server,
            Some(&pki.client),
            &[("client_id", "client-dn"), ("scope", "payments.mtls")],
            &[("dpop", proof())],
        )
        .await;
        assert_eq!((refused.status.as_u16(), refused.error().as_str()), (400, "invalid_scope"));
        assert!(refused.json()["error_description"].as_str().unwrap().contains("mTLS"), "{:?}", refused.body);

        // Certificate clients need their certificate; wrong certificates fail.
        for (cert, id) in [
            (None, SPIFFE_ID),
            (Some(&pki.client), SPIFFE_ID),
            (Some(&pki.spiffe), "client-dn"),
            (Some(&pki.client), "self"),
            (Some(&pki.client), "nobody"),
        ] {
            let a = token(&pki, &server, cert, &[("client_id", id), ("scope", "payments.mtls")], &[]).await;
            assert_eq!(
                (a.status.as_u16(), a.error().as_str()),
                (401, "invalid_client"),
                "{id} with {:?}",
                cert.map(|c| &c.cert_path)
            );
        }
        // A secret client over mTLS without DPoP: bound to the certificate.
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "basic:0123456789abcdef")
        );
        let a =
            token(&pki, &server, Some(&pki.client2), &[("scope", "payments.any")], &[("authorization", basic.clone())])
                .await;
        assert_eq!(claims(&a)["cnf"]["x5t#S256"], pki.client2.x5t_s256());
        // …and without a certificate or DPoP, no token.
        let a = token(&pki, &server, None, &[("scope", "payments.any")], &[("authorization", basic)]).await;
        assert_eq!(a.status, 400);
        server.shutdown().await;
    })
    .await;
}
