//! [`Telemetry`]: the meter and tracer providers of one service, their
//! exporters, and its audit sink.

use crate::audit::AuditSink;
use crate::config::{process_env, AuditConfig, OtlpProtocol, SignalSettings, TelemetryConfig};
use crate::http::DURATION_BUCKETS;
use crate::otlp_http::OtlpHttpClient;
use crate::TelemetryError;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::trace::TracerProvider;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{Aggregation, Instrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::Arc;
use std::time::Duration;

/// The tracer handed out by [`Telemetry::tracer`].
pub type Tracer = opentelemetry_sdk::trace::SdkTracer;

/// The `Content-Type` of [`Telemetry::prometheus_text`]: text exposition format 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long [`Telemetry::flush`] and [`Telemetry::shutdown`] wait for exporters.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The telemetry of one service: meters, a tracer, Prometheus text and the
/// audit sink. Cheap to clone; all clones share the same providers.
///
/// No global provider is installed, so several instances can live in one
/// process (as tests do); pass the instance (or what it hands out) to the
/// code that records.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    meter_provider: SdkMeterProvider,
    tracer_provider: SdkTracerProvider,
    tracer: Tracer,
    registry: prometheus::Registry,
    audit: AuditSink,
    otlp_metrics: Option<String>,
    otlp_traces: Option<String>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("otlp_metrics", &self.inner.otlp_metrics)
            .field("otlp_traces", &self.inner.otlp_traces)
            .field("audit", &self.inner.audit)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the providers and exporters, and opens the audit sink.
    ///
    /// Must be called inside a tokio runtime: OTLP export runs on it.
    /// `service_name` is the default `service.name` (`OTEL_SERVICE_NAME`
    /// wins), `service_version` the `service.version`; attributes from
    /// `OTEL_RESOURCE_ATTRIBUTES` are added. Every histogram whose unit is
    /// `s` gets the bucket boundaries of [`DURATION_BUCKETS`]. Fails when a field or `OTEL_*`
    /// variable is invalid, the audit file cannot be opened, or an exporter
    /// cannot be built. Nothing is sent at start, so an unreachable collector
    /// is not an error here (exports log a warning and are retried next time).
    pub fn start(
        service_name: &str,
        service_version: &str,
        cfg: &TelemetryConfig,
        audit: &AuditConfig,
    ) -> Result<Telemetry, TelemetryError> {
        let settings = cfg.resolve(&process_env)?;
        let audit = AuditSink::from_config(audit)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::config("telemetry", "Telemetry::start must be called inside a tokio runtime"));
        }
        let resource = resource(service_name, service_version);

        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| exporter_error("Prometheus", e))?;
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_view(seconds_buckets)
            .with_reader(prometheus);
        if let Some(m) = &settings.metrics {
            let exporter = metric_exporter(m)?;
            meters = meters.with_reader(PeriodicReader::builder(exporter).with_interval(settings.interval).build());
        }

        let mut tracers = SdkTracerProvider::builder().with_resource(resource);
        if let Some(t) = &settings.traces {
            tracers = tracers.with_span_processor(BatchSpanProcessor::builder(span_exporter(t)?).build());
        }
        let tracer_provider = tracers.build();
        let scope =
            InstrumentationScope::builder(service_name.to_owned()).with_version(service_version.to_owned()).build();
        let tracer = tracer_provider.tracer_with_scope(scope);

        Ok(Telemetry {
            inner: Arc::new(Inner {
                meter_provider: meters.build(),
                tracer_provider,
                tracer,
                registry,
                audit,
                otlp_metrics: settings.metrics.map(|m| m.endpoint),
                otlp_traces: settings.traces.map(|t| t.endpoint),
            }),
        })
    }

    /// A meter for instrumentation scope `scope` (e.g. `"ekey-issuer"`).
    pub fn meter(&self, scope: &'static str) -> Meter {
        self.inner.meter_provider.meter(scope)
    }

    /// The service's tracer.
    pub fn tracer(&self) -> Tracer {
        self.inner.tracer.clone()
    }

    /// The meter provider, for code that wants to build its own meters.
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.inner.meter_provider
    }

    /// Every metric in Prometheus text exposition format 0.0.4
    /// ([`PROMETHEUS_CONTENT_TYPE`]), for `GET /metrics`.
    pub fn prometheus_text(&self) -> Result<String, TelemetryError> {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut out)
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        String::from_utf8(out).map_err(|e| TelemetryError::Prometheus(e.to_string()))
    }

    /// The audit sink.
    pub fn audit(&self) -> &AuditSink {
        &self.inner.audit
    }

    /// The OTLP endpoints metrics and traces go to, when exported.
    pub fn otlp_endpoints(&self) -> (Option<&str>, Option<&str>) {
        (self.inner.otlp_metrics.as_deref(), self.inner.otlp_traces.as_deref())
    }

    /// Exports everything recorded so far, waiting at most [`SHUTDOWN_TIMEOUT`].
    /// Failures are logged, never returned.
    pub async fn flush(&self) {
        let inner = self.inner.clone();
        blocking("flush", move || {
            if let Err(e) = inner.tracer_provider.force_flush() {
                tracing::warn!(error = %e, "telemetry: flushing spans failed");
            }
            if let Err(e) = inner.meter_provider.force_flush() {
                tracing::warn!(error = %e, "telemetry: flushing metrics failed");
            }
        })
        .await;
    }

    /// Exports what is left and stops the exporters, waiting at most
    /// [`SHUTDOWN_TIMEOUT`] for each provider. Failures are logged. Call it
    /// once, when the service stops; recording afterwards is a no-op.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        blocking("shutdown", move || {
            if let Err(e) = inner.tracer_provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %e, "telemetry: stopping the span exporter failed");
            }
            if let Err(e) = inner.meter_provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %e, "telemetry: stopping the metric exporters failed");
            }
        })
        .await;
    }
}

/// Runs the SDK's blocking flush off the runtime's threads, so that the
/// exports it waits for (which run on this runtime) can make progress even on
/// a current-thread runtime.
async fn blocking(what: &'static str, f: impl FnOnce() + Send + 'static) {
    let task = tokio::task::spawn_blocking(f);
    match tokio::time::timeout(SHUTDOWN_TIMEOUT * 2 + Duration::from_secs(1), task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "telemetry: {what} failed"),
        Err(_) => tracing::warn!("telemetry: {what} did not finish in time"),
    }
}

fn resource(service_name: &str, service_version: &str) -> Resource {
    let mut builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes([
            KeyValue::new("service.name", service_name.to_owned()),
            KeyValue::new("service.version", service_version.to_owned()),
        ])
        .with_detector(Box::new(EnvResourceDetector::new()));
    if let Some(name) = process_env("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

/// Gives every histogram in seconds the HTTP semantic-convention buckets;
/// the SDK's default buckets (0 to 10000) suit milliseconds.
fn seconds_buckets(i: &Instrument) -> Option<Stream> {
    if i.kind() != InstrumentKind::Histogram || i.unit() != "s" {
        return None;
    }
    let aggregation =
        Aggregation::ExplicitBucketHistogram { boundaries: DURATION_BUCKETS.to_vec(), record_min_max: true };
    Stream::builder().with_aggregation(aggregation).build().ok()
}

fn exporter_error(what: &'static str, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Exporter { what, message: e.to_string() }
}

fn tls_for(endpoint: &str) -> Option<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig> {
    endpoint
        .starts_with("https://")
        .then(|| opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_native_roots())
}

fn metric_exporter(s: &SignalSettings) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let built = match s.protocol {
        OtlpProtocol::HttpProtobuf => {
            let client = OtlpHttpClient::new(&s.endpoint, s.timeout).map_err(|e| exporter_error("OTLP metrics", e))?;
            builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&s.endpoint)
                .with_timeout(s.timeout)
                .with_http_client(client)
                .build()
        }
        OtlpProtocol::Grpc => {
            let mut b = builder
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_endpoint(&s.endpoint)
                .with_timeout(s.timeout);
            if let Some(tls) = tls_for(&s.endpoint) {
                b = b.with_tls_config(tls);
            }
            b.build()
        }
    };
    built.map_err(|e| exporter_error("OTLP metrics", e))
}

fn span_exporter(s: &SignalSettings) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match s.protocol {
        OtlpProtocol::HttpProtobuf => {
            let client = OtlpHttpClient::new(&s.endpoint, s.timeout).map_err(|e| exporter_error("OTLP traces", e))?;
            builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&s.endpoint)
                .with_timeout(s.timeout)
                .with_http_client(client)
                .build()
        }
        OtlpProtocol::Grpc => {
            let mut b = builder
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_endpoint(&s.endpoint)
                .with_timeout(s.timeout);
            if let Some(tls) = tls_for(&s.endpoint) {
                b = b.with_tls_config(tls);
            }
            b.build()
        }
    };
    built.map_err(|e| exporter_error("OTLP traces", e))
}
