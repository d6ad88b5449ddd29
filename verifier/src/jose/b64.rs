//! Canonical base64url without padding (RFC 7515 §2).

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Rejects padding and non-zero trailing bits, so every byte string has exactly
/// one accepted encoding.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes canonical base64url; `None` for anything else.
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    STRICT.decode(input).ok()
}

/// Encodes as base64url without padding.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    STRICT.encode(input)
}

/// SHA-256 of `input`, base64url-encoded (thumbprints, `ath`, `x5t#S256`).
pub fn sha256_b64(input: impl AsRef<[u8]>) -> String {
    encode(openssl::sha::sha256(input.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len as u8).collect();
            assert_eq!(decode(&encode(&bytes)).as_deref(), Some(&bytes[..]));
        }
    }

    #[test]
    fn rejects_non_canonical() {
        // "AQ" is the canonical encoding of [1]; "AR" has non-zero trailing bits.
        assert_eq!(decode("AQ"), Some(vec![1]));
        assert_eq!(decode("AR"), None);
        assert_eq!(decode("AQ=="), None);
        assert_eq!(decode("A+/a"), None);
        assert_eq!(decode("A"), None);
    }
}
