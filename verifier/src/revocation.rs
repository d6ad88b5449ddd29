//! Revocation by rule: every token of a `sub`, of a template, or everything
//! issued at or before a time. (One trace is revoked in the usage store,
//! atomically with its consumption; see [`UsageStore::revoke_trace`].)
//!
//! A [`RevocationRules`] is a local rule set checked on every request
//! without I/O. It is refreshed from outside (with the `redis` feature,
//! `RedisRevocationFeed` refreshes it from Redis by pub/sub and by polling)
//! and knows when it was last refreshed: past `max_staleness` it refuses
//! every request (503) rather than let a revocation go unseen. That makes
//! `max_staleness` the bound on how long a revoked token can still be used.
//!
//! ```
//! use ekey_verifier::{RevocationRule, RevocationRules};
//! use std::time::Duration;
//! let rules = RevocationRules::new(Duration::from_secs(1));
//! rules.replace(vec![RevocationRule::sub("client-7", 1_800_000_000)], std::time::Instant::now());
//! ```
//!
//! [`UsageStore::revoke_trace`]: crate::UsageStore::revoke_trace

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{RedisRevocationFeed, RedisRevocations, RevocationFeedSettings};

use crate::claims::{Claims, MAX_TTL_SECS};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long after its cut-off a rule is kept: the longest a token issued at
/// the cut-off can live, plus a margin for clock skew and leeway.
pub const RULE_MARGIN_SECS: i64 = MAX_TTL_SECS + 60;

/// Revokes every token whose `iat` is at or before `issued_before` and
/// whose `sub` and `tpl` equal the rule's (when the rule names them). A rule
/// with neither revokes everything issued until then ("revoke all").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRule {
    /// Only tokens of this `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Only tokens minted from this template (`tpl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Tokens issued at or before this second are revoked.
    pub issued_before: i64,
}

impl RevocationRule {
    /// Every token of `sub` issued at or before `at`.
    pub fn sub(sub: impl Into<String>, at: i64) -> Self {
        Self { sub: Some(sub.into()), template: None, issued_before: at }
    }

    /// Every token of template `tpl` issued at or before `at`.
    pub fn template(tpl: impl Into<String>, at: i64) -> Self {
        Self { sub: None, template: Some(tpl.into()), issued_before: at }
    }

    /// Every token issued at or before `at`.
    pub fn all(at: i64) -> Self {
        Self { sub: None, template: None, issued_before: at }
    }

    /// When no token the rule matches can still be valid, so it can go.
    pub fn expires(&self) -> i64 {
        self.issued_before.saturating_add(RULE_MARGIN_SECS)
    }

    /// Whether the rule revokes a token with these claims.
    pub fn matches(&self, claims: &Claims) -> bool {
        claims.iat <= self.issued_before
            && self.sub.as_ref().is_none_or(|s| *s == claims.sub)
            && self.template.as_ref().is_none_or(|t| claims.tpl.as_ref() == Some(t))
    }
}

/// Why a revocation check refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// A rule matches: 401 `invalid_token`.
    #[error("token revoked")]
    Revoked,
    /// The rule set is older than allowed: 503 (fail closed).
    #[error("revocation rules not refreshed for {0:?}")]
    Stale(Duration),
}

/// Checked by the [`Verifier`](crate::Verifier) after the token's signature
/// and claims, before the usage store. Must not do I/O.
pub trait RevocationCheck: Send + Sync + std::fmt::Debug {
    /// `Ok` when no revocation applies to the token.
    fn check(&self, claims: &Claims) -> Result<(), RevocationError>;
}

/// Rules indexed for a constant-time check: the latest cut-off per `sub`,
/// per template, per (sub, template), and for everything.
#[derive(Debug, Default)]
struct Index {
    all: Option<i64>,
    by_sub: HashMap<String, i64>,
    by_template: HashMap<String, i64>,
    by_both: HashMap<(String, String), i64>,
    len: usize,
}

impl Index {
    fn build(rules: &[RevocationRule]) -> Self {
        let mut ix = Self { len: rules.len(), ..Self::default() };
        let later = |slot: &mut i64, t: i64| *slot = (*slot).max(t);
        for r in rules {
            let t = r.issued_before;
            match (&r.sub, &r.template) {
                (None, None) => ix.all = Some(ix.all.map_or(t, |a| a.max(t))),
                (Some(s), None) => later(ix.by_sub.entry(s.clone()).or_insert(t), t),
                (None, Some(p)) => later(ix.by_template.entry(p.clone()).or_insert(t), t),
                (Some(s), Some(p)) => later(ix.by_both.entry((s.clone(), p.clone())).or_insert(t), t),
            }
        }
        ix
    }

    fn revokes(&self, c: &Claims) -> bool {
        let hit = |cut: Option<&i64>| cut.is_some_and(|t| c.iat <= *t);
        hit(self.all.as_ref())
            || hit(self.by_sub.get(&c.sub))
            || c.tpl
                .as_ref()
                .is_some_and(|p| hit(self.by_template.get(p)) || hit(self.by_both.get(&(c.sub.clone(), p.clone()))))
    }
}

/// The local rule set. Cheap to check from many tasks; replaced whole on
/// each refresh.
#[derive(Debug)]
pub struct RevocationRules {
    state: RwLock<(Arc<Index>, Option<Instant>)>,
    max_staleness: Duration,
}

impl RevocationRules {
    /// An empty set that refuses every request until first refreshed, and
    /// again whenever its last refresh is older than `max_staleness`.
    pub fn new(max_staleness: Duration) -> Self {
        Self { state: RwLock::new((Arc::new(Index::default()), None)), max_staleness }
    }

    /// Replaces the rules with `rules`, read from a source at `read_at`
    /// (the time the read *started*, so that staleness is never understated).
    pub fn replace(&self, rules: Vec<RevocationRule>, read_at: Instant) {
        let ix = Arc::new(Index::build(&rules));
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        // A slow read must not overwrite a newer one.
        if s.1.is_none_or(|prev| prev <= read_at) {
            *s = (ix, Some(read_at));
        }
    }

    /// Number of rules in force.
    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|e| e.into_inner()).0.len
    }

    /// Whether no rule is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the rules were last read (None: never).
    pub fn refreshed_at(&self) -> Option<Instant> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).1
    }
}

impl RevocationCheck for RevocationRules {
    fn check(&self, claims: &Claims) -> Result<(), RevocationError> {
        let (ix, at) = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            (s.0.clone(), s.1)
        };
        let age = at.map_or(Duration::MAX, |t| t.elapsed());
        if age > self.max_staleness {
            return Err(RevocationError::Stale(age));
        }
        if ix.revokes(claims) {
            return Err(RevocationError::Revoked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Audience, Capability, Confirmation};

    fn claims(sub: &str, tpl: Option<&str>, iat: i64) -> Claims {
        Claims {
            iss: "i".into(),
            sub: sub.into(),
            aud: Audience::One("a".into()),
            iat,
            nbf: iat,
            exp: iat + 60,
            jti: "t".into(),
            cap: Capability { action: "GET:/".into(), scope: None, limit: 1, subcap: vec![] },
            cnf: Confirmation::Jkt("k".into()),
            tpl: tpl.map(Into::into),
        }
    }

    #[test]
    fn rules_match_by_sub_template_and_time() {
        let rules = RevocationRules::new(Duration::from_secs(60));
        let c = claims("alice", Some("pay"), 100);
        // Never refreshed: refused as stale.
        assert!(matches!(rules.check(&c), Err(RevocationError::Stale(_))));
        rules.replace(vec![], Instant::now());
        assert_eq!(rules.check(&c), Ok(()));
        let cases = [
            (RevocationRule::sub("alice", 100), true),
            (RevocationRule::sub("alice", 99), false),
            (RevocationRule::sub("bob", 200), false),
            (RevocationRule::template("pay", 150), true),
            (RevocationRule::template("read", 150), false),
            (RevocationRule { sub: Some("alice".into()), template: Some("pay".into()), issued_before: 100 }, true),
            (RevocationRule { sub: Some("alice".into()), template: Some("read".into()), issued_before: 100 }, false),
            (RevocationRule::all(100), true),
            (RevocationRule::all(99), false),
        ];
        for (rule, revoked) in cases {
            assert_eq!(rule.matches(&c), revoked, "{rule:?}");
            rules.replace(vec![rule.clone(), RevocationRule::sub("zed", 1)], Instant::now());
            assert_eq!(rules.check(&c) == Err(RevocationError::Revoked), revoked, "{rule:?}");
        }
        // No template on the token: template rules do not match it.
        let untemplated = claims("alice", None, 100);
        rules.replace(vec![RevocationRule::template("pay", 150)], Instant::now());
        assert_eq!(rules.check(&untemplated), Ok(()));
    }

    #[test]
    fn stale_rules_refuse_and_old_reads_do_not_win() {
        let rules = RevocationRules::new(Duration::from_millis(50));
        let c = claims("alice", None, 100);
        let t0 = Instant::now();
        rules.replace(vec![RevocationRule::sub("alice", 100)], t0);
        // An older read arriving late does not undo a newer one.
        rules.replace(vec![], t0 - Duration::from_millis(10));
        assert_eq!(rules.check(&c), Err(RevocationError::Revoked));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(rules.check(&c), Err(RevocationError::Stale(_))));
        assert_eq!(RevocationRule::all(1000).expires(), 1000 + RULE_MARGIN_SECS);
    }
}
