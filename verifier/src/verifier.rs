//! The verifier: token, binding, capability, then one atomic store operation.

use crate::capability::ActionPattern;
use crate::claims::{Claims, Confirmation};
use crate::clock::{Clock, SystemClock};
use crate::dpop::{DpopSettings, ProofError, ProofExpectations, ProofVerifier};
use crate::error::{Refusal, Rejection, TokenIds};
use crate::htu::normalize_htu;
use crate::jose::alg::Algorithm;
use crate::jose::b64;
use crate::keys::KeySource;
#[cfg(feature = "metrics")]
use crate::metrics::{StoreAttributes, VerifierMetrics};
use crate::mtls::ClientCert;
use crate::path::check_path;
use crate::request::PresentedRequest;
use crate::revocation::RevocationCheck;
use crate::store::{ConsumeOutcome, ConsumeRequest, ProofId, StoreError, UsageStore};
use crate::token::{TokenError, TokenSettings, TokenVerifier};
use std::future::Future;
use std::sync::Arc;

/// Everything the verifier is configured with.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// Token checks.
    pub token: TokenSettings,
    /// DPoP proof checks.
    pub dpop: DpopSettings,
}

impl VerifierSettings {
    /// Defaults for `issuer` and one `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self { token: TokenSettings::new(issuer, audience), dpop: DpopSettings::default() }
    }
}

/// How the token was bound, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// DPoP key with this thumbprint.
    Dpop {
        /// RFC 7638 thumbprint.
        jkt: String,
    },
    /// Client certificate with this SHA-256 thumbprint.
    Mtls {
        /// base64url SHA-256 of the certificate DER.
        x5t_s256: String,
    },
}

/// A request that passed every check and consumed one use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCapability {
    /// The client / workload.
    pub sub: String,
    /// The token's trace id.
    pub trace: String,
    /// The action pattern (from `cap.action` or `subcap`) the request matched.
    pub action: String,
    /// `cap.scope`, if any.
    pub scope: Option<String>,
    /// The template the token came from, if named.
    pub template: Option<String>,
    /// The binding that was proven.
    pub binding: Binding,
    /// Uses so far, this one included.
    pub used: u32,
    /// Uses left.
    pub remaining: u32,
    /// Token expiry, seconds since the epoch.
    pub exp: i64,
}

/// Verifies requests. Cheap to share (`Arc`) across tasks.
#[derive(Debug)]
pub struct Verifier {
    tokens: TokenVerifier,
    proofs: ProofVerifier,
    store: Arc<dyn UsageStore>,
    clock: Arc<dyn Clock>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    #[cfg(feature = "metrics")]
    metrics: Option<Observed>,
}

/// The metrics handle and the store's attribute sets, built once.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Observed {
    metrics: VerifierMetrics,
    store: StoreAttributes,
}

impl Verifier {
    /// A verifier using the system clock.
    pub fn new(settings: VerifierSettings, keys: Arc<dyn KeySource>, store: Arc<dyn UsageStore>) -> Self {
        Self::with_clock(settings, keys, store, Arc::new(SystemClock))
    }

    /// A verifier with an injected clock.
    pub fn with_clock(
        settings: VerifierSettings,
        keys: Arc<dyn KeySource>,
        store: Arc<dyn UsageStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            tokens: TokenVerifier::new(settings.token, keys),
            proofs: ProofVerifier::new(settings.dpop),
            store,
            clock,
            revocation: None,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Also refuse tokens that `rules` revoke (by `sub`, template or issue
    /// time), checked before the usage store.
    pub fn with_revocation(mut self, rules: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(rules);
        self
    }

    /// Records every decision (`ekey.verify.decisions`, `ekey.verify.duration`)
    /// and every store round trip (`ekey.store.duration`, labelled with
    /// [`UsageStore::backend_name`]) in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: VerifierMetrics) -> Self {
        let store = metrics.store_attributes(self.store.backend_name());
        self.metrics = Some(Observed { metrics, store });
        self
    }

    /// The metrics this verifier records in, if any.
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> Option<&VerifierMetrics> {
        self.metrics.as_ref().map(|o| &o.metrics)
    }

    /// The DPoP algorithms accepted (for `WWW-Authenticate: DPoP algs=…`).
    pub fn dpop_algorithms(&self) -> &[Algorithm] {
        &self.proofs.settings().algorithms
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The HTTP answer for a rejection, with this verifier's `algs`.
    pub fn reject(&self, rejection: &Rejection) -> http::Response<()> {
        rejection.to_response(self.dpop_algorithms())
    }

    /// Runs every check and consumes one use. Returns only when all passed.
    pub async fn verify(&self, req: &PresentedRequest<'_>) -> Result<VerifiedCapability, Rejection> {
        self.recorded(self.verify_inner(req)).await.map_err(|r| r.rejection)
    }

    /// [`Verifier::verify`] for an `http` request head, read with
    /// [`PresentedRequest::from_http`] (a refusal of its headers is a
    /// decision too). `external_url` is the URL the client used (see the
    /// gateway docs for building it behind a proxy); the capability is
    /// matched on its path as written.
    pub async fn verify_http(
        &self,
        method: &http::Method,
        external_url: &str,
        headers: &http::HeaderMap,
        client_cert: Option<&ClientCert>,
    ) -> Result<VerifiedCapability, Rejection> {
        let read = PresentedRequest::from_http(method, external_url, headers, client_cert);
        self.decide(read).await.map_err(|r| r.rejection)
    }

    /// The whole decision on a request as it was read (`read` is what
    /// [`PresentedRequest::from_http`] answered, so a request whose headers
    /// were refused is recorded like any other decision). A refusal names
    /// the token ([`Refusal::token`]) once the token proved authentic, and
    /// only then: for audit logs.
    pub async fn decide(&self, read: Result<PresentedRequest<'_>, Rejection>) -> Result<VerifiedCapability, Refusal> {
        self.recorded(async {
            match &read {
                Ok(req) => self.verify_inner(req).await,
                Err(r) => Err(r.clone().into()),
            }
        })
        .await
    }

    /// Runs one whole verification and, with metrics, records its decision
    /// exactly once (rejections before the store included).
    async fn recorded(
        &self,
        verification: impl Future<Output = Result<VerifiedCapability, Refusal>>,
    ) -> Result<VerifiedCapability, Refusal> {
        #[cfg(feature = "metrics")]
        if let Some(observed) = &self.metrics {
            let started = std::time::Instant::now();
            let result = verification.await;
            let outcome = match &result {
                Ok(_) => crate::outcome::Outcome::Success,
                Err(r) => r.rejection.outcome(),
            };
            observed.metrics.record_decision(outcome, started.elapsed());
            return result;
        }
        verification.await
    }

    /// The one store round trip, timed when there are metrics.
    async fn consume(&self, req: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError> {
        #[cfg(feature = "metrics")]
        if let Some(observed) = &self.metrics {
            let started = std::time::Instant::now();
            let result = self.store.consume(req).await;
            observed.metrics.record_store(&observed.store, result.is_ok(), started.elapsed());
            return result;
        }
        self.store.consume(req).await
    }

    /// Authenticates the token; every later refusal names it.
    async fn verify_inner(&self, req: &PresentedRequest<'_>) -> Result<VerifiedCapability, Refusal> {
        let now = self.clock.now();
        let (scheme, token) = parse_authorization(req.authorization)?;
        let claims = self.tokens.authenticate(token, now).await?;
        self.authorize(req, scheme, token, &claims, now)
            .await
            .map_err(|rejection| Refusal { rejection, token: Some(TokenIds::of(&claims)) })
    }

    /// Everything after the token proved authentic: the path, the token's
    /// lifetime, the binding, the capability, revocation, and the store.
    async fn authorize(
        &self,
        req: &PresentedRequest<'_>,
        scheme: Scheme,
        token: &str,
        claims: &Claims,
        now: i64,
    ) -> Result<VerifiedCapability, Rejection> {
        // The capability is matched on the path the application routes, and
        // only when every router reads that path the same way; whatever else
        // the request gets right, another spelling is refused.
        check_path(req.routed_path()).map_err(Rejection::InvalidPath)?;
        self.tokens.check_validity(claims, now)?;
        let htu = normalize_htu(req.url).map_err(|_| Rejection::InvalidProof(ProofError::Htu))?;

        let (binding, proof) = match &claims.cnf {
            Confirmation::Jkt(jkt) => {
                if scheme != Scheme::Dpop {
                    return Err(TokenError::Binding("DPoP-bound token presented without the DPoP scheme").into());
                }
                let expect =
                    ProofExpectations { method: req.method, htu: &htu, access_token: Some(token), jkt: Some(jkt), now };
                let proof = self.proofs.verify(&req.dpop, &expect)?;
                let id = ProofId::new(&proof.jkt, &proof.jti);
                (Binding::Dpop { jkt: proof.jkt }, Some((id, proof.iat)))
            }
            Confirmation::X5tS256(x5t) => {
                if scheme != Scheme::Bearer {
                    return Err(TokenError::Binding("certificate-bound token must use the Bearer scheme").into());
                }
                let cert = req
                    .client_cert
                    .map(ClientCert::sha256)
                    .ok_or(TokenError::Binding("certificate-bound token presented without a client certificate"))?;
                let actual = b64::encode(cert);
                if actual.len() != x5t.len() || !openssl::memcmp::eq(actual.as_bytes(), x5t.as_bytes()) {
                    return Err(TokenError::Binding("client certificate does not match the token").into());
                }
                (Binding::Mtls { x5t_s256: x5t.clone() }, None)
            }
        };

        let path = req.routed_path();
        let action = std::iter::once(&claims.cap.action)
            .chain(&claims.cap.subcap)
            .find(|a| ActionPattern::parse(a).is_ok_and(|p| p.matches(req.method, path)))
            .ok_or(Rejection::InsufficientScope)?;

        if let Some(rules) = &self.revocation {
            rules.check(claims)?;
        }

        // Keep entries as long as the token or proof could still be accepted,
        // and at least 2 × TTL after issue.
        let leeway = i64::from(self.tokens.settings().leeway);
        let ttl = claims.ttl();
        let mut retain_until = (claims.exp + leeway).max(claims.iat + 2 * ttl);
        if let Some((_, iat)) = proof {
            retain_until = retain_until.max(iat + i64::from(self.proofs.settings().max_age) + 2 * leeway);
        }
        let outcome = self
            .consume(&ConsumeRequest {
                trace: &claims.jti,
                limit: claims.cap.limit,
                proof: proof.map(|p| p.0),
                now,
                retain_until,
            })
            .await?;
        let (used, remaining) = match outcome {
            ConsumeOutcome::Accepted { used, remaining } => (used, remaining),
            ConsumeOutcome::Exhausted => return Err(TokenError::Exhausted.into()),
            ConsumeOutcome::Revoked => return Err(TokenError::Revoked.into()),
            ConsumeOutcome::ReplayedProof => return Err(ProofError::Replayed.into()),
        };
        Ok(VerifiedCapability {
            sub: claims.sub.clone(),
            trace: claims.jti.clone(),
            action: action.clone(),
            scope: claims.cap.scope.clone(),
            template: claims.tpl.clone(),
            binding,
            used,
            remaining,
            exp: claims.exp,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Dpop,
    Bearer,
}

fn parse_authorization(h: Option<&str>) -> Result<(Scheme, &str), Rejection> {
    let h = h.ok_or(Rejection::MissingCredentials)?;
    let (scheme, token) = h.split_once(' ').ok_or(Rejection::MissingCredentials)?;
    let scheme = if scheme.eq_ignore_ascii_case("DPoP") {
        Scheme::Dpop
    } else if scheme.eq_ignore_ascii_case("Bearer") {
        Scheme::Bearer
    } else {
        return Err(Rejection::MissingCredentials);
    };
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(TokenError::Malformed(crate::jose::jws::JwsError::NotCompact).into());
    }
    Ok((scheme, token))
}
