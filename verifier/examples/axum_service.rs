//! A small axum service protected by ekey's tower layer.
//!
//! Run a development issuer, this service, then call it:
//!
//! ```text
//! cargo run -p ekey-issuer -- dev
//! cargo run -p ekey-verifier --features axum --example axum_service
//! # issuer URL, audience and listen address can be given as arguments:
//! cargo run -p ekey-verifier --features axum --example axum_service -- \
//!     http://127.0.0.1:8080 http://127.0.0.1:9090 127.0.0.1:9090
//! ```
//!
//! then follow the issuer's banner to get a token for `POST:/payments/42`
//! and call `http://127.0.0.1:9090/payments/42` with `ekey call`.

use axum::routing::{get, post};
use axum::Router;
use ekey_verifier::tower::VerifyLayer;
use ekey_verifier::{
    ExternalUrl, ExternalUrlSettings, HttpJwks, HttpJwksSettings, MemoryStore, VerifiedCapability, Verifier,
    VerifierSettings,
};
use std::net::SocketAddr;
use std::sync::Arc;

async fn create_payment(cap: VerifiedCapability) -> String {
    format!("payment created for {} (trace {}, {} uses left)\n", cap.sub, cap.trace, cap.remaining)
}

async fn health() -> &'static str {
    "ok\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let issuer = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let audience = args.next().unwrap_or_else(|| "http://127.0.0.1:9090".into());
    let listen: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:9090").parse()?;

    let keys = HttpJwks::new(HttpJwksSettings::new(format!("{issuer}/.well-known/jwks.json")))?;
    let verifier = Verifier::new(
        VerifierSettings::new(issuer, audience.clone()),
        Arc::new(keys),
        Arc::new(MemoryStore::default()),
    );
    // The audience is the public origin: DPoP proofs name URLs under it, also
    // when a proxy in front of this service forwards to another address.
    let external = ExternalUrl::new(&ExternalUrlSettings { public_base_url: Some(audience), ..Default::default() })?;

    // Only the routes inside the layer are protected.
    let protected = Router::new()
        .route("/payments/{id}", post(create_payment))
        .layer(VerifyLayer::new(Arc::new(verifier), external));
    let app = Router::new().route("/healthz", get(health)).merge(protected);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("axum_service listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
