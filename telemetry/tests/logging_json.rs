//! `logging::init` installs a process-wide subscriber, so each case runs in a
//! child process (this test binary run again with `EKEY_TELEMETRY_LOG_CHILD`
//! set) and the parent checks what the child wrote to standard error.
#![allow(clippy::unwrap_used)]

use ekey_telemetry::logging::{self, LogFormat};
use std::process::Command;

const CHILD: &str = "EKEY_TELEMETRY_LOG_CHILD";

/// The child side: does nothing unless started by `run_child`.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else { return };
    let format = if mode == "json" { LogFormat::Json } else { LogFormat::Text };
    logging::init(format, "info").unwrap();
    assert!(logging::init(format, "info").is_err(), "a second init must fail");
    let span = tracing::info_span!("request", request_id = "req-42");
    let _entered = span.enter();
    tracing::info!(template = "door-open", "token issued");
    tracing::debug!("hidden at info");
    tracing::warn!("a warning");
}

fn run_child(mode: &str, rust_log: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"]).env(CHILD, mode).env_remove("RUST_LOG");
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn json_lines_carry_the_span_fields() {
    let stderr = run_child("json", None);
    let lines: Vec<serde_json::Value> =
        stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let info = &lines[0];
    assert_eq!(info["level"], "INFO");
    assert_eq!(info["message"], "token issued");
    assert_eq!(info["template"], "door-open");
    assert_eq!(info["span"]["request_id"], "req-42", "{info}");
    assert_eq!(lines[1]["span"]["request_id"], "req-42");
}

#[test]
fn rust_log_overrides_the_filter() {
    let stderr = run_child("json", Some("warn"));
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("a warning"));
}

#[test]
fn text_format_is_not_json() {
    let stderr = run_child("text", None);
    let line = stderr.lines().find(|l| l.contains("token issued")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(!line.starts_with('{') && line.contains("INFO") && line.contains("req-42"), "{line}");
}
