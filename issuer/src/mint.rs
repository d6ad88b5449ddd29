//! Minting: the claims of a granted capability, the JWS header of the active
//! key, one signature.

use crate::policy::Grant;
use crate::signer::{SignError, Signer};
use ekey_verifier::{b64_encode, Audience, Capability, Claims, ClaimsError, Confirmation};
use std::sync::Arc;
use std::time::Duration;

/// Why no token was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// No randomness for the `jti`.
    #[error("no randomness for jti: {0}")]
    Random(String),
    /// The claims fail the token profile (a bug or a bad template).
    #[error("claims fail the profile: {0}")]
    Claims(ClaimsError),
    /// The signer failed.
    #[error(transparent)]
    Sign(SignError),
    /// The signer took longer than the configured timeout.
    #[error("signer timed out after {0:?}")]
    Timeout(Duration),
}

/// A signed token.
#[derive(Debug, Clone)]
pub(crate) struct Minted {
    pub token: String,
    pub claims: Claims,
}

/// Makes tokens with one signer. The header is encoded once: it only depends
/// on the key.
#[derive(Debug)]
pub(crate) struct Minter {
    signer: Arc<dyn Signer>,
    issuer: String,
    header_b64: String,
    timeout: Duration,
}

impl Minter {
    pub(crate) fn new(signer: Arc<dyn Signer>, issuer: String, timeout: Duration) -> Self {
        let header = serde_json::json!({ "alg": signer.algorithm().as_str(), "typ": "ekey+jwt", "kid": signer.kid() });
        Self { header_b64: b64_encode(header.to_string()), signer, issuer, timeout }
    }

    /// What signs: [`Signer::kind`] of the signer.
    pub(crate) fn signer_kind(&self) -> &'static str {
        self.signer.kind()
    }

    /// Builds, checks and signs the token for `sub`.
    pub(crate) async fn mint(
        &self,
        sub: &str,
        grant: &Grant,
        cnf: Confirmation,
        now: i64,
    ) -> Result<Minted, MintError> {
        let mut jti = [0u8; 16];
        openssl::rand::rand_bytes(&mut jti).map_err(|e| MintError::Random(e.to_string()))?;
        let aud = match grant.audience.as_slice() {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud,
            iat: now,
            nbf: now,
            exp: now + i64::from(grant.template.ttl),
            jti: b64_encode(jti),
            cap: Capability {
                action: grant.action.clone(),
                scope: grant.template.scope.clone(),
                limit: grant.limit,
                subcap: grant.subcap.clone(),
            },
            cnf,
            tpl: Some(grant.template.name.clone()),
        };
        // The verifier runs the same check: never sign what it would refuse.
        claims.check_shape().map_err(MintError::Claims)?;
        let payload =
            serde_json::to_vec(&claims).map_err(|e| MintError::Claims(ClaimsError::Malformed(e.to_string())))?;
        let input = format!("{}.{}", self.header_b64, b64_encode(payload));
        let signature = tokio::time::timeout(self.timeout, self.signer.sign(input.as_bytes()))
            .await
            .map_err(|_| MintError::Timeout(self.timeout))?
            .map_err(MintError::Sign)?;
        Ok(Minted { token: format!("{input}.{}", b64_encode(signature)), claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BindingRequirement, TemplateConfig};
    use crate::signer::LocalSigner;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ekey_verifier::{dangerous, Algorithm, VerifyingKey};

    fn grant(ttl: u32, action: &str) -> Grant {
        Grant {
            template: Arc::new(TemplateConfig {
                name: "t".into(),
                clients: vec!["c".into()],
                actions: vec![action.into()],
                subcap: vec![],
                max_limit: 3,
                default_limit: 1,
                ttl,
                audience: vec!["https://api".into()],
                binding: BindingRequirement::Any,
                scope: Some("create:payment".into()),
            }),
            action: action.into(),
            limit: 2,
            subcap: vec![],
            audience: vec!["https://api".into()],
        }
    }

    #[tokio::test]
    async fn token_has_the_profile_and_verifies() {
        let signer = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let m = Minter::new(signer.clone(), "https://issuer".into(), Duration::from_secs(5));
        let minted = m.mint("c", &grant(60, "POST:/p/:id"), Confirmation::Jkt("thumb".into()), 1000).await.unwrap();
        let (header, payload) = dangerous::decode_unverified(&minted.token).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "ES256", "typ": "ekey+jwt", "kid": signer.kid()}));
        assert_eq!(
            (payload["iat"].as_i64(), payload["nbf"].as_i64(), payload["exp"].as_i64()),
            (Some(1000), Some(1000), Some(1060))
        );
        assert_eq!(payload["aud"], "https://api");
        assert_eq!(payload["cap"], serde_json::json!({"action": "POST:/p/:id", "scope": "create:payment", "limit": 2}));
        assert_eq!(payload["cnf"], serde_json::json!({"jkt": "thumb"}));
        assert_eq!(payload["tpl"], "t");
        assert_eq!(URL_SAFE_NO_PAD.decode(payload["jti"].as_str().unwrap()).unwrap().len(), 16);
        let (input, sig) = minted.token.rsplit_once('.').unwrap();
        let vk = VerifyingKey::new(signer.public_jwk(), Algorithm::ES256).unwrap();
        assert!(vk.verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap()));
        let other = m.mint("c", &grant(60, "POST:/p/:id"), Confirmation::Jkt("thumb".into()), 1000).await.unwrap();
        assert_ne!(other.claims.jti, minted.claims.jti);
    }

    #[tokio::test]
    async fn profile_check_runs_before_signing() {
        let signer = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let m = Minter::new(signer, "https://issuer".into(), Duration::from_secs(5));
        let err = m.mint("c", &grant(60, "nonsense"), Confirmation::Jkt("t".into()), 1000).await.unwrap_err();
        assert!(matches!(err, MintError::Claims(_)));
    }
}
