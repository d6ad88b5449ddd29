//! Audit events for a SIEM: one JSON object per line, one line per token
//! issued or refused and per verification decision.
//!
//! Audit output is separate from the log: it never goes through `tracing`,
//! and log filters cannot silence it.
//!
//! [`AuditEvent`] has no field able to hold a token, a DPoP proof, a client
//! assertion, a secret or an `Authorization`/`DPoP` header value: it carries
//! identifiers only (subject, token trace id `jti`, action, template, peer
//! address, request id, OTel trace id) and outcome codes.
//!
//! # Example
//!
//! ```
//! use ekey_telemetry::audit::{AuditEvent, AuditSink, EVENT_ISSUE};
//!
//! let sink = AuditSink::off();
//! let event = AuditEvent::now(EVENT_ISSUE, "ekey-issuer", "invalid_grant")
//!     .with_reason("assertion expired")
//!     .with_template("door-open")
//!     .with_client("192.0.2.7".parse().unwrap())
//!     .with_request_id("3f2a");
//! sink.emit(&event);
//! let line = event.to_json_line();
//! assert!(line.starts_with("{\"time\":"));
//! assert!(line.contains("\"sub\":null"));
//! ```

use crate::config::{AuditConfig, AuditSinkKind};
use crate::TelemetryError;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `event` of a token request at the issuer.
pub const EVENT_ISSUE: &str = "token.issue";
/// `event` of a verification decision (gateway or verifier).
pub const EVENT_VERIFY: &str = "token.verify";

/// The keys of every audit line, in the order they are written.
pub const AUDIT_FIELDS: [&str; 12] = [
    "time",
    "event",
    "service",
    "outcome",
    "reason",
    "sub",
    "trace",
    "action",
    "template",
    "client",
    "request_id",
    "trace_id",
];

/// Write errors are logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One audit record. Serialized with the fields in this order; a `None`
/// field is written as `null`, never left out, so every line has the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// When, RFC 3339 in UTC with milliseconds: `2025-01-31T12:00:00.123Z`.
    pub time: String,
    /// [`EVENT_ISSUE`] or [`EVENT_VERIFY`].
    pub event: String,
    /// The emitting service, e.g. `ekey-issuer`.
    pub service: String,
    /// `issued` or the OAuth error code (issue); `success` or the rejection
    /// reason (verify).
    pub outcome: String,
    /// A short human explanation of a failure; `null` on success.
    pub reason: Option<String>,
    /// The token's subject.
    pub sub: Option<String>,
    /// The token's trace id (`jti`).
    pub trace: Option<String>,
    /// The capability's action.
    pub action: Option<String>,
    /// The capability template.
    pub template: Option<String>,
    /// The peer's IP address.
    pub client: Option<String>,
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The OpenTelemetry trace id, 32 hex digits.
    pub trace_id: Option<String>,
}

impl AuditEvent {
    /// An event stamped with the current time; every optional field is `None`.
    pub fn now(event: &str, service: &str, outcome: &str) -> Self {
        Self {
            time: rfc3339_millis(time::OffsetDateTime::now_utc()),
            event: event.to_owned(),
            service: service.to_owned(),
            outcome: outcome.to_owned(),
            reason: None,
            sub: None,
            trace: None,
            action: None,
            template: None,
            client: None,
            request_id: None,
            trace_id: None,
        }
    }

    /// Sets `reason`.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets `sub`.
    pub fn with_sub(mut self, sub: impl Into<String>) -> Self {
        self.sub = Some(sub.into());
        self
    }

    /// Sets `trace` (the token's `jti`).
    pub fn with_trace(mut self, trace: impl Into<String>) -> Self {
        self.trace = Some(trace.into());
        self
    }

    /// Sets `action`.
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Sets `template`.
    pub fn with_template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Sets `client` to the peer's address.
    pub fn with_client(mut self, peer: IpAddr) -> Self {
        self.client = Some(peer.to_string());
        self
    }

    /// Sets `request_id`.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets `trace_id` (e.g. from [`crate::http::RequestObservation::trace_id`]).
    pub fn with_trace_id(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// The event as one JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing strings and options into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Where audit events go: nowhere, standard output, or an append-only file.
/// Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    kind: AuditSinkKind,
    writer: Option<Mutex<Box<dyn Write + Send>>>,
    last_error_log: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").field("kind", &self.inner.kind).finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Opens the sink `cfg` describes (after [`AuditConfig::validate`]). A
    /// file is opened for appending and created with mode 0600.
    pub fn from_config(cfg: &AuditConfig) -> Result<Self, TelemetryError> {
        cfg.validate()?;
        match (cfg.sink, &cfg.path) {
            (AuditSinkKind::Off, _) => Ok(Self::off()),
            (AuditSinkKind::Stdout, _) => Ok(Self::new(AuditSinkKind::Stdout, Some(Box::new(std::io::stdout())))),
            (AuditSinkKind::File, Some(path)) => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let file =
                    options.open(path).map_err(|source| TelemetryError::AuditFile { path: path.clone(), source })?;
                Ok(Self::new(AuditSinkKind::File, Some(Box::new(file))))
            }
            (AuditSinkKind::File, None) => {
                Err(TelemetryError::config("audit.path", "required when audit.sink = \"file\""))
            }
        }
    }

    /// A sink that drops every event.
    pub fn off() -> Self {
        Self::new(AuditSinkKind::Off, None)
    }

    /// A sink writing to `writer` (reported as kind `File`), e.g. a buffer in tests.
    pub fn from_writer(writer: impl Write + Send + 'static) -> Self {
        Self::new(AuditSinkKind::File, Some(Box::new(writer)))
    }

    fn new(kind: AuditSinkKind, writer: Option<Box<dyn Write + Send>>) -> Self {
        Self { inner: Arc::new(SinkInner { kind, writer: writer.map(Mutex::new), last_error_log: Mutex::new(None) }) }
    }

    /// The kind of sink.
    pub fn kind(&self) -> AuditSinkKind {
        self.inner.kind
    }

    /// Writes `event` as one line and flushes it, so a crash loses nothing.
    /// Lines from concurrent callers never interleave. A write error is
    /// logged (at most once a minute) and otherwise ignored.
    pub fn emit(&self, event: &AuditEvent) {
        let Some(writer) = &self.inner.writer else { return };
        let mut line = event.to_json_line();
        line.push('\n');
        let result = match writer.lock() {
            Ok(mut w) => w.write_all(line.as_bytes()).and_then(|()| w.flush()),
            Err(_) => Err(std::io::Error::other("audit writer lock poisoned")),
        };
        if let Err(e) = result {
            self.log_error(&e);
        }
    }

    fn log_error(&self, e: &std::io::Error) {
        let Ok(mut last) = self.inner.last_error_log.lock() else { return };
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= ERROR_LOG_INTERVAL) {
            *last = Some(now);
            tracing::error!(error = %e, sink = ?self.inner.kind, "audit: cannot write event (repeats are not logged for a minute)");
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_millis(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn time_format() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn event_has_every_key_with_nulls() {
        let e = AuditEvent::now(EVENT_VERIFY, "ekey-gateway", "success").with_trace_id(None);
        let line = e.to_json_line();
        let positions: Vec<usize> = AUDIT_FIELDS.iter().map(|k| line.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), AUDIT_FIELDS.len());
        assert_eq!(v["reason"], serde_json::Value::Null);
        assert_eq!(v["event"], "token.verify");
    }

    #[test]
    fn concurrent_lines_do_not_interleave() {
        let buf = Shared::default();
        let sink = AuditSink::from_writer(buf.clone());
        std::thread::scope(|s| {
            for t in 0..4 {
                let sink = sink.clone();
                s.spawn(move || {
                    for i in 0..200 {
                        sink.emit(
                            &AuditEvent::now(EVENT_ISSUE, "svc", "issued")
                                .with_sub(format!("{t}-{i}-{}", "x".repeat(300))),
                        );
                    }
                });
            }
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 800);
        for l in lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn off_writes_nothing() {
        let sink = AuditSink::off();
        sink.emit(&AuditEvent::now(EVENT_ISSUE, "svc", "issued"));
        assert_eq!(sink.kind(), AuditSinkKind::Off);
    }
}
