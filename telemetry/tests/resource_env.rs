//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` shape the resource.
//! Environment variables are process-wide, so the case runs in a child
//! process (this test binary run again with the variables set).
#![allow(clippy::unwrap_used)]

use ekey_telemetry::{AuditConfig, AuditSinkKind, OtlpMode, Telemetry, TelemetryConfig};
use std::process::Command;

const CHILD: &str = "EKEY_TELEMETRY_RESOURCE_CHILD";

/// The child side: prints `target_info` unless not started by the parent.
#[tokio::test]
async fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let cfg = TelemetryConfig { otlp: OtlpMode::Off, ..TelemetryConfig::default() };
    let t =
        Telemetry::start("ekey-issuer", "1.0.0", &cfg, &AuditConfig { sink: AuditSinkKind::Off, path: None }).unwrap();
    let text = t.prometheus_text().unwrap();
    let info = text.lines().find(|l| l.starts_with("target_info{")).unwrap();
    println!("RESULT {info}");
    t.shutdown().await;
}

#[test]
fn service_name_and_attributes_from_the_environment() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture"])
        .env(CHILD, "1")
        .env("OTEL_SERVICE_NAME", "issuer-eu")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,service.name=ignored")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let info = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(info.contains("service_name=\"issuer-eu\""), "{info}");
    assert!(info.contains("service_version=\"1.0.0\""), "{info}");
    assert!(info.contains("deployment_environment_name=\"staging\""), "{info}");
}
