//! HTTP plumbing of both listeners: the TLS acceptor, observation, bounded
//! body reading and response helpers. The accept loop itself (connection
//! cap, timeouts, drain) is `ekey_telemetry::server`, shared with the gateway.

mod observe;
mod tls;

pub(crate) use ekey_telemetry::server::{serve, Handler, Limits};
pub use ekey_telemetry::server::{Acceptor, ConnectionInfo, PlainAcceptor};
pub(crate) use observe::{finish as finish_observation, Observer, OTHER_ROUTE};
pub use tls::{TlsAcceptor, TlsError, TlsSettings};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;

/// Every response body: built in memory, sent whole.
pub(crate) type Body = Full<Bytes>;

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    // Serializing a `Value` cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// A plain-text response.
pub(crate) fn text_response(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Full::new(text.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// Longer than the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Not received in time.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// The connection failed while reading.
    #[error("request body could not be read: {0}")]
    Read(String),
}

/// Reads a whole body, refusing more than `limit` bytes (checked against
/// `Content-Length` before reading, and while reading) or more than `timeout`.
pub(crate) async fn read_body<B>(
    content_length: Option<u64>,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if content_length.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(BodyError::TooLarge(limit)),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_limits() {
        let t = Duration::from_secs(1);
        let ok = read_body(None, Full::new(Bytes::from_static(b"abc")), 3, t).await;
        assert_eq!(ok, Ok(Bytes::from_static(b"abc")));
        let big = read_body(None, Full::new(Bytes::from_static(b"abcd")), 3, t).await;
        assert_eq!(big, Err(BodyError::TooLarge(3)));
        let declared = read_body(Some(1 << 30), Full::new(Bytes::new()), 3, t).await;
        assert_eq!(declared, Err(BodyError::TooLarge(3)));
    }
}
