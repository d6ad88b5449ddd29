//! Capability actions, `METHOD:/path/:param`, matched against a request.

use std::fmt;

/// An action pattern that parsed: an upper-case method and a path of literal
/// and `:param` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern<'a> {
    method: &'a str,
    segments: Vec<&'a str>,
}

/// The action string is not `METHOD:/path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action must look like METHOD:/path/:param ({0})")]
pub struct ActionError(&'static str);

impl<'a> ActionPattern<'a> {
    /// Parses `POST:/payments/:id`.
    ///
    /// ```
    /// # use ekey_verifier::ActionPattern;
    /// let p = ActionPattern::parse("POST:/payments/:id").unwrap();
    /// assert!(p.matches("POST", "/payments/42"));
    /// assert!(!p.matches("GET", "/payments/42"));
    /// assert!(!p.matches("POST", "/payments/42/refund"));
    /// ```
    pub fn parse(action: &'a str) -> Result<Self, ActionError> {
        if action.len() > 512 {
            return Err(ActionError("longer than 512 bytes"));
        }
        let (method, path) = action.split_once(':').ok_or(ActionError("no ':' after the method"))?;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ActionError("method must be upper-case letters"));
        }
        let rest = path.strip_prefix('/').ok_or(ActionError("path must start with '/'"))?;
        let segments: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        for s in &segments {
            if s.is_empty()
                || *s == ":"
                || s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#')
            {
                return Err(ActionError("empty or invalid path segment"));
            }
        }
        Ok(Self { method, segments })
    }

    /// Whether a request with `method` on the normalised `path` is this action.
    /// A `:param` segment matches exactly one non-empty segment.
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
    fn parse_errors() {
        for bad in ["", "GET", "GET:", "get:/a", "GET:a", "GET:/a//b", "GET:/a b", "GET:/:", "GET:/a?x"] {
            assert!(ActionPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
