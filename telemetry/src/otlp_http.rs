//! The HTTP client behind OTLP/HTTP export: hyper with rustls (ring).
//!
//! The SDK's batch span processor and periodic metric reader export from
//! their own threads, outside any tokio runtime, while hyper needs one. Each
//! request therefore runs as a task on the runtime that started telemetry,
//! and the exporter thread only waits for its result.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::sync::Arc;
use std::time::Duration;

/// A collector's reply is tiny; this bounds a misbehaving one.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Sends OTLP requests on a tokio runtime.
#[derive(Debug, Clone)]
pub(crate) struct OtlpHttpClient {
    client: Client<Connector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl OtlpHttpClient {
    /// A client for `endpoint`; system roots are loaded only for `https`.
    pub(crate) fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| "must be started inside a tokio runtime")?;
        let mut roots = rustls::RootCertStore::empty();
        if endpoint.starts_with("https://") {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err("no usable system root certificates for an https endpoint".into());
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self { client, runtime, timeout })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move {
            let exchange = async {
                let response = client.request(request.map(Full::new)).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(format!("no response within {} ms", timeout.as_millis()).into()),
            }
        });
        task.await.map_err(|e| HttpError::from(format!("export task failed: {e}")))?
    }
}
