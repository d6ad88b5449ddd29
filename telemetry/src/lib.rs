//! Telemetry shared by the ekey issuer and gateway: OpenTelemetry metrics and
//! traces (OTLP push and Prometheus text), per-request HTTP observation,
//! audit events and log setup.
//!
//! The verifier library does not depend on this crate; the binaries do.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the `[telemetry]` and `[audit]` config sections |
//! | [`Telemetry`] | providers and exporters of one service; `/metrics` text |
//! | [`http`] | request id, `http.server.request.duration`, server spans |
//! | [`audit`] | one JSON line per issue/verify decision |
//! | [`logging`] | the global `tracing` subscriber |
//! | [`server`] | the HTTP/1.1 accept loop of every listener: connection cap, timeouts, drain |
//! | `receiver` | in-process OTLP receivers for tests (feature `receiver`) |
//!
//! No global OpenTelemetry provider or propagator is installed: code records
//! on the [`Meter`](opentelemetry::metrics::Meter)s and [`Tracer`] it is
//! given, so several services can run in one test process.
//!
//! # Example
//!
//! ```
//! use ekey_telemetry::audit::{AuditEvent, EVENT_ISSUE};
//! use ekey_telemetry::{AuditConfig, Telemetry, TelemetryConfig, PROMETHEUS_CONTENT_TYPE};
//! use opentelemetry::KeyValue;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ekey_telemetry::TelemetryError> {
//! // In main, after logging::init and reading the config file:
//! let cfg: TelemetryConfig = toml::from_str("otlp = \"off\"").unwrap();
//! let telemetry = Telemetry::start("ekey-issuer", "0.1.0", &cfg, &AuditConfig::default())?;
//!
//! let issued = telemetry.meter("ekey-issuer").u64_counter("ekey.issue.tokens").with_unit("{token}").build();
//! issued.add(1, &[KeyValue::new("ekey.template", "door-open"), KeyValue::new("ekey.outcome", "issued")]);
//! telemetry.audit().emit(&AuditEvent::now(EVENT_ISSUE, "ekey-issuer", "issued").with_template("door-open"));
//!
//! // GET /metrics on the admin listener:
//! let body = telemetry.prometheus_text()?;
//! assert!(body.contains("ekey_issue_tokens_total{"));
//! # let _ = PROMETHEUS_CONTENT_TYPE;
//!
//! // On the way out:
//! telemetry.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
mod error;
pub mod http;
pub mod logging;
mod otlp_http;
mod provider;
#[cfg(feature = "receiver")]
pub mod receiver;
pub mod server;

pub use audit::{AuditEvent, AuditSink};
pub use config::{AuditConfig, AuditSinkKind, OtlpMode, OtlpProtocol, TelemetryConfig};
pub use error::TelemetryError;
pub use http::{HttpMetrics, RequestObservation, REQUEST_ID_HEADER};
pub use logging::LogFormat;
pub use provider::{Telemetry, Tracer, PROMETHEUS_CONTENT_TYPE, SHUTDOWN_TIMEOUT};
