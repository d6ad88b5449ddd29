//! The issuer's observability end to end: metrics and spans over OTLP
//! (HTTP/protobuf and gRPC, to in-process receivers), `/metrics` checked by
//! `promtool`, one audit line per token request, no secret in any output of
//! the real binary, and `/readyz` following a KMS outage.

#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_kms::types::KeySpec;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::kms::{client, create_key, outage_settings, Moto, Proxy};
use common::*;
use ekey_issuer::{Config, KmsSigner, Providers, Server, ServerHandle, SERVICE_NAME};
use ekey_telemetry::audit::AUDIT_FIELDS;
use ekey_telemetry::receiver::{promtool_check_metrics, OtlpReceiver, ReceivedMetric};
use ekey_telemetry::OtlpProtocol;
use ekey_verifier::client::DpopKey;
use ekey_verifier::{dangerous, Algorithm, KeyPair};
use http::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The caller's trace: every test request carries `traceparent` with it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(10);

fn traceparent() -> (&'static str, String) {
    ("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
}

/// An issuer on loopback with the `worker` client and the `payments.create`
/// template; `sections` adds `[telemetry]`/`[audit]`.
fn config(sections: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [signing_key]
        generate = true
        timeout = 3
        {sections}
        {}
        "#,
        worker_toml("http://127.0.0.1:9")
    ))
    .unwrap()
}

/// What one token request sent, so tests can look for it afterwards.
struct Sent {
    answer: Answer,
    proof: Option<String>,
}

/// `POST /token` as `worker` with `secret`, a fresh proof (unless `proof`
/// is given or `with_proof` is false) and `form` after the grant type.
async fn token(
    server: &ServerHandle,
    secret: &str,
    proof: Option<String>,
    with_proof: bool,
    headers: &[(&str, String)],
    form: &str,
) -> Sent {
    let endpoint = &server.urls().token_endpoint;
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let proof = match (proof, with_proof) {
        (Some(p), _) => Some(p),
        (None, true) => Some(key.proof("POST", endpoint, None, None, now()).unwrap()),
        (None, false) => None,
    };
    let mut all = vec![
        ("content-type", "application/x-www-form-urlencoded".to_string()),
        ("authorization", format!("Basic {}", STANDARD.encode(format!("worker:{secret}")))),
    ];
    if let Some(p) = &proof {
        all.push(("dpop", p.clone()));
    }
    all.extend(headers.iter().cloned());
    let body =
        if form.starts_with("grant_type=") { form.to_owned() } else { format!("grant_type=client_credentials&{form}") };
    Sent { answer: send(Method::POST, endpoint, &all, Some(body)).await, proof }
}

fn jti(access_token: &str) -> String {
    let (_, payload) = dangerous::decode_unverified(access_token).unwrap();
    payload["jti"].as_str().unwrap().to_owned()
}

fn point_with<'a>(
    m: &'a ReceivedMetric,
    attrs: &[(&str, &str)],
) -> Option<&'a ekey_telemetry::receiver::ReceivedPoint> {
    m.points.iter().find(|p| attrs.iter().all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v)))
}

/// The latest export of `name` once it has a point with each of `wanted`.
async fn metric_with(receiver: &OtlpReceiver, name: &str, wanted: &[&[(&str, &str)]]) -> ReceivedMetric {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = receiver.wait_for_metric(name, Duration::from_millis(200)).await {
            if wanted.iter().all(|w| point_with(&m, w).is_some()) {
                return m;
            }
            assert!(Instant::now() < deadline, "{name} never had all of {wanted:?}: {m:?}");
        }
        assert!(Instant::now() < deadline, "{name} never arrived; got {:?}", receiver.metric_names());
    }
}

async fn otlp_roundtrip(receiver: OtlpReceiver) {
    let protocol = match receiver.protocol() {
        OtlpProtocol::Grpc => "grpc",
        OtlpProtocol::HttpProtobuf => "http/protobuf",
    };
    let server = Server::start(config(&format!(
        "[telemetry]\notlp = \"on\"\notlp_endpoint = \"{}\"\notlp_protocol = \"{protocol}\"\n\
         metrics_interval_ms = 200\n[audit]\nsink = \"off\"",
        receiver.endpoint()
    )))
    .await
    .unwrap();

    let issued = token(&server, WORKER_SECRET, None, true, &[traceparent()], "scope=payments.create").await;
    assert_eq!(issued.answer.status, 200, "{:?}", issued.answer.body);
    let access_token = issued.answer.json()["access_token"].as_str().unwrap().to_owned();
    let refused = token(&server, "not-the-worker-secret", None, true, &[traceparent()], "scope=payments.create").await;
    assert_eq!(refused.answer.error(), "invalid_client");
    server.telemetry().flush().await;

    let template = ("ekey.template", "payments.create");
    let tokens = metric_with(
        &receiver,
        "ekey.issue.tokens",
        &[&[template, ("ekey.outcome", "issued")], &[template, ("ekey.outcome", "invalid_client")]],
    )
    .await;
    assert_eq!((tokens.kind, tokens.unit.as_str()), ("sum", "{token}"));
    assert_eq!(point_with(&tokens, &[("ekey.outcome", "issued")]).unwrap().value, Some(1.0));
    assert_eq!(tokens.resource.get("service.name").map(String::as_str), Some(SERVICE_NAME));
    let duration = metric_with(&receiver, "ekey.issue.duration", &[&[template, ("ekey.outcome", "issued")]]).await;
    assert_eq!((duration.kind, duration.unit.as_str()), ("histogram", "s"));
    let http = metric_with(
        &receiver,
        "http.server.request.duration",
        &[&[("http.route", "/token"), ("http.response.status_code", "200")], &[("http.response.status_code", "401")]],
    )
    .await;
    assert_eq!(http.kind, "histogram");

    let span = receiver
        .wait_for_span(
            |s| s.name == "POST /token" && s.attributes.get("ekey.outcome").is_some_and(|o| o == "issued"),
            WAIT,
        )
        .await
        .expect("the server span of the issued request");
    assert_eq!(span.kind, "server");
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(span.parent_span_id.as_deref(), Some(PARENT_SPAN_ID));
    assert_eq!(span.attributes.get("ekey.template").map(String::as_str), Some("payments.create"));
    assert_eq!(span.attributes.get("ekey.trace"), Some(&jti(&access_token)));
    assert_eq!(span.attributes.get("http.response.status_code").map(String::as_str), Some("200"));
    assert_eq!(
        span.attributes.get("ekey.request_id"),
        issued.answer.header("x-request-id").map(str::to_owned).as_ref()
    );
    let sign = receiver
        .wait_for_span(|s| s.name == "local.sign" && s.parent_span_id.as_deref() == Some(span.span_id.as_str()), WAIT)
        .await
        .expect("the signing span, a child of the request's span");
    assert_eq!(
        (sign.trace_id.as_str(), sign.attributes.get("ekey.result").map(String::as_str)),
        (TRACE_ID, Some("ok"))
    );
    let refusal = receiver
        .wait_for_span(|s| s.attributes.get("ekey.outcome").is_some_and(|o| o == "invalid_client"), WAIT)
        .await
        .expect("the server span of the refused request");
    assert_eq!(refusal.attributes.get("ekey.reason").map(String::as_str), Some("bad_client_credentials"));
    let secrets =
        [access_token.as_str(), issued.proof.as_deref().unwrap(), refused.proof.as_deref().unwrap(), WORKER_SECRET];
    for s in receiver.spans() {
        for (k, v) in &s.attributes {
            assert!(!secrets.iter().any(|secret| v.contains(secret)), "span {} attribute {k} leaks: {v}", s.name);
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_and_spans_over_otlp_http() {
    bounded(async { otlp_roundtrip(OtlpReceiver::start_http().await.unwrap()).await }).await;
}

#[tokio::test]
async fn metrics_and_spans_over_otlp_grpc() {
    bounded(async { otlp_roundtrip(OtlpReceiver::start_grpc().await.unwrap()).await }).await;
}

/// Whether Prometheus text has a sample of `metric` with label `label`
/// (`name="value"`), whatever its other labels.
fn has_series(text: &str, metric: &str, label: &str) -> bool {
    text.lines().any(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
}

#[tokio::test]
async fn prometheus_metrics_on_the_admin_listener() {
    bounded(async {
        let server = Server::start(config("[telemetry]\notlp = \"off\"\n[audit]\nsink = \"off\"")).await.unwrap();
        assert_eq!(token(&server, WORKER_SECRET, None, true, &[], "scope=payments.create").await.answer.status, 200);
        assert_eq!(token(&server, WORKER_SECRET, None, true, &[], "scope=nope").await.answer.error(), "invalid_scope");
        let jwks = send(Method::GET, &server.urls().jwks_uri, &[], None).await;
        assert_eq!(jwks.status, 200);
        assert_eq!(jwks.header("x-request-id").map(str::len), Some(32), "a request id is made when none is sent");
        let public = server.public_addr();
        let echoed =
            send(Method::GET, &format!("http://{public}/no/such/path"), &[("x-request-id", "abc-123".into())], None)
                .await;
        assert_eq!((echoed.status.as_u16(), echoed.header("x-request-id")), (404, Some("abc-123")));

        let res = send(Method::GET, &format!("http://{}/metrics", server.admin_addr()), &[], None).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("content-type"), Some(ekey_telemetry::PROMETHEUS_CONTENT_TYPE));
        assert!(res.header("x-request-id").is_some());
        let text = String::from_utf8(res.body.to_vec()).unwrap();
        for (metric, label) in [
            ("ekey_issue_tokens_total", r#"ekey_outcome="issued""#),
            ("ekey_issue_tokens_total", r#"ekey_template="payments.create""#),
            ("ekey_issue_tokens_total", r#"ekey_outcome="invalid_scope""#),
            ("ekey_issue_tokens_total", r#"ekey_template="unknown""#),
            ("ekey_issue_duration_seconds_bucket", r#"ekey_outcome="issued""#),
            ("http_server_request_duration_seconds_bucket", r#"http_route="/token""#),
            ("http_server_request_duration_seconds_bucket", r#"http_route="/.well-known/jwks.json""#),
            ("http_server_request_duration_seconds_bucket", r#"http_route="other""#),
        ] {
            assert!(has_series(&text, metric, label), "no {metric} with {label} in:\n{text}");
        }
        assert!(!text.contains("nope") && !text.contains("/no/such/path"), "request text became a label:\n{text}");
        promtool_check_metrics(&text).unwrap();
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn one_audit_line_per_token_request() {
    bounded(async {
        let dir = TempDir::new("audit");
        let path = dir.0.join("audit.jsonl");
        let server = Server::start(config(&format!(
            "[telemetry]\notlp = \"off\"\n[audit]\nsink = \"file\"\npath = \"{}\"",
            path.display()
        )))
        .await
        .unwrap();
        let rid = |id: &str| ("x-request-id", id.to_owned());

        let ok =
            token(&server, WORKER_SECRET, None, true, &[rid("r-issued"), traceparent()], "scope=payments.create").await;
        assert_eq!(ok.answer.status, 200);
        let access_token = ok.answer.json()["access_token"].as_str().unwrap().to_owned();
        let details = |limit: u32| {
            let d = serde_json::json!([{"type": "ekey_capability", "action": "POST:/payments/7", "limit": limit}]);
            format!("authorization_details={}", percent_encode(&d.to_string()))
        };
        // (request id, answer, expected outcome, reason, sub, template, action)
        let refusals = [
            (
                token(
                    &server,
                    "wrong-worker-secret-0123456789",
                    None,
                    true,
                    &[rid("r-secret")],
                    "scope=payments.create",
                )
                .await,
                "invalid_client",
                "bad_client_credentials",
                None,
                Some("payments.create"),
                None,
            ),
            (
                token(&server, WORKER_SECRET, None, true, &[rid("r-grant")], "grant_type=password").await,
                "unsupported_grant_type",
                "unsupported_grant_type",
                None,
                None,
                None,
            ),
            (
                token(&server, WORKER_SECRET, None, false, &[rid("r-noproof")], "scope=payments.create").await,
                "invalid_request",
                "dpop_proof_missing",
                Some("worker"),
                Some("payments.create"),
                None,
            ),
            (
                token(&server, WORKER_SECRET, ok.proof.clone(), true, &[rid("r-replay")], "scope=payments.create")
                    .await,
                "invalid_dpop_proof",
                "dpop_proof_replayed",
                Some("worker"),
                Some("payments.create"),
                Some("POST:/payments/:id"),
            ),
            (
                token(&server, WORKER_SECRET, None, true, &[rid("r-limit")], &details(5)).await,
                "invalid_authorization_details",
                "limit_too_high",
                Some("worker"),
                None,
                None,
            ),
            (
                token(&server, WORKER_SECRET, None, true, &[rid("r-scope")], "scope=not-a-template-4711").await,
                "invalid_scope",
                "unknown_template",
                Some("worker"),
                None,
                None,
            ),
            (
                token(&server, WORKER_SECRET, None, true, &[rid("r-big")], &"x".repeat(20_000)).await,
                "invalid_request",
                "body_too_large",
                None,
                None,
                None,
            ),
        ];
        // Not token decisions: no audit line.
        assert_eq!(send(Method::GET, &server.urls().token_endpoint, &[], None).await.status, 405);
        assert_eq!(send(Method::GET, &server.urls().jwks_uri, &[], None).await.status, 200);
        server.shutdown().await;

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1 + refusals.len(), "{text}");
        for line in &lines {
            let obj = line.as_object().unwrap();
            assert_eq!(obj.len(), AUDIT_FIELDS.len(), "{line}");
            assert!(AUDIT_FIELDS.iter().all(|k| obj.contains_key(*k)), "{line}");
            assert_eq!((line["event"].as_str(), line["service"].as_str()), (Some("token.issue"), Some(SERVICE_NAME)));
            assert_eq!(line["client"], "127.0.0.1");
        }
        let first = &lines[0];
        assert_eq!(first["outcome"], "issued");
        assert_eq!(first["reason"], Value::Null);
        assert_eq!(first["sub"], "worker");
        assert_eq!(first["trace"].as_str(), Some(jti(&access_token).as_str()));
        assert_eq!(first["action"], "POST:/payments/:id");
        assert_eq!(first["template"], "payments.create");
        assert_eq!(first["request_id"], "r-issued");
        assert_eq!(first["trace_id"], TRACE_ID);
        let ids = ["r-secret", "r-grant", "r-noproof", "r-replay", "r-limit", "r-scope", "r-big"];
        for ((sent, outcome, reason, sub, template, action), (line, id)) in
            refusals.iter().zip(lines[1..].iter().zip(ids))
        {
            assert_eq!(sent.answer.error(), *outcome, "{id}: {:?}", sent.answer.body);
            assert_eq!(line["request_id"], id, "{line}");
            assert_eq!(line["outcome"], *outcome, "{line}");
            assert_eq!(line["reason"], *reason, "{line}");
            assert_eq!(line["sub"].as_str(), *sub, "{line}");
            assert_eq!(line["template"].as_str(), *template, "{line}");
            assert_eq!(line["action"].as_str(), *action, "{line}");
            assert_eq!(line["trace"], Value::Null, "{line}");
            assert_eq!(line["trace_id"].as_str().map(str::len), Some(32), "{line}");
            assert_ne!(line["trace_id"], TRACE_ID, "{line}");
        }
        assert!(!text.contains("not-a-template-4711") && !text.contains("wrong-worker-secret"), "{text}");
    })
    .await;
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn no_secret_reaches_logs_or_audit() {
    bounded(async {
        let dir = TempDir::new("noleak");
        let batch = KeyPair::generate(Algorithm::ES256).unwrap();
        dir.write(
            "batch.jwks.json",
            serde_json::json!({"keys": [batch.public_jwk().to_json()]}).to_string().as_bytes(),
        );
        let config = dir.write(
            "issuer.toml",
            format!(
                r#"
                [log]
                level = "debug"
                format = "json"
                [server]
                listen = "127.0.0.1:0"
                admin_listen = "127.0.0.1:0"
                [signing_key]
                generate = true
                [telemetry]
                otlp = "off"
                [audit]
                sink = "file"
                path = "audit.jsonl"
                [[clients]]
                id = "worker"
                auth = "client_secret_basic"
                secret_sha256 = "{}"
                [[clients]]
                id = "batch"
                auth = "private_key_jwt"
                jwks_file = "batch.jwks.json"
                [[templates]]
                name = "payments.create"
                clients = ["worker", "batch"]
                actions = ["POST:/payments/:id"]
                audience = "http://127.0.0.1:9"
                "#,
                sha256_hex(WORKER_SECRET.as_bytes())
            )
            .as_bytes(),
        );
        let (stdout, stderr) = (dir.0.join("stdout.log"), dir.0.join("stderr.log"));
        let mut issuer = common::process::IssuerProcess::serve(&config, &stdout, &stderr);
        let (listen, admin) = issuer.serving_addresses().await;
        let endpoint = format!("http://{listen}/token");
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let mut secrets: Vec<String> = vec![WORKER_SECRET.into(), STANDARD.encode(format!("worker:{WORKER_SECRET}"))];

        let proof = key.proof("POST", &endpoint, None, None, now()).unwrap();
        let basic = token_request(
            &endpoint,
            Auth::Basic("worker", WORKER_SECRET),
            Some(proof.clone()),
            &[("scope", "payments.create")],
        )
        .await;
        assert_eq!(basic.status, 200, "{:?}", basic.body);
        secrets.push(proof);
        secrets.push(basic.json()["access_token"].as_str().unwrap().to_owned());

        let jwt = assertion(&batch, "batch", &endpoint, "assertion-jti-1");
        let proof = key.proof("POST", &endpoint, None, None, now()).unwrap();
        let signed = token_request(
            &endpoint,
            Auth::Assertion("batch", jwt.clone()),
            Some(proof.clone()),
            &[("scope", "payments.create")],
        )
        .await;
        assert_eq!(signed.status, 200, "{:?}", signed.body);
        secrets.extend([jwt, proof, signed.json()["access_token"].as_str().unwrap().to_owned()]);

        let wrong = "wrong-secret-for-the-worker-42";
        let proof = key.proof("POST", &endpoint, None, None, now()).unwrap();
        let refused = token_request(
            &endpoint,
            Auth::Basic("worker", wrong),
            Some(proof.clone()),
            &[("scope", "payments.create")],
        )
        .await;
        assert_eq!(refused.error(), "invalid_client");
        secrets.extend([wrong.to_owned(), STANDARD.encode(format!("worker:{wrong}")), proof]);
        // Readiness and metrics are logged too (at debug).
        assert_eq!(send(Method::GET, &format!("http://{admin}/readyz"), &[], None).await.status, 200);
        assert_eq!(send(Method::GET, &format!("http://{admin}/metrics"), &[], None).await.status, 200);
        issuer.stop();

        let outputs = [
            ("stdout", std::fs::read_to_string(&stdout).unwrap()),
            ("stderr", std::fs::read_to_string(&stderr).unwrap()),
            ("audit", std::fs::read_to_string(dir.0.join("audit.jsonl")).unwrap()),
        ];
        for (name, text) in &outputs {
            for (i, s) in secrets.iter().enumerate() {
                assert!(!text.contains(s.as_str()), "secret #{i} appears in {name}:\n{text}");
                // Tokens, proofs and assertions: not even their signature or payload.
                if let Some((_, signature)) = s.rsplit_once('.') {
                    assert!(!text.contains(signature), "the signature of secret #{i} appears in {name}");
                }
            }
        }
        let audit: Vec<Value> = outputs[2].1.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let outcomes: Vec<&str> = audit.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["issued", "issued", "invalid_client"]);
        assert_eq!(audit[1]["sub"], "batch");
        // Every line logged while handling a token request names the request.
        let log = &outputs[1].1;
        let issued_lines: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "token issued")
            .collect();
        assert_eq!(issued_lines.len(), 2, "{log}");
        for l in &issued_lines {
            assert_eq!(l["span"]["request_id"].as_str().map(str::len), Some(32), "{l}");
        }
        assert!(outputs[0].1.trim().is_empty(), "audit goes to the file, not stdout: {}", outputs[0].1);
    })
    .await;
}

#[tokio::test]
async fn readiness_follows_a_kms_outage() {
    bounded(async {
        let moto = Moto::start();
        let mut proxy = Proxy::start(&moto.endpoint).await;
        let settings = outage_settings(1, 2);
        let alias = create_key(&moto.endpoint, KeySpec::EccNistP256, "ekey-readyz").await;
        let config = config("[telemetry]\notlp = \"off\"\n[audit]\nsink = \"off\"");
        let providers = Providers::from_config(&config).await.unwrap();
        let meter = providers.telemetry.meter(SERVICE_NAME);
        let signer =
            KmsSigner::connect(client(&proxy.endpoint(), settings), &alias, None).await.unwrap().with_metrics(&meter);
        let server = Server::start_with(config, providers.with_signer(Arc::new(signer))).await.unwrap();
        let (readyz_url, metrics_url) =
            (format!("http://{}/readyz", server.admin_addr()), format!("http://{}/metrics", server.admin_addr()));

        assert_eq!(token(&server, WORKER_SECRET, None, true, &[], "scope=payments.create").await.answer.status, 200);
        assert_eq!(send(Method::GET, &readyz_url, &[], None).await.status, 200);

        proxy.stop().await;
        let deadline = Instant::now() + WAIT;
        let not_ready = loop {
            let res = token(&server, WORKER_SECRET, None, true, &[], "scope=payments.create").await;
            assert_eq!(res.answer.error(), "temporarily_unavailable");
            let ready = send(Method::GET, &readyz_url, &[], None).await;
            if ready.status == 503 {
                break String::from_utf8(ready.body.to_vec()).unwrap();
            }
            assert!(Instant::now() < deadline, "still ready during the outage");
        };
        assert!(not_ready.starts_with("not ready: signer: "), "{not_ready}");
        let metrics = String::from_utf8(send(Method::GET, &metrics_url, &[], None).await.body.to_vec()).unwrap();
        for (metric, label) in [
            ("ekey_kms_sign_errors_total", r#"error_type="unavailable""#),
            ("ekey_kms_sign_duration_seconds_bucket", r#"ekey_result="ok""#),
            ("ekey_kms_sign_duration_seconds_bucket", r#"ekey_result="error""#),
            ("ekey_issue_tokens_total", r#"ekey_outcome="temporarily_unavailable""#),
        ] {
            assert!(has_series(&metrics, metric, label), "no {metric} with {label} in:\n{metrics}");
        }
        // Refused by the open circuit, without a call.
        assert_eq!(token(&server, WORKER_SECRET, None, true, &[], "scope=payments.create").await.answer.status, 503);
        let metrics = String::from_utf8(send(Method::GET, &metrics_url, &[], None).await.body.to_vec()).unwrap();
        assert!(has_series(&metrics, "ekey_kms_sign_errors_total", r#"error_type="circuit_open""#), "{metrics}");

        proxy.restart().await;
        let deadline = Instant::now() + WAIT;
        while send(Method::GET, &readyz_url, &[], None).await.status != 200 {
            assert!(Instant::now() < deadline, "readiness did not recover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(token(&server, WORKER_SECRET, None, true, &[], "scope=payments.create").await.answer.status, 200);
        server.shutdown().await;
    })
    .await;
}
