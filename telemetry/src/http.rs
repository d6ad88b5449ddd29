//! Per-request observation for the issuer's and gateway's hyper services:
//! request ids, the `http.server.request.duration` histogram and a server
//! span continuing the caller's W3C trace context.
//!
//! # Example
//!
//! ```
//! # async fn demo() -> Result<(), ekey_telemetry::TelemetryError> {
//! use ekey_telemetry::http::{HttpMetrics, RequestObservation, REQUEST_ID_HEADER};
//! use ekey_telemetry::{AuditConfig, Telemetry, TelemetryConfig};
//! use opentelemetry::KeyValue;
//!
//! let telemetry = Telemetry::start("ekey-issuer", "0.1.0", &TelemetryConfig::default(), &AuditConfig::default())?;
//! let http_metrics = HttpMetrics::new(&telemetry.meter("ekey-issuer"));
//! let tracer = telemetry.tracer();
//!
//! // Per request:
//! let request = http::Request::post("/token").body(()).unwrap();
//! let mut obs = RequestObservation::start(&tracer, &http_metrics, request.method(), "/token", request.headers());
//! // ... handle it, then record the decision:
//! obs.set_attribute(KeyValue::new("ekey.outcome", "issued"));
//! let mut response = http::Response::new(());
//! response.headers_mut().insert(REQUEST_ID_HEADER, obs.request_id_header());
//! obs.finish(response.status());
//! # telemetry.shutdown().await;
//! # Ok(())
//! # }
//! ```

use crate::provider::Tracer;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::time::Instant;

/// `x-request-id`: read from requests, echoed on responses.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The OTel instrument name of the request duration histogram.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http.server.request.duration";

/// Bucket boundaries (seconds) the HTTP semantic conventions recommend.
pub const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

const MAX_REQUEST_ID_LEN: usize = 64;

/// The incoming `x-request-id` when it is 1 to 64 characters of
/// `[A-Za-z0-9._-]`, else a new one: 128 random bits as 32 hex digits.
pub fn request_id(headers: &HeaderMap) -> String {
    let incoming = headers.get(&REQUEST_ID_HEADER).and_then(|v| v.to_str().ok());
    match incoming {
        Some(id) if valid_request_id(id) => id.to_owned(),
        _ => new_request_id(),
    }
}

fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: a unique-enough id from the clock beats no id.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The method as the semantic conventions want it: a known method's name,
/// else `_OTHER` (so arbitrary methods cannot blow up metric cardinality).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The `http.server.request.duration` histogram (seconds) with attributes
/// `http.request.method`, `http.route` and `http.response.status_code`.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    duration: Histogram<f64>,
}

impl HttpMetrics {
    /// Creates the histogram on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let duration = meter
            .f64_histogram(HTTP_SERVER_REQUEST_DURATION)
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        Self { duration }
    }

    /// Records one request. `route` must be a low-cardinality template
    /// (e.g. `/token`, `/v1/doors/{id}`), never the raw path.
    pub fn record(&self, method: &Method, route: &str, status: StatusCode, seconds: f64) {
        self.duration.record(
            seconds,
            &[
                KeyValue::new("http.request.method", method_label(method)),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            ],
        );
    }
}

/// One request in flight: its id, its server span and its start time.
///
/// Create it when the request arrives ([`RequestObservation::start`]), add
/// decision attributes as they become known, and call
/// [`RequestObservation::finish`] with the response status. If it is dropped
/// without `finish` (e.g. the client went away), the span still ends but no
/// duration is recorded.
#[derive(Debug)]
pub struct RequestObservation {
    cx: Context,
    metrics: HttpMetrics,
    method: Method,
    route: String,
    request_id: String,
    started: Instant,
}

impl RequestObservation {
    /// Starts a `SpanKind::Server` span named `"{METHOD} {route}"`, child of
    /// the `traceparent`/`tracestate` in `headers` if any, and picks the
    /// request id ([`request_id`]). `route` is the low-cardinality route
    /// template.
    pub fn start(tracer: &Tracer, metrics: &HttpMetrics, method: &Method, route: &str, headers: &HeaderMap) -> Self {
        let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
        let request_id = request_id(headers);
        let label = method_label(method);
        let name = if label == "_OTHER" { format!("HTTP {route}") } else { format!("{label} {route}") };
        let mut attributes = vec![
            KeyValue::new("http.request.method", label),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("ekey.request_id", request_id.clone()),
        ];
        if label == "_OTHER" {
            attributes.push(KeyValue::new("http.request.method_original", method.as_str().to_owned()));
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Self {
            cx: parent.with_span(span),
            metrics: metrics.clone(),
            method: method.clone(),
            route: route.to_owned(),
            request_id,
            started: Instant::now(),
        }
    }

    /// The request id, to log, audit and echo in [`REQUEST_ID_HEADER`].
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The request id as a header value for [`REQUEST_ID_HEADER`].
    pub fn request_id_header(&self) -> HeaderValue {
        // Only [A-Za-z0-9._-] or hex digits ever get here.
        HeaderValue::from_str(&self.request_id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    /// Adds an attribute to the span, e.g. `ekey.outcome`, `ekey.trace`, `ekey.template`.
    pub fn set_attribute(&mut self, attribute: KeyValue) {
        self.cx.span().set_attribute(attribute);
    }

    /// The OTel trace id as 32 hex digits, or `None` if there is no valid trace.
    pub fn trace_id(&self) -> Option<String> {
        let span = self.cx.span();
        let cx = span.span_context();
        cx.is_valid().then(|| cx.trace_id().to_string())
    }

    /// A context holding this span, to parent child spans (e.g. a KMS call) on.
    pub fn context(&self) -> Context {
        self.cx.clone()
    }

    /// Records the duration histogram and ends the span with
    /// `http.response.status_code`; status `Error` for 5xx.
    pub fn finish(self, status: StatusCode) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.metrics.record(&self.method, &self.route, status, seconds);
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
        if status.is_server_error() {
            span.set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_str(id).unwrap());
        h
    }

    fn is_generated(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    #[test]
    fn request_id_keeps_good_incoming_ids() {
        assert_eq!(request_id(&headers("abc-DEF_1.2")), "abc-DEF_1.2");
        let max = "a".repeat(64);
        assert_eq!(request_id(&headers(&max)), max);
    }

    #[test]
    fn request_id_replaces_bad_or_missing_ids() {
        for bad in ["", "a b", "a/b", "ä", "{x}", &"a".repeat(65)] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID_HEADER, HeaderValue::from_bytes(bad.as_bytes()).unwrap());
            let id = request_id(&h);
            assert!(is_generated(&id), "{bad:?} -> {id}");
        }
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert!(is_generated(&a) && is_generated(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn methods_are_normalised() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").unwrap()), "_OTHER");
    }
}
