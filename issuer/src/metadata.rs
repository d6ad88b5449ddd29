//! The published documents: the JWKS and the RFC 8414 metadata. Both are
//! serialized once at start with their `ETag`, and answered with `304` when
//! the client already holds them.

use crate::http::Body;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

/// A JSON document served as is.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    body: Bytes,
    etag: HeaderValue,
    content_type: HeaderValue,
    cache_control: HeaderValue,
}

impl Document {
    /// Serializes `value`; the strong `ETag` is the SHA-256 of the body.
    pub(crate) fn new(value: &serde_json::Value, content_type: &'static str, max_age: u32) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let tag = format!("\"{}\"", ekey_verifier::sha256_b64(&body));
        Self {
            // base64url and quotes are always a valid header value.
            etag: HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
            content_type: HeaderValue::from_static(content_type),
            cache_control: HeaderValue::from_str(&format!("public, max-age={max_age}"))
                .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
            body,
        }
    }

    /// The body.
    #[cfg(test)]
    pub(crate) fn body(&self) -> &Bytes {
        &self.body
    }

    /// `200` with the body (empty for `HEAD`), or `304` when `If-None-Match`
    /// names our tag.
    pub(crate) fn respond(&self, request: &HeaderMap, head: bool) -> Response<Body> {
        let not_modified = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| etag_listed(v, self.etag.to_str().unwrap_or_default()));
        let (status, body) = match (not_modified, head) {
            (true, _) => (StatusCode::NOT_MODIFIED, Bytes::new()),
            (false, true) => (StatusCode::OK, Bytes::new()),
            (false, false) => (StatusCode::OK, self.body.clone()),
        };
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(ETAG, self.etag.clone());
        h.insert(CACHE_CONTROL, self.cache_control.clone());
        if status == StatusCode::OK {
            h.insert(CONTENT_TYPE, self.content_type.clone());
        }
        res
    }
}

/// Whether an `If-None-Match` value lists `etag` (weak comparison, RFC 9110
/// §13.1.2) or is `*`.
fn etag_listed(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn with_inm(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        h
    }

    #[tokio::test]
    async fn etag_and_conditional_get() {
        let doc = Document::new(&serde_json::json!({"keys": []}), "application/jwk-set+json", 300);
        let res = doc.respond(&HeaderMap::new(), false);
        assert_eq!(res.status(), 200);
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", ekey_verifier::sha256_b64(br#"{"keys":[]}"#)));
        assert_eq!(res.headers()["cache-control"], "public, max-age=300");
        assert_eq!(res.headers()["content-type"], "application/jwk-set+json");
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), doc.body().clone());

        for inm in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}"), "*".into()] {
            let res = doc.respond(&with_inm(&inm), false);
            assert_eq!(res.status(), 304, "{inm}");
            assert_eq!(res.headers()["etag"], etag.as_str());
            assert!(res.into_body().collect().await.unwrap().to_bytes().is_empty());
        }
        assert_eq!(doc.respond(&with_inm("\"other\""), false).status(), 200);
        let head = doc.respond(&HeaderMap::new(), true);
        assert_eq!(head.status(), 200);
        assert!(head.into_body().collect().await.unwrap().to_bytes().is_empty());
    }

    #[test]
    fn different_bodies_have_different_tags() {
        let a = Document::new(&serde_json::json!({"a": 1}), "application/json", 1);
        let b = Document::new(&serde_json::json!({"a": 2}), "application/json", 1);
        assert_ne!(a.etag, b.etag);
    }
}
