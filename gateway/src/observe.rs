//! Telemetry of the authz listener, per request: the HTTP observation
//! (request id, server span, `http.server.request.duration`) and, for each
//! verify [`Decision`], its span attributes, audit event and log line.
//!
//! Nothing here ever sees a token, a DPoP proof or a header value: a
//! [`Decision`] carries identifiers only.

use crate::authz::Decision;
use ekey_telemetry::audit::{AuditEvent, EVENT_VERIFY};
use ekey_telemetry::{AuditSink, HttpMetrics, RequestObservation, Telemetry, Tracer};
use http::{HeaderMap, Method};
use opentelemetry::KeyValue;

/// `service` of the audit events and the default `service.name`.
pub const SERVICE_NAME: &str = "ekey-gateway";

/// `http.route` of requests to no authz endpoint (a low-cardinality stand-in
/// for whatever path was asked for).
pub const OTHER_ROUTE: &str = "other";

/// Starts request observations and reports decisions. Cheap to share.
#[derive(Debug, Clone)]
pub struct Observer {
    tracer: Tracer,
    http: HttpMetrics,
    audit: AuditSink,
}

impl Observer {
    /// Uses the tracer, a meter with scope `ekey-gateway` and the audit sink of `telemetry`.
    pub fn new(telemetry: &Telemetry) -> Self {
        Self {
            tracer: telemetry.tracer(),
            http: HttpMetrics::new(&telemetry.meter(SERVICE_NAME)),
            audit: telemetry.audit().clone(),
        }
    }

    /// Starts observing one request; `route` is its low-cardinality route.
    pub fn start(&self, method: &Method, route: &str, headers: &HeaderMap) -> RequestObservation {
        RequestObservation::start(&self.tracer, &self.http, method, route, headers)
    }

    /// Reports one verify decision: `ekey.outcome`, `ekey.trace` and
    /// `ekey.template` on the request's span, one `token.verify` audit event
    /// and one log line at `info`.
    pub fn decided(&self, obs: &mut RequestObservation, d: &Decision) {
        let outcome = d.outcome.as_str();
        obs.set_attribute(KeyValue::new("ekey.outcome", outcome));
        if let Some(t) = &d.trace {
            obs.set_attribute(KeyValue::new("ekey.trace", t.clone()));
        }
        if let Some(t) = &d.template {
            obs.set_attribute(KeyValue::new("ekey.template", t.clone()));
        }
        let mut event = AuditEvent::now(EVENT_VERIFY, SERVICE_NAME, outcome)
            .with_client(d.client)
            .with_request_id(obs.request_id())
            .with_trace_id(obs.trace_id());
        event.reason = d.reason().map(str::to_owned);
        event.sub.clone_from(&d.sub);
        event.trace.clone_from(&d.trace);
        event.action.clone_from(&d.action);
        event.template.clone_from(&d.template);
        self.audit.emit(&event);
        tracing::info!(
            outcome,
            sub = d.sub.as_deref(),
            trace = d.trace.as_deref(),
            action = d.action.as_deref(),
            client = %d.client,
            "verify decision"
        );
    }
}
