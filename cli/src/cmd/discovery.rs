//! The issuer's metadata (RFC 8414), fetched once per run.

use super::Context;
use crate::error::{printable, CliError};
use crate::oauth::{metadata_url, Metadata};
use crate::transport::MAX_ISSUER_BODY;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

/// The metadata, or `None` when the issuer publishes none (404).
pub async fn metadata(ctx: &Context, issuer: &str) -> Result<Option<Metadata>, CliError> {
    let url = metadata_url(issuer)?;
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let reply = ctx.transport.send(Method::GET, &url, headers, Bytes::new(), MAX_ISSUER_BODY).await?;
    match reply.status {
        StatusCode::OK => Metadata::parse(&reply.body, issuer).map(Some),
        StatusCode::NOT_FOUND => {
            eprintln!("ekey: the issuer publishes no metadata at {url} (404); using the default endpoints");
            Ok(None)
        }
        other => Err(CliError::unavailable(format!(
            "fetching the issuer's metadata from {} answered HTTP {other}",
            printable(&url)
        ))),
    }
}
