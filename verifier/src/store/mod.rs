//! The replay and usage store: ONE atomic operation per request.

mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{
    redis_error_reason, EvictionCheck, RedisConnection, RedisStore, RedisStoreError, RedisStoreSettings,
};
pub use memory::{MemoryStore, MemoryStoreSettings};

/// Identifies a proof for replay detection: SHA-256 of `jkt ‖ 0x00 ‖ jti`, so
/// one client's `jti` can never collide with another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProofId(pub [u8; 32]);

impl ProofId {
    /// The id of proof `jti` made with key `jkt`.
    pub fn new(jkt: &str, jti: &str) -> Self {
        let mut h = openssl::sha::Sha256::new();
        h.update(jkt.as_bytes());
        h.update(&[0]);
        h.update(jti.as_bytes());
        Self(h.finish())
    }
}

/// One use of a token, to record atomically.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeRequest<'a> {
    /// The token's trace id (`jti`).
    pub trace: &'a str,
    /// `cap.limit`.
    pub limit: u32,
    /// The proof to record against replay (`None` for certificate-bound tokens).
    pub proof: Option<ProofId>,
    /// Current time, seconds.
    pub now: i64,
    /// Until when the entries must be kept (≥ the last moment the token or
    /// proof could still be accepted; the verifier sets about 2 × token TTL).
    pub retain_until: i64,
}

/// What the store decided. Only `Accepted` consumed a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// One use consumed; `used` counts this one.
    Accepted {
        /// Uses so far, including this one.
        used: u32,
        /// Uses left.
        remaining: u32,
    },
    /// The limit was already reached; nothing recorded.
    Exhausted,
    /// This proof was seen before; nothing recorded.
    ReplayedProof,
    /// The trace was revoked; nothing recorded.
    Revoked,
}

/// The store could not answer; the request must be refused (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// At capacity with nothing expired to evict.
    #[error("store full")]
    Full,
    /// The backend is unreachable or answered badly.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Records uses of tokens. Implementations must make [`UsageStore::consume`]
/// atomic: revocation check, proof replay check, limit check, and both
/// records happen as one step, across every verifier sharing the store.
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug {
    /// Consumes one use of `req.trace` and records `req.proof`, or says why not.
    async fn consume(&self, req: &ConsumeRequest<'_>) -> Result<ConsumeOutcome, StoreError>;

    /// Marks a trace revoked until `until`; later consumes answer `Revoked`.
    async fn revoke_trace(&self, trace: &str, until: i64) -> Result<(), StoreError>;

    /// A short, fixed name of the backend (`memory`, `redis`), used as the
    /// `ekey.store.backend` metric attribute. Defaults to `custom`.
    fn backend_name(&self) -> &'static str {
        "custom"
    }

    /// Whether the store can answer now, for readiness probes: one cheap
    /// round trip that changes nothing (Redis: `PING`, bounded by
    /// `request_timeout_ms`). Defaults to `Ok(())`, right for a store in
    /// this process. An error means requests would now be refused with
    /// `store_unavailable`.
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
