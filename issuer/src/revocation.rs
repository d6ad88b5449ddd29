//! `POST /admin/revocations` on the admin listener: revoke one trace, every
//! token of a `sub`, of a template, or everything issued until a time.
//!
//! Authenticated by a bearer token read from a secret file, compared in
//! constant time (as SHA-256 digests, so lengths leak nothing either).
//! Revocations go to the Redis the verifiers share: a trace as a marker the
//! consume script checks atomically, the other kinds as rules every
//! verifier's feed picks up (pub/sub, and a poll; see docs/revocation.md).
//!
//! ```text
//! POST /admin/revocations
//! Authorization: Bearer <admin token>
//! Content-Type: application/json
//!
//! {"sub": "payments-worker"}                 every token of a sub issued until now
//! {"template": "pay", "issued_before": T}    every token of a template issued at or before T
//! {"sub": "a", "template": "pay"}            both must match
//! {"trace": "q3v…"}                          one token
//! {"all": true}                              everything issued until now
//! ```

use crate::config::{ConfigError, RevocationConfig};
use crate::http::{json_response, read_body, text_response, Body};
use ekey_verifier::{
    Clock, RedisRevocations, RevocationRule, StoreError, SystemClock, RETRY_AFTER_SECS, RULE_MARGIN_SECS,
};
use http::{header, HeaderValue, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY: usize = 4096;
/// How far in the future `issued_before` may be (clock skew).
const MAX_FUTURE_SECS: i64 = 5;
/// Longest `sub`, template name or trace accepted.
const MAX_VALUE_LEN: usize = 512;

/// One revocation request, as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRequest {
    trace: Option<String>,
    sub: Option<String>,
    template: Option<String>,
    #[serde(default)]
    all: bool,
    issued_before: Option<i64>,
}

/// What a request asks for, checked.
#[derive(Debug, PartialEq, Eq)]
enum Revocation {
    Trace(String),
    Rule(RevocationRule),
}

impl RevocationRequest {
    fn check(self, now: i64) -> Result<Revocation, String> {
        for (name, v) in [("trace", &self.trace), ("sub", &self.sub), ("template", &self.template)] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > MAX_VALUE_LEN) {
                return Err(format!("{name} must be 1 to {MAX_VALUE_LEN} bytes"));
            }
        }
        let at = match self.issued_before {
            Some(t) if t > now + MAX_FUTURE_SECS => {
                return Err("issued_before is in the future; revocations apply to tokens already issued".into())
            }
            Some(t) if t < 0 => return Err("issued_before must be a unix time in seconds".into()),
            Some(t) => t,
            None => now,
        };
        let rule = self.sub.is_some() || self.template.is_some();
        match (self.trace, rule, self.all) {
            (Some(t), false, false) if self.issued_before.is_none() => Ok(Revocation::Trace(t)),
            (Some(_), false, false) => Err("issued_before does not apply to a trace".into()),
            (None, true, false) => {
                Ok(Revocation::Rule(RevocationRule { sub: self.sub, template: self.template, issued_before: at }))
            }
            (None, false, true) => Ok(Revocation::Rule(RevocationRule::all(at))),
            (None, false, false) => Err("say what to revoke: trace, sub, template, or all".into()),
            _ => Err("trace, sub/template and all exclude each other".into()),
        }
    }
}

/// The revocation API, ready to serve (built from `[revocation]`).
#[derive(Debug)]
pub struct AdminRevocations {
    redis: RedisRevocations,
    token_sha256: [u8; 32],
    clock: Arc<dyn Clock>,
    body_timeout: Duration,
}

impl AdminRevocations {
    /// Reads the admin token and connects to Redis (with the start-up
    /// `maxmemory-policy` check).
    pub(crate) async fn from_config(c: &RevocationConfig) -> Result<Self, ConfigError> {
        let token = std::fs::read(&c.admin_token_file).map_err(|e| {
            ConfigError::invalid(
                "revocation.admin_token_file",
                format!("cannot read {}: {e}", c.admin_token_file.display()),
            )
        })?;
        let token = trim_newline(&token);
        if token.len() < 32 {
            return Err(ConfigError::invalid(
                "revocation.admin_token_file",
                format!("the token is {} bytes; use at least 32 random bytes", token.len()),
            ));
        }
        let redis = RedisRevocations::connect(c.redis.clone()).await.map_err(|e| match e {
            ekey_verifier::RedisStoreError::Config { field, reason } => {
                ConfigError::invalid(format!("revocation.redis.{field}"), reason)
            }
            other => ConfigError::invalid("revocation.redis", other.to_string()),
        })?;
        Ok(Self {
            redis,
            token_sha256: openssl::sha::sha256(token),
            clock: Arc::new(SystemClock),
            body_timeout: Duration::from_secs(5),
        })
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(v), None) = (values.next(), values.next()) else { return false };
        let v = v.as_bytes();
        v.len() > 7
            && v[..7].eq_ignore_ascii_case(b"Bearer ")
            && openssl::memcmp::eq(&openssl::sha::sha256(v[7..].trim_ascii()), &self.token_sha256)
    }

    /// Serves one request to `/admin/revocations`.
    pub(crate) async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if req.method() != http::Method::POST {
            let mut res = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return res;
        }
        if !self.authorized(req.headers()) {
            tracing::warn!(event = "revocation", outcome = "unauthorized", "revocation refused: bad admin token");
            let mut res = json_response(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_token"}));
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return res;
        }
        let length =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = match read_body(length, req.into_body(), MAX_BODY, self.body_timeout).await {
            Ok(b) => b,
            Err(e) => return bad_request(&e.to_string()),
        };
        let now = self.clock.now();
        let revocation = match serde_json::from_slice::<RevocationRequest>(&body) {
            Ok(r) => match r.check(now) {
                Ok(r) => r,
                Err(why) => return bad_request(&why),
            },
            Err(e) => return bad_request(&format!("body is not a revocation request: {e}")),
        };
        let (written, expires, answer) = match &revocation {
            Revocation::Trace(trace) => {
                let until = now + RULE_MARGIN_SECS;
                (self.redis.revoke_trace(trace, until).await.map(|()| None), until, json!({"trace": trace}))
            }
            Revocation::Rule(rule) => (self.redis.add_rule(rule).await.map(Some), rule.expires(), json!(rule)),
        };
        match written {
            Ok(rules_in_force) => {
                tracing::info!(event = "revocation", outcome = "revoked", revoked = %answer, expires, "revocation written");
                let mut body = json!({"revoked": answer, "expires": expires});
                if let Some(n) = rules_in_force {
                    body["rules_in_force"] = json!(n);
                }
                json_response(StatusCode::OK, &body)
            }
            Err(e) => unavailable(&e),
        }
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let mut b = b;
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

fn bad_request(why: &str) -> Response<Body> {
    tracing::info!(event = "revocation", outcome = "bad_request", reason = why, "revocation request refused");
    json_response(StatusCode::BAD_REQUEST, &json!({"error": "invalid_request", "error_description": why}))
}

fn unavailable(why: &StoreError) -> Response<Body> {
    tracing::warn!(event = "revocation", outcome = "store_unavailable", reason = %why, "revocation not written");
    let mut res = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "temporarily_unavailable", "error_description": "revocation store unavailable; retry"}),
    );
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Revocation, String> {
        serde_json::from_str::<RevocationRequest>(s).map_err(|e| e.to_string())?.check(1000)
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(parse(r#"{"trace":"abc"}"#), Ok(Revocation::Trace("abc".into())));
        assert_eq!(parse(r#"{"sub":"a"}"#), Ok(Revocation::Rule(RevocationRule::sub("a", 1000))));
        assert_eq!(
            parse(r#"{"template":"t","issued_before":900}"#),
            Ok(Revocation::Rule(RevocationRule::template("t", 900)))
        );
        assert_eq!(parse(r#"{"all":true}"#), Ok(Revocation::Rule(RevocationRule::all(1000))));
        assert_eq!(
            parse(r#"{"sub":"a","template":"t"}"#),
            Ok(Revocation::Rule(RevocationRule {
                sub: Some("a".into()),
                template: Some("t".into()),
                issued_before: 1000
            }))
        );
        for bad in [
            r#"{}"#,
            r#"{"trace":"a","sub":"b"}"#,
            r#"{"all":true,"sub":"b"}"#,
            r#"{"trace":"a","issued_before":5}"#,
            r#"{"sub":"a","issued_before":2000}"#,
            r#"{"sub":""}"#,
            r#"{"sub":"a","extra":1}"#,
            r#"{"all":false}"#,
            r#"{"all":true,"issued_before":-1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn newline_trimmed() {
        assert_eq!(trim_newline(b"abc\r\n\n"), b"abc");
        assert_eq!(trim_newline(b"\n"), b"");
    }
}
