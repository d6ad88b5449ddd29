//! The DPoP proof on a token request (RFC 9449 §5): it names the key the
//! token will be bound to. The checks themselves are the verifier's
//! [`ProofVerifier`]; this adds what is particular to the token endpoint.

use crate::replay::ReplayKey;
use ekey_verifier::{
    normalize_htu, DpopSettings, HtuError, PresentedRequest, ProofError, ProofExpectations, ProofVerifier,
    VerifiedProof,
};
use http::HeaderMap;

/// Why a token request's proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// No `DPoP` header and no TLS client certificate: this issuer only
    /// mints bound tokens.
    #[error(
        "a DPoP proof is required: this issuer only issues bound tokens (send a DPoP header, RFC 9449, or connect \
         with a TLS client certificate, RFC 8705)"
    )]
    Missing,
    /// A proof that fails a check.
    #[error("invalid DPoP proof: {0}")]
    Invalid(ProofError),
    /// Nonces are on and the proof has no fresh one; carries the nonce to use.
    #[error("a fresh DPoP nonce is required (see the DPoP-Nonce header)")]
    UseNonce(String),
}

/// Checks proofs against the token endpoint's public URL.
#[derive(Debug)]
pub(crate) struct TokenDpop {
    proofs: ProofVerifier,
    htu: String,
}

impl TokenDpop {
    /// `token_endpoint` is the public URL clients put in `htu`.
    pub(crate) fn new(settings: DpopSettings, token_endpoint: &str) -> Result<Self, HtuError> {
        Ok(Self { proofs: ProofVerifier::new(settings), htu: normalize_htu(token_endpoint)? })
    }

    /// Verifies the request's `DPoP` header(s), read as the verifier reads
    /// them (exactly one, visible ASCII).
    pub(crate) fn verify(&self, headers: &HeaderMap, now: i64) -> Result<VerifiedProof, DpopError> {
        let values = PresentedRequest::dpop_headers(headers).map_err(DpopError::Invalid)?;
        let expect = ProofExpectations { method: "POST", htu: &self.htu, access_token: None, jkt: None, now };
        self.proofs.verify(&values, &expect).map_err(|e| match e {
            ProofError::Missing => DpopError::Missing,
            ProofError::NonceRequired(nonce) => DpopError::UseNonce(nonce),
            other => DpopError::Invalid(other),
        })
    }

    /// The replay-cache entry for `proof`, kept as long as the proof's `iat`
    /// could still pass the window check.
    pub(crate) fn replay_entry(&self, proof: &VerifiedProof) -> (ReplayKey, i64) {
        let s = self.proofs.settings();
        (ReplayKey::proof(&proof.jkt, &proof.jti), proof.iat + i64::from(s.max_age) + 2 * i64::from(s.leeway))
    }

    /// The nonce to hand out now, when nonces are on.
    pub(crate) fn current_nonce(&self, now: i64) -> Option<String> {
        self.proofs.settings().nonce.as_ref().map(|n| n.current(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::client::DpopKey;
    use ekey_verifier::{Algorithm, NonceSource};
    use http::HeaderValue;

    const URL: &str = "https://issuer.example.com/token";
    const NOW: i64 = 1_700_000_000;

    fn with(proof: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("dpop", HeaderValue::from_str(proof).unwrap());
        h
    }

    #[test]
    fn proof_for_the_token_endpoint() {
        let d = TokenDpop::new(DpopSettings::default(), URL).unwrap();
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let ok = d.verify(&with(&key.proof("POST", URL, None, None, NOW).unwrap()), NOW).unwrap();
        assert_eq!(ok.jkt, key.thumbprint());
        assert_eq!(d.replay_entry(&ok).1, NOW + 70);
        assert_eq!(d.verify(&HeaderMap::new(), NOW), Err(DpopError::Missing));
        let wrong_url = key.proof("POST", "https://issuer.example.com/other", None, None, NOW).unwrap();
        assert_eq!(d.verify(&with(&wrong_url), NOW), Err(DpopError::Invalid(ProofError::Htu)));
        let wrong_method = key.proof("GET", URL, None, None, NOW).unwrap();
        assert_eq!(d.verify(&with(&wrong_method), NOW), Err(DpopError::Invalid(ProofError::Htm)));
        let old = key.proof("POST", URL, None, None, NOW - 600).unwrap();
        assert_eq!(d.verify(&with(&old), NOW), Err(DpopError::Invalid(ProofError::Iat)));
        assert!(matches!(d.verify(&with("garbage"), NOW), Err(DpopError::Invalid(_))));
        let mut two = with(&key.proof("POST", URL, None, None, NOW).unwrap());
        two.append("dpop", HeaderValue::from_static("x"));
        assert_eq!(d.verify(&two, NOW), Err(DpopError::Invalid(ProofError::Multiple)));
        let not_ascii = HeaderValue::from_bytes(b"\xff").unwrap();
        let mut h = HeaderMap::new();
        h.insert("dpop", not_ascii);
        assert!(matches!(d.verify(&h, NOW), Err(DpopError::Invalid(ProofError::Malformed(_)))));
    }

    #[test]
    fn nonce_required_when_configured() {
        let nonces = NonceSource::new(&[9u8; 32], 60).unwrap();
        let settings = DpopSettings { nonce: Some(nonces.clone()), ..DpopSettings::default() };
        let d = TokenDpop::new(settings, URL).unwrap();
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let Err(DpopError::UseNonce(n)) = d.verify(&with(&key.proof("POST", URL, None, None, NOW).unwrap()), NOW)
        else {
            panic!("nonce not required");
        };
        assert_eq!(Some(n.clone()), d.current_nonce(NOW));
        assert!(d.verify(&with(&key.proof("POST", URL, None, Some(&n), NOW).unwrap()), NOW).is_ok());
    }
}
