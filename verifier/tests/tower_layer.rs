//! The tower layer and the axum extractor: an accepted request reaches the
//! handler with its capability; each rejection class is answered by the layer
//! with its status and `WWW-Authenticate`, and never reaches the handler.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use common::{Issuer, AUDIENCE, ISSUER, NOW};
use ekey_verifier::client::DpopKey;
use ekey_verifier::mtls::{CertHeaderFormat, ClientCertSource, TrustedProxies};
use ekey_verifier::tower::{PeerAddr, VerifyLayer};
use ekey_verifier::{
    Algorithm, ConsumeOutcome, ConsumeRequest, DpopSettings, ExternalUrl, ExternalUrlSettings, ManualClock,
    MemoryStore, NonceSource, StaticKeys, StoreError, UsageStore, VerifiedCapability, Verifier, VerifierSettings,
};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

const NONCE_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// How many times a handler ran: a refused request must leave it at zero.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

struct Fixture {
    issuer: Issuer,
    client: DpopKey,
    app: Router,
    calls: Calls,
}

#[derive(Debug)]
struct DownStore;

#[async_trait::async_trait]
impl UsageStore for DownStore {
    async fn consume(&self, _: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn revoke_trace(&self, _: &str, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

fn fixture_with(store: Arc<dyn UsageStore>, nonces: bool, external: ExternalUrlSettings) -> Fixture {
    fixture_certs(store, nonces, external, ClientCertSource::direct())
}

fn fixture_certs(
    store: Arc<dyn UsageStore>,
    nonces: bool,
    external: ExternalUrlSettings,
    certs: ClientCertSource,
) -> Fixture {
    let issuer = Issuer::new();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let mut settings = VerifierSettings::new(ISSUER, AUDIENCE);
    if nonces {
        settings.dpop = DpopSettings { nonce: Some(NonceSource::new(NONCE_SECRET, 60).unwrap()), ..Default::default() };
    }
    let keys = Arc::new(StaticKeys::new(issuer.jwks()).unwrap());
    let verifier = Verifier::with_clock(settings, keys, store, Arc::new(ManualClock::new(NOW)));
    let calls = Calls::default();
    let c = calls.clone();
    let handler = move |cap: VerifiedCapability| {
        let c = c.clone();
        async move {
            c.0.fetch_add(1, Ordering::SeqCst);
            format!("{}|{}|{}|{}", cap.sub, cap.action, cap.used, cap.remaining)
        }
    };
    let app = Router::new()
        .route("/payments/{id}", post(handler.clone()))
        .route("/reports", get(handler))
        .layer(VerifyLayer::new(Arc::new(verifier), ExternalUrl::new(&external).unwrap()).client_certs(certs));
    Fixture { issuer, client, app, calls }
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(MemoryStore::default()), false, ExternalUrlSettings::default())
}

/// A request to `https://api.test{path}` as a client that reached the
/// service directly: `Host: api.test` on an (assumed) TLS listener is
/// emulated with a public base URL in these tests where needed.
fn request(method: &str, path: &str, auth: Option<String>, proof: Option<String>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path).header("host", "api.test");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    if let Some(p) = proof {
        b = b.header("dpop", p);
    }
    let mut req = b.body(Body::empty()).unwrap();
    req.extensions_mut().insert(PeerAddr("192.0.2.10:5555".parse().unwrap()));
    req
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let res: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

fn www(h: &http::HeaderMap) -> String {
    h.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The base URL the tests' client uses: the audience, an https origin.
fn public() -> ExternalUrlSettings {
    ExternalUrlSettings { public_base_url: Some(AUDIENCE.into()), ..Default::default() }
}

fn dpop_request(f: &Fixture, token: &str, method: &str, path: &str) -> Request<Body> {
    let proof = f.client.proof(method, &format!("{AUDIENCE}{path}"), Some(token), None, NOW).unwrap();
    request(method, path, Some(format!("DPoP {token}")), Some(proof))
}

#[tokio::test]
async fn accepted_request_reaches_the_handler_with_its_capability() {
    let f = fixture_with(Arc::new(MemoryStore::default()), false, public());
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 2);
    let (status, _, body) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/42")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "client-1|POST:/payments/:id|1|1");
    let (_, _, body) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/42")).await;
    assert_eq!(body, "client-1|POST:/payments/:id|2|0");
    assert_eq!(f.calls.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn each_rejection_class_gets_its_answer_and_never_reaches_the_handler() {
    let f = fixture_with(Arc::new(MemoryStore::default()), false, public());
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 2);
    let url = format!("{AUDIENCE}/payments/1");

    // No credentials: 401 with a bare challenge.
    let (s, h, _) = send(&f.app, request("POST", "/payments/1", None, None)).await;
    assert_eq!((s, www(&h)), (StatusCode::UNAUTHORIZED, "DPoP algs=\"ES256 ES384 EdDSA PS256\"".to_owned()));

    // Token signed by another key: invalid_token.
    let stranger = Issuer::new().token(&f.client, "POST:/payments/:id", 1);
    let (s, h, _) = send(&f.app, dpop_request(&f, &stranger, "POST", "/payments/1")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("error=\"invalid_token\""), "{}", www(&h));

    // Proof for another URL: invalid_dpop_proof.
    let proof = f.client.proof("POST", "https://api.test/payments/2", Some(&token), None, NOW).unwrap();
    let (s, h, _) = send(&f.app, request("POST", "/payments/1", Some(format!("DPoP {token}")), Some(proof))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("error=\"invalid_dpop_proof\""), "{}", www(&h));

    // DPoP-bound token without the DPoP scheme: invalid_token (no downgrade).
    let proof = f.client.proof("POST", &url, Some(&token), None, NOW).unwrap();
    let (s, h, _) = send(&f.app, request("POST", "/payments/1", Some(format!("Bearer {token}")), Some(proof))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("error=\"invalid_token\""), "{}", www(&h));

    // Capability for another action: 403 insufficient_scope.
    let (s, h, _) = send(&f.app, dpop_request(&f, &token, "GET", "/reports")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(www(&h).contains("error=\"insufficient_scope\""), "{}", www(&h));

    // Replay of an accepted proof, then the limit: both refused.
    let proof = f.client.proof("POST", &url, Some(&token), None, NOW).unwrap();
    let auth = format!("DPoP {token}");
    let (s, _, _) = send(&f.app, request("POST", "/payments/1", Some(auth.clone()), Some(proof.clone()))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, _) = send(&f.app, request("POST", "/payments/1", Some(auth.clone()), Some(proof))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("error=\"invalid_dpop_proof\""), "{}", www(&h));
    let (s, _, _) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/1")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, _) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/1")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("usage limit"), "{}", www(&h));
    assert!(www(&h).contains("error=\"invalid_token\""), "{}", www(&h));
    assert_eq!(h["cache-control"], "no-store");

    assert_eq!(f.calls.0.load(Ordering::SeqCst), 2, "only the two accepted requests reached the handler");
}

#[tokio::test]
async fn nonce_required_answers_use_dpop_nonce_with_a_nonce() {
    let f = fixture_with(Arc::new(MemoryStore::default()), true, public());
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 1);
    let (s, h, _) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/9")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("error=\"use_dpop_nonce\""), "{}", www(&h));
    let nonce = h["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(nonce, NonceSource::new(NONCE_SECRET, 60).unwrap().current(NOW));
    let proof = f.client.proof("POST", &format!("{AUDIENCE}/payments/9"), Some(&token), Some(&nonce), NOW).unwrap();
    let (s, _, body) = send(&f.app, request("POST", "/payments/9", Some(format!("DPoP {token}")), Some(proof))).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "client-1|POST:/payments/:id|1|0"));
}

#[tokio::test]
async fn store_down_is_503_with_retry_after_and_fails_closed() {
    let f = fixture_with(Arc::new(DownStore), false, public());
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 1);
    let (s, h, _) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/1")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["retry-after"], "1");
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(f.calls.0.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_host_is_400() {
    let f = fixture();
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 1);
    let mut req = dpop_request(&f, &token, "POST", "/payments/1");
    req.headers_mut().remove("host");
    let (s, _, _) = send(&f.app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn route_without_the_layer_is_500_not_open() {
    let app = Router::new().route("/x", get(|cap: VerifiedCapability| async move { cap.sub }));
    let (s, _, _) = send(&app, request("GET", "/x", None, None)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
}

/// Over real TCP with axum's `ConnectInfo`: forwarding headers are believed
/// from a trusted proxy (here: loopback) and ignored from anyone else.
#[tokio::test]
async fn forwarded_headers_only_from_trusted_peers_over_tcp() {
    for (trusted, expect_ok) in [(vec!["127.0.0.1/32".to_owned()], true), (vec!["10.0.0.0/8".to_owned()], false)] {
        let ext = ExternalUrlSettings { trusted_proxies: trusted, ..Default::default() };
        let f = fixture_with(Arc::new(MemoryStore::default()), false, ext);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = f.app.clone().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let token = f.issuer.token(&f.client, "POST:/payments/:id", 1);
        // The client addressed https://api.test/payments/5; the proxy forwards to us.
        let proof = f.client.proof("POST", "https://api.test/payments/5", Some(&token), None, NOW).unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method("POST")
            .uri("/payments/5")
            .header("host", addr.to_string())
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.test")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let www = www(res.headers());
        if expect_ok {
            assert_eq!(status, StatusCode::OK);
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(www.contains("invalid_dpop_proof"), "{www}");
        }
        assert_eq!(f.calls.0.load(Ordering::SeqCst), usize::from(expect_ok));
        server.abort();
    }
}

/// Certificate-bound tokens: the layer takes the client certificate from
/// the `PeerCertificate` extension that the TLS acceptor inserts.
#[tokio::test]
async fn certificate_bound_token_uses_the_peer_certificate_extension() {
    use ekey_verifier::tower::PeerCertificate;
    use ekey_verifier::{sha256_b64, Confirmation};
    let f = fixture_with(Arc::new(MemoryStore::default()), false, public());
    // The verifier compares SHA-256 of the DER; these bytes stand in for one.
    let der: Arc<[u8]> = Arc::from(&b"client certificate DER"[..]);
    let mut claims = f.issuer.claims("unused", "POST:/payments/:id", 5);
    claims.cnf = Confirmation::X5tS256(sha256_b64(&der[..]));
    let token = f.issuer.sign(&claims);
    let call = |cert: Option<Arc<[u8]>>| {
        let mut req = request("POST", "/payments/1", Some(format!("Bearer {token}")), None);
        if let Some(c) = cert {
            req.extensions_mut().insert(PeerCertificate(c));
        }
        send(&f.app, req)
    };
    let (s, _, body) = call(Some(der.clone())).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "client-1|POST:/payments/:id|1|4"));
    let (s, h, _) = call(None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("without a client certificate"), "{}", www(&h));
    let (s, _, _) = call(Some(Arc::from(&b"another certificate"[..]))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(f.calls.0.load(Ordering::SeqCst), 1);
}

/// Behind a TLS-terminating proxy: the certificate from the proxy's header
/// (here Envoy's XFCC with only `Hash=`), believed only from its address.
#[tokio::test]
async fn certificate_header_only_from_the_trusted_proxy() {
    use ekey_verifier::{b64_encode, Confirmation};
    let proxies = TrustedProxies::parse(["192.0.2.0/24"]).unwrap();
    let certs = ClientCertSource::behind_proxy(proxies, "x-forwarded-client-cert", CertHeaderFormat::Xfcc).unwrap();
    let f = fixture_certs(Arc::new(MemoryStore::default()), false, public(), certs);
    let digest = openssl::sha::sha256(b"client certificate DER");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut claims = f.issuer.claims("unused", "POST:/payments/:id", 5);
    claims.cnf = Confirmation::X5tS256(b64_encode(digest));
    let token = f.issuer.sign(&claims);
    let xfcc = format!("By=spiffe://proxy;Hash={hex}");
    let call = |peer: &str| {
        let mut req = request("POST", "/payments/1", Some(format!("Bearer {token}")), None);
        req.headers_mut().insert("x-forwarded-client-cert", xfcc.parse().unwrap());
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        send(&f.app, req)
    };
    // The fixture's requests come from 192.0.2.10: a trusted proxy.
    let (s, _, body) = call("192.0.2.10:4000").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "client-1|POST:/payments/:id|1|4"));
    // The same header from anyone else is ignored: no certificate.
    let (s, h, _) = call("198.51.100.7:4000").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www(&h).contains("without a client certificate"), "{}", www(&h));
    assert_eq!(f.calls.0.load(Ordering::SeqCst), 1);
}

/// A trusted proxy passes on a client's `X-Forwarded-Prefix`: the layer
/// must not let it move the checked path onto the token's capability. The
/// path matched is the one the router routes (`/42` here, which the token
/// does not cover), and the prefix does not even change the URL the proof
/// must name unless the embedder turns that on.
#[tokio::test]
async fn a_forwarded_prefix_never_moves_the_matched_path() {
    // The fixture's requests come from 192.0.2.10: a trusted proxy here.
    let ext = ExternalUrlSettings { trusted_proxies: vec!["192.0.2.0/24".into()], ..Default::default() };
    let f = fixture_with(Arc::new(MemoryStore::default()), false, ext);
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 5);
    let call = |htu: &str| {
        let proof = f.client.proof("POST", htu, Some(&token), None, NOW).unwrap();
        let mut req = request("POST", "/42", Some(format!("DPoP {token}")), Some(proof));
        req.headers_mut().insert("x-forwarded-prefix", "/payments".parse().unwrap());
        send(&f.app, req)
    };
    // The prefix is not believed: the proof for the prefixed URL fails...
    let (s, h, _) = call("http://api.test/payments/42").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{}", www(&h));
    assert!(www(&h).contains("invalid_dpop_proof"), "{}", www(&h));
    // ...and with a proof for the URL as sent, /42 is outside the capability.
    let (s, h, _) = call("http://api.test/42").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{}", www(&h));
    assert_eq!(f.calls.0.load(Ordering::SeqCst), 0);

    // Turned on, the prefix is part of the URL the proof names, and still
    // not of the path the capability is matched on.
    let ext = ExternalUrlSettings {
        trusted_proxies: vec!["192.0.2.0/24".into()],
        trust_forwarded_prefix: true,
        ..Default::default()
    };
    let f = fixture_with(Arc::new(MemoryStore::default()), false, ext);
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 5);
    let proof = f.client.proof("POST", "http://api.test/payments/42", Some(&token), None, NOW).unwrap();
    let mut req = request("POST", "/42", Some(format!("DPoP {token}")), Some(proof));
    req.headers_mut().insert("x-forwarded-prefix", "/payments".parse().unwrap());
    let (s, h, _) = send(&f.app, req).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{}", www(&h));
    assert!(www(&h).contains("insufficient_scope"), "{}", www(&h));
    // A real prefix: /v1 in the URL, /payments/42 routed.
    let proof = f.client.proof("POST", "http://api.test/v1/payments/42", Some(&token), None, NOW).unwrap();
    let mut req = request("POST", "/payments/42", Some(format!("DPoP {token}")), Some(proof));
    req.headers_mut().insert("x-forwarded-prefix", "/v1".parse().unwrap());
    let (s, _, body) = send(&f.app, req).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "client-1|POST:/payments/:id|1|4"));
}

/// The layer refuses a path that is not in normal form with 400 before the
/// router sees it, and spends nothing.
#[tokio::test]
async fn a_path_not_in_normal_form_is_400_at_the_layer() {
    let f = fixture_with(Arc::new(MemoryStore::default()), false, public());
    let token = f.issuer.token(&f.client, "POST:/payments/:id", 1);
    for path in ["/admin/x/../../payments/42", "/payments/42%2F..%2Fadmin", "/payments/4%002", "/payments//42"] {
        let (s, h, _) = send(&f.app, dpop_request(&f, &token, "POST", path)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert!(www(&h).contains("error=\"invalid_request\""), "{path}: {}", www(&h));
    }
    let (s, _, body) = send(&f.app, dpop_request(&f, &token, "POST", "/payments/42")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "client-1|POST:/payments/:id|1|0"));
}
