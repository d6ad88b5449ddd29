//! The asymmetric JWS algorithms ekey knows. `none` and HMAC are not
//! representable, so no allow-list can admit them.

use std::fmt;
use std::str::FromStr;

/// An asymmetric JWS signature algorithm (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PSS with SHA-256 (RSA ≥ 2048 bits).
    PS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA ≥ 2048 bits).
    RS256,
}

impl Algorithm {
    /// Every algorithm, strongest-preferred first.
    pub const ALL: [Algorithm; 5] = [Self::ES256, Self::ES384, Self::EdDSA, Self::PS256, Self::RS256];

    /// The JOSE name, as in a header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
            Self::PS256 => "PS256",
            Self::RS256 => "RS256",
        }
    }

    /// The fixed signature length, for algorithms that have one.
    pub(crate) fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Self::ES256 | Self::EdDSA => Some(64),
            Self::ES384 => Some(96),
            Self::PS256 | Self::RS256 => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `alg` value that is not one of [`Algorithm`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported algorithm {0:?}")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| UnknownAlgorithm(s.chars().take(32).collect()))
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_weak_algs_do_not_parse() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
        for bad in ["none", "HS256", "es256", "ES256 ", "", "RS1"] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad}");
        }
    }
}
