//! End-to-end tests of the built `ekey` binary: no issuer needed; servers are
//! started in-process on 127.0.0.1:0 where a command talks HTTP.

// Test helpers outside #[test] functions (servers, fixtures) fail by panicking,
// as the tests themselves do (clippy.toml allows unwrap in tests).
#![allow(clippy::unwrap_used)]

mod call;
mod inspect;
mod keygen;
mod mtls;
mod support;
mod token;
mod verify;
