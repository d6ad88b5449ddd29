//! The axum extractor for the verified capability (feature `axum`).
//!
//! A handler behind [`crate::tower::VerifyLayer`] takes the capability as an
//! argument:
//!
//! ```
//! use ekey_verifier::VerifiedCapability;
//!
//! async fn create_payment(cap: VerifiedCapability) -> String {
//!     format!("{} may {} ({} uses left)", cap.sub, cap.action, cap.remaining)
//! }
//! ```
//!
//! Extraction never verifies anything itself: it only finds what the layer
//! put there. A route that is not behind the layer answers 500, so a missing
//! layer is loud instead of open.

use crate::verifier::VerifiedCapability;
use ::axum::extract::FromRequestParts;
use ::axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

/// The route is not behind [`crate::tower::VerifyLayer`]: 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no verified capability: the route is not behind ekey's VerifyLayer")]
pub struct MissingCapability;

impl IntoResponse for MissingCapability {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedCapability {
    type Rejection = MissingCapability;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<VerifiedCapability>().cloned().ok_or(MissingCapability)
    }
}
