//! The one place that speaks HTTP. Plain `http://` in this build; TLS and
//! client certificates (mTLS-bound tokens, `tls_client_auth`) belong here, as
//! another connector behind the same [`Transport::send`].

use crate::error::{chain, printable, CliError};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Largest reply body read from an issuer (metadata, token responses).
pub const MAX_ISSUER_BODY: usize = 1024 * 1024;
/// Largest reply body read by `ekey call`.
pub const MAX_CALL_BODY: usize = 16 * 1024 * 1024;

const USER_AGENT: &str = concat!("ekey/", env!("CARGO_PKG_VERSION"));

/// An HTTP reply, body read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP client with one timeout for each whole exchange.
#[derive(Debug)]
pub struct Transport {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Transport {
    /// A client; `timeout` bounds connect + send + reading the reply.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector), timeout }
    }

    /// Sends one request and reads the reply, at most `max_body` bytes of it.
    /// Redirects are not followed.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        max_body: usize,
    ) -> Result<Reply, CliError> {
        let uri = http_uri(url)?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| CliError::usage(format!("cannot build a request for {}: {e}", printable(url))))?;
        *req.headers_mut() = headers;
        req.headers_mut().entry(header::USER_AGENT).or_insert(HeaderValue::from_static(USER_AGENT));
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| CliError::unavailable(format!("cannot reach {}: {}", printable(url), chain(&e))))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    CliError::unavailable(format!("reading the reply from {}: {}", printable(url), chain(&*e)))
                })?
                .to_bytes();
            Ok(Reply { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            CliError::unavailable(format!("no answer from {} within {} s", printable(url), self.timeout.as_secs()))
        })?
    }
}

/// Parses an absolute `http://` URL; other schemes are refused clearly.
pub fn http_uri(url: &str) -> Result<Uri, CliError> {
    let parsed = url::Url::parse(url).map_err(|e| CliError::usage(format!("invalid URL {:?}: {e}", printable(url))))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(CliError::usage(format!(
                "{}: https:// is not supported by this build of ekey yet; use http:// (e.g. through a local TLS proxy)",
                printable(url)
            )))
        }
        other => return Err(CliError::usage(format!("{}: unsupported scheme {other:?}", printable(url)))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(CliError::usage(format!("{}: URL has no host", printable(url))));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CliError::usage(format!("{}: credentials in URLs are not supported", printable(url))));
    }
    let mut without_fragment = parsed;
    without_fragment.set_fragment(None);
    without_fragment.as_str().parse().map_err(|e| CliError::usage(format!("invalid URL {:?}: {e}", printable(url))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls() {
        assert_eq!(http_uri("http://127.0.0.1:8080/a?b=1#f").unwrap().to_string(), "http://127.0.0.1:8080/a?b=1");
        assert_eq!(http_uri("http://Example.COM").unwrap().to_string(), "http://example.com/");
        let https = http_uri("https://example.com/").unwrap_err().to_string();
        assert!(https.contains("https:// is not supported"), "{https}");
        assert!(http_uri("ftp://x/").is_err());
        assert!(http_uri("http://u:p@x/").is_err());
        assert!(http_uri("/relative").is_err());
        assert!(http_uri("").is_err());
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = Transport::new(Duration::from_secs(5));
        let err = t
            .send(Method::GET, &format!("http://127.0.0.1:{port}/"), HeaderMap::new(), Bytes::new(), 10)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_UNAVAILABLE);
        assert!(err.to_string().starts_with("cannot reach"), "{err}");
    }
}
