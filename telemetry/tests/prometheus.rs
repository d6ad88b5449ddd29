//! Prometheus text: our instruments get the `_total`/`_seconds` names the
//! dashboards use, and `promtool check metrics` accepts the output.
#![allow(clippy::unwrap_used)]

use ekey_telemetry::http::{HttpMetrics, RequestObservation};
use ekey_telemetry::receiver::promtool_check_metrics;
use ekey_telemetry::{AuditConfig, AuditSinkKind, OtlpMode, Telemetry, TelemetryConfig, PROMETHEUS_CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use opentelemetry::KeyValue;

fn telemetry() -> Telemetry {
    let cfg = TelemetryConfig { otlp: OtlpMode::Off, ..TelemetryConfig::default() };
    Telemetry::start("ekey-test", "1.2.3", &cfg, &AuditConfig { sink: AuditSinkKind::Off, path: None }).unwrap()
}

/// Records one of each project instrument, as the issuer and gateway will.
/// Each needs a description: without one there is no `# HELP` line and
/// `promtool check metrics` fails.
fn record_all(t: &Telemetry) {
    let m = t.meter("ekey-test");
    let issue = [KeyValue::new("ekey.template", "door-open"), KeyValue::new("ekey.outcome", "issued")];
    m.f64_histogram("ekey.issue.duration")
        .with_unit("s")
        .with_description("ekey.issue.duration (test).")
        .build()
        .record(0.02, &issue);
    m.u64_counter("ekey.issue.tokens")
        .with_unit("{token}")
        .with_description("ekey.issue.tokens (test).")
        .build()
        .add(1, &issue);
    m.f64_histogram("ekey.kms.sign.duration")
        .with_unit("s")
        .with_description("ekey.kms.sign.duration (test).")
        .build()
        .record(0.03, &[KeyValue::new("ekey.result", "ok")]);
    m.u64_counter("ekey.kms.sign.errors")
        .with_unit("{error}")
        .with_description("ekey.kms.sign.errors (test).")
        .build()
        .add(1, &[KeyValue::new("error.type", "throttled")]);
    let outcome = [KeyValue::new("ekey.outcome", "replay_blocked")];
    m.u64_counter("ekey.verify.decisions")
        .with_unit("{decision}")
        .with_description("ekey.verify.decisions (test).")
        .build()
        .add(1, &outcome);
    m.f64_histogram("ekey.verify.duration")
        .with_unit("s")
        .with_description("ekey.verify.duration (test).")
        .build()
        .record(0.001, &outcome);
    m.f64_histogram("ekey.store.duration")
        .with_unit("s")
        .with_description("ekey.store.duration (test).")
        .build()
        .record(0.0005, &[KeyValue::new("ekey.store.backend", "memory"), KeyValue::new("ekey.store.result", "ok")]);
    m.u64_counter("ekey.jwks.refreshes")
        .with_unit("{refresh}")
        .with_description("ekey.jwks.refreshes (test).")
        .build()
        .add(1, &[KeyValue::new("ekey.result", "updated")]);
    let http = HttpMetrics::new(&m);
    RequestObservation::start(&t.tracer(), &http, &Method::POST, "/token", &HeaderMap::new()).finish(StatusCode::OK);
    RequestObservation::start(&t.tracer(), &http, &Method::from_bytes(b"BREW").unwrap(), "/token", &HeaderMap::new())
        .finish(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn names_follow_the_project_table() {
    let t = telemetry();
    record_all(&t);
    let text = t.prometheus_text().unwrap();
    for name in [
        "ekey_issue_duration_seconds_bucket{",
        "ekey_issue_tokens_total{",
        "ekey_kms_sign_duration_seconds_bucket{",
        "ekey_kms_sign_errors_total{",
        "ekey_verify_decisions_total{",
        "ekey_verify_duration_seconds_bucket{",
        "ekey_store_duration_seconds_bucket{",
        "ekey_jwks_refreshes_total{",
        "http_server_request_duration_seconds_bucket{",
        "http_server_request_duration_seconds_count{",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("ekey_issue_tokens_total{"))
        .unwrap_or_else(|| panic!("no ekey_issue_tokens_total in:\n{text}"));
    assert!(line.contains("ekey_outcome=\"issued\"") && line.contains("ekey_template=\"door-open\""), "{line}");
    let line = text
        .lines()
        .find(|l| l.starts_with("http_server_request_duration_seconds_count{") && l.contains("_OTHER"))
        .unwrap_or_else(|| panic!("no _OTHER method in:\n{text}"));
    assert!(line.contains("http_route=\"/token\"") && line.contains("http_response_status_code=\"405\""), "{line}");
    // Every histogram in seconds gets the semconv buckets, not the SDK's 0..10000.
    for h in [
        "ekey_issue_duration_seconds_bucket{",
        "ekey_store_duration_seconds_bucket{",
        "http_server_request_duration_seconds_bucket{",
    ] {
        let les: Vec<&str> =
            text.lines().filter(|l| l.starts_with(h)).filter_map(|l| l.split("le=\"").nth(1)).collect();
        assert_eq!(les.len(), 15 * if h.starts_with("http") { 2 } else { 1 }, "{h}:\n{text}");
        assert!(
            les.iter().any(|l| l.starts_with("0.005\"")) && les.iter().any(|l| l.starts_with("7.5\"")),
            "{h}:\n{text}"
        );
        assert!(!les.iter().any(|l| l.starts_with("5000\"")), "{h}:\n{text}");
    }
    assert!(PROMETHEUS_CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    t.shutdown().await;
}

#[tokio::test]
async fn promtool_accepts_the_output() {
    let t = telemetry();
    record_all(&t);
    let text = t.prometheus_text().unwrap();
    promtool_check_metrics(&text).unwrap();
    t.shutdown().await;
}

#[tokio::test]
async fn instances_do_not_share_a_registry() {
    let (a, b) = (telemetry(), telemetry());
    a.meter("a").u64_counter("only.in.a").with_description("Test.").build().add(1, &[]);
    assert!(a.prometheus_text().unwrap().contains("only_in_a_total"));
    assert!(!b.prometheus_text().unwrap().contains("only_in_a"));
    a.shutdown().await;
    b.shutdown().await;
}
