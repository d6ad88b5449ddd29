//! Verification throughput, as ratios against the raw signature-verify rate
//! of the same crypto library (josekit over OpenSSL) measured in the same run.
//!
//! `cargo bench -p ekey-verifier --bench verify`. Criterion prints its own
//! report; the last line is one JSON object:
//! `{"dpop_verify_per_sec", "baseline_verify_per_sec", "ratio"}` for a token
//! reused within its limit (only the proof is new), with the same three fields
//! under `"reused"` and `"one_shot"` (a fresh limit-1 token and a fresh proof
//! per request). Set `EKEY_BENCH_SECS` to change the measuring time per round.
//! With `--features metrics`, the reused case is also run with a verifier
//! recording into an OpenTelemetry SDK meter, and `"metrics_on_off"` is its
//! rate divided by the rate without metrics.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

use criterion::{black_box, BatchSize, Criterion};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    b64_encode, Algorithm, Audience, Capability, Claims, Confirmation, Jwks, KeyPair, ManualClock, MemoryStore,
    PresentedRequest, StaticKeys, Verifier, VerifierSettings, VerifyingKey,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://issuer.bench";
const AUD: &str = "https://api.bench";
const URL: &str = "https://api.bench/payments/42";
const NOW: i64 = 1_800_000_000;

struct Setup {
    issuer: KeyPair,
    client: DpopKey,
    rt: tokio::runtime::Runtime,
}

impl Setup {
    fn new() -> Self {
        Self {
            issuer: KeyPair::generate(Algorithm::ES256).expect("issuer key"),
            client: DpopKey::generate(Algorithm::ES256).expect("client key"),
            rt: tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
        }
    }

    fn verifier(&self) -> Verifier {
        let jwk = self.issuer.public_jwk().clone().with_kid_and_alg(self.issuer.thumbprint(), Algorithm::ES256);
        let keys = StaticKeys::new(Jwks::new(vec![jwk]).expect("jwks")).expect("keys");
        Verifier::with_clock(
            VerifierSettings::new(ISSUER, AUD),
            Arc::new(keys),
            Arc::new(MemoryStore::default()),
            Arc::new(ManualClock::new(NOW)),
        )
    }

    fn token(&self, limit: u32) -> String {
        let mut jti = [0u8; 16];
        openssl::rand::rand_bytes(&mut jti).expect("rand");
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "bench-client".into(),
            aud: Audience::One(AUD.into()),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 60,
            jti: b64_encode(jti),
            cap: Capability { action: "POST:/payments/:id".into(), scope: None, limit, subcap: vec![] },
            cnf: Confirmation::Jkt(self.client.thumbprint().into()),
            tpl: Some("payments".into()),
        };
        let header = json!({"alg": "ES256", "typ": "ekey+jwt", "kid": self.issuer.thumbprint()});
        let input =
            format!("{}.{}", b64_encode(header.to_string()), b64_encode(serde_json::to_vec(&claims).expect("claims")));
        format!("{input}.{}", b64_encode(self.issuer.sign(input.as_bytes()).expect("sign")))
    }

    fn proof(&self, token: &str) -> String {
        self.client.proof("POST", URL, Some(token), None, NOW).expect("proof")
    }

    fn verify(&self, v: &Verifier, token: &str, proof: &str) {
        let auth = format!("DPoP {token}");
        let req = PresentedRequest {
            method: "POST",
            url: URL,
            authorization: Some(&auth),
            dpop: vec![proof],
            ..Default::default()
        };
        self.rt.block_on(v.verify(&req)).expect("accepted");
    }
}

/// The raw primitive: one ES256 verification of a proof-sized message.
struct Baseline {
    key: VerifyingKey,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Baseline {
    fn new(s: &Setup) -> Self {
        let proof = s.proof(&s.token(1));
        let (input, sig) = proof.rsplit_once('.').expect("compact");
        let key = VerifyingKey::new(s.client.key_pair().public_jwk(), Algorithm::ES256).expect("key");
        let signature = ekey_verifier::dangerous::decode_b64(sig).expect("sig");
        Self { key, message: input.as_bytes().to_vec(), signature }
    }
    fn run(&self) {
        assert!(self.key.verify(black_box(&self.message), black_box(&self.signature)));
    }
}

fn criterion_benches(c: &mut Criterion, s: &Setup, base: &Baseline) {
    let mut g = c.benchmark_group("verify");
    g.bench_function("baseline_es256_verify", |b| b.iter(|| base.run()));
    let v = s.verifier();
    let token = s.token(ekey_verifier::MAX_LIMIT);
    g.bench_function("dpop_verify_reused_token", |b| {
        b.iter_batched(|| s.proof(&token), |p| s.verify(&v, &token, &p), BatchSize::SmallInput)
    });
    g.bench_function("dpop_verify_one_shot", |b| {
        b.iter_batched(
            || {
                let t = s.token(1);
                let p = s.proof(&t);
                (t, p)
            },
            |(t, p)| s.verify(&v, &t, &p),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Rate of `f` over pre-built inputs, per second.
fn rate<T>(inputs: Vec<T>, mut f: impl FnMut(T)) -> f64 {
    let n = inputs.len();
    let started = Instant::now();
    for i in inputs {
        f(i);
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `v` recording into an SDK meter provider (kept alive alongside it).
#[cfg(feature = "metrics")]
fn metered(v: Verifier) -> (Verifier, opentelemetry_sdk::metrics::SdkMeterProvider) {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    let reader = PeriodicReader::builder(InMemoryMetricExporter::default()).build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    let metrics = ekey_verifier::VerifierMetrics::new(&provider.meter("bench"));
    (v.with_metrics(metrics), provider)
}

fn main() {
    let s = Setup::new();
    let base = Baseline::new(&s);
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    criterion_benches(&mut c, &s, &base);

    // Interleaved rounds so a noisy neighbour hits every measure alike.
    let secs: f64 = std::env::var("EKEY_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let per_round = |r: f64| ((r * secs) as usize).max(200);
    let probe = rate((0..500).collect(), |_| base.run());
    let (mut b, mut reused, mut one_shot) = (vec![], vec![], vec![]);
    let v = s.verifier();
    let token = s.token(ekey_verifier::MAX_LIMIT);
    #[cfg(feature = "metrics")]
    let (observed, mut with_metrics) = (metered(s.verifier()), vec![]);
    for _ in 0..5 {
        b.push(rate((0..per_round(probe)).collect(), |_| base.run()));
        let proofs: Vec<String> = (0..per_round(probe / 1.2)).map(|_| s.proof(&token)).collect();
        reused.push(rate(proofs, |p| s.verify(&v, &token, &p)));
        #[cfg(feature = "metrics")]
        {
            let proofs: Vec<String> = (0..per_round(probe / 1.2)).map(|_| s.proof(&token)).collect();
            with_metrics.push(rate(proofs, |p| s.verify(&observed.0, &token, &p)));
        }
        let pairs: Vec<(String, String)> = (0..per_round(probe / 2.2))
            .map(|_| {
                let t = s.token(1);
                let p = s.proof(&t);
                (t, p)
            })
            .collect();
        one_shot.push(rate(pairs, |(t, p)| s.verify(&v, &t, &p)));
    }
    let (b, reused, one_shot) = (median(b), median(reused), median(one_shot));
    let case = |r: f64| json!({"dpop_verify_per_sec": r.round(), "baseline_verify_per_sec": b.round(), "ratio": (r / b * 1000.0).round() / 1000.0});
    let mut out = case(reused);
    out["reused"] = case(reused);
    out["one_shot"] = case(one_shot);
    #[cfg(feature = "metrics")]
    {
        out["metrics_on_off"] = json!((median(with_metrics) / reused * 1000.0).round() / 1000.0);
    }
    println!("{out}");
}
