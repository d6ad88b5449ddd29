//! Feature `metrics`: every verify decision counted once with its outcome,
//! store round trips timed by backend and result, JWKS refreshes counted by
//! result. Read back through the OpenTelemetry SDK's in-memory exporter.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::jwks::{jwks_of, serve, Server};
use common::{Issuer, AUDIENCE, ISSUER, NOW};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    Algorithm, ConsumeOutcome, ConsumeRequest, HttpJwks, HttpJwksSettings, KeyPair, ManualClock, MemoryStore, Outcome,
    PresentedRequest, Rejection, StaticKeys, StoreError, UsageStore, Verifier, VerifierMetrics, VerifierSettings,
};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use std::sync::Arc;
use std::time::Duration;

/// A meter provider whose data the test reads back.
struct Telemetry {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Telemetry {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider =
            SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
        Self { provider, exporter }
    }

    fn metrics(&self) -> VerifierMetrics {
        VerifierMetrics::new(&self.provider.meter("ekey-verifier-test"))
    }

    /// The latest cumulative export, if anything was recorded.
    fn export(&self) -> Option<ResourceMetrics> {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_metrics().unwrap().pop()
    }

    fn snapshot(&self) -> ResourceMetrics {
        self.export().expect("something was recorded")
    }
}

fn matches(attrs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>, want: &[(&str, &str)]) -> bool {
    let got: Vec<(String, String)> = attrs.map(|kv| (kv.key.to_string(), kv.value.as_str().into_owned())).collect();
    got.len() == want.len() && want.iter().all(|(k, v)| got.iter().any(|(gk, gv)| gk == k && gv == v))
}

/// The value of counter `name` at exactly these attributes (0 if absent).
fn counter(rm: &ResourceMetrics, name: &str, want: &[(&str, &str)]) -> u64 {
    let mut total = 0;
    for m in rm.scope_metrics().flat_map(|s| s.metrics()).filter(|m| m.name() == name) {
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else { panic!("{name} is not a u64 counter") };
        total += sum.data_points().filter(|p| matches(&mut p.attributes(), want)).map(|p| p.value()).sum::<u64>();
    }
    total
}

/// The number of recordings of histogram `name` at exactly these attributes,
/// and its bucket bounds.
fn histogram(rm: &ResourceMetrics, name: &str, want: &[(&str, &str)]) -> (u64, Vec<f64>) {
    let mut count = 0;
    let mut bounds = vec![];
    for m in rm.scope_metrics().flat_map(|s| s.metrics()).filter(|m| m.name() == name) {
        assert_eq!(m.unit(), "s", "{name} is in seconds");
        let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else { panic!("{name} is not a histogram") };
        for p in h.data_points().filter(|p| matches(&mut p.attributes(), want)) {
            count += p.count();
            bounds = p.bounds().collect();
        }
    }
    (count, bounds)
}

/// A store that is always down.
#[derive(Debug)]
struct DownStore;

#[async_trait]
impl UsageStore for DownStore {
    async fn consume(&self, _: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        Err(StoreError::Unavailable("down for the test".into()))
    }
    async fn revoke_trace(&self, _: &str, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down for the test".into()))
    }
}

fn verifier_with(issuer: &Issuer, store: Arc<dyn UsageStore>, clock: Arc<ManualClock>) -> Verifier {
    let keys = Arc::new(StaticKeys::new(issuer.jwks()).unwrap());
    Verifier::with_clock(VerifierSettings::new(ISSUER, AUDIENCE), keys, store, clock)
}

async fn call(v: &Verifier, method: &str, url: &str, token: Option<&str>, proof: Option<&str>) -> Outcome {
    let auth = token.map(|t| format!("DPoP {t}"));
    let dpop: Vec<&str> = proof.into_iter().collect();
    let req = PresentedRequest { method, url, authorization: auth.as_deref(), dpop, ..Default::default() };
    Outcome::of(&v.verify(&req).await)
}

#[tokio::test]
async fn every_decision_is_counted_once_with_its_outcome() {
    let telemetry = Telemetry::new();
    let metrics = telemetry.metrics();
    let issuer = Issuer::new();
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(ManualClock::new(NOW));
    let v = verifier_with(&issuer, store.clone(), clock.clone()).with_metrics(metrics.clone());
    assert!(v.metrics().is_some());
    let url = format!("{AUDIENCE}/payments/7");
    let proof_for = |token: &str| client.proof("POST", &url, Some(token), None, NOW).unwrap();
    let mut store_calls = 0;

    // success, then the same proof again: replay_blocked (both reach the store).
    let token = issuer.token(&client, "POST:/payments/:id", 5);
    let proof = proof_for(&token);
    assert_eq!(call(&v, "POST", &url, Some(&token), Some(&proof)).await, Outcome::Success);
    assert_eq!(call(&v, "POST", &url, Some(&token), Some(&proof)).await, Outcome::ReplayBlocked);
    store_calls += 2;

    // A limit of 1: success, then exhausted.
    let one = issuer.token(&client, "POST:/payments/:id", 1);
    assert_eq!(call(&v, "POST", &url, Some(&one), Some(&proof_for(&one))).await, Outcome::Success);
    assert_eq!(call(&v, "POST", &url, Some(&one), Some(&proof_for(&one))).await, Outcome::Exhausted);
    store_calls += 2;

    // Revoked by trace in the store.
    let claims = issuer.claims(client.thumbprint(), "POST:/payments/:id", 5);
    store.revoke_trace(&claims.jti, NOW + 600).await.unwrap();
    let revoked = issuer.sign(&claims);
    assert_eq!(call(&v, "POST", &url, Some(&revoked), Some(&proof_for(&revoked))).await, Outcome::Revoked);
    store_calls += 1;

    // Refused before the store.
    assert_eq!(call(&v, "POST", &url, None, None).await, Outcome::MissingCredentials);
    assert_eq!(call(&v, "POST", &url, Some("a.b.c"), Some(&proof)).await, Outcome::InvalidToken);
    let wrong_method = client.proof("GET", &url, Some(&token), None, NOW).unwrap();
    assert_eq!(call(&v, "POST", &url, Some(&token), Some(&wrong_method)).await, Outcome::InvalidProof);
    let elsewhere = format!("{AUDIENCE}/refunds/7");
    let proof_elsewhere = client.proof("POST", &elsewhere, Some(&token), None, NOW).unwrap();
    assert_eq!(call(&v, "POST", &elsewhere, Some(&token), Some(&proof_elsewhere)).await, Outcome::InsufficientScope);
    let hostile = format!("{AUDIENCE}/payments/%37");
    let proof_hostile = client.proof("POST", &hostile, Some(&token), None, NOW).unwrap();
    assert_eq!(call(&v, "POST", &hostile, Some(&token), Some(&proof_hostile)).await, Outcome::InvalidPath);

    // verify_http's own header checks are decisions too: two Authorization headers.
    let mut headers = http::HeaderMap::new();
    headers.append(http::header::AUTHORIZATION, format!("DPoP {token}").parse().unwrap());
    headers.append(http::header::AUTHORIZATION, format!("DPoP {token}").parse().unwrap());
    let r = v.verify_http(&http::Method::POST, &url, &headers, None).await;
    assert_eq!(Outcome::of(&r), Outcome::InvalidToken);

    // Expired: a second verifier with its own clock shares the same metrics.
    let late = verifier_with(&issuer, store.clone(), Arc::new(ManualClock::new(NOW + 3600))).with_metrics(metrics);
    assert_eq!(call(&late, "POST", &url, Some(&token), Some(&proof_for(&token))).await, Outcome::Expired);

    // The store is down: store_unavailable, and the failed round trip is timed.
    let down = verifier_with(&issuer, Arc::new(DownStore), clock).with_metrics(telemetry.metrics());
    let r = down
        .verify(&PresentedRequest {
            method: "POST",
            url: &url,
            authorization: Some(&format!("DPoP {token}")),
            dpop: vec![&proof_for(&token)],
            ..Default::default()
        })
        .await;
    assert!(matches!(r, Err(Rejection::Unavailable(_))), "{r:?}");

    let rm = telemetry.snapshot();
    let expected = [
        (Outcome::Success, 2),
        (Outcome::ReplayBlocked, 1),
        (Outcome::Exhausted, 1),
        (Outcome::Revoked, 1),
        (Outcome::MissingCredentials, 1),
        (Outcome::InvalidToken, 2),
        (Outcome::InvalidProof, 1),
        (Outcome::InsufficientScope, 1),
        (Outcome::InvalidPath, 1),
        (Outcome::Expired, 1),
        (Outcome::StoreUnavailable, 1),
        (Outcome::UseDpopNonce, 0),
    ];
    assert_eq!(expected.len(), Outcome::ALL.len(), "every outcome checked");
    for (outcome, n) in expected {
        let attrs = [("ekey.outcome", outcome.as_str())];
        assert_eq!(counter(&rm, "ekey.verify.decisions", &attrs), n, "decisions {outcome}");
        let (timed, bounds) = histogram(&rm, "ekey.verify.duration", &attrs);
        assert_eq!(timed, n, "durations {outcome}");
        if n > 0 {
            assert_eq!(bounds, ekey_verifier::metrics::DURATION_BUCKETS, "fine buckets");
        }
    }
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    let all: u64 =
        Outcome::ALL.iter().map(|o| counter(&rm, "ekey.verify.decisions", &[("ekey.outcome", o.as_str())])).sum();
    assert_eq!(all, total, "nothing counted under another outcome");

    let memory_ok = [("ekey.store.backend", "memory"), ("ekey.store.result", "ok")];
    assert_eq!(histogram(&rm, "ekey.store.duration", &memory_ok).0, store_calls, "one round trip per store decision");
    let memory_err = [("ekey.store.backend", "memory"), ("ekey.store.result", "error")];
    assert_eq!(histogram(&rm, "ekey.store.duration", &memory_err).0, 0);
    // DownStore does not name its backend: the trait's default.
    let custom_err = [("ekey.store.backend", "custom"), ("ekey.store.result", "error")];
    assert_eq!(histogram(&rm, "ekey.store.duration", &custom_err).0, 1);
}

#[tokio::test]
async fn without_metrics_nothing_is_recorded() {
    let telemetry = Telemetry::new();
    let _unused = telemetry.metrics();
    let issuer = Issuer::new();
    let (v, _) = issuer.verifier();
    assert!(v.metrics().is_none());
    assert_eq!(call(&v, "POST", &format!("{AUDIENCE}/x"), None, None).await, Outcome::MissingCredentials);
    let recorded =
        telemetry.export().map(|rm| counter(&rm, "ekey.verify.decisions", &[("ekey.outcome", "missing_credentials")]));
    assert_eq!(recorded.unwrap_or(0), 0, "a verifier without metrics records nothing");
}

#[tokio::test]
async fn record_decision_counts_refusals_made_outside_the_verifier() {
    let telemetry = Telemetry::new();
    let metrics = telemetry.metrics();
    metrics.record_decision(Outcome::InvalidToken, Duration::from_micros(50));
    let rm = telemetry.snapshot();
    let attrs = [("ekey.outcome", "invalid_token")];
    assert_eq!(counter(&rm, "ekey.verify.decisions", &attrs), 1);
    assert_eq!(histogram(&rm, "ekey.verify.duration", &attrs).0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_refreshes_are_counted_by_result() {
    let telemetry = Telemetry::new();
    let key = KeyPair::generate(Algorithm::ES256).unwrap();
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = jwks_of(&[&key]);
    *state.max_age.lock().unwrap() = 300;
    let (url, server) = serve(state.clone()).await;
    let mut settings = HttpJwksSettings::new(&url);
    settings.timeout = Duration::from_secs(2);
    let jwks = HttpJwks::new(settings).unwrap().with_metrics(telemetry.metrics());

    jwks.refresh().await.unwrap(); // a new set
    jwks.refresh().await.unwrap(); // If-None-Match: 304
    assert_eq!(state.not_modified.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.abort();
    let _ = server.await;
    assert!(jwks.refresh().await.is_err(), "the issuer is gone");

    let rm = telemetry.snapshot();
    for result in ["updated", "not_modified", "error"] {
        assert_eq!(counter(&rm, "ekey.jwks.refreshes", &[("ekey.result", result)]), 1, "{result}");
    }
    assert_eq!(jwks.fetch_count(), 3);
}

/// Unusable keys of a fetched set are counted once per fetched set (not
/// again on a 304), and the usable ones still serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_skipped_keys_are_counted_once_per_fetched_set() {
    let telemetry = Telemetry::new();
    let key = KeyPair::generate(Algorithm::ES256).unwrap();
    let good = good_only(&key);
    let ed448 = serde_json::json!({"kty": "OKP", "crv": "Ed448", "x": "AAAA", "kid": "ed448"});
    let odd = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny-rsa"});
    let state = Arc::new(Server::default());
    *state.jwks.lock().unwrap() = serde_json::json!({"keys": [ed448, good, odd]}).to_string();
    *state.max_age.lock().unwrap() = 300;
    let (url, server) = serve(state.clone()).await;
    let mut settings = HttpJwksSettings::new(&url);
    settings.timeout = Duration::from_secs(2);
    let jwks = HttpJwks::new(settings).unwrap().with_metrics(telemetry.metrics());
    assert_eq!(counter(&telemetry.snapshot(), "ekey.jwks.skipped_keys", &[]), 0);

    jwks.refresh().await.unwrap();
    jwks.refresh().await.unwrap(); // 304: the same set, not counted again
    assert_eq!(counter(&telemetry.snapshot(), "ekey.jwks.skipped_keys", &[]), 2);
    use ekey_verifier::KeySource as _;
    jwks.key(key.thumbprint(), Algorithm::ES256).await.unwrap();

    *state.jwks.lock().unwrap() =
        serde_json::json!({"keys": [good_only(&key), {"kty": "PQ", "kid": "new"}]}).to_string();
    jwks.refresh().await.unwrap();
    assert_eq!(counter(&telemetry.snapshot(), "ekey.jwks.skipped_keys", &[]), 3);
    server.abort();
}

/// `key` as a JWKS member.
fn good_only(key: &KeyPair) -> serde_json::Value {
    key.public_jwk().clone().with_kid_and_alg(key.thumbprint(), Algorithm::ES256).to_json()
}

/// Refusals the tower layer makes before the verifier sees the request (a
/// trusted proxy's malformed certificate header) are decisions too.
#[cfg(feature = "tower")]
#[tokio::test]
async fn the_tower_layer_counts_its_own_refusals_once() {
    use ekey_verifier::mtls::{CertHeaderFormat, ClientCertSource, TrustedProxies};
    use ekey_verifier::tower::{PeerAddr, VerifyLayer};
    use ekey_verifier::{ExternalUrl, ExternalUrlSettings};

    let telemetry = Telemetry::new();
    let issuer = Issuer::new();
    let (v, _) = issuer.verifier();
    let external =
        ExternalUrl::new(&ExternalUrlSettings { public_base_url: Some(AUDIENCE.into()), ..Default::default() })
            .unwrap();
    let certs = ClientCertSource::behind_proxy(
        TrustedProxies::parse(["127.0.0.1/32"]).unwrap(),
        "x-forwarded-client-cert",
        CertHeaderFormat::Xfcc,
    )
    .unwrap();
    let layer = VerifyLayer::new(Arc::new(v.with_metrics(telemetry.metrics())), external).client_certs(certs);

    let head = |cert_headers: usize| {
        let mut req = http::Request::post("/payments/1").header("authorization", "Bearer a.b.c");
        for _ in 0..cert_headers {
            req = req.header("x-forwarded-client-cert", "Hash=00");
        }
        let (mut head, ()) = req.body(()).unwrap().into_parts();
        head.extensions.insert(PeerAddr("127.0.0.1:5000".parse().unwrap()));
        head
    };
    // Two certificate headers: refused by the layer itself.
    assert_eq!(layer.check(&head(2)).await.unwrap_err().status(), 401);
    // No certificate header: refused by the verifier (a malformed token).
    assert_eq!(layer.check(&head(0)).await.unwrap_err().status(), 401);

    let rm = telemetry.snapshot();
    assert_eq!(counter(&rm, "ekey.verify.decisions", &[("ekey.outcome", "invalid_token")]), 2, "one decision each");
}
