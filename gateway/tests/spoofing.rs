//! The gateway spoken to directly: only trusted proxies may say what the
//! original request was (X-Original-*, X-Forwarded-*, Forwarded); from
//! anyone else those headers are ignored and never make a request trusted.
//! Also the Envoy ext_authz dialect (path prefix + original headers).

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod support;

use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::StatusCode;
use support::{dpop_call, send, Gateway, GatewayOptions, Issuer};

const AUDIENCE: &str = "https://api.test";
const ACTION: &str = "POST:/payments/:id";

async fn gateway(trusted: &[&str]) -> (Issuer, Gateway, DpopKey) {
    let issuer = Issuer::new().unwrap();
    let gw = Gateway::start(&issuer, &GatewayOptions::new(AUDIENCE, trusted)).await.unwrap();
    (issuer, gw, DpopKey::generate(Algorithm::ES256).unwrap())
}

#[tokio::test]
async fn untrusted_peer_cannot_name_the_original_request() {
    // Loopback is not a trusted proxy here.
    let (issuer, gw, client) = gateway(&["192.0.2.0/24"]).await;
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let url = "https://api.test/payments/1";
    for (path, headers) in [
        ("/nginx", [("x-original-method", "POST"), ("x-original-uri", "/payments/1")]),
        ("/forward-auth", [("x-forwarded-method", "POST"), ("x-forwarded-uri", "/payments/1")]),
    ] {
        let mut h = headers.to_vec();
        h.extend([("x-forwarded-proto", "https"), ("x-forwarded-host", "api.test")]);
        let (a, _) = dpop_call(gw.addr, &client, &token, "POST", path, url, None, &h).await.unwrap();
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {a:?}");
        assert_eq!(a.header("x-ekey-reason"), "untrusted_peer");
        assert!(a.headers.get("x-ekey-sub").is_none());
    }
    // Envoy: the request's own method and path; forwarded host ignored, so a
    // proof for the claimed URL fails and one for the real Host works.
    let spoof = [("x-forwarded-proto", "https"), ("x-forwarded-host", "api.test"), ("forwarded", "host=api.test")];
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/envoy/payments/1", url, None, &spoof).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert_eq!(a.header("x-ekey-reason"), "invalid_proof");
    let real = format!("http://{}/payments/1", gw.addr);
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/envoy/payments/1", &real, None, &spoof).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.header("x-ekey-sub"), "client-1");
}

#[tokio::test]
async fn trusted_proxy_headers_are_believed() {
    let (issuer, gw, client) = gateway(&["127.0.0.1/32", "::1/128"]).await;
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let url = "https://api.test/payments/1";
    let fwd = [("x-forwarded-proto", "https"), ("x-forwarded-host", "api.test")];

    let mut h = fwd.to_vec();
    h.extend([("x-original-method", "POST"), ("x-original-uri", "/payments/1?x=1")]);
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/nginx", url, None, &h).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        (a.header("x-ekey-sub"), a.header("x-ekey-action"), a.header("x-ekey-remaining")),
        ("client-1".into(), ACTION.into(), "4".into())
    );
    assert_eq!(a.header("x-ekey-trace").len(), 22);

    let mut h = fwd.to_vec();
    h.extend([("x-forwarded-method", "POST"), ("x-forwarded-uri", "/payments/1")]);
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/forward-auth", url, None, &h).await.unwrap();
    assert_eq!((a.status, a.header("x-ekey-remaining")), (StatusCode::OK, "3".into()), "{a:?}");

    // Envoy with the forwarded host and scheme in allowed_headers.
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/envoy/payments/1", url, None, &fwd).await.unwrap();
    assert_eq!((a.status, a.header("x-ekey-remaining")), (StatusCode::OK, "2".into()), "{a:?}");
    // Envoy's path prefix is stripped before matching: /envoy/reports is GET:/reports.
    let (a, _) = dpop_call(gw.addr, &client, &token, "GET", "/envoy/reports", "https://api.test/reports", None, &fwd)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    assert!(a.header("www-authenticate").contains("insufficient_scope"));

    // In the nginx and forward-auth dialects `Forwarded` and X-Forwarded-Prefix
    // are never believed (those gateways pass a client's copy through).
    let mut h = vec![("forwarded", "host=api.test;proto=https"), ("x-forwarded-prefix", "/payments")];
    h.extend([("x-original-method", "POST"), ("x-original-uri", "/1")]);
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/nginx", url, None, &h).await.unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
}

/// `X-Forwarded-Prefix` from a trusted proxy counts only when
/// `trust_forwarded_prefix` is on, and then only for the URL the proof
/// names: the capability is matched on the request target the gateway was
/// given, never on the prefixed path.
#[tokio::test]
async fn a_forwarded_prefix_changes_the_url_never_the_matched_path() {
    let issuer = Issuer::new().unwrap();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    for trust in [false, true] {
        let opts = GatewayOptions {
            server: format!("trust_forwarded_prefix = {trust}\n"),
            ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
        };
        let gw = Gateway::start(&issuer, &opts).await.unwrap();
        let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
        let fwd = |prefix| {
            vec![("x-forwarded-proto", "https"), ("x-forwarded-host", "api.test"), ("x-forwarded-prefix", prefix)]
        };
        // The client asked for /payments/42 of a service mounted at /payments... claims the proxy.
        let (a, _) = dpop_call(
            gw.addr,
            &client,
            &token,
            "POST",
            "/envoy/42",
            "https://api.test/payments/42",
            None,
            &fwd("/payments"),
        )
        .await
        .unwrap();
        let want = if trust {
            ("insufficient_scope", StatusCode::FORBIDDEN)
        } else {
            ("invalid_proof", StatusCode::UNAUTHORIZED)
        };
        assert_eq!((a.header("x-ekey-reason").as_str(), a.status), want, "trust {trust}: {a:?}");
        // A real prefix in front of the routed path: only with the switch on
        // does the proof for the prefixed URL pass.
        let (a, _) = dpop_call(
            gw.addr,
            &client,
            &token,
            "POST",
            "/envoy/payments/42",
            "https://api.test/v1/payments/42",
            None,
            &fwd("/v1"),
        )
        .await
        .unwrap();
        assert_eq!(a.status == StatusCode::OK, trust, "trust {trust}: {a:?}");
    }
}

#[tokio::test]
async fn unusable_original_requests_are_refused_never_trusted() {
    let (issuer, gw, client) = gateway(&["127.0.0.1/32"]).await;
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let url = "https://api.test/payments/1";
    for (path, h) in [
        ("/nginx", vec![("x-original-method", "POST")]),
        ("/nginx", vec![("x-original-uri", "/payments/1")]),
        ("/forward-auth", vec![("x-forwarded-method", "POST")]),
    ] {
        let (a, _) = dpop_call(gw.addr, &client, &token, "POST", path, url, None, &h).await.unwrap();
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path} {h:?}: {a:?}");
        assert_eq!(a.header("x-ekey-reason"), "no_original_request");
    }
    let h = [("x-original-method", "POST"), ("x-original-uri", "http://api.test/payments/1")];
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/nginx", url, None, &h).await.unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    let h = [("x-forwarded-method", "POST"), ("x-forwarded-uri", "/payments/1"), ("x-forwarded-proto", "gopher")];
    let (a, _) = dpop_call(gw.addr, &client, &token, "POST", "/forward-auth", url, None, &h).await.unwrap();
    assert_eq!((a.status, a.header("x-ekey-reason")), (StatusCode::BAD_REQUEST, "bad_original_url".into()));

    let a = send(gw.addr, "GET", "/healthz", &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    let a = send(gw.addr, "GET", "/elsewhere", &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(gw.addr, "GET", "/envoyx/payments/1", &[]).await.unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[test]
fn binary_help_and_check_config() {
    let bin = env!("CARGO_BIN_EXE_ekey-gateway");
    let out = std::process::Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["serve", "check-config", "/nginx", "/forward-auth", "EKEY_GATEWAY_LISTEN"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new().unwrap();
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks_json().unwrap()).unwrap();
    let conf = dir.path().join("gateway.toml");
    let good = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[store]\nallow_without_revocation = true\n[verifier]\nissuer = \"https://i.test\"\naudiences = [\"https://api.test\"]\njwks_file = \"JWKS\"\n"
        .replace("JWKS", &support::path_of(&dir.path().join("jwks.json")));
    std::fs::write(&conf, &good).unwrap();
    let out = std::process::Command::new(bin).arg("check-config").arg("--config").arg(&conf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config OK"));

    std::fs::write(&conf, good.replace("\"127.0.0.1\"", "\"not-an-ip\"")).unwrap();
    let out = std::process::Command::new(bin).arg("check-config").arg("--config").arg(&conf).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.trusted_proxies"));

    // The deploy example parses (its files are absent here, so only the shape is checked).
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/gateway/gateway.toml")).unwrap();
    let example = ekey_gateway::Config::from_toml_str(&example).unwrap();
    // deploy/prometheus/prometheus.yml scrapes the example's admin listener.
    let prometheus = include_str!("../../deploy/prometheus/prometheus.yml");
    let target = format!("targets: [\"{}\"]", example.server.admin_listen);
    assert!(prometheus.contains(&target), "prometheus.yml does not scrape {target}");
}

/// Envoy and Traefik cannot run here: their deploy files are checked for the
/// settings the dialects above depend on.
#[test]
fn envoy_and_traefik_files_name_what_the_gateway_expects() {
    let envoy = include_str!("../../deploy/gateway/envoy.yaml");
    for needed in [
        "path_prefix: /envoy",
        "- exact: dpop",
        "- exact: authorization",
        "- exact: x-forwarded-client-cert",
        "- exact: x-ekey-sub",
        "- exact: x-ekey-remaining",
        "- exact: www-authenticate",
        "- exact: dpop-nonce",
        "failure_mode_allow: false",
        "forward_client_cert_details: SANITIZE_SET",
    ] {
        assert!(envoy.contains(needed), "envoy.yaml lacks {needed}");
    }
    let traefik = include_str!("../../deploy/gateway/traefik.yaml");
    for needed in ["/forward-auth\"", "trustForwardHeader: false", "- X-Ekey-Sub", "- X-Ekey-Remaining"] {
        assert!(traefik.contains(needed), "traefik.yaml lacks {needed}");
    }
}
