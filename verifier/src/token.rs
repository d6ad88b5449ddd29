//! Token verification: from an untrusted compact JWS to checked [`Claims`].

use crate::claims::{Claims, ClaimsError, MAX_TTL_SECS};
use crate::jose::alg::Algorithm;
use crate::jose::json;
use crate::jose::jws::{Compact, JwsError};
use crate::jose::key::VerifyingKey;
use crate::keys::{KeySource, KeySourceError};
use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Token checks. Every field documents its default.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The issuer URL, compared exactly with `iss`. No default: required.
    pub issuer: String,
    /// Audiences this service answers to; `aud` must name one. No default: required.
    pub audiences: Vec<String>,
    /// Token algorithms accepted. Defaults to ES256, ES384, EdDSA, PS256.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds. Defaults to 5.
    pub leeway: u32,
    /// Longest lifetime (`exp - iat`) accepted, in seconds. Defaults to 300, the hard cap.
    pub max_ttl: u32,
    /// Longest token accepted, in bytes. Defaults to 8192.
    pub max_len: usize,
    /// Verified tokens remembered (by hash) so a reused token skips its
    /// signature check until it expires. Defaults to 100 000; 0 disables.
    pub cache_capacity: usize,
}

impl TokenSettings {
    /// Settings with the defaults for `issuer` and one audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            algorithms: vec![Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::PS256],
            leeway: 5,
            max_ttl: MAX_TTL_SECS as u32,
            max_len: 8192,
            cache_capacity: 100_000,
        }
    }
}

/// Why a token was refused. All map to `invalid_token` except
/// [`TokenError::KeysUnavailable`] (503: we cannot tell).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a well-formed compact JWS with an acceptable header.
    #[error("malformed token: {0}")]
    Malformed(#[from] JwsError),
    /// `alg` not in the allow-list.
    #[error("token alg not allowed")]
    Algorithm,
    /// No `kid`, or no key with that `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The issuer's keys cannot be had right now.
    #[error("issuer keys unavailable: {0}")]
    KeysUnavailable(String),
    /// The signature does not verify.
    #[error("token signature invalid")]
    Signature,
    /// The claims are malformed or out of bounds.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` names none of this service's audiences.
    #[error("wrong audience")]
    Audience,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp - iat` exceeds the cap.
    #[error("token lifetime exceeds the cap")]
    TtlTooLong,
    /// Presented with the wrong scheme or without the proof its `cnf` requires.
    #[error("{0}")]
    Binding(&'static str),
    /// The usage limit is spent.
    #[error("usage limit reached")]
    Exhausted,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
}

/// Verifies tokens' signatures and claims, remembering verified tokens.
#[derive(Debug)]
pub(crate) struct TokenVerifier {
    settings: TokenSettings,
    keys: Arc<dyn KeySource>,
    cache: DashMap<[u8; 32], Arc<Verified>>,
    last_sweep: AtomicI64,
}

/// A token whose signature checked out, and the key that signed it. The
/// key is looked up again at every use (no crypto, a map lookup): a key the
/// issuer withdrew, or a key set too stale to trust, stops cached tokens as
/// it stops new ones.
#[derive(Debug)]
struct Verified {
    claims: Arc<Claims>,
    kid: String,
    alg: Algorithm,
    thumbprint: String,
}

impl TokenVerifier {
    pub(crate) fn new(settings: TokenSettings, keys: Arc<dyn KeySource>) -> Self {
        Self { settings, keys, cache: DashMap::new(), last_sweep: AtomicI64::new(i64::MIN) }
    }

    pub(crate) fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Whether the token is authentic: its signature (or a cache hit), the
    /// shape of its claims, `iss` and `aud`. The claims returned may be
    /// named in audit logs; they are not yet valid (see
    /// [`TokenVerifier::check_validity`]).
    pub(crate) async fn authenticate(&self, token: &str, now: i64) -> Result<Arc<Claims>, TokenError> {
        if token.len() > self.settings.max_len {
            return Err(JwsError::TooLarge(self.settings.max_len).into());
        }
        let digest = openssl::sha::sha256(token.as_bytes());
        let cached = self.cache.get(&digest).map(|c| Arc::clone(&c));
        match cached {
            Some(v) if self.key(&v.kid, v.alg).await?.jwk().thumbprint() == v.thumbprint => Ok(Arc::clone(&v.claims)),
            // Not cached, or the kid now names another key: check afresh.
            _ => {
                let verified = Arc::new(self.verify_signature(token).await?);
                self.check_origin(&verified.claims)?;
                let claims = Arc::clone(&verified.claims);
                self.remember(digest, verified, now);
                Ok(claims)
            }
        }
    }

    /// The checks of an authentic token's lifetime: TTL cap, `exp`, `nbf`,
    /// `iat` against `now`.
    pub(crate) fn check_validity(&self, c: &Claims, now: i64) -> Result<(), TokenError> {
        if c.ttl() > i64::from(self.settings.max_ttl).min(MAX_TTL_SECS) {
            return Err(TokenError::TtlTooLong);
        }
        let leeway = i64::from(self.settings.leeway);
        if now >= c.exp + leeway {
            return Err(TokenError::Expired);
        }
        if c.nbf > now + leeway || c.iat > now + leeway {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// The key named `kid` for `alg`, as the key source has it now.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<VerifyingKey>, TokenError> {
        self.keys.key(kid, alg).await.map_err(|e| match e {
            KeySourceError::UnknownKid | KeySourceError::Key(_) => TokenError::UnknownKey,
            KeySourceError::Unavailable(why) => TokenError::KeysUnavailable(why),
            // A key source that was built cannot be misconfigured, but a
            // custom one may say so: no keys either way.
            e @ KeySourceError::Config { .. } => TokenError::KeysUnavailable(e.to_string()),
        })
    }

    async fn verify_signature(&self, token: &str) -> Result<Verified, TokenError> {
        let jws = Compact::parse(token, self.settings.max_len)?;
        jws.header.refuse(false)?;
        jws.header.require_typ("ekey+jwt")?;
        let alg: Algorithm = jws.header.alg.parse().map_err(|_| TokenError::Algorithm)?;
        if !self.settings.algorithms.contains(&alg) {
            return Err(TokenError::Algorithm);
        }
        let kid = jws.header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self.key(kid, alg).await?;
        if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
            return Err(TokenError::Signature);
        }
        let payload = jws.payload()?;
        let claims: Claims = json::from_object_slice(&payload).map_err(|e| ClaimsError::Malformed(e.to_string()))?;
        claims.check_shape()?;
        Ok(Verified {
            claims: Arc::new(claims),
            kid: kid.to_owned(),
            alg,
            thumbprint: key.jwk().thumbprint().to_owned(),
        })
    }

    /// Whom the token is from and for, checked once per distinct token.
    fn check_origin(&self, c: &Claims) -> Result<(), TokenError> {
        if c.iss != self.settings.issuer {
            return Err(TokenError::Issuer);
        }
        if !self.settings.audiences.iter().any(|a| c.aud.contains(a)) {
            return Err(TokenError::Audience);
        }
        Ok(())
    }

    fn remember(&self, digest: [u8; 32], verified: Arc<Verified>, now: i64) {
        let cap = self.settings.cache_capacity;
        if cap == 0 {
            return;
        }
        // When full, sweep out expired tokens at most once a second, so a
        // cache full of live tokens costs nothing but a missed insert.
        if self.cache.len() >= cap && self.last_sweep.swap(now, Ordering::Relaxed) != now {
            let leeway = i64::from(self.settings.leeway);
            self.cache.retain(|_, v| now < v.claims.exp + leeway);
        }
        if self.cache.len() >= cap {
            return;
        }
        self.cache.insert(digest, verified);
    }
}
