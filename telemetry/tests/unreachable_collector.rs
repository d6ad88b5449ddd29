//! A collector that is down never blocks start-up, and flush and shutdown
//! return within their bound.
#![allow(clippy::unwrap_used)]

use ekey_telemetry::{
    AuditConfig, AuditSinkKind, OtlpMode, OtlpProtocol, Telemetry, TelemetryConfig, SHUTDOWN_TIMEOUT,
};
use std::time::{Duration, Instant};

async fn down(protocol: OtlpProtocol) {
    // Bind then drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = TelemetryConfig {
        otlp: OtlpMode::On,
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        otlp_protocol: Some(protocol),
        metrics_interval_ms: Some(50),
    };
    let t = Telemetry::start("svc", "1", &cfg, &AuditConfig { sink: AuditSinkKind::Off, path: None }).unwrap();
    t.meter("m").u64_counter("c").build().add(1, &[]);
    let started = Instant::now();
    t.flush().await;
    t.shutdown().await;
    let bound = SHUTDOWN_TIMEOUT * 2 + Duration::from_secs(2);
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
    // Prometheus still works after a failed export.
    assert!(t.prometheus_text().is_ok());
}

#[tokio::test]
async fn http_collector_down() {
    down(OtlpProtocol::HttpProtobuf).await;
}

#[tokio::test]
async fn grpc_collector_down() {
    down(OtlpProtocol::Grpc).await;
}
