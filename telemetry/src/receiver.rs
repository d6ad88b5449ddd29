//! In-process OTLP receivers for tests (feature `receiver`).
//!
//! [`OtlpReceiver::start_http`] accepts OTLP/HTTP protobuf (`POST /v1/metrics`,
//! `POST /v1/traces`); [`OtlpReceiver::start_grpc`] serves the OTLP/gRPC
//! `MetricsService` and `TraceService`. Both listen on `127.0.0.1` on a free
//! port, keep everything they receive, and stop when dropped.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ekey_telemetry::TelemetryError> {
//! use ekey_telemetry::receiver::OtlpReceiver;
//! use ekey_telemetry::{AuditConfig, OtlpMode, Telemetry, TelemetryConfig};
//! use std::time::Duration;
//!
//! let receiver = OtlpReceiver::start_http().await?;
//! let cfg = TelemetryConfig {
//!     otlp: OtlpMode::On,
//!     otlp_endpoint: Some(receiver.endpoint()),
//!     otlp_protocol: Some(receiver.protocol()),
//!     metrics_interval_ms: Some(100),
//! };
//! let telemetry = Telemetry::start("svc", "1", &cfg, &AuditConfig { sink: ekey_telemetry::AuditSinkKind::Off, path: None })?;
//! telemetry.meter("test").u64_counter("demo.count").build().add(1, &[]);
//! telemetry.flush().await;
//! let metric = receiver.wait_for_metric("demo.count", Duration::from_secs(5)).await.expect("exported");
//! assert_eq!(metric.points[0].value, Some(1.0));
//! # telemetry.shutdown().await;
//! # Ok(())
//! # }
//! ```

use crate::{OtlpProtocol, TelemetryError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;

const MAX_BODY_BYTES: usize = 16 << 20;
const POLL: Duration = Duration::from_millis(20);

/// One metric as received in one export.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMetric {
    /// The OTel instrument name, e.g. `ekey.issue.tokens`.
    pub name: String,
    /// The unit, e.g. `s` or `{token}`.
    pub unit: String,
    /// `sum`, `gauge`, `histogram`, `exponential_histogram` or `summary`.
    pub kind: &'static str,
    /// The exporting service's resource attributes (`service.name`, ...).
    pub resource: BTreeMap<String, String>,
    /// The data points.
    pub points: Vec<ReceivedPoint>,
}

/// One data point of a [`ReceivedMetric`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// The value of a sum or gauge point.
    pub value: Option<f64>,
    /// The count of a histogram point.
    pub count: Option<u64>,
    /// The sum of a histogram point.
    pub sum: Option<f64>,
    /// The bucket boundaries of a histogram point.
    pub bounds: Vec<f64>,
}

/// One span as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The span name, e.g. `POST /token`.
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The exporting service's resource attributes.
    pub resource: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Store {
    metrics: Vec<ReceivedMetric>,
    spans: Vec<ReceivedSpan>,
}

type Shared = Arc<Mutex<Store>>;

fn lock(store: &Shared) -> MutexGuard<'_, Store> {
    // A panic while holding the lock cannot leave the vectors half-written.
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An OTLP receiver on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    protocol: OtlpProtocol,
    store: Shared,
    server: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Starts an OTLP/HTTP (protobuf) receiver.
    pub async fn start_http() -> Result<Self, TelemetryError> {
        let listener = bind().await?;
        let addr = local_addr(&listener)?;
        let store = Shared::default();
        let server = tokio::spawn(serve_http(listener, store.clone()));
        Ok(Self { addr, protocol: OtlpProtocol::HttpProtobuf, store, server })
    }

    /// Starts an OTLP/gRPC receiver.
    pub async fn start_grpc() -> Result<Self, TelemetryError> {
        let listener = bind().await?;
        let addr = local_addr(&listener)?;
        let store = Shared::default();
        let sink = GrpcSink(store.clone());
        let router = tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(sink.clone()))
            .add_service(TraceServiceServer::new(sink));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                tracing::warn!(error = %e, "OTLP gRPC receiver stopped");
            }
        });
        Ok(Self { addr, protocol: OtlpProtocol::Grpc, store, server })
    }

    /// The base URL to use as `telemetry.otlp_endpoint`, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The protocol this receiver speaks, for `telemetry.otlp_protocol`.
    pub fn protocol(&self) -> OtlpProtocol {
        self.protocol
    }

    /// The distinct names of every metric received so far, sorted.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.store).metrics.iter().map(|m| m.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every metric export received so far, oldest first.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        lock(&self.store).metrics.clone()
    }

    /// Every span received so far, oldest first.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.store).spans.clone()
    }

    /// The latest received export of metric `name`, waiting up to `timeout` for one.
    pub async fn wait_for_metric(&self, name: &str, timeout: Duration) -> Option<ReceivedMetric> {
        self.poll(timeout, |s| s.metrics.iter().rev().find(|m| m.name == name).cloned()).await
    }

    /// The first received span matching `pred`, waiting up to `timeout` for one.
    pub async fn wait_for_span(&self, pred: impl Fn(&ReceivedSpan) -> bool, timeout: Duration) -> Option<ReceivedSpan> {
        self.poll(timeout, |s| s.spans.iter().find(|sp| pred(sp)).cloned()).await
    }

    async fn poll<T>(&self, timeout: Duration, find: impl Fn(&Store) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = find(&lock(&self.store)) {
                return Some(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn bind() -> Result<tokio::net::TcpListener, TelemetryError> {
    tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| TelemetryError::Receiver(format!("bind: {e}")))
}

fn local_addr(l: &tokio::net::TcpListener) -> Result<SocketAddr, TelemetryError> {
    l.local_addr().map_err(|e| TelemetryError::Receiver(format!("local address: {e}")))
}

async fn serve_http(listener: tokio::net::TcpListener, store: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle_http(req, store.clone()));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

async fn handle_http(
    req: hyper::Request<hyper::body::Incoming>,
    store: Shared,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(http::StatusCode::BAD_REQUEST)),
    };
    let reply = match path.as_str() {
        "/v1/metrics" => ExportMetricsServiceRequest::decode(body).map(|r| {
            record_metrics(&store, r);
            ExportMetricsServiceResponse::default().encode_to_vec()
        }),
        "/v1/traces" => ExportTraceServiceRequest::decode(body).map(|r| {
            record_spans(&store, r);
            ExportTraceServiceResponse::default().encode_to_vec()
        }),
        _ => return Ok(status(http::StatusCode::NOT_FOUND)),
    };
    Ok(match reply {
        Ok(bytes) => {
            let mut resp = hyper::Response::new(Full::new(Bytes::from(bytes)));
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-protobuf"));
            resp
        }
        Err(_) => status(http::StatusCode::BAD_REQUEST),
    })
}

fn status(code: http::StatusCode) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

#[derive(Debug, Clone)]
struct GrpcSink(Shared);

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        record_metrics(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record_spans(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn record_metrics(store: &Shared, req: ExportMetricsServiceRequest) {
    let mut received = Vec::new();
    for rm in req.resource_metrics {
        let resource = rm.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let (kind, points) = match m.data {
                    Some(metric::Data::Sum(s)) => ("sum", s.data_points.iter().map(number_point).collect()),
                    Some(metric::Data::Gauge(g)) => ("gauge", g.data_points.iter().map(number_point).collect()),
                    Some(metric::Data::Histogram(h)) => (
                        "histogram",
                        h.data_points
                            .iter()
                            .map(|p| ReceivedPoint {
                                attributes: attributes(&p.attributes),
                                value: None,
                                count: Some(p.count),
                                sum: p.sum,
                                bounds: p.explicit_bounds.clone(),
                            })
                            .collect(),
                    ),
                    Some(metric::Data::ExponentialHistogram(_)) => ("exponential_histogram", Vec::new()),
                    Some(metric::Data::Summary(_)) => ("summary", Vec::new()),
                    None => ("none", Vec::new()),
                };
                received.push(ReceivedMetric { name: m.name, unit: m.unit, kind, resource: resource.clone(), points });
            }
        }
    }
    lock(store).metrics.extend(received);
}

fn number_point(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> ReceivedPoint {
    #[allow(clippy::cast_precision_loss)] // test values are small
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    };
    ReceivedPoint { attributes: attributes(&p.attributes), value, count: None, sum: None, bounds: Vec::new() }
}

fn record_spans(store: &Shared, req: ExportTraceServiceRequest) {
    let mut received = Vec::new();
    for rs in req.resource_spans {
        let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let kind = match s.kind {
                    1 => "internal",
                    2 => "server",
                    3 => "client",
                    4 => "producer",
                    5 => "consumer",
                    _ => "unspecified",
                };
                let status = match s.status.map(|st| st.code) {
                    Some(1) => "ok",
                    Some(2) => "error",
                    _ => "unset",
                };
                received.push(ReceivedSpan {
                    name: s.name,
                    kind,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                    attributes: attributes(&s.attributes),
                    status,
                    resource: resource.clone(),
                });
            }
        }
    }
    lock(store).spans.extend(received);
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `promtool check metrics` on Prometheus text: `Ok` when promtool
/// accepts it without a single lint warning, else what promtool said (or that
/// promtool is missing: it comes with the Debian package `prometheus`).
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("promtool not runnable ({e}): install the Debian package prometheus (scripts/test does)")
        })?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("promtool: {e}"))?;
    if let Some(Err(e)) = written {
        return Err(format!("promtool: cannot write its input: {e}"));
    }
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // promtool exits 0 on lint warnings too; none are wanted.
    if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics: {}\n{report}", out.status))
    }
}
