//! The KMS signer's instruments: `ekey.kms.sign.duration` (seconds, by
//! `ekey.result` = `ok` | `error`) and `ekey.kms.sign.errors` (by
//! `error.type` = `throttled` | `timeout` | `unavailable` | `rejected` |
//! `circuit_open`).
//!
//! A `Sign` call abandoned by its caller (the token endpoint's
//! `signing_key.timeout`) is recorded as a `timeout` when its future is
//! dropped. A call the circuit breaker refuses makes no request, so it is
//! counted as `circuit_open` without a duration.

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use std::time::Instant;

/// The OTel name of the duration histogram.
pub const KMS_SIGN_DURATION: &str = "ekey.kms.sign.duration";
/// The OTel name of the error counter.
pub const KMS_SIGN_ERRORS: &str = "ekey.kms.sign.errors";

/// Why a `Sign` call failed, as the `error.type` attribute says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// KMS throttled the call (HTTP 429, `ThrottlingException`), retries included.
    Throttled,
    /// No answer in time.
    Timeout,
    /// KMS could not be reached or answered with a server-side error.
    Unavailable,
    /// KMS refused the call for good (access denied, key disabled), or its
    /// answer was unusable.
    Rejected,
    /// The circuit breaker refused the call; no request was made.
    CircuitOpen,
}

impl FailureKind {
    /// Every kind, in the order above.
    pub(crate) const ALL: [Self; 5] =
        [Self::Throttled, Self::Timeout, Self::Unavailable, Self::Rejected, Self::CircuitOpen];

    /// The `error.type` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// The instruments, created once on the embedder's meter. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct KmsMetrics {
    duration: Histogram<f64>,
    errors: Counter<u64>,
}

impl KmsMetrics {
    /// Creates the instruments on `meter`.
    /// Every `error.type` series starts at 0, so the first failure already
    /// shows as an increase to `increase()`/`rate()` in alert rules.
    pub(crate) fn new(meter: &Meter) -> Self {
        let metrics = Self {
            duration: meter
                .f64_histogram(KMS_SIGN_DURATION)
                .with_unit("s")
                .with_description("Duration of KMS Sign calls, retries included.")
                .build(),
            errors: meter
                .u64_counter(KMS_SIGN_ERRORS)
                .with_unit("{error}")
                .with_description("Failed KMS Sign calls, by error type.")
                .build(),
        };
        for kind in FailureKind::ALL {
            metrics.errors.add(0, &[KeyValue::new("error.type", kind.as_str())]);
        }
        metrics
    }

    /// Counts one failure (for a refusal without a call: `circuit_open`).
    pub(crate) fn count_error(&self, kind: FailureKind) {
        self.errors.add(1, &[KeyValue::new("error.type", kind.as_str())]);
    }
}

/// Times one call; records it when told the outcome, or as a timeout when
/// dropped first.
#[derive(Debug)]
pub(crate) struct CallTimer<'a> {
    metrics: Option<&'a KmsMetrics>,
    started: Instant,
    done: bool,
}

impl<'a> CallTimer<'a> {
    /// Starts timing (a no-op without instruments).
    pub(crate) fn start(metrics: Option<&'a KmsMetrics>) -> Self {
        Self { metrics, started: Instant::now(), done: false }
    }

    /// The call signed.
    pub(crate) fn succeeded(mut self) {
        self.record(None);
    }

    /// The call failed.
    pub(crate) fn failed(mut self, kind: FailureKind) {
        self.record(Some(kind));
    }

    fn record(&mut self, failure: Option<FailureKind>) {
        self.done = true;
        let Some(m) = self.metrics else { return };
        let result = if failure.is_some() { "error" } else { "ok" };
        m.duration.record(self.started.elapsed().as_secs_f64(), &[KeyValue::new("ekey.result", result)]);
        if let Some(kind) = failure {
            m.count_error(kind);
        }
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record(Some(FailureKind::Timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_telemetry::{AuditConfig, AuditSinkKind, OtlpMode, Telemetry, TelemetryConfig};

    /// Before any failure, `/metrics` already has every `error.type` at 0.
    #[tokio::test]
    async fn every_error_type_starts_at_zero() {
        let cfg = TelemetryConfig { otlp: OtlpMode::Off, ..TelemetryConfig::default() };
        let telemetry =
            Telemetry::start("test", "0", &cfg, &AuditConfig { sink: AuditSinkKind::Off, path: None }).unwrap();
        let _metrics = KmsMetrics::new(&telemetry.meter("test"));
        let text = telemetry.prometheus_text().unwrap();
        for kind in FailureKind::ALL {
            let label = format!("error_type=\"{}\"", kind.as_str());
            assert!(
                text.lines()
                    .any(|l| l.starts_with("ekey_kms_sign_errors_total{") && l.contains(&label) && l.ends_with(" 0")),
                "{label}:\n{text}"
            );
        }
        telemetry.shutdown().await;
    }
}
