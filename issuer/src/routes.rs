//! The public listener: `POST /token`, the JWKS and the RFC 8414 metadata.

use crate::http::{read_body, text_response, Body, ConnectionInfo, Handler};
use crate::metadata::Document;
use crate::token::{ErrorCode, OAuthError, TokenEndpoint};
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::time::Duration;

/// Path of the token endpoint on this listener.
pub const TOKEN_PATH: &str = "/token";
/// Path of the JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the RFC 8414 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The public listener's routes and their state.
#[derive(Debug)]
pub(crate) struct PublicApp {
    pub token: TokenEndpoint,
    pub jwks: Document,
    pub metadata: Document,
    pub max_body: usize,
    pub body_timeout: Duration,
}

impl Handler for PublicApp {
    async fn handle(&self, req: Request<Incoming>, conn: &ConnectionInfo) -> Response<Body> {
        self.route(req, conn.peer_certificate.as_deref()).await
    }
}

impl PublicApp {
    /// Dispatches one request (generic over the body, for tests);
    /// `peer_certificate` is the connection's TLS client certificate.
    pub(crate) async fn route<B>(&self, req: Request<B>, peer_certificate: Option<&[u8]>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        match parts.uri.path() {
            TOKEN_PATH if parts.method == Method::POST => {
                let length =
                    parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                match read_body(length, body, self.max_body, self.body_timeout).await {
                    Ok(bytes) => self.token.handle(&parts.headers, &bytes, peer_certificate).await,
                    Err(e) => OAuthError::new(ErrorCode::InvalidRequest, e.to_string()).to_response(),
                }
            }
            TOKEN_PATH => not_allowed("POST"),
            JWKS_PATH if parts.method == Method::GET || head => self.jwks.respond(&parts.headers, head),
            METADATA_PATH if parts.method == Method::GET || head => self.metadata.respond(&parts.headers, head),
            JWKS_PATH | METADATA_PATH => not_allowed("GET, HEAD"),
            _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut res = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    res.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    res
}
