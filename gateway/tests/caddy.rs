//! Real Caddy (Debian package) with `forward_auth` to ekey-gateway in front
//! of a tiny upstream, on loopback, driven by real DPoP requests. The Caddy
//! configuration is deploy/gateway/Caddyfile.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod proxy_cases;
mod support;

use support::ProxyKind::Caddy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_replay_exhausted_and_external_htu() {
    proxy_cases::accepted_replay_exhausted(Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_nonce_reaches_the_client() {
    proxy_cases::nonce_reaches_client(Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_spoof_original_request_or_identity() {
    proxy_cases::client_cannot_spoof_through_proxy(Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_unavailable_reaches_the_client_as_503() {
    proxy_cases::unavailable_is_503(Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_are_refused_and_the_raw_path_is_checked() {
    proxy_cases::hostile_paths_refused_raw_path_checked(Caddy).await;
}
