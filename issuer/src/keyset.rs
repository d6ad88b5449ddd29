//! The issuer's keys: the one that signs, and the ones only published.
//!
//! Rotation (design: "keyset") needs three roles: the *active* key signs; the
//! *next* key is published at least one JWKS cache lifetime before it becomes
//! active, so verifiers already hold it; *previous* keys stay published until
//! every token they signed has expired. Only the active key needs a
//! [`Signer`]; the others are public JWKs.

use crate::config::{format_rfc3339, ConfigError, PublishedKeyConfig, SigningKeyConfig, SigningKeySource};
use crate::signer::{KmsClient, KmsSigner, LocalSigner, Signer};
use ekey_verifier::{Algorithm, JwkError, Jwks, PublicJwk};
use std::fmt::Write as _;
use std::sync::Arc;

/// How far in the future a `published_at`/`retired_at` may lie (clock skew
/// between the operator's machine and the issuer), in seconds.
const FUTURE_SKEW_SECS: i64 = 60;

/// Why a key is in the JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRole {
    /// Signs new tokens.
    Active,
    /// Will sign after the next rotation.
    Next,
    /// Signed tokens that may still be alive.
    Previous,
}

impl KeyRole {
    /// `active`, `next` or `previous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Next => "next",
            Self::Previous => "previous",
        }
    }
}

/// A key as published: `kid` = thumbprint, `alg`, `use: sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishedKey {
    /// The public key with `kid` and `alg` set.
    pub jwk: PublicJwk,
    /// Its role.
    pub role: KeyRole,
    /// Unix seconds: when an active or next key was first published, when
    /// a previous key stopped signing; `None` when the config does not say.
    pub since: Option<i64>,
    /// Where the key lives, for people (`kms arn:…`, `file …`).
    pub origin: String,
}

/// The active signer plus any further published keys.
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ekey_issuer::{KeyRole, KeySet, LocalSigner, Signer};
/// use ekey_verifier::Algorithm;
///
/// let active = Arc::new(LocalSigner::generate(Algorithm::ES256)?);
/// let next = LocalSigner::generate(Algorithm::ES256)?;
/// let keys = KeySet::new(active)
///     .with_published(next.public_jwk().clone(), next.algorithm(), KeyRole::Next)?;
/// assert_eq!(keys.jwks().keys().len(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeySet {
    active: Arc<dyn Signer>,
    published: Vec<PublishedKey>,
    jwks: Jwks,
}

impl KeySet {
    /// A set whose only key is `active`.
    pub fn new(active: Arc<dyn Signer>) -> Self {
        let jwk = active.public_jwk().clone().with_kid_and_alg(active.kid(), active.algorithm());
        let published =
            vec![PublishedKey { jwk: jwk.clone(), role: KeyRole::Active, since: None, origin: String::new() }];
        // One key with a kid: `Jwks::new` cannot fail.
        let jwks = Jwks::new(vec![jwk]).unwrap_or_default();
        Self { active, published, jwks }
    }

    /// Also publishes `jwk` (for `alg`) as a next or previous key. Fails when
    /// its thumbprint is already published or the key cannot do `alg`.
    pub fn with_published(self, jwk: PublicJwk, alg: Algorithm, role: KeyRole) -> Result<Self, JwkError> {
        self.with_published_since(jwk, alg, role, None, String::new())
    }

    /// [`KeySet::with_published`], saying since when (Unix seconds) and
    /// where the key lives.
    pub fn with_published_since(
        mut self,
        jwk: PublicJwk,
        alg: Algorithm,
        role: KeyRole,
        since: Option<i64>,
        origin: String,
    ) -> Result<Self, JwkError> {
        if !jwk.allows(alg) {
            return Err(JwkError::InvalidMember("alg"));
        }
        let kid = jwk.thumbprint().to_owned();
        self.published.push(PublishedKey { jwk: jwk.with_kid_and_alg(kid, alg), role, since, origin });
        self.jwks = Jwks::new(self.published.iter().map(|k| k.jwk.clone()).collect())?;
        Ok(self)
    }

    /// Records since when the active key is published and where it lives.
    pub fn describe_active(mut self, since: Option<i64>, origin: String) -> Self {
        if let Some(k) = self.published.first_mut() {
            k.since = since;
            k.origin = origin;
        }
        self
    }

    /// The key that signs.
    pub fn active(&self) -> &Arc<dyn Signer> {
        &self.active
    }

    /// Every published key, the active one first.
    pub fn published(&self) -> &[PublishedKey] {
        &self.published
    }

    /// The public JWK set.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }
}

/// The time rules of a rotation, checked before any key is read: what the
/// config may publish and sign at `now` (Unix seconds). Returns warnings.
///
/// * The active key signs only once it has been published for a whole JWKS
///   max-age, so every verifier cache already holds it: `published_at +
///   jwks_max_age <= now`. A rotation (any previous key listed) must say
///   `published_at`; a first deployment need not.
/// * `published_at` and `retired_at` are not in the future.
/// * A previous key past its retention may be removed (a warning).
pub fn check_schedule(k: &SigningKeyConfig, jwks_max_age: u32, now: i64) -> Result<Vec<String>, ConfigError> {
    let max_age = i64::from(jwks_max_age);
    let mut warnings = Vec::new();
    match k.published_at {
        Some(t) if t > now + FUTURE_SKEW_SECS => {
            return Err(ConfigError::invalid(
                "signing_key.published_at",
                format!("{} is in the future", format_rfc3339(t)),
            ))
        }
        Some(t) if t + max_age > now => {
            return Err(ConfigError::invalid(
                "signing_key.published_at",
                format!(
                    "this key was first published at {}; verifiers may hold a JWKS without it until {} \
                     (endpoints.jwks_max_age = {max_age} s), so it may not sign before then (in {} s). \
                     Keep it under [[signing_key.next]] until then",
                    format_rfc3339(t),
                    format_rfc3339(t + max_age),
                    t + max_age - now
                ),
            ))
        }
        Some(_) => {}
        None if !k.previous.is_empty() => {
            return Err(ConfigError::invalid(
                "signing_key.published_at",
                "required when previous keys are listed (a rotation): when this key was first published as a \
                 next key, so that the issuer can check verifiers have had it for a whole JWKS max-age",
            ))
        }
        None if !matches!(k.source, SigningKeySource::Generate(_)) => warnings.push(
            "signing_key.published_at: not set, so nothing checks that verifiers already know this key; \
             fine for a first deployment, but a new key must be published as a next key first \
             (docs/key-rotation.md)"
                .to_owned(),
        ),
        None => {}
    }
    for (list, name, what) in [(&k.next, "next", "published_at"), (&k.previous, "previous", "retired_at")] {
        for (i, e) in list.iter().enumerate() {
            if e.since > now + FUTURE_SKEW_SECS {
                return Err(ConfigError::invalid(
                    format!("signing_key.{name}[{i}].{what}"),
                    format!("{} is in the future", format_rfc3339(e.since)),
                ));
            }
        }
    }
    let retention = i64::try_from(k.previous_retention.as_secs()).unwrap_or(i64::MAX);
    for (i, e) in k.previous.iter().enumerate() {
        if e.since.saturating_add(retention) <= now {
            warnings.push(format!(
                "signing_key.previous[{i}]: retired at {}, past its retention ({} s); it may be removed",
                format_rfc3339(e.since),
                retention
            ));
        }
    }
    Ok(warnings)
}

/// Builds the key set the config describes at `now`: checks the schedule,
/// then reads every key (KMS `GetPublicKey` for KMS keys). Returns the set
/// and the schedule's warnings.
pub async fn load(k: &SigningKeyConfig, jwks_max_age: u32, now: i64) -> Result<(KeySet, Vec<String>), ConfigError> {
    load_metered(k, jwks_max_age, now, None).await
}

/// [`load`], with a KMS signer measured on `meter` (see
/// [`KmsSigner::with_metrics`]).
pub(crate) async fn load_metered(
    k: &SigningKeyConfig,
    jwks_max_age: u32,
    now: i64,
    meter: Option<&opentelemetry::metrics::Meter>,
) -> Result<(KeySet, Vec<String>), ConfigError> {
    let warnings = check_schedule(k, jwks_max_age, now)?;
    let uses_kms = std::iter::once(&k.source)
        .chain(k.next.iter().chain(&k.previous).map(|e| &e.source))
        .any(|s| matches!(s, SigningKeySource::Kms { .. }));
    let kms = match uses_kms {
        true => Some(
            KmsClient::from_env(k.kms.clone())
                .await
                .map_err(|e| ConfigError::invalid("signing_key.kms", e.to_string()))?,
        ),
        false => None,
    };
    let (active, origin) = active_signer(&k.source, kms.as_ref(), meter).await?;
    let mut set = KeySet::new(active).describe_active(k.published_at, origin);
    for (list, name, role) in [(&k.next, "next", KeyRole::Next), (&k.previous, "previous", KeyRole::Previous)] {
        for (i, e) in list.iter().enumerate() {
            let field = format!("signing_key.{name}[{i}]");
            let (jwk, alg, origin) = public_key(&field, e, kms.as_ref()).await?;
            set = set
                .with_published_since(jwk, alg, role, Some(e.since), origin)
                .map_err(|e| ConfigError::invalid(&field, e.to_string()))?;
        }
    }
    Ok((set, warnings))
}

async fn active_signer(
    source: &SigningKeySource,
    kms: Option<&KmsClient>,
    meter: Option<&opentelemetry::metrics::Meter>,
) -> Result<(Arc<dyn Signer>, String), ConfigError> {
    match source {
        SigningKeySource::Kms { key_id, algorithm } => {
            let client = kms.ok_or_else(|| ConfigError::invalid("signing_key.kms", "no KMS client"))?;
            let signer = KmsSigner::connect(client.clone(), key_id, *algorithm)
                .await
                .map_err(|e| ConfigError::invalid("signing_key.kms_key_id", e.to_string()))?;
            let origin = format!("kms {}", signer.key_arn());
            let signer = match meter {
                Some(m) => signer.with_metrics(m),
                None => signer,
            };
            Ok((Arc::new(signer), origin))
        }
        other => {
            let (signer, origin) = local_signer("signing_key", other)?;
            Ok((Arc::new(signer), origin))
        }
    }
}

/// A local key from `generate` or a PEM file; `field` names the section.
pub(crate) fn local_signer(field: &str, source: &SigningKeySource) -> Result<(LocalSigner, String), ConfigError> {
    match source {
        SigningKeySource::Generate(alg) => LocalSigner::generate(*alg)
            .map(|s| (s, "generated in memory".to_owned()))
            .map_err(|e| ConfigError::invalid(format!("{field}.algorithm"), format!("cannot generate a key: {e}"))),
        SigningKeySource::PemFile { path, expect } => {
            let signer = LocalSigner::from_pem_file(path)
                .map_err(|e| ConfigError::invalid(format!("{field}.file"), e.to_string()))?;
            match expect {
                Some(alg) if *alg != signer.algorithm() => Err(ConfigError::invalid(
                    format!("{field}.algorithm"),
                    format!("{alg} does not match the key file, which is a {} key", signer.algorithm()),
                )),
                _ => Ok((signer, format!("file {}", path.display()))),
            }
        }
        SigningKeySource::Kms { .. } | SigningKeySource::PublicJwk { .. } => {
            Err(ConfigError::invalid(field, "not a local private key"))
        }
    }
}

async fn public_key(
    field: &str,
    e: &PublishedKeyConfig,
    kms: Option<&KmsClient>,
) -> Result<(PublicJwk, Algorithm, String), ConfigError> {
    match &e.source {
        SigningKeySource::Kms { key_id, algorithm } => {
            let client = kms.ok_or_else(|| ConfigError::invalid("signing_key.kms", "no KMS client"))?;
            let key = client
                .public_key(key_id, *algorithm)
                .await
                .map_err(|err| ConfigError::invalid(format!("{field}.kms_key_id"), err.to_string()))?;
            Ok((key.jwk, key.algorithm, format!("kms {}", key.arn)))
        }
        SigningKeySource::PublicJwk { path, algorithm } => {
            let bad = |why: String| ConfigError::invalid(format!("{field}.jwk_file"), why);
            let bytes = std::fs::read(path).map_err(|err| bad(format!("cannot read {}: {err}", path.display())))?;
            let jwk = PublicJwk::from_json(&bytes).map_err(|err| bad(err.to_string()))?;
            let alg = match (*algorithm, jwk.alg()) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ConfigError::invalid(
                        format!("{field}.algorithm"),
                        format!("{a} does not match the JWK's alg {b}"),
                    ))
                }
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => {
                    return Err(ConfigError::invalid(
                        format!("{field}.algorithm"),
                        "missing: the JWK has no alg member, so say which algorithm the key signed",
                    ))
                }
            };
            if !jwk.allows(alg) {
                return Err(ConfigError::invalid(format!("{field}.algorithm"), format!("the JWK cannot do {alg}")));
            }
            Ok((jwk, alg, format!("jwk {}", path.display())))
        }
        local => {
            let (signer, origin) = local_signer(field, local)?;
            Ok((signer.public_jwk().clone(), signer.algorithm(), origin))
        }
    }
}

/// The state of each key, for `ekey-issuer keys`: one line per key with its
/// role, `kid`, algorithm, since when, and what happens next.
pub fn report(set: &KeySet, k: &SigningKeyConfig, jwks_max_age: u32, now: i64) -> String {
    let max_age = i64::from(jwks_max_age);
    let retention = i64::try_from(k.previous_retention.as_secs()).unwrap_or(i64::MAX);
    let mut out = String::new();
    for key in set.published() {
        let kid = key.jwk.kid().unwrap_or_default();
        let alg = key.jwk.alg().map(|a| a.as_str()).unwrap_or("?");
        let since = key.since.map(format_rfc3339);
        let state = match (key.role, key.since) {
            (KeyRole::Active, Some(t)) => format!("signing; published since {}", format_rfc3339(t)),
            (KeyRole::Active, None) => "signing; published_at not set".to_owned(),
            (KeyRole::Next, Some(t)) if t + max_age <= now => {
                format!("published since {}; may become active now", since.unwrap_or_default())
            }
            (KeyRole::Next, Some(t)) => format!(
                "published since {}; may become active from {}",
                since.unwrap_or_default(),
                format_rfc3339(t + max_age)
            ),
            (KeyRole::Previous, Some(t)) if t.saturating_add(retention) <= now => {
                format!("retired at {}; may be removed now", since.unwrap_or_default())
            }
            (KeyRole::Previous, Some(t)) => format!(
                "retired at {}; keep published until {}",
                since.unwrap_or_default(),
                format_rfc3339(t.saturating_add(retention))
            ),
            (_, None) => "published".to_owned(),
        };
        let _ = writeln!(out, "{:<8} {kid} {alg:<5} {state} ({})", key.role.as_str(), key.origin);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalSigner;

    fn signing(toml: &str) -> SigningKeyConfig {
        crate::config::Config::from_toml_str(&format!("[signing_key]\n{toml}")).unwrap().signing_key
    }

    const T: i64 = 1_793_523_600; // 2026-11-01T09:00:00Z

    #[test]
    fn the_active_key_signs_only_after_a_whole_jwks_max_age() {
        let k = signing("generate = true\npublished_at = 2026-11-01T09:00:00Z");
        assert!(check_schedule(&k, 300, T + 300).unwrap().is_empty());
        let e = check_schedule(&k, 300, T + 299).unwrap_err().to_string();
        assert!(e.starts_with("signing_key.published_at: this key was first published at 2026-11-01T09:00:00Z"), "{e}");
        assert!(e.contains("until 2026-11-01T09:05:00Z") && e.contains("(in 1 s)"), "{e}");
        assert!(check_schedule(&k, 0, T).is_ok());
        let unchecked = signing("file = \"k.pem\"");
        let w = check_schedule(&unchecked, 300, T).unwrap();
        assert!(w.len() == 1 && w[0].starts_with("signing_key.published_at: not set"), "{w:?}");
        assert!(check_schedule(&signing("generate = true"), 300, T).unwrap().is_empty());
        let e = check_schedule(&k, 0, T - 61).unwrap_err().to_string();
        assert!(e.ends_with("is in the future"), "{e}");
    }

    #[test]
    fn a_rotation_must_say_when_the_active_key_was_published() {
        let prev = "[[signing_key.previous]]\nfile = \"old.pem\"\nretired_at = 2026-11-01T09:00:00Z";
        let e = check_schedule(&signing(&format!("generate = true\n{prev}")), 300, T + 10).unwrap_err();
        assert!(e.to_string().starts_with("signing_key.published_at: required when previous keys are listed"), "{e}");
        let k = signing(&format!("generate = true\npublished_at = 2026-10-01T09:00:00Z\n{prev}"));
        assert!(check_schedule(&k, 300, T + 10).unwrap().is_empty());
        // Past its retention (24 h): a warning, not an error.
        let w = check_schedule(&k, 300, T + 86_400).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("signing_key.previous[0]: retired at 2026-11-01T09:00:00Z"), "{w:?}");
        // Retired in the future.
        let e = check_schedule(&k, 300, T - 3600).unwrap_err().to_string();
        assert!(e.starts_with("signing_key.previous[0].retired_at: "), "{e}");
    }

    #[test]
    fn next_keys_are_not_published_in_the_future_and_report_when_they_may_sign() {
        let k = signing("generate = true\n[[signing_key.next]]\nfile = \"n.pem\"\npublished_at = 2026-11-01T09:00:00Z");
        assert!(check_schedule(&k, 300, T).is_ok());
        let e = check_schedule(&k, 300, T - 120).unwrap_err().to_string();
        assert!(e.starts_with("signing_key.next[0].published_at: "), "{e}");

        let active = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let next = LocalSigner::generate(Algorithm::ES384).unwrap();
        let set = KeySet::new(active)
            .describe_active(None, "generated in memory".into())
            .with_published_since(
                next.public_jwk().clone(),
                Algorithm::ES384,
                KeyRole::Next,
                Some(T),
                "file n.pem".into(),
            )
            .unwrap();
        let soon = report(&set, &k, 300, T + 10);
        assert!(soon.lines().nth(1).unwrap().contains("may become active from 2026-11-01T09:05:00Z"), "{soon}");
        let now = report(&set, &k, 300, T + 300);
        assert!(now.lines().nth(1).unwrap().contains("may become active now"), "{now}");
        assert!(now.starts_with("active "), "{now}");
    }

    #[test]
    fn kid_is_thumbprint_and_duplicates_are_refused() {
        let active = Arc::new(LocalSigner::generate(Algorithm::ES256).unwrap());
        let keys = KeySet::new(active.clone());
        let json = keys.jwks().to_json();
        assert_eq!(json["keys"][0]["kid"], active.kid());
        assert_eq!(json["keys"][0]["alg"], "ES256");
        assert_eq!(json["keys"][0]["use"], "sig");
        assert!(json["keys"][0].get("d").is_none());
        let dup = keys.clone().with_published(active.public_jwk().clone(), Algorithm::ES256, KeyRole::Previous);
        assert!(matches!(dup, Err(JwkError::DuplicateKid(_))));
        let wrong_alg = keys.with_published(active.public_jwk().clone(), Algorithm::EdDSA, KeyRole::Next);
        assert!(wrong_alg.is_err());
    }
}
