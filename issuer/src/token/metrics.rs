//! The token endpoint's instruments: `ekey.issue.tokens` (counter) and
//! `ekey.issue.duration` (histogram, seconds), both by `ekey.template` and
//! `ekey.outcome`.
//!
//! `ekey.outcome` is `issued` or the OAuth error code; `ekey.template` a
//! configured template's name, or [`UNKNOWN_TEMPLATE`] when the request
//! named none that is configured. Both come from bounded sets, so the
//! number of series is bounded by the configuration.

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use std::time::Duration;

/// The OTel name of the decision counter.
pub(crate) const ISSUE_TOKENS: &str = "ekey.issue.tokens";
/// The OTel name of the decision duration histogram.
pub(crate) const ISSUE_DURATION: &str = "ekey.issue.duration";
/// `ekey.template` when no configured template is known.
pub(crate) const UNKNOWN_TEMPLATE: &str = "unknown";

/// The instruments. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct IssueMetrics {
    tokens: Counter<u64>,
    duration: Histogram<f64>,
}

impl IssueMetrics {
    /// Creates the instruments on `meter`.
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            tokens: meter
                .u64_counter(ISSUE_TOKENS)
                .with_unit("{token}")
                .with_description("Token requests decided, by template and outcome (issued or the OAuth error code).")
                .build(),
            duration: meter
                .f64_histogram(ISSUE_DURATION)
                .with_unit("s")
                .with_description("Time to decide a token request, signing included, by template and outcome.")
                .build(),
        }
    }

    /// Records one decision.
    pub(crate) fn record(&self, template: &str, outcome: &'static str, elapsed: Duration) {
        let attributes = [KeyValue::new("ekey.template", template.to_owned()), KeyValue::new("ekey.outcome", outcome)];
        self.tokens.add(1, &attributes);
        self.duration.record(elapsed.as_secs_f64(), &attributes);
    }
}
