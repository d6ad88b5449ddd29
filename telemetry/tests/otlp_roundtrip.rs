//! OTLP export end to end, for both protocols: metrics and a server span
//! recorded through `Telemetry` arrive at an in-process receiver with their
//! names, units, attributes and the caller's trace id.
#![cfg(feature = "receiver")]
#![allow(clippy::unwrap_used)]

use ekey_telemetry::http::{HttpMetrics, RequestObservation};
use ekey_telemetry::receiver::OtlpReceiver;
use ekey_telemetry::{AuditConfig, AuditSinkKind, OtlpMode, Telemetry, TelemetryConfig};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use opentelemetry::KeyValue;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn no_audit() -> AuditConfig {
    AuditConfig { sink: AuditSinkKind::Off, path: None }
}

async fn round_trip(receiver: OtlpReceiver) {
    let cfg = TelemetryConfig {
        otlp: OtlpMode::On,
        otlp_endpoint: Some(receiver.endpoint()),
        otlp_protocol: Some(receiver.protocol()),
        metrics_interval_ms: Some(200),
    };
    let telemetry = Telemetry::start("ekey-test", "9.9.9", &cfg, &no_audit()).unwrap();
    let meter = telemetry.meter("ekey-test");

    let tokens = meter.u64_counter("ekey.issue.tokens").with_unit("{token}").build();
    tokens.add(2, &[KeyValue::new("ekey.template", "door-open"), KeyValue::new("ekey.outcome", "issued")]);
    let duration = meter.f64_histogram("ekey.issue.duration").with_unit("s").build();
    duration.record(0.012, &[KeyValue::new("ekey.template", "door-open"), KeyValue::new("ekey.outcome", "issued")]);

    let http_metrics = HttpMetrics::new(&meter);
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_str(&format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01")).unwrap());
    let mut obs = RequestObservation::start(&telemetry.tracer(), &http_metrics, &Method::POST, "/token", &headers);
    obs.set_attribute(KeyValue::new("ekey.outcome", "issued"));
    assert_eq!(obs.trace_id().as_deref(), Some(PARENT_TRACE));
    let request_id = obs.request_id().to_owned();
    obs.finish(StatusCode::OK);

    telemetry.flush().await;

    let m = receiver.wait_for_metric("ekey.issue.tokens", WAIT).await.expect("counter exported");
    assert_eq!((m.unit.as_str(), m.kind), ("{token}", "sum"));
    assert_eq!(m.resource.get("service.name").map(String::as_str), Some("ekey-test"));
    assert_eq!(m.resource.get("service.version").map(String::as_str), Some("9.9.9"));
    let p = &m.points[0];
    assert_eq!(p.value, Some(2.0));
    assert_eq!(p.attributes.get("ekey.template").map(String::as_str), Some("door-open"));
    assert_eq!(p.attributes.get("ekey.outcome").map(String::as_str), Some("issued"));

    let m = receiver.wait_for_metric("ekey.issue.duration", WAIT).await.expect("histogram exported");
    assert_eq!((m.unit.as_str(), m.kind), ("s", "histogram"));
    assert_eq!(m.points[0].count, Some(1));

    let m = receiver.wait_for_metric("http.server.request.duration", WAIT).await.expect("http histogram exported");
    assert_eq!((m.unit.as_str(), m.kind), ("s", "histogram"));
    let p = &m.points[0];
    assert_eq!(p.bounds, ekey_telemetry::http::DURATION_BUCKETS.to_vec());
    assert_eq!(p.attributes.get("http.request.method").map(String::as_str), Some("POST"));
    assert_eq!(p.attributes.get("http.route").map(String::as_str), Some("/token"));
    assert_eq!(p.attributes.get("http.response.status_code").map(String::as_str), Some("200"));

    let span = receiver.wait_for_span(|s| s.name == "POST /token", WAIT).await.expect("server span exported");
    assert_eq!(span.kind, "server");
    assert_eq!(span.trace_id, PARENT_TRACE);
    assert_eq!(span.parent_span_id.as_deref(), Some(PARENT_SPAN));
    assert_eq!(span.status, "unset");
    assert_eq!(span.attributes.get("http.route").map(String::as_str), Some("/token"));
    assert_eq!(span.attributes.get("http.response.status_code").map(String::as_str), Some("200"));
    assert_eq!(span.attributes.get("ekey.outcome").map(String::as_str), Some("issued"));
    assert_eq!(span.attributes.get("ekey.request_id"), Some(&request_id));
    assert_eq!(span.resource.get("service.name").map(String::as_str), Some("ekey-test"));

    // A 5xx ends the span with status error; a request without traceparent starts a new trace.
    let obs = RequestObservation::start(&telemetry.tracer(), &http_metrics, &Method::GET, "/jwks", &HeaderMap::new());
    let new_trace = obs.trace_id().expect("a trace id");
    obs.finish(StatusCode::SERVICE_UNAVAILABLE);
    telemetry.flush().await;
    let span = receiver.wait_for_span(|s| s.name == "GET /jwks", WAIT).await.expect("second span exported");
    assert_eq!(span.status, "error");
    assert_eq!(span.parent_span_id, None);
    assert_eq!(span.trace_id, new_trace);
    assert_ne!(new_trace, PARENT_TRACE);

    telemetry.shutdown().await;
}

#[tokio::test]
async fn http_protobuf_round_trip() {
    round_trip(OtlpReceiver::start_http().await.unwrap()).await;
}

#[tokio::test]
async fn grpc_round_trip() {
    round_trip(OtlpReceiver::start_grpc().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_coexist_and_export_periodically() {
    let a = OtlpReceiver::start_http().await.unwrap();
    let b = OtlpReceiver::start_grpc().await.unwrap();
    let start = |r: &OtlpReceiver| {
        let cfg = TelemetryConfig {
            otlp: OtlpMode::On,
            otlp_endpoint: Some(r.endpoint()),
            otlp_protocol: Some(r.protocol()),
            metrics_interval_ms: Some(100),
        };
        Telemetry::start("svc", "1", &cfg, &no_audit()).unwrap()
    };
    let (ta, tb) = (start(&a), start(&b));
    ta.meter("a").u64_counter("only.a").build().add(1, &[]);
    tb.meter("b").u64_counter("only.b").build().add(1, &[]);
    // No flush: the periodic reader exports on its own.
    assert!(a.wait_for_metric("only.a", WAIT).await.is_some());
    assert!(b.wait_for_metric("only.b", WAIT).await.is_some());
    assert!(!a.metric_names().contains(&"only.b".to_owned()));
    assert!(!b.metric_names().contains(&"only.a".to_owned()));
    ta.shutdown().await;
    tb.shutdown().await;
}
