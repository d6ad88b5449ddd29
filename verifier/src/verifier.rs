//! The verifier: token, binding, capability, then one atomic store operation.

use crate::capability::ActionPattern;
use crate::claims::Confirmation;
use crate::clock::{Clock, SystemClock};
use crate::dpop::{DpopSettings, ProofError, ProofExpectations, ProofVerifier};
use crate::error::Rejection;
use crate::htu::{normalize_htu, path_of};
use crate::jose::alg::Algorithm;
use crate::jose::b64;
use crate::keys::KeySource;
#[cfg(feature = "metrics")]
use crate::metrics::{StoreAttributes, VerifierMetrics};
use crate::mtls::ClientCert;
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

/// One request as the verifier sees it. Header values are passed as they
/// arrived; `url` is the *external* URL the client used.
#[derive(Debug, Clone, Copy, Default)]
pub struct PresentedRequest<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The absolute URL the client addressed (scheme, host, port, path).
    pub url: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header value (must be exactly one for DPoP-bound tokens).
    pub dpop: &'a [&'a str],
    /// The DER of the client's TLS certificate, if the connection had one.
    pub peer_certificate: Option<&'a [u8]>,
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
        self.decide(self.verify_inner(req, || req.peer_certificate.map(openssl::sha::sha256))).await
    }

    /// [`Verifier::verify`] with the client certificate as a
    /// [`ClientCertSource`](crate::mtls::ClientCertSource) found it (from the
    /// TLS connection or a trusted proxy's header); `req.peer_certificate` is
    /// not used.
    pub async fn verify_with_client_cert(
        &self,
        req: &PresentedRequest<'_>,
        cert: Option<&ClientCert>,
    ) -> Result<VerifiedCapability, Rejection> {
        self.decide(self.verify_inner(req, || cert.map(ClientCert::sha256))).await
    }

    /// Runs one whole verification and, with metrics, records its decision
    /// exactly once (rejections before the store included).
    async fn decide(
        &self,
        verification: impl Future<Output = Result<VerifiedCapability, Rejection>>,
    ) -> Result<VerifiedCapability, Rejection> {
        #[cfg(feature = "metrics")]
        if let Some(observed) = &self.metrics {
            let started = std::time::Instant::now();
            let result = verification.await;
            observed.metrics.record_decision(crate::outcome::Outcome::of(&result), started.elapsed());
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

    /// `cert_sha256` is asked for only when the token is certificate-bound.
    async fn verify_inner(
        &self,
        req: &PresentedRequest<'_>,
        cert_sha256: impl FnOnce() -> Option<[u8; 32]>,
    ) -> Result<VerifiedCapability, Rejection> {
        let now = self.clock.now();
        let (scheme, token) = parse_authorization(req.authorization)?;
        let claims = self.tokens.verify(token, now).await?;
        let htu = normalize_htu(req.url).map_err(|_| Rejection::InvalidProof(ProofError::Htu))?;

        let (binding, proof) = match &claims.cnf {
            Confirmation::Jkt(jkt) => {
                if scheme != Scheme::Dpop {
                    return Err(TokenError::Binding("DPoP-bound token presented without the DPoP scheme").into());
                }
                let expect =
                    ProofExpectations { method: req.method, htu: &htu, access_token: Some(token), jkt: Some(jkt), now };
                let proof = self.proofs.verify(req.dpop, &expect)?;
                let id = ProofId::new(&proof.jkt, &proof.jti);
                (Binding::Dpop { jkt: proof.jkt }, Some((id, proof.iat)))
            }
            Confirmation::X5tS256(x5t) => {
                if scheme != Scheme::Bearer {
                    return Err(TokenError::Binding("certificate-bound token must use the Bearer scheme").into());
                }
                let cert = cert_sha256()
                    .ok_or(TokenError::Binding("certificate-bound token presented without a client certificate"))?;
                let actual = b64::encode(cert);
                if actual.len() != x5t.len() || !openssl::memcmp::eq(actual.as_bytes(), x5t.as_bytes()) {
                    return Err(TokenError::Binding("client certificate does not match the token").into());
                }
                (Binding::Mtls { x5t_s256: x5t.clone() }, None)
            }
        };

        let path = path_of(&htu);
        let action = std::iter::once(&claims.cap.action)
            .chain(&claims.cap.subcap)
            .find(|a| ActionPattern::parse(a).is_ok_and(|p| p.matches(req.method, path)))
            .ok_or(Rejection::InsufficientScope)?;

        if let Some(rules) = &self.revocation {
            rules.check(&claims)?;
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

    /// [`Verifier::verify`] for an `http` request head. `external_url` is the
    /// URL the client used (see the gateway docs for building it behind a
    /// proxy); header values that are not visible ASCII are refused.
    pub async fn verify_http(
        &self,
        method: &http::Method,
        external_url: &str,
        headers: &http::HeaderMap,
        peer_certificate: Option<&[u8]>,
    ) -> Result<VerifiedCapability, Rejection> {
        self.decide(self.verify_http_inner(method, external_url, headers, peer_certificate)).await
    }

    async fn verify_http_inner(
        &self,
        method: &http::Method,
        external_url: &str,
        headers: &http::HeaderMap,
        peer_certificate: Option<&[u8]>,
    ) -> Result<VerifiedCapability, Rejection> {
        let authorization = match headers.get_all(http::header::AUTHORIZATION).iter().collect::<Vec<_>>()[..] {
            [] => None,
            [one] => Some(one.to_str().map_err(|_| TokenError::Binding("Authorization header is not ASCII"))?),
            _ => return Err(TokenError::Binding("more than one Authorization header").into()),
        };
        let dpop = headers
            .get_all("dpop")
            .iter()
            .map(|v| {
                v.to_str()
                    .map_err(|_| Rejection::InvalidProof(ProofError::Malformed(crate::jose::jws::JwsError::NotCompact)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let req = PresentedRequest {
            method: method.as_str(),
            url: external_url,
            authorization,
            dpop: &dpop,
            peer_certificate,
        };
        self.verify_inner(&req, || peer_certificate.map(openssl::sha::sha256)).await
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
