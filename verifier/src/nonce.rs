//! Stateless DPoP server nonces (RFC 9449 §8): an HMAC of a time-window index
//! under a secret every replica shares, so any replica checks any other's
//! nonce without a shared store.

use crate::jose::b64;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use std::fmt;

const TAG_LEN: usize = 16;
const LABEL: &[u8] = b"ekey dpop nonce v1";

/// Issues and checks nonces. A nonce is valid in the window it was issued in
/// and the next one, so its lifetime is between one and two windows.
#[derive(Clone)]
pub struct NonceSource {
    key: PKey<openssl::pkey::Private>,
    window: i64,
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource").field("window", &self.window).finish_non_exhaustive()
    }
}

/// The secret is too short or the window is not positive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DPoP nonce secret must be at least 32 bytes and the window at least 1 s")]
pub struct NonceConfigError;

impl NonceSource {
    /// `secret` (≥ 32 bytes) is shared by every issuer and verifier replica;
    /// `window_secs` is how often the nonce changes.
    pub fn new(secret: &[u8], window_secs: u32) -> Result<Self, NonceConfigError> {
        if secret.len() < 32 || window_secs == 0 {
            return Err(NonceConfigError);
        }
        let key = PKey::hmac(secret).map_err(|_| NonceConfigError)?;
        Ok(Self { key, window: i64::from(window_secs) })
    }

    /// The nonce to hand out at time `now`.
    pub fn current(&self, now: i64) -> String {
        let index = now.div_euclid(self.window);
        let mut raw = Vec::with_capacity(8 + TAG_LEN);
        raw.extend_from_slice(&index.to_be_bytes());
        raw.extend_from_slice(&self.tag(index));
        b64::encode(raw)
    }

    /// Whether `nonce` was issued in the current or the previous window.
    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let Some(raw) = b64::decode(nonce).filter(|r| r.len() == 8 + TAG_LEN) else {
            return false;
        };
        let mut index = [0u8; 8];
        index.copy_from_slice(&raw[..8]);
        let index = i64::from_be_bytes(index);
        let current = now.div_euclid(self.window);
        (index == current || index == current - 1) && openssl::memcmp::eq(&raw[8..], &self.tag(index))
    }

    fn tag(&self, index: i64) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        // HMAC-SHA256 over a fixed label and the window index; errors here
        // would mean OpenSSL itself is broken, and an all-zero tag then simply
        // never matches a real one... so fail hard instead of silently.
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).expect("HMAC-SHA256 is available");
        signer.update(LABEL).expect("HMAC update");
        signer.update(&index.to_be_bytes()).expect("HMAC update");
        let full = signer.sign_to_vec().expect("HMAC final");
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_for_current_and_next_window_only() {
        let n = NonceSource::new(&[7u8; 32], 60).unwrap();
        let t = 1_700_000_000;
        let nonce = n.current(t);
        assert!(n.is_valid(&nonce, t));
        assert!(n.is_valid(&nonce, t + 60));
        assert!(!n.is_valid(&nonce, t + 180));
        assert!(!n.is_valid(&nonce, t - 120));
        assert!(!n.is_valid("garbage", t));
        let other = NonceSource::new(&[8u8; 32], 60).unwrap();
        assert!(!other.is_valid(&nonce, t));
    }

    #[test]
    fn replicas_with_one_secret_agree() {
        let a = NonceSource::new(b"0123456789abcdef0123456789abcdef", 30).unwrap();
        let b = NonceSource::new(b"0123456789abcdef0123456789abcdef", 30).unwrap();
        assert!(b.is_valid(&a.current(100), 100));
        assert_eq!(NonceSource::new(b"short", 30).unwrap_err(), NonceConfigError);
    }
}
