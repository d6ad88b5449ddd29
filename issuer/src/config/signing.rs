//! The `[signing_key]` section: the active key, the `next` and `previous`
//! keys of a rotation, and how KMS is reached. As written (raw) and
//! validated; checks that need the clock live in [`crate::keyset`].

use super::validate::Fields;
use super::{ConfigError, SigningKeyConfig, SigningKeySource};
use crate::signer::KmsSettings;
use ekey_verifier::{Algorithm, MAX_TTL_SECS};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Clock skew the retention of previous keys allows for, in seconds (the
/// verifier's leeway is at most this).
pub(crate) const RETENTION_SKEW_SECS: i64 = 60;

/// `[signing_key]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSigningKey {
    pub file: Option<PathBuf>,
    pub generate: Option<bool>,
    pub algorithm: Option<String>,
    pub timeout: Option<i64>,
    pub kms_key_id: Option<String>,
    pub published_at: Option<toml::Value>,
    pub previous_retention: Option<i64>,
    #[serde(default)]
    pub kms: RawKms,
    #[serde(default)]
    pub next: Vec<RawKeyEntry>,
    #[serde(default)]
    pub previous: Vec<RawKeyEntry>,
}

/// `[signing_key.kms]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKms {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub attempt_timeout_ms: Option<i64>,
    pub max_attempts: Option<i64>,
    pub breaker_failures: Option<i64>,
    pub breaker_cooldown: Option<i64>,
}

/// `[[signing_key.next]]` / `[[signing_key.previous]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeyEntry {
    pub file: Option<PathBuf>,
    pub kms_key_id: Option<String>,
    pub jwk_file: Option<PathBuf>,
    pub algorithm: Option<String>,
    pub published_at: Option<toml::Value>,
    pub retired_at: Option<toml::Value>,
}

/// A key that is published but does not sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeyConfig {
    /// Where its public key comes from: a PEM file (the public half is
    /// used), a KMS key, or a public JWK file.
    pub source: SigningKeySource,
    /// Unix seconds: when a `next` key was first published, or when a
    /// `previous` key stopped signing.
    pub since: i64,
}

const LOCAL_ALGS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];
const KMS_ALGS: [Algorithm; 4] = [Algorithm::ES256, Algorithm::ES384, Algorithm::PS256, Algorithm::RS256];
const MAX_NEXT: usize = 4;
const MAX_PREVIOUS: usize = 16;

pub(super) fn validate(
    f: &Fields<'_>,
    k: RawSigningKey,
    base: &Path,
    jwks_max_age: u32,
    warnings: &mut Vec<String>,
) -> Result<SigningKeyConfig, ConfigError> {
    let algorithm = |field: &str, v: Option<&str>| {
        v.map(|a| a.parse::<Algorithm>().map_err(|_| f.err(field, format!("unsupported algorithm {:?}", short(a)))))
            .transpose()
    };
    let expect = algorithm("signing_key.algorithm", k.algorithm.as_deref())?;
    let source = match (k.file, k.generate == Some(true), k.kms_key_id) {
        (Some(path), false, None) => SigningKeySource::PemFile { path: base.join(path), expect },
        (None, true, None) => {
            warnings.push(
                "signing_key.generate: the signing key lives in memory only; every replica and every restart \
                 publishes a different key"
                    .into(),
            );
            SigningKeySource::Generate(expect.unwrap_or(Algorithm::ES256))
        }
        (None, false, Some(id)) => {
            SigningKeySource::Kms { key_id: kms_key_id(f, "signing_key.kms_key_id", id)?, algorithm: expect }
        }
        (None, false, None) => {
            return Err(f.err(
                "signing_key",
                "no key: set kms_key_id = \"…\" (AWS KMS), file = \"…pem\" (PKCS#8 private key) or \
                 generate = true (in-memory key, one process)",
            ))
        }
        _ => return Err(f.err("signing_key", "set only one of kms_key_id, file and generate = true")),
    };
    check_algorithm(f, "signing_key.algorithm", &source)?;
    let timeout = f.secs("signing_key.timeout", k.timeout, 60, 5)?;

    let r = k.kms;
    let kms = KmsSettings {
        region: r.region.map(|v| non_empty(f, "signing_key.kms.region", v)).transpose()?,
        endpoint: r.endpoint.map(|v| f.url("signing_key.kms.endpoint", &v).map(|_| v)).transpose()?,
        timeout,
        attempt_timeout: Duration::from_millis(f.int(
            "signing_key.kms.attempt_timeout_ms",
            r.attempt_timeout_ms,
            10..=60_000,
            2000u64,
            " ms",
        )?),
        max_attempts: f.int("signing_key.kms.max_attempts", r.max_attempts, 1..=10, 3u32, "")?,
        breaker_failures: f.int("signing_key.kms.breaker_failures", r.breaker_failures, 1..=1000, 5u32, "")?,
        breaker_cooldown: f.secs("signing_key.kms.breaker_cooldown", r.breaker_cooldown, 600, 5)?,
    };

    // Long enough for every token the key signed to expire, with skew, and
    // for every verifier cache that may hold the old JWKS to refresh.
    let min_retention = MAX_TTL_SECS + RETENTION_SKEW_SECS + i64::from(jwks_max_age);
    let previous_retention = Duration::from_secs(f.int(
        "signing_key.previous_retention",
        k.previous_retention,
        min_retention..=90 * 86_400,
        86_400u64,
        " s",
    )?);

    let published_at = k.published_at.map(|v| time(f, "signing_key.published_at", v)).transpose()?;
    if k.next.len() > MAX_NEXT {
        return Err(f.err("signing_key.next", format!("at most {MAX_NEXT} keys")));
    }
    if k.previous.len() > MAX_PREVIOUS {
        return Err(f.err("signing_key.previous", format!("at most {MAX_PREVIOUS} keys")));
    }
    let entries = |list: Vec<RawKeyEntry>, name: &str| -> Result<Vec<PublishedKeyConfig>, ConfigError> {
        list.into_iter().enumerate().map(|(i, e)| entry(f, &format!("signing_key.{name}[{i}]"), e, base)).collect()
    };
    let next = entries(k.next, "next")?;
    let previous = entries(k.previous, "previous")?;
    Ok(SigningKeyConfig { source, timeout, published_at, next, previous, previous_retention, kms })
}

fn entry(f: &Fields<'_>, field: &str, e: RawKeyEntry, base: &Path) -> Result<PublishedKeyConfig, ConfigError> {
    let sub = |name: &str| format!("{field}.{name}");
    let expect = e
        .algorithm
        .as_deref()
        .map(|a| {
            a.parse::<Algorithm>()
                .map_err(|_| f.err(&sub("algorithm"), format!("unsupported algorithm {:?}", short(a))))
        })
        .transpose()?;
    let source = match (e.file, e.kms_key_id, e.jwk_file) {
        (Some(path), None, None) => SigningKeySource::PemFile { path: base.join(path), expect },
        (None, Some(id), None) => {
            SigningKeySource::Kms { key_id: kms_key_id(f, &sub("kms_key_id"), id)?, algorithm: expect }
        }
        (None, None, Some(path)) => SigningKeySource::PublicJwk { path: base.join(path), algorithm: expect },
        (None, None, None) => return Err(f.err(field, "no key: set kms_key_id, file or jwk_file")),
        _ => return Err(f.err(field, "set only one of kms_key_id, file and jwk_file")),
    };
    check_algorithm(f, &sub("algorithm"), &source)?;
    let is_next = field.starts_with("signing_key.next");
    let since = match (is_next, e.published_at, e.retired_at) {
        (true, Some(t), None) => time(f, &sub("published_at"), t)?,
        (false, None, Some(t)) => time(f, &sub("retired_at"), t)?,
        (true, None, _) => {
            return Err(f.err(&sub("published_at"), "missing: when this key was first published (RFC 3339)"))
        }
        (true, Some(_), Some(_)) => return Err(f.err(&sub("retired_at"), "only for previous keys")),
        (false, _, None) => return Err(f.err(&sub("retired_at"), "missing: when this key stopped signing (RFC 3339)")),
        (false, Some(_), Some(_)) => {
            return Err(f.err(&sub("published_at"), "only for next keys (previous keys take retired_at)"))
        }
    };
    Ok(PublishedKeyConfig { source, since })
}

fn check_algorithm(f: &Fields<'_>, field: &str, source: &SigningKeySource) -> Result<(), ConfigError> {
    let (alg, allowed, what) = match source {
        SigningKeySource::Generate(a) => (Some(*a), &LOCAL_ALGS[..], "local keys (ES256, ES384, EdDSA)"),
        SigningKeySource::PemFile { expect, .. } => (*expect, &LOCAL_ALGS[..], "local keys (ES256, ES384, EdDSA)"),
        SigningKeySource::Kms { algorithm, .. } => (*algorithm, &KMS_ALGS[..], "KMS keys (ES256, ES384, PS256, RS256)"),
        SigningKeySource::PublicJwk { .. } => (None, &[][..], ""),
    };
    match alg {
        Some(a) if !allowed.contains(&a) => Err(f.err(field, format!("{a} is not available for {what}"))),
        _ => Ok(()),
    }
}

fn kms_key_id(f: &Fields<'_>, field: &str, id: String) -> Result<String, ConfigError> {
    // Key id, key ARN, alias name or alias ARN: printable, no spaces, and
    // within KMS's 2048-character limit.
    if id.is_empty() || id.len() > 2048 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(f.err(field, "must be a KMS key id, key ARN, alias (alias/…) or alias ARN"));
    }
    Ok(id)
}

fn non_empty(f: &Fields<'_>, field: &str, v: String) -> Result<String, ConfigError> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(f.err(field, format!("{:?} is not an AWS region name, e.g. eu-west-1", short(&v))));
    }
    Ok(v)
}

/// An RFC 3339 timestamp with an offset, as a TOML date-time
/// (`2026-11-01T09:00:00Z`) or a string, to Unix seconds.
fn time(f: &Fields<'_>, field: &str, v: toml::Value) -> Result<i64, ConfigError> {
    let text = match v {
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::String(s) => s,
        _ => return Err(f.err(field, "must be an RFC 3339 date-time with offset, e.g. 2026-11-01T09:00:00Z")),
    };
    parse_rfc3339(&text).ok_or_else(|| {
        f.err(field, format!("{:?} is not an RFC 3339 date-time with offset, e.g. 2026-11-01T09:00:00Z", short(&text)))
    })
}

/// RFC 3339 to Unix seconds (fractions dropped), by the AWS SDK's parser.
fn parse_rfc3339(text: &str) -> Option<i64> {
    use aws_sdk_kms::primitives::{DateTime, DateTimeFormat};
    DateTime::from_str(text, DateTimeFormat::DateTimeWithOffset).ok().map(|t| t.secs())
}

/// Unix seconds as RFC 3339 UTC.
pub(crate) fn format_rfc3339(secs: i64) -> String {
    use aws_sdk_kms::primitives::{DateTime, DateTimeFormat};
    DateTime::from_secs(secs).fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| format!("@{secs}"))
}

fn short(v: &str) -> String {
    v.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;

    fn config(signing: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("[signing_key]\n{signing}"), Path::new("/etc/ekey"), &|_| Ok(None))
    }

    fn error(signing: &str) -> String {
        config(signing).unwrap_err().to_string()
    }

    #[test]
    fn timestamps_parse_as_toml_datetimes_or_strings() {
        assert_eq!(parse_rfc3339("2026-11-01T09:00:00Z"), Some(1_793_523_600));
        assert_eq!(parse_rfc3339("2026-11-01T10:00:00+01:00"), Some(1_793_523_600));
        assert_eq!(parse_rfc3339("2026-11-01"), None);
        assert_eq!(format_rfc3339(1_793_523_600), "2026-11-01T09:00:00Z");
        let c = config("kms_key_id = \"alias/a\"\npublished_at = 2026-11-01T09:00:00Z").unwrap();
        assert_eq!(c.signing_key.published_at, Some(1_793_523_600));
        let c = config("kms_key_id = \"alias/a\"\npublished_at = \"2026-11-01T09:00:00Z\"").unwrap();
        assert_eq!(c.signing_key.published_at, Some(1_793_523_600));
        assert!(error("kms_key_id = \"alias/a\"\npublished_at = 2026-11-01").starts_with("signing_key.published_at: "));
        assert!(error("kms_key_id = \"alias/a\"\npublished_at = 5").starts_with("signing_key.published_at: "));
    }

    #[test]
    fn a_rotation_config() {
        let c = config(
            r#"
            kms_key_id = "alias/ekey-2026-11"
            published_at = 2026-10-25T09:00:00Z
            [signing_key.kms]
            region = "eu-west-1"
            endpoint = "https://kms.eu-west-1.amazonaws.com"
            [[signing_key.next]]
            kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            published_at = 2026-11-25T09:00:00Z
            [[signing_key.previous]]
            file = "keys/old.pem"
            retired_at = 2026-11-01T09:00:00Z
            [[signing_key.previous]]
            jwk_file = "keys/older.jwk.json"
            algorithm = "ES256"
            retired_at = 2026-10-01T09:00:00Z
            "#,
        )
        .unwrap();
        let k = &c.signing_key;
        assert_eq!(k.source, SigningKeySource::Kms { key_id: "alias/ekey-2026-11".into(), algorithm: None });
        assert_eq!(k.kms.region.as_deref(), Some("eu-west-1"));
        assert_eq!((k.kms.max_attempts, k.kms.breaker_failures), (3, 5));
        assert_eq!(k.kms.timeout, k.timeout);
        assert_eq!(k.previous_retention, Duration::from_secs(86_400));
        assert_eq!(k.next.len(), 1);
        assert_eq!(
            k.previous[0].source,
            SigningKeySource::PemFile { path: PathBuf::from("/etc/ekey/keys/old.pem"), expect: None }
        );
        assert_eq!(
            k.previous[1].source,
            SigningKeySource::PublicJwk {
                path: PathBuf::from("/etc/ekey/keys/older.jwk.json"),
                algorithm: Some(Algorithm::ES256)
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error("kms_key_id = \"alias/a\"\ngenerate = true"),
            "signing_key: set only one of kms_key_id, file and generate = true"
        );
        assert_eq!(
            error("kms_key_id = \"alias/a\"\nalgorithm = \"EdDSA\""),
            "signing_key.algorithm: EdDSA is not available for KMS keys (ES256, ES384, PS256, RS256)"
        );
        assert!(error("kms_key_id = \"alias a\"").starts_with("signing_key.kms_key_id: "));
        assert!(error("generate = true\n[signing_key.kms]\nendpoint = \"ftp://x\"")
            .starts_with("signing_key.kms.endpoint: "));
        assert!(
            error("generate = true\n[signing_key.kms]\nregion = \"eu west\"").starts_with("signing_key.kms.region: ")
        );
        assert_eq!(
            error("generate = true\n[signing_key.kms]\nmax_attempts = 0"),
            "signing_key.kms.max_attempts: 0 is below the minimum of 1"
        );
        assert_eq!(
            error("generate = true\n[[signing_key.next]]\nkms_key_id = \"alias/n\""),
            "signing_key.next[0].published_at: missing: when this key was first published (RFC 3339)"
        );
        let e = error("generate = true\n[[signing_key.next]]\ngenerate = true\npublished_at = 2026-01-01T00:00:00Z");
        assert!(e.contains("generate"), "{e}");
        assert_eq!(
            error("generate = true\n[[signing_key.previous]]\nkms_key_id = \"alias/p\"\npublished_at = 2026-01-01T00:00:00Z"),
            "signing_key.previous[0].retired_at: missing: when this key stopped signing (RFC 3339)"
        );
        assert_eq!(
            error("generate = true\n[[signing_key.previous]]\nfile = \"a.pem\"\njwk_file = \"a.json\"\nretired_at = 2026-01-01T00:00:00Z"),
            "signing_key.previous[0]: set only one of kms_key_id, file and jwk_file"
        );
        // 300 s TTL cap + 60 s skew + 300 s JWKS max-age.
        assert_eq!(
            error("generate = true\nprevious_retention = 600"),
            "signing_key.previous_retention: 600 is below the minimum of 660 s"
        );
    }
}
