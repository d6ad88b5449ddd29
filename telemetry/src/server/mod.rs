//! The accept loop the issuer's and the gateway's listeners run on (HTTP/1.1,
//! and HTTP/2 where TLS negotiates it by ALPN):
//! a cap on connections served at once (more wait in the kernel's backlog),
//! a deadline for connection set-up and for each request head (slow or idle
//! peers are cut off), bounded header count and size, and on shutdown a drain
//! that lets in-flight requests finish.
//!
//! An [`Acceptor`] turns each TCP connection into the stream HTTP runs on
//! (plain, or TLS in the issuer); a [`Handler`] answers the requests.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use ekey_telemetry::server::{serve, ConnectionInfo, Handler, Limits, PlainAcceptor};
//! use http_body_util::Full;
//! use hyper::{body::Incoming, Request, Response};
//! use std::sync::Arc;
//!
//! struct Hello;
//! impl Handler for Hello {
//!     async fn handle(&self, _: Request<Incoming>, conn: &ConnectionInfo) -> Response<Full<Bytes>> {
//!         Response::new(Full::new(Bytes::from(format!("hello {}\n", conn.peer.ip()))))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let server = tokio::spawn(serve("public", listener, PlainAcceptor, Arc::new(Hello), Limits::default(), stopped));
//! // … at SIGTERM:
//! stop.send_replace(true);
//! server.await.unwrap(); // returns once open connections are drained
//! # }
//! ```

mod listener;
mod serve;

pub use listener::{Acceptor, ConnectionInfo, PlainAcceptor};
pub use serve::{serve, Handler, Limits};
