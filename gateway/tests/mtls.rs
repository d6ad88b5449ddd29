//! Certificate-bound tokens through the gateway: the client certificate comes
//! from the proxy's header (Envoy XFCC, nginx escaped PEM), believed only
//! from a trusted proxy.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod support;

use ekey_verifier::{mtls::x5t_s256, Confirmation};
use http::StatusCode;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use support::{send, Gateway, GatewayOptions, Issuer};

const AUDIENCE: &str = "https://api.test";

struct Cert {
    der: Vec<u8>,
    pem: String,
}

fn cert(name: &str) -> Cert {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    Cert { der: c.cert.der().to_vec(), pem: c.cert.pem() }
}

fn xfcc(c: &Cert) -> String {
    let hash: String = openssl::sha::sha256(&c.der).iter().map(|b| format!("{b:02x}")).collect();
    format!("By=spiffe://proxy;Hash={hash};Cert=\"{}\"", utf8_percent_encode(&c.pem, NON_ALPHANUMERIC))
}

async fn call(gw: &Gateway, token: &str, path: &str, extra: &[(&str, &str)]) -> support::Answer {
    let auth = format!("Bearer {token}");
    let mut h = vec![("authorization", auth.as_str())];
    h.extend_from_slice(extra);
    send(gw.addr, "POST", path, &h).await.unwrap()
}

#[tokio::test]
async fn envoy_xfcc_from_trusted_proxy_binds_the_token() {
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions {
        client_cert: Some(("x-forwarded-client-cert", "xfcc")),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let (mine, other) = (cert("client-a"), cert("client-b"));
    let token =
        issuer.token_bound(Confirmation::X5tS256(x5t_s256(&mine.der)), AUDIENCE, "POST:/payments/:id", 5).unwrap();

    let ok = call(&gw, &token, "/envoy/payments/1", &[("x-forwarded-client-cert", &xfcc(&mine))]).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(ok.header("x-ekey-sub"), "client-1");

    let wrong = call(&gw, &token, "/envoy/payments/1", &[("x-forwarded-client-cert", &xfcc(&other))]).await;
    assert_eq!((wrong.status, wrong.header("x-ekey-reason")), (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let none = call(&gw, &token, "/envoy/payments/1", &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let garbage = call(&gw, &token, "/envoy/payments/1", &[("x-forwarded-client-cert", "Cert=\"nope\"")]).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn certificate_header_from_untrusted_peer_is_ignored() {
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions {
        client_cert: Some(("x-forwarded-client-cert", "xfcc")),
        ..GatewayOptions::new(AUDIENCE, &["192.0.2.0/24"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let mine = cert("client-a");
    let token =
        issuer.token_bound(Confirmation::X5tS256(x5t_s256(&mine.der)), AUDIENCE, "POST:/payments/:id", 5).unwrap();
    let ans = call(&gw, &token, "/envoy/payments/1", &[("x-forwarded-client-cert", &xfcc(&mine))]).await;
    assert_eq!(ans.status, StatusCode::UNAUTHORIZED, "{ans:?}");
    assert!(ans.header("www-authenticate").contains("without a client certificate"), "{ans:?}");
}

#[tokio::test]
async fn nginx_escaped_pem_header() {
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions {
        client_cert: Some(("x-ssl-client-cert", "escaped_pem")),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let mine = cert("client-a");
    let token =
        issuer.token_bound(Confirmation::X5tS256(x5t_s256(&mine.der)), AUDIENCE, "POST:/payments/:id", 5).unwrap();
    let escaped = utf8_percent_encode(&mine.pem, NON_ALPHANUMERIC).to_string();
    let h = [
        ("x-original-method", "POST"),
        ("x-original-uri", "/payments/3"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.test"),
        ("x-ssl-client-cert", escaped.as_str()),
    ];
    let ans = call(&gw, &token, "/nginx", &h).await;
    assert_eq!(ans.status, StatusCode::OK, "{ans:?}");
    // A DPoP-scheme presentation of a certificate-bound token is refused.
    let auth = format!("DPoP {token}");
    let mut h2 = vec![("authorization", auth.as_str())];
    h2.extend_from_slice(&h);
    let ans = send(gw.addr, "POST", "/nginx", &h2).await.unwrap();
    assert_eq!(ans.status, StatusCode::UNAUTHORIZED, "{ans:?}");
}
