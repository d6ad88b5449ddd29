//! The accept abstraction: the serve loop accepts TCP connections, and an
//! [`Acceptor`] turns each into the byte stream HTTP runs on. Plain HTTP uses
//! [`PlainAcceptor`]; a TLS acceptor (the issuer's, rustls) slots in here,
//! handshaking in the connection's own task and reporting the client
//! certificate in [`ConnectionInfo`] for mTLS client authentication and
//! binding.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What the server knows about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The DER of the client's TLS certificate, when the connection is TLS
    /// with a client certificate.
    pub peer_certificate: Option<Arc<[u8]>>,
    /// Whether the connection speaks HTTP/2 (negotiated by ALPN `h2`);
    /// otherwise HTTP/1.1.
    pub http2: bool,
}

impl ConnectionInfo {
    /// A connection without TLS.
    pub fn plain(peer: SocketAddr) -> Self {
        Self { peer, peer_certificate: None, http2: false }
    }

    /// The same connection, with a client certificate.
    pub fn with_peer_certificate(mut self, der: Arc<[u8]>) -> Self {
        self.peer_certificate = Some(der);
        self
    }

    /// The same connection, speaking HTTP/2.
    pub fn with_http2(mut self) -> Self {
        self.http2 = true;
        self
    }
}

/// Turns an accepted TCP connection into the stream HTTP is served on.
/// Called in the connection's own task, under a timeout, so a slow handshake
/// holds up nobody else.
pub trait Acceptor: Clone + Send + Sync + 'static {
    /// The stream (e.g. a TLS stream over the TCP one).
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Sets up the connection (handshake) and says what is known about it.
    fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Io, ConnectionInfo)>> + Send;
}

/// Plain HTTP: the TCP stream as is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainAcceptor;

impl Acceptor for PlainAcceptor {
    type Io = TcpStream;

    async fn accept(&self, tcp: TcpStream, peer: SocketAddr) -> io::Result<(TcpStream, ConnectionInfo)> {
        Ok((tcp, ConnectionInfo::plain(peer)))
    }
}
