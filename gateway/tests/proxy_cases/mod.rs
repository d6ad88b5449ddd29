//! The cases every reverse proxy must pass with ekey-gateway behind it,
//! driven by real DPoP requests through the real proxy.

use crate::support::{dpop_call, send, send_raw, Gateway, GatewayOptions, Issuer, Proxy, ProxyKind, Upstream};
use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::StatusCode;

pub const AUDIENCE: &str = "https://api.test";
const ACTION: &str = "POST:/payments/:id";

pub struct Stack {
    pub issuer: Issuer,
    #[allow(dead_code)] // kept alive for the stack's lifetime
    pub gateway: Gateway,
    pub upstream: Upstream,
    pub proxy: Proxy,
    pub client: DpopKey,
}

impl Stack {
    pub async fn start(kind: ProxyKind, nonces: bool) -> Stack {
        Self::start_with(kind, GatewayOptions { nonces, ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) }).await
    }

    pub async fn start_with(kind: ProxyKind, opts: GatewayOptions<'_>) -> Stack {
        let issuer = Issuer::new().unwrap();
        let gateway = Gateway::start(&issuer, &opts).await.unwrap();
        let upstream = Upstream::start(true).await.unwrap();
        let proxy = Proxy::start(kind, gateway.addr, upstream.addr).unwrap();
        let client = DpopKey::generate(Algorithm::ES256).unwrap();
        Stack { issuer, gateway, upstream, proxy, client }
    }

    /// The URL the client uses: the proxy's.
    pub fn external(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy.port)
    }

    pub fn token(&self, limit: u32) -> String {
        self.issuer.token(&self.client, AUDIENCE, ACTION, limit).unwrap()
    }
}

/// Accepted with identity headers upstream; a proof naming the internal
/// upstream URL refused (htu is the external URL); replay refused; the limit
/// enforced; nothing refused reaches the upstream.
pub async fn accepted_replay_exhausted(kind: ProxyKind) {
    let s = Stack::start(kind, false).await;
    let token = s.token(2);
    let at = s.proxy.addr();

    let internal = format!("http://{}/payments/42", s.upstream.addr);
    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/42", &internal, None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?} {}", s.proxy.log_text());
    assert!(a.header("www-authenticate").contains("invalid_dpop_proof"), "{a:?}");
    assert_eq!(a.header("x-ekey-reason"), "invalid_proof");
    assert_eq!(s.upstream.count(), 0);

    let url = s.external("/payments/42");
    let (a, proof) = dpop_call(at, &s.client, &token, "POST", "/payments/42", &url, None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?} {}", s.proxy.log_text());
    assert_eq!(a.body, "upstream");
    let seen = s.upstream.last().unwrap();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/payments/42"));
    assert_eq!(seen.headers["x-ekey-sub"], "client-1");
    assert_eq!(seen.headers["x-ekey-action"], ACTION);
    assert_eq!(seen.headers["x-ekey-remaining"], "1");
    assert_eq!(seen.headers["x-ekey-trace"].len(), 22, "a 128-bit base64url trace");

    // The same proof again.
    let auth = format!("DPoP {token}");
    let a = send(at, "POST", "/payments/42", &[("authorization", &auth), ("dpop", &proof)]).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert!(a.header("www-authenticate").contains("invalid_dpop_proof"), "{a:?}");
    assert_eq!(a.header("x-ekey-reason"), "replay_blocked");

    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/42", &url, None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(s.upstream.last().unwrap().headers["x-ekey-remaining"], "0");

    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/42", &url, None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert!(a.header("www-authenticate").contains("invalid_token"), "{a:?}");
    assert_eq!(a.header("x-ekey-reason"), "exhausted");

    // Outside the capability: 403.
    let (a, _) =
        dpop_call(at, &s.client, &s.token(1), "GET", "/reports", &s.external("/reports"), None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    // No credentials at all: 401 with a challenge.
    let a = send(at, "POST", "/payments/42", &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.header("www-authenticate").starts_with("DPoP algs="), "{a:?}");
    assert_eq!(s.upstream.count(), 2, "only the two accepted requests reached the upstream");
}

/// With nonces on, the gateway's `DPoP-Nonce` reaches the client, and a
/// retry with it goes through.
pub async fn nonce_reaches_client(kind: ProxyKind) {
    let s = Stack::start(kind, true).await;
    let token = s.token(1);
    let url = s.external("/payments/7");
    let at = s.proxy.addr();
    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/7", &url, None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert!(a.header("www-authenticate").contains("use_dpop_nonce"), "{a:?}");
    let nonce = a.header("dpop-nonce");
    assert!(!nonce.is_empty(), "DPoP-Nonce must reach the client: {a:?}");
    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/7", &url, Some(&nonce), &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(s.upstream.count(), 1);
}

/// What a client says about the original request or its identity is
/// overwritten by the proxy or ignored by the gateway.
pub async fn client_cannot_spoof_through_proxy(kind: ProxyKind) {
    let s = Stack::start(kind, false).await;
    let token = s.token(3);
    let at = s.proxy.addr();
    let spoof: &[(&str, &str)] = &[
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=127.0.0.1;host=evil.example;proto=https"),
        ("x-original-uri", "/payments/1"),
        ("x-original-method", "POST"),
        ("x-forwarded-uri", "/payments/1"),
        ("x-forwarded-method", "POST"),
        ("x-ekey-sub", "admin"),
    ];
    // A proof for the URL the client claims is refused...
    let evil = "https://evil.example/payments/42";
    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/42", evil, None, spoof).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    // ...the real one works, and the upstream sees the verified identity.
    let (a, _) = dpop_call(at, &s.client, &token, "POST", "/payments/42", &s.external("/payments/42"), None, spoof)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(s.upstream.last().unwrap().headers["x-ekey-sub"], "client-1");
    // A client-sent prefix cannot move the checked path onto its capability.
    let (a, _) = dpop_call(
        at,
        &s.client,
        &token,
        "POST",
        "/42",
        &s.external("/payments/42"),
        None,
        &[("x-forwarded-prefix", "/payments")],
    )
    .await
    .unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert_eq!(s.upstream.count(), 1);
}

/// The gateway cannot decide (the issuer's JWKS is unreachable: it fails
/// closed with 503): the client gets 503 with `Retry-After` through the proxy
/// — nginx's `auth_request` alone would answer 500 — and nothing reaches the
/// upstream.
pub async fn unavailable_is_503(kind: ProxyKind) {
    let dead = crate::support::free_port().unwrap();
    let opts = GatewayOptions {
        jwks_url: Some(format!("http://127.0.0.1:{dead}/jwks")),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let s = Stack::start_with(kind, opts).await;
    let token = s.token(1);
    let url = s.external("/payments/42");
    let (a, _) = dpop_call(s.proxy.addr(), &s.client, &token, "POST", "/payments/42", &url, None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{a:?} {}", s.proxy.log_text());
    assert_eq!(a.header("retry-after"), "1", "{a:?}");
    assert_eq!(a.header("x-ekey-reason"), "store_unavailable", "{a:?}");
    assert_eq!(s.upstream.count(), 0);
}

/// Request targets that a router may read as another resource than the one
/// the capability names (or as `/payments/:id` when they are not). The
/// gateway can only refuse them because the proxy hands it the raw request
/// target: a cleaned-up one would pass.
pub const HOSTILE_PATHS: &[&str] = &[
    "/admin/x/../../payments/42",
    "/payments/./42",
    "/payments/%2e%2e/payments/42",
    "/payments/.%2E/payments/42",
    "/payments/42%2F..%2Fadmin",
    "/payments/4%002",
    "/payments/42%5C..%5Cadmin",
    "/payments/a\\b",
    "//payments/42",
    "/payments//42",
    "/payments/%34%32",
];

/// Every hostile spelling refused before the upstream — by the gateway
/// with `invalid_path` (400; 403 through nginx, whose `auth_request` passes
/// on only 401 and 403), or by nginx itself for an encoded NUL — and a
/// normal path with an encoded octet checked and forwarded exactly as the
/// client sent it.
pub async fn hostile_paths_refused_raw_path_checked(kind: ProxyKind) {
    let s = Stack::start(kind, false).await;
    let token = s.token(50);
    let at = s.proxy.addr();
    let auth = format!("DPoP {token}");
    for path in HOSTILE_PATHS {
        let expected = match (kind, *path) {
            (ProxyKind::Nginx, "/payments/4%002") => (StatusCode::BAD_REQUEST, ""),
            (ProxyKind::Nginx, _) => (StatusCode::FORBIDDEN, "invalid_path"),
            (ProxyKind::Caddy, _) => (StatusCode::BAD_REQUEST, "invalid_path"),
        };
        // The proof names the URL exactly as the client sent it.
        let proof = s.client.proof("POST", &s.external(path), Some(&token), None, crate::support::now()).unwrap();
        let a = send_raw(at, "POST", path, &[("authorization", &auth), ("dpop", &proof)]).await.unwrap();
        assert_eq!((a.status, a.header("x-ekey-reason").as_str()), expected, "{path}: {a:?}\n{}", s.proxy.log_text());
        assert_eq!(s.upstream.count(), 0, "{path} reached the upstream as {:?}", s.upstream.last().map(|x| x.path));
    }

    // %2C decodes to ',' that neither proxy would escape again: the upstream
    // gets the octets that were checked.
    let path = "/payments/a%2Cb";
    let (a, _) = dpop_call(at, &s.client, &token, "POST", path, &s.external(path), None, &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let seen = s.upstream.last().unwrap();
    assert_eq!((seen.path.as_str(), seen.headers["x-ekey-action"].to_str().unwrap()), (path, ACTION));
}
