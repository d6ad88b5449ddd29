//! The words a verify decision is reported with, in audit logs, spans and metrics.

use crate::error::Rejection;

/// What one verification decided: [`Outcome::Success`] or the class of a
/// [`Rejection`]. A small, fixed set, so it is safe as a metric attribute;
/// [`Outcome::as_str`] is the word used everywhere (it equals
/// [`Rejection::reason`] for rejections).
///
/// ```
/// use ekey_verifier::{Outcome, Rejection};
///
/// assert_eq!(Outcome::Success.as_str(), "success");
/// let r = Rejection::InsufficientScope;
/// assert_eq!(Outcome::from(&r).as_str(), r.reason());
/// let result: Result<(), Rejection> = Err(r);
/// assert_eq!(Outcome::of(&result), Outcome::InsufficientScope);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// Every check passed and one use was consumed.
    Success,
    /// No access token, or not the DPoP/Bearer scheme.
    MissingCredentials,
    /// The token is malformed, badly signed, for someone else, not yet valid,
    /// or presented without its binding.
    InvalidToken,
    /// The token's `exp` has passed.
    Expired,
    /// The DPoP proof is invalid (other than replayed).
    InvalidProof,
    /// A fresh server nonce is required.
    UseDpopNonce,
    /// The DPoP proof was used before.
    ReplayBlocked,
    /// The token's usage limit is reached.
    Exhausted,
    /// The token was revoked (by trace or by rule).
    Revoked,
    /// Valid token, but not for this method and path.
    InsufficientScope,
    /// The request path is not in normal form, so no capability is matched
    /// against it.
    InvalidPath,
    /// The store, the issuer's keys or the revocation feed cannot answer.
    StoreUnavailable,
}

impl Outcome {
    /// Every outcome, in declaration order (`ALL[o.index()] == o`).
    pub const ALL: [Outcome; 12] = [
        Self::Success,
        Self::MissingCredentials,
        Self::InvalidToken,
        Self::Expired,
        Self::InvalidProof,
        Self::UseDpopNonce,
        Self::ReplayBlocked,
        Self::Exhausted,
        Self::Revoked,
        Self::InsufficientScope,
        Self::InvalidPath,
        Self::StoreUnavailable,
    ];

    /// The stable, low-cardinality word: `success`, or the rejection reason
    /// (`missing_credentials`, `invalid_token`, `expired`, `invalid_proof`,
    /// `use_dpop_nonce`, `replay_blocked`, `exhausted`, `revoked`,
    /// `insufficient_scope`, `invalid_path`, `store_unavailable`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidToken => "invalid_token",
            Self::Expired => "expired",
            Self::InvalidProof => "invalid_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::ReplayBlocked => "replay_blocked",
            Self::Exhausted => "exhausted",
            Self::Revoked => "revoked",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidPath => "invalid_path",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    /// Position in [`Outcome::ALL`], for tables indexed by outcome.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The outcome of a verification result.
    pub fn of<T>(result: &Result<T, Rejection>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(r) => r.outcome(),
        }
    }
}

impl From<&Rejection> for Outcome {
    fn from(r: &Rejection) -> Self {
        r.outcome()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::ProofError;
    use crate::token::TokenError;

    #[test]
    fn table_order_matches_index() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{o}");
        }
        let mut words: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), Outcome::ALL.len(), "words are distinct");
    }

    #[test]
    fn every_rejection_maps_to_its_reason() {
        let cases = [
            (Rejection::MissingCredentials, Outcome::MissingCredentials),
            (Rejection::InvalidToken(TokenError::Signature), Outcome::InvalidToken),
            (Rejection::InvalidToken(TokenError::Expired), Outcome::Expired),
            (Rejection::InvalidToken(TokenError::Exhausted), Outcome::Exhausted),
            (Rejection::InvalidToken(TokenError::Revoked), Outcome::Revoked),
            (Rejection::InvalidProof(ProofError::Htm), Outcome::InvalidProof),
            (Rejection::InvalidProof(ProofError::Replayed), Outcome::ReplayBlocked),
            (Rejection::UseDpopNonce("n".into()), Outcome::UseDpopNonce),
            (Rejection::InsufficientScope, Outcome::InsufficientScope),
            (Rejection::InvalidPath(crate::path::PathError::EmptySegment), Outcome::InvalidPath),
            (Rejection::Unavailable("x".into()), Outcome::StoreUnavailable),
        ];
        for (rejection, outcome) in &cases {
            assert_eq!(rejection.outcome(), *outcome, "{rejection:?}");
            assert_eq!(rejection.reason(), outcome.as_str());
            assert_eq!(Outcome::of::<()>(&Err(rejection.clone())), *outcome);
        }
        // Every outcome but success is reachable from some rejection.
        assert_eq!(cases.len() + 1, Outcome::ALL.len());
        assert_eq!(Outcome::of(&Ok::<_, Rejection>(())), Outcome::Success);
        assert_eq!(Outcome::Revoked.to_string(), "revoked");
    }
}
