//! Capability actions, `METHOD:/path/:param`, matched against a request.
//!
//! Literal segments follow the same normal-form rule as request paths
//! (see `path.rs`): an action the issuer grants, a template in its config
//! and a `cap.action` or `cap.subcap` the verifier reads are all refused
//! when a segment holds a dot segment, an encoded `/` or `\`, a control
//! character, a needless or lower-case percent-encoding.

use crate::path::{check_segment, PathError};
use std::fmt;

/// An action pattern that parsed: an upper-case method and a path of literal
/// and `:param` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern<'a> {
    method: &'a str,
    segments: Vec<&'a str>,
}

/// The action string is not `METHOD:/path`, or a literal segment of its
/// path is not in normal form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ActionError(Problem);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Problem {
    #[error("action must look like METHOD:/path/:param ({0})")]
    Shape(&'static str),
    #[error("action path is not in normal form: {0}")]
    NotNormal(PathError),
}

fn shape(why: &'static str) -> ActionError {
    ActionError(Problem::Shape(why))
}

impl<'a> ActionPattern<'a> {
    /// Parses `POST:/payments/:id`. Literal segments must be in normal form
    /// (no `..`, `%2F`, `%00`, `%41`, …): a request path that is not is
    /// refused before matching, so such a literal could never match anyway.
    ///
    /// ```
    /// # use ekey_verifier::ActionPattern;
    /// let p = ActionPattern::parse("POST:/payments/:id").unwrap();
    /// assert!(p.matches("POST", "/payments/42"));
    /// assert!(!p.matches("GET", "/payments/42"));
    /// assert!(!p.matches("POST", "/payments/42/refund"));
    /// assert!(ActionPattern::parse("POST:/payments/42%2F..%2Fadmin").is_err());
    /// ```
    pub fn parse(action: &'a str) -> Result<Self, ActionError> {
        if action.len() > 512 {
            return Err(shape("longer than 512 bytes"));
        }
        let (method, path) = action.split_once(':').ok_or(shape("no ':' after the method"))?;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(shape("method must be upper-case letters"));
        }
        let rest = path.strip_prefix('/').ok_or(shape("path must start with '/'"))?;
        let segments: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        for s in &segments {
            if s.is_empty()
                || *s == ":"
                || s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#')
            {
                return Err(shape("empty or invalid path segment"));
            }
            if !s.starts_with(':') {
                check_segment(s).map_err(|e| ActionError(Problem::NotNormal(e)))?;
            }
        }
        Ok(Self { method, segments })
    }

    /// Whether a request with `method` on `path` is this action, comparing
    /// literal segments octet for octet. `path` is the path the request
    /// routes, already checked to be in normal form (the verifier refuses
    /// any other before matching). A `:param` segment matches exactly one
    /// non-empty segment.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if method != self.method {
            return false;
        }
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut req = if rest.is_empty() { None } else { Some(rest.split('/')) };
        let mut pat = self.segments.iter();
        loop {
            match (pat.next(), req.as_mut().and_then(Iterator::next)) {
                (None, None) => return true,
                (Some(p), Some(r)) if (p.starts_with(':') && !r.is_empty()) || p == &r => {}
                _ => return false,
            }
        }
    }
}

impl fmt::Display for ActionPattern<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:/{}", self.method, self.segments.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let p = ActionPattern::parse("GET:/a/:id/b").unwrap();
        assert!(p.matches("GET", "/a/1/b"));
        assert!(!p.matches("GET", "/a//b"));
        assert!(!p.matches("GET", "/a/1/b/"));
        assert!(!p.matches("GET", "/a/1"));
        assert!(!p.matches("get", "/a/1/b"));
        assert!(!p.matches("GET", "/a/1%2Fx/b/c"));
        let root = ActionPattern::parse("GET:/").unwrap();
        assert!(root.matches("GET", "/"));
        assert!(!root.matches("GET", "/x"));
        assert_eq!(p.to_string(), "GET:/a/:id/b");
    }

    #[test]
    fn literal_segments_must_be_in_normal_form() {
        // The same rule as a request path: issuer and verifier share it.
        for bad in [
            "POST:/payments/42%2F..%2Fadmin",
            "POST:/payments/42%2f..",
            "POST:/a/../b",
            "POST:/a/./b",
            "POST:/a/%2e%2e/b",
            "POST:/a/.%2E/b",
            "POST:/a/..;x/b",
            "POST:/a\\b",
            "POST:/a%5Cb",
            "POST:/a%00b",
            "POST:/a%1Fb",
            "POST:/%34%32",
            "POST:/a%2",
            "POST:/caf%c3%a9",
            "POST:/a/",
        ] {
            assert!(ActionPattern::parse(bad).is_err(), "{bad}");
        }
        for good in ["POST:/caf%C3%A9/:id", "GET:/a%20b", "GET:/a:b@c!$&'()*+,;=", "GET:/.well-known/x", "GET:/..."] {
            assert!(ActionPattern::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn parse_errors() {
        for bad in ["", "GET", "GET:", "get:/a", "GET:a", "GET:/a//b", "GET:/a b", "GET:/:", "GET:/a?x"] {
            assert!(ActionPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
