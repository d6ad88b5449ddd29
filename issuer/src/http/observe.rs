//! Per-request observation on both listeners: a request id (echoed as
//! `x-request-id`), the `http.server.request.duration` histogram, an OTel
//! server span named `"{METHOD} {route}"` continuing the caller's
//! `traceparent`, and a `tracing` span `request` carrying `request_id` (and
//! the OTel `trace_id`), so every log line of the request names it.
//!
//! Routes are low-cardinality labels chosen by each listener: the paths it
//! serves, and `other` for anything else.

use super::Body;
use ekey_telemetry::http::method_label;
use ekey_telemetry::{HttpMetrics, RequestObservation, Telemetry, Tracer, REQUEST_ID_HEADER};
use http::{HeaderMap, Method, Response};
use tracing::Span;

/// The route label of a path no listener serves.
pub(crate) const OTHER_ROUTE: &str = "other";

/// Starts request observations on one service's tracer and meter. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Observer {
    tracer: Tracer,
    metrics: HttpMetrics,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Observer {
    /// The observer of `telemetry`'s service.
    pub(crate) fn new(telemetry: &Telemetry) -> Self {
        Self { tracer: telemetry.tracer(), metrics: HttpMetrics::new(&telemetry.meter(crate::SERVICE_NAME)) }
    }

    /// Starts observing a request to `route`; the `tracing` span is for the
    /// request's future (`Instrument`) and for [`finish`].
    pub(crate) fn start(
        &self,
        method: &Method,
        route: &'static str,
        headers: &HeaderMap,
    ) -> (RequestObservation, Span) {
        let obs = RequestObservation::start(&self.tracer, &self.metrics, method, route, headers);
        let span = tracing::info_span!(
            "request",
            request_id = %obs.request_id(),
            method = method_label(method),
            route,
            trace_id = tracing::field::Empty,
        );
        if let Some(id) = obs.trace_id() {
            span.record("trace_id", id.as_str());
        }
        (obs, span)
    }
}

/// Echoes the request id, records the duration and ends the server span.
pub(crate) fn finish(obs: RequestObservation, span: &Span, mut res: Response<Body>) -> Response<Body> {
    res.headers_mut().insert(REQUEST_ID_HEADER, obs.request_id_header());
    let status = res.status();
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "request answered"));
    obs.finish(status);
    res
}
