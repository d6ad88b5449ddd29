//! JOSE building blocks, parsed strictly: base64url, JSON without duplicate
//! members, compact JWS, algorithms and public JWKs.
//!
//! Everything here is "parse, don't validate": a value of these types has
//! already passed the shape checks, so later code never re-checks them.

pub(crate) mod alg;
pub(crate) mod b64;
pub(crate) mod json;
pub(crate) mod jwk;
pub(crate) mod jws;
pub(crate) mod key;
pub(crate) mod verify;
