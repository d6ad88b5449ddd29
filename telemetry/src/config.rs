//! The `[telemetry]` and `[audit]` sections of the issuer's and gateway's
//! config files, and how they combine with the standard `OTEL_*` variables.
//!
//! Unknown fields are refused, every field has a default, and every error
//! names the field (or environment variable) it is about.

use crate::TelemetryError;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL for every signal.
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: full URL for metrics.
pub const ENV_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: full URL for traces.
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`.
pub const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`: the protocol for metrics only.
pub const ENV_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: the protocol for traces only.
pub const ENV_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TIMEOUT`: export timeout in milliseconds.
pub const ENV_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`: export timeout for metrics, in milliseconds.
pub const ENV_METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`: export timeout for traces, in milliseconds.
pub const ENV_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between metric exports.
pub const ENV_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";

const DEFAULT_INTERVAL_MS: u64 = 60_000;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=86_400_000;

/// The `[audit]` section: where audit events go.
///
/// ```toml
/// [audit]
/// sink = "file"
/// path = "/var/log/ekey/audit.jsonl"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Where events are written. Defaults to `stdout`.
    #[serde(default)]
    pub sink: AuditSinkKind,
    /// The file for `sink = "file"`, opened for appending and created with
    /// mode 0600. Required when `sink = "file"`, refused otherwise. No default.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl AuditConfig {
    /// Checks that `path` is given exactly when `sink = "file"`.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        match (self.sink, &self.path) {
            (AuditSinkKind::File, None) => {
                Err(TelemetryError::config("audit.path", "required when audit.sink = \"file\""))
            }
            (AuditSinkKind::File, Some(p)) if p.as_os_str().is_empty() => {
                Err(TelemetryError::config("audit.path", "must not be empty"))
            }
            (AuditSinkKind::Stdout | AuditSinkKind::Off, Some(_)) => {
                Err(TelemetryError::config("audit.path", "only allowed when audit.sink = \"file\""))
            }
            _ => Ok(()),
        }
    }
}

/// Where audit events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AuditSinkKind {
    /// Standard output, one JSON object per line (`"stdout"`). The default.
    #[default]
    Stdout,
    /// An append-only file (`"file"`), see [`AuditConfig::path`].
    File,
    /// Nowhere (`"off"`).
    Off,
}

impl TryFrom<String> for AuditSinkKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "stdout" => Ok(Self::Stdout),
            "file" => Ok(Self::File),
            "off" => Ok(Self::Off),
            other => Err(format!("audit.sink: expected \"stdout\", \"file\" or \"off\", got {:?}", short(other))),
        }
    }
}

/// The `[telemetry]` section: OTLP export of metrics and traces.
///
/// Prometheus text on the admin listener is always available; this section
/// only decides whether metrics and traces are also pushed over OTLP. The
/// standard variables `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`
/// (and their per-signal forms), `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` are honoured as well.
///
/// ```toml
/// [telemetry]
/// otlp = "on"
/// otlp_endpoint = "http://otel-collector:4318"
/// otlp_protocol = "http/protobuf"
/// metrics_interval_ms = 15000
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Whether to export over OTLP. Defaults to `auto`.
    #[serde(default)]
    pub otlp: OtlpMode,
    /// Base URL of the collector, e.g. `http://127.0.0.1:4318`. For
    /// `http/protobuf` the paths `/v1/metrics` and `/v1/traces` are appended;
    /// for `grpc` it is used as is. Overrides `OTEL_EXPORTER_OTLP_ENDPOINT` and
    /// the per-signal endpoint variables. Defaults to those variables, else
    /// `http://localhost:4318` (`http/protobuf`) or `http://localhost:4317` (`grpc`).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Defaults to `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// (or its per-signal form), else `http/protobuf` as the OTel
    /// specification says.
    #[serde(default)]
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Milliseconds between OTLP metric exports, 10 to 86400000. Defaults to
    /// `OTEL_METRIC_EXPORT_INTERVAL`, else 60000.
    #[serde(default)]
    pub metrics_interval_ms: Option<u64>,
}

/// Whether metrics and traces are exported over OTLP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum OtlpMode {
    /// `"auto"`, the default: a signal (metrics, traces) is exported when
    /// `otlp_endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT` or that signal's
    /// `OTEL_EXPORTER_OTLP_{METRICS,TRACES}_ENDPOINT` is set.
    #[default]
    Auto,
    /// `"on"`: both signals are exported, to the default endpoint if none is set.
    On,
    /// `"off"`: nothing is exported over OTLP.
    Off,
}

impl TryFrom<String> for OtlpMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("telemetry.otlp: expected \"auto\", \"on\" or \"off\", got {:?}", short(other))),
        }
    }
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum OtlpProtocol {
    /// `"grpc"`: OTLP/gRPC, default port 4317.
    Grpc,
    /// `"http/protobuf"`: OTLP/HTTP with protobuf bodies, default port 4318.
    HttpProtobuf,
}

impl OtlpProtocol {
    fn parse(field: &str, s: &str) -> Result<Self, TelemetryError> {
        match s {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(TelemetryError::config(
                field,
                format!("expected \"grpc\" or \"http/protobuf\", got {:?}", short(other)),
            )),
        }
    }
}

impl TryFrom<String> for OtlpProtocol {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse("telemetry.otlp_protocol", &s).map_err(|e| e.to_string())
    }
}

impl TelemetryConfig {
    /// Checks the fields and the `OTEL_*` variables they combine with.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        self.resolve(&process_env).map(|_| ())
    }

    /// The effective export settings, reading variables through `env`
    /// (which returns `None` for unset or empty variables).
    pub(crate) fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<OtlpSettings, TelemetryError> {
        let configured = match self.otlp_endpoint.as_deref() {
            Some(e) => Some(check_url("telemetry.otlp_endpoint", e)?),
            None => None,
        };
        let interval_ms = match self.metrics_interval_ms {
            Some(ms) => check_interval("telemetry.metrics_interval_ms", ms)?,
            None => match env(ENV_METRIC_EXPORT_INTERVAL) {
                Some(v) => {
                    let ms = v.trim().parse::<u64>().map_err(|_| {
                        TelemetryError::config(ENV_METRIC_EXPORT_INTERVAL, "expected a number of milliseconds")
                    })?;
                    check_interval(ENV_METRIC_EXPORT_INTERVAL, ms)?
                }
                None => DEFAULT_INTERVAL_MS,
            },
        };
        let signal = |endpoint_var: &'static str, protocol_var: &'static str, timeout_var: &'static str, path: &str| {
            self.resolve_signal(env, configured.as_deref(), endpoint_var, protocol_var, timeout_var, path)
        };
        Ok(OtlpSettings {
            metrics: signal(ENV_METRICS_ENDPOINT, ENV_METRICS_PROTOCOL, ENV_METRICS_TIMEOUT, "/v1/metrics")?,
            traces: signal(ENV_TRACES_ENDPOINT, ENV_TRACES_PROTOCOL, ENV_TRACES_TIMEOUT, "/v1/traces")?,
            interval: Duration::from_millis(interval_ms),
        })
    }

    fn resolve_signal(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        configured: Option<&str>,
        endpoint_var: &'static str,
        protocol_var: &'static str,
        timeout_var: &'static str,
        path: &str,
    ) -> Result<Option<SignalSettings>, TelemetryError> {
        let protocol = match self.otlp_protocol {
            Some(p) => p,
            None => match env(protocol_var)
                .map(|v| (protocol_var, v))
                .or_else(|| env(ENV_PROTOCOL).map(|v| (ENV_PROTOCOL, v)))
            {
                Some((var, v)) => OtlpProtocol::parse(var, v.trim())?,
                None => OtlpProtocol::HttpProtobuf,
            },
        };
        let with_path = |base: &str| match protocol {
            OtlpProtocol::HttpProtobuf => format!("{}{path}", base.trim_end_matches('/')),
            OtlpProtocol::Grpc => base.to_owned(),
        };
        let endpoint = if let Some(base) = configured {
            Some(with_path(base))
        } else if let Some(full) = env(endpoint_var) {
            Some(check_url(endpoint_var, &full)?)
        } else if let Some(base) = env(ENV_ENDPOINT) {
            Some(with_path(&check_url(ENV_ENDPOINT, &base)?))
        } else {
            None
        };
        let endpoint = match (self.otlp, endpoint) {
            (OtlpMode::Off, _) | (OtlpMode::Auto, None) => return Ok(None),
            (_, Some(e)) => e,
            (OtlpMode::On, None) => match protocol {
                OtlpProtocol::HttpProtobuf => format!("http://localhost:4318{path}"),
                OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
            },
        };
        let timeout_ms =
            match env(timeout_var).map(|v| (timeout_var, v)).or_else(|| env(ENV_TIMEOUT).map(|v| (ENV_TIMEOUT, v))) {
                Some((var, v)) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| TelemetryError::config(var, "expected a positive number of milliseconds"))?,
                None => DEFAULT_TIMEOUT_MS,
            };
        Ok(Some(SignalSettings { protocol, endpoint, timeout: Duration::from_millis(timeout_ms) }))
    }
}

/// Export settings after combining the config file with the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OtlpSettings {
    /// Metric export, when on.
    pub metrics: Option<SignalSettings>,
    /// Span export, when on.
    pub traces: Option<SignalSettings>,
    /// Between metric exports.
    pub interval: Duration,
}

/// One signal's exporter settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignalSettings {
    /// The transport.
    pub protocol: OtlpProtocol,
    /// The full URL (with `/v1/...` for HTTP).
    pub endpoint: String,
    /// Per export.
    pub timeout: Duration,
}

/// Reads a variable of this process; empty counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn check_url(field: &str, url: &str) -> Result<String, TelemetryError> {
    let url = url.trim();
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && url.parse::<http::Uri>().is_ok() => Ok(url.to_owned()),
        _ => Err(TelemetryError::config(field, format!("{:?} is not an http:// or https:// URL", short(url)))),
    }
}

fn check_interval(field: &str, ms: u64) -> Result<u64, TelemetryError> {
    if INTERVAL_RANGE_MS.contains(&ms) {
        Ok(ms)
    } else {
        Err(TelemetryError::config(
            field,
            format!("{ms} is out of range ({}..={} milliseconds)", INTERVAL_RANGE_MS.start(), INTERVAL_RANGE_MS.end()),
        ))
    }
}

/// Keeps echoed input short in error messages.
fn short(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}...", s.chars().take(64).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn parse(s: &str) -> Result<TelemetryConfig, String> {
        toml::from_str::<TelemetryConfig>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_auto_and_off_without_variables() {
        let c = parse("").unwrap();
        assert_eq!(c, TelemetryConfig::default());
        let s = c.resolve(&env_of(&[])).unwrap();
        assert_eq!(s.metrics, None);
        assert_eq!(s.traces, None);
        assert_eq!(s.interval, Duration::from_millis(60_000));
        assert_eq!(AuditConfig::default().sink, AuditSinkKind::Stdout);
    }

    #[test]
    fn auto_follows_the_variables_per_signal() {
        let c = TelemetryConfig::default();
        let s = c.resolve(&env_of(&[(ENV_METRICS_ENDPOINT, "http://m:4318/custom")])).unwrap();
        assert_eq!(s.metrics.unwrap().endpoint, "http://m:4318/custom");
        assert_eq!(s.traces, None);
        let s = c.resolve(&env_of(&[(ENV_ENDPOINT, "http://c:4318/"), (ENV_TIMEOUT, "2500")])).unwrap();
        let m = s.metrics.unwrap();
        assert_eq!(m.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(m.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(m.timeout, Duration::from_millis(2500));
        assert_eq!(s.traces.unwrap().endpoint, "http://c:4318/v1/traces");
    }

    #[test]
    fn config_endpoint_wins_and_grpc_keeps_it_as_is() {
        let c = parse("otlp = \"on\"\notlp_endpoint = \"http://127.0.0.1:9\"\notlp_protocol = \"grpc\"\nmetrics_interval_ms = 100")
            .unwrap();
        let s = c.resolve(&env_of(&[(ENV_ENDPOINT, "http://other:1"), (ENV_PROTOCOL, "http/protobuf")])).unwrap();
        let m = s.metrics.unwrap();
        assert_eq!((m.protocol, m.endpoint.as_str()), (OtlpProtocol::Grpc, "http://127.0.0.1:9"));
        assert_eq!(s.interval, Duration::from_millis(100));
    }

    #[test]
    fn on_without_endpoint_uses_the_spec_defaults() {
        let c = parse("otlp = \"on\"").unwrap();
        let s = c.resolve(&env_of(&[])).unwrap();
        assert_eq!(s.metrics.unwrap().endpoint, "http://localhost:4318/v1/metrics");
        let s = c.resolve(&env_of(&[(ENV_PROTOCOL, "grpc")])).unwrap();
        assert_eq!(s.traces.unwrap().endpoint, "http://localhost:4317");
        let off = parse("otlp = \"off\"").unwrap().resolve(&env_of(&[(ENV_ENDPOINT, "http://c:1")])).unwrap();
        assert_eq!((off.metrics, off.traces), (None, None));
    }

    #[test]
    fn errors_name_the_field_or_variable() {
        let e = parse("otlp_protocol = \"http/json\"").unwrap_err();
        assert!(e.contains("telemetry.otlp_protocol: expected \"grpc\" or \"http/protobuf\""), "{e}");
        let e = parse("otlp = \"yes\"").unwrap_err();
        assert!(e.contains("telemetry.otlp: expected"), "{e}");
        let e = parse("otlp_endpont = \"x\"").unwrap_err();
        assert!(e.contains("otlp_endpont"), "{e}");
        let e = toml::from_str::<AuditConfig>("sink = \"syslog\"").unwrap_err().to_string();
        assert!(e.contains("audit.sink: expected"), "{e}");

        let c = parse("otlp_endpoint = \"collector:4317\"").unwrap();
        let e = c.resolve(&env_of(&[])).unwrap_err().to_string();
        assert!(e.starts_with("telemetry.otlp_endpoint: "), "{e}");
        let c = parse("metrics_interval_ms = 0").unwrap();
        let e = c.resolve(&env_of(&[])).unwrap_err().to_string();
        assert!(e.starts_with("telemetry.metrics_interval_ms: "), "{e}");

        let c = TelemetryConfig::default();
        let e = c.resolve(&env_of(&[(ENV_PROTOCOL, "http/json")])).unwrap_err().to_string();
        assert_eq!(e, "OTEL_EXPORTER_OTLP_PROTOCOL: expected \"grpc\" or \"http/protobuf\", got \"http/json\"");
        let e = c.resolve(&env_of(&[(ENV_METRIC_EXPORT_INTERVAL, "soon")])).unwrap_err().to_string();
        assert!(e.starts_with("OTEL_METRIC_EXPORT_INTERVAL: "), "{e}");
        let e = c.resolve(&env_of(&[(ENV_TRACES_ENDPOINT, "ftp://x")])).unwrap_err().to_string();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "), "{e}");
    }

    #[test]
    fn audit_path_goes_with_the_file_sink() {
        let c: AuditConfig = toml::from_str("sink = \"file\"").unwrap();
        assert_eq!(c.validate().unwrap_err().to_string(), "audit.path: required when audit.sink = \"file\"");
        let c: AuditConfig = toml::from_str("sink = \"off\"\npath = \"a\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().starts_with("audit.path: "));
        let c: AuditConfig = toml::from_str("sink = \"file\"\npath = \"audit.jsonl\"").unwrap();
        assert!(c.validate().is_ok());
    }
}
