//! The public listener: `POST /token`, the JWKS and the RFC 8414 metadata.
//! Every request is observed (request id, duration, server span) under the
//! route label of its path: one of the paths below, or `other`.

use crate::http::{
    finish_observation, read_body, text_response, Body, BodyError, ConnectionInfo, Handler, Observer, OTHER_ROUTE,
};
use crate::metadata::Document;
use crate::token::{ErrorCode, OAuthError, TokenEndpoint};
use bytes::Bytes;
use ekey_telemetry::RequestObservation;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::time::Duration;
use tracing::Instrument as _;

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
    pub observer: Observer,
}

impl Handler for PublicApp {
    async fn handle(&self, req: Request<Incoming>, conn: &ConnectionInfo) -> Response<Body> {
        let (mut obs, span) = self.observer.start(req.method(), route_label(req.uri().path()), req.headers());
        let res = self.route(req, conn, &mut obs).instrument(span.clone()).await;
        finish_observation(obs, &span, res)
    }
}

/// The `http.route` of a path on this listener.
fn route_label(path: &str) -> &'static str {
    match path {
        TOKEN_PATH => TOKEN_PATH,
        JWKS_PATH => JWKS_PATH,
        METADATA_PATH => METADATA_PATH,
        _ => OTHER_ROUTE,
    }
}

impl PublicApp {
    /// Dispatches one request (generic over the body, for tests).
    pub(crate) async fn route<B>(
        &self,
        req: Request<B>,
        conn: &ConnectionInfo,
        obs: &mut RequestObservation,
    ) -> Response<Body>
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
                let body = read_body(length, body, self.max_body, self.body_timeout).await.map_err(|e| {
                    let reason = match e {
                        BodyError::TooLarge(_) => "body_too_large",
                        BodyError::Timeout(_) => "body_timeout",
                        BodyError::Read(_) => "body_unreadable",
                    };
                    OAuthError::new(ErrorCode::InvalidRequest, e.to_string()).with_reason(reason)
                });
                self.token.handle(&parts.headers, body, conn, obs).await
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
