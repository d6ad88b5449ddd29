//! The audit file sink: append-only, mode 0600, one complete JSON object per
//! line with every key present.
#![allow(clippy::unwrap_used)]

use ekey_telemetry::audit::{AuditEvent, AuditSink, EVENT_ISSUE, EVENT_VERIFY};
use ekey_telemetry::{AuditConfig, AuditSinkKind, OtlpMode, Telemetry, TelemetryConfig, TelemetryError};
use serde_json::Value;

fn file_config(path: &std::path::Path) -> AuditConfig {
    AuditConfig { sink: AuditSinkKind::File, path: Some(path.to_owned()) }
}

#[tokio::test]
async fn file_sink_appends_json_lines_with_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, "{\"existing\":true}\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let cfg = TelemetryConfig { otlp: OtlpMode::Off, ..TelemetryConfig::default() };
    let telemetry = Telemetry::start("ekey-issuer", "1", &cfg, &file_config(&path)).unwrap();
    assert_eq!(telemetry.audit().kind(), AuditSinkKind::File);
    telemetry.audit().emit(
        &AuditEvent::now(EVENT_ISSUE, "ekey-issuer", "issued")
            .with_sub("alice")
            .with_trace("jti-1")
            .with_action("open")
            .with_template("door-open")
            .with_client("192.0.2.7".parse().unwrap())
            .with_request_id("req-1")
            .with_trace_id(Some("4bf92f3577b34da6a3ce929d0e0e4736".into())),
    );
    telemetry
        .audit()
        .emit(&AuditEvent::now(EVENT_VERIFY, "ekey-issuer", "replay_blocked").with_reason("jti seen before"));

    // Each emit is flushed: the lines are on disk without shutting down.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "{\"existing\":true}");

    let first: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(first["event"], "token.issue");
    assert_eq!(first["outcome"], "issued");
    assert_eq!(first["reason"], Value::Null);
    assert_eq!(first["client"], "192.0.2.7");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let time = first["time"].as_str().unwrap();
    assert_eq!(time.len(), 24, "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T' && time.as_bytes()[19] == b'.', "{time}");

    let second: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(second["outcome"], "replay_blocked");
    assert_eq!(second["reason"], "jti seen before");
    for key in ["sub", "trace", "action", "template", "client", "request_id", "trace_id"] {
        assert_eq!(second.get(key), Some(&Value::Null), "{key} in {}", lines[2]);
    }
    telemetry.shutdown().await;
}

#[cfg(unix)]
#[test]
fn new_file_is_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.jsonl");
    let sink = AuditSink::from_config(&file_config(&path)).unwrap();
    sink.emit(&AuditEvent::now(EVENT_ISSUE, "svc", "issued"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
}

#[test]
fn unopenable_file_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("audit.jsonl");
    let err = AuditSink::from_config(&file_config(&path)).unwrap_err();
    assert!(matches!(err, TelemetryError::AuditFile { .. }), "{err:?}");
    assert!(err.to_string().starts_with("audit.path: cannot open "), "{err}");
}

#[test]
fn file_sink_without_path_names_the_field() {
    let err = AuditSink::from_config(&AuditConfig { sink: AuditSinkKind::File, path: None }).unwrap_err();
    assert_eq!(err.to_string(), "audit.path: required when audit.sink = \"file\"");
}
