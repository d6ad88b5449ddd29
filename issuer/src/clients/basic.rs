//! `client_secret_basic` (RFC 6749 §2.3.1): the `Authorization: Basic` header
//! and the secret comparison.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::percent_decode_str;

/// The SHA-256 of a client secret. Only the digest is kept, and presented
/// secrets are hashed before a constant-time comparison, so neither the
/// secret's length nor its prefix leaks through timing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretDigest([u8; 32]);

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

impl SecretDigest {
    pub(crate) fn from_digest(d: [u8; 32]) -> Self {
        Self(d)
    }

    pub(crate) fn of(secret: &[u8]) -> Self {
        Self(openssl::sha::sha256(secret))
    }

    /// Constant-time comparison of `presented` with this secret.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        openssl::memcmp::eq(&openssl::sha::sha256(presented.as_bytes()), &self.0)
    }
}

/// Splits `Basic base64(urlencode(id) ":" urlencode(secret))` into id and
/// secret. `None` when the value is not of that shape.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let (id, secret) = (form_decode(id)?, form_decode(secret)?);
    (!id.is_empty()).then_some((id, secret))
}

/// `application/x-www-form-urlencoded` decoding of one component.
fn form_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_decode_str(&plus_as_space).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn parses_and_decodes_both_parts() {
        assert_eq!(parse_basic(&basic("client:s3cret")), Some(("client".into(), "s3cret".into())));
        assert_eq!(parse_basic(&basic("a%3Ab:x%2By+z")), Some(("a:b".into(), "x+y z".into())));
        assert_eq!(parse_basic(&format!("basic  {}", STANDARD.encode("c:s"))), Some(("c".into(), "s".into())));
    }

    #[test]
    fn refuses_malformed() {
        for bad in ["Basic", "Basic !!!", "Bearer abc", &basic("no-colon"), &basic(":secret"), &basic("a:%ff")] {
            assert_eq!(parse_basic(bad), None, "{bad}");
        }
    }

    #[test]
    fn digest_comparison() {
        let d = SecretDigest::of(b"correct horse");
        assert!(d.matches("correct horse"));
        assert!(!d.matches("correct horsf"));
        assert!(!d.matches(""));
        assert_eq!(format!("{d:?}"), "SecretDigest(..)");
    }
}
