//! OpenTelemetry instruments for verify decisions, store round trips, JWKS
//! refreshes and the JWKS keys skipped (feature `metrics`).
//!
//! The crate depends only on the OpenTelemetry API: the embedder builds a
//! `MeterProvider` from the SDK (with its OTLP or Prometheus exporter) and
//! hands a [`Meter`] over. Nothing here sets or reads a global provider.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use ekey_verifier::{Jwks, MemoryStore, StaticKeys, Verifier, VerifierMetrics, VerifierSettings};
//!
//! use opentelemetry::metrics::{MeterProvider, NoopMeterProvider};
//!
//! // A service passes its SDK provider here (`SdkMeterProvider` with an OTLP
//! // or Prometheus exporter); the no-op provider keeps the example self-contained.
//! let meter = NoopMeterProvider::new().meter("ekey-verifier");
//! let metrics = VerifierMetrics::new(&meter);
//! let keys = StaticKeys::new(Jwks::new(vec![]).unwrap()).unwrap();
//! let verifier = Verifier::new(
//!     VerifierSettings::new("https://issuer.example", "https://api.example"),
//!     Arc::new(keys),
//!     Arc::new(MemoryStore::default()),
//! )
//! .with_metrics(metrics);
//! assert!(verifier.metrics().is_some());
//! ```

use crate::outcome::Outcome;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::Duration;

/// `ekey.verify.decisions`: one per verification, by `ekey.outcome`.
pub const VERIFY_DECISIONS: &str = "ekey.verify.decisions";
/// `ekey.verify.duration`: seconds per verification, by `ekey.outcome`.
pub const VERIFY_DURATION: &str = "ekey.verify.duration";
/// `ekey.store.duration`: seconds per usage-store round trip, by
/// `ekey.store.backend` and `ekey.store.result`.
pub const STORE_DURATION: &str = "ekey.store.duration";
/// `ekey.jwks.refreshes`: JWKS fetches, by `ekey.result`.
pub const JWKS_REFRESHES: &str = "ekey.jwks.refreshes";
/// `ekey.jwks.skipped_keys`: keys of fetched JWK sets that could not be used
/// (unknown type, curve or algorithm, RSA size, malformed), counted once per
/// fetched set (RFC 7517 §5: skipped, not fatal to the set).
pub const JWKS_SKIPPED_KEYS: &str = "ekey.jwks.skipped_keys";

/// Attribute key of the decision (values: [`Outcome::as_str`]).
pub const OUTCOME_KEY: &str = "ekey.outcome";
/// Attribute key of the store backend ([`UsageStore::backend_name`](crate::UsageStore::backend_name)).
pub const STORE_BACKEND_KEY: &str = "ekey.store.backend";
/// Attribute key of a store round trip's result: `ok` (any answer) or `error`.
pub const STORE_RESULT_KEY: &str = "ekey.store.result";
/// Attribute key of a JWKS refresh's result: `updated`, `not_modified` or `error`.
pub const JWKS_RESULT_KEY: &str = "ekey.result";

/// Bucket bounds (seconds) of the duration histograms: a verification takes
/// ~0.1–1 ms of CPU, a Redis round trip ~0.2–5 ms.
pub const DURATION_BUCKETS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// How a JWKS fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "http-jwks"), allow(dead_code))]
pub(crate) enum JwksRefresh {
    /// A new set was fetched and installed.
    Updated,
    /// The issuer answered 304; the held set stays.
    NotModified,
    /// The fetch failed; the held set (if any) stays.
    Error,
}

/// The verifier's instruments, made once from a [`Meter`]. Cheap to clone
/// (one `Arc`); give clones to the [`Verifier`](crate::Verifier) and to
/// [`HttpJwks`](crate::HttpJwks).
///
/// Attribute sets are built here, once per value, so recording allocates
/// nothing.
#[derive(Debug, Clone)]
pub struct VerifierMetrics {
    inner: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    decisions: Counter<u64>,
    duration: Histogram<f64>,
    store_duration: Histogram<f64>,
    jwks_refreshes: Counter<u64>,
    jwks_skipped: Counter<u64>,
    /// Indexed by [`Outcome::index`].
    outcomes: [[KeyValue; 1]; Outcome::ALL.len()],
    /// Indexed by `JwksRefresh as usize`.
    jwks: [[KeyValue; 1]; 3],
}

impl VerifierMetrics {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let decisions = meter
            .u64_counter(VERIFY_DECISIONS)
            .with_unit("{decision}")
            .with_description("Verify decisions, by outcome (success or the rejection reason).")
            .build();
        let duration = meter
            .f64_histogram(VERIFY_DURATION)
            .with_unit("s")
            .with_description("Time to verify one request, by outcome.")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        let store_duration = meter
            .f64_histogram(STORE_DURATION)
            .with_unit("s")
            .with_description("Time of one usage-store round trip, by backend and result.")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        let jwks_refreshes = meter
            .u64_counter(JWKS_REFRESHES)
            .with_unit("{refresh}")
            .with_description("Fetches of the issuer's JWKS, by result.")
            .build();
        let jwks_skipped = meter
            .u64_counter(JWKS_SKIPPED_KEYS)
            .with_unit("{key}")
            .with_description("Keys of fetched JWK sets skipped as unusable, once per fetched set.")
            .build();
        let outcomes = Outcome::ALL.map(|o| [KeyValue::new(OUTCOME_KEY, o.as_str())]);
        let jwks = ["updated", "not_modified", "error"].map(|r| [KeyValue::new(JWKS_RESULT_KEY, r)]);
        // Every outcome's series starts at 0, so the first refusal of a kind
        // (e.g. store_unavailable) already shows as an increase in alert rules.
        for attrs in &outcomes {
            decisions.add(0, attrs);
        }
        jwks_skipped.add(0, &[]);
        Self {
            inner: Arc::new(Instruments {
                decisions,
                duration,
                store_duration,
                jwks_refreshes,
                jwks_skipped,
                outcomes,
                jwks,
            }),
        }
    }

    /// Records one decision and how long it took. The [`Verifier`](crate::Verifier)
    /// calls this once per verification; call it yourself only for requests
    /// you refuse before handing them to the verifier, so they are counted
    /// with the same words.
    pub fn record_decision(&self, outcome: Outcome, elapsed: Duration) {
        let attrs = &self.inner.outcomes[outcome.index()];
        self.inner.decisions.add(1, attrs);
        self.inner.duration.record(elapsed.as_secs_f64(), attrs);
    }

    /// The attribute sets of one store backend, built once when a verifier
    /// is given these metrics.
    pub(crate) fn store_attributes(&self, backend: &'static str) -> StoreAttributes {
        let of =
            |result: &'static str| [KeyValue::new(STORE_BACKEND_KEY, backend), KeyValue::new(STORE_RESULT_KEY, result)];
        StoreAttributes { ok: of("ok"), error: of("error") }
    }

    pub(crate) fn record_store(&self, attrs: &StoreAttributes, ok: bool, elapsed: Duration) {
        let attrs = if ok { &attrs.ok } else { &attrs.error };
        self.inner.store_duration.record(elapsed.as_secs_f64(), attrs);
    }

    #[cfg_attr(not(feature = "http-jwks"), allow(dead_code))]
    pub(crate) fn record_jwks_refresh(&self, result: JwksRefresh) {
        self.inner.jwks_refreshes.add(1, &self.inner.jwks[result as usize]);
    }

    #[cfg_attr(not(feature = "http-jwks"), allow(dead_code))]
    pub(crate) fn record_jwks_skipped(&self, keys: usize) {
        self.inner.jwks_skipped.add(keys as u64, &[]);
    }
}

/// `ekey.store.backend` × `ekey.store.result`, for one store.
#[derive(Debug, Clone)]
pub(crate) struct StoreAttributes {
    ok: [KeyValue; 2],
    error: [KeyValue; 2],
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::{MeterProvider, NoopMeterProvider};

    #[test]
    fn attribute_tables_follow_their_indexes() {
        let m = VerifierMetrics::new(&NoopMeterProvider::new().meter("test"));
        for o in Outcome::ALL {
            let [kv] = &m.inner.outcomes[o.index()];
            assert_eq!((kv.key.as_str(), kv.value.as_str()), (OUTCOME_KEY, o.as_str().into()));
        }
        for (r, word) in [
            (JwksRefresh::Updated, "updated"),
            (JwksRefresh::NotModified, "not_modified"),
            (JwksRefresh::Error, "error"),
        ] {
            let [kv] = &m.inner.jwks[r as usize];
            assert_eq!((kv.key.as_str(), kv.value.as_str()), (JWKS_RESULT_KEY, word.into()));
        }
        let s = m.store_attributes("memory");
        assert_eq!(s.ok[0].value.as_str(), "memory");
        assert_eq!((s.ok[1].value.as_str(), s.error[1].value.as_str()), ("ok".into(), "error".into()));
    }

    #[test]
    fn buckets_ascend() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
