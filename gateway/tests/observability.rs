//! The gateway's telemetry end to end: OTLP metrics and spans (HTTP/protobuf
//! and gRPC) at an in-process receiver, Prometheus `/metrics` (checked with
//! `promtool`) and `/readyz` on the admin listener, the `token.verify` audit
//! events, and — through the real binary with debug JSON logs — that no
//! token, proof or credential header value is ever written out.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../verifier/tests/common/jwks.rs"]
#[allow(dead_code)]
mod jwks_server;
#[path = "../../verifier/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_harness;
mod support;

use ekey_telemetry::receiver::{promtool_check_metrics, OtlpReceiver, ReceivedMetric};
use ekey_verifier::client::DpopKey;
use ekey_verifier::Algorithm;
use http::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{send, Answer, Gateway, GatewayOptions, Issuer};

const AUDIENCE: &str = "https://api.test";
const URL: &str = "https://api.test/payments/9";
const ACTION: &str = "POST:/payments/:id";
const WAIT: Duration = Duration::from_secs(10);
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
/// The end client, as the trusted proxy (127.0.0.1) reports it.
const CLIENT_IP: &str = "192.0.2.7";

/// `/forward-auth` headers of a trusted proxy for `POST /payments/9`.
fn forwarded() -> Vec<(&'static str, String)> {
    vec![
        ("x-forwarded-method", "POST".into()),
        ("x-forwarded-uri", "/payments/9".into()),
        ("x-forwarded-proto", "https".into()),
        ("x-forwarded-host", "api.test".into()),
        ("x-forwarded-for", format!("198.51.100.1, {CLIENT_IP}")),
    ]
}

/// One `/forward-auth` sub-request with `authorization`, `dpop` and `extra` headers.
async fn forward_auth(
    addr: SocketAddr,
    authorization: Option<&str>,
    dpop: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let fwd = forwarded();
    let mut h: Vec<(&str, &str)> = fwd.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(a) = authorization {
        h.push(("authorization", a));
    }
    if let Some(d) = dpop {
        h.push(("dpop", d));
    }
    h.extend_from_slice(extra);
    send(addr, "GET", "/forward-auth", &h).await.unwrap()
}

fn proof(client: &DpopKey, token: &str, url: &str) -> String {
    client.proof("POST", url, Some(token), None, support::now()).unwrap()
}

/// A token, a client, and three requests: accepted, replayed proof, proof for
/// another URL (invalid_proof). The first carries a `traceparent`. Returns
/// the token, the proofs and the accepted answer.
async fn accepted_replay_invalid(issuer: &Issuer, addr: SocketAddr) -> (String, Vec<String>, Answer) {
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let auth = format!("DPoP {token}");
    let good = proof(&client, &token, URL);
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let ok = forward_auth(addr, Some(&auth), Some(&good), &[("traceparent", &parent)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let replay = forward_auth(addr, Some(&auth), Some(&good), &[]).await;
    assert_eq!((replay.status, replay.header("x-ekey-reason")), (StatusCode::UNAUTHORIZED, "replay_blocked".into()));
    let elsewhere = proof(&client, &token, "https://api.test/payments/10");
    let bad = forward_auth(addr, Some(&auth), Some(&elsewhere), &[]).await;
    assert_eq!((bad.status, bad.header("x-ekey-reason")), (StatusCode::UNAUTHORIZED, "invalid_proof".into()));
    (token, vec![good, elsewhere], ok)
}

fn attr<'a>(attributes: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    attributes.get(key).map(String::as_str)
}

/// Decision counts by `ekey.outcome` in one export of `ekey.verify.decisions`.
/// The non-zero decision counts by outcome (every outcome starts at 0).
fn decision_counts(m: &ReceivedMetric) -> BTreeMap<String, f64> {
    m.points
        .iter()
        .filter(|p| p.value.unwrap_or(0.0) > 0.0)
        .map(|p| (attr(&p.attributes, "ekey.outcome").unwrap_or("?").to_owned(), p.value.unwrap_or(0.0)))
        .collect()
}

async fn otlp_round_trip(receiver: OtlpReceiver, protocol: &str) {
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions {
        telemetry: format!(
            "otlp = \"on\"\notlp_endpoint = {:?}\notlp_protocol = {protocol:?}\nmetrics_interval_ms = 200\n",
            receiver.endpoint()
        ),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let (token, proofs, ok) = accepted_replay_invalid(&issuer, gw.addr).await;
    let request_id = ok.header("x-request-id");
    assert!(!request_id.is_empty(), "x-request-id echoed: {ok:?}");

    // Exports are cumulative: wait for the one that has all three decisions.
    let want: BTreeMap<String, f64> =
        [("invalid_proof", 1.0), ("replay_blocked", 1.0), ("success", 1.0)].map(|(k, v)| (k.to_owned(), v)).into();
    let deadline = Instant::now() + WAIT;
    let decisions = loop {
        gw.telemetry.flush().await;
        let m = receiver.wait_for_metric("ekey.verify.decisions", WAIT).await.expect("decisions exported");
        if decision_counts(&m) == want || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(decision_counts(&decisions), want, "{decisions:?}");
    // The other outcomes are there from the start, at 0, so alerts on
    // increase() see the first one.
    let zero = decisions.points.iter().find(|p| attr(&p.attributes, "ekey.outcome") == Some("store_unavailable"));
    assert_eq!(zero.and_then(|p| p.value), Some(0.0), "{decisions:?}");
    assert_eq!((decisions.unit.as_str(), decisions.kind), ("{decision}", "sum"));
    assert_eq!(decisions.resource.get("service.name").map(String::as_str), Some("ekey-gateway"));

    // The store was asked twice (accepted, replay); the bad proof never got there.
    let store = receiver.wait_for_metric("ekey.store.duration", WAIT).await.expect("store duration exported");
    let p = &store.points[0];
    assert_eq!(
        (attr(&p.attributes, "ekey.store.backend"), attr(&p.attributes, "ekey.store.result")),
        (Some("memory"), Some("ok"))
    );
    assert_eq!((store.points.len(), p.count), (1, Some(2)), "{store:?}");

    let http = receiver.wait_for_metric("http.server.request.duration", WAIT).await.expect("http duration exported");
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for p in &http.points {
        assert_eq!(attr(&p.attributes, "http.route"), Some("/forward-auth"), "{p:?}");
        assert_eq!(attr(&p.attributes, "http.request.method"), Some("GET"), "{p:?}");
        *by_status.entry(attr(&p.attributes, "http.response.status_code").unwrap_or("?").to_owned()).or_default() +=
            p.count.unwrap_or(0);
    }
    assert_eq!(by_status, [("200".to_owned(), 1), ("401".to_owned(), 2)].into());

    let span = receiver
        .wait_for_span(|s| s.trace_id == PARENT_TRACE && s.name == "GET /forward-auth", WAIT)
        .await
        .expect("server span of the accepted request");
    assert_eq!((span.kind, span.parent_span_id.as_deref()), ("server", Some(PARENT_SPAN)));
    assert_eq!(attr(&span.attributes, "ekey.outcome"), Some("success"));
    assert_eq!(attr(&span.attributes, "ekey.trace"), Some(ok.header("x-ekey-trace").as_str()));
    assert_eq!(attr(&span.attributes, "ekey.template"), Some("test"));
    assert_eq!(attr(&span.attributes, "ekey.request_id"), Some(request_id.as_str()));
    assert_eq!(attr(&span.attributes, "http.response.status_code"), Some("200"));
    let replay = receiver
        .wait_for_span(|s| s.attributes.get("ekey.outcome").is_some_and(|o| o == "replay_blocked"), WAIT)
        .await
        .expect("span of the replay");
    assert_ne!(replay.trace_id, PARENT_TRACE, "no traceparent: a new trace");
    // No span holds the token or a proof.
    let secrets = [&token].into_iter().chain(&proofs).collect::<Vec<_>>();
    for s in receiver.spans() {
        for v in s.attributes.values() {
            assert!(secrets.iter().all(|t| !v.contains(t.as_str())), "span {} attribute holds a secret", s.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_metrics_and_spans() {
    otlp_round_trip(OtlpReceiver::start_http().await.unwrap(), "http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_metrics_and_spans() {
    otlp_round_trip(OtlpReceiver::start_grpc().await.unwrap(), "grpc").await;
}

/// The value of the first sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let matches = series.split('{').next() == Some(name) && labels.iter().all(|lab| series.contains(lab));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_on_the_admin_listener() {
    let issuer = Issuer::new().unwrap();
    let state = Arc::new(jwks_server::Server::default());
    *state.jwks.lock().unwrap() = jwks_server::jwks_of(&[&issuer.key]);
    *state.max_age.lock().unwrap() = 300;
    let (jwks_url, jwks_task) = jwks_server::serve(state.clone()).await;
    let opts = GatewayOptions { jwks_url: Some(jwks_url), ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();

    assert_eq!(send(gw.admin, "GET", "/healthz", &[]).await.unwrap().status, StatusCode::OK);
    let ready = send(gw.admin, "GET", "/readyz", &[]).await.unwrap();
    // Ready, and saying what the in-memory store cannot do.
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert!(
        ready.body.starts_with("ready; warning: in-memory store without a revocation feed")
            && ready.body.contains("revocations made at the issuer do not reach this gateway"),
        "{ready:?}"
    );
    assert_eq!(send(gw.admin, "POST", "/metrics", &[]).await.unwrap().status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send(gw.admin, "GET", "/nginx", &[]).await.unwrap().status, StatusCode::NOT_FOUND);
    // The main listener keeps /healthz and has no /metrics.
    assert_eq!(send(gw.addr, "GET", "/healthz", &[]).await.unwrap().status, StatusCode::OK);
    assert_eq!(send(gw.addr, "GET", "/metrics", &[]).await.unwrap().status, StatusCode::NOT_FOUND);

    accepted_replay_invalid(&issuer, gw.addr).await;
    let m = send(gw.admin, "GET", "/metrics", &[]).await.unwrap();
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.header("content-type"), ekey_telemetry::PROMETHEUS_CONTENT_TYPE);
    let text = m.body;
    for name in [
        "ekey_verify_decisions_total",
        "ekey_verify_duration_seconds_bucket",
        "ekey_store_duration_seconds_bucket",
        "http_server_request_duration_seconds_bucket",
        "ekey_jwks_refreshes_total",
        "ekey_jwks_skipped_keys_total",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from /metrics:\n{text}");
    }
    for (outcome, n) in [("success", 1.0), ("replay_blocked", 1.0), ("invalid_proof", 1.0)] {
        let label = format!("ekey_outcome=\"{outcome}\"");
        assert_eq!(sample(&text, "ekey_verify_decisions_total", &[&label]), Some(n), "{outcome}:\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            "ekey_store_duration_seconds_count",
            &["ekey_store_backend=\"memory\"", "ekey_store_result=\"ok\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &["http_route=\"/forward-auth\"", "http_response_status_code=\"401\""]
        ),
        Some(2.0)
    );
    assert_eq!(sample(&text, "ekey_jwks_refreshes_total", &["ekey_result=\"updated\""]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "ekey_jwks_skipped_keys_total", &[]), Some(0.0), "{text}");
    // /healthz on the main listener is a route of its own.
    assert!(sample(&text, "http_server_request_duration_seconds_count", &["http_route=\"/healthz\""]).is_some());
    promtool_check_metrics(&text).unwrap();
    jwks_task.abort();
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_audit_event_per_decision() {
    let issuer = Issuer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let opts = GatewayOptions {
        audit: format!("sink = \"file\"\npath = {:?}\n", audit.display().to_string()),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let auth = format!("DPoP {token}");
    let good = proof(&client, &token, URL);
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");

    let ok =
        forward_auth(gw.addr, Some(&auth), Some(&good), &[("x-request-id", "req-1"), ("traceparent", &parent)]).await;
    assert_eq!((ok.status, ok.header("x-request-id")), (StatusCode::OK, "req-1".into()), "{ok:?}");
    let trace = ok.header("x-ekey-trace");
    // Replay: refused after the token was checked, so sub and trace are known.
    assert_eq!(forward_auth(gw.addr, Some(&auth), Some(&good), &[]).await.status, StatusCode::UNAUTHORIZED);
    // A forged signature: nothing from the token is believed.
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("DPoP {head}.{}", "A".repeat(86));
    let a = forward_auth(gw.addr, Some(&forged), Some(&proof(&client, &token, URL)), &[]).await;
    assert_eq!(a.header("x-ekey-reason"), "invalid_token");
    // No credentials at all.
    assert_eq!(forward_auth(gw.addr, None, None, &[]).await.header("x-ekey-reason"), "missing_credentials");
    // Refused by the gateway itself (a DPoP header that is not ASCII).
    let bad_dpop = http::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    let a = {
        let fwd = forwarded();
        let mut h: Vec<(&str, &str)> = fwd.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.push(("authorization", &auth));
        let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut b = http::Request::get("/forward-auth").header("host", gw.addr.to_string()).header("dpop", bad_dpop);
        for (k, v) in h {
            b = b.header(k, v);
        }
        sender.send_request(b.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()).await.unwrap()
    };
    assert_eq!(a.headers().get("x-ekey-reason").unwrap(), "invalid_proof");
    // Not a verify decision: no original request from an untrusted peer.
    let direct = send(gw.addr, "GET", "/nginx", &[("authorization", &auth)]).await.unwrap();
    assert_eq!(direct.status, StatusCode::FORBIDDEN);
    // Nor is anything on other paths.
    assert_eq!(send(gw.addr, "GET", "/nope", &[]).await.unwrap().status, StatusCode::NOT_FOUND);

    let lines = audit_lines(&audit);
    let outcomes: Vec<&str> = lines.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        outcomes,
        ["success", "replay_blocked", "invalid_token", "missing_credentials", "invalid_proof"],
        "{lines:#?}"
    );
    for l in &lines {
        assert_eq!((l["event"].as_str(), l["service"].as_str()), (Some("token.verify"), Some("ekey-gateway")), "{l}");
        assert_eq!(l["client"], CLIENT_IP, "{l}");
        assert!(l["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
        assert!(l["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{l}");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        assert_eq!(l.as_object().unwrap().len(), 12, "{l}");
    }
    let s = &lines[0];
    assert_eq!(s["reason"], Value::Null);
    assert_eq!((s["sub"].as_str(), s["trace"].as_str()), (Some("client-1"), Some(trace.as_str())));
    assert_eq!((s["action"].as_str(), s["template"].as_str()), (Some(ACTION), Some("test")));
    assert_eq!((s["request_id"].as_str(), s["trace_id"].as_str()), (Some("req-1"), Some(PARENT_TRACE)));
    let r = &lines[1];
    assert_eq!(r["reason"], "replay_blocked");
    assert_eq!((r["sub"].as_str(), r["trace"].as_str()), (Some("client-1"), Some(trace.as_str())));
    assert_eq!((r["action"].as_str(), r["template"].as_str()), (Some(ACTION), Some("test")));
    for l in &lines[2..] {
        assert_eq!(l["reason"], l["outcome"], "{l}");
        for field in ["sub", "trace", "action", "template"] {
            assert_eq!(l[field], Value::Null, "{field} of a refusal before the token was checked: {l}");
        }
    }

    // Each decision is counted exactly once, the gateway's own refusal included.
    let text = send(gw.admin, "GET", "/metrics", &[]).await.unwrap().body;
    let mut total = 0.0;
    for outcome in ["success", "replay_blocked", "invalid_token", "missing_credentials", "invalid_proof"] {
        let n = sample(&text, "ekey_verify_decisions_total", &[&format!("ekey_outcome=\"{outcome}\"")]);
        assert_eq!(n, Some(1.0), "{outcome}:\n{text}");
        total += 1.0;
    }
    let all: f64 = text
        .lines()
        .filter(|l| l.starts_with("ekey_verify_decisions_total"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(all, total, "{text}");
}

/// The audit event names a token (sub, trace, action, template) only once
/// the verifier found it authentic — signature, issuer and audience checked
/// — whatever check refused it afterwards; a forged token names nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_names_a_token_only_once_it_is_authentic() {
    let issuer = Issuer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let opts = GatewayOptions {
        audit: format!("sink = \"file\"\npath = {:?}\n", audit.display().to_string()),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let call = |method: &'static str, uri: &'static str, authorization: String, dpop: String| {
        let addr = gw.addr;
        async move {
            let h = [
                ("x-forwarded-method", method),
                ("x-forwarded-uri", uri),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.test"),
                ("authorization", authorization.as_str()),
                ("dpop", dpop.as_str()),
            ];
            send(addr, "GET", "/forward-auth", &h).await.unwrap()
        }
    };
    let proof_for = |method: &str, url: &str| client.proof(method, url, Some(&token), None, support::now()).unwrap();

    // Forged: the same claims (sub client-1) signed by another key.
    let forged = Issuer::new().unwrap().token(&client, AUDIENCE, ACTION, 5).unwrap();
    let forged_proof = client.proof("POST", URL, Some(&forged), None, support::now()).unwrap();
    let a = call("POST", "/payments/9", format!("DPoP {forged}"), forged_proof).await;
    assert_eq!(a.header("x-ekey-reason"), "invalid_token");
    // Authentic, then refused: outside the capability, presented without its
    // binding, and on a path that is not in normal form.
    let a = call("GET", "/reports", format!("DPoP {token}"), proof_for("GET", "https://api.test/reports")).await;
    assert_eq!(a.header("x-ekey-reason"), "insufficient_scope");
    let a = call("POST", "/payments/9", format!("Bearer {token}"), proof_for("POST", URL)).await;
    assert_eq!(a.header("x-ekey-reason"), "invalid_token");
    let hostile = "https://api.test/payments/%39";
    let a = call("POST", "/payments/%39", format!("DPoP {token}"), proof_for("POST", hostile)).await;
    assert_eq!((a.status, a.header("x-ekey-reason")), (StatusCode::BAD_REQUEST, "invalid_path".into()), "{a:?}");

    let lines = audit_lines(&audit);
    let ids = |l: &Value| ["outcome", "sub", "action", "template"].map(|f| l[f].as_str().map(str::to_owned)).to_vec();
    let named = |outcome: &str| {
        [Some(outcome), Some("client-1"), Some(ACTION), Some("test")].map(|v| v.map(str::to_owned)).to_vec()
    };
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(ids(&lines[0]), vec![Some("invalid_token".to_owned()), None, None, None], "forged: {}", lines[0]);
    assert_eq!(lines[0]["trace"], Value::Null);
    assert_eq!(ids(&lines[1]), named("insufficient_scope"), "{}", lines[1]);
    assert_eq!(ids(&lines[2]), named("invalid_token"), "{}", lines[2]);
    assert_eq!(ids(&lines[3]), named("invalid_path"), "{}", lines[3]);
    for l in &lines[1..] {
        assert_eq!(l["trace"].as_str().map(str::len), Some(22), "{l}");
    }
}

/// The gateway binary, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `listening on ADDR` and `admin listening on ADDR` in `stdout`.
fn addresses(stdout: &std::path::Path, child: &mut Killed, stderr: &std::path::Path) -> (SocketAddr, SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(stdout).unwrap_or_default();
        let find = |prefix: &str| {
            text.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|a| a.trim().parse::<SocketAddr>().ok())
        };
        if let (Some(a), Some(b)) = (find("listening on "), find("admin listening on ")) {
            return (a, b);
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("ekey-gateway exited ({status}): {}", std::fs::read_to_string(stderr).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "ekey-gateway did not listen within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_never_writes_tokens_proofs_or_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks_json().unwrap()).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let conf = dir.path().join("gateway.toml");
    std::fs::write(
        &conf,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
             client_cert_header = \"x-ssl-client-cert\"\nclient_cert_format = \"escaped_pem\"\n\
             [store]\nallow_without_revocation = true\n\
             [verifier]\nissuer = \"https://issuer.test\"\naudiences = [{AUDIENCE:?}]\njwks_file = {:?}\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n\
             [telemetry]\notlp = \"off\"\n\
             [audit]\nsink = \"file\"\npath = {:?}\n",
            jwks.display().to_string(),
            audit.display().to_string()
        ),
    )
    .unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_ekey-gateway"))
        .args(["serve", "--config"])
        .arg(&conf)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let (addr, admin) = addresses(&stdout, &mut child, &stderr);

    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, ACTION, 2).unwrap();
    let auth = format!("DPoP {token}");
    let mut proofs = Vec::new();
    let mut fresh = || {
        let p = proof(&client, &token, URL);
        proofs.push(p.clone());
        p
    };
    let (p1, p2, p3) = (fresh(), fresh(), fresh());
    let wrong_url = proof(&client, &token, "https://api.test/payments/10");
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "B".repeat(86));
    let pem_canary = "-----BEGIN%20CERTIFICATE-----%0ALEAKCANARYMIIBszCCAVmgAwIBAgIU%0A-----END%20CERTIFICATE-----%0A";
    let bearer_other = "Bearer opaque-secret-bearer-value-0123456789";

    let mut answers = Vec::new();
    answers.push(forward_auth(addr, Some(&auth), Some(&p1), &[]).await.status); // 200
    answers.push(forward_auth(addr, Some(&auth), Some(&p1), &[]).await.status); // replay
    answers.push(forward_auth(addr, Some(&auth), Some(&wrong_url), &[]).await.status); // invalid proof
    answers.push(forward_auth(addr, Some(&format!("DPoP {forged}")), Some(&p2), &[]).await.status); // invalid token
    answers.push(forward_auth(addr, Some(bearer_other), None, &[]).await.status); // bearer, not a token
    answers.push(forward_auth(addr, Some(&auth), Some(&p3), &[("x-ssl-client-cert", pem_canary)]).await.status);
    answers.push(forward_auth(addr, Some(&auth), Some(&p2), &[]).await.status); // 200 (second use)
    answers.push(send(addr, "GET", "/nginx", &[("authorization", &auth), ("dpop", &p3)]).await.unwrap().status);
    assert_eq!(answers.iter().filter(|s| **s == StatusCode::OK).count(), 2, "{answers:?}");
    assert_eq!(send(admin, "GET", "/readyz", &[]).await.unwrap().status, StatusCode::OK);

    // Stop it cleanly so that everything is written out.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ekey-gateway did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    let token_sig = token.rsplit('.').next().unwrap().to_owned();
    let mut secrets: Vec<(String, String)> = vec![
        ("token".into(), token.clone()),
        ("token signature".into(), token_sig),
        ("forged token".into(), forged.clone()),
        ("Authorization value".into(), auth.clone()),
        ("bearer value".into(), "opaque-secret-bearer-value".into()),
        ("wrong-URL proof".into(), wrong_url.clone()),
        ("certificate header".into(), "LEAKCANARY".into()),
    ];
    for (i, p) in proofs.iter().enumerate() {
        secrets.push((format!("proof {i}"), p.clone()));
        secrets.push((format!("proof {i} signature"), p.rsplit('.').next().unwrap().to_owned()));
    }
    for (what, stream) in [("stdout", &out), ("stderr", &err), ("audit file", &audit_text)] {
        for (name, secret) in &secrets {
            assert!(!stream.contains(secret.as_str()), "{name} found in {what}:\n{stream}");
        }
    }
    // The streams were really written: debug JSON logs, and one audit line per decision.
    assert!(err.lines().any(|l| l.contains("\"level\":\"DEBUG\"")), "no debug log lines:\n{err}");
    assert!(err.lines().any(|l| l.contains("verify decision") && l.contains("request_id")), "{err}");
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 7, "the untrusted /nginx call is not a decision:\n{audit_text}");
    assert!(lines.iter().all(|l| l["event"] == "token.verify"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_and_requests_fail_closed() {
    let mut redis = redis_harness::RedisServer::start();
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions { redis_url: Some(redis.url()), ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    let readyz = || async { send(gw.admin, "GET", "/readyz", &[]).await.unwrap() };
    let until = |want: StatusCode, bound: Duration| async move {
        let deadline = Instant::now() + bound;
        loop {
            let a = send(gw.admin, "GET", "/readyz", &[]).await.unwrap();
            if a.status == want {
                return a;
            }
            assert!(Instant::now() < deadline, "/readyz not {want} within {bound:?}: {a:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let a = readyz().await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");

    redis.kill();
    let a = until(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)).await;
    assert!(a.body.starts_with("not ready: store (redis): "), "{a:?}");

    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let refused = forward_auth(gw.addr, Some(&format!("DPoP {token}")), Some(&proof(&client, &token, URL)), &[]).await;
    assert_eq!(
        (refused.status, refused.header("x-ekey-reason")),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable".into())
    );
    let text = send(gw.admin, "GET", "/metrics", &[]).await.unwrap().body;
    assert_eq!(
        sample(&text, "ekey_verify_decisions_total", &["ekey_outcome=\"store_unavailable\""]),
        Some(1.0),
        "{text}"
    );

    redis.restart();
    until(StatusCode::OK, Duration::from_secs(15)).await;
    let ok = forward_auth(gw.addr, Some(&format!("DPoP {token}")), Some(&proof(&client, &token, URL)), &[]).await;
    assert_eq!(ok.status, StatusCode::OK, "served again once Redis is back: {ok:?}");
}

/// The issuer's JWKS goes away: the last set serves for `max_staleness` past
/// its freshness, then requests are refused (503, fail closed) and `/readyz`
/// says why; once the JWKS is back, both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_stale_beyond_max_staleness_fails_closed_and_readyz_says_so() {
    let issuer = Issuer::new().unwrap();
    let state = Arc::new(jwks_server::Server::default());
    *state.jwks.lock().unwrap() = jwks_server::jwks_of(&[&issuer.key]);
    *state.max_age.lock().unwrap() = 1;
    let (jwks_url, jwks_task) = jwks_server::serve(state.clone()).await;
    let opts = GatewayOptions {
        jwks_url: Some(jwks_url),
        jwks_table: Some("max_staleness = 1\n".into()),
        ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"])
    };
    let gw = Gateway::start(&issuer, &opts).await.unwrap();
    assert_eq!(send(gw.admin, "GET", "/readyz", &[]).await.unwrap().status, StatusCode::OK);
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = issuer.token(&client, AUDIENCE, ACTION, 5).unwrap();
    let auth = format!("DPoP {token}");
    let call = || async { forward_auth(gw.addr, Some(&auth), Some(&proof(&client, &token, URL)), &[]).await };
    assert_eq!(call().await.status, StatusCode::OK);

    jwks_task.abort();
    let _ = jwks_task.await;
    // Past max-age (1 s), within max_staleness (1 s more): still served.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(call().await.status, StatusCode::OK, "the stale set is used within max_staleness");
    // Past both: refused, and not ready.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused = call().await;
    assert_eq!(
        (refused.status, refused.header("x-ekey-reason")),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable".into()),
        "{refused:?}"
    );
    let ready = send(gw.admin, "GET", "/readyz", &[]).await.unwrap();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
    assert!(ready.body.starts_with("not ready: keys: "), "{ready:?}");
}
